"""Lanes: separate request limits for audio and images.

Each lane caps its requests in flight, can be paused as a whole after a
rate-limit 429, adapts its cap (additive increase on success, multiplicative
decrease on a 429) and optionally keeps a client-side requests-per-minute
limit. A paused or slow image lane never holds up the audio lane, because
each lane has its own jobs and its own cap.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from dataclasses import dataclass, field

from aiolimiter import AsyncLimiter

logger = logging.getLogger(__name__)


@dataclass
class LaneStats:
    """Counters of one lane, reported in the summary."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    fatal: int = 0
    latencies_s: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, float | int | None]:
        latencies = sorted(self.latencies_s)
        mean = sum(latencies) / len(latencies) if latencies else None
        p95 = (
            latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
            if latencies
            else None
        )
        return {
            "requests": self.requests,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
            "fatal": self.fatal,
            "latency_mean_s": round(mean, 4) if mean is not None else None,
            "latency_p95_s": round(p95, 4) if p95 is not None else None,
        }


def make_rpm_limiter(rpm: float) -> AsyncLimiter:
    """Return a leaky bucket that allows ``rpm`` requests per minute.

    The bucket holds about one second of requests (at least one), so a start
    or a pause does not release a whole minute's worth at once.
    """
    period_s = max(1.0, 60.0 / rpm)
    return AsyncLimiter(max_rate=max(1.0, rpm * period_s / 60.0), time_period=period_s)


class Lane:
    """Admission control for the requests of one kind."""

    def __init__(self, name: str, max_in_flight: int, rpm: float | None = None) -> None:
        self.name = name
        self.max_in_flight = max_in_flight
        self.stats = LaneStats()
        self._limit = float(max_in_flight)
        self._in_flight = 0
        self._paused_until = 0.0
        self._last_decrease = 0.0
        # Requests waiting for a slot, first come first served. A release
        # hands its slot to the first waiter, so one release wakes one task.
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._pause_end: asyncio.TimerHandle | None = None
        self._rpm = make_rpm_limiter(rpm) if rpm else None

    def __repr__(self) -> str:
        return (
            f"<Lane {self.name} in_flight={self._in_flight} "
            f"limit={self.limit}/{self.max_in_flight}>"
        )

    @property
    def limit(self) -> int:
        """The current cap on requests in flight (1 to ``max_in_flight``)."""
        return max(1, math.floor(self._limit))

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def acquire(self) -> None:
        """Wait until the lane is not paused and has room for one more request."""
        if self._waiters or not self._admit():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            self._wake_at_pause_end()
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    # The slot was handed over just before the cancel.
                    self._in_flight -= 1
                    self._hand_over()
                elif waiter in self._waiters:
                    # A release may have dropped it already (see _hand_over).
                    self._waiters.remove(waiter)
                raise
        if self._rpm is not None:
            try:
                await self._rpm.acquire()
            except BaseException:
                await self.release()
                raise

    async def release(self) -> None:
        self._in_flight -= 1
        self._hand_over()

    def _admit(self) -> bool:
        """Take a slot if the lane has room and is not paused."""
        if self._in_flight >= self.limit or self._paused_until > time.monotonic():
            return False
        self._in_flight += 1
        return True

    def _hand_over(self) -> None:
        """Give free slots to the waiters in order, unless the lane is paused."""
        while self._waiters and self._admit():
            waiter = self._waiters.popleft()
            if waiter.done():
                # Cancelled while waiting: give the slot to the next one.
                self._in_flight -= 1
                continue
            waiter.set_result(None)
        self._wake_at_pause_end()

    def _wake_at_pause_end(self) -> None:
        """Make sure the waiters are served when the current pause ends."""
        delay = self._paused_until - time.monotonic()
        if not self._waiters or delay <= 0:
            return
        if self._pause_end is not None:
            if self._pause_end.when() >= self._paused_until - 0.001:
                return
            self._pause_end.cancel()
        loop = asyncio.get_running_loop()
        self._pause_end = loop.call_later(delay, self._end_pause)

    def _end_pause(self) -> None:
        self._pause_end = None
        self._hand_over()

    def record_success(self) -> None:
        """Raise the cap by about one request per round of successes."""
        if self._limit < self.max_in_flight:
            self._limit = min(self.max_in_flight, self._limit + 1.0 / self._limit)
            self._hand_over()

    def record_rate_limit(self, retry_after_s: float | None) -> None:
        """Halve the cap (once per pause) and pause the lane."""
        now = time.monotonic()
        self.stats.rate_limited += 1
        if now - self._last_decrease > (retry_after_s or 1.0):
            self._limit = max(1.0, self._limit / 2)
            self._last_decrease = now
            logger.warning(
                "Lane %s was rate limited; lowering its cap to %d in flight.",
                self.name,
                self.limit,
            )
        self.pause(retry_after_s if retry_after_s is not None else 1.0)

    def pause(self, seconds: float) -> None:
        """Admit no new request for ``seconds`` (a longer pause wins)."""
        until = time.monotonic() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self._wake_at_pause_end()

    def observe_headers(self, remaining: int | None, reset_s: float | None) -> None:
        """Slow down before a 429 when the server reports the window nearly used.

        ``remaining`` and ``reset_s`` come from ``x-ratelimit-remaining-requests``
        and ``x-ratelimit-reset-requests``. When fewer requests remain than are
        in flight, new ones wait until the window resets.
        """
        if remaining is None or reset_s is None:
            return
        if remaining < self._in_flight:
            self.pause(reset_s)
