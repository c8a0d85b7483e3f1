"""Lanes whose requests-per-minute limit and 429 pause are shared through Redis.

Every worker reserves each request's slot with one script call (a virtual
schedule per lane: slots one ``60 / rpm`` s apart, on Redis's clock), so N
instances together send at most ``rpm`` requests in any minute. A 429 pauses
the lane in Redis as well, and every worker learns of the pause from the
reply to its next result batch.
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import QueueError
from ..lanes import Lane
from .connection import Reconnector
from .store import JobQueue

logger = logging.getLogger(__name__)


class SharedLane(Lane):
    """A ``Lane`` whose rpm limit and pause also hold across workers."""

    def __init__(
        self,
        name: str,
        max_in_flight: int,
        queue: JobQueue,
        reconnector: Reconnector,
    ) -> None:
        # The local limiter stays off: the shared schedule replaces it.
        super().__init__(name, max_in_flight, rpm=None)
        #: Requests per minute for all workers together, or None for no limit.
        self.shared_rpm: float | None = None
        self._queue = queue
        self._reconnector = reconnector
        self._pause_tasks: set[asyncio.Task[None]] = set()

    async def acquire(self) -> None:
        """Take an in-flight slot, then wait for this request's shared slot."""
        await super().acquire()
        rpm = self.shared_rpm
        if rpm is None:
            return
        try:
            wait_s = await self._reconnector.call(
                lambda: self._queue.reserve_request_slot(self.name, rpm),
                "reserving a request slot",
            )
            if wait_s > 0:
                await asyncio.sleep(wait_s)
        except BaseException:
            await self.release()
            raise

    def record_rate_limit(self, retry_after_s: float | None) -> None:
        """Pause this lane here and, through Redis, in every other worker."""
        super().record_rate_limit(retry_after_s)
        seconds = retry_after_s if retry_after_s is not None else 1.0
        task = asyncio.get_running_loop().create_task(self._share_pause(seconds))
        self._pause_tasks.add(task)
        task.add_done_callback(self._pause_tasks.discard)

    async def _share_pause(self, seconds: float) -> None:
        try:
            await self._reconnector.call(
                lambda: self._queue.pause_lane(self.name, seconds),
                "sharing a rate-limit pause",
            )
        except QueueError as error:
            logger.warning("Lane %s: could not share its pause: %s", self.name, error)
