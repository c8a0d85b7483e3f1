"""The SQLite journal: recorded rows, known files, change and failure rules."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

import pytest

from esl_assets.errors import ResumeError
from esl_assets.jobs import AssetKind, Job, JobResult, Status
from esl_assets.journal import BATCH_ROWS, Journal, journal_path, kinds_of
from esl_assets.journal_recorder import JournalRecorder
from esl_assets.planner import Planner, build_request_template
from esl_assets.resume import apply_overrides, find_resume_point
from esl_assets.rows import Row
from esl_assets.settings import Settings

ADTS = b"\xff\xf1\x50\x80\x02\x1f\xfc" + b"\x00" * 64
ALL_KINDS = frozenset(AssetKind)


def make_row(number: int, definition: str = "a small animal") -> Row:
    return Row(
        uuid=f"00000000-0000-0000-0000-{number:012d}",
        word=f"word{number}",
        pos="noun",
        level="A1",
        definition_id="1",
        definition=definition,
    )


def plan(settings: Settings, row: Row) -> dict[AssetKind, Job]:
    planner = Planner(settings, build_request_template(settings), ALL_KINDS)
    return {job.kind: job for job in planner.plan([row]) if isinstance(job, Job)}


def success(job: Job, size: int = 71) -> JobResult:
    return JobResult(
        Status.SUCCESS, job.file, job.kind, attempts=1, bytes=size, ref=job.ref
    )


def failure(job: Job, reason: str) -> JobResult:
    return JobResult(
        Status.ERROR,
        job.file,
        job.kind,
        reason=reason,
        error="boom",
        attempts=1,
        ref=job.ref,
    )


def exists(job: Job) -> JobResult:
    return JobResult(Status.SKIPPED, job.file, job.kind, reason="exists", ref=job.ref)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(dictionary=tmp_path / "dictionary.csv", outdir=tmp_path / "out")


def record(
    settings: Settings, results: list[tuple[Job, JobResult]], outcome: str = "complete"
) -> JournalRecorder:
    """Record one run with ``results`` and close it."""
    recorder = JournalRecorder.open(settings.outdir, settings, kinds_of(settings))
    for job, result in results:
        recorder.on_planned(job)
        recorder.on_result(job, result)
    recorder.close(outcome, len(results), 1.5, None)
    return recorder


def job_rows(outdir: Path) -> dict[str, sqlite3.Row]:
    with Journal.open(outdir) as journal:
        return {row["file"]: row for row in journal.assets()}


def test_success_rows_hold_entry_and_file(settings: Settings) -> None:
    jobs = plan(settings, make_row(1))
    record(settings, [(job, success(job)) for job in jobs.values()])

    rows = job_rows(settings.outdir)
    assert set(rows) == {job.file for job in jobs.values()}
    word = rows[jobs[AssetKind.WORD].file]
    assert word["status"] == "success"
    assert word["uuid"] == make_row(1).uuid
    assert word["word"] == "word1"
    assert word["definition_id"] == "0"
    assert word["fingerprint"] == jobs[AssetKind.WORD].fingerprint
    assert word["file_fingerprint"] == jobs[AssetKind.WORD].fingerprint
    assert word["model"] == settings.audio_model
    assert word["voice"] == settings.audio_voice
    assert word["bytes"] == 71
    assert word["created_at"] is not None
    image = rows[jobs[AssetKind.IMAGE].file]
    assert image["definition"] == "a small animal"
    assert image["voice"] is None
    assert image["model"] == settings.image_model


def test_run_record_counts_and_outcome(settings: Settings) -> None:
    jobs = plan(settings, make_row(1))
    results = [
        (jobs[AssetKind.WORD], success(jobs[AssetKind.WORD])),
        (jobs[AssetKind.SHORTDEF], exists(jobs[AssetKind.SHORTDEF])),
        (jobs[AssetKind.IMAGE], failure(jobs[AssetKind.IMAGE], "http_500")),
    ]
    recorder = record(settings, results, outcome="interrupted")

    with Journal.open(settings.outdir) as journal:
        (run,) = journal.runs()
    assert run.id == recorder.run_id
    assert run.outcome == "interrupted"
    assert run.state == "interrupted"
    assert run.counts == {
        "word": {"success": 1},
        "shortdef": {"skipped": 1},
        "image": {"error": 1},
    }
    assert run.reasons == {"exists": 1, "http_500": 1}
    assert run.planned == 3
    assert run.requests == 3
    assert run.ended_at is not None
    assert run.settings["dictionary"] == str(settings.dictionary.resolve())


def test_api_key_never_written(settings: Settings) -> None:
    secret = "sk-journal-secret-0123456789"
    keyed = settings.replace(api_key=secret)
    jobs = plan(keyed, make_row(1))
    record(keyed, [(jobs[AssetKind.WORD], success(jobs[AssetKind.WORD]))])

    folder = journal_path(settings.outdir).parent
    for path in folder.iterdir():
        assert secret.encode() not in path.read_bytes(), path


def test_url_credentials_never_written(settings: Settings) -> None:
    keyed = settings.replace(base_url="https://user:url-secret@api.example/v1")
    record(keyed, [])

    with Journal.open(settings.outdir) as journal:
        (run,) = journal.runs()
    assert run.settings["base_url"] == "https://api.example/v1"
    for path in journal_path(settings.outdir).parent.iterdir():
        assert b"url-secret" not in path.read_bytes(), path


def test_journal_uses_wal(settings: Settings) -> None:
    record(settings, [])
    with sqlite3.connect(journal_path(settings.outdir)) as connection:
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_batches_committed_before_close(settings: Settings) -> None:
    recorder = JournalRecorder.open(settings.outdir, settings, kinds_of(settings))
    try:
        for number in range(BATCH_ROWS):
            job = plan(settings, make_row(number))[AssetKind.WORD]
            recorder.on_result(job, success(job))
        # Another connection reads the batch while the run is still open, so a
        # kill now would lose nothing of it.
        deadline = time.monotonic() + 30
        seen = 0
        while time.monotonic() < deadline:
            with sqlite3.connect(journal_path(settings.outdir)) as connection:
                seen = connection.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
            if seen == BATCH_ROWS:
                break
            time.sleep(0.05)
        assert seen == BATCH_ROWS
    finally:
        recorder.close("complete", 0, 0.0, None)


def test_known_files_split_clean_and_failed(settings: Settings) -> None:
    clean = plan(settings, make_row(1))[AssetKind.WORD]
    failed = plan(settings, make_row(2))[AssetKind.WORD]
    record(settings, [(clean, success(clean)), (failed, failure(failed, "http_500"))])

    with Journal.open(settings.outdir) as journal:
        known = journal.load_known_files(ALL_KINDS)
    assert known.has_file(clean.file)
    assert not known.has_file(failed.file)
    assert len(known.fingerprints) == 1
    assert not known.is_changed(clean)
    assert known.states == {failed.file: ("error", "http_500", failed.fingerprint)}


def test_known_files_only_of_requested_kinds(settings: Settings) -> None:
    jobs = plan(settings, make_row(1))
    record(settings, [(job, success(job)) for job in jobs.values()])

    with Journal.open(settings.outdir) as journal:
        known = journal.load_known_files(frozenset({AssetKind.IMAGE}))
    assert known.has_file(jobs[AssetKind.IMAGE].file)
    assert len(known.fingerprints) == 1


def test_edited_definition_counts_as_changed(settings: Settings) -> None:
    old = plan(settings, make_row(1))
    record(settings, [(job, success(job)) for job in old.values()])
    new = plan(settings, make_row(1, definition="a large animal"))

    recorder = JournalRecorder.open(settings.outdir, settings, ALL_KINDS)
    try:
        reviewed = {
            kind: recorder.review_existing(job, exists(job))
            for kind, job in new.items()
        }
        refresh = {kind: recorder.wants_refresh(job) for kind, job in new.items()}
    finally:
        recorder.close("complete", 0, 0.0, None)
    assert reviewed[AssetKind.WORD].reason == "exists"
    assert reviewed[AssetKind.SHORTDEF].reason == "changed"
    assert reviewed[AssetKind.SHORTDEF].status is Status.SKIPPED
    assert reviewed[AssetKind.IMAGE].reason == "changed"
    assert refresh == {kind: False for kind in new}


def test_refresh_changed_wants_only_changed(settings: Settings) -> None:
    old = plan(settings, make_row(1))
    record(settings, [(job, success(job)) for job in old.values()])
    refreshing = settings.replace(refresh_changed=True)
    new = plan(refreshing, make_row(1, definition="a large animal"))

    recorder = JournalRecorder.open(settings.outdir, refreshing, ALL_KINDS)
    try:
        refresh = {kind: recorder.wants_refresh(job) for kind, job in new.items()}
    finally:
        recorder.close("complete", 0, 0.0, None)
    assert refresh == {
        AssetKind.WORD: False,
        AssetKind.SHORTDEF: True,
        AssetKind.IMAGE: True,
    }


def test_changed_row_keeps_file_fingerprint(settings: Settings) -> None:
    old = plan(settings, make_row(1))[AssetKind.SHORTDEF]
    record(settings, [(old, success(old))])
    new = plan(settings, make_row(1, definition="a large animal"))[AssetKind.SHORTDEF]
    changed = JobResult(
        Status.SKIPPED, new.file, new.kind, reason="changed", ref=new.ref
    )
    record(settings, [(new, changed)])

    row = job_rows(settings.outdir)[new.file]
    assert row["reason"] == "changed"
    assert row["fingerprint"] == new.fingerprint
    assert row["file_fingerprint"] == old.fingerprint
    assert row["bytes"] == 71


@pytest.mark.parametrize(
    ("reason", "retry_failed", "retry_blocked", "skipped"),
    [
        ("http_400", False, False, True),
        ("http_400", True, False, False),
        ("http_422", False, False, True),
        ("too_long", False, False, True),
        ("http_500", False, False, False),
        ("http_503", False, False, False),
        ("connection", False, False, False),
        ("timeout", False, False, False),
        ("bad_response", False, False, False),
        ("rate_limited", False, False, False),
        ("http_429", False, False, False),
        ("http_404", False, False, False),
        ("endpoint_not_found", False, False, False),
        ("stopped", False, False, False),
        ("write_failed", False, False, False),
        ("moderation_blocked", False, False, True),
        ("content_policy_violation", True, False, True),
        ("moderation_blocked", True, False, True),
        ("moderation_blocked", True, True, False),
        # --retry-blocked implies --retry-failed.
        ("moderation_blocked", False, True, False),
        ("http_400", False, True, False),
        ("insufficient_quota", False, False, False),
        ("http_401", False, False, False),
    ],
)
def test_earlier_failure_gate(
    settings: Settings,
    reason: str,
    retry_failed: bool,
    retry_blocked: bool,
    skipped: bool,
) -> None:
    job = plan(settings, make_row(1))[AssetKind.IMAGE]
    record(settings, [(job, failure(job, reason))])
    rerun = settings.replace(retry_failed=retry_failed, retry_blocked=retry_blocked)

    recorder = JournalRecorder.open(settings.outdir, rerun, ALL_KINDS)
    try:
        result = recorder.review_missing(job)
    finally:
        recorder.close("complete", 0, 0.0, None)
    if skipped:
        assert result is not None
        assert result.status is Status.SKIPPED
        assert result.reason == "failed_before"
    else:
        assert result is None


def test_failure_of_other_fingerprint_not_gated(settings: Settings) -> None:
    job = plan(settings, make_row(1))[AssetKind.IMAGE]
    record(settings, [(job, failure(job, "moderation_blocked"))])
    edited = plan(settings, make_row(1, definition="a large animal"))[AssetKind.IMAGE]

    recorder = JournalRecorder.open(settings.outdir, settings, ALL_KINDS)
    try:
        assert recorder.review_missing(edited) is None
    finally:
        recorder.close("complete", 0, 0.0, None)


def test_success_after_failure_clears_it(settings: Settings) -> None:
    job = plan(settings, make_row(1))[AssetKind.WORD]
    record(settings, [(job, failure(job, "http_500"))])
    record(settings, [(job, success(job))])

    with Journal.open(settings.outdir) as journal:
        known = journal.load_known_files(ALL_KINDS)
    assert known.states == {}
    assert known.has_file(job.file)
    assert not known.is_changed(job)


def test_file_on_disk_adopted_with_its_size(settings: Settings) -> None:
    job = plan(settings, make_row(1))[AssetKind.WORD]
    settings.outdir.mkdir(parents=True)
    (settings.outdir / job.file).write_bytes(ADTS)
    record(settings, [(job, exists(job))])

    row = job_rows(settings.outdir)[job.file]
    assert row["status"] == "skipped"
    assert row["file_fingerprint"] == job.fingerprint
    assert row["bytes"] == len(ADTS)
    assert row["created_at"] is not None


def test_known_clean_file_not_rewritten(settings: Settings) -> None:
    job = plan(settings, make_row(1))[AssetKind.WORD]
    first = record(settings, [(job, success(job))])
    record(settings, [(job, exists(job))])

    row = job_rows(settings.outdir)[job.file]
    assert row["run_id"] == first.run_id
    assert row["status"] == "success"


def test_dry_run_records_nothing(settings: Settings) -> None:
    dry = settings.replace(dryrun=True)
    job = plan(dry, make_row(1))[AssetKind.WORD]
    recorder = JournalRecorder.open(settings.outdir, dry, ALL_KINDS)
    recorder.on_result(job, JobResult(Status.DRYRUN, job.file, job.kind, ref=job.ref))
    recorder.close("complete", 0, 0.0, None)
    assert recorder.run_id is None
    assert not journal_path(settings.outdir).exists()


# -- resume points


def test_resume_without_journal_fails(settings: Settings) -> None:
    with pytest.raises(ResumeError, match="has no journal"):
        find_resume_point(settings.outdir)


def test_resume_after_complete_run_fails(settings: Settings) -> None:
    record(settings, [], outcome="complete")
    with pytest.raises(ResumeError, match="every run there completed"):
        find_resume_point(settings.outdir)


def test_resume_of_running_run_fails(settings: Settings) -> None:
    # A run of this very process without an outcome is still running.
    recorder = JournalRecorder.open(settings.outdir, settings, kinds_of(settings))
    try:
        with pytest.raises(ResumeError, match="still running"):
            find_resume_point(settings.outdir)
    finally:
        recorder.close("complete", 0, 0.0, None)


def test_resume_point_counts(settings: Settings) -> None:
    done = plan(settings, make_row(1))
    failed = plan(settings, make_row(2))[AssetKind.WORD]
    results = [(job, success(job)) for job in done.values()]
    results.append((failed, failure(failed, "http_400")))
    # A 500 is sent again by the next run, so it counts as still to do.
    retried = plan(settings, make_row(3))[AssetKind.WORD]
    results.append((retried, failure(retried, "http_500")))
    recorder = JournalRecorder.open(settings.outdir, settings, kinds_of(settings))
    for job, result in results:
        recorder.on_result(job, result)
    # Planned but never finished: in flight when the run stopped.
    recorder.planned = len(results) + 4
    recorder.close("interrupted", 0, 0.0, None)

    point = find_resume_point(settings.outdir)
    assert point.run.id == recorder.run_id
    assert point.done == len(done)
    assert point.failed == 1
    assert point.planned == len(results) + 4
    assert point.remaining == 5
    assert point.planned_all is False


def test_resume_marks_run_resumed(settings: Settings) -> None:
    first = record(settings, [], outcome="interrupted")
    point = find_resume_point(settings.outdir)
    second = JournalRecorder.open(
        settings.outdir, point.settings, kinds_of(settings), resumed_from=point.run.id
    )
    second.close("complete", 0, 0.0, None)

    with Journal.open(settings.outdir) as journal:
        runs = {run.id: run for run in journal.runs()}
    assert runs[first.run_id].resumed_by == second.run_id
    assert runs[second.run_id].resumed_from == first.run_id
    with pytest.raises(ResumeError):
        find_resume_point(settings.outdir)


def test_overrides_warn_once_each(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    record(settings.replace(audio_voice="nova"), [], outcome="interrupted")
    point = find_resume_point(settings.outdir)
    given = {
        "resume": True,
        "audio_voice": "nova",
        "concurrency": 2,
        "outdir": settings.outdir,
    }
    with caplog.at_level(logging.WARNING, logger="esl_assets.resume"):
        resumed = apply_overrides(point, given, settings.outdir)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "--concurrency 2" in warnings[0]
    assert "(5)" in warnings[0]
    assert resumed.concurrency == 2
    assert resumed.audio_voice == "nova"
    assert resumed.resume is True
    assert resumed.dictionary == settings.dictionary.resolve()


def test_same_dictionary_given_again_is_no_override(
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record(settings, [], outcome="interrupted")
    point = find_resume_point(settings.outdir)
    monkeypatch.chdir(settings.dictionary.parent)
    with caplog.at_level(logging.WARNING, logger="esl_assets.resume"):
        apply_overrides(
            point, {"dictionary": Path(settings.dictionary.name)}, settings.outdir
        )
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ({"limit": 5}, "--limit 5"),
        ({"level": ("A1",)}, "--level A1"),
        ({"pos": ("noun",)}, "--pos noun"),
        ({"words": ("cat,dog",)}, "--words cat,dog"),
        ({"image_pos": ("noun",)}, "--image-pos noun"),
        ({"include_offensive": True}, "--include-offensive"),
        ({"format": "tsv"}, "--format tsv"),
        ({"audio": False}, "--no-audio"),
        ({"images": False}, "--no-images"),
        ({"audio_format": "mp3"}, "--audio-format mp3"),
        ({"image_format": "webp"}, "--image-format webp"),
    ],
)
def test_resume_rejects_job_changes(
    settings: Settings, given: dict[str, object], shown: str
) -> None:
    record(settings, [], outcome="interrupted")
    point = find_resume_point(settings.outdir)

    with pytest.raises(ResumeError) as caught:
        apply_overrides(point, {"concurrency": 2, **given}, settings.outdir)

    message = str(caught.value)
    assert f"but {shown} would change which jobs it makes" in message
    assert f"run {point.run.id} was started with" in message
    assert "run the same command without --" in message
    assert "without --resume" in message
    assert "--concurrency" not in message


def test_resume_rejects_other_dictionary(settings: Settings, tmp_path: Path) -> None:
    settings.dictionary.write_text("uuid,word\n")
    record(settings, [], outcome="interrupted")
    point = find_resume_point(settings.outdir)
    other = tmp_path / "other.csv"

    with pytest.raises(ResumeError, match="without the dictionary"):
        apply_overrides(point, {"dictionary": other}, settings.outdir)


def test_resume_accepts_moved_dictionary(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The saved dictionary no longer exists, so the new path may be its new place.
    record(settings, [], outcome="interrupted")
    point = find_resume_point(settings.outdir)
    moved = tmp_path / "moved.csv"

    with caplog.at_level(logging.WARNING, logger="esl_assets.resume"):
        resumed = apply_overrides(point, {"dictionary": moved}, settings.outdir)

    assert resumed.dictionary == moved.resolve()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "--dictionary" in warnings[0]


def test_killed_run_state(settings: Settings) -> None:
    record(settings, [], outcome="complete")
    with sqlite3.connect(journal_path(settings.outdir)) as connection:
        # A process id far above any pid_max, so it belongs to no process.
        connection.execute("UPDATE runs SET outcome = NULL, pid = ?", (2**31 - 2,))
    with Journal.open(settings.outdir) as journal:
        (run,) = journal.runs()
    assert run.state == "killed"
    assert os.getpid() != run.pid
