"""Records that the dictionary readers produce and the planner consumes.

A reader turns one input file into a stream of ``Row`` and ``RejectedRow``
items. A ``Row`` is one headword, optionally with one of its definitions: CSV
and SQLite give one row per definition, a word list gives rows without a
definition. The planner turns rows into jobs, so readers never hold a whole
dictionary in memory.
"""

from __future__ import annotations

import re
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


_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_id(value: str, *, field: str) -> str | None:
    """Return why ``value`` cannot be part of a file name, or None if it can.

    Ids go into file names such as ``shortdef_{uuid}_{id}.aac``, so only
    ASCII letters, digits, ``.``, ``_`` and ``-`` are allowed, up to 100
    characters, starting with a letter or digit and never containing ``..``.
    """
    if not value:
        return f"{field} is empty"
    if "\x00" in value:
        return f"{field} {value!r} contains a NUL byte"
    if ".." in value or "/" in value or "\\" in value:
        return f"{field} {value!r} contains a path separator or '..'"
    if not _SAFE_ID.fullmatch(value):
        return (
            f"{field} {value!r} is not 1 to 100 ASCII letters, digits, '.', '_'"
            " or '-' starting with a letter or digit"
        )
    return None
