"""Format detection and the single entry point that reads any dictionary.

``detect_format`` decides by content first and by extension second:

1. A folder is ``mw`` (a folder of Merriam-Webster responses).
2. A file that starts with the SQLite header is ``sqlite``, whatever its name.
3. ``.csv`` is ``csv``; ``.tsv`` and ``.tab`` are ``tsv``; ``.jsonl`` and
   ``.ndjson`` are ``jsonl``; ``.txt`` and ``.lst`` are ``wordlist``.
4. ``.json`` is ``mw`` when its list contains Merriam-Webster entries (objects
   with ``meta`` and ``hwi`` or ``shortdef``) or "did you mean" strings. It
   is ``jsonl`` when it starts with two objects, else ``json``.
5. Any other name is judged by its first line: ``[`` is JSON as in step 4,
   ``{`` is ``jsonl``, a tab means ``tsv``, a comma and a known column name
   mean ``csv``, and other UTF-8 text is a ``wordlist``.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

from esl_assets.errors import DictionaryError
from esl_assets.inputs.common import canonical_field
from esl_assets.inputs.delimited import read_delimited
from esl_assets.inputs.jsonfile import read_json, read_jsonl
from esl_assets.inputs.mw import mw_files, read_mw
from esl_assets.inputs.sqlite import SQLITE_MAGIC, read_sqlite
from esl_assets.inputs.wordlist import read_wordlist
from esl_assets.rows import RejectedRow, Row

logger = logging.getLogger(__name__)

#: Every value ``detect_format`` returns and ``read_dictionary`` accepts.
FORMATS = ("sqlite", "csv", "tsv", "json", "jsonl", "mw", "wordlist")

_EXTENSION_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".txt": "wordlist",
    ".lst": "wordlist",
}
_SQLITE_EXTENSIONS = frozenset({".sqlite", ".sqlite3", ".db"})
_SNIFF_BYTES = 64 * 1024
_META_KEY = re.compile(r'(?<!\\)"meta"\s*:')
_ENTRY_KEY = re.compile(r'(?<!\\)"(?:hwi|shortdef)"\s*:')


def detect_format(path: Path) -> str:
    """Return the format of the dictionary at ``path``, one of ``FORMATS``.

    Raises DictionaryError, naming the path, what was found and the supported
    formats, when the path is missing, unreadable, empty or not recognised.
    """
    if path.is_dir():
        mw_files(path)
        return "mw"

    head = _read_head(path)
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"

    suffix = path.suffix.lower()
    if suffix in _SQLITE_EXTENSIONS:
        raise _unknown_format(path, f"a {suffix} file without the SQLite header")

    if suffix in _EXTENSION_FORMATS:
        return _EXTENSION_FORMATS[suffix]

    text = _decode_head(path, head)
    if suffix == ".json":
        return _json_flavour(text)

    return _sniff_text(path, text)


def read_dictionary(
    path: Path, format: str | None = None
) -> Iterator[Row | RejectedRow]:
    """Return a stream of the rows of the dictionary at ``path``.

    ``format`` is one of ``FORMATS``, or None to call ``detect_format``.
    Problems with the whole file (missing, unreadable, undecodable, a missing
    required column) raise DictionaryError before the first row. Problems
    with one row become a ``RejectedRow`` and reading goes on.
    """
    if not path.exists():
        raise DictionaryError(f"Dictionary {path} does not exist.")

    if format is None:
        format = detect_format(path)
    elif format not in FORMATS:
        raise DictionaryError(
            f"Unknown dictionary format {format!r} for {path}; supported "
            f"formats: {', '.join(FORMATS)}."
        )

    if path.is_dir() and format != "mw":
        raise DictionaryError(
            f"Dictionary {path} is a folder, which only the mw format reads; "
            f"give a file for the {format} format."
        )

    logger.info("Reading dictionary %s as %s", path, format)
    return _READERS[format](path)


def _read_csv(path: Path) -> Iterator[Row | RejectedRow]:
    return read_delimited(path, ",")


def _read_tsv(path: Path) -> Iterator[Row | RejectedRow]:
    return read_delimited(path, "\t")


_READERS = {
    "sqlite": read_sqlite,
    "csv": _read_csv,
    "tsv": _read_tsv,
    "json": read_json,
    "jsonl": read_jsonl,
    "mw": read_mw,
    "wordlist": read_wordlist,
}


def _read_head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except FileNotFoundError as error:
        raise DictionaryError(f"Dictionary {path} does not exist.") from error
    except OSError as error:
        raise DictionaryError(
            f"Cannot open dictionary {path}: {error.strerror}."
        ) from error

    if not head.strip():
        raise _unknown_format(path, "an empty file")

    return head


def _decode_head(path: Path, head: bytes) -> str:
    # The sniffed bytes may end inside a multi-byte character, which an
    # incremental decoder without ``final`` leaves pending instead of failing.
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        text = decoder.decode(head)
    except UnicodeDecodeError as error:
        byte = head[error.start]
        found = f"binary or non-UTF-8 data (byte 0x{byte:02x} at offset {error.start})"
        raise _unknown_format(path, found) from error

    if "\x00" in text:
        raise _unknown_format(path, "binary data (NUL bytes in the first 64 KiB)")

    return text.removeprefix("\ufeff")


def _json_flavour(text: str) -> str:
    """Return ``mw``, ``json`` or ``jsonl`` for a document starting with ``text``."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return "jsonl" if _has_second_object(stripped) else "json"

    if not stripped.startswith("["):
        return "json"

    rest = stripped[1:].lstrip()
    if rest.startswith('"'):
        return "mw"

    try:
        first, _ = json.JSONDecoder().raw_decode(rest)
    except json.JSONDecodeError:
        # The first item is longer than the sniffed text: look for MW keys.
        if _META_KEY.search(rest) and _ENTRY_KEY.search(rest):
            return "mw"
        return "json"

    if isinstance(first, dict) and "meta" in first:
        if "hwi" in first or "shortdef" in first:
            return "mw"

    return "json"


def _has_second_object(text: str) -> bool:
    """Return whether another JSON object follows the first one in ``text``."""
    try:
        _, end = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError:
        return False

    return text[end:].lstrip().startswith("{")


def _sniff_text(path: Path, text: str) -> str:
    stripped = text.lstrip()
    if stripped.startswith("["):
        return _json_flavour(stripped)

    if stripped.startswith("{"):
        return "jsonl"

    first_line = stripped.splitlines()[0]
    if "\t" in first_line:
        return "tsv"

    names = first_line.split(",")
    if len(names) > 1 and any(canonical_field(name) == "word" for name in names):
        return "csv"

    return "wordlist"


def _unknown_format(path: Path, found: str) -> DictionaryError:
    return DictionaryError(
        f"Cannot read dictionary {path}: found {found}. Supported formats: "
        "SQLite (.sqlite, .db), CSV (.csv), TSV (.tsv), JSON (.json), "
        "JSON Lines (.jsonl), Merriam-Webster API responses (.json file or "
        "folder) and word lists (.txt)."
    )
