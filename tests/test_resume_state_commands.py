"""``status`` and ``manifest`` read the journal that real builds wrote."""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import run_cli as run_cli_with_key
from cli_helpers import write_sample_slice
from fake_openai import FakeOpenAI

import esl_assets.queue_commands
from esl_assets.jobs import Job
from esl_assets.pipeline import lane_kinds, read_rows
from esl_assets.planner import Planner, build_request_template
from esl_assets.settings import Settings
from esl_assets.state_commands import MANIFEST_FIELDS, run_status_command

#: Header plus this many rows of the sample.
SLICE_ROWS = 6
#: A key the tests look for in every output, to prove it is never written.
API_KEY = "sk-test-state-commands"


@pytest.fixture
def dictionary(tmp_path: Path) -> Path:
    return write_sample_slice(tmp_path, SLICE_ROWS)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli_with_key(*args, key=API_KEY, cwd=cwd)


def planned_jobs(dictionary: Path) -> list[Job]:
    settings = Settings(dictionary=dictionary)
    template = build_request_template(settings)
    jobs: list[Job] = []
    for kinds in lane_kinds(settings).values():
        planner = Planner(settings, template, kinds)
        jobs += [j for j in planner.plan(read_rows(settings)) if isinstance(j, Job)]
    return jobs


@pytest.fixture
def built(dictionary: Path, tmp_path: Path) -> Path:
    """Return an output folder after one complete build of the slice."""
    outdir = tmp_path / "out"
    with FakeOpenAI(api_key=API_KEY) as fake:
        result = run_cli(
            "build",
            str(dictionary),
            "--outdir",
            str(outdir),
            "--base-url",
            fake.base_url,
            "-v",
            "0",
            cwd=tmp_path,
        )
    assert result.returncode == 0, result.stderr
    return outdir


@pytest.mark.slow
def test_status_json_lists_complete_run(
    built: Path, dictionary: Path, tmp_path: Path
) -> None:
    result = run_cli("status", "--outdir", str(built), "--json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    (run,) = data["runs"]
    assert run["outcome"] == "complete"
    assert run["state"] == "complete"
    assert run["planned_all"] is True
    expected = Counter(job.kind.value for job in planned_jobs(dictionary))
    assert {kind: counts["success"] for kind, counts in run["counts"].items()} == (
        dict(expected)
    )
    assert run["planned"] == sum(expected.values())
    assert run["settings"]["dictionary"] == str(dictionary.resolve())
    assert "api_key" not in run["settings"]
    assert API_KEY not in result.stdout


@pytest.mark.slow
def test_status_text_shows_counts(built: Path, tmp_path: Path) -> None:
    result = run_cli("status", "--outdir", str(built), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "Run 1: complete" in result.stdout
    assert "shortdef" in result.stdout
    assert "gpt-4o-mini-tts" in result.stdout


def test_status_without_journal(tmp_path: Path) -> None:
    result = run_cli("status", "--outdir", str(tmp_path / "none"), cwd=tmp_path)
    assert result.returncode == 0
    assert "No journal" in result.stdout


@pytest.mark.slow
def test_manifest_csv_lists_every_asset(
    built: Path, dictionary: Path, tmp_path: Path
) -> None:
    result = run_cli(
        "manifest", "--outdir", str(built), "--format", "csv", cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == MANIFEST_FIELDS
    jobs = {job.file: job for job in planned_jobs(dictionary)}
    assert {row["file"] for row in rows} == set(jobs)
    for row in rows:
        job = jobs[row["file"]]
        assert row["status"] == "success"
        assert row["uuid"] == job.uuid
        assert row["word"] == job.word
        assert row["definition_id"] == job.definition_id
        assert row["kind"] == job.kind.value
        assert row["fingerprint"] == job.fingerprint
        assert row["model"] == job.params["model"]
        assert int(row["bytes"]) == (built / row["file"]).stat().st_size
        assert row["created"]
    uuids = [row["uuid"] for row in rows]
    assert uuids == sorted(uuids)


@pytest.mark.slow
def test_manifest_json_file_marks_missing(
    built: Path, dictionary: Path, tmp_path: Path
) -> None:
    deleted = planned_jobs(dictionary)[0].file
    (built / deleted).unlink()
    output = tmp_path / "manifest.json"

    result = run_cli(
        "manifest", "--outdir", str(built), "--output", str(output), cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    data = json.loads(output.read_text(encoding="utf-8"))
    assets: dict[str, dict[str, Any]] = {a["file"]: a for a in data["assets"]}
    assert len(assets) == len(planned_jobs(dictionary))
    assert assets[deleted]["status"] == "missing"
    assert assets[deleted]["bytes"] is None
    others = [a for file, a in assets.items() if file != deleted]
    assert {a["status"] for a in others} == {"success"}
    assert not list(tmp_path.glob(".manifest.json*"))


def test_manifest_without_journal_exits_2(tmp_path: Path) -> None:
    result = run_cli("manifest", "--outdir", str(tmp_path / "none"), cwd=tmp_path)
    assert result.returncode == 2
    assert "has no journal" in result.stderr


def test_status_with_redis_url_reads_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[argparse.Namespace] = []

    def fake_queue_status(args: argparse.Namespace) -> int:
        seen.append(args)
        return 0

    monkeypatch.setattr(esl_assets.queue_commands, "queue_status", fake_queue_status)
    args = argparse.Namespace(
        redis_url="redis://127.0.0.1:1/0",
        queue="q",
        outdir=None,
        runs=5,
        json=False,
    )
    assert run_status_command(args) == 0
    assert seen == [args]
