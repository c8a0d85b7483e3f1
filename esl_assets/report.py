"""The report of one build: counts, per-job results, errors and timings."""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .jobs import AssetKind, JobResult, Status
from .rows import RejectedRow

#: Number of image prompts a dry run shows.
DRYRUN_PROMPT_SAMPLES = 3
#: Number of failed jobs the notebook table lists.
HTML_ERROR_ROWS = 5


@dataclass
class BuildReport:
    """Outcome of a build. ``exit_code`` follows the CLI's exit codes."""

    results: list[JobResult] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    #: Assets left out on purpose, by reason (``image_offensive``, ``image_pos``).
    excluded: Counter[str] = field(default_factory=Counter)
    lanes: dict[str, dict[str, Any]] = field(default_factory=dict)
    duration_s: float = 0.0
    #: Jobs planned but never sent because the run stopped; a rerun does them.
    not_run: int = 0
    #: ``complete``, ``stopped`` (account-level failure) or ``interrupted``.
    outcome: str = "complete"
    #: What to do after an account-level failure.
    fatal_message: str | None = None
    #: True when the dictionary gave no usable row at all (exit code 2).
    unusable_input: bool = False
    #: True for a dry run, where a job that would fail does not fail the run.
    dryrun: bool = False
    #: Dry run: characters that would be spoken, and the first image prompts.
    characters_to_speak: int = 0
    sample_prompts: list[str] = field(default_factory=list)
    #: Folder of the files, which ``build()`` sets and ``show()`` reads.
    outdir: Path | None = None
    #: Headword of each entry by uuid, set by ``build()`` for ``show()``.
    headwords: dict[str, str] = field(default_factory=dict)
    _counts: dict[AssetKind, Counter[Status]] = field(default_factory=dict)

    def add(self, result: JobResult) -> None:
        self.results.append(result)
        # Runs once per job, so no Counter is built unless the kind is new.
        counts = self._counts.get(result.kind)
        if counts is None:
            counts = self._counts[result.kind] = Counter()
        counts[result.status] += 1

    def count(self, kind: AssetKind | None = None, status: Status | None = None) -> int:
        """Count results of one kind and/or status (None means any)."""
        total = 0
        for result_kind, counts in self._counts.items():
            if kind is not None and result_kind is not kind:
                continue
            for result_status, number in counts.items():
                if status is None or result_status is status:
                    total += number
        return total

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Counts per kind and status, every status present (zeros included)."""
        return {
            kind.value: {
                status.value: self._counts.get(kind, Counter())[status]
                for status in Status
            }
            for kind in AssetKind
        }

    def count_reason(self, reason: str, status: Status | None = None) -> int:
        """Count results with ``reason`` (``changed``, ``failed_before`` ...)."""
        return sum(
            1
            for result in self.results
            if result.reason == reason and status in (None, result.status)
        )

    @property
    def errors(self) -> list[JobResult]:
        return [r for r in self.results if r.status is Status.ERROR]

    @property
    def requests(self) -> int:
        return sum(int(lane.get("requests", 0)) for lane in self.lanes.values())

    @property
    def retries(self) -> int:
        return sum(int(lane.get("retries", 0)) for lane in self.lanes.values())

    @property
    def exit_code(self) -> int:
        if self.outcome == "interrupted":
            return 130
        if self.outcome == "stopped":
            return 3
        if self.unusable_input:
            return 2
        return 1 if self.errors and not self.dryrun else 0

    def status_dicts(self) -> list[dict[str, Any]]:
        """Per-job results in the public ``{"status", "file"}`` shape."""
        return [result.to_status_dict() for result in self.results]

    def to_dict(self, *, results: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "duration_s": round(self.duration_s, 3),
            "counts": self.counts,
            "requests": self.requests,
            "retries": self.retries,
            "not_run": self.not_run,
            # Files made from other text or settings (regenerated with
            # --refresh-changed), and jobs that failed in an earlier run.
            "changed": self.count_reason("changed"),
            "failed_before": self.count_reason("failed_before"),
            "lanes": self.lanes,
            "excluded": dict(self.excluded),
            "rejected": [
                {"origin": r.origin, "reason": r.reason, "message": r.message}
                for r in self.rejected
            ],
            "errors": [r.to_dict() for r in self.errors],
        }
        if self.fatal_message:
            data["fatal_message"] = self.fatal_message
        if self.outdir is not None:
            data["outdir"] = str(self.outdir)
        if self.characters_to_speak or self.sample_prompts:
            data["characters_to_speak"] = self.characters_to_speak
            data["sample_prompts"] = self.sample_prompts
        if results:
            data["results"] = [r.to_dict() for r in self.results]
        return data

    def __repr__(self) -> str:
        parts = [f"{status.value}={self.count(status=status)}" for status in Status]
        return (
            f"<BuildReport {self.outcome} {' '.join(parts)} "
            f"requests={self.requests} {self.duration_s:.1f}s>"
        )

    def entries(self) -> list[str]:
        """Return the uuids of the entries that have results, by headword."""
        uuids = {entry_of(result) for result in self.results} - {""}
        return sorted(uuids, key=lambda uuid: (self.headwords.get(uuid, ""), uuid))

    def entry_results(self, entry: int | str) -> list[JobResult]:
        """Return the results of one entry: word, definitions, then images.

        ``entry`` is an index into ``entries()``, a uuid or a headword (which
        selects every entry with that headword). Raises ``LookupError`` when
        nothing matches.
        """
        uuids = self._find_entries(entry)
        order = {kind: index for index, kind in enumerate(AssetKind)}
        selected = [r for r in self.results if entry_of(r) in uuids]
        return sorted(selected, key=lambda r: (order[r.kind], r.file))

    def show(self, entry: int | str = 0) -> None:
        """Display one entry's audio players and images inline (needs IPython).

        ``entry`` is an index into ``entries()``, a uuid or a headword.
        """
        from .notebook import display_entry

        display_entry(self, entry)

    def _find_entries(self, entry: int | str) -> set[str]:
        entries = self.entries()
        if isinstance(entry, int):
            if not -len(entries) <= entry < len(entries):
                raise IndexError(
                    f"Entry {entry} is out of range because this report has "
                    f"{len(entries)} entries. report.entries() lists them."
                )
            return {entries[entry]}
        if entry in entries:
            return {entry}
        wanted = entry.casefold()
        matches = {u for u in entries if self.headwords.get(u, "").casefold() == wanted}
        if not matches:
            raise LookupError(
                f"No entry with the uuid or headword {entry!r} has results in "
                "this report. report.entries() lists the uuids."
            )
        return matches

    def _repr_html_(self) -> str:
        header = "".join(f"<th>{s.value}</th>" for s in Status)
        rows = []
        for kind, counts in self.counts.items():
            if not any(counts.values()):
                continue
            cells = "".join(f"<td>{counts[s.value]}</td>" for s in Status)
            rows.append(f"<tr><th>{html.escape(kind)}</th>{cells}</tr>")
        if not rows:
            rows.append(f'<tr><td colspan="{len(Status) + 1}">no jobs</td></tr>')
        caption = html.escape(
            f"{self.outcome}: {self.requests} requests, {self.retries} retries, "
            f"{self.duration_s:.1f} s"
        )
        table = (
            f"<table><caption>{caption}</caption><tr><th>kind</th>{header}</tr>"
            f"{''.join(rows)}</table>"
        )
        return table + "".join(self._html_notes())

    def _html_notes(self) -> list[str]:
        notes = []
        if self.fatal_message:
            notes.append(f"<p><b>{html.escape(self.fatal_message)}</b></p>")
        errors = self.errors
        if errors:
            items = "".join(
                f"<li><code>{html.escape(r.file)}</code>: "
                f"{html.escape(r.error or r.reason or 'error')}</li>"
                for r in errors[:HTML_ERROR_ROWS]
            )
            more = len(errors) - HTML_ERROR_ROWS
            if more > 0:
                items += f"<li>... and {more} more (see errors.jsonl)</li>"
            notes.append(f"<p>{len(errors)} job(s) failed:</p><ul>{items}</ul>")
        if self.rejected:
            notes.append(f"<p>{len(self.rejected)} row(s) rejected.</p>")
        if self.outdir is not None:
            notes.append(
                f"<p>Files in <code>{html.escape(str(self.outdir))}</code>; "
                "<code>report.show(0)</code> plays and shows the first entry.</p>"
            )
        return notes


def entry_of(result: JobResult) -> str:
    """Return the uuid of the entry a result belongs to, from its ``ref``."""
    # ``ref`` is ``kind:uuid:definition_id``, and uuids never contain ":".
    return result.ref.split(":")[1] if result.ref else ""
