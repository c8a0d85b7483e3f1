"""The report of one build: counts, per-job results, errors and timings."""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .jobs import AssetKind, JobResult, Status
from .rows import RejectedRow

#: Number of image prompts a dry run shows.
DRYRUN_PROMPT_SAMPLES = 3


@dataclass
class BuildReport:
    """What a build did. ``exit_code`` follows the CLI's exit codes."""

    results: list[JobResult] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    #: Assets left out on purpose, by reason (``image_offensive``, ``image_pos``).
    excluded: Counter[str] = field(default_factory=Counter)
    lanes: dict[str, dict[str, Any]] = field(default_factory=dict)
    duration_s: float = 0.0
    #: ``complete``, ``stopped`` (account-level failure) or ``interrupted``.
    outcome: str = "complete"
    #: What to do after an account-level failure.
    fatal_message: str | None = None
    #: Dry run: characters that would be spoken, and the first image prompts.
    characters_to_speak: int = 0
    sample_prompts: list[str] = field(default_factory=list)
    _counts: dict[AssetKind, Counter[Status]] = field(default_factory=dict)

    def add(self, result: JobResult) -> None:
        self.results.append(result)
        self._counts.setdefault(result.kind, Counter())[result.status] += 1

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
        return 1 if self.errors else 0

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

    def _repr_html_(self) -> str:
        header = "".join(f"<th>{s.value}</th>" for s in Status)
        rows = []
        for kind, counts in self.counts.items():
            cells = "".join(f"<td>{counts[s.value]}</td>" for s in Status)
            rows.append(f"<tr><th>{html.escape(kind)}</th>{cells}</tr>")
        caption = html.escape(
            f"{self.outcome}: {self.requests} requests, {self.retries} retries, "
            f"{self.duration_s:.1f} s"
        )
        return (
            f"<table><caption>{caption}</caption><tr><th>kind</th>{header}</tr>"
            f"{''.join(rows)}</table>"
        )
