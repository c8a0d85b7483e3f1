"""Redis key names of one queue, and job ids.

Every key of a queue starts with ``esl-assets:{NAME}:``. The braces make
``NAME`` a Redis Cluster hash tag, so all keys of one queue live in one slot
and the Lua scripts may touch any of them.

Keys (``P`` is the prefix):

- ``P pending:audio``, ``P pending:images``: lists of job payloads to run.
- ``P known``: set of every job id ever enqueued (makes enqueue idempotent).
- ``P settings``: hash of settings id to the settings JSON that jobs refer to.
- ``P workers``: hash of worker id to a JSON record (host, pid, claims).
- ``P worker:ID:heartbeat``: string with a TTL, refreshed while the worker runs.
- ``P worker:ID:claims``: list of the payloads that worker has claimed.
- ``P results``: hash of job id to its result JSON.
- ``P counts``: hash of outcome (success, skipped, error, dryrun, dead) to count.
- ``P failed``, ``P dead``: lists of the payloads of failed and dead jobs.
- ``P finished_per_s``: hash of Unix second (worker clock) to jobs finished.
- ``P rate:LANE``: the next free request slot of a lane (Redis time, ms).
- ``P pause:LANE``: set with a TTL while a lane is paused after a 429.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigurationError
from ..jobs import Job

KEY_NAMESPACE = "esl-assets"
LANES = ("audio", "images")
_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_queue_name(name: str) -> str:
    """Return ``name`` if it can be a queue name, else raise ConfigurationError."""
    if not _QUEUE_NAME.fullmatch(name):
        raise ConfigurationError(
            f"--queue {name!r} is invalid; use 1 to 100 ASCII letters, digits, "
            "'.', '_' or '-', starting with a letter or digit."
        )
    return name


def job_id(job: Job) -> str:
    """Return the queue id of a job: its fingerprint and its file name.

    Enqueuing a job with the same id again adds nothing, so an unchanged plan
    adds no jobs, while an edited text or a new voice (a new fingerprint) does.
    """
    return f"{job.fingerprint}:{job.file}"


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The key names of one queue."""

    name: str
    prefix: str

    @classmethod
    def for_queue(cls, name: str) -> QueueKeys:
        check_queue_name(name)
        return cls(name=name, prefix=f"{KEY_NAMESPACE}:{{{name}}}:")

    def pending(self, lane: str) -> str:
        return f"{self.prefix}pending:{lane}"

    @property
    def known(self) -> str:
        return f"{self.prefix}known"

    @property
    def settings(self) -> str:
        return f"{self.prefix}settings"

    @property
    def workers(self) -> str:
        return f"{self.prefix}workers"

    def heartbeat(self, worker_id: str) -> str:
        return f"{self.prefix}worker:{worker_id}:heartbeat"

    def claims(self, worker_id: str) -> str:
        return f"{self.prefix}worker:{worker_id}:claims"

    @property
    def results(self) -> str:
        return f"{self.prefix}results"

    @property
    def counts(self) -> str:
        return f"{self.prefix}counts"

    @property
    def failed(self) -> str:
        return f"{self.prefix}failed"

    @property
    def dead(self) -> str:
        return f"{self.prefix}dead"

    @property
    def finished_per_s(self) -> str:
        return f"{self.prefix}finished_per_s"

    def rate(self, lane: str) -> str:
        return f"{self.prefix}rate:{lane}"

    def pause(self, lane: str) -> str:
        return f"{self.prefix}pause:{lane}"

    @property
    def pattern(self) -> str:
        """SCAN pattern of every key of this queue (names contain no glob chars)."""
        return f"{self.prefix}*"
