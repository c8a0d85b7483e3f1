"""Tests for the CSV and TSV readers on files the tests write themselves."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from esl_assets.errors import DictionaryError
from esl_assets.inputs import RejectReason, read_dictionary, stable_uuid
from esl_assets.rows import FLAG_OFFENSIVE, RejectedRow, Row

RUN_VERB_UUID = "01a11295-a603-5910-8f13-9f8b5deb3783"


def write_csv(path: Path, rows: list[list[str]], delimiter: str = ",") -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, delimiter=delimiter).writerows(rows)
    return path


def read_all(path: Path) -> list[Row | RejectedRow]:
    return list(read_dictionary(path))


def only_rows(items: list[Row | RejectedRow]) -> list[Row]:
    assert all(isinstance(item, Row) for item in items), items
    return [item for item in items if isinstance(item, Row)]


def test_tsv_with_quoted_crlf(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "words.tsv",
        [
            ["uuid", "word", "pos", "level", "id", "definition", "example"],
            ["u-1", "cat", "n.", "A1", "1", "a small\r\nfeline", "my cat"],
            ["u-1", "cat", "n.", "A1", "2", "a person, informally", ""],
        ],
        delimiter="\t",
    )
    rows = only_rows(read_all(path))
    assert [row.definition for row in rows] == [
        "a small feline",
        "a person, informally",
    ]
    assert rows[0].pos == "noun"
    assert rows[0].example == "my cat"
    assert rows[1].example is None
    assert rows[1].origin == "words.tsv line 4"


def test_header_aliases(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "aliases.csv",
        [
            ["Headword", "FL", "Shortdef", "def_id", "CEFR", "Offensive", "uuid"],
            ["pain", "noun", "a bothersome person", "7", "B2", "yes", "u-pain"],
            ["cat", "noun", "a feline", "8", "A1", "no", "u-cat"],
        ],
    )
    rows = only_rows(read_all(path))
    assert [row.word for row in rows] == ["pain", "cat"]
    assert [row.definition_id for row in rows] == ["7", "8"]
    assert [row.level for row in rows] == ["B2", "A1"]
    assert [row.flags for row in rows] == [FLAG_OFFENSIVE, 0]


@pytest.mark.parametrize("name", ["id", "def_id", "definition_id", "shortdef_id"])
def test_definition_id_aliases(tmp_path: Path, name: str) -> None:
    path = write_csv(
        tmp_path / "ids.csv",
        [["uuid", "word", name, "definition"], ["u", "w", "5", "d"]],
    )
    rows = only_rows(read_all(path))
    assert rows[0].definition_id == "5"
    assert rows[0].uuid == "u"


@pytest.mark.parametrize(
    ("value", "flags"),
    [("true", 1), ("1", 1), ("YES", 1), ("false", 0), ("0", 0), ("no", 0), ("", 0)],
)
def test_offensive_values(tmp_path: Path, value: str, flags: int) -> None:
    path = write_csv(tmp_path / "o.csv", [["word", "offensive"], ["lip", value]])
    assert only_rows(read_all(path))[0].flags == flags


def test_flags_combined_with_offensive(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "f.csv", [["word", "flags", "offensive"], ["lip", "6", "yes"]]
    )
    assert only_rows(read_all(path))[0].flags == 7


@pytest.mark.parametrize(
    ("column", "value"),
    [("flags", "high"), ("flags", "-1"), ("offensive", "maybe")],
)
def test_bad_flag_values_rejected(tmp_path: Path, column: str, value: str) -> None:
    path = write_csv(
        tmp_path / "bad.csv", [["word", column], ["lip", value], ["cat", ""]]
    )
    items = read_all(path)
    assert isinstance(items[0], RejectedRow)
    assert items[0].reason == RejectReason.BAD_VALUE
    assert repr(value) in items[0].message
    assert isinstance(items[1], Row)


def test_word_only_csv(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "words.csv", [["word"], ["cat"], ["dog"]])
    rows = only_rows(read_all(path))
    assert [row.word for row in rows] == ["cat", "dog"]
    assert all(row.definition is None for row in rows)
    assert all(row.definition_id is None for row in rows)
    assert rows[0].uuid == stable_uuid("cat", None)


def test_missing_uuid_column_uses_sample_rule(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "run.csv", [["word", "pos", "definition"], ["run", "v", "go fast"]]
    )
    row = only_rows(read_all(path))[0]
    assert row.uuid == RUN_VERB_UUID
    assert row.definition_id == "1"


def test_missing_ids_numbered_per_uuid(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "auto.csv",
        [
            ["uuid", "word", "definition"],
            ["u-1", "cat", "one"],
            ["u-2", "dog", "uno"],
            ["u-1", "cat", "two"],
        ],
    )
    rows = only_rows(read_all(path))
    assert [(row.uuid, row.definition_id) for row in rows] == [
        ("u-1", "1"),
        ("u-2", "1"),
        ("u-1", "2"),
    ]


def test_empty_definition_and_id_is_word_only(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "mixed.csv",
        [["uuid", "word", "id", "definition"], ["u-1", "cat", "", ""]],
    )
    row = only_rows(read_all(path))[0]
    assert row.definition is None
    assert row.definition_id is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("12", "12"), (" 0012 ", "12"), ("x9020", "x9020"), ("s1.a", "s1.a")],
)
def test_definition_id_forms(tmp_path: Path, value: str, expected: str) -> None:
    path = write_csv(
        tmp_path / "ids.csv",
        [["uuid", "word", "id", "definition"], ["u", "w", value, "d"]],
    )
    assert only_rows(read_all(path))[0].definition_id == expected


@pytest.mark.parametrize("value", ["../1", "a/b", "-1", "x" * 101, "é1"])
def test_unsafe_definition_id_rejected(tmp_path: Path, value: str) -> None:
    path = write_csv(
        tmp_path / "ids.csv",
        [["uuid", "word", "id", "definition"], ["u", "w", value, "d"]],
    )
    items = read_all(path)
    assert isinstance(items[0], RejectedRow)
    assert items[0].reason == "unsafe_id"
    assert "definition id" in items[0].message


def test_duplicate_id_with_other_text(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "dup.csv",
        [
            ["uuid", "word", "id", "definition"],
            ["u", "w", "1", "first"],
            ["u", "w", "1", "second"],
            ["v", "w", "1", "first"],
        ],
    )
    items = read_all(path)
    assert isinstance(items[0], Row)
    assert isinstance(items[1], RejectedRow)
    assert items[1].reason == "duplicate"
    assert "definition id" in items[1].message
    assert items[1].message.startswith("dup.csv line 3: ")
    assert "of an earlier row, which is kept" in items[1].message
    assert isinstance(items[2], Row)


def test_duplicate_text_after_cleanup(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "dup.csv",
        [
            ["uuid", "word", "id", "definition"],
            ["u", "w", "1", "a  <b>small</b> cat"],
            ["u", "w", "2", "a small cat"],
        ],
    )
    items = read_all(path)
    assert isinstance(items[1], RejectedRow)
    assert items[1].reason == "duplicate"


def test_empty_definitions_not_duplicates(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "empty.csv",
        [
            ["uuid", "word", "id", "definition"],
            ["u", "w", "1", ""],
            ["u", "w", "2", " "],
        ],
    )
    rows = only_rows(read_all(path))
    assert [row.definition for row in rows] == ["", ""]


def test_text_after_empty_definition_passes(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "dup.csv",
        [
            ["uuid", "word", "id", "definition"],
            ["u", "w", "1", ""],
            ["u", "w", "1", " "],
            ["u", "w", "1", "a small cat"],
            ["u", "w", "1", "a big cat"],
        ],
    )
    items = read_all(path)
    # The planner plans the row with text in place of the empty one.
    assert isinstance(items[0], Row)
    assert isinstance(items[1], RejectedRow)
    assert "of dup.csv line 2, which is kept" in items[1].message
    assert isinstance(items[2], Row)
    assert items[2].definition == "a small cat"
    assert isinstance(items[3], RejectedRow)
    assert "of an earlier row, which is kept" in items[3].message


def test_empty_definition_after_text_rejected(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "dup.csv",
        [
            ["uuid", "word", "id", "definition"],
            ["u", "w", "1", "a small cat"],
            ["u", "w", "1", ""],
        ],
    )
    items = read_all(path)
    assert isinstance(items[0], Row)
    assert isinstance(items[1], RejectedRow)
    assert items[1].reason == "duplicate"
    assert "of an earlier row, which is kept" in items[1].message


def test_duplicate_word_only_rows(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "words.csv", [["word"], ["cat"], ["Cat"], ["cat"]])
    items = read_all(path)
    assert [type(item).__name__ for item in items] == ["Row", "Row", "RejectedRow"]


def test_extra_and_missing_fields(tmp_path: Path) -> None:
    path = tmp_path / "counts.csv"
    path.write_text("word,definition\ncat,a,b\ndog\nfox,an animal\n", "utf-8")
    items = read_all(path)
    assert [getattr(item, "reason", None) for item in items] == [
        "bad_field_count",
        "bad_field_count",
        None,
    ]
    assert isinstance(items[0], RejectedRow)
    assert isinstance(items[1], RejectedRow)
    assert "3 fields" in items[0].message
    assert "1 fields" in items[1].message


def test_nul_in_quoted_and_plain_fields(tmp_path: Path) -> None:
    path = tmp_path / "nul.csv"
    path.write_bytes(b'word,definition\nca\x00t,"a sm\x00all\r\nfeline"\ndog,ok\n')
    rows = only_rows(read_all(path))
    assert rows[0].word == "cat"
    assert rows[0].definition == "a small feline"
    assert rows[1].word == "dog"


def test_blank_lines_skipped(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("\n\nword,definition\n\ncat,a feline\n,\n\ndog,a canine\n", "utf-8")
    rows = only_rows(read_all(path))
    assert [row.word for row in rows] == ["cat", "dog"]
    assert rows[1].origin == "blank.csv line 8"


def test_empty_word_rejected(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "w.csv", [["word", "definition"], ["<b></b>", "x"]])
    items = read_all(path)
    assert isinstance(items[0], RejectedRow)
    assert items[0].reason == "empty_word"


def test_oversized_field_rejected(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "big.csv",
        [["word", "definition"], ["cat", "x" * 200_000], ["dog", "a canine"]],
    )
    items = read_all(path)
    assert isinstance(items[0], RejectedRow)
    assert items[0].reason == RejectReason.BAD_CSV
    assert "field limit" in items[0].message
    assert isinstance(items[1], Row)
    assert items[1].word == "dog"


def test_missing_word_column_message(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "nowords.csv", [["uuid", "meaning"], ["u", "m"]])
    with pytest.raises(DictionaryError) as caught:
        read_dictionary(path)

    message = str(caught.value)
    assert str(path) in message
    assert "'uuid', 'meaning'" in message
    assert "word (required): word/headword/hw" in message
    assert "definition: definition/shortdef/def" in message


def test_two_columns_for_one_field(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "two.csv", [["word", "pos", "fl"], ["a", "n", "v"]])
    with pytest.raises(DictionaryError, match="two columns for pos"):
        read_dictionary(path)


def test_empty_csv_raises(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(DictionaryError, match="is empty"):
        read_dictionary(path, "csv")


def test_header_only_gives_no_rows(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "header.csv", [["word", "definition"]])
    assert read_all(path) == []


def test_latin1_file_raises_before_rows(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("word\ncat\ncaf\u00e9\n".encode("latin-1"))
    with pytest.raises(DictionaryError) as caught:
        read_dictionary(path)

    message = str(caught.value)
    assert "not UTF-8" in message
    assert "0xe9" in message
    assert "line 3" in message


def test_utf16_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("word,definition\ncat,a feline\n".encode("utf-16"))
    with pytest.raises(DictionaryError, match="UTF-16"):
        read_dictionary(path)


def test_binary_csv_raises(tmp_path: Path) -> None:
    path = tmp_path / "image.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(DictionaryError, match="not UTF-8"):
        read_dictionary(path)


def test_100k_rows_stream(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "uuid", "word", "pos", "level", "definition", "example"])
        for number in range(1, 100_001):
            writer.writerow(
                [
                    number,
                    f"entry-{number // 3}",
                    f"word{number // 3}",
                    "noun",
                    "A1",
                    f"definition number {number}, with a comma",
                    "",
                ]
            )

    count = 0
    last_id = None
    for item in read_dictionary(path):
        assert isinstance(item, Row)
        count += 1
        last_id = item.definition_id

    assert count == 100_000
    assert last_id == "100000"


def test_unclosed_quote_names_the_lost_lines(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    path.write_text(
        "word,definition,pos\n"
        "cat,a small animal,noun\n"
        'dog,"a dog,noun\n'
        "cow,a farm animal,noun\n"
        "pig,a pink animal,noun\n",
        "utf-8",
    )
    items = read_all(path)
    assert [type(item).__name__ for item in items] == ["Row", "RejectedRow"]
    rejected = items[1]
    assert isinstance(rejected, RejectedRow)
    assert rejected.reason == RejectReason.BAD_CSV
    assert "quoted field is not closed" in rejected.message
    assert "lines 3 to 5" in rejected.message


def test_quoted_line_break_kept(tmp_path: Path) -> None:
    path = tmp_path / "multiline.csv"
    path.write_text('word,definition\ndog,"a loyal\nanimal"\ncow,a farm animal\n')
    rows = only_rows(read_all(path))
    assert [row.word for row in rows] == ["dog", "cow"]
