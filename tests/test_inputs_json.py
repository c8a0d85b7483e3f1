"""Tests for the JSON and JSON Lines readers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esl_assets.errors import DictionaryError
from esl_assets.inputs import RejectReason, read_dictionary
from esl_assets.rows import RejectedRow, Row

NESTED = {
    "uuid": "u-run",
    "word": "run",
    "pos": "v.",
    "level": "A1",
    "flags": 0,
    "definitions": [
        {"id": 10, "text": "move fast", "example": "{it}run{/it}!"},
        {"id": 11, "text": "compete in a race", "example": None},
    ],
}
FLAT = [
    {"uuid": "u-cat", "word": "cat", "pos": "noun", "id": 1, "definition": "a feline"},
    {"uuid": "u-cat", "word": "cat", "pos": "noun", "id": 2, "definition": "a man"},
]


def write_json(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value), "utf-8")
    return path


def read_rows(path: Path, format: str | None = None) -> list[Row]:
    """Read ``path`` and fail if any row is rejected."""
    items = list(read_dictionary(path, format))
    rows = [item for item in items if isinstance(item, Row)]
    assert rows == items
    return rows


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def test_json_list_nested(tmp_path: Path) -> None:
    rows = read_rows(write_json(tmp_path / "d.json", [NESTED]))
    assert [(row.definition_id, row.definition) for row in rows] == [
        ("10", "move fast"),
        ("11", "compete in a race"),
    ]
    assert rows[0].example == "run!"
    assert rows[1].example is None
    assert rows[0].pos == "verb"
    assert rows[0].origin == "d.json item 1 definition 1"


def test_json_list_flat(tmp_path: Path) -> None:
    rows = read_rows(write_json(tmp_path / "flat.json", FLAT))
    assert [(row.uuid, row.definition_id, row.definition) for row in rows] == [
        ("u-cat", "1", "a feline"),
        ("u-cat", "2", "a man"),
    ]


def test_json_single_object(tmp_path: Path) -> None:
    rows = read_rows(write_json(tmp_path / "one.json", NESTED), "json")
    assert len(rows) == 2


def test_json_mixed_shapes_share_duplicates(tmp_path: Path) -> None:
    repeat = {"uuid": "u-run", "word": "run", "id": 10, "definition": "again"}
    items = list(read_dictionary(write_json(tmp_path / "m.json", [NESTED, repeat])))
    assert isinstance(items[2], RejectedRow)
    assert items[2].reason == "duplicate"


def test_nested_string_definitions(tmp_path: Path) -> None:
    entry = {"word": "cat", "pos": "n", "definitions": ["a feline", "a man"]}
    rows = read_rows(write_json(tmp_path / "s.json", [entry]))
    assert [(row.definition_id, row.definition) for row in rows] == [
        ("1", "a feline"),
        ("2", "a man"),
    ]


def test_nested_definition_without_id(tmp_path: Path) -> None:
    entry = {"word": "cat", "definitions": [{"id": 5, "text": "a"}, {"text": "b"}]}
    rows = list(read_dictionary(write_json(tmp_path / "n.json", [entry])))
    assert [row.definition_id for row in rows] == ["5", "2"]


def test_nested_empty_definitions_word_only(tmp_path: Path) -> None:
    entry = {"uuid": "u", "word": "cat", "definitions": []}
    rows = list(read_dictionary(write_json(tmp_path / "e.json", [entry])))
    assert len(rows) == 1
    assert isinstance(rows[0], Row)
    assert rows[0].definition is None


def test_nested_definitions_not_list(tmp_path: Path) -> None:
    entry = {"uuid": "u", "word": "cat", "definitions": "a feline"}
    items = list(read_dictionary(write_json(tmp_path / "e.json", [entry])))
    assert isinstance(items[0], RejectedRow)
    assert items[0].reason == RejectReason.BAD_VALUE


def test_nested_bad_definition_item(tmp_path: Path) -> None:
    entry = {"uuid": "u", "word": "cat", "definitions": [42, "ok"]}
    items = list(read_dictionary(write_json(tmp_path / "e.json", [entry])))
    assert isinstance(items[0], RejectedRow)
    assert items[0].reason == "bad_value"
    assert isinstance(items[1], Row)


@pytest.mark.parametrize(
    ("value", "reason"),
    [(True, "bad_id"), (1.5, "bad_id"), ([1], "bad_id"), ("../x", "unsafe_id")],
)
def test_json_bad_definition_ids(tmp_path: Path, value: object, reason: str) -> None:
    entry = {"uuid": "u", "word": "w", "id": value, "definition": "d"}
    items = list(read_dictionary(write_json(tmp_path / "ids.json", [entry])))
    assert isinstance(items[0], RejectedRow)
    assert items[0].reason == reason


def test_json_integral_float_id(tmp_path: Path) -> None:
    entry = {"uuid": "u", "word": "w", "id": 12.0, "definition": "d"}
    rows = list(read_dictionary(write_json(tmp_path / "ids.json", [entry])))
    assert isinstance(rows[0], Row)
    assert rows[0].definition_id == "12"


def test_json_word_not_text(tmp_path: Path) -> None:
    entry = {"uuid": "u", "word": ["cat"], "definition": "d"}
    items = list(read_dictionary(write_json(tmp_path / "w.json", [entry])))
    assert isinstance(items[0], RejectedRow)
    assert items[0].reason == "bad_value"


def test_json_offensive_true(tmp_path: Path) -> None:
    entry = {"uuid": "u", "word": "w", "offensive": True, "definition": "d"}
    rows = list(read_dictionary(write_json(tmp_path / "o.json", [entry])))
    assert isinstance(rows[0], Row)
    assert rows[0].is_offensive


def test_json_ambiguous_keys(tmp_path: Path) -> None:
    entry = {"word": "w", "pos": "noun", "fl": "verb", "definition": "d"}
    items = list(read_dictionary(write_json(tmp_path / "a.json", [entry, FLAT[0]])))
    assert isinstance(items[0], RejectedRow)
    assert items[0].reason == RejectReason.AMBIGUOUS_FIELD
    assert "'pos' and 'fl'" in items[0].message
    assert isinstance(items[1], Row)


def test_json_non_object_item(tmp_path: Path) -> None:
    items = list(read_dictionary(write_json(tmp_path / "x.json", [3, FLAT[0]]), "json"))
    assert isinstance(items[0], RejectedRow)
    assert items[0].reason == "not_an_entry"
    assert items[0].origin == "x.json item 1"


def test_json_invalid_raises(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[{"word": "cat",\n  "definition": }]', "utf-8")
    with pytest.raises(DictionaryError, match="not valid JSON.*line 2"):
        read_dictionary(path)


def test_json_top_level_number_raises(tmp_path: Path) -> None:
    with pytest.raises(DictionaryError, match="JSON int"):
        read_dictionary(write_json(tmp_path / "n.json", 5), "json")


def test_json_empty_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("", "utf-8")
    with pytest.raises(DictionaryError, match="is empty"):
        read_dictionary(path, "json")


def test_json_empty_list(tmp_path: Path) -> None:
    assert list(read_dictionary(write_json(tmp_path / "e.json", []), "json")) == []


def test_jsonl_bad_line_rejected(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [json.dumps(FLAT[0]), '{"word": "dog", ', "", json.dumps(FLAT[1])],
    )
    items = list(read_dictionary(path))
    assert [type(item).__name__ for item in items] == ["Row", "RejectedRow", "Row"]
    rejected = items[1]
    assert isinstance(rejected, RejectedRow)
    assert rejected.reason == RejectReason.BAD_JSON
    assert rejected.origin == "d.jsonl line 2"
    assert "line 2" in rejected.message


def test_jsonl_non_object_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", ['"cat"', json.dumps(NESTED)])
    items = list(read_dictionary(path))
    assert isinstance(items[0], RejectedRow)
    assert items[0].reason == "not_an_entry"
    assert len(items) == 3


def test_jsonl_crlf_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "win.jsonl"
    text = json.dumps(FLAT[0]) + "\r\n" + json.dumps(FLAT[1]) + "\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    rows = list(read_dictionary(path))
    assert [row.origin for row in rows] == ["win.jsonl line 1", "win.jsonl line 2"]
    assert all(isinstance(row, Row) for row in rows)


def test_jsonl_empty_raises(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", "utf-8")
    with pytest.raises(DictionaryError, match="is empty"):
        read_dictionary(path, "jsonl")


def test_jsonl_not_utf8_raises(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"word": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(DictionaryError, match="not UTF-8"):
        read_dictionary(path)
