"""The local build: plan jobs from a dictionary and run them concurrently.

Each lane (audio, images) plans its jobs from one shared pass over the
dictionary (``shared_rows.py``) and keeps a bounded window of jobs in
progress. So memory does not grow with the size of the dictionary, and a
slow image lane cannot starve the audio lane. One
failing job never cancels the others. An account-level failure stops new
requests and lets the ones in flight end.

Each run is recorded in the output folder's journal (``journal.py``), which
also says which files changed since they were made and which jobs failed in
an earlier run. ``request_stop()`` stops taking jobs and gives the requests in
flight ``grace_s`` seconds before they are cancelled; ``stop_now()`` cancels
them at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from .errors import AccountError, ConfigurationError, EslAssetsError
from .executor import JobRunner, RunState
from .failures import Failure
from .jobs import AssetKind, Job, JobResult, Status
from .journal import CHANGED, kinds_of
from .journal_recorder import JournalRecorder
from .lanes import Lane
from .models import warn_about_shutdown
from .planner import Planner, RequestTemplate, build_request_template
from .report import DRYRUN_PROMPT_SAMPLES, BuildReport
from .rows import RejectedRow, Row
from .settings import Settings, without_credentials
from .shared_rows import SharedRows
from .storage import prepare_outdir, remove_own_temp_files, remove_stale_temp_files

logger = logging.getLogger(__name__)

ERRORS_FILE = "errors.jsonl"
NO_DICTIONARY_MESSAGE = (
    "No dictionary given; pass the path of a SQLite, CSV, TSV, JSON, JSONL, "
    "Merriam-Webster JSON or word-list file, or use --resume to continue the "
    "last run in --outdir."
)
#: Jobs a lane keeps in progress (in flight or waiting to retry) per slot.
WINDOW_PER_SLOT = 4
#: A lane lets other tasks and signal handlers run after this many jobs in a
#: row that needed no request (files already on disk).
YIELD_EVERY_SETTLED = 256
#: A lane this many rows ahead of the other in the shared dictionary pass
#: yields after every job that needed no request, so the other catches up.
MAX_LANE_LEAD_ROWS = 2_000
#: Journal batches waiting for the writer thread before planning pauses. A
#: build that only skips files records them faster than SQLite commits, and
#: an unbounded backlog held about 1 KB per job (300 MB at 300,000 files).
MAX_JOURNAL_BACKLOG = 4
JOURNAL_BACKLOG_WAIT_S = 0.005


class BuildObserver(Protocol):
    """Receives each planned job and each result, for progress and journals."""

    def on_planned(self, job: Job) -> None: ...

    def on_result(self, job: Job, result: JobResult) -> None: ...


def lane_kinds(settings: Settings) -> dict[str, frozenset[AssetKind]]:
    """Return the lanes this build uses, with the asset kinds of each."""
    lanes: dict[str, frozenset[AssetKind]] = {}
    if settings.audio:
        lanes["audio"] = frozenset({AssetKind.WORD, AssetKind.SHORTDEF})
    if settings.images:
        lanes["images"] = frozenset({AssetKind.IMAGE})
    return lanes


def read_rows(settings: Settings) -> Iterator[Row | RejectedRow]:
    """Stream the selected rows of the settings' dictionary."""
    from .inputs import read_dictionary
    from .selection import Selection, select_rows

    if settings.dictionary is None:
        raise ConfigurationError(NO_DICTIONARY_MESSAGE)
    selection = Selection(
        levels=frozenset(settings.level) or None,
        pos=frozenset(settings.pos) or None,
        words=selected_words(settings),
        limit=settings.limit,
    )
    rows = read_dictionary(settings.dictionary, settings.format)
    return select_rows(rows, selection)


def selected_words(settings: Settings) -> frozenset[str] | None:
    """Return the headwords ``--words`` selects (files given as ``@path`` read)."""
    from .selection import parse_words_option

    if not settings.words:
        return None
    return frozenset().union(*(parse_words_option(w) for w in settings.words))


def adapt_to_provider(settings: Settings) -> Settings:
    """Switch to WAV when the offline provider cannot encode the audio format."""
    if settings.provider != "local" or not settings.audio:
        return settings
    from .local_provider import supported_audio_formats

    if settings.audio_format in supported_audio_formats():
        return settings
    logger.warning(
        "The local provider cannot encode %s here (install the 'local' extra "
        "for PyAV); writing WAV files instead.",
        settings.audio_format,
    )
    return settings.replace(audio_format="wav")


class Build:
    """One local build run. Create it inside the event loop that runs it."""

    def __init__(
        self,
        settings: Settings,
        *,
        observers: list[BuildObserver] | None = None,
        force_files: frozenset[str] = frozenset(),
        resumed_from: int | None = None,
    ) -> None:
        self.settings = adapt_to_provider(settings)
        self.observers = list(observers or [])
        self.report = BuildReport(dryrun=self.settings.dryrun)
        self.state = RunState()
        self._force_files = force_files
        self._resumed_from = resumed_from
        self._template: RequestTemplate | None = None
        self._lanes: dict[str, Lane] = {}
        self._journal: JournalRecorder | None = None
        self._lanes_planned = 0
        self._in_flight: set[asyncio.Task[None]] = set()
        self._grace_timer: asyncio.TimerHandle | None = None
        self._cancelling = False
        self._requested_words: frozenset[str] | None = None
        self._seen_words: set[str] = set()

    def prepare(self) -> Path:
        """Check settings and the dictionary, create the output folder.

        Everything here runs before any request, so a configuration error
        never costs money. A dry run writes nothing, so it leaves a missing
        output folder uncreated.
        """
        self._template = build_request_template(self.settings)
        from .inputs import detect_format

        if self.settings.dictionary is None:
            raise ConfigurationError(NO_DICTIONARY_MESSAGE)
        if self.settings.format is None:
            detect_format(self.settings.dictionary)
        from .text import clean_text

        words = selected_words(self.settings)
        if words is not None:
            self._requested_words = frozenset(clean_text(w).casefold() for w in words)
        if self.settings.dryrun and not self.settings.outdir.exists():
            return self.settings.outdir.resolve()
        outdir = prepare_outdir(self.settings.outdir)
        remove_stale_temp_files(outdir)
        return outdir

    async def run(self) -> BuildReport:
        """Run every job and return the report, even after a fatal stop."""
        started = time.monotonic()
        outdir = self.prepare()
        client = None
        if not self.settings.dryrun:
            from .client import create_client

            client = create_client(self.settings)
        caps = self.settings.lane_concurrency
        self._lanes = {
            name: Lane(
                name, caps[name], getattr(self.settings, f"{name[:5]}_rpm", None)
            )
            for name in lane_kinds(self.settings)
        }
        runner = JobRunner(client, self.settings, outdir, self._lanes, self.state)
        self._journal = JournalRecorder.open(
            outdir,
            self.settings,
            kinds_of(self.settings),
            resumed_from=self._resumed_from,
        )
        self.observers.append(self._journal)
        lanes = lane_kinds(self.settings)
        rows = SharedRows(lambda: read_rows(self.settings), len(lanes))
        ending = "returned"
        try:
            async with asyncio.TaskGroup() as group:
                for index, (name, kinds) in enumerate(lanes.items()):
                    group.create_task(self._run_lane(runner, name, kinds, rows, index))
        except asyncio.CancelledError:
            ending = "cancelled"
            raise
        except BaseExceptionGroup as group:
            ending = "failed"
            # A reader or selection error inside a lane reaches here wrapped
            # in task groups; the caller expects the error itself.
            error = first_error(group, EslAssetsError)
            if error is not None:
                raise error from None
            raise
        except Exception:
            ending = "failed"
            raise
        finally:
            self.report.duration_s = time.monotonic() - started
            self.report.lanes = {
                n: lane.stats.to_dict() for n, lane in self._lanes.items()
            }
            if client is not None:
                await client.close()
            self._finish(outdir, ending)
        return self.report

    def request_stop(self) -> None:
        """Stop taking jobs; cancel the requests in flight after ``grace_s``.

        Call it in the loop thread, for example from a handler added with
        ``loop.add_signal_handler``. A second call cancels them at once.
        """
        if self._grace_timer is not None:
            self.stop_now()
            return
        self.report.outcome = "interrupted"
        self.state.stop.set()
        loop = asyncio.get_running_loop()
        self._grace_timer = loop.call_later(self.settings.grace_s, self.stop_now)

    def stop_now(self) -> None:
        """Stop taking jobs and cancel the requests in flight.

        A cancelled job counts as not run. Its file is either not written or,
        if the writer thread had started on it, written whole.
        """
        self.report.outcome = "interrupted"
        self.state.stop.set()
        self._cancelling = True
        for task in list(self._in_flight):
            task.cancel()

    def _finish(self, outdir: Path, ending: str) -> None:
        """Settle the outcome, remove temporary files, close the journal.

        ``ending`` is ``returned``, ``cancelled`` or ``failed`` (an exception).
        """
        if ending == "cancelled":
            self.report.outcome = "interrupted"
        elif self.state.fatal is not None:
            self.report.outcome = "stopped"
            self.report.fatal_message = account_error_message(
                self.state.fatal, self.settings
            )
        if self.report.outcome == "interrupted" and not self.settings.dryrun:
            remove_own_temp_files(outdir)
        if ending == "returned":
            self._warn_about_selection()
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        if self._journal is not None:
            self._journal.close(
                "failed" if ending == "failed" else self.report.outcome,
                self.report.requests,
                self.report.duration_s,
                self.report.fatal_message,
            )

    async def _run_lane(
        self,
        runner: JobRunner,
        name: str,
        kinds: frozenset[AssetKind],
        rows: SharedRows,
        index: int,
    ) -> None:
        assert self._template is not None
        planner = Planner(self.settings, self._template, kinds)
        window = asyncio.Semaphore(self._lanes[name].max_in_flight * WINDOW_PER_SLOT)
        settled = 0
        planned_all = True
        sent_any = False
        # When the lane is cancelled, the task group cancels the jobs in
        # progress and waits for them, so no job outlives a cancelled build.
        async with asyncio.TaskGroup() as jobs:
            for item in planner.plan(rows.reader(index)):
                if self.state.stop.is_set():
                    planned_all = False
                    break
                if isinstance(item, RejectedRow):
                    if index == 0:
                        self._reject(item)
                    continue
                self._notify_planned(item)
                result, refresh = self._settle(runner, item)
                if result is not None:
                    self._record(item, result)
                    settled += 1
                    if (
                        settled % YIELD_EVERY_SETTLED == 0
                        or rows.lead(index) > MAX_LANE_LEAD_ROWS
                    ):
                        await self._let_others_run()
                    continue
                await window.acquire()
                if self.state.stop.is_set():
                    window.release()
                    # The observers have counted this job as planned, so the
                    # report counts it too.
                    self._count_not_run(item)
                    planned_all = False
                    break
                if not sent_any:
                    sent_any = True
                    self._warn_before_first_request(name)
                task = jobs.create_task(self._execute(runner, item, refresh))
                self._in_flight.add(task)
                task.add_done_callback(lambda t: self._job_done(t, window))
                # Let finished jobs report between planned ones.
                await asyncio.sleep(0)
            if planned_all:
                self._lane_planned()
        self.report.excluded.update(planner.excluded)

    def _warn_before_first_request(self, lane: str) -> None:
        """Warn about a shutdown of the lane's model, unless it runs offline."""
        settings = self.settings
        if settings.provider == "local":
            return
        warn_about_shutdown(
            settings.audio_model if lane == "audio" else settings.image_model
        )

    async def _let_others_run(self) -> None:
        """Yield to other tasks, and wait while the journal writer catches up."""
        await asyncio.sleep(0)
        journal = self._journal
        # The writer thread changes the backlog, so polling every few
        # milliseconds replaces a cross-thread wake-up per committed batch.
        while journal is not None and journal.backlog > MAX_JOURNAL_BACKLOG:  # noqa: ASYNC110
            await asyncio.sleep(JOURNAL_BACKLOG_WAIT_S)

    def _settle(self, runner: JobRunner, job: Job) -> tuple[JobResult | None, bool]:
        """Return the result of a job that needs no request (or None), and
        whether the job regenerates a changed file (``--refresh-changed``)."""
        journal = self._journal
        forced = job.file in self._force_files
        refresh = journal is not None and not forced and journal.wants_refresh(job)
        result = runner.settle_without_request(job, force=forced or refresh)
        if journal is None or forced:
            return result, False
        if result is None or result.status is Status.DRYRUN:
            skipped = journal.review_missing(job)
            return (skipped, False) if skipped is not None else (result, refresh)
        if result.reason == "exists":
            return journal.review_existing(job, result), False
        return result, False

    def _warn_about_selection(self) -> None:
        if self._requested_words is not None:
            missing = sorted(self._requested_words - self._seen_words)
            if missing:
                logger.warning(
                    "--words: %d headword(s) not found in the dictionary: %s",
                    len(missing),
                    ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""),
                )
        report = self.report
        if report.results or report.not_run:
            return
        settings = self.settings
        if report.rejected:
            if not report.excluded:
                report.unusable_input = True
                report.fatal_message = (
                    f"No usable entry in {settings.dictionary}: all "
                    f"{len(report.rejected)} row(s) were rejected, the first as "
                    f"{report.rejected[0].message} See the README's input "
                    "formats for the fields each entry needs."
                )
            return
        selection_options = [
            option
            for option, value in (
                ("--level", settings.level),
                ("--pos", settings.pos),
                ("--words", settings.words),
                ("--limit", settings.limit),
            )
            if value
        ]
        # A selection may match nothing on purpose (a loop over levels, say),
        # so this is a warning and the exit code stays 0.
        if selection_options:
            logger.warning(
                "No entry of %s matched %s, so nothing was planned. Check those "
                "values.",
                settings.dictionary,
                ", ".join(selection_options),
            )
        elif report.excluded:
            logger.warning(
                "Every job of %s was excluded (%s), so nothing was planned.",
                settings.dictionary,
                ", ".join(f"{reason}: {n}" for reason, n in report.excluded.items()),
            )
        else:
            report.unusable_input = True
            report.fatal_message = (
                f"{settings.dictionary} has no entries, so nothing was planned. "
                "Add entries (see the README's input formats), then run again."
            )

    def _lane_planned(self) -> None:
        self._lanes_planned += 1
        if self._journal is not None and self._lanes_planned == len(self._lanes):
            self._journal.mark_planned_all()

    def _job_done(self, task: asyncio.Task[None], window: asyncio.Semaphore) -> None:
        self._in_flight.discard(task)
        window.release()
        if task.cancelled():
            # Cancelled before it started, so it recorded nothing.
            self.report.not_run += 1

    async def _execute(self, runner: JobRunner, job: Job, refresh: bool) -> None:
        try:
            result = await runner.execute(job)
        except asyncio.CancelledError:
            if not self._cancelling:
                raise
            # stop_now() cancelled this job: record it as not run and let the
            # lane end normally.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            result = JobResult(
                Status.ERROR,
                job.file,
                job.kind,
                reason="stopped",
                error="The run was stopped while this request was in flight.",
                ref=job.ref,
            )
        if refresh and result.status is Status.SUCCESS:
            result.reason = CHANGED
        self._record(job, result)

    def _notify_planned(self, job: Job) -> None:
        if self._requested_words is not None:
            self._seen_words.add(job.word.casefold())
        for observer in self.observers:
            observer.on_planned(job)

    def _reject(self, row: RejectedRow) -> None:
        self.report.rejected.append(row)
        if row.reason == "duplicate":
            logger.warning("Duplicate row skipped: %s", row.message)
        else:
            logger.warning("Row rejected (%s): %s", row.reason, row.message)

    def _count_not_run(self, job: Job) -> None:
        # A job that the stop kept from being sent, or cancelled in flight, is
        # still to do, so it counts as not run rather than failed.
        self.report.not_run += 1
        logger.debug("%s not run: the run stopped", job.ref)

    def _record(self, job: Job, result: JobResult) -> None:
        if result.reason == "stopped":
            self._count_not_run(job)
            return
        self.report.add(result)
        if result.status is Status.DRYRUN:
            self._add_to_estimate(job)
        if result.status is Status.ERROR:
            self._log_error(job, result)
        elif logger.isEnabledFor(logging.INFO):
            # Checked first because the arguments cost more than the check,
            # once per file even when every file is skipped.
            logger.info(
                "%s %s (%s)", job.ref, result.status.value, result.reason or job.file
            )
        for observer in self.observers:
            observer.on_result(job, result)

    def _add_to_estimate(self, job: Job) -> None:
        """Count a job that a build would send in the dry run's estimates."""
        if job.kind is not AssetKind.IMAGE:
            self.report.characters_to_speak += len(job.text)
        elif len(self.report.sample_prompts) < DRYRUN_PROMPT_SAMPLES:
            self.report.sample_prompts.append(job.text)

    def _log_error(self, job: Job, result: JobResult) -> None:
        if self.settings.dryrun:
            # A job that a build would not send (a text over the API's limit)
            # is a problem of the dictionary, not a failure of the dry run, so
            # it gets a warning. A dry run also writes nothing in the output
            # folder.
            logger.warning(
                "%s (%r) would fail without a request (%s): %s",
                job.ref,
                job.word,
                result.reason,
                result.error,
            )
            return
        if self.state.fatal is None:
            logger.error("%s failed (%s): %s", job.ref, result.reason, result.error)
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "kind": job.kind.value,
            "file": job.file,
            "text": job.text,
            "reason": result.reason,
            "status_code": result.status_code,
            "error_code": result.error_code,
            "message": result.error,
            "attempts": result.attempts,
        }
        path = Path(self.settings.outdir) / ERRORS_FILE
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def first_error(
    group: BaseExceptionGroup[BaseException], kind: type[EslAssetsError]
) -> EslAssetsError | None:
    """Return the first ``kind`` error in ``group`` or its nested groups."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            found = first_error(error, kind)
            if found is not None:
                return found
        elif isinstance(error, kind):
            return error
    return None


PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")


def unreachable_message(failure: Failure, settings: Settings) -> str:
    """Return the message for an API that could not be reached, with what to check."""
    address = without_credentials(settings.base_url) or "https://api.openai.com/v1"
    message = (
        f"Stopped: could not connect to the API at {address}. {failure.message}. "
        "Check --base-url (or OPENAI_BASE_URL) and the network, then run again."
    )
    proxies = [
        name
        for name in PROXY_VARIABLES
        if os.environ.get(name) or os.environ.get(name.lower())
    ]
    if proxies:
        message += (
            f" {', '.join(proxies)} is set, so requests go through a proxy; for a "
            "server on this machine or network, add its host to NO_PROXY."
        )
    return message


def account_error_message(failure: Failure, settings: Settings) -> str:
    """Say what stopped the run and what the user should do about it."""
    detail = (
        f"HTTP {failure.status_code} {failure.error_code or failure.reason}: "
        f"{failure.message}"
    )
    if failure.reason == "unreachable":
        return unreachable_message(failure, settings)
    if failure.reason == "insufficient_quota":
        action = (
            "Stopped: your OpenAI quota or budget is used up. Add credit or raise "
            "the project's budget in the billing settings, then run again."
        )
    elif failure.reason == "rate_limit_zero":
        action = (
            "Stopped: this key's rate limit for the model is 0. Choose another "
            "model or ask for access, then run again."
        )
    elif failure.status_code == 401:
        from .client import rejected_key_action

        action = f"Stopped: the API key was rejected. {rejected_key_action(settings)}"
    elif failure.status_code == 403:
        action = (
            "Stopped: the key may not use this model or endpoint. Check the "
            "project's permissions or choose another model, then run again."
        )
    elif failure.reason == "endpoint_not_found":
        action = (
            "Stopped: the API address was not found. Check --base-url (or "
            f"OPENAI_BASE_URL, now {without_credentials(settings.base_url)}): an "
            "OpenAI-compatible server's URL usually ends in /v1."
        )
    else:
        action = (
            f"Stopped: a model was not found. Check --audio-model "
            f"({settings.audio_model}) and --image-model ({settings.image_model}), "
            "then run again."
        )
    return f"{action} The API said: {detail}"


async def run_build(
    settings: Settings, *, observers: list[BuildObserver] | None = None
) -> BuildReport:
    """Run a local build; raise ``AccountError`` when the account stopped it.

    With ``settings.resume`` the journal records the run as the continuation
    of the newest unfinished run in the output folder.
    """
    resumed_from = None
    if settings.resume:
        from .resume import find_resume_point

        resumed_from = find_resume_point(settings.outdir).run.id
    build = Build(settings, observers=observers, resumed_from=resumed_from)
    report = await build.run()
    if report.outcome == "stopped":
        raise AccountError(report.fatal_message or "The run stopped.", report=report)
    return report
