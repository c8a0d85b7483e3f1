"""One test per adversarial row of tests/data/bad-rows.csv.

The file has a header and 20 rows with definition ids 9001 to 9019 and
``x9020``; its extra ``why`` column describes what each row tests. Rows come back
as ``Row`` keyed by definition id, rejections keyed by definition id too.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from esl_assets.inputs import RejectReason, read_dictionary
from esl_assets.rows import RejectedRow, Row

BAD_ROWS = Path(__file__).parent / "data" / "bad-rows.csv"
WATER_UUID = "b371e6bc-10de-52fd-8df8-7b5f4d253dc4"


@pytest.fixture(scope="module")
def items() -> list[Row | RejectedRow]:
    return list(read_dictionary(BAD_ROWS))


@pytest.fixture(scope="module")
def rows(items: list[Row | RejectedRow]) -> dict[str, Row]:
    return {item.definition_id or "": item for item in items if isinstance(item, Row)}


@pytest.fixture(scope="module")
def rejected(items: list[Row | RejectedRow]) -> dict[str, RejectedRow]:
    return {
        item.definition_id or "": item
        for item in items
        if isinstance(item, RejectedRow)
    }


def test_bad_rows_totals(
    items: list[Row | RejectedRow],
    rows: dict[str, Row],
    rejected: dict[str, RejectedRow],
) -> None:
    assert len(items) == 20
    assert len(rows) == 15
    assert set(rejected) == {"9012", "9013", "9014", "9015", "9019"}


def test_bad_rows_stream_goes_on(items: list[Row | RejectedRow]) -> None:
    last = items[-1]
    assert isinstance(last, Row)
    assert last.definition_id == "x9020"


def test_empty_definition_is_row(rows: dict[str, Row]) -> None:
    assert rows["9001"].definition == ""
    assert rows["9001"].uuid == WATER_UUID


def test_whitespace_definition_is_empty_row(rows: dict[str, Row]) -> None:
    assert rows["9002"].definition == ""


def test_markup_only_definition_is_empty_row(rows: dict[str, Row]) -> None:
    assert rows["9003"].definition == ""
    assert rows["9003"].word == "run"


def test_definition_of_4096_characters(rows: dict[str, Row]) -> None:
    definition = rows["9004"].definition or ""
    assert len(definition) == 4096
    assert len(definition.encode("utf-8")) == 4096


def test_definition_of_4097_characters_not_cut(rows: dict[str, Row]) -> None:
    assert len(rows["9005"].definition or "") == 4097


def test_one_letter_word(rows: dict[str, Row]) -> None:
    assert rows["9006"].word == "a"


def test_apostrophe_in_word(rows: dict[str, Row]) -> None:
    assert rows["9007"].word == "o'clock"
    assert rows["9007"].example == "it's three o'clock in Tokyo now"


def test_hyphen_in_word(rows: dict[str, Row]) -> None:
    assert rows["9008"].word == "ice-cream"


def test_precomposed_word_stays_nfc(rows: dict[str, Row]) -> None:
    assert rows["9009"].word == "caf\u00e9"
    assert len(rows["9009"].word) == 4


def test_decomposed_word_becomes_nfc(rows: dict[str, Row]) -> None:
    word = rows["9010"].word
    assert word == "caf\u00e9"
    assert unicodedata.is_normalized("NFC", word)
    assert rows["9010"].uuid != rows["9009"].uuid


def test_emoji_kept(rows: dict[str, Row]) -> None:
    assert "\U0001f431" in (rows["9011"].definition or "")
    assert "\U0001f408" in (rows["9011"].example or "")


@pytest.mark.parametrize(
    ("definition_id", "uuid"), [("9012", "../escape"), ("9013", "a/b")]
)
def test_path_uuid_rejected(
    rejected: dict[str, RejectedRow], definition_id: str, uuid: str
) -> None:
    row = rejected[definition_id]
    assert row.reason == RejectReason.UNSAFE_ID
    assert row.uuid == uuid
    assert repr(uuid) in row.message
    assert row.origin in row.message


def test_empty_uuid_rejected(rejected: dict[str, RejectedRow]) -> None:
    row = rejected["9014"]
    assert row.reason == "unsafe_id"
    assert "uuid is empty" in row.message
    assert row.origin == "bad-rows.csv line 15"


def test_duplicate_definition_rejected(
    rows: dict[str, Row], rejected: dict[str, RejectedRow]
) -> None:
    row = rejected["9015"]
    assert row.reason == "duplicate"
    assert row.uuid == rows["9007"].uuid
    assert "definition text" in row.message
    assert "9007" in rows


def test_crlf_in_quoted_fields(rows: dict[str, Row]) -> None:
    row = rows["9016"]
    assert row.definition == (
        "a mark that is long relative to its width that is drawn on a chart"
    )
    assert row.example == "He drew a line on the chart"
    assert row.origin == "bad-rows.csv line 17"


def test_nul_byte_removed(rows: dict[str, Row]) -> None:
    definition = rows["9017"].definition or ""
    assert "\x00" not in definition
    assert "tasteless liquid;" in definition


def test_long_word_kept(rows: dict[str, Row]) -> None:
    assert len(rows["9018"].word) == 300


def test_short_row_rejected(rejected: dict[str, RejectedRow]) -> None:
    row = rejected["9019"]
    assert row.reason == RejectReason.BAD_FIELD_COUNT
    assert "7 fields" in row.message
    assert "header has 8" in row.message
    assert row.uuid == "906e4bc4-dfa5-5eff-ae5a-b592df5609d4"


def test_short_row_text_not_misplaced(items: list[Row | RejectedRow]) -> None:
    examples = [item.example or "" for item in items if isinstance(item, Row)]
    assert not any("missing column" in example for example in examples)


def test_non_integer_id_kept(rows: dict[str, Row]) -> None:
    row = rows["x9020"]
    assert row.word == "tree"
    assert row.definition_id == "x9020"
