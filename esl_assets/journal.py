"""The journal of an output folder: runs, jobs and file fingerprints in SQLite.

``outdir/.esl-assets/journal.sqlite`` records every run that sends requests:
settings without the API key, start, end, outcome and counts. It also keeps
the latest state of every job, keyed by its file name: status, reason,
attempts, last error, duration, image usage and the entry it belongs to. Each
job row also stores the fingerprint of its last result and that of the file
on disk.

The disk, not the journal, says which files are done. A file is renamed into
place before its result reaches the journal, so a run killed with SIGKILL
loses at most the rows of its last uncommitted batch, and the next run still
skips those files. The journal stores what the disk cannot: which text and
settings made each file (so edits show up as ``changed``), which jobs failed
(so they are not paid for again unless ``--retry-failed``), and the settings of
an unfinished run (for ``--resume``).

A run writes through ``journal_recorder.JournalRecorder``: one writer thread
owns the writing connection and commits a batch every ``BATCH_ROWS`` rows or
``FLUSH_INTERVAL_S`` seconds. WAL mode with ``synchronous=NORMAL`` keeps every
committed row through a crash of the process; a power loss may roll back the
last commits, which again costs only fingerprints, never files. This module
holds the schema, the read side (``Journal``) and ``KnownFiles``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import ConfigurationError
from .jobs import AssetKind, Job, Status
from .settings import Settings, without_credentials
from .storage import local_process_alive

logger = logging.getLogger(__name__)

JOURNAL_DIR = ".esl-assets"
JOURNAL_NAME = "journal.sqlite"
SCHEMA_VERSION = 1
#: The writer commits when this many job rows are waiting ...
BATCH_ROWS = 500
#: ... or when the oldest uncommitted result is this many seconds old.
FLUSH_INTERVAL_S = 1.0
#: Seconds a connection waits for another process's write lock.
BUSY_TIMEOUT_S = 30.0

#: Failure reasons that ``failures.classify`` gives content-policy refusals.
BLOCKED_REASONS = frozenset(
    {"moderation_blocked", "content_policy_violation", "content_filter"}
)
#: Client-side refusals of one job: they fail again, without a request,
#: for the same text and settings.
_JOB_REASONS = frozenset({"too_long", "unsafe_file_name"})
#: 4xx statuses that are not about the job itself: key, permission,
#: endpoint, timeout, conflict and rate limit.
_NOT_JOB_STATUSES = frozenset(
    {"http_401", "http_403", "http_404", "http_408", "http_409", "http_429"}
)


def failure_repeats(reason: str | None) -> bool:
    """Return whether a job that failed for ``reason`` would fail again as sent.

    That is a refusal of the job itself: a content-policy block, another 4xx
    about the request (400, 413, 422) or a text the API cannot take. A plain
    build does not resend such a job (``failed_before``). Connection errors,
    timeouts, 5xx, 429s, account errors and stopped runs are not about
    the job, so the next build sends it again.
    """
    if reason is None:
        return False
    if reason in BLOCKED_REASONS or reason in _JOB_REASONS:
        return True
    return reason.startswith("http_4") and reason not in _NOT_JOB_STATUSES


#: Reason of a job skipped because it failed in an earlier run.
FAILED_BEFORE = "failed_before"
#: Reason of a job whose file on disk was made from other text or settings.
CHANGED = "changed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    -- complete, stopped, interrupted or failed (an unexpected exception);
    -- NULL while running or after a kill.
    outcome TEXT,
    dictionary TEXT,
    settings TEXT NOT NULL,
    counts TEXT NOT NULL DEFAULT '{}',
    reasons TEXT NOT NULL DEFAULT '{}',
    planned INTEGER NOT NULL DEFAULT 0,
    planned_all INTEGER NOT NULL DEFAULT 0,
    requests INTEGER,
    duration_s REAL,
    message TEXT,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    resumed_from INTEGER,
    resumed_by INTEGER
);
CREATE TABLE IF NOT EXISTS jobs (
    file TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    uuid TEXT NOT NULL,
    word TEXT,
    definition_id TEXT NOT NULL,
    definition TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    status_code INTEGER,
    error_code TEXT,
    duration_s REAL,
    usage TEXT,
    -- Fingerprint of the job at its last result.
    fingerprint TEXT NOT NULL,
    -- Fingerprint of the job that made the file on disk; NULL without a file.
    file_fingerprint TEXT,
    bytes INTEGER,
    model TEXT,
    voice TEXT,
    created_at TEXT,
    updated_at TEXT NOT NULL,
    run_id INTEGER NOT NULL
) WITHOUT ROWID;
"""

_JOB_COLUMNS = (
    "file",
    "kind",
    "uuid",
    "word",
    "definition_id",
    "definition",
    "status",
    "reason",
    "attempts",
    "error",
    "status_code",
    "error_code",
    "duration_s",
    "usage",
    "fingerprint",
    "file_fingerprint",
    "bytes",
    "model",
    "voice",
    "created_at",
    "updated_at",
    "run_id",
)
#: Columns that describe the file on disk; a result without a new file keeps them.
_FILE_COLUMNS = ("file_fingerprint", "bytes", "model", "voice", "created_at")


def _upsert(columns: tuple[str, ...]) -> str:
    names = ", ".join(_JOB_COLUMNS)
    values = ", ".join(f":{name}" for name in _JOB_COLUMNS)
    updates = ", ".join(f"{name} = excluded.{name}" for name in columns)
    return (
        f"INSERT INTO jobs ({names}) VALUES ({values}) "
        f"ON CONFLICT (file) DO UPDATE SET {updates}"
    )


#: A new file: every column changes.
SAVE_FILE = _upsert(_JOB_COLUMNS[1:])
#: A result without a new file: the file columns keep their values.
SAVE_RESULT = _upsert(tuple(c for c in _JOB_COLUMNS[1:] if c not in _FILE_COLUMNS))

#: Columns of a file on disk that the journal did not know (an adopted file).
ADOPTED_COLUMNS = (
    "file",
    "kind",
    "uuid",
    "word",
    "definition_id",
    "definition",
    "fingerprint",
    "model",
    "voice",
)
#: The writer's staging table of adopted rows. It is a temporary table, so it
#: lives in SQLite's temporary storage, not in the journal file, and goes
#: away with the connection.
CREATE_ADOPTED = (
    f"CREATE TEMP TABLE IF NOT EXISTS adopted ({', '.join(ADOPTED_COLUMNS)})"
)
STAGE_ADOPTED = (
    "INSERT INTO temp.adopted SELECT "
    + ", ".join(f"value ->> {i}" for i in range(len(ADOPTED_COLUMNS)))
    + " FROM json_each(?)"
)
# Sorting by file inserts into the jobs B-tree in key order. ``file_bytes``
# and ``file_created`` are Python functions that the writer registers, which
# read the file's size and modification time. ``WHERE true`` keeps the parser
# from reading ``ON CONFLICT`` as a join constraint.
MERGE_ADOPTED = (
    f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) "
    "SELECT file, kind, uuid, word, definition_id, definition, 'skipped',"
    " 'exists', 0, NULL, NULL, NULL, 0.0, NULL, fingerprint, fingerprint,"
    " file_bytes(file), model, voice, file_created(file), :updated_at, :run_id"
    " FROM temp.adopted WHERE true ORDER BY file"
    " ON CONFLICT (file) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _JOB_COLUMNS[1:])
)

# A row is "clean" when the file on disk matches the job's last result. Only
# rows that are not clean are loaded into memory with their status.
_CLEAN = (
    "(status = 'success' OR (status = 'skipped' AND reason IS 'exists'))"
    " AND fingerprint IS file_fingerprint"
)


def journal_path(outdir: Path) -> Path:
    """Return the journal file of an output folder."""
    return Path(outdir) / JOURNAL_DIR / JOURNAL_NAME


def utc_now() -> str:
    """Return the current UTC time as ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def connect(path: Path) -> sqlite3.Connection:
    """Open (and create if needed) a journal database with its pragmas."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        connection.close()
        raise ConfigurationError(
            f"The journal {path} was written by a newer esl-assets (schema "
            f"{version}, this one reads {SCHEMA_VERSION}); upgrade esl-assets."
        )
    if version < SCHEMA_VERSION:
        connection.executescript(_SCHEMA)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return connection


def process_alive(host: str, pid: int) -> bool | None:
    """Return whether ``pid`` runs on this host; None for another host.

    NOTE: a reused process id makes a killed run look alive until that
    process ends.
    """
    if host != socket.gethostname():
        return None
    return local_process_alive(pid)


@dataclass(frozen=True)
class RunRecord:
    """One run as the journal stores it."""

    id: int
    started_at: str
    ended_at: str | None
    #: ``complete``, ``stopped`` (account failure), ``interrupted``, ``failed``
    #: (an unexpected exception), or None while running or after a kill.
    outcome: str | None
    dictionary: str | None
    settings: dict[str, Any]
    #: Results so far per asset kind and status.
    counts: dict[str, dict[str, int]]
    #: Results so far per reason (``exists``, ``changed``, ``http_500`` ...).
    reasons: dict[str, int]
    planned: int
    #: True once every lane had planned all of its jobs.
    planned_all: bool
    requests: int | None
    duration_s: float | None
    message: str | None
    host: str
    pid: int
    resumed_from: int | None
    resumed_by: int | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRecord:
        values = dict(row)
        values["settings"] = json.loads(values["settings"])
        values["counts"] = json.loads(values["counts"])
        values["reasons"] = json.loads(values["reasons"])
        values["planned_all"] = bool(values["planned_all"])
        return cls(**values)

    @property
    def state(self) -> str:
        """The outcome, or ``running`` or ``killed`` for a run without one."""
        if self.outcome is not None:
            return self.outcome
        alive = process_alive(self.host, self.pid)
        if alive is None:
            return "unknown"
        return "running" if alive else "killed"

    def count(self, status: str) -> int:
        return sum(kinds.get(status, 0) for kinds in self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["state"] = self.state
        return data


class Journal:
    """Read access to the journal of one output folder, and run creation."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self.connection = connection
        self.path = path

    @classmethod
    def open(cls, outdir: Path) -> Journal:
        """Open the journal of ``outdir``, creating it if needed."""
        path = journal_path(outdir)
        return cls(connect(path), path)

    @classmethod
    def open_existing(cls, outdir: Path) -> Journal | None:
        """Open the journal of ``outdir``, or return None if it has none."""
        path = journal_path(outdir)
        if not path.is_file():
            return None
        return cls(connect(path), path)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start_run(self, settings: Settings, resumed_from: int | None = None) -> int:
        """Insert a run and return its id; mark the run it resumes as resumed.

        The dictionary and output paths are saved resolved, so ``--resume``
        works from another working folder. A user name and password in a URL
        setting are left out, like the API key.
        """
        dictionary = None
        if settings.dictionary is not None:
            dictionary = settings.dictionary.resolve()
            settings = settings.replace(dictionary=dictionary)
        settings = settings.replace(
            outdir=settings.outdir.resolve(),
            base_url=without_credentials(settings.base_url),
            redis_url=without_credentials(settings.redis_url),
        )
        with self.connection:
            self.connection.execute("BEGIN IMMEDIATE")
            cursor = self.connection.execute(
                "INSERT INTO runs (started_at, dictionary, settings, host, pid,"
                " resumed_from) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    utc_now(),
                    str(dictionary) if dictionary is not None else None,
                    json.dumps(settings.public_dict(), ensure_ascii=False),
                    socket.gethostname(),
                    os.getpid(),
                    resumed_from,
                ),
            )
            run_id = int(cursor.lastrowid or 0)
            if resumed_from is not None:
                self.connection.execute(
                    "UPDATE runs SET resumed_by = ? WHERE id = ?",
                    (run_id, resumed_from),
                )
        return run_id

    def runs(self, limit: int | None = None) -> list[RunRecord]:
        """Return the runs, newest first."""
        sql = "SELECT * FROM runs ORDER BY id DESC"
        parameters: tuple[int, ...] = ()
        if limit is not None:
            sql += " LIMIT ?"
            parameters = (limit,)
        rows = self.connection.execute(sql, parameters).fetchall()
        return [RunRecord.from_row(row) for row in rows]

    def run(self, run_id: int) -> RunRecord | None:
        row = self.connection.execute("SELECT * FROM runs WHERE id = ?", (run_id,))
        found = row.fetchone()
        return RunRecord.from_row(found) if found is not None else None

    def latest_unfinished_run(self) -> RunRecord | None:
        """Return the newest run that did not complete and was not resumed."""
        row = self.connection.execute(
            "SELECT * FROM runs WHERE (outcome IS NULL OR outcome != 'complete')"
            " AND resumed_by IS NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return RunRecord.from_row(row) if row is not None else None

    def load_known_files(self, kinds: frozenset[AssetKind]) -> KnownFiles:
        """Load the fingerprints of files on disk and the rows that are not clean."""
        marks = ", ".join("?" for _ in kinds)
        names = [kind.value for kind in kinds]
        files = self.connection.execute(
            f"SELECT file, file_fingerprint FROM jobs WHERE kind IN ({marks})"
            " AND file_fingerprint IS NOT NULL",
            names,
        )
        states = self.connection.execute(
            f"SELECT file, status, reason, fingerprint FROM jobs"
            f" WHERE kind IN ({marks}) AND NOT ({_CLEAN})",
            names,
        )
        return KnownFiles.load(files, states)

    def job_totals(self, kinds: frozenset[AssetKind]) -> tuple[int, int]:
        """Return (done, failed) job counts of ``kinds``.

        Done jobs have a file on disk or a final result without one (an empty
        text); failed ones have an error from the job itself as last result.
        """
        marks = ", ".join("?" for _ in kinds)
        names = [kind.value for kind in kinds]
        row = self.connection.execute(
            "SELECT SUM(file_fingerprint IS NOT NULL OR status != 'error')"
            f" FROM jobs WHERE kind IN ({marks})",
            names,
        ).fetchone()
        failures = self.connection.execute(
            "SELECT reason, COUNT(*) FROM jobs"
            " WHERE file_fingerprint IS NULL AND status = 'error'"
            f" AND kind IN ({marks}) GROUP BY reason",
            names,
        )
        failed = sum(count for reason, count in failures if failure_repeats(reason))
        return int(row[0] or 0), failed

    def assets(self) -> Iterator[dict[str, Any]]:
        """Yield every job row, ordered by entry, definition and kind."""
        cursor = self.connection.execute(
            "SELECT * FROM jobs ORDER BY uuid, CAST(definition_id AS INTEGER),"
            " definition_id, CASE kind WHEN 'word' THEN 0 WHEN 'shortdef' THEN 1"
            " ELSE 2 END, file"
        )
        for row in cursor:
            yield dict(row)


@dataclass
class KnownFiles:
    """State of each file in the journal when a run started.

    Loaded once per run, so no job costs a query. ``fingerprints`` maps every
    file on disk (as far as the journal has recorded) to the fingerprint that made
    it, and ``states`` holds the (status, reason, fingerprint) of the rows that
    are not clean: failures, changed files, empty texts.

    NOTE: to keep 300,000 files in about 30 MB instead of 60 MB, a file is
    keyed by its 64-bit ``hash()`` (stable within one process) and only the
    first 64 bits of its fingerprint are kept. A collision would hide one
    changed file; for 300,000 files its odds are about 1 in 10^8.
    """

    fingerprints: dict[int, int] = dataclasses.field(default_factory=dict)
    states: dict[str, tuple[str, str | None, str]] = dataclasses.field(
        default_factory=dict
    )

    @classmethod
    def load(
        cls,
        files: Iterable[tuple[str, str]],
        states: Iterable[tuple[str, str, str | None, str]],
    ) -> KnownFiles:
        """Build from (file, file fingerprint) and (file, status, reason,
        fingerprint) rows."""
        return cls(
            {hash(file): _short(fingerprint) for file, fingerprint in files},
            {file: (status, reason, print_) for file, status, reason, print_ in states},
        )

    def has_file(self, file: str) -> bool:
        """Return whether the journal recorded a file under this name."""
        return hash(file) in self.fingerprints

    def add_file(self, file: str, fingerprint: str) -> None:
        self.fingerprints[hash(file)] = _short(fingerprint)

    def is_changed(self, job: Job) -> bool:
        """Return whether the journal made ``job.file`` from another fingerprint."""
        recorded = self.fingerprints.get(hash(job.file))
        return recorded is not None and recorded != _short(job.fingerprint)

    def earlier_failure(self, job: Job) -> str | None:
        """Return why ``job`` failed last time, if that failure would repeat.

        Only a failure of the same fingerprint whose reason passes
        ``failure_repeats`` counts; other failed jobs are sent again.
        """
        state = self.states.get(job.file)
        if state is None:
            return None
        status, reason, fingerprint = state
        if status != Status.ERROR.value or fingerprint != job.fingerprint:
            return None
        if not failure_repeats(reason):
            return None
        return reason


def _short(fingerprint: str) -> int:
    return int(fingerprint[:16], 16)


def kinds_of(settings: Settings) -> frozenset[AssetKind]:
    """Return the asset kinds a build with ``settings`` makes."""
    kinds: set[AssetKind] = set()
    if settings.audio:
        kinds.update((AssetKind.WORD, AssetKind.SHORTDEF))
    if settings.images:
        kinds.add(AssetKind.IMAGE)
    return frozenset(kinds)
