"""A durable job queue in Redis that many worker instances drain together.

``JobQueue`` contains the Redis side (keys in ``keys``, Lua scripts in
``scripts``), ``Worker`` claims and runs jobs, and ``read_status`` reads a
snapshot for ``esl-assets status``. Requires the ``redis`` extra.
"""

from __future__ import annotations

from .connection import Reconnector, open_redis, redact_url
from .keys import QueueKeys, check_queue_name, job_id
from .status import QueueStatus, WorkerStatus, read_status
from .store import Claim, EnqueueReport, Finish, JobQueue, ReapReport, job_settings
from .worker import Worker, WorkerOptions, WorkerReport

__all__ = [
    "Claim",
    "EnqueueReport",
    "Finish",
    "JobQueue",
    "QueueKeys",
    "QueueStatus",
    "ReapReport",
    "Reconnector",
    "Worker",
    "WorkerOptions",
    "WorkerReport",
    "WorkerStatus",
    "check_queue_name",
    "job_id",
    "job_settings",
    "open_redis",
    "read_status",
    "redact_url",
]
