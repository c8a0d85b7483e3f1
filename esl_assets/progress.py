"""Progress output of the CLI: a rich display on a terminal, plain lines elsewhere.

The library never prints; the CLI attaches one of these observers to a build.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .jobs import AssetKind, Job, JobResult, Status

_LANE_OF_KIND = {
    AssetKind.WORD: "audio",
    AssetKind.SHORTDEF: "audio",
    AssetKind.IMAGE: "images",
}


def new_progress_bars(console: Console, *, auto_refresh: bool = True) -> Progress:
    """Return the bars shared by the terminal and the notebook displays."""
    return Progress(
        TextColumn("[bold]{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        auto_refresh=auto_refresh,
    )


def status_detail(counts: Counter[str]) -> str:
    """Describe counts per status: ``success 12 error 1``."""
    return " ".join(
        f"{status.value} {counts[status.value]}"
        for status in Status
        if counts[status.value]
    )


class RichProgress:
    """Bars for all jobs, audio and images, with counts, rate and ETA.

    The totals grow while the planner reads the dictionary, so the ETA
    settles once planning has finished.
    """

    def __init__(self, console: Console | None = None) -> None:
        self._progress = new_progress_bars(console or Console(stderr=True))
        self._tasks: dict[str, TaskID] = {}
        self._counts: dict[str, Counter[str]] = {}

    def __enter__(self) -> RichProgress:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        for name in ("all", "audio", "images"):
            self._tasks[name] = self._progress.add_task(name, total=0, detail="")
            self._counts[name] = Counter()
        self._progress.start()

    def stop(self) -> None:
        self._progress.stop()

    def on_planned(self, job: Job) -> None:
        for name in ("all", _LANE_OF_KIND[job.kind]):
            task = self._progress.tasks[self._tasks[name]]
            self._progress.update(self._tasks[name], total=(task.total or 0) + 1)

    def on_result(self, job: Job, result: JobResult) -> None:
        for name in ("all", _LANE_OF_KIND[job.kind]):
            counts = self._counts[name]
            counts[result.status.value] += 1
            self._progress.update(
                self._tasks[name], advance=1, detail=status_detail(counts)
            )


class PlainProgress:
    """One plain status line every ``interval_s`` seconds, with no ANSI codes."""

    def __init__(self, stream: TextIO | None = None, interval_s: float = 5.0) -> None:
        self._stream = stream or sys.stderr
        self._interval_s = interval_s
        self._planned = 0
        self._counts: Counter[str] = Counter()
        self._started = time.monotonic()
        self._last = self._started

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        # After an error the CLI prints the error alone.
        if exc_type is None:
            self._write()

    def on_planned(self, job: Job) -> None:
        self._planned += 1

    def on_result(self, job: Job, result: JobResult) -> None:
        self._counts[result.status.value] += 1
        now = time.monotonic()
        if now - self._last >= self._interval_s:
            self._last = now
            self._write()

    def _write(self) -> None:
        done = sum(self._counts.values())
        elapsed = time.monotonic() - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self._counts.items()))
        self._stream.write(
            f"progress: {done}/{self._planned} jobs ({statuses or 'none yet'}), "
            f"{rate:.1f} jobs/s, {elapsed:.0f} s\n"
        )
        self._stream.flush()
