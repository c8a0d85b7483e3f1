"""CSV and TSV dictionaries with a header row.

The file is UTF-8, with or without a byte-order mark, and is parsed by the
``csv`` module with its default (Excel) quoting, so quoted fields may contain
the delimiter, ``""``, CR, LF and NUL (Python 3.11's ``csv`` accepts NUL).
Column names are matched through ``FIELD_ALIASES`` ignoring case, and only
the word column is required: without a definition column every row is
word-only, and without a uuid column the uuid is derived from the word and
part of speech. Other columns are ignored.

A row whose field count differs from the header's is rejected as
``bad_field_count``, because a reader that mapped it anyway would put text
under the wrong column. Blank lines and rows whose fields are all empty are
skipped.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from esl_assets.errors import DictionaryError
from esl_assets.inputs.common import (
    RejectReason,
    RowBuilder,
    check_utf8,
    resolve_columns,
)
from esl_assets.rows import RejectedRow, Row

if TYPE_CHECKING:
    from _csv import Reader as _CsvReader

logger = logging.getLogger(__name__)


def read_delimited(path: Path, delimiter: str) -> Iterator[Row | RejectedRow]:
    """Return a stream of the rows of a CSV (``","``) or TSV (``"\\t"``) file.

    Raises DictionaryError at once when the file is missing, empty, not
    UTF-8, or has no word column. The header is read again by the stream.
    """
    check_utf8(path)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        header = _read_header(csv.reader(handle, delimiter=delimiter), path)

    columns = resolve_columns(header, path)
    logger.debug("Columns of %s: %s", path, columns)
    return _stream_rows(path, delimiter, len(header), columns)


def _stream_rows(
    path: Path, delimiter: str, header_size: int, columns: dict[str, int]
) -> Iterator[Row | RejectedRow]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        _read_header(reader, path)
        try:
            yield from _read_records(reader, path, header_size, columns)
        except UnicodeDecodeError as error:
            # check_utf8 passed, so the file changed while it was being read.
            raise DictionaryError(
                f"Dictionary {path} stopped being valid UTF-8 near line "
                f"{reader.line_num}: {error.reason}."
            ) from error


def _read_records(
    reader: _CsvReader, path: Path, header_size: int, columns: dict[str, int]
) -> Iterator[Row | RejectedRow]:
    builder = RowBuilder()
    record_end = reader.line_num
    while True:
        record_start = record_end + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            record_end = reader.line_num
            yield _csv_error_row(path, record_start, error)
            continue

        record_end = reader.line_num
        if not any(field.strip() for field in record):
            continue

        origin = f"{path.name} line {record_start}"
        if len(record) != header_size and record_end > record_start:
            yield _unclosed_quote_row(origin, record_start, record_end, record, columns)
            continue
        if len(record) != header_size:
            yield _field_count_row(origin, record, header_size, columns)
            continue

        fields = {field: record[index] for field, index in columns.items()}
        yield builder.build(fields, origin)


def _read_header(reader: _CsvReader, path: Path) -> list[str]:
    for record in reader:
        if any(field.strip() for field in record):
            return record

    raise DictionaryError(
        f"Dictionary {path} is empty: expected a header row such as "
        "'uuid,word,pos,level,id,definition,example' followed by data rows."
    )


def _csv_error_row(path: Path, line: int, error: csv.Error) -> RejectedRow:
    origin = f"{path.name} line {line}"
    return RejectedRow(
        origin=origin,
        reason=RejectReason.BAD_CSV,
        message=f"{origin}: the record cannot be parsed as CSV: {error}.",
    )


def _field_count_row(
    origin: str, record: list[str], header_size: int, columns: dict[str, int]
) -> RejectedRow:
    return RejectedRow(
        origin=origin,
        reason=RejectReason.BAD_FIELD_COUNT,
        message=(
            f"{origin}: the row has {len(record)} fields but the header has "
            f"{header_size}; quote fields that contain the delimiter and add "
            f"empty fields for missing values (row starts {record[:3]!r})."
        ),
        uuid=_cell(record, columns, "uuid"),
        definition_id=_cell(record, columns, "definition_id"),
    )


def _unclosed_quote_row(
    origin: str, start: int, end: int, record: list[str], columns: dict[str, int]
) -> RejectedRow:
    # A quoted field may hold line breaks, so a quote that is never closed
    # takes the following lines into this row, and their rows are lost.
    # NOTE: when the swallowed text leaves the row with as many fields as the
    # header (an unclosed quote in the last column), the row is accepted.
    return RejectedRow(
        origin=origin,
        reason=RejectReason.BAD_CSV,
        message=(
            f"{origin}: a quoted field is not closed, so lines {start} to {end} "
            f"were read as one row of {len(record)} fields and the rows on "
            "them were not read. Close the quote, or write a quote inside a "
            'quoted field as "", then run again.'
        ),
        uuid=_cell(record, columns, "uuid"),
        definition_id=_cell(record, columns, "definition_id"),
    )


def _cell(record: list[str], columns: dict[str, int], field: str) -> str | None:
    """Return the field's cell when the short or long row still has it."""
    index = columns.get(field)
    if index is None or index >= len(record):
        return None

    return record[index]
