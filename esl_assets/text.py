"""Clean-up of dictionary text before it is spoken or drawn.

``clean_text`` is applied by every reader to words, definitions and examples.
It renders Merriam-Webster markup (``clean_mw``), strips HTML tags, unescapes
HTML entities, removes control characters, collapses whitespace and returns
Unicode NFC, so ``café`` typed precomposed or decomposed gives the same string.

``normalize_pos`` maps part-of-speech labels and their usual abbreviations to
one full label, for the readers and for ``--pos`` alike.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata

# A Merriam-Webster token: ``{bc}``, ``{/it}``, ``{sx|lion||}``. Names are
# letters, digits and ``_``, so ordinary braces such as ``{1, 2}`` stay text.
_MW_TOKEN = re.compile(r"\{(/?)([A-Za-z][A-Za-z0-9_]*)((?:\|[^{}]*)?)\}")
_MW_DX_BLOCK = re.compile(r"\{dx\}.*?\{/dx\}", re.DOTALL)
_MW_QUOTES = frozenset({"ldquo", "rdquo"})
_MW_LINKS = frozenset({"sx", "a_link", "d_link", "i_link", "et_link", "mat", "dxt"})

# Only known HTML element names count as tags, so text such as "x <y and z> w"
# is kept. Block and line-break tags become a space, inline tags nothing.
_HTML_BLOCK_NAMES = (
    "article|blockquote|br|dd|div|dl|dt|footer|h[1-6]|header|hr|li|ol|p|pre"
    "|section|table|tbody|td|tfoot|th|thead|tr|ul"
)
_HTML_INLINE_NAMES = (
    "a|abbr|b|bdi|bdo|big|cite|code|del|dfn|em|font|i|img|ins|kbd|mark|q|rp|rt"
    "|ruby|s|samp|small|span|strike|strong|sub|sup|time|tt|u|var|wbr"
)
_HTML_BLOCK_TAG = re.compile(
    rf"</?(?:{_HTML_BLOCK_NAMES})(?:\s[^<>]*)?/?>", re.IGNORECASE
)
_HTML_INLINE_TAG = re.compile(
    rf"<!--.*?-->|</?(?:{_HTML_INLINE_NAMES})(?:\s[^<>]*)?/?>",
    re.IGNORECASE | re.DOTALL,
)
_WHITESPACE = re.compile(r"\s+")

# Characters removed outright are controls (category Cc, NUL included),
# surrogates (Cs, lone halves that JSON allows but UTF-8 cannot encode) and
# the byte-order mark U+FEFF. Controls that are whitespace become a space.
_REMOVED_CATEGORIES = frozenset({"Cc", "Cs"})
_WHITESPACE_CONTROLS = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85")


def clean_mw(text: str) -> str:
    """Render Merriam-Webster markup as plain text.

    ``{dx}...{/dx}`` cross-reference blocks are cut, ``{ldquo}`` and
    ``{rdquo}`` become ``"``, link tokens (``{sx|lion||}``) become their first
    field, and every other token, formatting tags and unknown ones included,
    is removed with its text kept. Whitespace is collapsed and trimmed.
    """
    return _WHITESPACE.sub(" ", _render_mw(text)).strip()


def _render_mw(text: str) -> str:
    if "{" not in text:
        return text

    text = _MW_DX_BLOCK.sub("", text)
    return _MW_TOKEN.sub(_render_mw_token, text)


def _render_mw_token(match: re.Match[str]) -> str:
    closing, name, fields = match.groups()
    if closing:
        return ""

    if name in _MW_QUOTES:
        return '"'

    if name in _MW_LINKS and fields:
        return fields[1:].split("|", 1)[0]

    return ""


def clean_text(text: str) -> str:
    """Turn dictionary text into plain, single-spaced NFC text.

    The steps run in this order: Merriam-Webster markup, HTML tags, HTML
    entities, control characters, whitespace, NFC. Entities are unescaped
    after tags are stripped, so ``&lt;b&gt;`` stays visible as ``<b>``.
    """
    text = _render_mw(text)
    if "<" in text:
        text = _HTML_BLOCK_TAG.sub(" ", text)
        text = _HTML_INLINE_TAG.sub("", text)

    if "&" in text:
        text = html.unescape(text)

    text = _remove_control_characters(text)
    text = _WHITESPACE.sub(" ", text).strip()
    return unicodedata.normalize("NFC", text)


def _remove_control_characters(text: str) -> str:
    if text.isprintable():
        return text

    characters = []
    for char in text:
        if char in _WHITESPACE_CONTROLS:
            characters.append(" ")
        elif char == "\ufeff" or unicodedata.category(char) in _REMOVED_CATEGORIES:
            continue
        else:
            characters.append(char)

    return "".join(characters)


# Labels as readers and users write them, lowercase and without the final
# ".", mapped to the full label. WordNet's letters n, v, a, s, r are included
# because WordNet exports use them (s is an adjective satellite).
_POS_ALIASES: dict[str, str] = {
    "n": "noun",
    "nn": "noun",
    "noun": "noun",
    "v": "verb",
    "vb": "verb",
    "verb": "verb",
    "a": "adjective",
    "s": "adjective",
    "adj": "adjective",
    "adjective": "adjective",
    "r": "adverb",
    "adv": "adverb",
    "adverb": "adverb",
    "prep": "preposition",
    "preposition": "preposition",
    "conj": "conjunction",
    "conjunction": "conjunction",
    "pron": "pronoun",
    "pronoun": "pronoun",
    "interj": "interjection",
    "int": "interjection",
    "interjection": "interjection",
    "det": "determiner",
    "determiner": "determiner",
    "art": "article",
    "article": "article",
    "def art": "definite article",
    "definite article": "definite article",
    "indef art": "indefinite article",
    "indefinite article": "indefinite article",
    "num": "numeral",
    "numeral": "numeral",
    "aux": "auxiliary verb",
    "aux v": "auxiliary verb",
    "auxiliary verb": "auxiliary verb",
    "modal": "modal verb",
    "modal verb": "modal verb",
    "phr v": "phrasal verb",
    "phrasal verb": "phrasal verb",
    "abbr": "abbreviation",
    "abbreviation": "abbreviation",
}

#: Every full label that ``normalize_pos`` maps an abbreviation to.
KNOWN_POS_LABELS = frozenset(_POS_ALIASES.values())

_POS_SEPARATORS = re.compile(r"[\s.]+")


@functools.lru_cache(maxsize=1024)
def normalize_pos(label: str | None) -> str | None:
    """Return the full part-of-speech label for ``label``, or None if empty.

    Matching ignores case, dots and extra spaces: ``n``, ``n.``, ``N`` and
    ``noun`` all give ``noun``, and ``def. art.`` gives ``definite article``.
    A label that is not a known abbreviation is returned lowercased and
    single-spaced (``plural noun`` stays ``plural noun``).
    """
    if label is None:
        return None

    key = _POS_SEPARATORS.sub(" ", clean_text(label).lower()).strip()
    if not key:
        return None

    return _POS_ALIASES.get(key, key)
