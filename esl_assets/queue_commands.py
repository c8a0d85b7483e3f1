"""CLI commands of the Redis queue: worker, enqueue, purge, requeue.

``run_queue_build`` serves ``build --redis-url`` (enqueue, then drain) and
``queue_status`` serves ``status --redis-url``. The ``redis`` package is
imported only when one of these runs, so the local build works without it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from .cli import (
    _flag,
    add_build_options,
    add_output_options,
    add_queue_options,
    configure_logging,
    print_json,
    run_async,
    settings_options,
)
from .errors import ConfigurationError
from .jobs import Job
from .rows import RejectedRow
from .settings import ENVIRONMENT_SETTINGS, Settings

if TYPE_CHECKING:
    from .planner import RequestTemplate
    from .queue import EnqueueReport, JobQueue, QueueStatus, Worker, WorkerReport

logger = logging.getLogger(__name__)

DEFAULT_QUEUE = "esl-assets"
#: Seconds between progress lines of ``build`` and ``worker`` at -v 1.
PROGRESS_INTERVAL_S = 5.0


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    worker = commands.add_parser(
        "worker", help="drain a Redis queue; run it on as many machines as you like"
    )
    _add_worker_options(worker)
    add_output_options(worker)
    worker.set_defaults(handler=run_worker_command)

    enqueue = commands.add_parser(
        "enqueue", help="add a dictionary's jobs to a Redis queue, run nothing"
    )
    add_build_options(enqueue)
    add_output_options(enqueue)
    enqueue.set_defaults(handler=run_enqueue_command)

    purge = commands.add_parser("purge", help="delete every job and result of a queue")
    add_queue_options(purge)
    purge.add_argument("--yes", action="store_true", help="confirm the deletion")
    add_output_options(purge)
    purge.set_defaults(handler=run_purge_command)

    requeue = commands.add_parser(
        "requeue", help="put dead-lettered or failed jobs back in the queue"
    )
    add_queue_options(requeue)
    which = requeue.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--dead", action="store_true", help="requeue the dead-letter list"
    )
    which.add_argument("--failed", action="store_true", help="requeue the failed jobs")
    add_output_options(requeue)
    requeue.set_defaults(handler=run_requeue_command)


def _add_worker_options(parser: argparse.ArgumentParser) -> None:
    add_queue_options(parser)
    group = parser.add_argument_group("worker")
    _flag(group, "concurrency", type=int, help="requests in flight at most (default 5)")
    _flag(group, "audio_concurrency", type=int, help="audio requests in flight at most")
    _flag(group, "image_concurrency", type=int, help="image requests in flight at most")
    _flag(
        group,
        "audio_rpm",
        type=float,
        help="audio requests per minute for all workers together (default: the job's)",
    )
    _flag(
        group,
        "image_rpm",
        type=float,
        help="image requests per minute for all workers together (default: the job's)",
    )
    _flag(
        group,
        "provider",
        choices=("openai", "local"),
        help="use this provider instead of the one each job names",
    )
    _flag(group, "base_url", help="use this API URL instead of the one each job names")
    _flag(
        group,
        "outdir",
        type=Path,
        help="write files here instead of the folder each job names",
    )
    _flag(
        group,
        "exit_when_empty",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stop when nothing is pending or in flight (default: wait for more)",
    )
    _flag(
        group,
        "heartbeat_ttl",
        dest="heartbeat_ttl_s",
        type=float,
        help="seconds without a heartbeat after which other workers take this "
        "worker's jobs back (default 15)",
    )
    _flag(
        group,
        "grace",
        dest="grace_s",
        type=float,
        help="seconds jobs in flight get after Ctrl-C or SIGTERM (default 10)",
    )


def _load_queue_module() -> Any:
    try:
        from . import queue
    except ModuleNotFoundError as error:
        if error.name != "redis":
            raise
        raise ConfigurationError(
            "The Redis queue needs the redis package; install it with "
            "pip install 'esl-assets[redis]'."
        ) from None
    return queue


def _redis_url(args: argparse.Namespace) -> str:
    url = getattr(args, "redis_url", None) or os.environ.get("ESL_ASSETS_REDIS_URL")
    if not url:
        raise ConfigurationError(
            "No Redis URL given; pass --redis-url redis://HOST:PORT/DB or set "
            "ESL_ASSETS_REDIS_URL."
        )
    return str(url)


def _queue_name(args: argparse.Namespace) -> str:
    name = getattr(args, "queue", None) or os.environ.get("ESL_ASSETS_QUEUE")
    return str(name or DEFAULT_QUEUE)


def _verbosity(args: argparse.Namespace) -> int:
    return 0 if args.json and args.verbosity == 1 else int(args.verbosity)


# -- worker


#: Worker options that flags or the worker's environment may set.
_WORKER_SETTINGS = (
    "concurrency",
    "audio_concurrency",
    "image_concurrency",
    "audio_rpm",
    "image_rpm",
    "provider",
    "base_url",
    "outdir",
)


def _given_worker_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Return the worker settings set by a flag or else by the environment."""
    environment = {
        name: os.environ[variable]
        for variable, name in ENVIRONMENT_SETTINGS.items()
        if os.environ.get(variable)
    }
    given = {}
    for name in _WORKER_SETTINGS:
        value = getattr(args, name, None)
        if value is None:
            value = environment.get(name)
        if value is not None:
            given[name] = value

    # Validation and type conversion are the same as for a build's settings.
    checked = Settings.from_options(**given)
    values = {name: getattr(checked, name) for name in given}
    values["concurrency"] = checked.concurrency
    return values


def worker_options(args: argparse.Namespace) -> Any:
    """Build ``WorkerOptions`` from the worker's flags and environment."""
    queue = _load_queue_module()
    values = _given_worker_settings(args)
    ttl_s = args.heartbeat_ttl_s if args.heartbeat_ttl_s is not None else 15.0
    if ttl_s < 1:
        raise ConfigurationError(f"--heartbeat-ttl {ttl_s} must be 1 second or more.")

    return queue.WorkerOptions(
        **values,
        exit_when_empty=bool(args.exit_when_empty),
        heartbeat_ttl_s=ttl_s,
        grace_s=args.grace_s if args.grace_s is not None else 10.0,
    )


def run_worker_command(args: argparse.Namespace) -> int:
    options = worker_options(args)
    url, name = _redis_url(args), _queue_name(args)
    verbosity = _verbosity(args)
    configure_logging(verbosity)
    report: WorkerReport = run_async(_serve(url, name, options, verbosity))
    if args.json:
        print_json(report.to_dict())
    elif verbosity > 0:
        _print_worker_report(report)
    return report.exit_code


async def _serve(url: str, name: str, options: Any, verbosity: int) -> WorkerReport:
    queue_module = _load_queue_module()
    queue: JobQueue = await queue_module.JobQueue.connect(url, name)
    try:
        worker = queue_module.Worker(queue, queue_module.Reconnector(url), options)
        return await _run_worker(worker, verbosity)
    finally:
        await queue.close()


async def _run_worker(worker: Worker, verbosity: int) -> WorkerReport:
    """Run ``worker`` with signal handlers and, at -v 1, progress lines."""
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, worker.request_stop)
    progress = None
    if verbosity == 1:
        progress = loop.create_task(_report_progress(worker.queue))
    try:
        return await worker.run()
    finally:
        if progress is not None:
            progress.cancel()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)


async def _report_progress(queue: JobQueue) -> None:
    from .queue import read_status
    from .queue.connection import RETRYABLE_ERRORS

    while True:
        await asyncio.sleep(PROGRESS_INTERVAL_S)
        try:
            status = await read_status(queue)
        except RETRYABLE_ERRORS:
            continue
        sys.stderr.write(_progress_line(status) + "\n")
        sys.stderr.flush()


def _progress_line(status: QueueStatus) -> str:
    counts = status.counts
    eta = status.eta_s
    return (
        f"queue {status.queue}: {status.pending_total} pending, {status.in_flight} "
        f"in flight, done {counts['success']}, skipped {counts['skipped']}, "
        f"failed {counts['error']}, dead {counts['dead']}, "
        f"{status.rate_per_min}/min, ETA {_duration(eta)}, "
        f"{status.workers_alive} worker(s)"
    )


def _print_worker_report(report: WorkerReport) -> None:
    console = Console(file=sys.stdout)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())) or "none"
    console.print(
        f"Worker {report.worker_id}: {report.outcome} in {report.duration_s:.1f} s; "
        f"recorded {counts}; returned {report.released} unfinished job(s).",
        markup=False,
    )
    if report.fatal_message:
        console.print(report.fatal_message, markup=False, style="bold red")


# -- enqueue and build


def plan_jobs(
    settings: Settings,
    template: RequestTemplate,
    rejected: list[RejectedRow] | None = None,
) -> Iterator[Job]:
    """Yield the jobs of a build, reading the dictionary once."""
    from .pipeline import lane_kinds, read_rows
    from .planner import Planner

    kinds = frozenset().union(*lane_kinds(settings).values())
    planner = Planner(settings, template, kinds)
    for item in planner.plan(read_rows(settings)):
        if isinstance(item, RejectedRow):
            if rejected is not None:
                rejected.append(item)
                logger.warning("Row rejected (%s): %s", item.reason, item.message)
            continue
        yield item


def _check_queue_settings(settings: Settings) -> RequestTemplate:
    from .inputs import detect_format
    from .planner import build_request_template

    if not settings.redis_url:
        raise ConfigurationError(
            "No Redis URL given; pass --redis-url redis://HOST:PORT/DB or set "
            "ESL_ASSETS_REDIS_URL."
        )
    if settings.dryrun:
        raise ConfigurationError(
            "--dryrun sends nothing, so it has no use for a queue; run "
            "esl-assets plan DICTIONARY instead."
        )
    template = build_request_template(settings)
    if settings.dictionary is not None and settings.format is None:
        detect_format(settings.dictionary)
    return template


def run_enqueue_command(args: argparse.Namespace) -> int:
    settings = Settings.from_options(**settings_options(args))
    template = _check_queue_settings(settings)
    configure_logging(_verbosity(args))
    rejected: list[RejectedRow] = []
    report: EnqueueReport = run_async(_enqueue(settings, template, rejected))
    data = {
        "queue": settings.queue,
        "added": report.added,
        "existing": report.existing,
        "rejected": len(rejected),
    }
    if args.json:
        print_json(data)
    elif args.verbosity > 0:
        Console(file=sys.stdout).print(
            f"Queue {settings.queue}: added {report.added} job(s); "
            f"{report.existing} were already queued.",
            markup=False,
        )
    return 0


async def _enqueue(
    settings: Settings, template: RequestTemplate, rejected: list[RejectedRow]
) -> EnqueueReport:
    queue_module = _load_queue_module()
    assert settings.redis_url is not None
    queue: JobQueue = await queue_module.JobQueue.connect(
        settings.redis_url, settings.queue
    )
    try:
        return await queue.enqueue(settings, plan_jobs(settings, template, rejected))
    finally:
        await queue.close()


@dataclass
class QueueBuildReport:
    """Summary of ``build --redis-url``: enqueue, drain, outcomes of its jobs."""

    queue: str
    added: int | None
    existing: int | None
    #: Outcomes of this build's jobs (of the whole queue with --resume);
    #: ``none`` counts jobs still without a result.
    outcomes: Counter[str] = field(default_factory=Counter)
    worker: dict[str, Any] = field(default_factory=dict)
    worker_exit_code: int = 0
    fatal_message: str | None = None

    @property
    def exit_code(self) -> int:
        if self.worker_exit_code:
            return self.worker_exit_code
        unfinished = (
            self.outcomes["error"] + self.outcomes["dead"] + self.outcomes["none"]
        )
        return 1 if unfinished else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "exit_code": self.exit_code,
            "added": self.added,
            "existing": self.existing,
            "outcomes": dict(self.outcomes),
            "worker": self.worker,
            "fatal_message": self.fatal_message,
        }


def run_queue_build(args: argparse.Namespace, settings: Settings) -> int:
    """Enqueue the build's plan (unless --resume), then drain the queue."""
    template = _check_queue_settings(settings)
    verbosity = _verbosity(args)
    configure_logging(verbosity)
    report: QueueBuildReport = run_async(_queue_build(settings, template, verbosity))
    if args.json:
        print_json(report.to_dict())
    elif verbosity > 0 or report.exit_code:
        _print_build_report(report)
    return report.exit_code


async def _queue_build(
    settings: Settings, template: RequestTemplate, verbosity: int
) -> QueueBuildReport:
    from .storage import prepare_outdir

    queue_module = _load_queue_module()
    assert settings.redis_url is not None
    if not settings.resume:
        # A resumed queue build enqueues nothing: its jobs carry their own
        # --outdir, which each worker prepares.
        prepare_outdir(settings.outdir)
    queue: JobQueue = await queue_module.JobQueue.connect(
        settings.redis_url, settings.queue
    )
    try:
        report = QueueBuildReport(queue=settings.queue, added=None, existing=None)
        if not settings.resume:
            enqueued = await queue.enqueue(settings, plan_jobs(settings, template, []))
            report.added, report.existing = enqueued.added, enqueued.existing
        if settings.retries_rejected_jobs:
            await queue.requeue("error")
        worker = queue_module.Worker(
            queue,
            queue_module.Reconnector(settings.redis_url),
            _build_worker_options(settings),
        )
        worker_report = await _run_worker(worker, verbosity)
        report.worker = worker_report.to_dict()
        report.worker_exit_code = worker_report.exit_code
        report.fatal_message = worker_report.fatal_message
        report.outcomes = await _build_outcomes(queue, settings, template)
        return report
    finally:
        await queue.close()


def _build_worker_options(settings: Settings) -> Any:
    queue_module = _load_queue_module()
    return queue_module.WorkerOptions(
        concurrency=settings.concurrency,
        audio_concurrency=settings.audio_concurrency,
        image_concurrency=settings.image_concurrency,
        api_key=settings.api_key,
        exit_when_empty=settings.exit_when_empty,
        grace_s=settings.grace_s,
    )


async def _build_outcomes(
    queue: JobQueue, settings: Settings, template: RequestTemplate
) -> Counter[str]:
    """Count the outcomes of the build's jobs, planning the dictionary again.

    Planning again keeps memory flat for any dictionary size. Without a
    dictionary (--resume alone) the counts are those of the whole queue.
    """
    from .queue import job_id, read_status

    if settings.dictionary is None:
        status = await read_status(queue)
        return Counter({k: v for k, v in status.counts.items() if v})
    ids = (job_id(job) for job in plan_jobs(settings, template))
    return await queue.outcomes_of(ids)


def _print_build_report(report: QueueBuildReport) -> None:
    console = Console(file=sys.stdout)
    table = Table(
        title=f"esl-assets queue {report.queue}: {report.worker.get('outcome')}"
    )
    for column in ("added", "already queued", "done", "skipped", "failed", "dead"):
        table.add_column(column, justify="right")
    outcomes = report.outcomes
    table.add_row(
        _number(report.added),
        _number(report.existing),
        str(outcomes["success"]),
        str(outcomes["skipped"]),
        str(outcomes["error"]),
        str(outcomes["dead"]),
    )
    console.print(table)
    if outcomes["none"]:
        console.print(f"{outcomes['none']} job(s) have no result yet.")
    if report.fatal_message:
        console.print(report.fatal_message, markup=False, style="bold red")


# -- status, purge, requeue


def queue_status(args: argparse.Namespace) -> int:
    """Print the status of the queue at ``--redis-url``; ``--json`` for JSON."""
    url, name = _redis_url(args), _queue_name(args)
    status: QueueStatus = run_async(_read_queue_status(url, name))
    if getattr(args, "json", False):
        print_json(status.to_dict())
    else:
        _print_status(status)
    return 0


async def _read_queue_status(url: str, name: str) -> QueueStatus:
    queue_module = _load_queue_module()
    queue: JobQueue = await queue_module.JobQueue.connect(url, name)
    try:
        status: QueueStatus = await queue_module.read_status(queue)
        return status
    finally:
        await queue.close()


def _print_status(status: QueueStatus) -> None:
    console = Console(file=sys.stdout)
    console.print(_progress_line(status), markup=False)
    table = Table(title="workers")
    for column in ("worker", "alive", "claimed", "finished", "oldest claim"):
        table.add_column(column)
    for worker in status.workers:
        oldest = f"{worker.claims[0].age_s:.1f} s" if worker.claims else "-"
        table.add_row(
            worker.worker_id,
            "yes" if worker.alive else "no (heartbeat expired)",
            str(worker.claimed),
            str(worker.finished),
            oldest,
        )
    if status.workers:
        console.print(table)
    for worker in status.workers:
        for claim in worker.claims:
            console.print(
                f"  {worker.worker_id}: {claim.file} ({claim.age_s:.1f} s)",
                markup=False,
            )


def run_purge_command(args: argparse.Namespace) -> int:
    url, name = _redis_url(args), _queue_name(args)
    if not args.yes:
        raise ConfigurationError(
            f"purge deletes every job, result and worker record of queue {name}; "
            "add --yes to confirm."
        )
    deleted: int = run_async(_purge(url, name))
    if args.json:
        print_json({"queue": name, "deleted_keys": deleted})
    elif args.verbosity > 0:
        Console(file=sys.stdout).print(
            f"Queue {name}: deleted {deleted} key(s).", markup=False
        )
    return 0


async def _purge(url: str, name: str) -> int:
    queue_module = _load_queue_module()
    queue: JobQueue = await queue_module.JobQueue.connect(url, name)
    try:
        return await queue.purge()
    finally:
        await queue.close()


def run_requeue_command(args: argparse.Namespace) -> int:
    url, name = _redis_url(args), _queue_name(args)
    outcome = "dead" if args.dead else "error"
    moved, dropped = run_async(_requeue(url, name, outcome))
    if args.json:
        print_json({"queue": name, "requeued": moved, "dropped": dropped})
    elif args.verbosity > 0:
        source = "dead-letter list" if args.dead else "failed list"
        Console(file=sys.stdout).print(
            f"Queue {name}: requeued {moved} job(s) from the {source}"
            f" ({dropped} already finished since, dropped).",
            markup=False,
        )
    return 0


async def _requeue(url: str, name: str, outcome: str) -> tuple[int, int]:
    queue_module = _load_queue_module()
    queue: JobQueue = await queue_module.JobQueue.connect(url, name)
    try:
        moved, dropped = await queue.requeue(outcome)
        return moved, dropped
    finally:
        await queue.close()


def _number(value: int | None) -> str:
    return "-" if value is None else str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"
