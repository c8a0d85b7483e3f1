"""The ``status`` and ``manifest`` subcommands, which read an output folder's journal.

``status`` shows the last runs (when, outcome, counts per kind and status,
settings); with ``--redis-url`` it shows the Redis queue instead.
``manifest`` lists every asset with its entry, so an app can import the
result without scanning the folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from .cli import _flag, add_queue_options, print_json
from .jobs import AssetKind, Status
from .journal import JOURNAL_DIR, JOURNAL_NAME, Journal, RunRecord, journal_path
from .settings import Settings

#: Number of runs ``status`` shows when ``--runs`` is not given.
DEFAULT_STATUS_RUNS = 5
MANIFEST_FIELDS = (
    "uuid",
    "word",
    "definition_id",
    "kind",
    "file",
    "status",
    "reason",
    "bytes",
    "model",
    "voice",
    "fingerprint",
    "created",
)


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    status = commands.add_parser(
        "status", help="show the last runs of an output folder, or the Redis queue"
    )
    _add_outdir(status)
    status.add_argument(
        "--runs",
        type=int,
        default=DEFAULT_STATUS_RUNS,
        help=f"number of runs to show, newest first (default {DEFAULT_STATUS_RUNS})",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    add_queue_options(status)
    status.set_defaults(handler=run_status_command)

    manifest = commands.add_parser(
        "manifest", help="list every asset of an output folder with its entry"
    )
    _add_outdir(manifest)
    manifest.add_argument(
        "--format",
        choices=("json", "csv"),
        default="json",
        help="json (default) or csv",
    )
    manifest.add_argument(
        "-o", "--output", type=Path, help="write the manifest to this file, not stdout"
    )
    manifest.set_defaults(handler=run_manifest_command)


def _add_outdir(parser: argparse.ArgumentParser) -> None:
    _flag(
        parser,
        "outdir",
        type=Path,
        help="output folder (default ESL_ASSETS_OUTDIR or assets_hires)",
    )


def resolve_outdir(args: argparse.Namespace) -> Path:
    """Return ``--outdir``, else ``ESL_ASSETS_OUTDIR``, else the default folder."""
    if args.outdir is not None:
        return Path(args.outdir)
    from_environment = os.environ.get("ESL_ASSETS_OUTDIR")
    if from_environment:
        return Path(from_environment)
    return Settings().outdir


# -- status


def run_status_command(args: argparse.Namespace) -> int:
    if args.redis_url or os.environ.get("ESL_ASSETS_REDIS_URL"):
        from .queue_commands import queue_status

        return int(queue_status(args))
    if args.runs < 1:
        sys.stderr.write(f"Error: --runs {args.runs} must be 1 or more.\n")
        return 2
    outdir = resolve_outdir(args)
    journal = Journal.open_existing(outdir)
    if journal is None:
        return _report_no_journal(outdir, as_json=args.json)
    with journal:
        runs = journal.runs(args.runs)
    if args.json:
        print_json(
            {
                "outdir": str(outdir),
                "journal": str(journal.path),
                "runs": [run.to_dict() for run in runs],
            }
        )
        return 0
    console = Console(file=sys.stdout)
    console.print(f"Journal: {journal.path}", markup=False)
    for run in runs:
        print_run(console, run)
    return 0


def _report_no_journal(outdir: Path, *, as_json: bool) -> int:
    if as_json:
        print_json({"outdir": str(outdir), "journal": None, "runs": []})
        return 0
    sys.stdout.write(
        f"No journal in {outdir} ({JOURNAL_DIR}/{JOURNAL_NAME}): no build has "
        "sent requests there yet. Check --outdir.\n"
    )
    return 0


def print_run(console: Console, run: RunRecord) -> None:
    """Print one run: when, outcome, counts per kind and status, settings."""
    duration = f", {run.duration_s:.1f} s" if run.duration_s is not None else ""
    ended = f", ended {run.ended_at}" if run.ended_at else ""
    resumed = f", resumes run {run.resumed_from}" if run.resumed_from else ""
    title = (
        f"Run {run.id}: {run.state} (started {run.started_at}{ended}{duration}"
        f"{resumed})"
    )
    console.print(title, markup=False)
    table = Table()
    table.add_column("kind")
    for status in Status:
        table.add_column(status.value, justify="right")
    for kind in AssetKind:
        counts = run.counts.get(kind.value, {})
        if any(counts.values()):
            table.add_row(kind.value, *(str(counts.get(s.value, 0)) for s in Status))
    console.print(table)
    planned = "" if run.planned_all else " so far"
    console.print(
        f"  {run.planned} job(s) planned{planned}, {run.requests or 0} request(s) sent"
        + _reasons_text(run),
        markup=False,
    )
    console.print(f"  dictionary: {run.dictionary or '-'}", markup=False)
    console.print(f"  settings: {settings_summary(run.settings)}", markup=False)
    if run.message:
        console.print(f"  {run.message}", markup=False)


def _reasons_text(run: RunRecord) -> str:
    notes = []
    for reason, label in (
        ("exists", "already on disk"),
        ("changed", "changed"),
        ("failed_before", "failed before"),
    ):
        number = run.reasons.get(reason, 0)
        if number:
            notes.append(f"{number} {label}")
    return f"; {', '.join(notes)}" if notes else ""


def settings_summary(settings: dict[str, Any]) -> str:
    """Return the settings that shape the assets, on one line."""
    parts = []
    if settings.get("audio", True):
        parts.append(
            f"audio {settings.get('audio_model')} voice {settings.get('audio_voice')} "
            f"{settings.get('audio_format')}"
        )
    if settings.get("images", True):
        parts.append(
            f"images {settings.get('image_model')} {settings.get('image_size')} "
            f"{settings.get('image_format')}"
        )
    parts.append(f"concurrency {settings.get('concurrency')}")
    if settings.get("provider") != "openai":
        parts.append(f"provider {settings.get('provider')}")
    for name in ("level", "pos", "words"):
        if settings.get(name):
            parts.append(f"{name} {','.join(settings[name])}")
    if settings.get("limit") is not None:
        parts.append(f"limit {settings['limit']}")
    return "; ".join(parts)


# -- manifest


def run_manifest_command(args: argparse.Namespace) -> int:
    outdir = resolve_outdir(args)
    journal = Journal.open_existing(outdir)
    if journal is None:
        sys.stderr.write(
            f"Error: {outdir} has no journal ({journal_path(outdir)}), so there is "
            "nothing to list. Run build there first, or check --outdir.\n"
        )
        return 2
    with journal:
        if args.output is None:
            try:
                write_manifest(sys.stdout, journal, outdir, args.format)
            except BrokenPipeError:
                # The reader (head, less) closed the pipe: not an error here.
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115
            return 0
        temporary = args.output.with_name(f".{args.output.name}.part")
        try:
            with open(temporary, "w", encoding="utf-8", newline="") as handle:
                write_manifest(handle, journal, outdir, args.format)
            os.replace(temporary, args.output)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            sys.stderr.write(
                f"Error: writing the manifest to {args.output} failed: "
                f"{error.strerror or error}. Choose another --output.\n"
            )
            return 2
    return 0


def manifest_rows(journal: Journal, outdir: Path) -> Iterator[dict[str, Any]]:
    """Yield one manifest row per job, checking that each recorded file exists.

    A file the journal recorded but that is gone from the folder gets the
    status ``missing``.
    """
    for row in journal.assets():
        has_file = row["file_fingerprint"] is not None
        status, size = row["status"], row["bytes"]
        if has_file:
            try:
                size = os.stat(outdir / row["file"]).st_size
            except OSError:
                status, size = "missing", None
        yield {
            "uuid": row["uuid"],
            "word": row["word"],
            "definition_id": row["definition_id"],
            "kind": row["kind"],
            "file": row["file"],
            "status": status,
            "reason": row["reason"],
            "bytes": size,
            "model": row["model"],
            "voice": row["voice"],
            "fingerprint": row["file_fingerprint"] or row["fingerprint"],
            "created": row["created_at"],
        }


def write_manifest(handle: IO[str], journal: Journal, outdir: Path, fmt: str) -> None:
    """Write the manifest as CSV or JSON, one row at a time."""
    rows = manifest_rows(journal, outdir)
    if fmt == "csv":
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        return
    # Streamed by hand so a large folder never sits in memory as one list.
    header = json.dumps({"outdir": str(outdir.resolve())}, ensure_ascii=False)
    handle.write(header[:-1] + ', "assets": [')
    for index, row in enumerate(rows):
        handle.write(",\n  " if index else "\n  ")
        handle.write(json.dumps(row, ensure_ascii=False))
    handle.write("\n]}\n")
