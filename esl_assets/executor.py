"""Run one job: check the disk, send the request with retries, write the file.

The same ``JobRunner`` serves the local pipeline and the Redis queue worker.
A job takes a lane slot and an overall concurrency slot only while its
request is in flight. While it waits to retry, it keeps neither.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
from openai import AsyncOpenAI

from .failures import Failure, FailureKind, classify, parse_reset_duration
from .generate import AssetApi, BadResponseError, Generated
from .jobs import AssetKind, Job, JobResult, Status
from .lanes import Lane
from .models import MAX_IMAGE_PROMPT_CHARS, MAX_SPEECH_CHARS
from .settings import Settings
from .storage import (
    FileWriter,
    check_file_name,
    confined_path,
    content_problem,
    existing_file_problem,
)

logger = logging.getLogger(__name__)

#: First backoff step in seconds; attempt n waits up to BASE * 2**(n-1).
BACKOFF_BASE_S = 1.0
#: Failed connections, with no response at all yet, after which a run stops
#: as unreachable (at least this many, and at least twice --concurrency).
UNREACHABLE_AFTER = 10


def precheck(job: Job) -> JobResult | None:
    """Return the result of a job that must not be sent, or None.

    Empty texts are skipped and over-long texts fail, both without a request.
    """
    if not job.text.strip():
        return JobResult(
            Status.SKIPPED, job.file, job.kind, reason="empty_text", ref=job.ref
        )
    limit = MAX_IMAGE_PROMPT_CHARS if job.kind is AssetKind.IMAGE else MAX_SPEECH_CHARS
    if len(job.text) > limit:
        what = "image prompt" if job.kind is AssetKind.IMAGE else "speech input"
        return JobResult(
            Status.ERROR,
            job.file,
            job.kind,
            reason="too_long",
            error=(
                f"The {what} has {len(job.text)} characters; the API accepts at "
                f"most {limit}. Shorten the text in the dictionary."
            ),
            ref=job.ref,
        )
    return None


@dataclass
class RunState:
    """State shared by every job of one run."""

    #: Set when the run must take no new requests (fatal failure or a stop).
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    #: The failure that stopped the run, if an account-level one did.
    fatal: Failure | None = None
    #: HTTP responses of any status received, and requests that could not
    #: connect: a run with many of the latter and none of the former stops.
    responses: int = 0
    connection_failures: int = 0


class JobRunner:
    """Executes jobs against one client with shared lanes and limits."""

    def __init__(
        self,
        client: AsyncOpenAI | None,
        settings: Settings,
        outdir: Path,
        lanes: dict[str, Lane],
        state: RunState | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.outdir = outdir
        self.lanes = lanes
        self.state = state or RunState()
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._timeouts = {
            "audio": _timeout(settings.audio_timeout_s, settings.connect_timeout_s),
            "images": _timeout(settings.image_timeout_s, settings.connect_timeout_s),
        }
        self._deadlines_s = {
            name: _total_deadline_s(timeout) for name, timeout in self._timeouts.items()
        }
        self._api = (
            AssetApi(client, card_fields=settings.provider == "local")
            if client is not None
            else None
        )
        self._outdir_text = str(outdir)
        self._writer = FileWriter()

    async def run(self, job: Job, *, force: bool = False) -> JobResult:
        """Run ``job`` to a result; ``force`` regenerates a valid existing file."""
        result = self.settle_without_request(job, force=force)
        if result is not None:
            return result
        return await self.execute(job)

    def settle_without_request(
        self, job: Job, *, force: bool = False
    ) -> JobResult | None:
        """Return the result of a job that needs no request, or None.

        That is a job with an empty or over-long text, a valid file already on
        disk (unless ``force``), or any job in a dry run.
        """
        result = precheck(job)
        if result is not None:
            return result
        try:
            check_file_name(job.file)
        except ValueError as error:
            return self._error(job, "unsafe_file_name", str(error))
        path = os.path.join(self._outdir_text, job.file)
        if not force and existing_file_problem(path) is None:
            return JobResult(
                Status.SKIPPED, job.file, job.kind, reason="exists", ref=job.ref
            )
        if self.settings.dryrun:
            return JobResult(Status.DRYRUN, job.file, job.kind, ref=job.ref)
        return None

    async def execute(self, job: Job) -> JobResult:
        """Send the job's request, with retries, and write the file."""
        return await self._run_attempts(job, confined_path(self.outdir, job.file))

    async def _run_attempts(self, job: Job, path: Path) -> JobResult:
        lane = self.lanes[job.lane]
        started = time.monotonic()
        failure: Failure | None = None
        attempt = 0
        while attempt < self.settings.max_attempts:
            if self.state.stop.is_set():
                return self._not_attempted(job, attempt, failure)
            attempt += 1
            if attempt > 1:
                lane.stats.retries += 1
            outcome = await self._attempt(job, lane)
            if isinstance(outcome, Generated):
                return await self._finish(job, path, outcome, attempt, started)
            failure = outcome
            if failure.reason == "stopped":
                return self._not_attempted(job, attempt - 1, None)
            if failure.kind is not FailureKind.TRANSIENT:
                break
            if attempt < self.settings.max_attempts:
                await self._wait_before_retry(job, lane, failure, attempt)
        assert failure is not None
        if failure.kind is FailureKind.FATAL:
            self._stop_for(failure, lane)
        return self._failed(job, failure, attempt, started)

    async def _attempt(self, job: Job, lane: Lane) -> Generated | Failure:
        stopped = Failure(FailureKind.FATAL, "stopped", "The run was stopped.")
        api = self._api
        if api is None:
            raise RuntimeError("JobRunner.client is None outside a dry run")
        # Built before the job waits for a slot, so that a freed slot goes
        # straight to sending.
        request = api.request_for(job, self._timeouts[job.lane])
        await lane.acquire()
        try:
            if self.state.stop.is_set():
                return stopped
            async with self._slots:
                # The stop may have come while this job waited for a slot.
                if self.state.stop.is_set():
                    return stopped
                outcome = await self._request(api, request, job, lane)
        finally:
            await lane.release()
        if isinstance(outcome, Failure):
            return outcome
        # The request is over. Let the job that took the slot send its
        # request before this one decodes the body and writes the file.
        await asyncio.sleep(0)
        return _decoded(job, outcome)

    async def _request(
        self, api: AssetApi, request: httpx2.Request, job: Job, lane: Lane
    ) -> httpx2.Response | Failure:
        sent = time.monotonic()
        lane.stats.requests += 1
        try:
            # The httpx2 timeouts bound each phase, and this deadline also
            # bounds a server that trickles a body slowly enough to dodge them.
            async with asyncio.timeout(self._deadlines_s[job.lane]):
                response = await api.send(request)
        except TimeoutError:
            return Failure(FailureKind.TRANSIENT, "timeout", "The request timed out.")
        except Exception as error:  # noqa: BLE001 - classify() re-raises unknown types
            try:
                failure = classify(error)
            except TypeError:
                raise error from None
            if failure.reason == "connection":
                return self._connection_failed(failure)
            self.state.responses += 1
            if failure.is_rate_limit:
                lane.record_rate_limit(failure.retry_after_s)
            return failure
        self.state.responses += 1
        lane.stats.latencies_s.append(time.monotonic() - sent)
        lane.record_success()
        _observe_rate_headers(lane, response.headers)
        return response

    def _connection_failed(self, failure: Failure) -> Failure:
        """Count a failed connection, and stop the run if no response ever came."""
        state = self.state
        state.connection_failures += 1
        threshold = max(UNREACHABLE_AFTER, 2 * self.settings.concurrency)
        if state.responses or state.connection_failures < threshold:
            return failure
        return Failure(
            FailureKind.FATAL,
            "unreachable",
            f"{state.connection_failures} connection attempts failed and no "
            f"response came back. The last: {failure.message}",
        )

    async def _wait_before_retry(
        self, job: Job, lane: Lane, failure: Failure, attempt: int
    ) -> None:
        cap = self.settings.max_retry_wait_s
        if failure.retry_after_s is not None:
            delay = min(failure.retry_after_s, cap)
        else:
            delay = random.uniform(0, min(cap, BACKOFF_BASE_S * 2 ** (attempt - 1)))
        logger.warning(
            "%s attempt %d failed (%s: %s); retrying in %.1f s.",
            job.ref,
            attempt,
            failure.reason,
            failure.message,
            delay,
        )
        stop_wait = asyncio.ensure_future(self.state.stop.wait())
        try:
            await asyncio.wait({stop_wait}, timeout=delay)
        finally:
            stop_wait.cancel()

    async def _finish(
        self, job: Job, path: Path, generated: Generated, attempts: int, started: float
    ) -> JobResult:
        try:
            await self._writer.write(path, generated.data)
        except OSError as error:
            return self._error(
                job,
                "write_failed",
                f"Writing {path} failed: {error.strerror or error}. Check the disk "
                "space and permissions of --outdir.",
                attempts=attempts,
            )
        return JobResult(
            Status.SUCCESS,
            job.file,
            job.kind,
            attempts=attempts,
            duration_s=time.monotonic() - started,
            bytes=len(generated.data),
            usage=generated.usage,
            ref=job.ref,
        )

    def _stop_for(self, failure: Failure, lane: Lane) -> None:
        lane.stats.fatal += 1
        if self.state.fatal is None and failure.reason != "stopped":
            self.state.fatal = failure
        self.state.stop.set()

    def _failed(
        self, job: Job, failure: Failure, attempts: int, started: float
    ) -> JobResult:
        return JobResult(
            Status.ERROR,
            job.file,
            job.kind,
            reason=failure.reason,
            error=failure.message,
            status_code=failure.status_code,
            error_code=failure.error_code,
            attempts=attempts,
            duration_s=time.monotonic() - started,
            ref=job.ref,
        )

    def _not_attempted(
        self, job: Job, attempts: int, failure: Failure | None
    ) -> JobResult:
        message = "The run stopped before this job could be sent again."
        if failure is not None:
            message = f"{failure.message} The run stopped before another attempt."
        return self._error(job, "stopped", message, attempts=attempts)

    def _error(
        self, job: Job, reason: str, message: str, *, attempts: int = 0
    ) -> JobResult:
        return JobResult(
            Status.ERROR,
            job.file,
            job.kind,
            reason=reason,
            error=message,
            attempts=attempts,
            ref=job.ref,
        )


def _decoded(job: Job, response: httpx2.Response) -> Generated | Failure:
    """Return the asset in a 2xx response, or the failure to retry."""
    try:
        generated = AssetApi.decode(job, response)
    except BadResponseError as error:
        return Failure(FailureKind.TRANSIENT, "bad_response", str(error))
    problem = content_problem(generated.data, job.file)
    if problem is not None:
        return Failure(
            FailureKind.TRANSIENT, "bad_response", f"The returned file {problem}."
        )
    return generated


def _timeout(total_s: float, connect_s: float) -> httpx2.Timeout:
    # The pool phase waits for a connection; the semaphores already bound the
    # requests in flight, so a pool wait means a bug, not load.
    return httpx2.Timeout(total_s, connect=connect_s, pool=connect_s)


def _total_deadline_s(timeout: httpx2.Timeout) -> float:
    return (timeout.read or 60.0) + (timeout.connect or 10.0) + 5.0


def _observe_rate_headers(lane: Lane, headers: httpx2.Headers) -> None:
    raw = headers.get("x-ratelimit-remaining-requests")
    if raw is None:
        return
    try:
        remaining = int(raw)
    except ValueError:
        return
    lane.observe_headers(
        remaining, parse_reset_duration(headers.get("x-ratelimit-reset-requests"))
    )
