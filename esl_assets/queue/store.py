"""The Redis side of the queue: every read and write of queue state.

``JobQueue`` wraps one Redis client and the keys of one queue. Its methods
are single round trips (a command, a pipeline or a Lua script from
``scripts``), so the worker can repeat any of them through ``Reconnector``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from ..jobs import Job
from ..settings import Settings
from . import scripts
from .connection import open_redis
from .keys import LANES, QueueKeys, job_id

#: Settings that select or locate the dictionary, or steer the enqueuing
#: process; a worker needs none of them. ``redis_url`` may hold a password.
NOT_JOB_SETTINGS = frozenset(
    {
        "dictionary",
        "format",
        "level",
        "pos",
        "words",
        "limit",
        "image_pos",
        "include_offensive",
        "resume",
        "retry_failed",
        "retry_blocked",
        "refresh_changed",
        "redis_url",
        "queue",
        "exit_when_empty",
    }
)
#: Jobs sent per enqueue script call.
ENQUEUE_BATCH = 500
#: Job ids per HMGET when reading results back.
RESULTS_BATCH = 1000
#: Outcomes counted in the counts hash, in display order.
OUTCOMES = ("success", "skipped", "error", "dryrun", "dead")


def job_settings(settings: Settings) -> dict[str, Any]:
    """Return the settings a worker needs to run the jobs of ``settings``.

    The output folder is made absolute, because workers on the same machine
    run in other working directories. The API key is never included.
    """
    values = settings.public_dict()
    for name in NOT_JOB_SETTINGS:
        values.pop(name, None)
    values["outdir"] = str(settings.outdir.resolve())
    return values


def settings_id(values: dict[str, Any]) -> str:
    text = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_payload(job: Job, settings_ref: str, max_attempts: int) -> str:
    body = {
        "id": job_id(job),
        "lane": job.lane,
        "file": job.file,
        "max_attempts": max_attempts,
        "settings": settings_ref,
        "job": job.to_dict(),
    }
    return "0 " + json.dumps(body, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Claim:
    """A job a worker has claimed, with the exact payload string in Redis."""

    payload: str
    job_id: str
    lane: str
    settings_id: str
    max_attempts: int
    #: Earlier deliveries that ended because the worker holding the job stopped.
    attempts: int
    job: Job

    @classmethod
    def parse(cls, payload: str) -> Claim:
        attempts, _, text = payload.partition(" ")
        body = json.loads(text)
        return cls(
            payload=payload,
            job_id=body["id"],
            lane=body["lane"],
            settings_id=body["settings"],
            max_attempts=int(body["max_attempts"]),
            attempts=int(attempts),
            job=Job.from_dict(body["job"]),
        )


@dataclass(frozen=True, slots=True)
class Finish:
    """The result of a claim, ready to record."""

    claim: Claim
    #: ``success``, ``skipped``, ``error``, ``dryrun`` or ``dead``.
    outcome: str
    #: JSON-ready result record (status dict plus worker, attempts, timings).
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EnqueueReport:
    """Counts of one enqueue."""

    added: int
    #: Jobs whose id the queue already knew, so nothing was added for them.
    existing: int

    @property
    def planned(self) -> int:
        return self.added + self.existing


@dataclass(frozen=True, slots=True)
class ReapReport:
    """Counts of one reaper run."""

    workers: int
    requeued: int
    dead: int


class JobQueue:
    """One queue in one Redis database."""

    def __init__(self, redis: Redis, keys: QueueKeys) -> None:
        self.redis = redis
        self.keys = keys
        self._enqueue = redis.register_script(scripts.ENQUEUE)
        self._claim = redis.register_script(scripts.CLAIM)
        self._finish = redis.register_script(scripts.FINISH)
        self._reap = redis.register_script(scripts.REAP)
        self._retire = redis.register_script(scripts.RETIRE)
        self._unfinished = redis.register_script(scripts.UNFINISHED)
        self._reserve = redis.register_script(scripts.RESERVE)
        self._pause = redis.register_script(scripts.PAUSE)
        self._requeue = redis.register_script(scripts.REQUEUE)

    def __repr__(self) -> str:
        return f"<JobQueue {self.keys.name}>"

    @classmethod
    async def connect(cls, url: str, name: str) -> JobQueue:
        """Connect to Redis at ``url``; raise QueueError when it does not respond."""
        keys = QueueKeys.for_queue(name)
        return cls(await open_redis(url), keys)

    async def close(self) -> None:
        await self.redis.aclose()

    # -- enqueue

    async def enqueue(self, settings: Settings, jobs: Iterable[Job]) -> EnqueueReport:
        """Add the jobs the queue does not know yet, in batches, in plan order."""
        values = job_settings(settings)
        reference = settings_id(values)
        settings_json = json.dumps(values, sort_keys=True, ensure_ascii=False)
        added = total = 0
        for batch in _batches(jobs, ENQUEUE_BATCH):
            arguments: list[str] = [self.keys.prefix, reference, settings_json]
            for job in batch:
                payload = encode_payload(job, reference, settings.max_attempts)
                arguments += [job_id(job), job.lane, payload]
            keys = [self.keys.known, self.keys.settings]
            added += int(await self._enqueue(keys=keys, args=arguments))
            total += len(batch)
        return EnqueueReport(added=added, existing=total - added)

    async def load_settings(self, reference: str) -> Settings | None:
        """Return the settings a job refers to, or None if they were purged."""
        text = await self.redis.hget(self.keys.settings, reference)
        if text is None:
            return None
        return Settings.from_public_dict(json.loads(text))

    # -- claims and results

    async def claim(self, worker_id: str, lane: str, count: int) -> list[str]:
        """Move up to ``count`` payloads of ``lane`` into the worker's claims."""
        keys = [self.keys.pending(lane), self.keys.claims(worker_id)]
        return list(await self._claim(keys=keys, args=[count]))

    async def wait_for_claim(
        self, worker_id: str, lane: str, timeout_s: float
    ) -> str | None:
        """Block until a payload of ``lane`` can be claimed (BLMOVE), or time out."""
        claims = self.keys.claims(worker_id)
        # Redis 6 and later accept a decimal timeout, but redis-py's stubs declare int.
        payload = await self.redis.blmove(
            self.keys.pending(lane),
            claims,
            timeout_s,  # type: ignore[arg-type]
            "LEFT",
            "RIGHT",
        )
        return payload if isinstance(payload, str) else None

    async def list_claims(self, worker_id: str) -> list[str]:
        payloads = await self.redis.lrange(self.keys.claims(worker_id), 0, -1)
        return [str(payload) for payload in payloads]

    async def discard(self, worker_id: str, payload: str) -> None:
        """Move an unreadable claim to the dead list, so it blocks nothing."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lrem(self.keys.claims(worker_id), 1, payload)
            pipe.rpush(self.keys.dead, payload)
            await pipe.execute()

    async def finish(
        self, worker_id: str, finishes: Sequence[Finish]
    ) -> dict[str, float]:
        """Record results and remove their claims; return lane pauses in seconds."""
        keys = [
            self.keys.claims(worker_id),
            self.keys.results,
            self.keys.counts,
            self.keys.failed,
            self.keys.dead,
            self.keys.finished_per_s,
            self.keys.pause("audio"),
            self.keys.pause("images"),
        ]
        arguments: list[str] = [self.keys.prefix, str(int(time.time()))]
        for finish in finishes:
            claim = finish.claim
            record = json.dumps(finish.record, ensure_ascii=False, sort_keys=True)
            arguments += [
                claim.payload,
                claim.job_id,
                claim.lane,
                finish.outcome,
                record,
            ]
        pauses_ms = await self._finish(keys=keys, args=arguments)
        return {
            lane: max(0, int(ms)) / 1000
            for lane, ms in zip(LANES, pauses_ms, strict=True)
        }

    # -- workers

    async def beat(self, worker_id: str, record: dict[str, Any], ttl_s: float) -> None:
        """Refresh the worker's heartbeat and its record, in one transaction."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.heartbeat(worker_id), "1", px=int(ttl_s * 1000))
            pipe.hset(self.keys.workers, worker_id, json.dumps(record))
            await pipe.execute()

    async def reap(self) -> ReapReport:
        """Return the claims of workers whose heartbeat expired to pending.

        The script is atomic, so concurrent reapers return each claim once.
        """
        keys = [
            self.keys.workers,
            self.keys.results,
            self.keys.counts,
            self.keys.dead,
            self.keys.finished_per_s,
        ]
        workers, requeued, dead = await self._reap(keys=keys, args=[self.keys.prefix])
        return ReapReport(int(workers), int(requeued), int(dead))

    async def retire(self, worker_id: str) -> int:
        """Return the worker's remaining claims to pending and unregister it."""
        keys = [
            self.keys.claims(worker_id),
            self.keys.heartbeat(worker_id),
            self.keys.workers,
        ]
        return int(await self._retire(keys=keys, args=[self.keys.prefix, worker_id]))

    async def unfinished(self) -> int:
        """Count jobs pending or claimed by a registered worker."""
        keys = [self.keys.workers, *(self.keys.pending(lane) for lane in LANES)]
        return int(await self._unfinished(keys=keys, args=[self.keys.prefix]))

    # -- rate limits shared by every worker

    async def reserve_request_slot(self, lane: str, rpm: float) -> float:
        """Reserve the lane's next request slot; return the seconds to wait for it."""
        keys = [self.keys.rate(lane), self.keys.pause(lane)]
        wait_ms = await self._reserve(keys=keys, args=[f"{60_000 / rpm:.3f}"])
        return max(0, int(wait_ms)) / 1000

    async def pause_lane(self, lane: str, seconds: float) -> None:
        """Pause the lane for every worker (a longer pause already set wins)."""
        milliseconds = max(1, int(seconds * 1000))
        await self._pause(keys=[self.keys.pause(lane)], args=[milliseconds])

    # -- administration

    async def requeue(self, outcome: str) -> tuple[int, int]:
        """Move ``dead`` or ``error`` jobs back to pending; return (moved, dropped)."""
        source = self.keys.dead if outcome == "dead" else self.keys.failed
        keys = [source, self.keys.results, self.keys.counts]
        moved, dropped = await self._requeue(
            keys=keys, args=[self.keys.prefix, outcome]
        )
        return int(moved), int(dropped)

    async def purge(self) -> int:
        """Delete every key of this queue; return how many were deleted."""
        deleted = 0
        batch: list[str] = []
        async for key in self.redis.scan_iter(match=self.keys.pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(await self.redis.unlink(*batch))
                batch = []
        if batch:
            deleted += int(await self.redis.unlink(*batch))
        return deleted

    async def outcomes_of(self, ids: Iterable[str]) -> Counter[str]:
        """Count the outcomes of the given job ids ("none" for no result yet)."""
        counts: Counter[str] = Counter()
        for batch in _batches(ids, RESULTS_BATCH):
            for text in await self.redis.hmget(self.keys.results, batch):
                counts[json.loads(text)["outcome"] if text else "none"] += 1
        return counts


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
