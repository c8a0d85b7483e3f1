"""Records that the dictionary readers produce and the planner consumes.

A reader turns one input file into a stream of ``Row`` and ``RejectedRow``
items. A ``Row`` is one headword, optionally with one of its definitions: CSV
and SQLite give one row per definition, a word list gives rows without a
definition. The planner turns rows into jobs, so readers never hold a whole
dictionary in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Bit in ``Row.flags`` that marks an entry as offensive (no image is made).
FLAG_OFFENSIVE = 1
FLAG_BRITISH = 2
FLAG_US = 4
FLAG_OLD_FASHIONED = 8


@dataclass(frozen=True, slots=True)
class Row:
    """One headword, with at most one of its definitions, as read from a file."""

    uuid: str
    word: str
    pos: str | None = None
    level: str | None = None
    flags: int = 0
    definition_id: str | None = None
    definition: str | None = None
    example: str | None = None
    #: Where the row came from, for messages: ``"sample.csv line 12"``.
    origin: str = ""

    @property
    def is_offensive(self) -> bool:
        return bool(self.flags & FLAG_OFFENSIVE)


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row that could not be used, with a machine-readable reason."""

    origin: str
    #: Short code such as ``unsafe_id``, ``missing_column`` or ``bad_id``.
    reason: str
    #: One sentence that names the value and what to do about it.
    message: str
    uuid: str | None = None
    definition_id: str | None = None
