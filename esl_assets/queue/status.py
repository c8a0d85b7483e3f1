"""A snapshot of a queue for ``esl-assets status --redis-url``.

Read with two pipelined round trips, so the numbers are consistent to within
a few milliseconds; a status never changes queue state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .keys import LANES
from .store import OUTCOMES, JobQueue

#: Seconds of finished jobs that the rate is measured over.
RATE_WINDOW_S = 60


@dataclass(frozen=True, slots=True)
class ClaimAge:
    """One claimed job and how long ago it was claimed."""

    file: str
    age_s: float


@dataclass
class WorkerStatus:
    """One registered worker."""

    worker_id: str
    alive: bool
    host: str
    pid: int | None
    #: Jobs in the worker's claims list.
    claimed: int
    #: The claims the worker listed in its last heartbeat, oldest first.
    claims: list[ClaimAge] = field(default_factory=list)
    finished: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker": self.worker_id,
            "alive": self.alive,
            "host": self.host,
            "pid": self.pid,
            "claimed": self.claimed,
            "finished": self.finished,
            "claims": [
                {"file": claim.file, "age_s": round(claim.age_s, 1)}
                for claim in self.claims
            ],
        }


@dataclass
class QueueStatus:
    """Counts, workers, rate and ETA of one queue."""

    queue: str
    pending: dict[str, int]
    #: Results by outcome: success, skipped, error, dryrun, dead.
    counts: dict[str, int]
    #: Jobs ever enqueued (distinct ids).
    known: int
    workers: list[WorkerStatus]
    finished_last_minute: int
    #: Seconds the rate is measured over: the last minute, or less when the
    #: first job of that minute finished less than a minute ago.
    rate_window_s: float = RATE_WINDOW_S

    @property
    def pending_total(self) -> int:
        return sum(self.pending.values())

    @property
    def in_flight(self) -> int:
        return sum(worker.claimed for worker in self.workers)

    @property
    def workers_alive(self) -> int:
        return sum(1 for worker in self.workers if worker.alive)

    @property
    def rate_per_s(self) -> float:
        return self.finished_last_minute / self.rate_window_s

    @property
    def rate_per_min(self) -> int:
        return round(self.rate_per_s * 60)

    @property
    def eta_s(self) -> float | None:
        """Seconds to finish pending and claimed jobs at the last minute's rate."""
        remaining = self.pending_total + self.in_flight
        if remaining == 0:
            return 0.0
        if self.rate_per_s <= 0:
            return None
        return remaining / self.rate_per_s

    def to_dict(self) -> dict[str, Any]:
        eta = self.eta_s
        return {
            "queue": self.queue,
            "pending": self.pending_total,
            "pending_by_lane": self.pending,
            "in_flight": self.in_flight,
            "done": self.counts.get("success", 0),
            "skipped": self.counts.get("skipped", 0),
            "failed": self.counts.get("error", 0),
            "dead": self.counts.get("dead", 0),
            "dryrun": self.counts.get("dryrun", 0),
            "known": self.known,
            "rate_per_min": self.rate_per_min,
            "eta_s": round(eta, 1) if eta is not None else None,
            "workers_alive": self.workers_alive,
            "workers": [worker.to_dict() for worker in self.workers],
        }


async def read_status(queue: JobQueue) -> QueueStatus:
    """Read the status of ``queue`` in two round trips."""
    keys = queue.keys
    async with queue.redis.pipeline(transaction=False) as pipe:
        for lane in LANES:
            pipe.llen(keys.pending(lane))
        pipe.hgetall(keys.counts)
        pipe.scard(keys.known)
        pipe.hgetall(keys.workers)
        pipe.hgetall(keys.finished_per_s)
        pipe.time()
        replies = await pipe.execute()
    pending = {lane: int(n) for lane, n in zip(LANES, replies, strict=False)}
    counts_raw, known, workers_raw, per_second, server_time = replies[len(LANES) :]
    now_s = float(server_time[0]) + float(server_time[1]) / 1e6
    worker_ids = sorted(workers_raw)
    async with queue.redis.pipeline(transaction=False) as pipe:
        for worker_id in worker_ids:
            pipe.exists(keys.heartbeat(worker_id))
            pipe.llen(keys.claims(worker_id))
        liveness = await pipe.execute()
    workers = [
        _worker_status(
            worker_id, workers_raw[worker_id], liveness[2 * i : 2 * i + 2], now_s
        )
        for i, worker_id in enumerate(worker_ids)
    ]
    counts = {outcome: int(counts_raw.get(outcome, 0)) for outcome in OUTCOMES}
    finished, first_second = _finished_since(per_second, now_s - RATE_WINDOW_S)
    window_s = float(RATE_WINDOW_S)
    if first_second is not None:
        # Jobs finish within a bucket's second, so count the first one whole.
        window_s = min(window_s, max(1.0, now_s - first_second))
    return QueueStatus(
        queue=keys.name,
        pending=pending,
        counts=counts,
        known=int(known),
        workers=workers,
        finished_last_minute=finished,
        rate_window_s=window_s,
    )


def _worker_status(
    worker_id: str, record_json: str, liveness: list[Any], now_s: float
) -> WorkerStatus:
    try:
        record = json.loads(record_json)
    except ValueError:
        record = {}
    claims = sorted(
        (
            ClaimAge(str(file), max(0.0, now_s - float(at)))
            for file, at in record.get("claims", [])
        ),
        key=lambda claim: -claim.age_s,
    )
    return WorkerStatus(
        worker_id=worker_id,
        alive=bool(liveness[0]),
        host=str(record.get("host", "?")),
        pid=record.get("pid"),
        claimed=int(liveness[1]),
        claims=claims,
        finished=int(record.get("finished", 0)),
    )


def _finished_since(
    per_second: dict[str, str], since_s: float
) -> tuple[int, int | None]:
    """Return the jobs finished since ``since_s`` and the first such second.

    A bucket counts when its whole second lies inside the window.
    """
    buckets = [(int(second), int(count)) for second, count in per_second.items()]
    inside = [(second, count) for second, count in buckets if second >= since_s]
    finished = sum(count for _, count in inside)
    return finished, min((second for second, _ in inside), default=None)
