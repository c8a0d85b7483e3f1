"""Notebook support: progress bars that update in place, and inline files.

rich draws the progress bars, the same columns as the CLI's, and exports
them as HTML. The HTML goes to one notebook output, which an IPython display
handle replaces on every redraw. rich's own ``Live`` display is not used in
notebooks because in rich 15 it needs ipywidgets there, and the ipywidgets
``Output`` widget can send output written from another thread to the wrong
cell. The build reports progress from
its worker thread, while the redraws run on the cell's thread.

IPython is imported only when a notebook or a display call needs it.
"""

from __future__ import annotations

import html
import importlib
import io
import sys
import threading
import time
import wave
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.jupyter import JUPYTER_HTML_FORMAT
from rich.progress import TaskID

from .errors import ConfigurationError
from .jobs import AssetKind, Job, JobResult, Status
from .progress import new_progress_bars, status_detail
from .report import entry_of

if TYPE_CHECKING:
    from .report import BuildReport

#: Characters per line of the progress display.
DISPLAY_WIDTH = 100
#: Maximum time in seconds between redraws while nothing changes, so the
#: elapsed-time column keeps counting during slow requests.
IDLE_REDRAW_S = 1.0
#: Raw ``pcm`` speech from the API: 24 kHz, 16-bit signed little-endian, mono.
PCM_RATE_HZ = 24_000
PCM_SAMPLE_BYTES = 2


def in_notebook() -> bool:
    """Return True inside a Jupyter kernel (Notebook, Lab, VS Code, Colab)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class NotebookProgress:
    """Progress bars for all jobs and each lane, in one notebook output.

    ``on_planned`` and ``on_result`` run on the build's thread and ``refresh``
    on the cell's thread, so a lock guards the bars.
    """

    def __init__(self, *, width: int = DISPLAY_WIDTH) -> None:
        self._width = width
        self._lock = threading.Lock()
        self._progress = new_progress_bars(self._new_console(), auto_refresh=False)
        self._tasks: dict[str, TaskID] = {}
        self._totals: Counter[str] = Counter()
        self._counts: dict[str, Counter[str]] = {}
        self._handle: Any = None
        self._changed = False
        self._last_redraw = 0.0

    def start(self) -> None:
        """Display the empty bars in the current cell's output."""
        ipython_display = import_ipython_display()
        with self._lock:
            self._task("all")
            bundle = self._render()
        self._handle = ipython_display.display(bundle, raw=True, display_id=True)

    def on_planned(self, job: Job) -> None:
        with self._lock:
            for name in ("all", job.lane):
                self._totals[name] += 1
                self._progress.update(self._task(name), total=self._totals[name])
            self._changed = True

    def on_result(self, job: Job, result: JobResult) -> None:
        with self._lock:
            for name in ("all", job.lane):
                counts = self._counts[name]
                counts[result.status.value] += 1
                self._progress.update(
                    self._task(name), advance=1, detail=status_detail(counts)
                )
            self._changed = True

    def refresh(self) -> None:
        """Redraw the bars if they changed or the last redraw is a second old."""
        self._redraw(force=False)

    def stop(self) -> None:
        """Draw the final state; later calls and redraws do nothing."""
        self._redraw(force=True)
        self._handle = None

    def _redraw(self, *, force: bool) -> None:
        handle = self._handle
        if handle is None:
            return
        now = time.monotonic()
        with self._lock:
            idle = now - self._last_redraw < IDLE_REDRAW_S
            if not force and not self._changed and idle:
                return
            bundle = self._render()
            self._changed = False
            self._last_redraw = now
        handle.update(bundle, raw=True)

    def _task(self, name: str) -> TaskID:
        if name not in self._tasks:
            self._tasks[name] = self._progress.add_task(name, total=0, detail="")
            self._counts[name] = Counter()
        return self._tasks[name]

    def _render(self) -> dict[str, str]:
        console = self._new_console()
        console.print(self._progress.get_renderable())
        text = console.export_text(clear=False)
        html = console.export_html(inline_styles=True, code_format=JUPYTER_HTML_FORMAT)
        return {"text/plain": text, "text/html": html}

    def _new_console(self) -> Console:
        return Console(
            file=io.StringIO(),
            record=True,
            width=self._width,
            force_terminal=True,
            force_jupyter=False,
            color_system="truecolor",
        )


def display_entry(report: BuildReport, entry: int | str) -> None:
    """Display the audio players and images of one entry of ``report``.

    ``entry`` is an index into ``report.entries()``, a uuid or a headword.
    """
    ipython_display = import_ipython_display()
    if report.outdir is None:
        raise ConfigurationError(
            "This report has no output folder, so its files cannot be shown. "
            "show() works on reports that build() or abuild() returned."
        )
    for result in report.entry_results(entry):
        uuid = entry_of(result)
        headword = report.headwords.get(uuid, uuid)
        caption = f"{headword}: {result.kind.value} {result.file}"
        caption += f" ({result.status.value})"
        ipython_display.display(ipython_display.HTML(f"<b>{html.escape(caption)}</b>"))
        path = report.outdir / result.file
        ipython_display.display(_player(ipython_display, path, result))


def _player(ipython_display: Any, path: Path, result: JobResult) -> Any:
    """Return an IPython object that shows ``path``, or an HTML note why not."""
    if result.status is Status.ERROR:
        message = result.error or result.reason or "error"
        return ipython_display.HTML(f"<pre>{html.escape(message)}</pre>")
    if not path.is_file():
        return ipython_display.HTML(f"<i>{html.escape(path.name)} is not on disk.</i>")
    if result.kind is AssetKind.IMAGE:
        return ipython_display.Image(filename=str(path))
    if path.suffix == ".pcm":
        return ipython_display.Audio(data=pcm_to_wav(path.read_bytes()))
    return ipython_display.Audio(filename=str(path))


def pcm_to_wav(pcm: bytes) -> bytes:
    """Wrap raw API ``pcm`` speech in a WAV header, so a browser can play it."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(PCM_SAMPLE_BYTES)
        writer.setframerate(PCM_RATE_HZ)
        writer.writeframes(pcm)
    return buffer.getvalue()


def import_ipython_display() -> Any:
    """Return the ``IPython.display`` module, or raise if IPython is missing."""
    try:
        return importlib.import_module("IPython.display")
    except ImportError:
        raise ConfigurationError(
            "Showing progress or files in a notebook needs IPython. Run this in "
            "Jupyter or `pip install ipython`, or open the files in the output "
            "folder."
        ) from None
