"""The CLI builds the whole sample dictionary against a real local HTTP server."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from cli_helpers import run_cli as run_cli_with_key
from fake_openai import FakeOpenAI

from esl_assets.storage import existing_file_problem

DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "sample.sqlite"


def run_cli(
    *args: str, key: str | None = "sk-test", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    # The whole sample takes longer than the default timeout on a busy machine.
    return run_cli_with_key(*args, key=key, cwd=cwd, timeout_s=600)


def expected_files() -> dict[str, tuple[str, str]]:
    """Map every file the sample should produce to (lane, text), from SQL alone.

    Entries flagged offensive (flags bit 1) get audio but no image.
    """
    files: dict[str, tuple[str, str]] = {}
    with sqlite3.connect(f"file:{SAMPLE}?mode=ro", uri=True) as db:
        for uuid, word in db.execute("SELECT uuid, word FROM words"):
            files[f"word_{uuid}_0.aac"] = ("audio", word)
        rows = db.execute(
            "SELECT s.uuid, s.id, s.definition, w.flags"
            " FROM shortdef s JOIN words w ON w.uuid = s.uuid"
        )
        for uuid, definition_id, definition, flags in rows:
            files[f"shortdef_{uuid}_{definition_id}.aac"] = ("audio", definition)
            if not flags & 1:
                files[f"image_{uuid}_{definition_id}.png"] = ("images", definition)
    return files


@pytest.mark.slow
def test_sample_build_one_request_per_file(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    outdir = tmp_path / "assets"
    result = run_cli(
        "build",
        str(SAMPLE),
        "--outdir",
        str(outdir),
        "--base-url",
        fake_openai.base_url,
        "--concurrency",
        "20",
        "-v",
        "0",
    )
    assert result.returncode == 0, result.stderr
    expected = expected_files()
    written = {p.name for p in outdir.iterdir() if not p.name.startswith(".")}
    assert written == set(expected)
    for name in expected:
        assert existing_file_problem(outdir / name) is None, name
    audio_texts = Counter(t for lane, t in expected.values() if lane == "audio")
    sent_audio = Counter(r.text for r in fake_openai.requests if r.lane == "audio")
    assert sent_audio == audio_texts
    assert fake_openai.count(lane="images") == sum(
        1 for lane, _ in expected.values() if lane == "images"
    )
    assert fake_openai.count() == len(expected)

    fake_openai.reset_records()
    again = run_cli(
        "build",
        str(SAMPLE),
        "--outdir",
        str(outdir),
        "--base-url",
        fake_openai.base_url,
        "-v",
        "0",
    )
    assert again.returncode == 0, again.stderr
    assert fake_openai.count() == 0


def test_dryrun_needs_no_key_and_sends_nothing(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    result = run_cli(
        "build",
        str(SAMPLE),
        "--outdir",
        str(tmp_path),
        "--base-url",
        fake_openai.base_url,
        "--dryrun",
        "--limit",
        "10",
        key=None,
    )
    assert result.returncode == 0, result.stderr
    assert fake_openai.count() == 0
    assert "Image prompt:" in result.stdout
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".aac", ".png")]


SHUTDOWN_WARNING = "--audio-model 'gpt-4o-mini-tts' has an announced shutdown"


def test_shutdown_warning_once_before_requests(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    outdir = tmp_path / "out"
    build = (
        "build", str(SAMPLE), "--outdir", str(outdir), "--base-url",
        fake_openai.base_url, "--limit", "2",
    )  # fmt: skip

    planned = run_cli("plan", *build[1:])
    dry_run = run_cli(*build, "--dryrun")
    offline = run_cli(*build, "--provider", "local", "--outdir", str(tmp_path / "o"))
    first = run_cli(*build)
    # Every file is on disk now, so this build sends nothing.
    again = run_cli(*build)

    for result in (planned, dry_run, offline, first, again):
        assert result.returncode == 0, result.stderr
    assert SHUTDOWN_WARNING not in planned.stderr
    assert SHUTDOWN_WARNING not in dry_run.stderr
    assert SHUTDOWN_WARNING not in offline.stderr
    assert first.stderr.count(SHUTDOWN_WARNING) == 1
    assert fake_openai.count() > 0
    assert SHUTDOWN_WARNING not in again.stderr


def test_retired_model_refused_before_any_request(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    result = run_cli(
        "build",
        str(SAMPLE),
        "--outdir",
        str(tmp_path),
        "--base-url",
        fake_openai.base_url,
        "--image-model",
        "dall-e-3",
    )
    assert result.returncode == 2
    assert "dall-e-3" in result.stderr
    assert "gpt-image-2.5" in result.stderr
    assert "Traceback" not in result.stderr
    assert fake_openai.count() == 0


def test_missing_key_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("build", str(SAMPLE), "--outdir", str(tmp_path), key=None)
    assert result.returncode == 2
    assert "OPENAI_API_KEY" in result.stderr
    assert "--provider local" in result.stderr
    assert "Traceback" not in result.stderr


def test_unauthorized_stops_within_concurrency(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    result = run_cli(
        "build",
        str(SAMPLE),
        "--outdir",
        str(tmp_path),
        "--base-url",
        fake_openai.base_url,
        "--concurrency",
        "5",
        key="sk-wrong",
    )
    assert result.returncode == 3, result.stderr
    # Each lane may have its whole cap in flight when the first 401 arrives.
    assert fake_openai.count() <= 5
    assert "OPENAI_API_KEY" in result.stdout + result.stderr
    assert "sk-wrong" not in result.stdout + result.stderr
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".aac", ".png")]


def test_missing_dictionary_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli(
        "build", str(tmp_path / "nope.csv"), "--outdir", str(tmp_path), "--dryrun"
    )
    assert result.returncode == 2
    assert "nope.csv" in result.stderr
    assert "Traceback" not in result.stderr


def closed_port() -> int:
    """Return a loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_unreachable_api_stops_the_run(tmp_path: Path) -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/v1"
    result = run_cli(
        "build", str(SAMPLE), "--outdir", str(tmp_path), "--base-url", base_url,
        "--limit", "40", "--json",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    report = json.loads(result.stdout)
    assert f"could not connect to the API at {base_url}" in report["fatal_message"]
    assert "Check --base-url" in report["fatal_message"]
    # It stopped early: most planned jobs were never sent.
    assert report["not_run"] > 0
    assert report["requests"] < 40


def test_unreachable_api_names_the_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    result = run_cli(
        "build", str(SAMPLE), "--outdir", str(tmp_path),
        "--base-url", "http://127.0.0.1:9/v1", "--limit", "10",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    output = " ".join((result.stdout + result.stderr).split())
    assert "could not connect to the API at http://127.0.0.1:9/v1" in output
    assert "HTTP_PROXY is set" in output
    assert "add its host to NO_PROXY" in output
