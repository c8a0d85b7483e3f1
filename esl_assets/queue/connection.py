"""Connect to Redis, and keep calling it through outages with backoff.

The client has no retries of its own (redis-py's default would repeat a Lua
script after a timeout on its own schedule); ``Reconnector`` decides instead.
Every operation the worker sends is safe to repeat: enqueue and finish are
idempotent, the reaper and retire scripts act on the state they find, and a
claim whose reply was lost is adopted later from the worker's claims list.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import QueueError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a blocking pop waits on the server; shorter than the socket timeout.
BLOCK_TIMEOUT_S = 1.0
SOCKET_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
#: Errors after which a call is repeated once Redis responds again.
RETRYABLE_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0
#: A worker gives up (exit 2) when Redis stays unreachable this long.
MAX_OUTAGE_S = 600.0


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        host = netloc.rsplit("@", 1)[-1]
        netloc = f"{user}:***@{host}"
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "password" for key, _ in query):
        redacted = [(k, "***" if k == "password" else v) for k, v in query]
        parts = parts._replace(query=urllib.parse.urlencode(redacted))
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _scrub(message: str, url: str) -> str:
    password = urllib.parse.urlsplit(url).password
    return message.replace(password, "***") if password else message


async def open_redis(url: str) -> Redis:
    """Connect to ``url`` and check it with PING; raise QueueError on failure."""
    shown = redact_url(url)
    try:
        client: Redis = Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as error:
        raise QueueError(
            f"--redis-url {shown} is invalid ({_scrub(str(error), url)}); use "
            "redis://[:PASSWORD@]HOST[:PORT][/DB] or rediss:// for TLS."
        ) from None
    try:
        await client.ping()
    except AuthenticationError as error:
        await client.aclose()
        raise QueueError(
            f"Redis at {shown} rejected the credentials ({_scrub(str(error), url)});"
            " check the user and password in --redis-url."
        ) from None
    except (*RETRYABLE_ERRORS, ResponseError) as error:
        await client.aclose()
        raise QueueError(
            f"Cannot connect to Redis at {shown}: "
            f"{_scrub(str(error), url).rstrip('.')}. Start "
            "Redis there, or pass the right --redis-url (or ESL_ASSETS_REDIS_URL)."
        ) from None
    return client


class Reconnector:
    """Repeats Redis operations through an outage, with capped backoff.

    One instance serves every task of a worker, so an outage is logged once
    when it starts and once when it ends, not once per task.
    """

    def __init__(self, url: str, *, max_outage_s: float = MAX_OUTAGE_S) -> None:
        self.shown_url = redact_url(url)
        self.max_outage_s = max_outage_s
        #: Number of calls that failed and were repeated.
        self.retries = 0
        self._outage_started: float | None = None

    @property
    def in_outage(self) -> bool:
        return self._outage_started is not None

    async def call(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        """Await ``operation()`` until it succeeds; raise QueueError after too long."""
        delay_s = BACKOFF_FIRST_S
        while True:
            try:
                result = await operation()
            except RETRYABLE_ERRORS as error:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # The error came from tearing down a cancelled call.
                    raise
                self._note_failure(error, what)
                await asyncio.sleep(delay_s * random.uniform(0.5, 1.0))
                delay_s = min(BACKOFF_MAX_S, delay_s * 2)
                continue
            self._note_success()
            return result

    def _note_failure(self, error: BaseException, what: str) -> None:
        self.retries += 1
        now = time.monotonic()
        if self._outage_started is None:
            self._outage_started = now
            logger.warning(
                "Redis at %s failed while %s (%s: %s); reconnecting with backoff.",
                self.shown_url,
                what,
                type(error).__name__,
                error,
            )
            return
        if now - self._outage_started > self.max_outage_s:
            raise QueueError(
                f"Redis at {self.shown_url} has been unreachable for more than "
                f"{self.max_outage_s:.0f} s (last error: {error}); giving up. "
                "Start Redis again, then restart the workers."
            ) from None

    def _note_success(self) -> None:
        if self._outage_started is None:
            return
        logger.warning(
            "Redis at %s responds again after %.1f s.",
            self.shown_url,
            time.monotonic() - self._outage_started,
        )
        self._outage_started = None
