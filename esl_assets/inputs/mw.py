"""Merriam-Webster Learner's Dictionary API responses.

The input is one saved response (a JSON list) or a folder of them (every
``*.json`` file in it, in name order). Each list item that is an entry object
gives one row per ``shortdef`` string, or one word-only row when ``shortdef``
is empty:

- uuid: ``meta.uuid``;
- word: ``hwi.hw`` without the ``*`` syllable marks (``run*ning`` gives
  ``running``), else ``meta.id`` before its ``:N`` homograph number;
- pos: ``fl``; definition ids: 1 to n in ``shortdef`` order;
- flags: ``meta.offensive`` sets bit 1. ``sls`` labels anywhere in the
  entry's ``def`` section set bit 2 (``British``), 4 (``US``) or 8
  (``old-fashioned``), but phrase senses under ``dros`` are not counted.

Items that are strings are the API's "did you mean" suggestions for an
unknown word and are rejected as ``not_an_entry``. In a folder, a file that
is not valid JSON is rejected as ``bad_json`` and the other files are read,
but a single file that is not valid JSON raises DictionaryError.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from esl_assets.errors import DictionaryError
from esl_assets.inputs.common import RejectReason, RowBuilder
from esl_assets.inputs.jsonfile import load_json
from esl_assets.rows import (
    FLAG_BRITISH,
    FLAG_OFFENSIVE,
    FLAG_OLD_FASHIONED,
    FLAG_US,
    RejectedRow,
    Row,
)

# Words of an ``sls`` label (lowercased) that set a flag bit. Labels combine
# words, as in "chiefly British" or "US, informal".
_LABEL_FLAGS = {
    "british": FLAG_BRITISH,
    "brit": FLAG_BRITISH,
    "us": FLAG_US,
    "old-fashioned": FLAG_OLD_FASHIONED,
}
_LABEL_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")


def mw_files(path: Path) -> list[Path]:
    """Return the response files of a folder, raising DictionaryError if none."""
    files = sorted(
        child
        for child in path.iterdir()
        if child.is_file() and child.suffix.lower() == ".json"
    )
    if not files:
        raise DictionaryError(
            f"Folder {path} contains no .json files; expected saved "
            "Merriam-Webster API responses such as cat.json."
        )

    return files


def read_mw(path: Path) -> Iterator[Row | RejectedRow]:
    """Return a stream of the rows of a Merriam-Webster response file or folder.

    Raises DictionaryError at once when a single file is not a JSON list or a
    folder has no ``.json`` file.
    """
    if path.is_dir():
        return _stream_folder(mw_files(path))

    return _read_response(path, _load_response(path), RowBuilder())


def _stream_folder(files: list[Path]) -> Iterator[Row | RejectedRow]:
    builder = RowBuilder()
    for file in files:
        try:
            response = _load_response(file)
        except DictionaryError as error:
            yield RejectedRow(
                origin=file.name,
                reason=RejectReason.BAD_JSON,
                message=f"{file.name}: {error} The file is skipped.",
            )
            continue

        yield from _read_response(file, response, builder)


def _load_response(path: Path) -> list[object]:
    response = load_json(path)
    if not isinstance(response, list):
        raise DictionaryError(
            f"Merriam-Webster response {path} contains a JSON "
            f"{type(response).__name__}; expected the API's list of entries."
        )

    return response


def _read_response(
    path: Path, response: list[object], builder: RowBuilder
) -> Iterator[Row | RejectedRow]:
    for number, item in enumerate(response, start=1):
        origin = f"{path.name} item {number}"
        entry = item if isinstance(item, dict) else None
        meta = entry.get("meta") if entry is not None else None
        if entry is None or not isinstance(meta, dict):
            yield _not_an_entry_row(origin, item)
            continue

        origin = f"{origin} ({meta.get('id', '?')})"
        yield from _read_entry(entry, meta, origin, builder)


def _not_an_entry_row(origin: str, item: object) -> RejectedRow:
    if isinstance(item, str):
        found = f"the suggestion {item!r}"
    else:
        found = f"a JSON {type(item).__name__} without 'meta'"

    return RejectedRow(
        origin=origin,
        reason=RejectReason.NOT_AN_ENTRY,
        message=(
            f"{origin}: found {found}, not a dictionary entry; the API returns "
            "suggestions when it does not know the word. The item is skipped."
        ),
    )


def _read_entry(
    entry: Mapping[str, object],
    meta: Mapping[str, object],
    origin: str,
    builder: RowBuilder,
) -> Iterator[Row | RejectedRow]:
    fields: dict[str, object] = {
        "uuid": meta.get("uuid"),
        "word": headword(entry),
        "pos": entry.get("fl"),
        "flags": entry_flags(entry),
    }
    shortdefs = entry.get("shortdef")
    if not isinstance(shortdefs, list) or not shortdefs:
        yield builder.build(fields, origin)
        return

    for number, shortdef in enumerate(shortdefs, start=1):
        definition = {"definition_id": number, "definition": shortdef}
        yield builder.build({**fields, **definition}, f"{origin} shortdef {number}")


def headword(entry: Mapping[str, object]) -> str | None:
    """Return the entry's headword: ``hwi.hw`` without ``*``, else ``meta.id``."""
    hwi = entry.get("hwi")
    if isinstance(hwi, dict) and isinstance(hwi.get("hw"), str):
        return str(hwi["hw"]).replace("*", "")

    meta = entry.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("id"), str):
        return str(meta["id"]).split(":", 1)[0]

    return None


def entry_flags(entry: Mapping[str, object]) -> int:
    """Return the flag bits of an entry from ``meta.offensive`` and its labels."""
    flags = 0
    meta = entry.get("meta")
    if isinstance(meta, dict) and meta.get("offensive") is True:
        flags |= FLAG_OFFENSIVE

    sections = {"sls": entry.get("sls"), "def": entry.get("def")}
    for label in _labels(sections):
        for word in _LABEL_WORD.findall(label.lower()):
            flags |= _LABEL_FLAGS.get(word, 0)

    return flags


def _labels(node: object) -> Iterator[str]:
    """Yield every string in ``sls`` lists anywhere under ``node``."""
    if isinstance(node, list):
        for child in node:
            yield from _labels(child)
    elif isinstance(node, dict):
        for key, child in node.items():
            if key == "sls" and isinstance(child, list):
                yield from (label for label in child if isinstance(label, str))
            else:
                yield from _labels(child)
