"""A queue worker: claim jobs from Redis, run them, record their results.

Each lane (audio, images) has its own claim loop, so a full image lane never
holds up audio jobs. A lane claims up to ``CLAIMS_PER_SLOT`` times its cap on
requests in flight; a claim is held until its result is recorded. Results are
recorded in batches by one task: whatever finished while the previous batch
was on the wire goes in the next script call.

While the worker runs, a heartbeat key with a TTL marks it as alive, and its
reaper task returns the claims of workers whose heartbeat expired. When
Redis is lost, every task retries with backoff; jobs in flight finish and
their results are recorded once Redis is reachable again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openai import AsyncOpenAI

from ..errors import ConfigurationError, QueueError
from ..executor import JobRunner, RunState
from ..jobs import JobResult, Status
from ..lanes import Lane
from ..models import warn_about_shutdown
from ..pipeline import account_error_message
from ..settings import Settings
from ..storage import prepare_outdir, remove_stale_temp_files
from .connection import BLOCK_TIMEOUT_S, Reconnector
from .keys import LANES
from .limits import SharedLane
from .store import Claim, Finish, JobQueue

logger = logging.getLogger(__name__)

#: Claims a lane keeps per request slot, so the extra claims are ready to
#: start the moment a request ends.
CLAIMS_PER_SLOT = 2
#: Results recorded per script call at most.
FINISH_BATCH = 200
DEFAULT_HEARTBEAT_TTL_S = 15.0
#: Seconds to wait for a cancelled task before cancelling it again.
CANCEL_RETRY_S = 0.5
#: Failure reasons that ``failures.classify`` marks TRANSIENT. A job that ends
#: with one of them used all its attempts, so it goes to the dead list.
TRANSIENT_REASONS = frozenset({"timeout", "connection", "bad_response", "rate_limited"})


@dataclass(frozen=True)
class WorkerOptions:
    """Options of one worker. ``None`` keeps the value each job carries."""

    concurrency: int = 5
    audio_concurrency: int | None = None
    image_concurrency: int | None = None
    provider: str | None = None
    base_url: str | None = None
    outdir: Path | None = None
    audio_rpm: float | None = None
    image_rpm: float | None = None
    api_key: str | None = field(default=None, repr=False)
    #: Stop when nothing is pending or claimed (else wait for more jobs).
    exit_when_empty: bool = False
    heartbeat_ttl_s: float = DEFAULT_HEARTBEAT_TTL_S
    #: Seconds jobs in flight get to finish after a stop request.
    grace_s: float = 10.0
    block_timeout_s: float = BLOCK_TIMEOUT_S

    def lane_cap(self, lane: str) -> int:
        own = self.audio_concurrency if lane == "audio" else self.image_concurrency
        return min(own or self.concurrency, self.concurrency)


@dataclass
class WorkerReport:
    """Summary of one worker's run."""

    worker_id: str
    #: ``complete``, ``stopped`` (account failure), ``interrupted`` or ``failed``.
    outcome: str = "complete"
    #: Recorded results by outcome (success, skipped, error, dryrun, dead).
    counts: Counter[str] = field(default_factory=Counter)
    #: Claims returned to the queue unfinished when the worker stopped.
    released: int = 0
    #: Claims of stopped workers this worker's reaper returned or dead-lettered.
    reaped: int = 0
    fatal_message: str | None = None
    duration_s: float = 0.0
    lanes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.outcome == "interrupted":
            return 130
        if self.outcome == "stopped":
            return 3
        if self.outcome == "failed":
            return 2
        # As for a build: 1 when a job this worker finished failed for good.
        return 1 if self.counts["error"] or self.counts["dead"] else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker": self.worker_id,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "counts": dict(self.counts),
            "released": self.released,
            "reaped": self.reaped,
            "fatal_message": self.fatal_message,
            "duration_s": round(self.duration_s, 3),
            "lanes": self.lanes,
        }


def new_worker_id() -> str:
    """Return ``host-pid-random``, unique among live workers."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def is_transient_failure(result: JobResult) -> bool:
    """Tell whether an error result ended on a failure worth retrying."""
    if result.reason in TRANSIENT_REASONS:
        return True
    code = result.status_code
    return code is not None and (code in (408, 409) or code >= 500)


class _Recorder:
    """Records finished jobs in batches; ``record`` returns once stored."""

    def __init__(
        self,
        queue: JobQueue,
        reconnector: Reconnector,
        worker_id: str,
        lanes: dict[str, SharedLane],
    ) -> None:
        self._queue = queue
        self._reconnector = reconnector
        self._worker_id = worker_id
        self._lanes = lanes
        self._waiting: list[tuple[Finish, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def record(self, finish: Finish) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((finish, future))
        self._wake.set()
        await future

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Record everything waiting, batch by batch.

        Only one flush may run at a time. A cancelled flush leaves its batch
        waiting; sending it again is harmless because finishing is idempotent.
        """
        while self._waiting:
            batch = self._waiting[:FINISH_BATCH]
            finishes = [finish for finish, _ in batch]
            try:
                pauses = await self._reconnector.call(
                    functools.partial(self._queue.finish, self._worker_id, finishes),
                    "recording results",
                )
            except Exception as error:
                del self._waiting[: len(batch)]
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                raise
            del self._waiting[: len(batch)]
            for lane, seconds in pauses.items():
                if seconds > 0:
                    self._lanes[lane].pause(seconds)
            for _, future in batch:
                if not future.done():
                    future.set_result(None)


class Worker:
    """Drains one queue until it is empty, stopped, or Redis stays lost."""

    def __init__(
        self,
        queue: JobQueue,
        reconnector: Reconnector,
        options: WorkerOptions,
        *,
        worker_id: str | None = None,
    ) -> None:
        self.queue = queue
        self.options = options
        self.worker_id = worker_id or new_worker_id()
        self.state = RunState()
        self.report = WorkerReport(self.worker_id)
        self._reconnector = reconnector
        self._lanes = {
            lane: SharedLane(lane, options.lane_cap(lane), queue, reconnector)
            for lane in LANES
        }
        self._capacity = {
            lane: CLAIMS_PER_SLOT * options.lane_cap(lane) for lane in LANES
        }
        self._recorder = _Recorder(queue, reconnector, self.worker_id, self._lanes)
        #: Claims this worker holds, by job id, with the Unix time of the claim.
        self._held: dict[str, tuple[Claim, float]] = {}
        self._held_per_lane: Counter[str] = Counter()
        self._room = {lane: asyncio.Event() for lane in LANES}
        self._jobs: set[asyncio.Task[None]] = set()
        self._settings: dict[str, Settings | None] = {}
        self._runners: dict[tuple[str, int], JobRunner] = {}
        self._clients: dict[tuple[str, str | None], AsyncOpenAI] = {}
        self._outdirs: dict[Path, Path] = {}
        #: Models whose shutdown warning this worker has logged.
        self._warned_models: set[str] = set()
        self._runner_lock = asyncio.Lock()
        self._done = asyncio.Event()
        self._error: BaseException | None = None
        self._started_at = time.time()

    def __repr__(self) -> str:
        counts = " ".join(f"{k}={v}" for k, v in sorted(self.report.counts.items()))
        return f"<Worker {self.worker_id} held={len(self._held)} {counts}>"

    # -- lifecycle

    async def run(self) -> WorkerReport:
        """Run until done; raise QueueError or ConfigurationError on failure."""
        started = time.monotonic()
        logger.info("Worker %s joins queue %s.", self.worker_id, self.queue.keys.name)
        await self._reconnector.call(self._beat, "registering the worker")
        await self._reap()
        background = [
            self._spawn(self._heartbeat_loop()),
            self._spawn(self._reaper_loop()),
        ]
        recorder = self._spawn(self._recorder.run())
        claimers = [self._spawn(self._claim_loop(lane)) for lane in LANES]
        try:
            await self._done.wait()
        finally:
            await self._shutdown(claimers, recorder, background)
            self.report.duration_s = time.monotonic() - started
            self.report.lanes = {
                n: lane.stats.to_dict() for n, lane in self._lanes.items()
            }
        if self._error is not None:
            raise self._error
        return self.report

    def request_stop(self) -> None:
        """Stop claiming; jobs in flight get ``grace_s`` to finish (signal handlers)."""
        if not self._done.is_set():
            logger.warning(
                "Worker %s is stopping; jobs in flight get %.1f s to finish.",
                self.worker_id,
                self.options.grace_s,
            )
            self._end("interrupted")

    def _end(self, outcome: str, error: BaseException | None = None) -> None:
        if self._done.is_set():
            return
        self.report.outcome = outcome
        self._error = error
        if outcome != "complete":
            self.state.stop.set()
        self._done.set()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        task.add_done_callback(self._on_task_done)
        return task

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        if not isinstance(error, QueueError | ConfigurationError):
            logger.error("Worker %s task failed: %r", self.worker_id, error)
        self._end("failed", error)

    async def _shutdown(
        self,
        claimers: list[asyncio.Task[None]],
        recorder: asyncio.Task[None],
        background: list[asyncio.Task[None]],
    ) -> None:
        """Stop claiming, let jobs in flight finish, record, return the rest."""
        await _cancel_all(claimers)
        if self._jobs:
            _, pending = await asyncio.wait(
                set(self._jobs), timeout=self.options.grace_s
            )
            await _cancel_all(list(pending))
        await _cancel_all([recorder])
        redis_lost = isinstance(self._error, QueueError)
        if not redis_lost:
            with contextlib.suppress(QueueError):
                await self._recorder.flush()
        await _cancel_all(background)
        if not redis_lost:
            self.report.released = await self._reconnector.call(
                lambda: self.queue.retire(self.worker_id), "returning unfinished claims"
            )
        if self.report.released:
            logger.warning(
                "Worker %s returned %d unfinished job(s) to the queue.",
                self.worker_id,
                self.report.released,
            )
        for client in self._clients.values():
            await client.close()

    # -- heartbeat and reaper

    async def _beat(self) -> None:
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": round(self._started_at, 3),
            "concurrency": self.options.concurrency,
            "finished": sum(self.report.counts.values()),
            "claims": [[c.job.file, round(at, 3)] for c, at in self._held.values()],
        }
        await self.queue.beat(self.worker_id, record, self.options.heartbeat_ttl_s)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.heartbeat_ttl_s / 3)
            await self._reconnector.call(self._beat, "refreshing the heartbeat")

    async def _reaper_loop(self) -> None:
        interval_s = min(5.0, self.options.heartbeat_ttl_s / 2)
        while True:
            await asyncio.sleep(interval_s)
            await self._reap()

    async def _reap(self) -> None:
        reaped = await self._reconnector.call(
            self.queue.reap, "reaping stopped workers"
        )
        if reaped.workers:
            self.report.reaped += reaped.requeued + reaped.dead
            logger.warning(
                "Worker %s: %d worker(s) stopped sending heartbeats; returned %d of "
                "their job(s) to the queue and dead-lettered %d.",
                self.worker_id,
                reaped.workers,
                reaped.requeued,
                reaped.dead,
            )

    # -- claiming

    async def _claim_loop(self, lane: str) -> None:
        while not self._done.is_set():
            free = self._capacity[lane] - self._held_per_lane[lane]
            if free <= 0:
                self._room[lane].clear()
                await self._room[lane].wait()
                continue
            payloads = await self._claim_call(
                functools.partial(self.queue.claim, self.worker_id, lane, free), lane
            )
            if not payloads:
                payloads = await self._claim_call(
                    lambda: self._wait_for_claim(lane), lane
                )
            if not payloads:
                await self._check_idle()
                continue
            for payload in payloads:
                await self._start(payload)

    async def _wait_for_claim(self, lane: str) -> list[str]:
        timeout_s = self.options.block_timeout_s
        payload = await self.queue.wait_for_claim(self.worker_id, lane, timeout_s)
        return [payload] if payload is not None else []

    async def _claim_call(
        self, operation: Callable[[], Awaitable[list[str]]], lane: str
    ) -> list[str]:
        """Claim through reconnects; after a failed call, adopt lost claims.

        A claim whose reply was lost still moved its jobs into this worker's
        claims list, so after any retry the list is read back and every claim
        of this lane that the worker does not hold yet is taken up.
        """
        retries = self._reconnector.retries
        payloads = await self._reconnector.call(operation, "claiming jobs")
        if self._reconnector.retries == retries:
            return payloads
        listed = await self._reconnector.call(
            lambda: self.queue.list_claims(self.worker_id), "reading claims back"
        )
        return [p for p in listed if self._is_unheld(p, lane)]

    def _is_unheld(self, payload: str, lane: str) -> bool:
        try:
            claim = Claim.parse(payload)
        except (ValueError, KeyError):
            return True
        return claim.lane == lane and claim.job_id not in self._held

    async def _check_idle(self) -> None:
        if not self.options.exit_when_empty or self._held or self._recorder.waiting:
            return
        unfinished = await self._reconnector.call(
            self.queue.unfinished, "checking for unfinished jobs"
        )
        if unfinished == 0 and not self._held:
            logger.info("Worker %s: the queue is empty.", self.worker_id)
            self._end("complete")

    async def _start(self, payload: str) -> None:
        try:
            claim = Claim.parse(payload)
        except (ValueError, KeyError) as error:
            logger.error(
                "Moving an unreadable payload to the dead list (%s): %.200s",
                error,
                payload,
            )
            await self._reconnector.call(
                lambda: self.queue.discard(self.worker_id, payload),
                "dead-lettering an unreadable payload",
            )
            return
        if claim.job_id in self._held:
            return
        self._held[claim.job_id] = (claim, time.time())
        self._held_per_lane[claim.lane] += 1
        task = asyncio.get_running_loop().create_task(self._run_job(claim))
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    def _let_go(self, claim: Claim) -> None:
        if self._held.pop(claim.job_id, None) is None:
            return
        self._held_per_lane[claim.lane] -= 1
        self._room[claim.lane].set()

    # -- running jobs

    async def _run_job(self, claim: Claim) -> None:
        try:
            result = await self._result_of(claim)
        except (ConfigurationError, QueueError) as error:
            self._end("failed", error)
            return
        finish = self._finish_for(claim, result)
        if finish is None:
            self._stop_if_fatal(claim)
            return
        try:
            await self._recorder.record(finish)
        except QueueError:
            return
        self.report.counts[finish.outcome] += 1
        self._let_go(claim)

    async def _result_of(self, claim: Claim) -> JobResult:
        runner = await self._runner_for(claim)
        if runner is None:
            return JobResult(
                Status.ERROR,
                claim.job.file,
                claim.job.kind,
                reason="settings_missing",
                error=(
                    f"The settings {claim.settings_id} this job refers to are not in "
                    "the queue (was it purged?). Enqueue the dictionary again."
                ),
                ref=claim.job.ref,
            )
        try:
            return await runner.run(claim.job)
        except (QueueError, ConfigurationError):
            raise
        except Exception as error:  # noqa: BLE001 - one job's bug must not stop the worker
            logger.exception("%s failed in the worker", claim.job.ref)
            return JobResult(
                Status.ERROR,
                claim.job.file,
                claim.job.kind,
                reason="worker_error",
                error=f"{type(error).__name__}: {error}",
                ref=claim.job.ref,
            )

    def _finish_for(self, claim: Claim, result: JobResult) -> Finish | None:
        """Return the record of a result, or None to return the job unfinished.

        Errors after a stop (an account failure, a signal) are not the job's
        fault, so those jobs go back to the queue without a result.
        """
        if result.status is Status.ERROR and self.state.stop.is_set():
            return None
        outcome = result.status.value
        if result.status is Status.ERROR and is_transient_failure(result):
            outcome = "dead"
        record: dict[str, Any] = result.to_status_dict()
        record.update(
            outcome=outcome,
            reason=result.reason,
            worker=self.worker_id,
            attempts=claim.attempts + result.attempts,
            duration_s=round(result.duration_s, 4),
            finished_at=round(time.time(), 3),
        )
        if result.status_code is not None:
            record["status_code"] = result.status_code
        _log_result(claim, result, outcome)
        return Finish(claim, outcome, record)

    def _stop_if_fatal(self, claim: Claim) -> None:
        failure = self.state.fatal
        if failure is None or self._done.is_set():
            return
        settings = self._settings.get(claim.settings_id) or Settings()
        # Queued settings carry no key, so the message must learn from the
        # worker's options whether the key was given as an argument.
        settings = settings.replace(api_key=self.options.api_key)
        self.report.fatal_message = account_error_message(failure, settings)
        logger.error("Worker %s: %s", self.worker_id, self.report.fatal_message)
        self._end("stopped")

    async def _runner_for(self, claim: Claim) -> JobRunner | None:
        remaining = max(1, claim.max_attempts - claim.attempts)
        key = (claim.settings_id, remaining)
        runner = self._runners.get(key)
        if runner is not None:
            return runner
        async with self._runner_lock:
            runner = self._runners.get(key)
            if runner is None:
                runner = await self._new_runner(claim.settings_id, remaining)
                if runner is not None:
                    self._runners[key] = runner
        return runner

    async def _new_runner(self, settings_ref: str, remaining: int) -> JobRunner | None:
        if settings_ref not in self._settings:
            self._settings[settings_ref] = await self._reconnector.call(
                lambda: self.queue.load_settings(settings_ref), "reading job settings"
            )
        settings = self._settings[settings_ref]
        if settings is None:
            return None
        effective = self._effective_settings(settings, remaining)
        self._warn_about_models(effective)
        outdir = self._outdir_for(effective.outdir)
        for lane, rpm in (
            ("audio", effective.audio_rpm),
            ("images", effective.image_rpm),
        ):
            self._lanes[lane].shared_rpm = rpm
        # NOTE: each runner caps its own requests in flight at --concurrency.
        # Two runners (jobs of two enqueued settings, or a job delivered again
        # after a lost worker) can together exceed it. The lane caps are
        # shared, so they still hold.
        lanes: dict[str, Lane] = dict(self._lanes)
        client = self._client_for(effective)
        return JobRunner(client, effective, outdir, lanes, self.state)

    def _warn_about_models(self, settings: Settings) -> None:
        """Warn once per model about a shutdown, before its first request."""
        if settings.provider == "local":
            return
        models = []
        if settings.audio:
            models.append(settings.audio_model)
        if settings.images:
            models.append(settings.image_model)
        for model in models:
            if model not in self._warned_models:
                self._warned_models.add(model)
                warn_about_shutdown(model)

    def _effective_settings(self, settings: Settings, remaining: int) -> Settings:
        options = self.options
        changes: dict[str, Any] = {
            "concurrency": options.concurrency,
            "max_attempts": remaining,
        }
        overrides = {
            "provider": options.provider,
            "base_url": options.base_url,
            "outdir": options.outdir,
            "audio_rpm": options.audio_rpm,
            "image_rpm": options.image_rpm,
            "api_key": options.api_key,
        }
        changes.update({k: v for k, v in overrides.items() if v is not None})
        return settings.replace(**changes)

    def _outdir_for(self, outdir: Path) -> Path:
        prepared = self._outdirs.get(outdir)
        if prepared is None:
            prepared = prepare_outdir(outdir)
            remove_stale_temp_files(prepared)
            self._outdirs[outdir] = prepared
        return prepared

    def _client_for(self, settings: Settings) -> AsyncOpenAI | None:
        if settings.dryrun:
            return None
        key = (settings.provider, settings.base_url)
        client = self._clients.get(key)
        if client is None:
            from ..client import create_client

            client = create_client(settings)
            self._clients[key] = client
        return client


def _log_result(claim: Claim, result: JobResult, outcome: str) -> None:
    if result.status is Status.ERROR:
        logger.error(
            "%s %s (%s) after %d attempt(s): %s",
            claim.job.ref,
            "dead" if outcome == "dead" else "failed",
            result.reason,
            claim.attempts + result.attempts,
            result.error,
        )
    else:
        logger.info(
            "%s %s (%s)", claim.job.ref, outcome, result.reason or claim.job.file
        )


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again if one carries on.

    redis-py 8.2 can lose a cancellation that arrives while a blocking
    command (BLMOVE) times out, so one ``cancel()`` is not always enough.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_RETRY_S)
    for task in tasks:
        # Errors were already handled by the task's done callback.
        if not task.cancelled():
            task.exception()
