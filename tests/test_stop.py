"""SIGINT and SIGTERM stop a real ``esl-assets build`` process gracefully.

The last test stops a ``Build`` in this process, as the signal handlers do,
so that the stop comes at a chosen point of its planning.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest
from cli_helpers import cli_command, cli_environment, write_sample_slice
from fake_openai import FakeOpenAI

from esl_assets import pipeline
from esl_assets.jobs import Job, JobResult
from esl_assets.journal import journal_path
from esl_assets.settings import Settings
from esl_assets.storage import TEMP_SUFFIX, existing_file_problem

#: Header plus this many rows of the sample: enough jobs to keep five in flight.
SLICE_ROWS = 12
IN_FLIGHT = 5
EXIT_INTERRUPTED = 130

pytestmark = pytest.mark.slow


@pytest.fixture
def dictionary(tmp_path: Path) -> Path:
    return write_sample_slice(tmp_path, SLICE_ROWS)


class Build:
    """A ``build`` subprocess whose stderr is read on a thread."""

    def __init__(
        self, dictionary: Path, outdir: Path, base_url: str, *extra: str
    ) -> None:
        command = cli_command(
            "build",
            str(dictionary),
            "--outdir",
            str(outdir),
            "--base-url",
            base_url,
            "--concurrency",
            str(IN_FLIGHT),
            *extra,
        )
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_environment(),
            cwd=dictionary.parent,
        )
        self.stderr_lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.stderr_lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_stderr(self, text: str, timeout_s: float = 30.0) -> None:
        """Block until a stderr line contains ``text``; fail after ``timeout_s``."""
        with self._changed:
            found = self._changed.wait_for(
                lambda: (
                    any(text in line for line in self.stderr_lines)
                    or self.process.poll() is not None
                ),
                timeout=timeout_s,
            )
        assert found and any(text in line for line in self.stderr_lines), (
            f"{text!r} not in stderr: {''.join(self.stderr_lines)}"
        )

    def finish(self, timeout_s: float = 60.0) -> tuple[int, str, str]:
        """Wait for the exit; return (exit code, stdout, stderr)."""
        assert self.process.stdout is not None
        stdout = self.process.stdout.read()
        code = self.process.wait(timeout=timeout_s)
        self._reader.join(timeout=10)
        return code, stdout, "".join(self.stderr_lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    return tmp_path / "out"


def temp_files(outdir: Path) -> list[str]:
    return [p.name for p in outdir.iterdir() if p.name.endswith(TEMP_SUFFIX)]


def final_files(outdir: Path) -> list[Path]:
    return [p for p in outdir.iterdir() if p.is_file() and not p.name.startswith(".")]


def asset_files(outdir: Path) -> list[Path]:
    return [p for p in final_files(outdir) if p.name != "errors.jsonl"]


def run_outcomes(outdir: Path) -> list[str | None]:
    with sqlite3.connect(journal_path(outdir)) as connection:
        return [
            row[0] for row in connection.execute("SELECT outcome FROM runs ORDER BY id")
        ]


def interrupt_held_build(
    fake: FakeOpenAI,
    dictionary: Path,
    outdir: Path,
    grace_s: float,
    stop: signal.Signals,
) -> Build:
    """Start a build, wait until requests are held in flight, send ``stop``."""
    fake.hold()
    build = Build(dictionary, outdir, fake.base_url, "--grace", str(grace_s))
    try:
        fake.wait_in_flight(IN_FLIGHT, timeout_s=60)
        build.process.send_signal(stop)
        build.wait_for_stderr(f"{stop.name} received")
    except BaseException:
        build.kill()
        raise
    return build


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_stop_cancels_held_requests_after_grace(
    fake_openai: FakeOpenAI, dictionary: Path, outdir: Path, stop: signal.Signals
) -> None:
    build = interrupt_held_build(fake_openai, dictionary, outdir, 0.5, stop)
    try:
        code, stdout, stderr = build.finish()
    finally:
        build.kill()
        fake_openai.release()

    assert code == EXIT_INTERRUPTED, stderr
    assert "interrupted" in stdout
    assert "--resume" in stdout
    assert temp_files(outdir) == []
    assert asset_files(outdir) == []
    assert fake_openai.count() == IN_FLIGHT
    assert run_outcomes(outdir) == ["interrupted"]


def test_stop_lets_requests_in_flight_finish(
    fake_openai: FakeOpenAI, dictionary: Path, outdir: Path
) -> None:
    build = interrupt_held_build(fake_openai, dictionary, outdir, 60.0, signal.SIGINT)
    try:
        fake_openai.release()
        code, stdout, stderr = build.finish()
    finally:
        build.kill()

    assert code == EXIT_INTERRUPTED, stderr
    assert "interrupted" in stdout
    assert fake_openai.count() == IN_FLIGHT
    written = asset_files(outdir)
    assert len(written) == IN_FLIGHT
    for path in written:
        assert existing_file_problem(path) is None, path.name
    assert temp_files(outdir) == []
    with sqlite3.connect(journal_path(outdir)) as connection:
        recorded = {
            file
            for (file,) in connection.execute(
                "SELECT file FROM jobs WHERE status = 'success'"
            )
        }
    assert recorded == {path.name for path in written}


def test_second_sigint_stops_at_once(
    fake_openai: FakeOpenAI, dictionary: Path, outdir: Path
) -> None:
    # The grace is far longer than the test's timeout, so only the second
    # signal can end the run in time.
    build = interrupt_held_build(fake_openai, dictionary, outdir, 3600.0, signal.SIGINT)
    try:
        build.process.send_signal(signal.SIGINT)
        code, stdout, stderr = build.finish(timeout_s=60)
    finally:
        build.kill()
        fake_openai.release()

    assert code == EXIT_INTERRUPTED, stderr
    assert "received again" in stderr
    assert temp_files(outdir) == []
    assert asset_files(outdir) == []
    assert run_outcomes(outdir) == ["interrupted"]


def test_json_summary_says_interrupted(
    fake_openai: FakeOpenAI, dictionary: Path, outdir: Path
) -> None:
    fake_openai.hold()
    build = Build(dictionary, outdir, fake_openai.base_url, "--grace", "0", "--json")
    try:
        fake_openai.wait_in_flight(IN_FLIGHT, timeout_s=60)
        build.process.send_signal(signal.SIGINT)
        code, stdout, stderr = build.finish()
    finally:
        build.kill()
        fake_openai.release()

    data = json.loads(stdout)
    assert code == EXIT_INTERRUPTED, stderr
    assert data["outcome"] == "interrupted"
    assert data["exit_code"] == EXIT_INTERRUPTED
    assert data["not_run"] >= IN_FLIGHT


class PlannedJobs:
    """Counter of planned jobs and results that sets ``reached`` at ``target`` jobs."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.planned = 0
        self.results = 0
        self.reached = asyncio.Event()

    def on_planned(self, job: Job) -> None:
        self.planned += 1
        if self.planned == self.target:
            self.reached.set()

    def on_result(self, job: Job, result: JobResult) -> None:
        self.results += 1


async def test_stop_counts_job_waiting_for_window(
    fake_openai: FakeOpenAI, dictionary: Path, outdir: Path
) -> None:
    # At concurrency 1 each lane keeps WINDOW_PER_SLOT jobs in progress, then
    # plans one more and waits for a free place in its window. Every request
    # is held, so both lanes wait there when this many jobs are planned.
    observer = PlannedJobs(target=2 * (pipeline.WINDOW_PER_SLOT + 1))
    settings = Settings.from_options(
        dictionary=dictionary,
        outdir=outdir,
        base_url=fake_openai.base_url,
        api_key="sk-test",
        concurrency=1,
        grace_s=0.0,
    )
    fake_openai.hold()
    build = pipeline.Build(settings, observers=[observer])
    running = asyncio.create_task(build.run())
    try:
        reached = asyncio.create_task(observer.reached.wait())
        await asyncio.wait({running, reached}, return_when=asyncio.FIRST_COMPLETED)
        reached.cancel()
        assert observer.reached.is_set(), "the build ended before both lanes waited"
        build.request_stop()
        report = await running
    finally:
        fake_openai.release()
        if not running.done():
            build.stop_now()
            await asyncio.wait({running})

    assert report.outcome == "interrupted"
    assert observer.planned == observer.target
    assert observer.results == 0
    assert report.results == []
    assert report.not_run == observer.planned
