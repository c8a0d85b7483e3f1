"""Validation of speech and image request bodies, with the API's error shapes.

Each ``parse_*`` function turns a decoded JSON body into a small record or
raises ``ApiError``, which the transport sends back as an OpenAI-style error
response: ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from esl_assets.local_provider.card import IMAGE_FORMATS, parse_size
from esl_assets.local_provider.encode import AUDIO_FORMATS

#: Maximum ``input`` length of ``POST /v1/audio/speech``, in characters.
MAX_SPEECH_INPUT_CHARS = 4096

#: Maximum ``prompt`` length of ``POST /v1/images/generations`` for GPT image
#: models, in characters.
MAX_PROMPT_CHARS = 32_000

MIN_SPEED = 0.25
MAX_SPEED = 4.0
MAX_IMAGES = 10

#: ``quality`` values the SDK accepts, mapped to the value a response reports.
#: The real API reports the quality it picked for ``auto``; here it is ``high``.
IMAGE_QUALITIES = {
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "xhigh",
    "max": "max",
    "auto": "high",
    "standard": "medium",
    "hd": "high",
}

_JSON_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a decimal",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


class ApiError(Exception):
    """Raised for a request the real API would reject; carries the error body."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.param = param
        self.code = code
        self.error_type = error_type

    def body(self) -> dict[str, Any]:
        """Return the JSON error body the API sends with this status code."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    """The fields of a speech request that the local provider uses."""

    text: str
    voice: str
    response_format: str
    speed: float


@dataclass(frozen=True, slots=True)
class CardFields:
    """Dictionary fields for a picture card, from the ``esl_card`` extension."""

    word: str = ""
    pos: str = ""
    definition: str = ""
    level: str = ""


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """The fields of an image generation request that the local provider uses."""

    prompt: str
    card: CardFields | None
    size: tuple[int, int]
    output_format: str
    quality: str
    count: int


def decode_body(body: bytes) -> dict[str, Any]:
    """Decode a JSON object request body or raise a 400 ``ApiError``."""
    try:
        payload = json.loads(body or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(
            400,
            f"The request body is not valid JSON ({error}). Send a JSON object.",
        ) from error

    if not isinstance(payload, dict):
        raise ApiError(
            400,
            "The request body must be a JSON object, but got "
            f"{_json_type(payload)} instead.",
        )
    return payload


def parse_speech_request(payload: dict[str, Any]) -> SpeechRequest:
    """Validate a ``POST /v1/audio/speech`` body the way the API does."""
    _require_string(payload, "model")
    text = _require_string(payload, "input")
    if len(text) > MAX_SPEECH_INPUT_CHARS:
        raise ApiError(
            400,
            "Invalid 'input': string too long. Expected a string with maximum "
            f"length {MAX_SPEECH_INPUT_CHARS}, but got a string with length "
            f"{len(text)} instead.",
            param="input",
            code="string_above_max_length",
        )

    response_format = _optional_choice(payload, "response_format", AUDIO_FORMATS, "mp3")
    stream_format = payload.get("stream_format", "audio")
    if stream_format not in (None, "audio"):
        raise ApiError(
            400,
            f"Invalid value: {stream_format!r}. The local provider supports only "
            "stream_format 'audio'; leave stream_format out.",
            param="stream_format",
            code="invalid_value",
        )

    # eSpeak NG cannot follow style instructions, so they are checked and ignored.
    _optional_string(payload, "instructions")
    return SpeechRequest(
        text=text,
        voice=_parse_voice(payload.get("voice")),
        response_format=response_format,
        speed=_parse_speed(payload.get("speed", 1.0)),
    )


def parse_image_request(payload: dict[str, Any]) -> ImageRequest:
    """Validate a ``POST /v1/images/generations`` body the way the API does."""
    prompt = _require_string(payload, "prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ApiError(
            400,
            "Invalid 'prompt': string too long. Expected a string with maximum "
            f"length {MAX_PROMPT_CHARS}, but got a string with length "
            f"{len(prompt)} instead.",
            param="prompt",
            code="string_above_max_length",
        )

    _optional_string(payload, "model")
    output_format = _optional_choice(payload, "output_format", IMAGE_FORMATS, "png")
    quality = _optional_choice(payload, "quality", tuple(IMAGE_QUALITIES), "auto")
    return ImageRequest(
        prompt=prompt,
        card=_parse_card(payload.get("esl_card")),
        size=_parse_size(payload.get("size")),
        output_format=output_format,
        quality=IMAGE_QUALITIES[quality],
        count=_parse_count(payload.get("n")),
    )


def _json_type(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _invalid_type(param: str, expected: str, value: object) -> ApiError:
    return ApiError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got "
        f"{_json_type(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _require_string(payload: dict[str, Any], param: str) -> str:
    value = payload.get(param)
    if value is None:
        raise ApiError(
            400,
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    if not isinstance(value, str):
        raise _invalid_type(param, "a string", value)
    if not value.strip():
        raise ApiError(
            400,
            f"Invalid '{param}': empty string. Expected a non-empty string.",
            param=param,
            code="empty_string",
        )
    return value


def _optional_string(payload: dict[str, Any], param: str) -> str | None:
    value = payload.get(param)
    if value is not None and not isinstance(value, str):
        raise _invalid_type(param, "a string", value)
    return value


def _optional_choice(
    payload: dict[str, Any], param: str, choices: tuple[str, ...], default: str
) -> str:
    value = _optional_string(payload, param)
    if value is None:
        return default
    if value not in choices:
        supported = ", ".join(f"'{choice}'" for choice in choices)
        raise ApiError(
            400,
            f"Invalid value: '{value}'. Supported values for '{param}' are: "
            f"{supported}.",
            param=param,
            code="invalid_value",
        )
    return value


def _parse_voice(value: object) -> str:
    # A custom voice is sent as {"id": "voice_1234"}; its id picks the voice.
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        value = value["id"]
    if value is None:
        raise ApiError(
            400,
            "Missing required parameter: 'voice'.",
            param="voice",
            code="missing_required_parameter",
        )
    if not isinstance(value, str):
        raise _invalid_type("voice", "a string or an object with an 'id'", value)
    return value


def _parse_speed(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid_type("speed", "a decimal", value)
    if value < MIN_SPEED:
        raise ApiError(
            400,
            "Invalid 'speed': decimal below minimum value. Expected a value >= "
            f"{MIN_SPEED}, but got {value} instead.",
            param="speed",
            code="decimal_below_min_value",
        )
    if value > MAX_SPEED:
        raise ApiError(
            400,
            "Invalid 'speed': decimal above maximum value. Expected a value <= "
            f"{MAX_SPEED}, but got {value} instead.",
            param="speed",
            code="decimal_above_max_value",
        )
    return float(value)


def _parse_size(value: object) -> tuple[int, int]:
    if value is not None and not isinstance(value, str):
        raise _invalid_type("size", "a string", value)
    try:
        return parse_size(value)
    except ValueError as error:
        raise ApiError(400, str(error), param="size", code="invalid_value") from error


def _parse_count(value: object) -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid_type("n", "an integer", value)
    if not 1 <= value <= MAX_IMAGES:
        raise ApiError(
            400,
            f"Invalid 'n': expected an integer from 1 to {MAX_IMAGES}, but got "
            f"{value} instead.",
            param="n",
            code="invalid_value",
        )
    return value


def _parse_card(value: object) -> CardFields | None:
    """Read the ``esl_card`` extension: string fields word, pos, definition, level."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid_type("esl_card", "an object", value)

    fields: dict[str, str] = {}
    for name in ("word", "pos", "definition", "level"):
        field = value.get(name)
        if field is None:
            continue
        if not isinstance(field, str):
            raise _invalid_type(f"esl_card.{name}", "a string", field)
        fields[name] = field
    return CardFields(**fields)
