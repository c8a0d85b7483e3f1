"""Tests for esl_assets.selection on the sample dictionary and small row lists."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from esl_assets.errors import ConfigurationError
from esl_assets.inputs import read_dictionary
from esl_assets.rows import RejectedRow, Row
from esl_assets.selection import (
    Selection,
    normalize_pos,
    parse_words_option,
    select_rows,
)
from esl_assets.text import normalize_pos as text_normalize_pos

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def sample() -> list[Row | RejectedRow]:
    return list(read_dictionary(DATA / "sample.sqlite"))


def entries(rows: list[Row | RejectedRow]) -> dict[str, Row]:
    return {row.uuid: row for row in rows if isinstance(row, Row)}


def select(rows: list[Row | RejectedRow], **options: object) -> list[Row | RejectedRow]:
    return list(select_rows(rows, Selection(**options)))  # type: ignore[arg-type]


def test_no_filters_keep_everything(sample: list[Row | RejectedRow]) -> None:
    assert select(sample) == sample


def test_levels_ignore_case(sample: list[Row | RejectedRow]) -> None:
    chosen = select(sample, levels=frozenset({"a1"}))
    assert len(entries(chosen)) == 175
    assert {row.level for row in entries(chosen).values()} == {"A1"}


def test_several_levels(sample: list[Row | RejectedRow]) -> None:
    chosen = select(sample, levels=frozenset({"A2", "b1"}))
    assert Counter(row.level for row in entries(chosen).values()) == {
        "A2": 175,
        "B1": 175,
    }


@pytest.mark.parametrize("label", ["n", "n.", "N", "noun", "Noun."])
def test_pos_abbreviations(sample: list[Row | RejectedRow], label: str) -> None:
    chosen = select(sample, pos=frozenset({label}))
    assert len(entries(chosen)) == 280
    assert {row.pos for row in entries(chosen).values()} == {"noun"}


def test_several_pos(sample: list[Row | RejectedRow]) -> None:
    chosen = select(sample, pos=frozenset({"adj.", "ADV"}))
    assert Counter(row.pos for row in entries(chosen).values()) == {
        "adjective": 97,
        "adverb": 67,
    }


def test_words_ignore_case(sample: list[Row | RejectedRow]) -> None:
    chosen = select(sample, words=frozenset({"RUN", "Use"}))
    assert {(row.word, row.pos) for row in entries(chosen).values()} == {
        ("run", "verb"),
        ("use", "verb"),
        ("use", "noun"),
    }


def test_filters_combine(sample: list[Row | RejectedRow]) -> None:
    chosen = select(sample, words=frozenset({"use"}), pos=frozenset({"n"}))
    assert {(row.word, row.pos) for row in entries(chosen).values()} == {
        ("use", "noun")
    }


def test_limit_counts_entries(sample: list[Row | RejectedRow]) -> None:
    chosen = select(sample, limit=5)
    all_definitions = Counter(row.uuid for row in sample if isinstance(row, Row))
    chosen_definitions = Counter(row.uuid for row in chosen if isinstance(row, Row))
    assert len(chosen_definitions) == 5
    for uuid, count in chosen_definitions.items():
        assert count == all_definitions[uuid]
    assert list(chosen_definitions) == list(all_definitions)[:5]


def test_limit_after_filters(sample: list[Row | RejectedRow]) -> None:
    chosen = select(sample, levels=frozenset({"B2"}), limit=3)
    assert len(entries(chosen)) == 3
    assert {row.level for row in entries(chosen).values()} == {"B2"}


def test_limit_keeps_later_rows_of_chosen_entry() -> None:
    rows: list[Row | RejectedRow] = [
        Row(uuid="u1", word="cat", definition_id="1", definition="a"),
        Row(uuid="u2", word="dog", definition_id="1", definition="b"),
        Row(uuid="u1", word="cat", definition_id="2", definition="c"),
    ]
    chosen = select(rows, limit=1)
    assert chosen == [rows[0], rows[2]]


def test_limit_zero_keeps_rejected_only() -> None:
    rejected = RejectedRow(origin="x line 2", reason="unsafe_id", message="m")
    rows: list[Row | RejectedRow] = [Row(uuid="u1", word="cat"), rejected]
    assert select(rows, limit=0) == [rejected]


def test_rejected_rows_pass_untouched() -> None:
    rejected = RejectedRow(origin="x line 3", reason="duplicate", message="m", uuid="u")
    rows: list[Row | RejectedRow] = [
        Row(uuid="u1", word="cat", level="A1"),
        rejected,
        Row(uuid="u2", word="dog", level="A1"),
    ]
    chosen = select(rows, levels=frozenset({"C2"}), words=frozenset({"fox"}))
    assert chosen == [rejected]
    assert chosen[0] is rejected


def test_rows_without_level_or_pos_excluded() -> None:
    rows: list[Row | RejectedRow] = [Row(uuid="u1", word="cat")]
    assert select(rows, levels=frozenset({"A1"})) == []
    assert select(rows, pos=frozenset({"noun"})) == []


def test_words_match_nfd_and_nfc() -> None:
    rows: list[Row | RejectedRow] = [Row(uuid="u1", word="caf\u00e9")]
    assert select(rows, words=frozenset({"CAFE\u0301"})) == rows


def test_negative_limit_rejected() -> None:
    with pytest.raises(ConfigurationError, match="-1"):
        Selection(limit=-1)


def test_selection_is_frozen() -> None:
    selection = Selection(limit=3)
    with pytest.raises(AttributeError):
        selection.limit = 4  # type: ignore[misc]


def test_normalize_pos_is_shared() -> None:
    assert normalize_pos is text_normalize_pos


def test_parse_words_comma_list() -> None:
    assert parse_words_option(" cat, Dog ,,ice cream") == frozenset(
        {"cat", "Dog", "ice cream"}
    )


def test_parse_words_file(tmp_path: Path) -> None:
    path = tmp_path / "words.txt"
    path.write_bytes("\ufeffcat\r\n\r\n# a comment\r\ncafe\u0301\r\n".encode())
    assert parse_words_option(f"@{path}") == frozenset({"cat", "caf\u00e9"})


def test_parse_words_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.txt"
    with pytest.raises(ConfigurationError, match="missing.txt"):
        parse_words_option(f"@{path}")


def test_parse_words_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigurationError, match="not UTF-8"):
        parse_words_option(f"@{path}")


@pytest.mark.parametrize("value", ["", " , ,"])
def test_parse_words_empty(value: str) -> None:
    with pytest.raises(ConfigurationError, match="lists no words"):
        parse_words_option(value)


def test_parse_words_then_select(sample: list[Row | RejectedRow]) -> None:
    words = parse_words_option("cat,RUN")
    chosen = select(sample, words=words)
    assert {row.word for row in entries(chosen).values()} <= {"cat", "run"}
    assert "run" in {row.word for row in entries(chosen).values()}
