"""Picture cards drawn with Pillow in place of generated illustrations.

A card shows the headword in large bold type, the part of speech under it and
the definition wrapped to the card's width. Sizes, margins and type scale with
the shorter side of the card, and the text block is centred vertically, so
square, vertical and horizontal cards all fill their area.
"""

from __future__ import annotations

import functools
import io
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from esl_assets.errors import ConfigurationError

if TYPE_CHECKING:
    from PIL import Image, ImageDraw, ImageFont

    Font: TypeAlias = ImageFont.FreeTypeFont | ImageFont.ImageFont

logger = logging.getLogger(__name__)

#: ``output_format`` values the local provider draws; the API also has gif and svg.
IMAGE_FORMATS = ("png", "jpeg", "webp")

#: Card size used for ``size="auto"``.
DEFAULT_SIZE = (1024, 1024)

# Limits from the images API reference for GPT image models (openai-python 3.60,
# ImageGenerateParams.size): both edges divisible by 16, aspect ratio between
# 1:3 and 3:1, at most 3840 pixels on an edge and 3840x2160 pixels in total.
_EDGE_STEP = 16
_MAX_EDGE = 3840
_MAX_PIXELS = 3840 * 2160
_MAX_ASPECT = 3

_BACKGROUND = "#FBF8F1"
_TEXT = "#1B2430"
_MUTED = "#52606D"
_BADGE_TEXT = "#FFFFFF"
_DEFAULT_ACCENT = "#1565C0"
_LEVEL_ACCENTS = {"A": "#2E7D32", "B": "#1565C0", "C": "#6A1B9A"}

_FONT_FILES = {
    "bold": ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf", "Arial Bold.ttf"),
    "italic": ("DejaVuSans-Oblique.ttf", "LiberationSans-Italic.ttf"),
    "regular": ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf"),
}

_SIZE_PATTERN = re.compile(r"(\d{1,5})x(\d{1,5})")
_ELLIPSIS = "\u2026"


def parse_size(size: str | None) -> tuple[int, int]:
    """Parse an images API ``size`` such as ``"1024x1536"`` into (width, height).

    ``"auto"`` and ``None`` give ``DEFAULT_SIZE``. Raises ``ValueError`` with a
    message in the API's words for any size a GPT image model would reject.
    """
    if size is None or size == "auto":
        return DEFAULT_SIZE

    match = _SIZE_PATTERN.fullmatch(size)
    if match is None:
        raise ValueError(
            f"Invalid size {size!r}: use 'auto' or WIDTHxHEIGHT, e.g. '1024x1536'."
        )

    width, height = int(match.group(1)), int(match.group(2))
    if width == 0 or height == 0 or width % _EDGE_STEP or height % _EDGE_STEP:
        raise ValueError(
            f"Invalid size {size!r}: width and height must be positive multiples "
            f"of {_EDGE_STEP}."
        )
    if max(width, height) > _MAX_EDGE or width * height > _MAX_PIXELS:
        raise ValueError(
            f"Invalid size {size!r}: the maximum is {_MAX_EDGE} pixels on an edge "
            "and 3840x2160 pixels in total."
        )
    if max(width, height) > _MAX_ASPECT * min(width, height):
        raise ValueError(
            f"Invalid size {size!r}: the aspect ratio must be between 1:3 and 3:1."
        )
    return width, height


def require_pillow() -> None:
    """Raise ``ConfigurationError`` naming the package when Pillow is missing."""
    try:
        import PIL  # noqa: F401
    except ImportError as error:
        raise ConfigurationError(
            "The local provider needs Pillow to draw picture cards; install it "
            "with: pip install 'esl-assets[local]'."
        ) from error


@functools.cache
def _font_path(style: str) -> str | None:
    """Return the path of the first TrueType font of ``style`` Pillow finds."""
    from PIL import ImageFont

    for name in _FONT_FILES[style]:
        try:
            # Pillow searches the system font folders for a bare file name.
            return str(ImageFont.truetype(name, 12).path)
        except OSError:
            continue

    logger.warning(
        "No TrueType font found for %s text (install fonts-dejavu-core), so "
        "cards use Pillow's built-in font",
        style,
    )
    return None


def _load_font(style: str, size: int) -> Font:
    from PIL import ImageFont

    path = _font_path(style)
    if path is None:
        # Pillow 10.1 and later scale the built-in font to ``size``.
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(path, size)


@dataclass(slots=True)
class _Layout:
    """Geometry shared by the drawing steps, in pixels."""

    width: int
    height: int
    margin: int

    @property
    def scale(self) -> int:
        return min(self.width, self.height)

    @property
    def text_width(self) -> int:
        return self.width - 2 * self.margin


def accent_for_level(level: str) -> str:
    """Return the accent colour for a CEFR level such as ``"B1"``."""
    return _LEVEL_ACCENTS.get(level.strip()[:1].upper(), _DEFAULT_ACCENT)


def draw_card(
    word: str,
    pos: str,
    definition: str,
    size: tuple[int, int],
    fmt: str = "png",
    *,
    level: str = "",
) -> bytes:
    """Draw a picture card and return it encoded as ``fmt`` (png, jpeg or webp).

    Any of ``word``, ``pos``, ``definition`` and ``level`` may be empty, and
    that part is left out. A definition too long for the card at the smallest
    type size ends with an ellipsis.
    """
    require_pillow()
    from PIL import Image, ImageDraw

    if fmt not in IMAGE_FORMATS:
        raise ValueError(
            f"Unknown image format {fmt!r}; use one of {', '.join(IMAGE_FORMATS)}."
        )

    width, height = size
    layout = _Layout(width, height, margin=max(8, round(min(size) * 0.07)))
    accent = accent_for_level(level)
    image = Image.new("RGB", size, _BACKGROUND)
    draw = ImageDraw.Draw(image)

    band_height = max(4, round(layout.scale * 0.025))
    draw.rectangle((0, 0, width, band_height), fill=accent)
    top = band_height + layout.margin
    if level.strip():
        top += _draw_level_badge(draw, layout, level.strip(), accent, band_height)

    _draw_text_block(
        draw, layout, (word.strip(), pos.strip(), definition.strip()), top, accent
    )
    return _encode_image(image, fmt)


def _draw_level_badge(
    draw: ImageDraw.ImageDraw, layout: _Layout, level: str, accent: str, top: int
) -> int:
    """Draw the level in a pill at the top right and return the height it used."""
    font = _load_font("bold", max(8, round(layout.scale * 0.04)))
    padding = max(4, round(layout.scale * 0.015))
    left, upper, right, lower = draw.textbbox((0, 0), level, font=font)
    badge_width = round(right - left) + 2 * padding
    badge_height = round(lower - upper) + 2 * padding
    x = layout.width - layout.margin - badge_width
    y = top + layout.margin // 2
    draw.rounded_rectangle(
        (x, y, x + badge_width, y + badge_height), radius=badge_height // 2, fill=accent
    )
    draw.text(
        (x + badge_width / 2, y + badge_height / 2),
        level,
        font=font,
        fill=_BADGE_TEXT,
        anchor="mm",
    )
    return layout.margin // 2 + badge_height


def _draw_text_block(
    draw: ImageDraw.ImageDraw,
    layout: _Layout,
    parts: tuple[str, str, str],
    top: int,
    accent: str,
) -> None:
    """Draw headword, part of speech, rule and definition centred in the card."""
    word, pos, definition = parts
    available = layout.height - layout.margin - top
    gap = max(4, round(layout.scale * 0.03))
    rule_width = max(2, layout.scale // 200)

    heading: list[tuple[str, Font, str]] = []
    if word:
        heading += _heading_lines(word, "bold", layout, (0.16, 0.03), _TEXT)
    if pos:
        heading += _heading_lines(pos, "italic", layout, (0.055, 0.025), accent)

    heading_height = sum(_line_height(font) for _, font, _ in heading)
    rule_height = 2 * gap + rule_width if heading and definition else 0
    body_space = available - heading_height - rule_height
    body_font, body_lines = _wrap_to_fit(definition, layout, body_space)
    body_height = len(body_lines) * _line_height(body_font)

    y = top + max(0, (available - heading_height - rule_height - body_height) // 2)
    centre_x = layout.width / 2
    for text, font, colour in heading:
        draw.text((centre_x, y), text, font=font, fill=colour, anchor="ma")
        y += _line_height(font)

    if rule_height:
        y += gap
        half = min(layout.text_width, round(layout.scale * 0.3)) // 2
        draw.line(
            (centre_x - half, y, centre_x + half, y), fill=accent, width=rule_width
        )
        y += rule_width + gap

    for line in body_lines:
        draw.text((centre_x, y), line, font=body_font, fill=_MUTED, anchor="ma")
        y += _line_height(body_font)


def _line_height(font: Font) -> int:
    # The bottom of "Ag" drawn from its ascender line spans ascender to descender.
    bottom = font.getbbox("Ag")[3]
    return round(bottom * 1.15)


def _heading_lines(
    text: str, style: str, layout: _Layout, sizes: tuple[float, float], colour: str
) -> list[tuple[str, Font, str]]:
    """Fit ``text`` on one line between the start and minimum sizes in ``sizes``
    (fractions of the card's shorter side), or break it at the minimum size."""
    start, minimum = sizes
    size = max(8, round(layout.scale * start))
    smallest = max(8, round(layout.scale * minimum))
    font = _load_font(style, size)
    while size > smallest and font.getlength(text) > layout.text_width:
        size = max(smallest, int(size * 0.9))
        font = _load_font(style, size)

    return [(line, font, colour) for line in _wrap_lines(text, font, layout.text_width)]


def _wrap_to_fit(text: str, layout: _Layout, space: int) -> tuple[Font, list[str]]:
    """Wrap ``text`` in the largest body font whose lines fit in ``space`` pixels.

    At the smallest size the lines that do not fit are dropped and the last
    kept line ends with an ellipsis.
    """
    size = max(8, round(layout.scale * 0.06))
    smallest = max(8, round(layout.scale * 0.03))
    while True:
        font = _load_font("regular", size)
        lines = _wrap_lines(text, font, layout.text_width) if text else []
        max_lines = max(1, space // _line_height(font))
        if len(lines) <= max_lines:
            return font, lines
        if size == smallest:
            return font, _truncate(lines[:max_lines], font, layout.text_width)
        size = max(smallest, int(size * 0.9))


def _wrap_lines(text: str, font: Font, width: int) -> list[str]:
    """Break ``text`` greedily at spaces, splitting any word wider than a line."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= width:
            current = candidate
            continue

        if current:
            lines.append(current)
        current = word
        while font.getlength(current) > width and len(current) > 1:
            cut = _longest_prefix(current, font, width)
            lines.append(current[:cut])
            current = current[cut:]

    if current:
        lines.append(current)
    return lines


def _longest_prefix(text: str, font: Font, width: int) -> int:
    """Return the length of the longest prefix of ``text`` (at least 1) that fits."""
    low, high = 1, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if font.getlength(text[:middle]) <= width:
            low = middle
        else:
            high = middle - 1
    return low


def _truncate(lines: list[str], font: Font, width: int) -> list[str]:
    last = lines[-1]
    while last and font.getlength(last + _ELLIPSIS) > width:
        last = last[:-1]
    return [*lines[:-1], last.rstrip() + _ELLIPSIS]


def _encode_image(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG")
    elif fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=90)
    else:
        image.save(buffer, format="WEBP", quality=90)
    return buffer.getvalue()
