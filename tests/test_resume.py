"""Kill, resume, changed files and failed jobs, with real ``esl-assets`` processes."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import cli_command, cli_environment, run_cli, write_sample_slice
from fake_openai import FakeOpenAI

from esl_assets.jobs import Job
from esl_assets.journal import journal_path
from esl_assets.pipeline import lane_kinds, read_rows
from esl_assets.planner import Planner, build_request_template
from esl_assets.settings import Settings
from esl_assets.storage import TEMP_SUFFIX, existing_file_problem

#: Header plus this many rows of the sample.
SLICE_ROWS = 12
IN_FLIGHT = 5

pytestmark = pytest.mark.slow


@pytest.fixture
def dictionary(tmp_path: Path) -> Path:
    return write_sample_slice(tmp_path, SLICE_ROWS)


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    return tmp_path / "out"


def build_json(
    dictionary: Path, outdir: Path, fake: FakeOpenAI, *extra: str
) -> tuple[int, dict[str, Any], str]:
    """Run ``build --json``; return the exit code, the JSON and stderr."""
    result = run_cli(
        "build",
        str(dictionary),
        "--outdir",
        str(outdir),
        "--base-url",
        fake.base_url,
        "--json",
        *extra,
        cwd=dictionary.parent,
    )
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


def kill_with_requests_in_flight(
    fake: FakeOpenAI, dictionary: Path, outdir: Path, *extra: str
) -> None:
    """Start a build, SIGKILL it while ``IN_FLIGHT`` requests are held."""
    fake.hold()
    process = subprocess.Popen(
        cli_command(
            "build",
            str(dictionary),
            "--outdir",
            str(outdir),
            "--base-url",
            fake.base_url,
            "--concurrency",
            str(IN_FLIGHT),
            "-v",
            "0",
            *extra,
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=cli_environment(),
        cwd=dictionary.parent,
    )
    try:
        fake.wait_in_flight(IN_FLIGHT, timeout_s=60)
    finally:
        process.kill()
        process.wait(timeout=30)
        fake.release()


def planned_jobs(dictionary: Path, **options: Any) -> list[Job]:
    """Plan every job of ``dictionary`` with the library's own planner."""
    settings = Settings(dictionary=dictionary, **options)
    template = build_request_template(settings)
    jobs: list[Job] = []
    for kinds in lane_kinds(settings).values():
        planner = Planner(settings, template, kinds)
        jobs += [
            item for item in planner.plan(read_rows(settings)) if isinstance(item, Job)
        ]
    return jobs


def sent(fake: FakeOpenAI) -> Counter[tuple[str, str | None]]:
    return Counter((request.lane, request.text) for request in fake.requests)


def temp_files(outdir: Path) -> list[str]:
    return [p.name for p in outdir.iterdir() if p.name.endswith(TEMP_SUFFIX)]


def results_by_file(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {result["file"]: result for result in data["results"]}


def edit_definition(dictionary: Path, row_index: int, definition: str) -> None:
    with open(dictionary, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    column = rows[0].index("definition")
    rows[row_index][column] = definition
    with open(dictionary, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)


# -- kill -9


def test_kill_then_rerun_requests_only_missing(
    fake_openai: FakeOpenAI, dictionary: Path, outdir: Path
) -> None:
    kill_with_requests_in_flight(fake_openai, dictionary, outdir)
    in_flight = sent(fake_openai)
    assert sum(in_flight.values()) == IN_FLIGHT

    with sqlite3.connect(journal_path(outdir)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        outcomes = [row[0] for row in connection.execute("SELECT outcome FROM runs")]
    assert outcomes == [None]
    status = run_cli("status", "--outdir", str(outdir), "--json", cwd=dictionary.parent)
    assert json.loads(status.stdout)["runs"][0]["state"] == "killed"

    rerun = run_cli(
        "build",
        str(dictionary),
        "--outdir",
        str(outdir),
        "--base-url",
        fake_openai.base_url,
        "-v",
        "0",
        cwd=dictionary.parent,
    )
    assert rerun.returncode == 0, rerun.stderr

    jobs = planned_jobs(dictionary)
    for job in jobs:
        assert existing_file_problem(outdir / job.file) is None, job.file
    expected = Counter((job.lane, job.text) for job in jobs)
    total = sent(fake_openai)
    assert set(total) == set(expected)
    for key, number in expected.items():
        if key in in_flight:
            assert total[key] <= 2 * number, key
        else:
            assert total[key] == number, key
    assert temp_files(outdir) == []


# -- files on disk that the journal does not know

#: Run the CLI, but block the writer thread inside the merge of adopted
#: files: the first size lookup creates the marker file and sleeps.
BLOCKED_MERGE_CLI = """
import pathlib, sys, time
from esl_assets import journal_recorder
from esl_assets.cli import main

marker = pathlib.Path(sys.argv.pop(1))
original = journal_recorder._FileStats.size

def size(self, file):
    marker.touch()
    time.sleep(600)
    return original(self, file)

journal_recorder._FileStats.size = size
sys.exit(main())
"""


def build_quietly(dictionary: Path, outdir: Path, fake: FakeOpenAI) -> None:
    result = run_cli(
        "build",
        str(dictionary),
        "--outdir",
        str(outdir),
        "--base-url",
        fake.base_url,
        "-v",
        "0",
        cwd=dictionary.parent,
    )
    assert result.returncode == 0, result.stderr


def manifest_by_file(outdir: Path) -> dict[str, dict[str, Any]]:
    listed = run_cli("manifest", "--outdir", str(outdir), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    return {asset["file"]: asset for asset in json.loads(listed.stdout)["assets"]}


def test_files_without_journal_listed_in_manifest(
    fake_openai: FakeOpenAI, dictionary: Path, outdir: Path
) -> None:
    build_quietly(dictionary, outdir, fake_openai)
    shutil.rmtree(journal_path(outdir).parent)
    fake_openai.reset_records()

    build_quietly(dictionary, outdir, fake_openai)

    assert fake_openai.count() == 0
    assets = manifest_by_file(outdir)
    jobs = planned_jobs(dictionary)
    assert set(assets) == {job.file for job in jobs}
    for job in jobs:
        asset = assets[job.file]
        assert asset["status"] == "skipped", job.file
        assert asset["reason"] == "exists", job.file
        assert asset["fingerprint"] == job.fingerprint, job.file
        assert asset["bytes"] == (outdir / job.file).stat().st_size, job.file
        assert asset["created"] is not None, job.file
        assert asset["word"] == job.word, job.file


def test_kill_during_adoption_then_rerun(
    fake_openai: FakeOpenAI, dictionary: Path, outdir: Path, tmp_path: Path
) -> None:
    build_quietly(dictionary, outdir, fake_openai)
    shutil.rmtree(journal_path(outdir).parent)
    fake_openai.reset_records()
    marker = tmp_path / "merging"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            BLOCKED_MERGE_CLI,
            str(marker),
            "build",
            str(dictionary),
            "--outdir",
            str(outdir),
            "--base-url",
            fake_openai.base_url,
            "-v",
            "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=cli_environment(),
        cwd=dictionary.parent,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and process.poll() is None:
            assert time.monotonic() < deadline, "the merge never started"
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait(timeout=30)
    assert marker.exists()

    with sqlite3.connect(journal_path(outdir)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        recorded = connection.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    assert recorded == 0
    leftovers = {path.name for path in journal_path(outdir).parent.iterdir()}
    assert leftovers <= {"journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm"}

    build_quietly(dictionary, outdir, fake_openai)

    assert fake_openai.count() == 0
    assets = manifest_by_file(outdir)
    jobs = planned_jobs(dictionary)
    assert set(assets) == {job.file for job in jobs}
    for job in jobs:
        assert assets[job.file]["fingerprint"] == job.fingerprint, job.file
        assert assets[job.file]["status"] == "skipped", job.file


# -- --resume


def test_resume_uses_saved_settings(
    fake_openai: FakeOpenAI, dictionary: Path, outdir: Path, tmp_path: Path
) -> None:
    kill_with_requests_in_flight(
        fake_openai, dictionary, outdir, "--audio-voice", "nova", "--no-images"
    )
    fake_openai.reset_records()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    resumed = run_cli(
        "build",
        "--resume",
        "--outdir",
        str(outdir),
        "--concurrency",
        "3",
        "--json",
        cwd=elsewhere,
    )

    assert resumed.returncode == 0, resumed.stderr
    assert "--concurrency 3 overrides the value saved with run 1 (5)" in resumed.stderr
    assert "Resuming run 1" in resumed.stderr
    assert "job(s) done" in resumed.stderr
    data = json.loads(resumed.stdout)
    assert data["resume"]["run_id"] == 1
    assert data["resume"]["done"] == 0
    requests = fake_openai.requests
    assert requests
    assert {request.lane for request in requests} == {"audio"}
    assert {request.body["voice"] for request in requests if request.body} == {"nova"}
    for job in planned_jobs(dictionary, images=False, audio_voice="nova"):
        assert existing_file_problem(outdir / job.file) is None, job.file
    assert not list(outdir.glob("image_*"))

    again = run_cli("build", "--resume", "--outdir", str(outdir), cwd=elsewhere)
    assert again.returncode == 2
    assert "Nothing to resume" in again.stderr


def test_resume_rejects_limit_and_keeps_run(
    fake_openai: FakeOpenAI, dictionary: Path, outdir: Path
) -> None:
    kill_with_requests_in_flight(fake_openai, dictionary, outdir)
    fake_openai.reset_records()

    limited = run_cli(
        "build",
        "--resume",
        "--outdir",
        str(outdir),
        "--base-url",
        fake_openai.base_url,
        "--limit",
        "1",
        cwd=dictionary.parent,
    )

    assert limited.returncode == 2, limited.stderr
    assert "--limit 1 would change which jobs it makes" in limited.stderr
    assert "Traceback" not in limited.stderr
    assert fake_openai.count() == 0

    resumed = run_cli(
        "build",
        "--resume",
        "--outdir",
        str(outdir),
        "--base-url",
        fake_openai.base_url,
        cwd=dictionary.parent,
    )

    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming run 1" in resumed.stderr
    for job in planned_jobs(dictionary):
        assert existing_file_problem(outdir / job.file) is None, job.file


def test_resume_without_journal_exits_2(tmp_path: Path) -> None:
    result = run_cli(
        "build", "--resume", "--outdir", str(tmp_path / "empty"), cwd=tmp_path
    )
    assert result.returncode == 2
    assert "Nothing to resume" in result.stderr


# -- changed files


def test_edited_definition_changed_until_refreshed(
    fake_openai: FakeOpenAI, dictionary: Path, outdir: Path
) -> None:
    code, _, stderr = build_json(dictionary, outdir, fake_openai)
    assert code == 0, stderr
    before = {job.file: job.fingerprint for job in planned_jobs(dictionary)}
    edit_definition(dictionary, 2, "a definition edited after the first build")
    after = {job.file: job.fingerprint for job in planned_jobs(dictionary)}
    changed = {
        file for file, fingerprint in after.items() if before.get(file) != fingerprint
    }
    assert changed
    old_bytes = {file: (outdir / file).read_bytes() for file in changed}
    fake_openai.reset_records()

    code, data, stderr = build_json(dictionary, outdir, fake_openai)
    assert code == 0, stderr
    assert data["changed"] == len(changed)
    assert fake_openai.count() == 0
    results = results_by_file(data)
    assert {file for file, r in results.items() if r["reason"] == "changed"} == changed
    assert all(results[file]["status"] == "skipped" for file in changed)

    code, data, stderr = build_json(
        dictionary, outdir, fake_openai, "--refresh-changed"
    )
    assert code == 0, stderr
    assert data["changed"] == len(changed)
    assert fake_openai.count() == len(changed)
    results = results_by_file(data)
    for file in changed:
        assert results[file]["status"] == "success"
        assert existing_file_problem(outdir / file) is None
        assert (outdir / file).read_bytes() != old_bytes[file]
    fake_openai.reset_records()

    code, data, stderr = build_json(dictionary, outdir, fake_openai)
    assert code == 0, stderr
    assert data["changed"] == 0
    assert fake_openai.count() == 0


def test_new_voice_counts_every_audio_file_changed(
    fake_openai: FakeOpenAI, dictionary: Path, outdir: Path
) -> None:
    code, _, stderr = build_json(dictionary, outdir, fake_openai, "--no-images")
    assert code == 0, stderr
    fake_openai.reset_records()

    audio_jobs = planned_jobs(dictionary, images=False)
    plan = run_cli(
        "plan",
        str(dictionary),
        "--outdir",
        str(outdir),
        "--no-images",
        "--audio-voice",
        "nova",
        "--json",
        cwd=dictionary.parent,
    )
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["changed"] == len(audio_jobs)
    code, data, stderr = build_json(
        dictionary, outdir, fake_openai, "--no-images", "--audio-voice", "nova"
    )
    assert code == 0, stderr
    assert data["changed"] == len(audio_jobs)
    assert fake_openai.count() == 0


# -- failed jobs


def unique_target(jobs: list[Job], lane: str, text_of: Any) -> tuple[Job, str]:
    """Return a job of ``lane`` and a part of its text in no other job of the lane."""
    in_lane = [job for job in jobs if job.lane == lane]
    for job in in_lane:
        if job.kind.value == "word":
            continue
        needle = text_of(job)
        if sum(needle in other.text for other in in_lane) == 1:
            return job, needle
    raise AssertionError(f"no job of lane {lane} has a unique text")


def test_retry_failed_skips_blocked_until_asked(
    fake_openai: FakeOpenAI, dictionary: Path, outdir: Path
) -> None:
    jobs = planned_jobs(dictionary)
    audio_job, audio_text = unique_target(jobs, "audio", lambda job: job.text)
    image_job, image_text = unique_target(
        [job for job in jobs if job.definition != audio_job.definition],
        "images",
        lambda job: job.definition,
    )
    fake_openai.inject("500", lane="audio", match=audio_text, times=None)
    fake_openai.inject("400_moderation", lane="images", match=image_text, times=None)

    code, data, stderr = build_json(
        dictionary, outdir, fake_openai, "--max-attempts", "1"
    )
    assert code == 1, stderr
    assert {error["file"] for error in data["errors"]} == {
        audio_job.file,
        image_job.file,
    }
    fake_openai.reset_records()

    # A 500 is not about the job, so a plain build sends it again. The
    # refused image is not sent.
    code, data, stderr = build_json(
        dictionary, outdir, fake_openai, "--max-attempts", "1"
    )
    assert code == 1, stderr
    assert [(r.lane, r.text) for r in fake_openai.requests] == [
        ("audio", audio_job.text)
    ]
    assert data["failed_before"] == 1
    assert results_by_file(data)[image_job.file]["reason"] == "failed_before"

    fake_openai.reset()
    fake_openai.inject("400_moderation", lane="images", match=image_text, times=None)
    code, data, stderr = build_json(dictionary, outdir, fake_openai)
    assert code == 0, stderr
    assert [(r.lane, r.text) for r in fake_openai.requests] == [
        ("audio", audio_job.text)
    ]
    assert data["failed_before"] == 1
    fake_openai.reset_records()

    code, data, stderr = build_json(dictionary, outdir, fake_openai, "--retry-failed")
    assert code == 0, stderr
    assert fake_openai.count() == 0
    assert data["failed_before"] == 1
    assert results_by_file(data)[image_job.file]["reason"] == "failed_before"
    fake_openai.reset()

    # --retry-blocked alone, because it implies --retry-failed.
    code, data, stderr = build_json(dictionary, outdir, fake_openai, "--retry-blocked")
    assert code == 0, stderr
    assert [(r.lane, r.text) for r in fake_openai.requests] == [
        ("images", image_job.text)
    ]
    assert data["failed_before"] == 0
    for job in jobs:
        assert existing_file_problem(outdir / job.file) is None, job.file
