"""JSON and JSON Lines dictionaries.

Each entry is an object in one of two shapes, and both may appear in one file:

- nested, one object per entry with its definitions::

    {"uuid": "...", "word": "run", "pos": "verb", "level": "A1", "flags": 0,
     "definitions": [{"id": 1, "text": "...", "example": "..."}]}

  A definition may also be a plain string. A definition without an id gets
  its 1-based position in the list, and an empty list gives one word-only row.
- flat, one object per definition, with the CSV column names as keys
  (``{"uuid": ..., "word": ..., "id": ..., "definition": ...}``).

A ``.json`` file is a list of such objects (or one object) and is parsed
whole, because the standard ``json`` module cannot stream a list. A
``.jsonl`` file has one object per line and is streamed line by line: a line
that is not valid JSON is rejected as ``bad_json`` and reading goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

from esl_assets.errors import DictionaryError
from esl_assets.inputs.common import (
    RejectReason,
    RowBuilder,
    check_utf8,
    map_object_keys,
)
from esl_assets.rows import RejectedRow, Row

logger = logging.getLogger(__name__)

#: Keys that contain the list of definitions in the nested shape.
DEFINITIONS_KEYS = ("definitions", "senses", "shortdefs")

# Canonical fields that belong to one definition rather than to the entry.
_DEFINITION_FIELDS = frozenset({"definition_id", "definition", "example"})


def read_json(path: Path) -> Iterator[Row | RejectedRow]:
    """Return a stream of the rows of a JSON list of entry objects.

    Raises DictionaryError at once when the file is not valid JSON or its top
    level is not a list or an object.
    """
    # NOTE: the standard json module parses the whole list at once, so a large
    # .json file is held in memory; JSON Lines files are streamed instead.
    items = load_json(path)
    if isinstance(items, dict):
        items = [items]

    if not isinstance(items, list):
        raise DictionaryError(
            f"Dictionary {path} contains a JSON {type(items).__name__}; expected a "
            'list of entry objects such as [{"word": "run", ...}].'
        )

    return _stream_items(path, items)


def _stream_items(path: Path, items: list[object]) -> Iterator[Row | RejectedRow]:
    builder = RowBuilder()
    for number, item in enumerate(items, start=1):
        yield from read_entry(item, f"{path.name} item {number}", builder)


def load_json(path: Path) -> object:
    """Parse the whole of ``path`` as JSON, raising DictionaryError on failure."""
    try:
        with path.open(encoding="utf-8-sig") as handle:
            return json.load(handle)
    except FileNotFoundError as error:
        raise DictionaryError(f"Dictionary {path} does not exist.") from error
    except OSError as error:
        raise DictionaryError(
            f"Cannot open dictionary {path}: {error.strerror}."
        ) from error
    except UnicodeDecodeError as error:
        raise DictionaryError(
            f"Dictionary {path} is not UTF-8 text: byte offset {error.start} "
            f"cannot be decoded. Save the file as UTF-8 and run again."
        ) from error
    except json.JSONDecodeError as error:
        if not error.doc.strip():
            raise DictionaryError(
                f"Dictionary {path} is empty: expected a JSON list of entries."
            ) from error
        raise DictionaryError(
            f"Dictionary {path} is not valid JSON: {error.msg} at line "
            f"{error.lineno} column {error.colno}."
        ) from error


def read_jsonl(path: Path) -> Iterator[Row | RejectedRow]:
    """Return a stream of the rows of a JSON Lines file, one entry per line.

    Raises DictionaryError at once when the file is missing, empty or not
    UTF-8.
    """
    check_utf8(path)
    if not has_text(path):
        raise DictionaryError(
            f"Dictionary {path} is empty: expected one JSON object per line."
        )

    return _stream_lines(path)


def has_text(path: Path) -> bool:
    """Return whether ``path`` has a line that is not blank, reading up to it."""
    with path.open(encoding="utf-8-sig") as handle:
        return any(line.strip() for line in handle)


def _stream_lines(path: Path) -> Iterator[Row | RejectedRow]:
    builder = RowBuilder()
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue

            origin = f"{path.name} line {number}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                yield _bad_json_row(origin, error)
                continue

            yield from read_entry(item, origin, builder)


def _bad_json_row(origin: str, error: json.JSONDecodeError) -> RejectedRow:
    return RejectedRow(
        origin=origin,
        reason=RejectReason.BAD_JSON,
        message=(
            f"{origin}: the line is not valid JSON ({error.msg} at column "
            f"{error.colno}); each line must be one complete JSON object."
        ),
    )


def read_entry(
    item: object, origin: str, builder: RowBuilder
) -> Iterator[Row | RejectedRow]:
    """Yield the rows of one entry object in the nested or the flat shape."""
    if not isinstance(item, dict):
        yield _not_an_entry_row(origin, item)
        return

    definitions_key = _definitions_key(item)
    entry = {key: value for key, value in item.items() if key != definitions_key}
    fields = map_object_keys(entry, origin)
    if isinstance(fields, RejectedRow):
        yield fields
        return

    if definitions_key is None:
        yield builder.build(fields, origin)
        return

    yield from _read_nested(fields, item[definitions_key], origin, builder)


def _definitions_key(item: Mapping[str, object]) -> str | None:
    for key in item:
        if key.strip().lower() in DEFINITIONS_KEYS:
            return key

    return None


def _not_an_entry_row(origin: str, item: object) -> RejectedRow:
    preview = repr(item)
    if len(preview) > 60:
        preview = preview[:57] + "..."

    return RejectedRow(
        origin=origin,
        reason=RejectReason.NOT_AN_ENTRY,
        message=(
            f"{origin}: expected an entry object, found {type(item).__name__} "
            f"{preview}; the item is skipped."
        ),
    )


def _read_nested(
    entry: dict[str, object],
    definitions: object,
    origin: str,
    builder: RowBuilder,
) -> Iterator[Row | RejectedRow]:
    if not isinstance(definitions, list):
        yield RejectedRow(
            origin=origin,
            reason=RejectReason.BAD_VALUE,
            message=(
                f"{origin}: definitions must be a list, found "
                f"{type(definitions).__name__}; the entry is skipped."
            ),
        )
        return

    word_only = {k: v for k, v in entry.items() if k not in _DEFINITION_FIELDS}
    if not definitions:
        yield builder.build(word_only, origin)
        return

    for position, definition in enumerate(definitions, start=1):
        definition_origin = f"{origin} definition {position}"
        fields = _definition_fields(definition, position, definition_origin)
        if isinstance(fields, RejectedRow):
            yield fields
            continue

        yield builder.build({**word_only, **fields}, definition_origin)


def _definition_fields(
    definition: object, position: int, origin: str
) -> dict[str, object] | RejectedRow:
    if isinstance(definition, str):
        return {"definition_id": position, "definition": definition}

    if not isinstance(definition, dict):
        return RejectedRow(
            origin=origin,
            reason=RejectReason.BAD_VALUE,
            message=(
                f"{origin}: a definition must be an object or a string, found "
                f"{type(definition).__name__} {definition!r}."
            ),
        )

    fields = map_object_keys(definition, origin)
    if isinstance(fields, RejectedRow):
        return fields

    fields = {k: v for k, v in fields.items() if k in _DEFINITION_FIELDS}
    fields.setdefault("definition", "")
    if fields.get("definition_id") is None:
        fields["definition_id"] = position

    return fields
