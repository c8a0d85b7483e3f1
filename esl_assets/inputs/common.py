"""Field names, value checks and duplicate detection shared by every reader.

Every reader turns one record of its format into a mapping from canonical
field names to raw values. The fields are ``uuid``, ``word``, ``pos``,
``level``, ``flags``, ``offensive``, ``definition_id``, ``definition`` and
``example``. A ``RowBuilder`` turns the mapping into a row by the same rules
for all formats:

- Words, definitions and examples go through ``clean_text``. A definition
  that is empty after clean-up is still a ``Row``; the planner skips it.
- A missing ``uuid`` field is derived from the word and part of speech with
  ``stable_uuid``. A ``uuid`` field that is present but empty, or that fails
  ``check_id`` (``../escape``, ``a/b``), is rejected as ``unsafe_id``.
- Definition ids: integers (``12``, ``"012"``, ``12.0``) become their decimal
  form (``"12"``). Any other text is kept as written when it passes
  ``check_id``, because ids only have to be safe in file names, so ``x9020``
  is a valid id and ``../1`` is rejected as ``unsafe_id``. A definition
  without an id gets the next number for its uuid, counted from 1 in reading
  order. If that number is also given explicitly to another definition of
  the uuid, the later of the two is rejected as a duplicate.
- The first of two definitions with the same uuid and the same definition id,
  or the same uuid and the same non-empty clean text, is kept and the later
  one is rejected as ``duplicate``, with a message that names both rows. Two
  word-only rows with the same uuid are duplicates too. A definition that is
  empty after clean-up is the exception. A later row with the same uuid and
  definition id and a non-empty definition passes as well, and the planner
  plans it in place of the empty one. The builder remembers a 64-bit hash of
  each key, and the origin of the rows with an empty definition.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import uuid as uuid_module
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from esl_assets.errors import DictionaryError
from esl_assets.rows import FLAG_OFFENSIVE, RejectedRow, Row, check_id
from esl_assets.text import clean_text, normalize_pos


class RejectReason(StrEnum):
    """Machine-readable reason in ``RejectedRow.reason``."""

    #: The uuid or definition id is empty or cannot be part of a file name.
    UNSAFE_ID = "unsafe_id"
    #: The definition id is neither text nor an integer (a list, true, 1.5).
    BAD_ID = "bad_id"
    #: The word is missing or empty after clean-up.
    EMPTY_WORD = "empty_word"
    #: A field has a value of the wrong kind, such as ``flags`` = ``"high"``.
    BAD_VALUE = "bad_value"
    #: An earlier row has the same uuid and definition id or definition text.
    DUPLICATE = "duplicate"
    #: A CSV or TSV row has more or fewer fields than the header.
    BAD_FIELD_COUNT = "bad_field_count"
    #: The csv module could not parse a record (for example, an oversized field).
    BAD_CSV = "bad_csv"
    #: A JSON Lines line or a file in a Merriam-Webster folder is not valid JSON.
    BAD_JSON = "bad_json"
    #: A JSON item is not an entry object (MW "did you mean" strings, numbers).
    NOT_AN_ENTRY = "not_an_entry"
    #: An object names one field twice under two aliases (``pos`` and ``fl``).
    AMBIGUOUS_FIELD = "ambiguous_field"
    #: A SQLite ``shortdef`` row whose uuid has no ``words`` row.
    ORPHAN_DEFINITION = "orphan_definition"


#: Accepted column and key names per canonical field, compared after
#: ``normalize_field_name``. The first name is the one error messages show.
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "uuid": ("uuid", "entry_id", "entry_uuid"),
    "definition_id": ("id", "def_id", "definition_id", "shortdef_id"),
    "word": ("word", "headword", "hw"),
    "pos": ("pos", "functional_label", "fl", "part_of_speech"),
    "definition": ("definition", "shortdef", "def", "text", "gloss"),
    "level": ("level", "cefr", "cefr_level"),
    "example": ("example",),
    "flags": ("flags",),
    "offensive": ("offensive",),
}

_ALIAS_TO_FIELD = {
    alias: field for field, aliases in FIELD_ALIASES.items() for alias in aliases
}
_FIELD_NAME_SEPARATORS = re.compile(r"[\s\-]+")
_TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
_FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", ""})
_UTF8_CHUNK_BYTES = 1 << 20
_ID_ADVICE = "ids become file names, so fix the id in the dictionary"


def normalize_field_name(name: str) -> str:
    """Return ``name`` lowercased with spaces and hyphens as ``_``."""
    return _FIELD_NAME_SEPARATORS.sub("_", name.strip().lower())


def canonical_field(name: str) -> str | None:
    """Return the canonical field for a column or key name, or None."""
    return _ALIAS_TO_FIELD.get(normalize_field_name(name))


def describe_fields() -> str:
    """Return the accepted column names for error messages."""
    parts = []
    for field, aliases in FIELD_ALIASES.items():
        required = " (required)" if field == "word" else ""
        parts.append(f"{field}{required}: {'/'.join(aliases)}")
    return "; ".join(parts)


def stable_uuid(word: str, pos: str | None) -> str:
    """Return the entry id of ``word`` as ``pos`` when a file has no uuid.

    The id is ``uuid5(NAMESPACE_URL, "esl-sample:" + word + ":" + pos)`` with
    the full part-of-speech label (``noun``, not ``n.``), or with an empty
    label for a bare word. The bundled sample dictionaries were built with the
    same rule, so a word list reproduces their uuids.
    """
    name = f"esl-sample:{word}:{pos or ''}"
    return str(uuid_module.uuid5(uuid_module.NAMESPACE_URL, name))


def check_utf8(path: Path) -> None:
    """Raise DictionaryError unless ``path`` is entirely valid UTF-8.

    Readers call this before their first row, so an undecodable byte deep in
    a large file stops the run before any job exists. The file is read in
    1 MiB chunks, so memory stays flat.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    newlines = 0
    with _open_binary(path) as handle:
        while chunk := handle.read(_UTF8_CHUNK_BYTES):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                bad_offset = offset + error.start
                line = newlines + chunk.count(b"\n", 0, error.start) + 1
                bad_byte = chunk[error.start]
                raise _not_utf8_error(path, bad_byte, bad_offset, line) from None

            offset += len(chunk)
            newlines += chunk.count(b"\n")

        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise _not_utf8_error(path, None, offset, newlines + 1) from None


def _open_binary(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as error:
        raise DictionaryError(
            f"Cannot open dictionary {path}: {error.strerror}."
        ) from error


def _not_utf8_error(
    path: Path, byte: int | None, offset: int, line: int
) -> DictionaryError:
    with path.open("rb") as handle:
        start = handle.read(2)

    if start in (b"\xff\xfe", b"\xfe\xff"):
        found = "UTF-16 text (it starts with a UTF-16 byte-order mark)"
    elif byte is None:
        found = f"a truncated UTF-8 character at the end (byte offset {offset})"
    else:
        found = f"byte 0x{byte:02x} at line {line} (byte offset {offset})"

    return DictionaryError(
        f"Dictionary {path} is not UTF-8 text: found {found}. "
        "Save the file as UTF-8 and run again."
    )


class _RowProblem(Exception):
    """Raised inside RowBuilder to turn the current record into a RejectedRow."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class RowBuilder:
    """Turns canonical field mappings into checked, cleaned, de-duplicated rows.

    One builder serves one input, because duplicate detection and automatic
    definition numbers are per input.
    """

    def __init__(self) -> None:
        self._seen_keys: set[int] = set()
        #: Origin of each row with an empty definition, by its key's hash, so
        #: that a message about a later empty row names it. Keeping the
        #: origin of every row cost about 100 bytes per row (10 MiB more to
        #: plan 100,000 CSV rows), so other repeats name "an earlier row".
        self._empty_origins: dict[int, str] = {}
        self._next_auto_id: dict[int, int] = {}

    def build(self, fields: Mapping[str, object], origin: str) -> Row | RejectedRow:
        """Return the Row for ``fields``, or a RejectedRow naming the problem."""
        uuid = _raw_text(fields.get("uuid")) if "uuid" in fields else None
        try:
            row = self._build_row(fields, origin)
        except _RowProblem as problem:
            return RejectedRow(
                origin=origin,
                reason=problem.reason,
                message=f"{origin}: {problem.message}.",
                uuid=uuid,
                definition_id=_raw_text(fields.get("definition_id")),
            )

        duplicate = self._find_duplicate(row)
        if duplicate is not None:
            return RejectedRow(
                origin=origin,
                reason=RejectReason.DUPLICATE,
                message=f"{origin}: {duplicate}.",
                uuid=row.uuid,
                definition_id=row.definition_id,
            )

        return row

    def _build_row(self, fields: Mapping[str, object], origin: str) -> Row:
        word = _clean_field(fields, "word")
        if not word:
            raise _RowProblem(
                RejectReason.EMPTY_WORD,
                f"the word is missing or empty (value {fields.get('word')!r})",
            )

        pos = normalize_pos(_clean_field(fields, "pos"))
        uuid = _entry_id(fields, word, pos)
        definition_id = self._definition_id(fields, uuid)
        definition = None
        if definition_id is not None:
            definition = _clean_field(fields, "definition") or ""

        return Row(
            uuid=uuid,
            word=word,
            pos=pos,
            level=_clean_field(fields, "level"),
            flags=_flags(fields),
            definition_id=definition_id,
            definition=definition,
            example=_clean_field(fields, "example"),
            origin=origin,
        )

    def _definition_id(self, fields: Mapping[str, object], uuid: str) -> str | None:
        """Return the row's definition id, or None for a word-only row.

        A row is word-only when it has no definition field, or when both its
        definition and its definition id are empty.
        """
        if "definition" not in fields:
            return None

        definition_id = _parse_definition_id(fields.get("definition_id"))
        if definition_id is None and _has_definition(fields):
            definition_id = self._assign_definition_id(uuid)

        return definition_id

    def _assign_definition_id(self, uuid: str) -> str:
        key = _hash_key("auto", uuid)
        number = self._next_auto_id.get(key, 1)
        self._next_auto_id[key] = number + 1
        return str(number)

    def _find_duplicate(self, row: Row) -> str | None:
        """Return why ``row`` repeats an earlier row, or None and remember it."""
        uuid = row.uuid
        definition_id = row.definition_id
        empty_key = None
        if definition_id is None:
            checks = [("word", _hash_key("word", uuid))]
            claimed = [key for _, key in checks]
        elif row.definition:
            checks = [
                ("id", _hash_key("id", uuid, definition_id)),
                ("text", _hash_key("text", uuid, row.definition)),
            ]
            claimed = [key for _, key in checks]
        else:
            # An empty definition claims its ids only against other empty
            # ones, so a later row with text for the same ids passes, and the
            # planner plans that row in place of this one.
            empty_key = _hash_key("empty", uuid, definition_id)
            checks = [("id", _hash_key("id", uuid, definition_id)), ("id", empty_key)]
            claimed = [empty_key]

        for repeated, key in checks:
            if key in self._seen_keys:
                earlier = self._empty_origins.get(key, "an earlier row")
                return _duplicate_message(row, repeated, earlier)

        self._seen_keys.update(claimed)
        if empty_key is not None:
            self._empty_origins[empty_key] = row.origin
        return None


def _duplicate_message(row: Row, repeated: str, earlier: str) -> str:
    """Say which part of ``row`` repeats the ``earlier`` row, which is kept."""
    if repeated == "word":
        return (
            f"uuid {row.uuid!r} repeats the uuid of {earlier}, which also has no "
            "definition and is kept"
        )
    return (
        f"uuid {row.uuid!r} definition id {row.definition_id!r} repeats the uuid "
        f"and definition {repeated} of {earlier}, which is kept"
    )


def _hash_key(*parts: str) -> int:
    data = "\x1f".join(parts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _raw_text(value: object) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None

    return str(value)


def _text_value(fields: Mapping[str, object], field: str) -> str | None:
    value = fields.get(field)
    if value is None:
        return None

    if isinstance(value, str):
        return value

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)

    raise _RowProblem(
        RejectReason.BAD_VALUE,
        f"{field} must be text, found {type(value).__name__} {value!r}",
    )


def _clean_field(fields: Mapping[str, object], field: str) -> str | None:
    value = _text_value(fields, field)
    if value is None:
        return None

    cleaned = clean_text(value)
    if field != "definition" and not cleaned:
        return None

    return cleaned


def _has_definition(fields: Mapping[str, object]) -> bool:
    value = fields.get("definition")
    if isinstance(value, str):
        return bool(value.strip())

    return value is not None


def _entry_id(fields: Mapping[str, object], word: str, pos: str | None) -> str:
    if "uuid" not in fields:
        return stable_uuid(word, pos)

    value = _text_value(fields, "uuid")
    uuid = (value or "").strip()
    problem = check_id(uuid, field="uuid")
    if problem is not None:
        raise _RowProblem(RejectReason.UNSAFE_ID, f"{problem}; {_ID_ADVICE}")

    return uuid


def _parse_definition_id(value: object) -> str | None:
    if value is None:
        return None

    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _RowProblem(
            RejectReason.BAD_ID,
            f"definition id must be text or an integer, found {value!r}",
        )

    if isinstance(value, float):
        if not value.is_integer():
            raise _RowProblem(
                RejectReason.BAD_ID, f"definition id {value!r} is not an integer"
            )
        value = int(value)

    text = str(value).strip()
    if not text:
        return None

    if text.isascii() and text.isdigit():
        return str(int(text))

    problem = check_id(text, field="definition id")
    if problem is not None:
        raise _RowProblem(RejectReason.UNSAFE_ID, f"{problem}; {_ID_ADVICE}")

    return text


def _flags(fields: Mapping[str, object]) -> int:
    flags = _integer_flags(fields.get("flags"))
    if _is_offensive(fields.get("offensive")):
        flags |= FLAG_OFFENSIVE

    return flags


def _integer_flags(value: object) -> int:
    if value is None:
        return 0

    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value

    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0
        if text.isascii() and text.isdigit():
            return int(text)

    raise _RowProblem(
        RejectReason.BAD_VALUE,
        f"flags must be a non-negative integer such as 0 or 1, found {value!r}",
    )


def _is_offensive(value: object) -> bool:
    if value is None:
        return False

    if isinstance(value, bool):
        return value

    if isinstance(value, int) and value in (0, 1):
        return bool(value)

    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False

    raise _RowProblem(
        RejectReason.BAD_VALUE,
        f"offensive must be true/false, yes/no or 1/0, found {value!r}",
    )


def map_object_keys(
    record: Mapping[str, object], origin: str
) -> dict[str, object] | RejectedRow:
    """Return ``record`` keyed by canonical field, dropping unknown keys.

    Returns a RejectedRow when two keys name the same field (``pos`` and
    ``fl``), because either choice could be the wrong one.
    """
    fields: dict[str, object] = {}
    sources: dict[str, str] = {}
    for key, value in record.items():
        field = canonical_field(key)
        if field is None:
            continue

        if field in sources:
            return RejectedRow(
                origin=origin,
                reason=RejectReason.AMBIGUOUS_FIELD,
                message=(
                    f"{origin}: keys {sources[field]!r} and {key!r} both set "
                    f"{field}; keep one of them"
                ),
            )

        sources[field] = key
        fields[field] = value

    return fields


def resolve_columns(header: Iterable[str], path: Path) -> dict[str, int]:
    """Return the column index of each canonical field in ``header``.

    Raises DictionaryError when the word column is missing or two columns
    name the same field, listing the columns found and the accepted names.
    """
    columns: dict[str, int] = {}
    names = list(header)
    for index, name in enumerate(names):
        field = canonical_field(name)
        if field is None:
            continue

        if field in columns:
            raise DictionaryError(
                f"Dictionary {path} has two columns for {field}: "
                f"{names[columns[field]]!r} and {name!r}. Rename or remove one."
            )

        columns[field] = index

    if "word" not in columns:
        raise DictionaryError(_missing_word_message(path, names))

    return columns


def _missing_word_message(path: Path, names: list[str]) -> str:
    found = ", ".join(repr(name) for name in names) or "none"
    message = (
        f"Dictionary {path} has no word column. Found columns: {found}. "
        f"Expected columns: {describe_fields()}."
    )
    if any("\x00" in name for name in names):
        message += " The header contains NUL bytes: save the file as UTF-8."

    return message
