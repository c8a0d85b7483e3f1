"""Record a build in the output folder's journal without slowing its event loop.

``JournalRecorder`` is the pipeline's observer. In the loop thread it only
counts results and collects the rows that changed, and it hands them to a
writer thread as one batch every ``BATCH_ROWS`` rows or ``FLUSH_INTERVAL_S``
seconds, whichever comes first. Handing over single results would wake the
writer, and switch threads, once per job. The writer thread owns the only
writing connection of the run and commits each batch in one transaction.

A file on disk that the journal does not know yet is "adopted": its row is
recorded with the fingerprint of the job that planned it. A folder built by
another tool, or before the journal existed, can hold hundreds of thousands
of such files, all checked before the first request when the missing files
come last. So adopted rows take a path that leaves the writer thread idle
while the lanes plan: the loop thread appends them, as JSON, to an unnamed
temporary file (``_Spool``). When every lane has planned all its jobs, or
when the run closes, the writer loads the file into a temporary table and
merges that into ``jobs`` in file-name order, in one transaction. While a
writer took the same rows in batches of 500 as the lanes planned, the first
request of a build over 297,000 such files came after 14 to 28 s instead of
about 9 s (``benchmarks/run.py resume``), because the two threads passed the
GIL back and forth for every file. A run killed before the merge loses only
these rows, and the next run adopts the same files again.

It also decides, from the journal state loaded once at the start, whether a
file on disk changed since it was made (``changed``) and whether a job that
failed in an earlier run should be skipped (``failed_before``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigurationError
from .jobs import AssetKind, Job, JobResult, Status
from .journal import (
    BATCH_ROWS,
    BLOCKED_REASONS,
    CHANGED,
    CREATE_ADOPTED,
    FAILED_BEFORE,
    FLUSH_INTERVAL_S,
    MERGE_ADOPTED,
    SAVE_FILE,
    SAVE_RESULT,
    STAGE_ADOPTED,
    Journal,
    KnownFiles,
    connect,
    journal_path,
    utc_now,
)
from .settings import Settings

logger = logging.getLogger(__name__)

#: Seconds ``close()`` waits for the writer to commit the last batch.
CLOSE_TIMEOUT_S = 60.0


class JournalRecorder:
    """Records one build in the journal: the ``BuildObserver`` of the pipeline.

    Call its methods from one thread (the event loop's). In a dry run it
    only reads the journal and records nothing.
    """

    def __init__(self, settings: Settings, known: KnownFiles) -> None:
        self.settings = settings
        self.known = known
        #: The run's id in the journal; None in a dry run.
        self.run_id: int | None = None
        #: Jobs planned so far.
        self.planned = 0
        self._writer: _Writer | None = None
        self._counts: dict[AssetKind, Counter[Status]] = {}
        self._reasons: Counter[str] = Counter()
        self._rows: list[_Row] = []
        self._journal_dir: Path | None = None
        self._spool: _Spool | None = None
        self._planned_all = False
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def open(
        cls,
        outdir: Path,
        settings: Settings,
        kinds: frozenset[AssetKind],
        *,
        resumed_from: int | None = None,
    ) -> JournalRecorder:
        """Load the journal state of ``outdir`` and start recording a run."""
        try:
            return cls._open(outdir, settings, kinds, resumed_from)
        except sqlite3.Error as error:
            raise ConfigurationError(
                f"The journal {journal_path(outdir)} cannot be used: {error}. Check "
                "that --outdir is writable; if the file is damaged, move it away "
                "(the next run starts a new journal and keeps the files on disk)."
            ) from None

    @classmethod
    def _open(
        cls,
        outdir: Path,
        settings: Settings,
        kinds: frozenset[AssetKind],
        resumed_from: int | None,
    ) -> JournalRecorder:
        if settings.dryrun:
            existing = Journal.open_existing(outdir)
            if existing is None:
                return cls(settings, KnownFiles())
            with existing:
                return cls(settings, existing.load_known_files(kinds))
        with Journal.open(outdir) as journal:
            recorder = cls(settings, journal.load_known_files(kinds))
            recorder.run_id = journal.start_run(settings, resumed_from)
        logger.info(
            "Journal %s: run %d; %d file(s) known.",
            journal.path,
            recorder.run_id,
            len(recorder.known.fingerprints),
        )
        recorder._journal_dir = journal.path.parent
        recorder._writer = _Writer(journal.path, recorder.run_id, outdir)
        recorder._writer.start()
        return recorder

    # -- decisions

    def wants_refresh(self, job: Job) -> bool:
        """Return whether ``--refresh-changed`` should regenerate ``job.file``."""
        if not self.settings.refresh_changed or not self.known.is_changed(job):
            return False
        return self.review_missing(job) is None

    def review_existing(self, job: Job, result: JobResult) -> JobResult:
        """Turn an ``exists`` skip into ``changed`` when the fingerprint differs."""
        if not self.known.is_changed(job):
            return result
        return JobResult(
            Status.SKIPPED, job.file, job.kind, reason=CHANGED, ref=job.ref
        )

    def review_missing(self, job: Job) -> JobResult | None:
        """Return a skip for a job that failed before and is not to be retried."""
        reason = self.known.earlier_failure(job)
        if reason is None:
            return None
        if self.settings.retries_rejected_jobs and (
            reason not in BLOCKED_REASONS or self.settings.retry_blocked
        ):
            return None
        return JobResult(
            Status.SKIPPED, job.file, job.kind, reason=FAILED_BEFORE, ref=job.ref
        )

    # -- BuildObserver

    # These two run once per job, so they stay cheap: no enum ``.value`` (a
    # Python-level descriptor) and no call unless a flush must be scheduled.

    def on_planned(self, job: Job) -> None:
        self.planned += 1
        if self._timer is None:
            self._schedule_flush()

    def on_result(self, job: Job, result: JobResult) -> None:
        if self._writer is None:
            return
        statuses = self._counts.get(job.kind)
        if statuses is None:
            statuses = self._counts[job.kind] = Counter()
        statuses[result.status] += 1
        if result.reason is not None:
            self._reasons[result.reason] += 1
        if (
            result.reason == "exists"
            and result.status is Status.SKIPPED
            and not self.known.has_file(job.file)
        ):
            self._adopt(job)
        else:
            row = self._row_for(job, result)
            if row is not None:
                self._rows.append(row)
                if len(self._rows) >= BATCH_ROWS:
                    self.flush()
                    return
        if self._timer is None:
            self._schedule_flush()

    @property
    def backlog(self) -> int:
        """Batches handed to the writer thread and not yet committed."""
        return self._writer.backlog if self._writer is not None else 0

    def mark_planned_all(self) -> None:
        """Record that every lane planned all of its jobs; merge adopted files."""
        self._planned_all = True
        self.flush(with_adopted=True)

    # -- writing

    def flush(self, *, with_adopted: bool = False) -> None:
        """Hand the rows and counts so far to the writer thread.

        ``with_adopted`` also hands over the files adopted so far, which the
        writer then merges into ``jobs``.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writer is None:
            return
        spool = None
        if with_adopted and self._spool is not None:
            spool, self._spool = self._spool, None
            spool.seal()
        counts = {
            kind.value: {status.value: n for status, n in statuses.items()}
            for kind, statuses in self._counts.items()
        }
        self._writer.put(
            _Batch(
                self._rows,
                json.dumps(counts),
                json.dumps(dict(self._reasons)),
                self.planned,
                self._planned_all,
                spool,
            )
        )
        self._rows = []

    def close(
        self, outcome: str, requests: int, duration_s: float, message: str | None
    ) -> None:
        """Record the end of the run and wait for the last commit."""
        writer = self._writer
        if writer is None:
            return
        self.flush(with_adopted=True)
        writer.put(_Finish(utc_now(), outcome, requests, round(duration_s, 3), message))
        writer.put(None)
        writer.join(CLOSE_TIMEOUT_S)
        if writer.is_alive():
            logger.error(
                "The journal writer did not finish within %.0f s; the last results "
                "of run %s may be missing from %s.",
                CLOSE_TIMEOUT_S,
                self.run_id,
                writer.path,
            )
        self._writer = None

    def _schedule_flush(self) -> None:
        """Flush within ``FLUSH_INTERVAL_S``, so a kill loses at most that much."""
        if self._timer is not None or self._writer is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Outside a loop (direct calls), batches go at BATCH_ROWS and close().
            return
        self._timer = loop.call_later(FLUSH_INTERVAL_S, self.flush)

    def _model_of(self, job: Job) -> object:
        """Return what made the file: the API model, or the offline engine."""
        if self.settings.provider == "local":
            return "local:card" if job.kind is AssetKind.IMAGE else "local:espeak-ng"
        return job.params.get("model")

    def _row_for(self, job: Job, result: JobResult) -> _Row | None:
        """Return the row to write for a result, or None when nothing changed."""
        if result.status is Status.SUCCESS:
            return _Row(
                "file", self._values(job, result, file_fingerprint=job.fingerprint)
            )
        if (
            result.reason in (FAILED_BEFORE, "stopped")
            or result.status is Status.DRYRUN
        ):
            return None
        if result.status is Status.SKIPPED and result.reason == "exists":
            if job.file in self.known.states:
                return _Row("result", self._values(job, result))
            return None
        known = self.known.states.get(job.file)
        if result.attempts == 0 and known == (
            result.status.value,
            result.reason,
            job.fingerprint,
        ):
            return None
        return _Row("result", self._values(job, result))

    def _adopt(self, job: Job) -> None:
        """Spool the row of a file on disk that the journal does not know."""
        if self._spool is None:
            assert self._journal_dir is not None
            self._spool = _Spool(self._journal_dir)
        self._spool.add(
            (
                job.file,
                _KIND_NAMES[job.kind],
                job.uuid,
                job.word,
                job.definition_id,
                job.definition,
                job.fingerprint,
                self._model_of(job),
                _voice_of(job),
            )
        )

    def _values(
        self, job: Job, result: JobResult, *, file_fingerprint: str | None = None
    ) -> dict[str, Any]:
        voice = _voice_of(job)
        now = utc_now()
        generated = result.status is Status.SUCCESS
        return {
            "file": job.file,
            "kind": job.kind.value,
            "uuid": job.uuid,
            "word": job.word,
            "definition_id": job.definition_id,
            "definition": job.definition,
            "status": result.status.value,
            "reason": result.reason,
            "attempts": result.attempts,
            "error": result.error,
            "status_code": result.status_code,
            "error_code": result.error_code,
            "duration_s": round(result.duration_s, 4),
            "usage": json.dumps(result.usage) if result.usage is not None else None,
            "fingerprint": job.fingerprint,
            "file_fingerprint": file_fingerprint,
            "bytes": result.bytes if generated else None,
            "model": self._model_of(job),
            "voice": voice,
            "created_at": now if generated else None,
            "updated_at": now,
            "run_id": self.run_id,
        }


_KIND_NAMES = {kind: kind.value for kind in AssetKind}

#: A file on disk new to the journal, in the order of ``ADOPTED_COLUMNS``.
_Adopted = tuple[str, str, str, str, str, str | None, str, object, object]
#: Adopted rows per line of a spool file.
SPOOL_LINE_ROWS = 1000


class _Spool:
    """Adopted rows in an unnamed temporary file, until the writer takes them.

    Each line is a JSON array of up to ``SPOOL_LINE_ROWS`` rows, so one
    SQLite statement (``STAGE_ADOPTED``) loads a line. On Linux the file has
    no name at all (``O_TMPFILE``), elsewhere it is unlinked at once, so a
    killed run leaves nothing behind.
    """

    def __init__(self, directory: Path) -> None:
        self.rows = 0
        self._file = tempfile.TemporaryFile(prefix="adopted-", dir=directory)
        self._pending: list[_Adopted] = []

    def add(self, row: _Adopted) -> None:
        self._pending.append(row)
        if len(self._pending) >= SPOOL_LINE_ROWS:
            self._write_pending()

    def seal(self) -> None:
        """Write the last rows and rewind, so the writer thread can read."""
        self._write_pending()
        self._file.seek(0)

    def lines(self) -> Iterator[str]:
        for line in self._file:
            yield line.decode()

    def close(self) -> None:
        self._file.close()

    def _write_pending(self) -> None:
        if self._pending:
            self._file.write(json.dumps(self._pending, default=str).encode() + b"\n")
            self.rows += len(self._pending)
            self._pending = []


def _voice_of(job: Job) -> object:
    voice = job.params.get("voice")
    if isinstance(voice, dict):
        return voice.get("id")
    return voice


@dataclass(frozen=True, slots=True)
class _Row:
    #: ``file`` (a new file) or ``result`` (no new file: the file columns
    #: keep their values).
    mode: str
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Batch:
    rows: list[_Row]
    counts_json: str
    reasons_json: str
    planned: int
    planned_all: bool
    #: Files adopted since the last hand-over, to merge into ``jobs``.
    adopted: _Spool | None = None


@dataclass(frozen=True, slots=True)
class _Finish:
    ended_at: str
    outcome: str
    requests: int
    duration_s: float
    message: str | None


class _Writer(threading.Thread):
    """The one thread that writes a run's batches, one transaction each."""

    def __init__(self, path: Path, run_id: int, outdir: Path) -> None:
        super().__init__(name=f"esl-assets-journal-{run_id}", daemon=True)
        self.path = path
        self.run_id = run_id
        self._outdir = outdir
        self._outdir_text = str(outdir)
        self._queue: queue.SimpleQueue[_Batch | _Finish | None] = queue.SimpleQueue()
        self._lost_rows = 0

    def put(self, item: _Batch | _Finish | None) -> None:
        self._queue.put(item)

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def run(self) -> None:
        connection = connect(self.path)
        stats = _FileStats(self._outdir_text)
        connection.create_function("file_bytes", 1, stats.size)
        connection.create_function("file_created", 1, stats.created)
        try:
            connection.execute(CREATE_ADOPTED)
            while True:
                item = self._queue.get()
                if item is None:
                    break
                self._commit(connection, item)
        finally:
            connection.close()
        if self._lost_rows:
            logger.error(
                "%d result(s) of run %d are missing from the journal %s; their "
                "files are on disk, and the next run records them again.",
                self._lost_rows,
                self.run_id,
                self.path,
            )

    def _commit(self, connection: sqlite3.Connection, item: _Batch | _Finish) -> None:
        try:
            with connection:
                connection.execute("BEGIN IMMEDIATE")
                if isinstance(item, _Batch):
                    self._write_batch(connection, item)
                else:
                    self._write_finish(connection, item)
        except sqlite3.Error as error:
            rows = len(item.rows) if isinstance(item, _Batch) else 0
            self._lost_rows += rows
            logger.error(
                "Writing %d row(s) of run %d to the journal %s failed: %s",
                rows,
                self.run_id,
                self.path,
                error,
            )
        if isinstance(item, _Batch) and item.adopted is not None:
            self._merge_adopted(connection, item.adopted)

    def _write_batch(self, connection: sqlite3.Connection, batch: _Batch) -> None:
        files = [row.values for row in batch.rows if row.mode == "file"]
        results = [row.values for row in batch.rows if row.mode == "result"]
        if files:
            connection.executemany(SAVE_FILE, files)
        if results:
            connection.executemany(SAVE_RESULT, results)
        connection.execute(
            "UPDATE runs SET counts = ?, reasons = ?, planned = ?, planned_all = ?"
            " WHERE id = ?",
            (
                batch.counts_json,
                batch.reasons_json,
                batch.planned,
                int(batch.planned_all),
                self.run_id,
            ),
        )

    def _write_finish(self, connection: sqlite3.Connection, finish: _Finish) -> None:
        connection.execute(
            "UPDATE runs SET ended_at = ?, outcome = ?, requests = ?, duration_s = ?,"
            " message = ? WHERE id = ?",
            (
                finish.ended_at,
                finish.outcome,
                finish.requests,
                finish.duration_s,
                finish.message,
                self.run_id,
            ),
        )

    def _merge_adopted(self, connection: sqlite3.Connection, spool: _Spool) -> None:
        """Record the spooled files in ``jobs``, in one transaction."""
        parameters = {"run_id": self.run_id, "updated_at": utc_now()}
        try:
            with connection:
                connection.execute("BEGIN IMMEDIATE")
                for line in spool.lines():
                    connection.execute(STAGE_ADOPTED, (line,))
                connection.execute(MERGE_ADOPTED, parameters)
                connection.execute("DELETE FROM temp.adopted")
        except (sqlite3.Error, OSError) as error:
            self._lost_rows += spool.rows
            logger.error(
                "Recording %d file(s) found on disk in the journal %s failed: %s",
                spool.rows,
                self.path,
                error,
            )
        finally:
            spool.close()


class _FileStats:
    """Size and modification time of output files, for SQL functions.

    The merge of adopted rows calls ``size`` and then ``created`` for each
    file, so the last ``os.stat`` result is kept for the second call.
    """

    def __init__(self, outdir_text: str) -> None:
        self._outdir_text = outdir_text
        self._file: str | None = None
        self._stat: os.stat_result | None = None

    def size(self, file: str) -> int | None:
        stat = self._stat_of(file)
        return stat.st_size if stat is not None else None

    def created(self, file: str) -> str | None:
        stat = self._stat_of(file)
        if stat is None:
            return None
        return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(stat.st_mtime))

    def _stat_of(self, file: str) -> os.stat_result | None:
        if file != self._file:
            self._file = file
            try:
                self._stat = os.stat(os.path.join(self._outdir_text, file))
            except OSError:
                self._stat = None
        return self._stat
