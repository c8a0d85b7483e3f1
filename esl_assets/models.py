"""Parameters that each known OpenAI speech and image model accepts.

The table follows the model lists and parameter notes of the ``openai`` Python
SDK 3.51 to 3.60 (``types/audio/speech_model.py``, ``types/image_model.py`` and
the ``images.generate`` docstring). A model whose shutdown date has passed is
rejected before any request. One with an announced shutdown runs with a
warning. An unknown name is passed through with a warning, because new models
appear between SDK releases.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass

from .errors import ConfigurationError

logger = logging.getLogger(__name__)

SPEECH_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx",
    "nova", "sage", "shimmer", "verse", "marin", "cedar",
)  # fmt: skip
AUDIO_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
IMAGE_FORMATS = ("png", "jpeg", "webp")
#: The speech endpoint rejects longer inputs.
MAX_SPEECH_CHARS = 4096
#: The images endpoint rejects longer prompts for GPT image models.
MAX_IMAGE_PROMPT_CHARS = 32000
STANDARD_IMAGE_SIZES = ("1024x1024", "1536x1024", "1024x1536")
IMAGE_SIZE_NAMES = {
    "square": "1024x1024",
    "vertical": "1024x1536",
    "horizontal": "1536x1024",
}


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """Parameters one model accepts, and its shutdown date."""

    name: str
    kind: str  # "speech" or "image"
    shutdown: dt.date | None = None
    replacements: str = ""
    #: Speech: whether the model takes ``instructions``.
    accepts_instructions: bool = False
    #: Image: whether any ``WxH`` within the limits is allowed, not only the
    #: three standard sizes.
    flexible_sizes: bool = False
    qualities: tuple[str, ...] = ()


_SPEECH_SHUTDOWN = dt.date(2027, 1, 6)
_SPEECH_NEXT = (
    "a current speech model from https://platform.openai.com/docs/deprecations"
)
_GPT_IMAGE_QUALITIES = ("low", "medium", "high", "auto")
_SUNBURST_QUALITIES = ("low", "medium", "high", "xhigh", "max", "auto")


def _speech(name: str, instructions: bool) -> ModelInfo:
    return ModelInfo(
        name,
        "speech",
        shutdown=_SPEECH_SHUTDOWN,
        replacements=_SPEECH_NEXT,
        accepts_instructions=instructions,
    )


def _image(
    name: str,
    *,
    flexible: bool = False,
    qualities: tuple[str, ...] = _GPT_IMAGE_QUALITIES,
    shutdown: dt.date | None = None,
    replacements: str = "",
) -> ModelInfo:
    return ModelInfo(
        name,
        "image",
        shutdown=shutdown,
        replacements=replacements,
        flexible_sizes=flexible,
        qualities=qualities,
    )


_RETIRED_DALLE = dt.date(2026, 5, 12)
_GPT_IMAGE_NEXT = "gpt-image-2.5-sunburst or gpt-image-2.5-flare"

MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        _speech("tts-1", instructions=False),
        _speech("tts-1-hd", instructions=False),
        _speech("gpt-4o-mini-tts", instructions=True),
        _speech("gpt-4o-mini-tts-2025-12-15", instructions=True),
        _image("gpt-image-1-mini"),
        _image("gpt-image-1.5"),
        _image("chatgpt-image-latest"),
        _image("gpt-image-2", flexible=True),
        _image("gpt-image-2-2026-04-21", flexible=True),
        _image("gpt-image-2.5-sunburst", flexible=True, qualities=_SUNBURST_QUALITIES),
        _image(
            "gpt-image-2.5-sunburst-2026-09-08",
            flexible=True,
            qualities=_SUNBURST_QUALITIES,
        ),
        _image("gpt-image-2.5-flare", flexible=True, qualities=_SUNBURST_QUALITIES),
        _image(
            "gpt-image-2.5-flare-2026-09-08",
            flexible=True,
            qualities=_SUNBURST_QUALITIES,
        ),
        _image("gpt-image-2.6-sunburst"),
        _image("gpt-image-2.6-flare"),
        _image(
            "gpt-image-1",
            shutdown=dt.date(2026, 10, 23),
            replacements=_GPT_IMAGE_NEXT,
        ),
        _image("dall-e-2", shutdown=_RETIRED_DALLE, replacements=_GPT_IMAGE_NEXT),
        _image("dall-e-3", shutdown=_RETIRED_DALLE, replacements=_GPT_IMAGE_NEXT),
    )
}


def check_model(
    name: str, kind: str, *, today: dt.date | None = None, warn: bool = True
) -> ModelInfo:
    """Return the model's entry, or raise if it is retired or of the wrong kind.

    Logs a warning for an unknown name, unless ``warn`` is false (the offline
    provider ignores the model). An unknown model gets a permissive entry:
    instructions are sent to it and any size the API documents is allowed.
    An announced shutdown is left to ``warn_about_shutdown``, because it
    matters only to a build that sends requests.
    """
    today = today or dt.date.today()
    info = MODELS.get(name)
    option = "--audio-model" if kind == "speech" else "--image-model"
    if info is None and warn:
        logger.warning(
            "%s %r is not in esl-assets' model table; sending it as given.",
            option,
            name,
        )
    if info is None:
        return ModelInfo(
            name,
            kind,
            accepts_instructions=True,
            flexible_sizes=True,
            qualities=_SUNBURST_QUALITIES,
        )
    if info.kind != kind:
        raise ConfigurationError(
            f"{option} {name!r} is a {info.kind} model, not a {kind} model."
        )
    if info.shutdown is not None and info.shutdown <= today:
        raise ConfigurationError(
            f"{option} {name!r} was shut down on {info.shutdown.isoformat()}; "
            f"use {info.replacements} instead."
        )
    return info


def warn_about_shutdown(name: str, *, today: dt.date | None = None) -> None:
    """Log a warning if model ``name`` has an announced shutdown still ahead.

    Builds call it once per model, before the first request to that model
    through a real API, so dry runs and the offline provider stay quiet.
    """
    info = MODELS.get(name)
    today = today or dt.date.today()
    if info is None or info.shutdown is None or info.shutdown <= today:
        return
    option = "--audio-model" if info.kind == "speech" else "--image-model"
    logger.warning(
        "%s %r has an announced shutdown on %s; plan to move to %s.",
        option,
        name,
        info.shutdown.isoformat(),
        info.replacements,
    )


_SIZE = re.compile(r"(\d{2,5})x(\d{2,5})")


def resolve_image_size(value: str, info: ModelInfo) -> str:
    """Turn ``square``/``vertical``/``horizontal``/``auto``/``WxH`` into a size.

    Raises ``ConfigurationError`` when the model cannot make that size.
    """
    size = IMAGE_SIZE_NAMES.get(value, value)
    if size == "auto" or size in STANDARD_IMAGE_SIZES:
        return size
    match = _SIZE.fullmatch(size)
    if match is None:
        raise ConfigurationError(
            f"--image-size {value!r} is invalid; use square, vertical, horizontal,"
            " auto or WIDTHxHEIGHT such as 1536x864."
        )
    if not info.flexible_sizes:
        raise ConfigurationError(
            f"--image-size {value!r}: {info.name} makes only "
            f"{', '.join(STANDARD_IMAGE_SIZES)} or auto; choose one of those or a "
            "model that takes any size (gpt-image-2 and the gpt-image-2.5 family)."
        )
    width, height = int(match[1]), int(match[2])
    problem = _flexible_size_problem(width, height)
    if problem:
        raise ConfigurationError(f"--image-size {value!r} is invalid: {problem}.")
    return size


def _flexible_size_problem(width: int, height: int) -> str | None:
    if width % 16 or height % 16:
        return "width and height must both be divisible by 16"
    if max(width, height) > 3 * min(width, height):
        return "the aspect ratio must be between 1:3 and 3:1"
    if width * height > 3840 * 2160:
        return "the maximum is 3840x2160 pixels"
    return None


def image_aspect(size: str) -> str:
    """Describe a size for the prompt: square, portrait or landscape."""
    match = _SIZE.fullmatch(size)
    if match is None:
        return "square"
    width, height = int(match[1]), int(match[2])
    if width == height:
        return "square"
    return "portrait" if height > width else "landscape"
