"""Tests for format detection and for reading the bundled sample dictionaries.

The expected counts are the ones documented for the sample data. It has 700
words rows: 175 per level, and 280 nouns, 256 verbs, 97 adjectives and 67
adverbs. It has 1857 definitions with ids 1 to 1857, 1686 of them with an
example. Only ``pain`` noun, ``lip`` noun and ``low`` adjective have flags 1.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from esl_assets.errors import DictionaryError
from esl_assets.inputs import FORMATS, detect_format, read_dictionary
from esl_assets.rows import RejectedRow, Row

DATA = Path(__file__).parent / "data"


def read_rows(path: Path, format: str | None = None) -> list[Row]:
    """Read ``path`` and fail if any row is rejected."""
    items = list(read_dictionary(path, format))
    rejected = [item for item in items if isinstance(item, RejectedRow)]
    assert rejected == []
    return [item for item in items if isinstance(item, Row)]


def row_fields(row: Row) -> tuple[object, ...]:
    """Return a row's content without its origin, to compare formats."""
    return (
        row.uuid,
        row.definition_id,
        row.word,
        row.pos,
        row.level,
        row.definition,
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sample.sqlite", "sqlite"),
        ("sample.csv", "csv"),
        ("sample-bom.csv", "csv"),
        ("bad-rows.csv", "csv"),
        ("sample.jsonl", "jsonl"),
        ("wordlist.txt", "wordlist"),
        ("mw/cat.json", "mw"),
        ("mw/run.json", "mw"),
        ("mw", "mw"),
    ],
)
def test_detect_format_samples(name: str, expected: str) -> None:
    assert detect_format(DATA / name) == expected


def test_detect_format_sqlite_by_header(tmp_path: Path) -> None:
    copy = tmp_path / "dictionary.bin"
    shutil.copyfile(DATA / "sample.sqlite", copy)
    assert detect_format(copy) == "sqlite"


def test_detect_format_json_list_of_entries(tmp_path: Path) -> None:
    path = tmp_path / "entries.json"
    path.write_text(json.dumps([{"word": "cat", "definitions": []}]), "utf-8")
    assert detect_format(path) == "json"


def test_detect_format_json_lines_named_json(tmp_path: Path) -> None:
    path = tmp_path / "entries.json"
    path.write_text('{"word": "cat"}\n{"word": "dog"}\n', "utf-8")
    assert detect_format(path) == "jsonl"
    assert [row.word for row in read_rows(path)] == ["cat", "dog"]


def test_detect_format_single_object_json(tmp_path: Path) -> None:
    path = tmp_path / "entry.json"
    path.write_text('{"word": "cat",\n "definitions": ["a feline"]}\n', "utf-8")
    assert detect_format(path) == "json"


def test_detect_format_mw_suggestions(tmp_path: Path) -> None:
    path = tmp_path / "catt.json"
    path.write_text(json.dumps(["cat", "cats", "catty"]), "utf-8")
    assert detect_format(path) == "mw"


def test_detect_format_mw_long_first_entry(tmp_path: Path) -> None:
    entry = json.loads((DATA / "mw" / "cat.json").read_text("utf-8"))[0]
    entry["padding"] = "x" * 100_000
    path = tmp_path / "long.json"
    path.write_text(json.dumps([entry]), "utf-8")
    assert detect_format(path) == "mw"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("word,definition\ncat,a small feline\n", "csv"),
        ("word\tdefinition\ncat\ta small feline\n", "tsv"),
        ('{"word": "cat"}\n', "jsonl"),
        ('[{"word": "cat"}]', "json"),
        ("cat\ndog n.\n", "wordlist"),
    ],
)
def test_detect_format_unknown_extension(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "dictionary.data"
    path.write_text(content, "utf-8")
    assert detect_format(path) == expected


def test_detect_format_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "picture.bin"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(DictionaryError) as caught:
        detect_format(path)

    message = str(caught.value)
    assert str(path) in message
    assert "0x89" in message
    for name in ("SQLite", "CSV", "TSV", "JSON Lines", "Merriam-Webster"):
        assert name in message


def test_detect_format_nul_bytes(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"w\x00o\x00r\x00d\x00")
    with pytest.raises(DictionaryError, match="NUL"):
        detect_format(path)


@pytest.mark.parametrize("name", ["empty.csv", "empty.data", "empty.json"])
def test_detect_format_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"  \n")
    with pytest.raises(DictionaryError, match="empty file"):
        detect_format(path)


def test_detect_format_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.csv"
    with pytest.raises(DictionaryError, match="does not exist") as caught:
        detect_format(path)

    assert str(path) in str(caught.value)


def test_detect_format_db_without_header(tmp_path: Path) -> None:
    path = tmp_path / "fake.sqlite"
    path.write_text("word,definition\n", "utf-8")
    with pytest.raises(DictionaryError, match="without the SQLite header"):
        detect_format(path)


def test_detect_format_folder_without_json(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("cat\n", "utf-8")
    with pytest.raises(DictionaryError, match="no .json files"):
        detect_format(tmp_path)


def test_read_dictionary_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.csv"
    with pytest.raises(DictionaryError, match="does not exist"):
        read_dictionary(path)


def test_read_dictionary_unknown_format() -> None:
    with pytest.raises(DictionaryError) as caught:
        read_dictionary(DATA / "sample.csv", "xlsx")

    message = str(caught.value)
    assert "'xlsx'" in message
    for name in FORMATS:
        assert name in message


def test_read_dictionary_folder_needs_mw(tmp_path: Path) -> None:
    with pytest.raises(DictionaryError, match="folder"):
        read_dictionary(DATA / "mw", "csv")


def test_read_dictionary_explicit_format(tmp_path: Path) -> None:
    path = tmp_path / "words.data"
    path.write_text("cat\ndog\n", "utf-8")
    rows = read_rows(path, "wordlist")
    assert [row.word for row in rows] == ["cat", "dog"]


@pytest.fixture(scope="module")
def sqlite_rows() -> list[Row]:
    return read_rows(DATA / "sample.sqlite")


@pytest.fixture(scope="module")
def csv_rows() -> list[Row]:
    return read_rows(DATA / "sample.csv")


@pytest.fixture(scope="module")
def jsonl_rows() -> list[Row]:
    return read_rows(DATA / "sample.jsonl")


@pytest.mark.parametrize("rows_name", ["sqlite_rows", "csv_rows", "jsonl_rows"])
def test_sample_definition_count(
    rows_name: str, request: pytest.FixtureRequest
) -> None:
    rows = request.getfixturevalue(rows_name)
    assert len(rows) == 1857
    assert {row.definition_id for row in rows} == {str(i) for i in range(1, 1858)}
    assert all(row.definition for row in rows)


@pytest.mark.parametrize("rows_name", ["sqlite_rows", "csv_rows", "jsonl_rows"])
def test_sample_entry_counts(rows_name: str, request: pytest.FixtureRequest) -> None:
    rows = request.getfixturevalue(rows_name)
    entries = {row.uuid: row for row in rows}
    definitions_per_entry = Counter(Counter(row.uuid for row in rows).values())
    assert len(entries) == 700
    assert len({row.word for row in entries.values()}) == 666
    assert Counter(row.level for row in entries.values()) == {
        "A1": 175,
        "A2": 175,
        "B1": 175,
        "B2": 175,
    }
    assert Counter(row.pos for row in entries.values()) == {
        "noun": 280,
        "verb": 256,
        "adjective": 97,
        "adverb": 67,
    }
    assert definitions_per_entry == {1: 75, 2: 93, 3: 532}


def test_sample_formats_agree(
    sqlite_rows: list[Row], csv_rows: list[Row], jsonl_rows: list[Row]
) -> None:
    sqlite_set = {row_fields(row) for row in sqlite_rows}
    assert {row_fields(row) for row in csv_rows} == sqlite_set
    assert {row_fields(row) for row in jsonl_rows} == sqlite_set


def test_sample_examples_agree(csv_rows: list[Row], jsonl_rows: list[Row]) -> None:
    csv_examples = {(row.uuid, row.definition_id): row.example for row in csv_rows}
    jsonl_examples = {(row.uuid, row.definition_id): row.example for row in jsonl_rows}
    assert csv_examples == jsonl_examples
    assert sum(example is not None for example in csv_examples.values()) == 1686


@pytest.mark.parametrize("rows_name", ["sqlite_rows", "jsonl_rows"])
def test_sample_offensive_flags(rows_name: str, request: pytest.FixtureRequest) -> None:
    rows = request.getfixturevalue(rows_name)
    flagged = {(row.word, row.pos) for row in rows if row.flags}
    assert flagged == {("pain", "noun"), ("lip", "noun"), ("low", "adjective")}
    assert all(row.flags == 1 for row in rows if row.flags)
    assert all(row.is_offensive for row in rows if row.flags)


def test_sample_sqlite_order(sqlite_rows: list[Row]) -> None:
    with sqlite3.connect(DATA / "sample.sqlite") as connection:
        table_order = [
            uuid
            for (uuid,) in connection.execute("SELECT uuid FROM words ORDER BY rowid")
        ]

    read_order = list(dict.fromkeys(row.uuid for row in sqlite_rows))
    assert read_order == table_order

    ids_by_uuid: dict[str, list[int]] = {}
    for row in sqlite_rows:
        ids_by_uuid.setdefault(row.uuid, []).append(int(row.definition_id or 0))
    for ids in ids_by_uuid.values():
        assert ids == sorted(ids)


def test_sample_bom_csv_matches_sample(csv_rows: list[Row]) -> None:
    bom_rows = read_rows(DATA / "sample-bom.csv")
    assert (DATA / "sample-bom.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    assert len(bom_rows) == 50
    assert [row_fields(row) for row in bom_rows] == [
        row_fields(row) for row in csv_rows[:50]
    ]
    assert [row.example for row in bom_rows] == [row.example for row in csv_rows[:50]]


def test_sample_origins_name_file_and_place(
    sqlite_rows: list[Row], csv_rows: list[Row], jsonl_rows: list[Row]
) -> None:
    assert csv_rows[0].origin == "sample.csv line 2"
    assert sqlite_rows[0].origin == "sample.sqlite shortdef id 1"
    assert jsonl_rows[0].origin == "sample.jsonl line 1 definition 1"


def test_read_dictionary_returns_iterator(tmp_path: Path) -> None:
    path = tmp_path / "words.csv"
    path.write_text("word,definition\ncat,a feline\n", "utf-8")
    rows = read_dictionary(path)
    assert iter(rows) is rows
    first = next(rows)
    assert isinstance(first, Row)
    assert first.word == "cat"
