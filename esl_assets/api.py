"""The library entry points: ``build()`` for scripts and notebooks, ``abuild()``.

``build()`` works with or without a running event loop. Without one it runs
the build with ``asyncio.run()``. Inside one (a Jupyter cell, IPython with
autoawait) it runs the build on a worker thread with a new event loop of its
own. It never patches the running loop with ``nest_asyncio``, because
patching the loop is known to hang async HTTP clients. Nothing is cached
between calls. Each build creates its client, lanes and semaphores in the
loop that runs it, so a call after a failed or interrupted one starts clean.

A KeyboardInterrupt (interrupting a notebook cell, Ctrl-C) cancels the build's
task and waits for it to end, so no request is left in flight and every file
is either complete or absent, and then propagates to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from .errors import AccountError, ConfigurationError
from .jobs import Job, JobResult
from .pipeline import BuildObserver, run_build
from .progress import RichProgress
from .report import BuildReport
from .settings import Settings, load_environment

logger = logging.getLogger(__name__)

#: Seconds between redraws of the progress display.
REFRESH_INTERVAL_S = 0.25


async def abuild(
    dictionary: str | os.PathLike[str],
    *,
    outdir: str | os.PathLike[str] | None = None,
    concurrency: int | None = None,
    progress: bool | None = None,
    observers: Sequence[BuildObserver] = (),
    **options: Any,
) -> BuildReport:
    """Build every missing asset of ``dictionary`` and return the report.

    ``outdir`` defaults to ``assets_hires`` and ``concurrency`` (requests in
    flight at most) to 5, unless ``ESL_ASSETS_OUTDIR`` or
    ``ESL_ASSETS_CONCURRENCY`` set them. ``options`` are the CLI's long
    options with underscores, such as ``audio_voice="nova"``, ``images=False``,
    ``limit=10`` or ``provider="local"``. ``progress`` None shows progress bars
    in a Jupyter notebook only, True shows them anywhere (on stderr outside a
    notebook) and False never. ``observers`` receive every planned job and
    every result, in the thread that runs the build.

    Raises ``ConfigurationError`` or ``DictionaryError`` before any request,
    and ``AccountError`` (with the partial report in ``.report``) when the
    account stopped the run. Cancelling the awaiting task cancels the build.
    """
    settings = _settings(dictionary, outdir, concurrency, options)
    display = open_progress(progress)
    try:
        return await _run(settings, observers, display)
    finally:
        if display is not None:
            display.stop()


def build(
    dictionary: str | os.PathLike[str],
    *,
    outdir: str | os.PathLike[str] | None = None,
    concurrency: int | None = None,
    progress: bool | None = None,
    observers: Sequence[BuildObserver] = (),
    **options: Any,
) -> BuildReport:
    """Run ``abuild`` to completion from synchronous code, loop or no loop.

    Takes the same arguments as ``abuild``. It blocks the calling thread until
    the build ends, so async code should ``await abuild(...)`` instead. A
    KeyboardInterrupt cancels the build, waits for it to end and propagates.
    """
    settings = _settings(dictionary, outdir, concurrency, options)
    display = open_progress(progress)
    try:
        if _loop_is_running():
            return _run_on_worker_thread(settings, observers, display)
        return asyncio.run(_run(settings, observers, display))
    finally:
        if display is not None:
            display.stop()


class ProgressDisplay(Protocol):
    """A progress display that observes a build and is redrawn periodically."""

    def on_planned(self, job: Job) -> None: ...

    def on_result(self, job: Job, result: JobResult) -> None: ...

    def refresh(self) -> None: ...

    def stop(self) -> None: ...


class TerminalProgress(RichProgress):
    """The CLI's rich bars on stderr, for ``progress=True`` outside a notebook."""

    def refresh(self) -> None:
        """Do nothing, because rich's own thread redraws a terminal display."""


def open_progress(progress: bool | None) -> ProgressDisplay | None:
    """Start the progress display that ``progress`` selects, or return None.

    The caller must call ``stop()`` on it, in a ``finally`` block.
    """
    from .notebook import NotebookProgress, in_notebook

    if progress is False:
        return None
    if in_notebook():
        notebook_display = NotebookProgress()
        notebook_display.start()
        return notebook_display
    if progress is None:
        return None
    terminal_display = TerminalProgress()
    terminal_display.start()
    return terminal_display


def _settings(
    dictionary: str | os.PathLike[str],
    outdir: str | os.PathLike[str] | None,
    concurrency: int | None,
    options: dict[str, Any],
) -> Settings:
    load_environment()
    settings = Settings.from_options(
        dictionary=Path(dictionary),
        outdir=Path(outdir) if outdir is not None else None,
        concurrency=concurrency,
        **options,
    )
    if settings.resume:
        # As on the command line: the saved settings of the unfinished run,
        # with the options given again applied (each change is logged).
        from .resume import apply_overrides, find_resume_point

        given = {"dictionary": Path(dictionary), **options}
        if concurrency is not None:
            given["concurrency"] = concurrency
        point = find_resume_point(settings.outdir)
        settings = apply_overrides(point, given, settings.outdir)
    if settings.redis_url:
        # The URL may contain a password, so the message leaves it out.
        raise ConfigurationError(
            "build() runs every job in this process and cannot use a Redis "
            "queue, but redis_url is set (by the argument or "
            "ESL_ASSETS_REDIS_URL). Unset it, or run `esl-assets build "
            "--redis-url URL` for a queue build."
        )
    return settings


def _loop_is_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class EntryIndex:
    """Records the headword of each planned entry, for ``BuildReport.show()``."""

    def __init__(self) -> None:
        self.headwords: dict[str, str] = {}

    def on_planned(self, job: Job) -> None:
        self.headwords.setdefault(job.uuid, job.word)

    def on_result(self, job: Job, result: JobResult) -> None:
        pass

    def attach(self, report: BuildReport, settings: Settings) -> None:
        """Store the headwords and the output folder on ``report``."""
        report.headwords.update(self.headwords)
        report.outdir = settings.outdir.resolve()


async def _run(
    settings: Settings,
    observers: Sequence[BuildObserver],
    display: ProgressDisplay | None,
    *,
    refresh_in_loop: bool = True,
) -> BuildReport:
    """Run the build in the running loop, redrawing ``display`` meanwhile.

    ``refresh_in_loop`` False leaves the redraws to the caller, which is the
    calling thread when the build runs on a worker thread.
    """
    index = EntryIndex()
    all_observers: list[BuildObserver] = [index, *observers]
    if display is not None:
        all_observers.append(display)
    refresher = None
    if display is not None and refresh_in_loop:
        refresher = asyncio.create_task(_refresh_periodically(display))
    try:
        report = await run_build(settings, observers=all_observers)
    except AccountError as error:
        if isinstance(error.report, BuildReport):
            index.attach(error.report, settings)
        raise
    finally:
        if refresher is not None:
            await _stop_refresher(refresher)
    index.attach(report, settings)
    return report


async def _refresh_periodically(display: ProgressDisplay) -> None:
    while True:
        await asyncio.sleep(REFRESH_INTERVAL_S)
        display.refresh()


async def _stop_refresher(refresher: asyncio.Task[None]) -> None:
    refresher.cancel()
    # asyncio.wait() neither raises the task's exception nor swallows a
    # cancellation of the calling task.
    await asyncio.wait({refresher})
    if not refresher.cancelled() and refresher.exception() is not None:
        logger.warning("The progress display failed: %r", refresher.exception())


def _run_on_worker_thread(
    settings: Settings,
    observers: Sequence[BuildObserver],
    display: ProgressDisplay | None,
) -> BuildReport:
    """Run the build on a new thread and loop, and redraw ``display`` meanwhile."""
    worker = BuildThread(settings, observers, display)
    with _sigint_raises_keyboard_interrupt():
        worker.start()
        try:
            while not worker.finished.wait(REFRESH_INTERVAL_S):
                if display is not None:
                    display.refresh()
        except KeyboardInterrupt:
            logger.warning(
                "Interrupted: cancelling the build and waiting for it to end."
            )
            worker.cancel()
            # NOTE: a second KeyboardInterrupt ends this wait, and the worker
            # thread then finishes its clean-up in the background.
            worker.finished.wait()
            raise
    return worker.result()


@contextlib.contextmanager
def _sigint_raises_keyboard_interrupt() -> Iterator[None]:
    """Make SIGINT raise KeyboardInterrupt in the main thread for a while.

    ``asyncio.run()`` and ipykernel (in cells with a top-level ``await``)
    install SIGINT handlers that only schedule a cancellation on their event
    loop. While ``build()`` blocks that loop, such a handler would leave
    Ctrl-C without effect until the build ends. An ignored SIGINT stays
    ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    current = signal.getsignal(signal.SIGINT)
    if not callable(current) or current is signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, current)


class BuildThread(threading.Thread):
    """Runs one build on a new event loop, leaving the caller's loop untouched.

    ``cancel()`` may be called from any thread, before or during the build.
    """

    def __init__(
        self,
        settings: Settings,
        observers: Sequence[BuildObserver],
        display: ProgressDisplay | None,
    ) -> None:
        super().__init__(name="esl-assets-build", daemon=True)
        self.finished = threading.Event()
        self._settings = settings
        self._observers = observers
        self._display = display
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[BuildReport] | None = None
        self._cancel_requested = False
        self._report: BuildReport | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._report = asyncio.run(self._main())
        except BaseException as error:  # noqa: BLE001 - result() re-raises it
            self._error = error
        finally:
            self.finished.set()

    async def _main(self) -> BuildReport:
        task = asyncio.current_task()
        assert task is not None
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._task = task
            if self._cancel_requested:
                task.cancel()
        try:
            return await _run(
                self._settings, self._observers, self._display, refresh_in_loop=False
            )
        finally:
            # Cleared before asyncio.run() closes the loop, so cancel() never
            # schedules a call on a closed loop.
            with self._lock:
                self._loop = None
                self._task = None

    def cancel(self) -> None:
        """Cancel the build's task. The thread ends once the task has ended."""
        with self._lock:
            self._cancel_requested = True
            if self._loop is not None and self._task is not None:
                self._loop.call_soon_threadsafe(self._task.cancel)

    def result(self) -> BuildReport:
        """Return the report, or raise what the build raised."""
        if not self.finished.is_set():
            raise RuntimeError("BuildThread.result() called before the build ended")
        if self._error is not None:
            raise self._error
        assert self._report is not None
        return self._report
