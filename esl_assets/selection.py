"""Row selection for ``--level``, ``--pos``, ``--words`` and ``--limit``.

Levels, parts of speech and words match without regard to case. Parts of
speech go through ``normalize_pos`` on both sides, so ``--pos n`` selects
rows whose part of speech is ``noun``. Words are compared after
``clean_text``, so ``--words cafe\u0301`` also selects ``café``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from esl_assets.errors import ConfigurationError
from esl_assets.rows import RejectedRow, Row
from esl_assets.text import clean_text, normalize_pos

logger = logging.getLogger(__name__)

__all__ = ["Selection", "normalize_pos", "parse_words_option", "select_rows"]


@dataclass(frozen=True, slots=True)
class Selection:
    """Row filters. A field that is None does not restrict the rows."""

    levels: frozenset[str] | None = None
    pos: frozenset[str] | None = None
    words: frozenset[str] | None = None
    #: Maximum number of entries (distinct uuids), not of rows.
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 0:
            raise ConfigurationError(
                f"--limit must be 0 or more entries, got {self.limit}."
            )


def select_rows(
    rows: Iterable[Row | RejectedRow], selection: Selection
) -> Iterator[Row | RejectedRow]:
    """Yield the rows that ``selection`` keeps; rejected rows always pass.

    ``limit`` counts entries: the rows of the first ``limit`` distinct uuids
    that match the other filters are kept, wherever in the input their later
    rows are. The whole input is still read, so rejected rows after the last
    selected entry still reach the caller.
    """
    levels = _casefolded(selection.levels)
    parts_of_speech = _normalized_pos(selection.pos)
    words = _casefolded(selection.words)
    chosen_uuids: set[str] = set()
    for row in rows:
        if isinstance(row, RejectedRow):
            yield row
            continue

        if not _matches(row, levels, parts_of_speech, words):
            continue

        if row.uuid not in chosen_uuids:
            if selection.limit is not None and len(chosen_uuids) >= selection.limit:
                continue
            chosen_uuids.add(row.uuid)

        yield row


def _matches(
    row: Row,
    levels: frozenset[str] | None,
    parts_of_speech: frozenset[str] | None,
    words: frozenset[str] | None,
) -> bool:
    if levels is not None and (row.level or "").casefold() not in levels:
        return False

    if parts_of_speech is not None and normalize_pos(row.pos) not in parts_of_speech:
        return False

    return words is None or clean_text(row.word).casefold() in words


def _casefolded(values: frozenset[str] | None) -> frozenset[str] | None:
    if values is None:
        return None

    return frozenset(clean_text(value).casefold() for value in values)


def _normalized_pos(values: frozenset[str] | None) -> frozenset[str] | None:
    if values is None:
        return None

    labels = (normalize_pos(value) for value in values)
    return frozenset(label for label in labels if label is not None)


def parse_words_option(value: str) -> frozenset[str]:
    """Parse ``--words``: ``cat,dog`` or ``@FILE`` with one word per line.

    In a file, blank lines and lines starting with ``#`` are skipped. Raises
    ConfigurationError when the file cannot be read or no word is given.
    """
    if value.startswith("@"):
        words = _read_words_file(Path(value[1:]))
        source = f"file {value[1:]}"
    else:
        words = [clean_text(word) for word in value.split(",")]
        source = f"value {value!r}"

    selected = frozenset(word for word in words if word)
    if not selected:
        raise ConfigurationError(
            f"--words {source} lists no words; give comma-separated words "
            "such as cat,dog or @FILE with one word per line."
        )

    logger.debug("Selected %d words from --words %s", len(selected), source)
    return selected


def _read_words_file(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8-sig") as handle:
            lines = [clean_text(line) for line in handle]
    except OSError as error:
        raise ConfigurationError(
            f"Cannot read the --words file {path}: {error.strerror}."
        ) from error
    except UnicodeDecodeError as error:
        raise ConfigurationError(
            f"The --words file {path} is not UTF-8 text (byte offset "
            f"{error.start}); save it as UTF-8."
        ) from error

    return [line for line in lines if not line.startswith("#")]
