"""Notebook progress, inline display of a report's files, and the quickstart.

IPython's ``display`` is replaced by a recorder, so these tests see what a
notebook would show without a kernel. The last test runs
``examples/quickstart.ipynb`` in a real kernel through nbclient.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import shutil
import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import IPython
import IPython.display
import pytest
from fake_openai import FakeOpenAI

import esl_assets
import esl_assets.notebook as notebook
from esl_assets import (
    AccountError,
    AssetKind,
    BuildReport,
    ConfigurationError,
    JobResult,
)
from esl_assets.jobs import Job, Status
from esl_assets.notebook import NotebookProgress, display_entry, in_notebook, pcm_to_wav
from esl_assets.settings import ENVIRONMENT_SETTINGS

REPOSITORY = Path(__file__).resolve().parent.parent
SAMPLE = Path(__file__).parent / "data" / "sample.sqlite"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
ADTS = b"\xff\xf1\x50\x80\x02\x1f\xfc" + b"\x00" * 32
UUID = "8e6f44da-7029-5537-b5de-d15f26b6b41f"
OTHER_UUID = "944b122a-9e5e-5742-9f14-c3732d8554a3"


class FakeHandle:
    """Stands in for IPython's ``DisplayHandle`` and records every update."""

    def __init__(self, bundle: dict[str, str]) -> None:
        self.bundles = [bundle]
        self.update_threads: set[str] = set()
        self.changed = threading.Condition()
        #: Functions called after each update, on the updating thread.
        self.listeners: list[Any] = []

    def update(self, bundle: dict[str, str], raw: bool = False) -> None:
        assert raw
        with self.changed:
            self.bundles.append(bundle)
            self.update_threads.add(threading.current_thread().name)
            self.changed.notify_all()
        for listener in self.listeners:
            listener()

    def wait_for(self, predicate: Any, timeout_s: float = 30.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self.bundles[-1]), timeout_s)


class DisplayRecorder:
    """Replaces ``IPython.display.display``: keeps objects and progress handles."""

    def __init__(self) -> None:
        self.objects: list[Any] = []
        self.handles: list[FakeHandle] = []

    def __call__(self, *objects: Any, raw: bool = False, display_id: Any = None) -> Any:
        if display_id:
            handle = FakeHandle(objects[0])
            self.handles.append(handle)
            return handle
        self.objects.extend(objects)
        return None


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for variable in (*ENVIRONMENT_SETTINGS, "OPENAI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> DisplayRecorder:
    display = DisplayRecorder()
    monkeypatch.setattr(IPython.display, "display", display)
    return display


@pytest.fixture
def notebook_kernel(
    monkeypatch: pytest.MonkeyPatch, recorder: DisplayRecorder
) -> Iterator[list[int]]:
    """Pretend to run in a Jupyter kernel and count starts and stops of the bars."""
    monkeypatch.setattr(notebook, "in_notebook", lambda: True)
    calls = [0, 0]
    start, stop = NotebookProgress.start, NotebookProgress.stop

    def counting_start(self: NotebookProgress) -> None:
        calls[0] += 1
        start(self)

    def counting_stop(self: NotebookProgress) -> None:
        calls[1] += 1
        stop(self)

    monkeypatch.setattr(NotebookProgress, "start", counting_start)
    monkeypatch.setattr(NotebookProgress, "stop", counting_stop)
    yield calls


def fake_options(fake: FakeOpenAI, **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "base_url": fake.base_url,
        "api_key": "sk-test",
        "limit": 2,
        "max_attempts": 1,
    }
    options.update(overrides)
    return options


def bar_line(bundle: dict[str, str], name: str) -> str:
    """Return the line of the bar called ``name`` in a display bundle."""
    for line in bundle["text/plain"].splitlines():
        if line.startswith(name + " "):
            return line
    raise AssertionError(f"no {name!r} bar in {bundle['text/plain']!r}")


def completed(bundle: dict[str, str], name: str = "all") -> tuple[int, int]:
    match = re.search(r"(\d+)/(\d+)", bar_line(bundle, name))
    assert match is not None
    return int(match[1]), int(match[2])


def make_job(kind: AssetKind, uuid: str = UUID, definition_id: str = "1") -> Job:
    extension = "png" if kind is AssetKind.IMAGE else "aac"
    return Job(
        kind=kind,
        uuid=uuid,
        definition_id=definition_id,
        file=f"{kind.value}_{uuid}_{definition_id}.{extension}",
        text="be",
        params={},
        word="be",
    )


def make_result(job: Job, status: Status = Status.SUCCESS, **fields: Any) -> JobResult:
    return JobResult(status, job.file, job.kind, ref=job.ref, **fields)


# -- detecting a notebook


def test_in_notebook_outside_kernel() -> None:
    assert in_notebook() is False


def test_in_notebook_with_kernel_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    class KernelShell:
        kernel = object()

    monkeypatch.setattr(IPython, "get_ipython", lambda: KernelShell())
    assert in_notebook() is True

    class TerminalShell:
        pass

    monkeypatch.setattr(IPython, "get_ipython", lambda: TerminalShell())
    assert in_notebook() is False


# -- the progress display


def test_notebook_progress_advances(
    recorder: DisplayRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr(notebook.time, "monotonic", lambda: clock[0])
    progress = NotebookProgress()
    progress.start()
    assert len(recorder.handles) == 1
    handle = recorder.handles[0]
    assert completed(handle.bundles[0]) == (0, 0)

    jobs = [
        make_job(AssetKind.WORD),
        make_job(AssetKind.SHORTDEF),
        make_job(AssetKind.IMAGE),
    ]
    for job in jobs:
        progress.on_planned(job)
    progress.on_result(jobs[0], make_result(jobs[0]))
    progress.on_result(jobs[1], make_result(jobs[1], Status.ERROR, error="failed"))
    progress.refresh()

    latest = handle.bundles[-1]
    assert completed(latest) == (2, 3)
    assert completed(latest, "audio") == (2, 2)
    assert completed(latest, "images") == (0, 1)
    assert "success 1 error 1" in bar_line(latest, "all")
    assert "<pre" in latest["text/html"]

    # Unchanged bars are redrawn only after IDLE_REDRAW_S.
    progress.refresh()
    assert len(handle.bundles) == 2
    clock[0] += notebook.IDLE_REDRAW_S
    progress.refresh()
    assert len(handle.bundles) == 3

    progress.on_result(jobs[2], make_result(jobs[2]))
    progress.stop()
    assert completed(handle.bundles[-1]) == (3, 3)
    count = len(handle.bundles)
    progress.refresh()
    progress.stop()
    assert len(handle.bundles) == count


async def test_build_progress_in_notebook_thread(
    fake_openai: FakeOpenAI,
    notebook_kernel: list[int],
    recorder: DisplayRecorder,
    tmp_path: Path,
) -> None:
    fake_openai.hold()

    def release_after_partial_redraw() -> None:
        fake_openai.wait_in_flight(1, timeout_s=30)
        handle = recorder.handles[0]
        handle.wait_for(lambda bundle: 0 < completed(bundle)[1])
        fake_openai.release()

    releaser = threading.Thread(target=release_after_partial_redraw)
    releaser.start()
    report = esl_assets.build(SAMPLE, outdir=tmp_path, **fake_options(fake_openai))
    releaser.join()

    handle = recorder.handles[0]
    totals = [completed(bundle) for bundle in handle.bundles]
    assert any(done < total for done, total in totals[1:])
    assert totals[-1] == (len(report.results), len(report.results))
    assert [done for done, _ in totals] == sorted(done for done, _ in totals)
    assert handle.update_threads == {threading.current_thread().name}
    assert notebook_kernel == [1, 1]


async def test_abuild_progress_in_notebook(
    fake_openai: FakeOpenAI,
    notebook_kernel: list[int],
    recorder: DisplayRecorder,
    tmp_path: Path,
) -> None:
    fake_openai.hold()
    task = asyncio.create_task(
        esl_assets.abuild(SAMPLE, outdir=tmp_path, **fake_options(fake_openai))
    )
    await fake_openai.wait_in_flight_async(1, timeout_s=30)
    # The refresher task redraws while the request is held.
    redrawn = asyncio.Event()
    recorder.handles[0].listeners.append(redrawn.set)
    await asyncio.wait_for(redrawn.wait(), timeout=30)
    assert completed(recorder.handles[0].bundles[-1])[0] == 0
    fake_openai.release()

    report = await task

    assert completed(recorder.handles[0].bundles[-1]) == (
        len(report.results),
        len(report.results),
    )
    assert notebook_kernel == [1, 1]


async def test_progress_stopped_after_failures(
    fake_openai: FakeOpenAI, notebook_kernel: list[int], tmp_path: Path
) -> None:
    with pytest.raises(AccountError):
        esl_assets.build(
            SAMPLE, outdir=tmp_path, **fake_options(fake_openai, api_key="sk-bad")
        )
    assert notebook_kernel == [1, 1]

    with pytest.raises(AccountError):
        await esl_assets.abuild(
            SAMPLE, outdir=tmp_path, **fake_options(fake_openai, api_key="sk-bad")
        )
    assert notebook_kernel == [2, 2]

    fake_openai.hold()
    task = asyncio.create_task(
        esl_assets.abuild(SAMPLE, outdir=tmp_path, **fake_options(fake_openai))
    )
    await fake_openai.wait_in_flight_async(1, timeout_s=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    fake_openai.release()
    assert notebook_kernel == [3, 3]

    report = esl_assets.build(SAMPLE, outdir=tmp_path, **fake_options(fake_openai))
    assert report.outcome == "complete"
    assert notebook_kernel == [4, 4]


def test_progress_false_in_notebook(
    fake_openai: FakeOpenAI,
    notebook_kernel: list[int],
    recorder: DisplayRecorder,
    tmp_path: Path,
) -> None:
    esl_assets.build(
        SAMPLE, outdir=tmp_path, progress=False, **fake_options(fake_openai)
    )
    assert notebook_kernel == [0, 0]
    assert recorder.handles == []


def test_no_progress_by_default_outside_notebook(
    fake_openai: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    esl_assets.build(SAMPLE, outdir=tmp_path, **fake_options(fake_openai))
    assert "all" not in capfd.readouterr().err


def live_refresh_threads() -> list[threading.Thread]:
    """Return rich's refresh threads that have not been told to stop.

    ``Live.stop()`` sets the thread's ``done`` event without joining it, so a
    stopped display's thread may still be alive for a moment.
    """
    from rich.live import _RefreshThread

    return [
        thread
        for thread in threading.enumerate()
        if isinstance(thread, _RefreshThread) and not thread.done.is_set()
    ]


def test_terminal_progress_stopped_after_failure(
    fake_openai: FakeOpenAI, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(AccountError):
        esl_assets.build(
            SAMPLE,
            outdir=tmp_path,
            progress=True,
            **fake_options(fake_openai, api_key="sk-bad"),
        )
    assert live_refresh_threads() == []

    report = esl_assets.build(
        SAMPLE, outdir=tmp_path, progress=True, **fake_options(fake_openai)
    )

    assert report.outcome == "complete"
    assert f"{len(report.results)}/{len(report.results)}" in capfd.readouterr().err
    assert live_refresh_threads() == []


# -- showing a report's files


@pytest.fixture
def report(tmp_path: Path) -> BuildReport:
    """A report of two entries with files on disk, one failed and one missing."""
    word = make_job(AssetKind.WORD, definition_id="0")
    shortdef = make_job(AssetKind.SHORTDEF)
    image = make_job(AssetKind.IMAGE)
    failed = make_job(AssetKind.IMAGE, definition_id="2")
    other = make_job(AssetKind.WORD, uuid=OTHER_UUID, definition_id="0")
    (tmp_path / word.file).write_bytes(ADTS)
    (tmp_path / shortdef.file).write_bytes(ADTS)
    (tmp_path / image.file).write_bytes(PNG)
    result = BuildReport(outdir=tmp_path, headwords={UUID: "be", OTHER_UUID: "person"})
    result.add(make_result(image))
    result.add(
        make_result(
            failed, Status.ERROR, reason="moderation_blocked", error="<refused>"
        )
    )
    result.add(make_result(shortdef))
    result.add(make_result(other, Status.DRYRUN))
    result.add(make_result(word, Status.SKIPPED, reason="exists"))
    return result


def test_entries_sorted_by_headword(report: BuildReport) -> None:
    assert report.entries() == [UUID, OTHER_UUID]


def test_entry_results_order(report: BuildReport) -> None:
    kinds = [r.kind for r in report.entry_results(0)]
    assert kinds == [
        AssetKind.WORD,
        AssetKind.SHORTDEF,
        AssetKind.IMAGE,
        AssetKind.IMAGE,
    ]
    assert report.entry_results("person") == report.entry_results(1)
    assert report.entry_results("BE") == report.entry_results(UUID)
    assert report.entry_results(-1) == report.entry_results(OTHER_UUID)


def test_entry_results_unknown(report: BuildReport) -> None:
    with pytest.raises(IndexError, match="2 entries"):
        report.entry_results(2)
    with pytest.raises(LookupError, match="'cat'"):
        report.entry_results("cat")


def test_show_displays_players(report: BuildReport, recorder: DisplayRecorder) -> None:
    report.show("be")

    captions = [o.data for o in recorder.objects[0::2]]
    players = recorder.objects[1::2]
    assert len(captions) == 4
    assert all(isinstance(c, str) and c.startswith("<b>be: ") for c in captions)
    assert isinstance(players[0], IPython.display.Audio)
    assert players[0].data == ADTS
    assert players[0].mimetype == "audio/aac"
    assert isinstance(players[1], IPython.display.Audio)
    assert isinstance(players[2], IPython.display.Image)
    assert players[2].data == PNG
    assert isinstance(players[3], IPython.display.HTML)
    assert "&lt;refused&gt;" in players[3].data


def test_show_file_not_on_disk(report: BuildReport, recorder: DisplayRecorder) -> None:
    report.show(1)

    assert "person" in recorder.objects[0].data
    assert "is not on disk" in recorder.objects[1].data


def test_show_pcm_as_wav(tmp_path: Path, recorder: DisplayRecorder) -> None:
    job = make_job(AssetKind.WORD, definition_id="0")
    job = Job(
        **{**job.to_dict(), "kind": AssetKind.WORD, "file": job.file[:-3] + "pcm"}
    )
    (tmp_path / job.file).write_bytes(b"\x01\x00" * 240)
    report = BuildReport(outdir=tmp_path)
    report.add(make_result(job))

    report.show(0)

    audio = recorder.objects[1]
    assert isinstance(audio, IPython.display.Audio)
    assert audio.data[:4] == b"RIFF"


def test_show_needs_outdir(recorder: DisplayRecorder) -> None:
    report = BuildReport()
    report.add(make_result(make_job(AssetKind.WORD)))
    with pytest.raises(ConfigurationError, match="no output folder"):
        display_entry(report, 0)


def test_pcm_to_wav() -> None:
    pcm = bytes(range(256)) * 6
    with wave.open(io.BytesIO(pcm_to_wav(pcm))) as reader:
        assert reader.getnchannels() == 1
        assert reader.getsampwidth() == 2
        assert reader.getframerate() == 24_000
        assert reader.readframes(reader.getnframes()) == pcm


def test_report_html(report: BuildReport) -> None:
    html = report._repr_html_()

    assert "<th>word</th>" in html
    assert "<th>shortdef</th>" in html
    assert "&lt;refused&gt;" in html
    assert "<refused>" not in html
    assert "1 job(s) failed" in html
    assert str(report.outdir) in html


def test_report_html_without_jobs() -> None:
    html = BuildReport()._repr_html_()
    assert "no jobs" in html
    assert "<th>word</th>" not in html


def test_report_to_dict_outdir(report: BuildReport) -> None:
    assert report.to_dict()["outdir"] == str(report.outdir)
    assert "outdir" not in BuildReport().to_dict()


# -- the quickstart notebook


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path: Path) -> None:
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    for name in ("quickstart.ipynb", "sample.sqlite"):
        shutil.copy(REPOSITORY / "examples" / name, tmp_path / name)
    notebook_file = nbformat.read(tmp_path / "quickstart.ipynb", as_version=4)
    logging.getLogger("traitlets").setLevel(logging.ERROR)

    client = nbclient.NotebookClient(
        notebook_file,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()

    outputs = [
        o
        for cell in notebook_file.cells
        if cell.cell_type == "code"
        for o in cell.outputs
    ]
    assert not [o for o in outputs if o.output_type == "error"]
    bundles = [o.data for o in outputs if "data" in o]
    progress = [b for b in bundles if b.get("text/plain", "").startswith("all ")]
    assert len(progress) == 2
    done, total = completed(progress[0])
    assert done == total > 0
    assert any("<table>" in b.get("text/html", "") for b in bundles)
    assert any("<audio" in b.get("text/html", "") for b in bundles)
    assert any("image/png" in b for b in bundles)
    assert (tmp_path / "quickstart_assets").is_dir()
    assets = list((tmp_path / "quickstart_assets").iterdir())
    assert len([p for p in assets if p.suffix == ".png"]) > 0
