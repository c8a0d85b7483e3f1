"""Plain word lists: one headword per line, for word audio only.

Each line gives one or more headwords, optionally followed by their parts of
speech, and yields one word-only row per (headword, part of speech) pair::

    be                          -> be
    say v.                      -> say (verb)
    run v., n.                  -> run (verb), run (noun)
    a, an indefinite article    -> a (indefinite article), an (indefinite article)

Parts of speech are abbreviations ending in ``.`` that ``normalize_pos``
knows (``n.``, ``v.``, ``adj.``, ``adv.``, ``prep.``, ``conj.``, ...) or the
phrases ``definite article`` and ``indefinite article``, separated by commas or spaces.
Full names such as ``noun`` are not read as parts of speech, so a line
``phrasal verb`` is the headword "phrasal verb". Before the parts of speech,
commas separate headwords, so no headword can contain a comma.

Blank lines and lines starting with ``#`` are skipped. A comment that starts
with a CEFR level (``# A1 ...``) sets the level of the lines below it until
the next such comment; other comments leave the level unchanged.

Rows have no uuid in the file, so each gets
``uuid5(NAMESPACE_URL, "esl-sample:" + word + ":" + pos)`` with the full part
of speech (``verb``, not ``v.``), or ``"esl-sample:" + word + ":"`` for a bare
word (see ``stable_uuid``). The sample dictionaries use the same rule, so
``run v.`` gets the uuid of the sample's ``run`` verb.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from esl_assets.errors import DictionaryError
from esl_assets.inputs.common import RowBuilder, check_utf8
from esl_assets.inputs.jsonfile import has_text
from esl_assets.rows import RejectedRow, Row
from esl_assets.text import KNOWN_POS_LABELS, normalize_pos

_POS_TOKEN = r"(?:indefinite\s+article|definite\s+article|[A-Za-z]+\.)"
_POS_TOKENS = re.compile(_POS_TOKEN, re.IGNORECASE)
_LINE = re.compile(
    rf"(?P<words>.+?)\s+(?P<labels>{_POS_TOKEN}(?:(?:\s*,\s*|\s+){_POS_TOKEN})*)"
    r"\s*,?",
    re.IGNORECASE,
)
_LEVEL_COMMENT = re.compile(r"#\s*(?P<level>[ABC][12])\b", re.IGNORECASE)


def parse_line(line: str) -> tuple[list[str], list[str | None]]:
    """Split a word-list line into its headwords and parts of speech.

    Returns ``(["a", "an"], ["indefinite article"])`` for
    ``a, an indefinite article`` and ``(["be"], [None])`` for ``be``. When a
    trailing token such as ``al.`` is not a known part of speech, the whole
    line is one headword list.
    """
    text = line.strip()
    match = _LINE.fullmatch(text)
    labels: list[str | None] = [None]
    if match is not None:
        tokens = _POS_TOKENS.findall(match["labels"])
        parsed = [normalize_pos(token) for token in tokens]
        if all(label in KNOWN_POS_LABELS for label in parsed):
            text = match["words"]
            labels = list(dict.fromkeys(parsed))

    words = [word.strip() for word in text.split(",")]
    return [word for word in words if word], labels


def read_wordlist(path: Path) -> Iterator[Row | RejectedRow]:
    """Return a stream of word-only rows, one per headword and part of speech.

    Raises DictionaryError at once when the file is missing, not UTF-8, or
    has no line that is not blank. A file of comments only gives no rows.
    """
    check_utf8(path)
    if not has_text(path):
        raise DictionaryError(
            f"Word list {path} is empty: expected one headword per line."
        )

    return _stream_lines(path)


def _stream_lines(path: Path) -> Iterator[Row | RejectedRow]:
    builder = RowBuilder()
    level: str | None = None
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue

            if text.startswith("#"):
                level = _comment_level(text, level)
                continue

            origin = f"{path.name} line {number}"
            words, labels = parse_line(text)
            for word in words:
                for label in labels:
                    fields = {"word": word, "pos": label, "level": level}
                    yield builder.build(fields, origin)


def _comment_level(comment: str, current: str | None) -> str | None:
    match = _LEVEL_COMMENT.match(comment)
    if match is None:
        return current

    return match["level"].upper()
