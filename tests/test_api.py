"""build() and abuild() against the fake OpenAI server on 127.0.0.1.

Covers a plain call, a call inside a running event loop, repeated calls, calls
after a 401 and after a configuration error, and interrupted builds followed
by a new call. Every test also checks that asyncio logged no leaked task or
closed-loop error (see ``no_asyncio_leaks``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI

import esl_assets
from esl_assets import AccountError, BuildReport, ConfigurationError, Job, JobResult
from esl_assets.jobs import Status
from esl_assets.settings import ENVIRONMENT_SETTINGS
from esl_assets.storage import TEMP_SUFFIX, existing_file_problem

SAMPLE = Path(__file__).parent / "data" / "sample.sqlite"
#: Messages asyncio logs or prints for a leaked task, loop or coroutine.
LEAK_MESSAGES = (
    "Event loop is closed",
    "Task exception was never retrieved",
    "Task was destroyed but it is pending",
    "was never awaited",
)


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Clear the tool's environment variables and leave the repository's .env."""
    for variable in (*ENVIRONMENT_SETTINGS, "OPENAI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def no_asyncio_leaks(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> Iterator[None]:
    """Fail the test if stderr or any log record reports a leaked task or loop."""
    caplog.set_level(logging.DEBUG)
    yield
    gc.collect()
    output = capfd.readouterr().err + caplog.text
    for message in LEAK_MESSAGES:
        assert message not in output


def fake_options(fake: FakeOpenAI, **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "base_url": fake.base_url,
        "api_key": "sk-test",
        "limit": 2,
        "max_attempts": 1,
    }
    options.update(overrides)
    return options


def assert_interrupted_cleanly(outdir: Path) -> None:
    """Check for whole files only, and no error record of a cancelled job."""
    assert_complete_files(outdir)
    assert not (outdir / "errors.jsonl").exists()


def assert_complete_files(outdir: Path) -> list[str]:
    """Check that every asset in ``outdir`` is whole and return the asset names."""
    names = sorted(p.name for p in outdir.iterdir())
    for name in names:
        assert not name.endswith(TEMP_SUFFIX), name
    assets = [n for n in names if not n.endswith(".jsonl") and not n.startswith(".")]
    for name in assets:
        assert existing_file_problem(outdir / name) is None, name
    return assets


def assert_matches_disk(report: BuildReport, outdir: Path) -> None:
    assets = assert_complete_files(outdir)
    on_disk = {
        r.file for r in report.results if r.status in (Status.SUCCESS, Status.SKIPPED)
    }
    assert on_disk == set(assets)
    assert report.count(status=Status.ERROR) == 0


class ThreadRecorder:
    """Observer that records the threads the build reports from."""

    def __init__(self) -> None:
        self.threads: set[str] = set()
        self.results = 0

    def on_planned(self, job: Job) -> None:
        self.threads.add(threading.current_thread().name)

    def on_result(self, job: Job, result: JobResult) -> None:
        self.results += 1


@contextlib.contextmanager
def default_sigint_handler() -> Iterator[None]:
    """Let SIGINT raise KeyboardInterrupt, as in a Jupyter kernel or a script."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def loop_like_sigint_handler() -> Iterator[list[int]]:
    """Give SIGINT a handler that only records the signal, and yield the record.

    asyncio.Runner's own handler only schedules a cancellation, which a
    blocked loop never runs. pytest-asyncio's runner installs it only when
    SIGINT has Python's default handler, and a job started in the background
    (as CI may run this suite) ignores SIGINT instead, so the test sets a
    handler of that kind itself.
    """
    received: list[int] = []

    def record(number: int, frame: object) -> None:
        received.append(number)

    previous = signal.signal(signal.SIGINT, record)
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupt_main_thread_when_in_flight(fake: FakeOpenAI) -> threading.Thread:
    """Send SIGINT to the main thread once a request waits at the held server."""

    def send() -> None:
        fake.wait_in_flight(1, timeout_s=30)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    sender = threading.Thread(target=send, name="interrupter")
    sender.start()
    return sender


def build_threads_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "esl-assets-build"]


# -- without a running loop


def test_build_without_loop(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    recorder = ThreadRecorder()

    report = esl_assets.build(
        SAMPLE, outdir=outdir, observers=[recorder], **fake_options(fake_openai)
    )

    assert report.outcome == "complete"
    assert report.count(status=Status.SUCCESS) > 0
    assert report.requests == fake_openai.count()
    assert recorder.threads == {threading.current_thread().name}
    assert recorder.results == len(report.results)
    assert report.outdir == outdir.resolve()
    assert len(report.entries()) == 2
    assert set(report.headwords) == set(report.entries())
    assert_matches_disk(report, outdir)


def test_build_twice_without_loop(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    first = esl_assets.build(SAMPLE, outdir=tmp_path / "a", **fake_options(fake_openai))
    second = esl_assets.build(
        SAMPLE, outdir=tmp_path / "b", **fake_options(fake_openai)
    )
    again = esl_assets.build(SAMPLE, outdir=tmp_path / "b", **fake_options(fake_openai))

    assert first.count(status=Status.SUCCESS) == second.count(status=Status.SUCCESS)
    assert again.count(status=Status.SKIPPED) == len(second.results)
    assert again.requests == 0
    assert_matches_disk(second, tmp_path / "b")


def test_build_after_401_without_loop(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    with pytest.raises(AccountError) as caught:
        esl_assets.build(
            SAMPLE,
            outdir=tmp_path / "out",
            **fake_options(fake_openai, api_key="sk-bad"),
        )
    assert isinstance(caught.value.report, BuildReport)
    assert caught.value.report.outcome == "stopped"
    assert caught.value.report.outdir == (tmp_path / "out").resolve()
    assert "sk-bad" not in str(caught.value)

    report = esl_assets.build(
        SAMPLE, outdir=tmp_path / "out", **fake_options(fake_openai)
    )

    assert report.outcome == "complete"
    assert_matches_disk(report, tmp_path / "out")


KEY_SOURCES = {
    "argument": "The key came from the api_key argument",
    "environment": "The key came from OPENAI_API_KEY in the environment",
    "dotenv": "The key came from OPENAI_API_KEY in {dotenv}",
}


@pytest.mark.parametrize("source", KEY_SOURCES)
def test_rejected_key_names_its_source(
    fake_openai: FakeOpenAI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    key = f"sk-bad-{source}"
    options = fake_options(fake_openai, api_key=None, limit=1)
    dotenv = tmp_path / ".env"
    if source == "argument":
        options["api_key"] = key
    elif source == "environment":
        monkeypatch.setenv("OPENAI_API_KEY", key)
    else:
        # build() loads .env from the working directory, which is tmp_path.
        dotenv.write_text(f"OPENAI_API_KEY={key}\n", "utf-8")
    try:
        with pytest.raises(AccountError) as caught:
            esl_assets.build(SAMPLE, outdir=tmp_path / "out", **options)
    finally:
        # load_environment() set it from .env, which monkeypatch cannot undo.
        if source == "dotenv":
            os.environ.pop("OPENAI_API_KEY", None)
    message = str(caught.value)
    assert KEY_SOURCES[source].format(dotenv=dotenv) in message
    assert key not in message
    if source == "argument":
        assert "OPENAI_API_KEY (environment or .env)" not in message


def test_build_after_configuration_error(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match="audio_voise"):
        esl_assets.build(
            SAMPLE,
            outdir=tmp_path / "out",
            audio_voise="nova",
            **fake_options(fake_openai),
        )
    with pytest.raises(ConfigurationError, match="--concurrency 0"):
        esl_assets.build(SAMPLE, outdir=tmp_path / "out", concurrency=0)

    report = esl_assets.build(
        SAMPLE, outdir=tmp_path / "out", **fake_options(fake_openai)
    )

    assert report.outcome == "complete"


def test_build_rejects_redis_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="Redis") as caught:
        esl_assets.build(SAMPLE, outdir=tmp_path, redis_url="redis://:secret@127.0.0.1")
    assert "secret" not in str(caught.value)


def test_build_interrupted_without_loop(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    outdir = tmp_path / "out"
    fake_openai.hold()
    with default_sigint_handler():
        sender = interrupt_main_thread_when_in_flight(fake_openai)
        with pytest.raises(KeyboardInterrupt):
            esl_assets.build(SAMPLE, outdir=outdir, **fake_options(fake_openai))
        sender.join()
    fake_openai.release()

    assert_interrupted_cleanly(outdir)
    report = esl_assets.build(SAMPLE, outdir=outdir, **fake_options(fake_openai))
    assert report.outcome == "complete"
    assert_matches_disk(report, outdir)


# -- inside a running loop (as in a Jupyter cell)


async def test_build_inside_running_loop(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    outdir = tmp_path / "out"
    recorder = ThreadRecorder()

    report = esl_assets.build(
        SAMPLE, outdir=outdir, observers=[recorder], **fake_options(fake_openai)
    )

    assert report.outcome == "complete"
    assert recorder.threads == {"esl-assets-build"}
    assert_matches_disk(report, outdir)
    # The caller's loop is untouched and still runs tasks.
    assert await asyncio.sleep(0, result="ok") == "ok"
    assert build_threads_alive() == []


async def test_build_twice_inside_running_loop(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    for name in ("a", "b", "c"):
        report = esl_assets.build(
            SAMPLE, outdir=tmp_path / name, **fake_options(fake_openai)
        )
        assert report.outcome == "complete"
        assert_matches_disk(report, tmp_path / name)


async def test_build_after_401_inside_running_loop(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    outdir = tmp_path / "out"
    with pytest.raises(AccountError, match="API key was rejected"):
        esl_assets.build(
            SAMPLE, outdir=outdir, **fake_options(fake_openai, api_key="sk-bad")
        )

    report = esl_assets.build(SAMPLE, outdir=outdir, **fake_options(fake_openai))

    assert report.outcome == "complete"
    assert_matches_disk(report, outdir)


async def test_build_interrupted_inside_running_loop(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    outdir = tmp_path / "out"
    fake_openai.hold()
    # build() must replace a handler that would only record the signal.
    with loop_like_sigint_handler() as received:
        sender = interrupt_main_thread_when_in_flight(fake_openai)
        with pytest.raises(KeyboardInterrupt):
            esl_assets.build(
                SAMPLE, outdir=outdir, **fake_options(fake_openai, limit=6)
            )
        sender.join()
        assert received == []
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler

    # build() returned only after the worker thread ended.
    assert build_threads_alive() == []
    interrupted_requests = fake_openai.count()
    fake_openai.release()
    assert_interrupted_cleanly(outdir)

    report = esl_assets.build(
        SAMPLE, outdir=outdir, **fake_options(fake_openai, limit=6)
    )

    assert report.outcome == "complete"
    assert_matches_disk(report, outdir)
    assert fake_openai.count() == interrupted_requests + report.requests


# -- abuild


async def test_abuild(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    recorder = ThreadRecorder()

    report = await esl_assets.abuild(
        SAMPLE, outdir=tmp_path, observers=[recorder], **fake_options(fake_openai)
    )

    assert report.outcome == "complete"
    assert recorder.threads == {threading.current_thread().name}
    assert_matches_disk(report, tmp_path)


async def test_abuild_cancelled_then_again(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    # One request in flight and more jobs than the planning window (four per
    # slot), so the cancellation also reaches jobs that were never sent.
    options = fake_options(fake_openai, limit=6, concurrency=1)
    fake_openai.hold()
    task = asyncio.create_task(esl_assets.abuild(SAMPLE, outdir=tmp_path, **options))
    await fake_openai.wait_in_flight_async(1, timeout_s=30)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert leftover == []
    fake_openai.release()
    assert_interrupted_cleanly(tmp_path)

    report = await esl_assets.abuild(SAMPLE, outdir=tmp_path, **options)

    assert report.outcome == "complete"
    assert_matches_disk(report, tmp_path)


async def test_abuild_after_401(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    with pytest.raises(AccountError) as caught:
        await esl_assets.abuild(
            SAMPLE, outdir=tmp_path, **fake_options(fake_openai, api_key="sk-bad")
        )
    assert isinstance(caught.value.report, BuildReport)
    assert caught.value.report.outdir is not None

    report = await esl_assets.abuild(
        SAMPLE, outdir=tmp_path, **fake_options(fake_openai)
    )

    assert report.outcome == "complete"


# -- the worker thread on its own


def test_build_thread_cancel_before_start(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    from esl_assets.api import BuildThread
    from esl_assets.settings import Settings

    settings = Settings.from_options(
        dictionary=SAMPLE, outdir=tmp_path, **fake_options(fake_openai)
    )
    worker = BuildThread(settings, [], None)
    worker.cancel()
    worker.start()
    assert worker.finished.wait(30)

    with pytest.raises(asyncio.CancelledError):
        worker.result()
    assert fake_openai.count() == 0


def test_build_uses_environment_outdir(
    fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ESL_ASSETS_OUTDIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")

    report = esl_assets.build(SAMPLE, base_url=fake_openai.base_url, limit=1)

    assert report.outdir == (tmp_path / "from-env").resolve()
    assert os.listdir(tmp_path / "from-env")


# -- a whole process, with asyncio debug mode and every log record on stderr

SCENARIOS = r"""
import asyncio
import gc
import logging
import signal
import sys
import threading

# A process started from a background job inherits an ignored SIGINT; give
# it Python's default handler, as a script run from a terminal has.
signal.signal(signal.SIGINT, signal.default_int_handler)

sys.path.insert(0, sys.argv[1])
from fake_openai import FakeOpenAI

import esl_assets

SAMPLE, OUT = sys.argv[2], sys.argv[3]
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)


def interrupt_when_in_flight(fake):
    def send():
        fake.wait_in_flight(1, timeout_s=30)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    sender = threading.Thread(target=send)
    sender.start()
    return sender


def run_interrupted(fake, outdir, options):
    fake.hold()
    sender = interrupt_when_in_flight(fake)
    try:
        esl_assets.build(SAMPLE, outdir=outdir, **options)
    except KeyboardInterrupt:
        print("interrupted", outdir)
    sender.join()
    fake.release()


def plain(fake, options):
    bad_key_options = {**options, "api_key": "sk-bad"}
    esl_assets.build(SAMPLE, outdir=OUT + "/plain-a", **options)
    try:
        esl_assets.build(SAMPLE, outdir=OUT + "/plain-b", **bad_key_options)
    except esl_assets.AccountError:
        print("401 plain")
    try:
        esl_assets.build(SAMPLE, outdir=OUT + "/plain-b", concurrency=0)
    except esl_assets.ConfigurationError:
        print("configuration error plain")
    run_interrupted(fake, OUT + "/plain-c", options)
    report = esl_assets.build(SAMPLE, outdir=OUT + "/plain-c", **options)
    print("plain", report.outcome)


async def in_loop(fake, options):
    bad_key_options = {**options, "api_key": "sk-bad"}
    for name in ("a", "b"):
        esl_assets.build(SAMPLE, outdir=OUT + "/loop-" + name, **options)
    try:
        esl_assets.build(SAMPLE, outdir=OUT + "/loop-x", **bad_key_options)
    except esl_assets.AccountError:
        print("401 loop")
    run_interrupted(fake, OUT + "/loop-c", options)
    fake.hold()
    cancelled = esl_assets.abuild(SAMPLE, outdir=OUT + "/loop-d", **options)
    task = asyncio.create_task(cancelled)
    await fake.wait_in_flight_async(1, timeout_s=30)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        print("cancelled abuild")
    fake.release()
    report = esl_assets.build(SAMPLE, outdir=OUT + "/loop-c", **options)
    print("loop", report.outcome)


with FakeOpenAI() as fake:
    options = {"base_url": fake.base_url, "api_key": "sk-test", "limit": 6}
    options["max_attempts"] = 1
    plain(fake, options)
    asyncio.run(in_loop(fake, options))
gc.collect()
print("done")
"""


@pytest.mark.slow
def test_process_stderr_has_no_asyncio_errors(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = tmp_path / "scenarios.py"
    script.write_text(SCENARIOS)
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ENVIRONMENT_SETTINGS and key != "OPENAI_API_KEY"
    }
    environment["PYTHONASYNCIODEBUG"] = "1"

    finished = subprocess.run(
        [
            sys.executable,
            "-X",
            "dev",
            str(script),
            str(Path(__file__).parent),
            str(SAMPLE),
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=environment,
        cwd=tmp_path,
    )

    assert finished.returncode == 0, finished.stderr[-3000:]
    lines = finished.stdout.splitlines()
    assert lines == [
        "401 plain",
        "configuration error plain",
        f"interrupted {tmp_path / 'out'}/plain-c",
        "plain complete",
        "401 loop",
        f"interrupted {tmp_path / 'out'}/loop-c",
        "cancelled abuild",
        "loop complete",
        "done",
    ]
    for message in (*LEAK_MESSAGES, "unclosed", "ResourceWarning"):
        assert message not in finished.stderr


def test_build_resume_uses_saved_settings(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    dictionary = tmp_path / "d.csv"
    dictionary.write_text(
        "id,uuid,word,definition\n1,u-1,cat,a small animal\n2,u-2,dog,a loyal animal\n"
    )
    outdir = tmp_path / "out"
    with pytest.raises(esl_assets.AccountError):
        esl_assets.build(
            dictionary,
            outdir=outdir,
            base_url=fake_openai.base_url,
            api_key="sk-wrong",
            audio_voice="nova",
            images=False,
            progress=False,
        )
    fake_openai.reset_records()
    report = esl_assets.build(
        dictionary,
        outdir=outdir,
        base_url=fake_openai.base_url,
        api_key="sk-test",
        resume=True,
        progress=False,
    )
    assert report.count(status=esl_assets.Status.SUCCESS) == 4
    voices = {r.body["voice"] for r in fake_openai.requests if r.body}
    assert voices == {"nova"}
    assert fake_openai.count(lane="images") == 0
    with pytest.raises(esl_assets.ResumeError):
        esl_assets.build(dictionary, outdir=outdir, resume=True, progress=False)
