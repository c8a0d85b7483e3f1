"""Tests for the SQLite reader on databases the tests build themselves."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from esl_assets.errors import DictionaryError
from esl_assets.inputs import read_dictionary
from esl_assets.rows import RejectedRow, Row

DATA = Path(__file__).parent / "data"

SCHEMA = """
CREATE TABLE words (word TEXT NOT NULL, functional_label TEXT,
                    uuid TEXT PRIMARY KEY, flags INTEGER DEFAULT 0, level TEXT);
CREATE TABLE shortdef (uuid TEXT, definition TEXT, id INTEGER PRIMARY KEY);
"""


def build_database(path: Path, script: str) -> Path:
    connection = sqlite3.connect(path)
    connection.executescript(script)
    connection.commit()
    connection.close()
    return path


def test_word_without_definitions(tmp_path: Path) -> None:
    path = build_database(
        tmp_path / "d.sqlite",
        SCHEMA
        + """
        INSERT INTO words VALUES ('cat', 'noun', 'u-cat', 0, 'A1');
        INSERT INTO words VALUES ('dog', 'noun', 'u-dog', 0, 'A1');
        INSERT INTO words VALUES ('fox', 'n', 'u-fox', NULL, NULL);
        INSERT INTO shortdef VALUES ('u-fox', 'a wild canine', 3);
        INSERT INTO shortdef VALUES ('u-cat', 'a man', 2);
        INSERT INTO shortdef VALUES ('u-cat', 'a feline', 1);
        """,
    )
    items = list(read_dictionary(path))
    rows = [item for item in items if isinstance(item, Row)]
    assert rows == items
    summary = [(row.word, row.definition_id, row.definition) for row in rows]
    assert summary == [
        ("cat", "1", "a feline"),
        ("cat", "2", "a man"),
        ("dog", None, None),
        ("fox", "3", "a wild canine"),
    ]
    assert rows[2].origin == "d.sqlite words uuid 'u-dog'"
    assert rows[3].pos == "noun"
    assert rows[3].flags == 0


def test_orphan_definition_rejected(tmp_path: Path) -> None:
    path = build_database(
        tmp_path / "o.sqlite",
        SCHEMA
        + """
        INSERT INTO words VALUES ('cat', 'noun', 'u-cat', 0, 'A1');
        INSERT INTO shortdef VALUES ('u-cat', 'a feline', 1);
        INSERT INTO shortdef VALUES ('u-gone', 'a lost definition', 2);
        """,
    )
    items = list(read_dictionary(path))
    assert isinstance(items[0], Row)
    orphan = items[1]
    assert isinstance(orphan, RejectedRow)
    assert orphan.reason == "orphan_definition"
    assert orphan.uuid == "u-gone"
    assert orphan.definition_id == "2"


def test_column_aliases(tmp_path: Path) -> None:
    path = build_database(
        tmp_path / "a.db",
        """
        CREATE TABLE words (headword TEXT, pos TEXT, uuid TEXT, cefr TEXT);
        CREATE TABLE shortdef (uuid TEXT, def TEXT, id INTEGER, example TEXT);
        INSERT INTO words VALUES ('run', 'v.', 'u-run', 'B1');
        INSERT INTO shortdef VALUES ('u-run', 'move fast', 1, 'run {it}now{/it}');
        """,
    )
    rows = list(read_dictionary(path))
    assert len(rows) == 1
    row = rows[0]
    assert isinstance(row, Row)
    assert (row.word, row.pos, row.level) == ("run", "verb", "B1")
    assert row.example == "run now"


def test_bad_rows_in_database(tmp_path: Path) -> None:
    path = build_database(
        tmp_path / "b.sqlite",
        SCHEMA
        + """
        INSERT INTO words VALUES ('cat', 'noun', '../up', 0, 'A1');
        INSERT INTO words VALUES ('dog', 'noun', 'u-dog', 0, 'A1');
        INSERT INTO shortdef VALUES ('../up', 'a feline', 1);
        INSERT INTO shortdef VALUES ('u-dog', 'liq' || char(0) || 'uid', 2);
        """,
    )
    items = list(read_dictionary(path))
    assert isinstance(items[0], RejectedRow)
    assert items[0].reason == "unsafe_id"
    assert isinstance(items[1], Row)
    assert items[1].definition == "liquid"


def test_invalid_utf8_text_replaced(tmp_path: Path) -> None:
    path = build_database(
        tmp_path / "u.sqlite",
        SCHEMA
        + """
        INSERT INTO words VALUES (CAST(X'6361ff74' AS TEXT), 'noun', 'u', 0, 'A1');
        INSERT INTO shortdef VALUES ('u', 'a feline', 1);
        """,
    )
    rows = list(read_dictionary(path))
    assert isinstance(rows[0], Row)
    assert rows[0].word == "ca\ufffdt"


def test_missing_table_lists_tables(tmp_path: Path) -> None:
    path = build_database(
        tmp_path / "m.sqlite", "CREATE TABLE entries (word TEXT, uuid TEXT);"
    )
    with pytest.raises(DictionaryError) as caught:
        read_dictionary(path)

    message = str(caught.value)
    assert "no 'words' table" in message
    assert "entries(word, uuid)" in message
    assert str(path) in message


def test_missing_column_lists_columns(tmp_path: Path) -> None:
    path = build_database(
        tmp_path / "c.sqlite",
        """
        CREATE TABLE words (word TEXT, uuid TEXT);
        CREATE TABLE shortdef (uuid TEXT, meaning TEXT, id INTEGER);
        """,
    )
    with pytest.raises(DictionaryError) as caught:
        read_dictionary(path)

    message = str(caught.value)
    assert "'shortdef'" in message
    assert "no column for definition" in message
    assert "shortdef(uuid, meaning, id)" in message


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "fake.sqlite"
    path.write_text("word\ncat\n", "utf-8")
    with pytest.raises(DictionaryError, match="not a SQLite database"):
        read_dictionary(path, "sqlite")


def test_corrupt_database(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.sqlite"
    data = (DATA / "sample.sqlite").read_bytes()
    path.write_bytes(data[:16] + b"\xff" * 200 + data[216:1024])
    with pytest.raises(DictionaryError, match="Cannot read SQLite dictionary"):
        read_dictionary(path)


def test_database_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "sample.sqlite"
    shutil.copyfile(DATA / "sample.sqlite", path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sum(1 for _ in read_dictionary(path)) == 1857
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(child.name for child in tmp_path.iterdir()) == ["sample.sqlite"]


def test_read_only_connection_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    uris: list[str] = []
    connections: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def record_connect(database: str, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        uris.append(database)
        connection: sqlite3.Connection = real_connect(database, *args, **kwargs)
        connections.append(connection)
        return connection

    monkeypatch.setattr(sqlite3, "connect", record_connect)
    rows = read_dictionary(DATA / "sample.sqlite")
    assert isinstance(next(rows), Row)
    assert uris
    assert all(uri.startswith("file:") and uri.endswith("?mode=ro") for uri in uris)

    rows.close()  # type: ignore[attr-defined]
    for connection in connections:
        with pytest.raises(sqlite3.ProgrammingError):
            connection.execute("SELECT 1")
