"""Tests for the Merriam-Webster response reader on tests/data/mw."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from esl_assets.errors import DictionaryError
from esl_assets.inputs import RejectReason, read_dictionary
from esl_assets.rows import RejectedRow, Row

MW = Path(__file__).parent / "data" / "mw"


def entries_of(path: Path) -> list[dict[str, object]]:
    loaded: list[dict[str, object]] = json.loads(path.read_text("utf-8"))
    return loaded


def rows_of(path: Path) -> list[Row]:
    items = list(read_dictionary(path))
    assert all(isinstance(item, Row) for item in items), items
    return [item for item in items if isinstance(item, Row)]


@pytest.mark.parametrize("name", ["cat.json", "run.json"])
def test_mw_rows_follow_shortdef(name: str) -> None:
    rows = rows_of(MW / name)
    expected = []
    for entry in entries_of(MW / name):
        meta = entry["meta"]
        assert isinstance(meta, dict)
        shortdefs = entry["shortdef"]
        assert isinstance(shortdefs, list)
        for number, text in enumerate(shortdefs, start=1):
            expected.append((meta["uuid"], str(number), text, entry["fl"]))

    assert [(r.uuid, r.definition_id, r.definition, r.pos) for r in rows] == expected


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("cat.json", ["cat", "cat", "CAT scan"]),
        ("run.json", ["run", "run", "running"]),
    ],
)
def test_mw_headwords(name: str, words: list[str]) -> None:
    by_uuid = {row.uuid: row.word for row in rows_of(MW / name)}
    assert list(by_uuid.values()) == words


@pytest.mark.parametrize(
    ("name", "flags"), [("cat.json", [8, 1, 0]), ("run.json", [0, 4, 0])]
)
def test_mw_flags(name: str, flags: list[int]) -> None:
    by_uuid = {row.uuid: row.flags for row in rows_of(MW / name)}
    assert list(by_uuid.values()) == flags


def test_mw_offensive_entry() -> None:
    offensive = [row for row in rows_of(MW / "cat.json") if row.is_offensive]
    assert [row.definition for row in offensive] == ["a spiteful woman gossip"]


def test_mw_british_label(tmp_path: Path) -> None:
    entry = entries_of(MW / "run.json")[1]
    entry["def"] = [{"sseq": [[["sense", {"sls": ["chiefly British"], "dt": []}]]]}]
    path = tmp_path / "brit.json"
    path.write_text(json.dumps([entry]), "utf-8")
    assert {row.flags for row in rows_of(path)} == {2}


def test_mw_folder_reads_files_in_name_order() -> None:
    rows = rows_of(MW)
    files = [row.origin.split(" ", 1)[0] for row in rows]
    assert files == sorted(files)
    assert len(rows) == len(rows_of(MW / "cat.json")) + len(rows_of(MW / "run.json"))


def test_mw_suggestions_rejected(tmp_path: Path) -> None:
    path = tmp_path / "catt.json"
    path.write_text(json.dumps(["cat", "cats"]), "utf-8")
    items = list(read_dictionary(path))
    assert [getattr(item, "reason", None) for item in items] == [
        "not_an_entry",
        "not_an_entry",
    ]
    assert isinstance(items[0], RejectedRow)
    assert "'cat'" in items[0].message


def test_mw_entry_without_shortdef(tmp_path: Path) -> None:
    entry = entries_of(MW / "cat.json")[0]
    entry["shortdef"] = []
    path = tmp_path / "bare.json"
    path.write_text(json.dumps([entry]), "utf-8")
    rows = rows_of(path)
    assert len(rows) == 1
    assert rows[0].definition is None
    assert rows[0].word == "cat"


def test_mw_word_from_meta_id(tmp_path: Path) -> None:
    entry = entries_of(MW / "run.json")[2]
    del entry["hwi"]
    path = tmp_path / "nohw.json"
    path.write_text(json.dumps([entry]), "utf-8")
    assert {row.word for row in rows_of(path)} == {"running"}


def test_mw_unsafe_uuid(tmp_path: Path) -> None:
    entry = entries_of(MW / "cat.json")[0]
    meta = entry["meta"]
    assert isinstance(meta, dict)
    meta["uuid"] = "../../etc"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([entry]), "utf-8")
    items = list(read_dictionary(path))
    assert {getattr(item, "reason", None) for item in items} == {"unsafe_id"}


def test_mw_folder_skips_broken_file(tmp_path: Path) -> None:
    shutil.copyfile(MW / "cat.json", tmp_path / "cat.json")
    (tmp_path / "broken.json").write_text("[{", "utf-8")
    (tmp_path / "readme.txt").write_text("not read", "utf-8")
    items = list(read_dictionary(tmp_path))
    rejected = [item for item in items if isinstance(item, RejectedRow)]
    assert len(rejected) == 1
    assert rejected[0].reason == RejectReason.BAD_JSON
    assert rejected[0].origin == "broken.json"
    assert len(items) == 1 + len(rows_of(MW / "cat.json"))


def test_mw_single_file_not_list(tmp_path: Path) -> None:
    path = tmp_path / "object.json"
    path.write_text(json.dumps({"meta": {}}), "utf-8")
    with pytest.raises(DictionaryError, match="expected the API's list"):
        read_dictionary(path, "mw")


def test_mw_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DictionaryError, match="no .json files"):
        read_dictionary(tmp_path, "mw")
