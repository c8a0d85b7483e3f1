"""Tests for esl_assets.text: MW markup, HTML, control characters, NFC, pos."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest

from esl_assets.text import KNOWN_POS_LABELS, clean_mw, clean_text, normalize_pos

DATA = Path(__file__).parent / "data"
EXPECTED_MD = DATA / "mw" / "EXPECTED.md"

# A table row of EXPECTED.md: | where | `marked-up` | `clean` |, with "|"
# inside the code spans written as "\|".
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def _expected_cases() -> list[tuple[str, str, str]]:
    cases = []
    heading = ""
    for line in EXPECTED_MD.read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            heading = line[4:].strip()
            continue

        cells = [cell.strip() for cell in _CELL_SPLIT.split(line)[1:-1]]
        if len(cells) != 3 or not cells[1].startswith("`"):
            continue

        marked, clean = (cell.strip("`").replace("\\|", "|") for cell in cells[1:])
        cases.append((f"{heading}: {cells[0]}", marked, clean))

    return cases


EXPECTED_CASES = _expected_cases()


def test_expected_md_parsed_completely() -> None:
    # cat:1 7, cat:2 2, CAT scan 2, run:1 11, run:2 6, running:1 4 table rows.
    assert len(EXPECTED_CASES) == 32


@pytest.mark.parametrize(
    ("marked", "clean"),
    [case[1:] for case in EXPECTED_CASES],
    ids=[case[0] for case in EXPECTED_CASES],
)
def test_clean_mw_expected(marked: str, clean: str) -> None:
    assert clean_mw(marked) == clean


@pytest.mark.parametrize(
    ("marked", "clean"),
    [case[1:] for case in EXPECTED_CASES],
    ids=[case[0] for case in EXPECTED_CASES],
)
def test_clean_text_expected(marked: str, clean: str) -> None:
    assert clean_text(marked) == clean


def test_clean_mw_rule_example() -> None:
    marked = "{bc}a small {it}young{/it} dog {sx|puppy||}"
    assert clean_mw(marked) == "a small young dog puppy"


@pytest.mark.parametrize("name", ["cat.json", "run.json"])
def test_app_shortdef_cleans_to_shortdef(name: str) -> None:
    entries = json.loads((DATA / "mw" / name).read_text(encoding="utf-8"))
    for entry in entries:
        app_defs = entry["meta"]["app-shortdef"]["def"]
        assert [clean_text(text) for text in app_defs] == entry["shortdef"]
        assert [clean_text(text) for text in entry["shortdef"]] == entry["shortdef"]


@pytest.mark.parametrize(
    ("marked", "clean"),
    [
        ("{dx}see {dxt|kitten||}\n and more{/dx}tail", "tail"),
        ("{mdash}", ""),
        (
            "{i_link|alpha|alpha:1} {et_link|beta|beta:2} {mat|gamma|}",
            "alpha beta gamma",
        ),
        ("{sx}", ""),
        ("set {1, 2} stays", "set {1, 2} stays"),
        ("{phrase}go on{/phrase} {qword}x{/qword}", "go on x"),
    ],
)
def test_clean_mw_tokens(marked: str, clean: str) -> None:
    assert clean_mw(marked) == clean


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("<b>bold</b> and <i class='x'>italic</i>", "bold and italic"),
        ("line one<br>line two", "line one line two"),
        ("<p>one</p><p>two</p>", "one two"),
        ("&lt;b&gt; stays visible", "<b> stays visible"),
        ("fish &amp; chips&nbsp;today", "fish & chips today"),
        ("caf&eacute; &#233;", "café é"),
        ("x <y and z> w", "x <y and z> w"),
        ("<!-- note -->kept", "kept"),
        ("{bc}<em>both</em> {it}kinds{/it}", "both kinds"),
    ],
)
def test_clean_text_html(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("liq\x00uid", "liquid"),
        ("a\r\nb", "a b"),
        ("a\tb\x0bc\x0cd", "a b c d"),
        ("bell\x07 and escape\x1b", "bell and escape"),
        ("\ufeffstart", "start"),
        ("lone \ud800 surrogate", "lone surrogate"),
        ("  spaces   everywhere \n", "spaces everywhere"),
        ("\u00a0non-breaking\u00a0space", "non-breaking space"),
        ("   \t  ", ""),
    ],
)
def test_clean_text_control_characters(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean


def test_clean_text_nfd_becomes_nfc() -> None:
    decomposed = "cafe\u0301"
    cleaned = clean_text(decomposed)
    assert cleaned == "caf\u00e9"
    assert unicodedata.is_normalized("NFC", cleaned)


def test_clean_text_keeps_emoji() -> None:
    assert clean_text("cats \U0001f408 and dogs") == "cats \U0001f408 and dogs"


def test_clean_text_keeps_zero_width_joiner() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert clean_text(family) == family


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("n", "noun"),
        ("n.", "noun"),
        ("N.", "noun"),
        ("Noun", "noun"),
        ("v", "verb"),
        ("v.", "verb"),
        ("adj", "adjective"),
        ("adj.", "adjective"),
        ("adv.", "adverb"),
        ("prep.", "preposition"),
        ("conj", "conjunction"),
        ("pron.", "pronoun"),
        ("interj.", "interjection"),
        ("det.", "determiner"),
        ("def. art.", "definite article"),
        ("indefinite  article", "indefinite article"),
        ("s", "adjective"),
        ("r", "adverb"),
        ("plural noun", "plural noun"),
        (" Phrasal Verb ", "phrasal verb"),
    ],
)
def test_normalize_pos(label: str, expected: str) -> None:
    assert normalize_pos(label) == expected


@pytest.mark.parametrize("label", [None, "", "  ", "."])
def test_normalize_pos_empty(label: str | None) -> None:
    assert normalize_pos(label) is None


def test_normalize_pos_known_labels_are_fixed_points() -> None:
    for label in KNOWN_POS_LABELS:
        assert normalize_pos(label) == label
