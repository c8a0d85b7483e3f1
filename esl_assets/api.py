"""The library entry points: ``build()`` for scripts and notebooks, ``abuild()``.

``build()`` works with or without a running event loop. Inside one (Jupyter,
IPython with autoawait) it runs the build on a worker thread with a fresh
loop of its own, because patching the running loop (``nest_asyncio``) is
known to hang async HTTP clients. Nothing is cached between calls: each build
creates its client, lanes and semaphores in the loop that runs it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path
from typing import Any

from .pipeline import BuildObserver, run_build
from .report import BuildReport
from .settings import Settings


async def abuild(
    dictionary: str | Path,
    *,
    outdir: str | Path = "assets_hires",
    concurrency: int = 5,
    observers: list[BuildObserver] | None = None,
    **options: Any,
) -> BuildReport:
    """Build every asset of ``dictionary`` and return the report.

    ``options`` are the CLI's long options with underscores, such as
    ``audio_voice="nova"``, ``images=False`` or ``provider="local"``. Raises
    ``ConfigurationError`` or ``DictionaryError`` before any request, and
    ``AccountError`` (with ``.report``) when the account stopped the run.
    """
    settings = Settings.from_options(
        dictionary=Path(dictionary), outdir=Path(outdir), concurrency=concurrency, **options
    )
    return await run_build(settings, observers=observers)


def build(
    dictionary: str | Path,
    *,
    outdir: str | Path = "assets_hires",
    concurrency: int = 5,
    **options: Any,
) -> BuildReport:
    """Run ``abuild`` to completion from synchronous code, loop or no loop."""
    coroutine = abuild(dictionary, outdir=outdir, concurrency=concurrency, **options)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
