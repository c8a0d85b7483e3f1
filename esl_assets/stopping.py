"""Graceful stop of a running build on SIGINT (Ctrl-C) and SIGTERM.

The first signal stops taking jobs and gives the requests in flight the
build's ``grace_s`` seconds to finish and write their files. After that they
are cancelled. A second signal cancels them at once. After that the default
Ctrl-C handler is back, so a third Ctrl-C raises ``KeyboardInterrupt``. Every
way out leaves only whole files under final names, because each file is
written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from .report import BuildReport

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stoppable(Protocol):
    """A build that can stop gracefully or at once (``pipeline.Build``)."""

    def request_stop(self) -> None: ...

    def stop_now(self) -> None: ...

    async def run(self) -> BuildReport: ...


class StopSignals:
    """Turns SIGINT and SIGTERM into graceful, then immediate, stops."""

    def __init__(self, build: Stoppable, grace_s: float) -> None:
        self.build = build
        self.grace_s = grace_s
        #: Signals received so far.
        self.received = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._installed: list[signal.Signals] = []

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Handle the stop signals in ``loop``; call from the main thread."""
        self._loop = loop
        for number in STOP_SIGNALS:
            try:
                loop.add_signal_handler(number, self._on_signal, number)
            except (NotImplementedError, RuntimeError, ValueError) as error:
                # Not the main thread, or a platform without loop signal
                # support: Ctrl-C then cancels the run the default way.
                logger.debug("Cannot handle %s in this loop: %s", number.name, error)
                continue
            self._installed.append(number)

    def uninstall(self) -> None:
        """Give the signals back to their default handlers."""
        if self._loop is None:
            return
        for number in self._installed:
            self._loop.remove_signal_handler(number)
        self._installed.clear()

    def _on_signal(self, number: signal.Signals) -> None:
        self.received += 1
        if self.received == 1:
            logger.warning(
                "%s received: taking no new jobs; requests in flight have %.0f s "
                "to finish. Press Ctrl-C again to stop at once.",
                number.name,
                self.grace_s,
            )
            self.build.request_stop()
            return
        logger.warning(
            "%s received again: cancelling the requests in flight.", number.name
        )
        self.build.stop_now()
        # A third Ctrl-C falls through to KeyboardInterrupt.
        self.uninstall()


@contextmanager
def stop_signals_handled(build: Stoppable, grace_s: float) -> Iterator[StopSignals]:
    """Handle the stop signals in the running loop while the block runs."""
    handler = StopSignals(build, grace_s)
    handler.install(asyncio.get_running_loop())
    try:
        yield handler
    finally:
        handler.uninstall()


async def run_until_stopped(build: Stoppable, grace_s: float) -> BuildReport:
    """Run ``build`` with SIGINT and SIGTERM handled as graceful stops."""
    with stop_signals_handled(build, grace_s):
        return await build.run()
