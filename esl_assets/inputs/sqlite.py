"""SQLite dictionaries with a ``words`` and a ``shortdef`` table.

The layout is the one of the bundled ``sample.sqlite``::

    words(word, functional_label, uuid, flags, level)
    shortdef(uuid, definition, id)

Columns are matched through ``FIELD_ALIASES``, so ``pos`` may stand for
``functional_label``. ``words`` needs ``word`` and ``uuid``; ``shortdef``
needs ``uuid``, ``definition`` and ``id`` and may have an ``example`` column.
The database is opened read-only and streamed with a cursor: one row per
``shortdef`` row joined with its ``words`` row, then a word-only row for a
``words`` row without definitions. Rows come in ``words`` table order, and
each word's definitions by id. ``shortdef`` rows whose uuid has no ``words``
row are rejected as ``orphan_definition`` after the other rows.

Text that is not valid UTF-8 is decoded with U+FFFD in place of the bad
bytes, so one damaged cell does not stop the run.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path

from esl_assets.errors import DictionaryError
from esl_assets.inputs.common import RejectReason, RowBuilder, canonical_field
from esl_assets.rows import RejectedRow, Row

logger = logging.getLogger(__name__)

#: First 16 bytes of every SQLite 3 database file.
SQLITE_MAGIC = b"SQLite format 3\x00"

_WORDS_FIELDS = ("uuid", "word", "pos", "level", "flags", "offensive")
_WORDS_REQUIRED = ("uuid", "word")
_SHORTDEF_FIELDS = ("uuid", "definition_id", "definition", "example")
_SHORTDEF_REQUIRED = ("uuid", "definition_id", "definition")
_FETCH_ROWS = 500


def read_sqlite(path: Path) -> Iterator[Row | RejectedRow]:
    """Return a stream of the rows of a SQLite dictionary.

    Raises DictionaryError at once when the file is missing, is not a SQLite
    database, or lacks a required table or column. The message lists the
    tables and columns that exist.
    """
    _check_magic(path)
    connection = _connect(path)
    try:
        words, shortdef = _resolve_tables(connection, path)
    except sqlite3.DatabaseError as error:
        raise _read_error(path, error) from error
    finally:
        connection.close()

    return _stream_rows(path, words, shortdef)


def _stream_rows(
    path: Path, words: dict[str, str], shortdef: dict[str, str]
) -> Iterator[Row | RejectedRow]:
    connection = _connect(path)
    try:
        builder = RowBuilder()
        yield from _read_joined(connection, path, words, shortdef, builder)
        yield from _read_orphans(connection, path, words, shortdef)
    except sqlite3.DatabaseError as error:
        raise _read_error(path, error) from error
    finally:
        connection.close()


def _read_error(path: Path, error: sqlite3.DatabaseError) -> DictionaryError:
    return DictionaryError(f"Cannot read SQLite dictionary {path}: {error}.")


def _check_magic(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(SQLITE_MAGIC))
    except OSError as error:
        raise DictionaryError(
            f"Cannot open dictionary {path}: {error.strerror}."
        ) from error

    if magic != SQLITE_MAGIC:
        raise DictionaryError(
            f"Dictionary {path} is not a SQLite database: it starts with "
            f"{magic!r}, not {SQLITE_MAGIC!r}."
        )


def _connect(path: Path) -> sqlite3.Connection:
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as error:
        raise DictionaryError(
            f"Cannot open SQLite dictionary {path}: {error}."
        ) from error

    connection.text_factory = _decode_text
    return connection


def _decode_text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _resolve_tables(
    connection: sqlite3.Connection, path: Path
) -> tuple[dict[str, str], dict[str, str]]:
    """Return the column name of each canonical field in words and shortdef."""
    tables = {
        name.lower(): columns for name, columns in _table_columns(connection).items()
    }
    words = _resolve_table(tables, "words", _WORDS_FIELDS, _WORDS_REQUIRED, path)
    shortdef = _resolve_table(
        tables, "shortdef", _SHORTDEF_FIELDS, _SHORTDEF_REQUIRED, path
    )
    return words, shortdef


def _table_columns(connection: sqlite3.Connection) -> dict[str, list[str]]:
    names = connection.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name"
    ).fetchall()
    tables = {}
    for (name,) in names:
        info = connection.execute(f"PRAGMA table_info({_quote(name)})").fetchall()
        tables[name] = [column[1] for column in info]

    return tables


def _resolve_table(
    tables: Mapping[str, list[str]],
    table: str,
    fields: tuple[str, ...],
    required: tuple[str, ...],
    path: Path,
) -> dict[str, str]:
    columns = tables.get(table)
    if columns is None:
        raise DictionaryError(
            f"SQLite dictionary {path} has no {table!r} table. Found: "
            f"{_describe_tables(tables)}. Expected tables words(word, "
            "functional_label, uuid, flags, level) and shortdef(uuid, "
            "definition, id)."
        )

    resolved: dict[str, str] = {}
    for column in columns:
        field = canonical_field(column)
        if field in fields and field not in resolved:
            resolved[field] = column

    missing = [field for field in required if field not in resolved]
    if missing:
        raise DictionaryError(
            f"SQLite table {table!r} in {path} has no column for "
            f"{', '.join(missing)}. Found: {_describe_tables(tables)}. "
            f"Required {table} columns: {', '.join(required)}."
        )

    return resolved


def _describe_tables(tables: Mapping[str, list[str]]) -> str:
    if not tables:
        return "no tables"

    return "; ".join(
        f"{name}({', '.join(columns)})" for name, columns in tables.items()
    )


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _read_joined(
    connection: sqlite3.Connection,
    path: Path,
    words: Mapping[str, str],
    shortdef: Mapping[str, str],
    builder: RowBuilder,
) -> Iterator[Row | RejectedRow]:
    word_columns = [f"w.{_quote(column)}" for column in words.values()]
    definition_columns = [f"s.{_quote(column)}" for column in shortdef.values()]
    # Table order is rowid order, which views and WITHOUT ROWID tables lack.
    word_order = "w.rowid, " if _has_rowid(connection) else ""
    query = (
        f"SELECT {', '.join(word_columns + definition_columns)} "
        "FROM words AS w LEFT JOIN shortdef AS s "
        f"ON s.{_quote(shortdef['uuid'])} = w.{_quote(words['uuid'])} "
        f"ORDER BY {word_order}s.{_quote(shortdef['definition_id'])}"
    )
    word_fields = list(words)
    definition_fields = list(shortdef)
    cursor = connection.execute(query)
    while batch := cursor.fetchmany(_FETCH_ROWS):
        for record in batch:
            split = len(word_fields)
            entry = dict(zip(word_fields, record[:split], strict=True))
            definition = dict(zip(definition_fields, record[split:], strict=True))
            yield _build_row(builder, path, entry, definition)


def _has_rowid(connection: sqlite3.Connection) -> bool:
    try:
        connection.execute("SELECT rowid FROM words LIMIT 0")
    except sqlite3.OperationalError:
        return False

    return True


def _build_row(
    builder: RowBuilder,
    path: Path,
    entry: dict[str, object],
    definition: dict[str, object],
) -> Row | RejectedRow:
    # The join matched no shortdef row exactly when the joined uuid is NULL.
    if definition["uuid"] is None:
        origin = f"{path.name} words uuid {entry['uuid']!r}"
        return builder.build(entry, origin)

    fields = {**entry, **{k: v for k, v in definition.items() if k != "uuid"}}
    origin = f"{path.name} shortdef id {definition['definition_id']}"
    return builder.build(fields, origin)


def _read_orphans(
    connection: sqlite3.Connection,
    path: Path,
    words: Mapping[str, str],
    shortdef: Mapping[str, str],
) -> Iterator[RejectedRow]:
    definition_id = _quote(shortdef["definition_id"])
    definition_uuid = _quote(shortdef["uuid"])
    query = (
        f"SELECT s.{definition_id}, s.{definition_uuid} FROM shortdef AS s "
        f"WHERE NOT EXISTS (SELECT 1 FROM words AS w "
        f"WHERE w.{_quote(words['uuid'])} = s.{definition_uuid}) "
        f"ORDER BY s.{definition_id}"
    )
    for orphan_id, orphan_uuid in connection.execute(query):
        origin = f"{path.name} shortdef id {orphan_id}"
        yield RejectedRow(
            origin=origin,
            reason=RejectReason.ORPHAN_DEFINITION,
            message=(
                f"{origin}: uuid {orphan_uuid!r} has no row in the words table, "
                "so the definition has no word; add the words row or delete "
                "the definition."
            ),
            uuid=None if orphan_uuid is None else str(orphan_uuid),
            definition_id=None if orphan_id is None else str(orphan_id),
        )
