"""Tests for the plain word-list reader on tests/data/wordlist.txt and others.

wordlist.txt has 299 entry lines for 300 headwords. Each line gives one row
per (headword, part of speech): 24 lines list two parts of speech (``use
v., n.``) and so give one extra row each, and ``a, an indefinite article``
gives two headwords, one extra row. That makes 299 + 24 + 1 = 324 rows.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections import Counter
from pathlib import Path

import pytest

from esl_assets.errors import DictionaryError
from esl_assets.inputs import read_dictionary
from esl_assets.inputs.wordlist import parse_line
from esl_assets.rows import Row

DATA = Path(__file__).parent / "data"
SAMPLE_POS = {"noun", "verb", "adjective", "adverb"}


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    items = list(read_dictionary(DATA / "wordlist.txt"))
    assert all(isinstance(item, Row) for item in items)
    return [item for item in items if isinstance(item, Row)]


def test_wordlist_counts(rows: list[Row]) -> None:
    lines_per_count = Counter(Counter(row.origin for row in rows).values())
    assert len(rows) == 324
    assert len({row.word for row in rows}) == 300
    assert len({row.origin for row in rows}) == 299
    assert lines_per_count == {1: 274, 2: 25}


def test_wordlist_rows_have_no_definition(rows: list[Row]) -> None:
    assert all(row.definition is None for row in rows)
    assert all(row.definition_id is None for row in rows)


def test_wordlist_hand_written_lines(rows: list[Row]) -> None:
    first = [(row.word, row.pos) for row in rows[:5]]
    assert first == [
        ("a", "indefinite article"),
        ("an", "indefinite article"),
        ("the", "definite article"),
        ("and", "conjunction"),
        ("of", "preposition"),
    ]


def test_wordlist_two_parts_of_speech(rows: list[Row]) -> None:
    use_rows = [(row.pos, row.origin) for row in rows if row.word == "use"]
    assert [pos for pos, _ in use_rows] == ["verb", "noun"]
    assert use_rows[0][1] == use_rows[1][1]


def test_wordlist_uuids_match_sample(rows: list[Row]) -> None:
    with sqlite3.connect(DATA / "sample.sqlite") as connection:
        sample = {
            uuid_: (word, label)
            for word, label, uuid_ in connection.execute(
                "SELECT word, functional_label, uuid FROM words"
            )
        }

    with_sample_pos = [row for row in rows if row.pos in SAMPLE_POS]
    # 91 sample lines have a part of speech, 24 of them two.
    assert len(with_sample_pos) == 115
    for row in with_sample_pos:
        assert sample.get(row.uuid) == (row.word, row.pos), row


def test_wordlist_bare_word_uuid(rows: list[Row]) -> None:
    be = next(row for row in rows if row.word == "be")
    assert be.pos is None
    assert be.uuid == str(uuid.uuid5(uuid.NAMESPACE_URL, "esl-sample:be:"))


def test_wordlist_levels_from_comments(rows: list[Row]) -> None:
    levels = {row.word: row.level for row in rows}
    assert levels["a"] is None
    assert levels["be"] == "A1"
    assert levels["understand"] == "A2"
    assert levels["purpose"] == "A2"


@pytest.mark.parametrize(
    ("line", "words", "labels"),
    [
        ("be", ["be"], [None]),
        ("say v.", ["say"], ["verb"]),
        ("run v., n.", ["run"], ["verb", "noun"]),
        ("run v. n.", ["run"], ["verb", "noun"]),
        ("a, an indefinite article", ["a", "an"], ["indefinite article"]),
        ("the definite article", ["the"], ["definite article"]),
        ("ice cream n.", ["ice cream"], ["noun"]),
        ("phrasal verb", ["phrasal verb"], [None]),
        ("et al.", ["et al."], [None]),
        ("etc.", ["etc."], [None]),
        ("St. Paul's n.", ["St. Paul's"], ["noun"]),
        ("use v., v.", ["use"], ["verb"]),
    ],
)
def test_parse_line(line: str, words: list[str], labels: list[str | None]) -> None:
    assert parse_line(line) == (words, labels)


def test_wordlist_duplicate_line(tmp_path: Path) -> None:
    path = tmp_path / "words.txt"
    path.write_text("cat n.\ndog\ncat n.\n", "utf-8")
    items = list(read_dictionary(path))
    assert [getattr(item, "reason", None) for item in items] == [
        None,
        None,
        "duplicate",
    ]


def test_wordlist_cleans_words(tmp_path: Path) -> None:
    path = tmp_path / "words.txt"
    path.write_bytes("\ufeffcafe\u0301\r\n  spaced   word  \r\n".encode())
    words = [row.word for row in read_dictionary(path) if isinstance(row, Row)]
    assert words == ["caf\u00e9", "spaced word"]


def test_wordlist_comments_only(tmp_path: Path) -> None:
    path = tmp_path / "words.txt"
    path.write_text("# nothing yet\n", "utf-8")
    assert list(read_dictionary(path)) == []


def test_wordlist_empty_raises(tmp_path: Path) -> None:
    path = tmp_path / "words.txt"
    path.write_text("\n \n", "utf-8")
    with pytest.raises(DictionaryError, match="is empty"):
        read_dictionary(path, "wordlist")
