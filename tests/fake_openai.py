"""A fake OpenAI API server on 127.0.0.1 for tests and benchmarks.

It serves ``POST /v1/audio/speech`` and ``POST /v1/images/generations`` with a
hand-written HTTP/1.1 layer on asyncio streams (keep-alive, Content-Length or
chunked request bodies). Owning the socket lets it inject faults that a mock
transport cannot, such as connection resets, truncated bodies and stalled
responses.

Order of checks for each API request:

1. wait while ``hold()`` is active,
2. 401 when the Bearer key is missing or wrong,
3. an injected fault (``inject()``), else a random one (``fault_rate``),
4. 400 or 404 from request validation,
5. 429 from the per-lane requests-per-minute limiter,
6. the generated audio or image, sent ``latency_s`` (plus jitter) after the
   request was read, or after ``hold()`` let it through; the server's own
   work counts as part of that time.

Latency also delays the 500, 503, moderation, ``reset`` and ``half_body``
faults, because the real service fails those after working on the request.
Other errors (401, 403, 404, 400 from validation, every 429) return at once.

In-process use::

    with FakeOpenAI(audio_rpm=60) as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test")

From another process::

    python tests/fake_openai.py --port 0 --latency-ms 200 --audio-rpm 600

prints ``READY http://127.0.0.1:PORT/v1`` and serves until SIGTERM or SIGINT.
The ``/_fake/...`` HTTP endpoints then control it. The module imports only the
standard library, so benchmarks can load it by file path.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import copy
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import random
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import zlib
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "AUDIO_CONTENT_TYPES",
    "FAULTS",
    "IMAGE_MODELS",
    "LANES",
    "SPEECH_MODELS",
    "FakeOpenAI",
    "RecordedRequest",
    "build_speech_audio",
    "format_duration",
    "main",
]

LANES = ("audio", "images")
FAULTS = (
    "500",
    "503",
    "reset",
    "half_body",
    "stall",
    "429_rate_limit",
    "429_quota",
    "400_moderation",
    "401",
    "403",
    "404_model",
)
SPEECH_MODELS = frozenset(
    {"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-mini-tts-2025-12-15"}
)
_CUSTOM_SIZE_IMAGE_MODELS = frozenset(
    {
        "gpt-image-2",
        "gpt-image-2-2026-04-21",
        "gpt-image-2.5-sunburst",
        "gpt-image-2.5-sunburst-2026-09-08",
        "gpt-image-2.5-flare",
        "gpt-image-2.5-flare-2026-09-08",
        "gpt-image-2.6-sunburst",
        "gpt-image-2.6-flare",
    }
)
IMAGE_MODELS = _CUSTOM_SIZE_IMAGE_MODELS | {
    "gpt-image-1-mini",
    "gpt-image-1.5",
    "chatgpt-image-latest",
}
# The openai SDK (3.60) documents xhigh and max only for the 2.5 models.
_EXTRA_QUALITY_IMAGE_MODELS = frozenset(
    model for model in _CUSTOM_SIZE_IMAGE_MODELS if model.startswith("gpt-image-2.5")
)
_MODELS_WITHOUT_INSTRUCTIONS = frozenset({"tts-1", "tts-1-hd"})
_VOICES = frozenset(
    {
        "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx",
        "nova", "sage", "shimmer", "verse", "marin", "cedar",
    }
)  # fmt: skip
# NOTE: API users report audio/mpeg and audio/aac from the live API. The other
# types follow the same audio/<format> pattern and are not verified.
AUDIO_CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
_IMAGE_FORMATS = ("png", "jpeg", "webp")
_STANDARD_SIZES = frozenset({"auto", "1024x1024", "1536x1024", "1024x1536"})
_BASE_QUALITIES = frozenset({"auto", "low", "medium", "high"})
# Output tokens of one 1024x1024 image. Low, medium and high are the published
# gpt-image-1 figures, and xhigh and max are estimates.
_OUTPUT_TOKENS_1024 = {
    "low": 272,
    "medium": 1056,
    "high": 4160,
    "xhigh": 8320,
    "max": 16640,
}

MAX_SPEECH_INPUT_CHARS = 4096
MAX_IMAGE_PROMPT_CHARS = 32000
MAX_CUSTOM_SIZE_PIXELS = 3840 * 2160
MAX_CUSTOM_SIZE_EDGE = 3840
RATE_WINDOW_S = 60.0

_API_PATHS = {"/v1/audio/speech": "audio", "/v1/images/generations": "images"}
_NO_LATENCY_FAULTS = frozenset(
    {"429_rate_limit", "429_quota", "401", "403", "404_model"}
)
_REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LINGER_RESET = struct.pack("ii", 1, 0)

# 8x8 images made once with Pillow (JPEG quality 50, lossless WebP).
_JPEG_8X8 = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkz"
    "ODdASFxOQERXRTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2Nj"
    "Y2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wAARCAAIAAgDASIA"
    "AhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQA"
    "AAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3"
    "ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWm"
    "p6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEA"
    "AwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSEx"
    "BhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElK"
    "U1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3"
    "uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwCKiiiv"
    "QPPP/9k="
)
_WEBP_8X8 = base64.b64decode("UklGRh4AAABXRUJQVlA4TBEAAAAvB8ABAAdQwRqVtv+BiOh/AAA=")


# --------------------------------------------------------------------------
# Payloads


def format_duration(seconds: float) -> str:
    """Format a duration the way OpenAI's x-ratelimit-reset-* headers do.

    Milliseconds are rounded up: ``0.12`` -> ``120ms``, ``1`` -> ``1s``,
    ``61.5`` -> ``1m1.5s``, ``360`` -> ``6m0s``.
    """
    total_ms = max(0, math.ceil(seconds * 1000))
    if total_ms == 0:
        return "0s"

    if total_ms < 1000:
        return f"{total_ms}ms"

    minutes, rest_ms = divmod(total_ms, 60_000)
    hours, minutes = divmod(minutes, 60)
    secs = f"{rest_ms / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"

    if minutes:
        return f"{minutes}m{secs}s"

    return f"{secs}s"


def _make_crc_table(polynomial: int, width: int) -> tuple[int, ...]:
    # Table for a CRC that feeds bytes most significant bit first, with no
    # reflection, initial value 0 and no final XOR (Ogg and FLAC use this form).
    top_bit, mask = 1 << (width - 1), (1 << width) - 1
    table = []
    for index in range(256):
        value = index << (width - 8)
        for _ in range(8):
            value = (value << 1) ^ polynomial if value & top_bit else value << 1
        table.append(value & mask)

    return tuple(table)


_OGG_CRC32 = (_make_crc_table(0x04C11DB7, 32), 32)
_FLAC_CRC8 = (_make_crc_table(0x07, 8), 8)
_FLAC_CRC16 = (_make_crc_table(0x8005, 16), 16)


def _crc(data: bytes, spec: tuple[tuple[int, ...], int]) -> int:
    table, width = spec
    shift, mask = width - 8, (1 << width) - 1
    crc = 0
    for byte in data:
        crc = ((crc << 8) & mask) ^ table[((crc >> shift) ^ byte) & 0xFF]

    return crc


def _ogg_page(
    packets: list[bytes], flags: int, granule: int, serial: int, seq: int
) -> bytes:
    lacing = bytearray()
    for packet in packets:
        lacing += b"\xff" * (len(packet) // 255) + bytes([len(packet) % 255])

    header = b"OggS" + struct.pack("<BBqIII", 0, flags, granule, serial, seq, 0)
    page = header + bytes([len(lacing)]) + lacing + b"".join(packets)
    return page[:22] + struct.pack("<I", _crc(page, _OGG_CRC32)) + page[26:]


def _mp3_audio(noise: bytes) -> bytes:
    # ID3v2.4 tag with one TSSE frame, then MPEG-2 Layer III frames
    # (24 kHz, 32 kbit/s, mono, no CRC) of 96 bytes each.
    text = b"\x03fake-openai"
    frame = b"TSSE" + struct.pack(">I", len(text)) + b"\x00\x00" + text
    tag = b"ID3\x04\x00\x00" + struct.pack(">I", len(frame)) + frame
    payload = 92
    frames = [
        b"\xff\xf3\x44\xc0" + noise[offset : offset + payload].ljust(payload, b"\0")
        for offset in range(0, len(noise), payload)
    ]
    return tag + b"".join(frames)


def _adts_header(frame_length: int) -> bytes:
    # MPEG-4 AAC-LC, 24 kHz (index 6), mono, no CRC. frame_length includes it.
    profile, rate_index, channels = 1, 6, 1
    return bytes(
        [
            0xFF,
            0xF1,
            (profile << 6) | (rate_index << 2) | (channels >> 2),
            ((channels & 3) << 6) | (frame_length >> 11),
            (frame_length >> 3) & 0xFF,
            ((frame_length & 7) << 5) | 0x1F,
            0xFC,
        ]
    )


def _aac_audio(noise: bytes) -> bytes:
    payload = 121
    header = _adts_header(payload + 7)
    return b"".join(
        header + noise[offset : offset + payload].ljust(payload, b"\0")
        for offset in range(0, len(noise), payload)
    )


def _opus_audio(noise: bytes) -> bytes:
    serial = int.from_bytes(noise[:4], "little")
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, 312, 24000, 0, 0)
    vendor = b"fake-openai"
    tags = b"OpusTags" + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)
    pages = [_ogg_page([head], 0x02, 0, serial, 0), _ogg_page([tags], 0, 0, serial, 1)]
    packets = [
        b"\x78" + noise[offset : offset + 79] for offset in range(0, len(noise), 79)
    ]
    per_page = 50
    for start in range(0, len(packets), per_page):
        chunk = packets[start : start + per_page]
        last = start + per_page >= len(packets)
        granule = 312 + 960 * (start + len(chunk))
        seq = len(pages)
        pages.append(_ogg_page(chunk, 0x04 if last else 0, granule, serial, seq))

    return b"".join(pages)


_FLAC_BLOCK_SAMPLES = 256


def _flac_frame(number: int, samples: bytes) -> bytes:
    # Fixed-blocksize frame header: 8-bit block size, 24 kHz, mono, 16 bit,
    # then the frame number in FLAC's UTF-8-like coding (at most 2047 here).
    if number < 0x80:
        coded_number = bytes([number])
    else:
        coded_number = bytes([0xC0 | (number >> 6), 0x80 | (number & 0x3F)])

    block_size = len(samples) // 2
    header = b"\xff\xf8\x67\x08" + coded_number + bytes([block_size - 1])
    header += bytes([_crc(header, _FLAC_CRC8)])
    # One VERBATIM subframe: big-endian 16-bit samples.
    frame = header + b"\x02" + samples
    return frame + _crc(frame, _FLAC_CRC16).to_bytes(2, "big")


def _flac_audio(noise: bytes) -> bytes:
    # STREAMINFO: 256-sample blocks (the last may be shorter), 24 kHz, mono,
    # 16 bit, unknown frame sizes, zero MD5 (meaning "not computed").
    samples = noise[: len(noise) // 2 * 2]
    block_bytes = 2 * _FLAC_BLOCK_SAMPLES
    packed = (24000 << 44) | (0 << 41) | (15 << 36) | (len(samples) // 2)
    info = struct.pack(">HH", _FLAC_BLOCK_SAMPLES, _FLAC_BLOCK_SAMPLES) + b"\0" * 6
    info += packed.to_bytes(8, "big") + b"\0" * 16
    frames = [
        _flac_frame(number, samples[offset : offset + block_bytes])
        for number, offset in enumerate(range(0, len(samples), block_bytes))
    ]
    return b"fLaC\x80" + len(info).to_bytes(3, "big") + info + b"".join(frames)


def _wav_audio(noise: bytes) -> bytes:
    data = noise[: len(noise) // 2 * 2]
    fmt = struct.pack("<HHIIHH", 1, 1, 24000, 48000, 2, 16)
    chunks = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(chunks)) + chunks


def _pcm_audio(noise: bytes) -> bytes:
    return noise[: len(noise) // 2 * 2]


_AUDIO_BUILDERS = {
    "mp3": _mp3_audio,
    "opus": _opus_audio,
    "aac": _aac_audio,
    "flac": _flac_audio,
    "wav": _wav_audio,
    "pcm": _pcm_audio,
}


@functools.lru_cache(maxsize=2048)
def build_speech_audio(text: str, response_format: str = "mp3") -> bytes:
    """Build fake speech audio whose bytes depend only on ``text`` and the format.

    The file starts with the format's real signature and grows with the text
    (512 bytes plus 48 per character, at most 64 KiB of samples). The samples
    are noise, so only the container framing is meaningful.
    """
    size = min(512 + 48 * len(text), 65536)
    noise = hashlib.shake_256(text.encode("utf-8")).digest(size)
    return _AUDIO_BUILDERS[response_format](noise)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data)
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


@functools.lru_cache(maxsize=4096)
def _build_png(rgb: bytes) -> bytes:
    # An 8x8 truecolour PNG filled with one colour.
    width = height = 8
    rows = (b"\x00" + rgb * width) * height
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


def _build_image(prompt: str, output_format: str, index: int) -> bytes:
    if output_format == "jpeg":
        return _JPEG_8X8

    if output_format == "webp":
        return _WEBP_8X8

    digest = hashlib.blake2b(f"{index}:{prompt}".encode(), digest_size=3).digest()
    return _build_png(digest)


# --------------------------------------------------------------------------
# Errors and responses


class _ApiError(Exception):
    """An error response in OpenAI's ``{"error": {...}}`` shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code
        self.headers = headers or []


class _BadHttpRequest(Exception):
    """A request that is not valid HTTP/1.1, so the server sends 400 and closes."""


@dataclasses.dataclass(slots=True)
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    error_code: str | None = None


def _json_response(status: int, payload: object) -> _Response:
    return _Response(status, json.dumps(payload).encode())


def _error_response(error: _ApiError) -> _Response:
    payload = {
        "error": {
            "message": error.message,
            "type": error.error_type,
            "param": error.param,
            "code": error.code,
        }
    }
    response = _json_response(error.status, payload)
    response.headers = list(error.headers)
    response.error_code = error.code
    return response


def _invalid_value(param: str, message: str) -> _ApiError:
    return _ApiError(400, message, param=param, code="invalid_value")


def _missing(param: str) -> _ApiError:
    message = f"Missing required parameter: '{param}'."
    return _ApiError(400, message, param=param, code="missing_required_parameter")


def _model_not_found(model: object) -> _ApiError:
    message = f"The model `{model}` does not exist or you do not have access to it."
    return _ApiError(404, message, code="model_not_found")


def _too_long(param: str, limit: int, length: int) -> _ApiError:
    message = (
        f"Invalid '{param}': string too long. Expected a string with maximum "
        f"length {limit}, but got a string with length {length} instead."
    )
    return _ApiError(400, message, param=param, code="string_above_max_length")


def _retry_after_headers(seconds: float) -> list[tuple[str, str]]:
    # The SDK ignores a zero delay, so the minimum is one millisecond.
    delay_ms = max(1, math.ceil(seconds * 1000))
    return [
        ("retry-after-ms", str(delay_ms)),
        ("retry-after", str(math.ceil(delay_ms / 1000))),
    ]


def _fault_error(
    fault: str, lane: str, model: object, retry_after_s: float | None
) -> _ApiError:
    """Build the error response for an injected HTTP-level fault."""
    if fault == "500":
        message = (
            "The server had an error while processing your request. Sorry about that!"
        )
        return _ApiError(500, message, error_type="server_error")

    if fault == "503":
        message = "The server is overloaded or not ready yet."
        return _ApiError(503, message, error_type="server_error")

    if fault == "429_rate_limit":
        headers = [] if retry_after_s is None else _retry_after_headers(retry_after_s)
        message = f"Rate limit reached for {model} on requests per min (RPM)."
        return _ApiError(
            429,
            message,
            error_type="requests",
            code="rate_limit_exceeded",
            headers=headers,
        )

    if fault == "429_quota":
        message = (
            "You exceeded your current quota, please check your plan and billing "
            "details. For more information on this error, read the docs: "
            "https://platform.openai.com/docs/guides/error-codes/api-errors."
        )
        return _ApiError(
            429, message, error_type="insufficient_quota", code="insufficient_quota"
        )

    if fault == "400_moderation":
        message = (
            "Your request was rejected by the safety system. Your prompt may "
            "contain text that is not allowed by the safety system."
        )
        error_type = (
            "image_generation_user_error"
            if lane == "images"
            else "invalid_request_error"
        )
        return _ApiError(400, message, error_type=error_type, code="moderation_blocked")

    if fault == "401":
        return _invalid_api_key()

    if fault == "403":
        message = f"Your organization must be verified to use the model `{model}`."
        return _ApiError(403, message)

    return _model_not_found(model)


def _invalid_api_key() -> _ApiError:
    # The real API echoes a masked key, but this fake never echoes any of it.
    message = (
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    )
    return _ApiError(401, message, code="invalid_api_key")


# --------------------------------------------------------------------------
# Request validation


def _check_speech(body: dict[str, Any]) -> str:
    """Validate a speech request body and return its response format."""
    model = body.get("model")
    if not model:
        raise _missing("model")

    if model not in SPEECH_MODELS:
        raise _model_not_found(model)

    text = body.get("input")
    if not isinstance(text, str):
        raise _missing("input")

    if len(text) > MAX_SPEECH_INPUT_CHARS:
        raise _too_long("input", MAX_SPEECH_INPUT_CHARS, len(text))

    _check_voice(body.get("voice"))
    if body.get("instructions") is not None and model in _MODELS_WITHOUT_INSTRUCTIONS:
        message = f"Instructions are not supported for the model `{model}`."
        raise _ApiError(
            400, message, param="instructions", code="unsupported_parameter"
        )

    _check_speed(body.get("speed"))
    if body.get("stream_format") not in (None, "audio"):
        message = "This fake server supports only stream_format 'audio'."
        raise _invalid_value("stream_format", message)

    response_format = body.get("response_format") or "mp3"
    if response_format not in AUDIO_CONTENT_TYPES:
        supported = ", ".join(AUDIO_CONTENT_TYPES)
        message = (
            f"Invalid value: '{response_format}'. Supported values are: {supported}."
        )
        raise _invalid_value("response_format", message)

    return str(response_format)


def _check_voice(voice: object) -> None:
    if voice is None:
        raise _missing("voice")

    if isinstance(voice, dict) and isinstance(voice.get("id"), str):
        return

    # NOTE: tts-1 and tts-1-hd may reject the newer voices, but this fake
    # accepts every built-in voice for every model.
    if voice not in _VOICES:
        supported = ", ".join(sorted(_VOICES))
        message = f"Invalid value: '{voice}'. Supported values are: {supported}."
        raise _invalid_value("voice", message)


def _check_speed(speed: object) -> None:
    if speed is None:
        return

    if not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        message = f"Invalid 'speed': {speed}. Expected a number from 0.25 to 4.0."
        raise _invalid_value("speed", message)


@dataclasses.dataclass(slots=True)
class _ImageRequest:
    prompt: str
    count: int
    size: str
    quality: str
    output_format: str
    background: str | None


def _check_image(body: dict[str, Any]) -> _ImageRequest:
    """Validate an image generation body and resolve its defaults."""
    model = body.get("model")
    if not model:
        raise _missing("model")

    if model not in IMAGE_MODELS:
        raise _model_not_found(model)

    for param in ("response_format", "style"):
        if body.get(param) is not None:
            message = f"Unknown parameter: '{param}'."
            raise _ApiError(400, message, param=param, code="unknown_parameter")

    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise _missing("prompt")

    if len(prompt) > MAX_IMAGE_PROMPT_CHARS:
        raise _too_long("prompt", MAX_IMAGE_PROMPT_CHARS, len(prompt))

    if body.get("stream"):
        raise _invalid_value("stream", "This fake server does not stream images.")

    return _ImageRequest(
        prompt=prompt,
        count=_check_image_count(body.get("n")),
        size=_check_size(str(model), body.get("size")),
        quality=_check_quality(str(model), body.get("quality")),
        output_format=_check_output_format(body),
        background=body.get("background"),
    )


def _check_image_count(count: object) -> int:
    if count is None:
        return 1

    if not isinstance(count, int) or not 1 <= count <= 10:
        raise _invalid_value(
            "n", f"Invalid 'n': {count}. Expected an integer from 1 to 10."
        )

    return count


def _check_size(model: str, size: object) -> str:
    """Return the size to report: "auto" resolves to 1024x1024."""
    if size is None or size == "auto":
        return "1024x1024"

    if size in _STANDARD_SIZES:
        return str(size)

    if model in _CUSTOM_SIZE_IMAGE_MODELS and _is_valid_custom_size(size):
        return str(size)

    message = (
        f"Invalid value: '{size}'. Supported values are: '1024x1024', '1024x1536', "
        "'1536x1024' and 'auto'"
    )
    if model in _CUSTOM_SIZE_IMAGE_MODELS:
        message += (
            ", or WIDTHxHEIGHT with both sides divisible by 16, an aspect ratio "
            f"from 1:3 to 3:1 and at most {MAX_CUSTOM_SIZE_PIXELS} pixels"
        )

    raise _invalid_value("size", message + ".")


def _is_valid_custom_size(size: object) -> bool:
    if not isinstance(size, str):
        return False

    width_text, _, height_text = size.partition("x")
    if not (width_text.isdigit() and height_text.isdigit()):
        return False

    width, height = int(width_text), int(height_text)
    if width <= 0 or height <= 0 or width % 16 or height % 16:
        return False

    if max(width, height) > 3 * min(width, height):
        return False

    return (
        width * height <= MAX_CUSTOM_SIZE_PIXELS
        and max(width, height) <= MAX_CUSTOM_SIZE_EDGE
    )


def _check_quality(model: str, quality: object) -> str:
    """Return the quality to report: "auto" resolves to "medium"."""
    if quality is None or quality == "auto":
        return "medium"

    allowed = set(_BASE_QUALITIES)
    if model in _EXTRA_QUALITY_IMAGE_MODELS:
        allowed |= {"xhigh", "max"}

    if quality not in allowed:
        supported = ", ".join(sorted(allowed))
        message = (
            f"Invalid value: '{quality}'. Supported values for {model} are: "
            f"{supported}."
        )
        raise _invalid_value("quality", message)

    return str(quality)


def _check_output_format(body: dict[str, Any]) -> str:
    output_format = body.get("output_format") or "png"
    if output_format not in _IMAGE_FORMATS:
        message = (
            f"Invalid value: '{output_format}'. This fake server supports png, "
            "jpeg and webp."
        )
        raise _invalid_value("output_format", message)

    if body.get("background") == "transparent" and output_format == "jpeg":
        message = "Transparent background requires output_format png or webp."
        raise _invalid_value("background", message)

    return str(output_format)


def _image_payload(request: _ImageRequest) -> dict[str, Any]:
    width, _, height = request.size.partition("x")
    scale = int(width) * int(height) / (1024 * 1024)
    output_tokens = round(_OUTPUT_TOKENS_1024[request.quality] * scale) * request.count
    text_tokens = math.ceil(len(request.prompt) / 4)
    images = [
        {
            "b64_json": base64.b64encode(
                _build_image(request.prompt, request.output_format, i)
            ).decode()
        }
        for i in range(request.count)
    ]
    payload: dict[str, Any] = {
        "created": int(time.time()),
        "data": images,
        "output_format": request.output_format,
        "quality": request.quality,
        "size": request.size,
        "usage": {
            "input_tokens": text_tokens,
            "output_tokens": output_tokens,
            "total_tokens": text_tokens + output_tokens,
            "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
            "output_tokens_details": {"text_tokens": 0, "image_tokens": output_tokens},
        },
    }
    if request.background is not None:
        payload["background"] = (
            "transparent" if request.background == "transparent" else "opaque"
        )

    return payload


# --------------------------------------------------------------------------
# Rate limits, faults and records


class _RateLimiter:
    """A requests-per-minute limit over a sliding 60 s window for one lane.

    Only granted requests enter the window, so rejected ones cost nothing.
    A 429 carries the delay until the client may retry, rounded up to the
    millisecond so that a client obeying it does not return early. Waiting
    clients get distinct retry times, each the later of the next window slot
    to free and the previous promised time plus 60 s / rpm. Obedient clients
    therefore return one by one at the lane's average rate instead of all at
    once. With the window shortened to 1 s, 30 and 400 concurrent openai SDK
    clients kept a lane at 96 to 103 % of its limit on a 2-core machine.
    """

    def __init__(self, rpm: int) -> None:
        if rpm < 1:
            raise ValueError(
                f"rpm must be at least 1, got {rpm}. Use None for no limit."
            )

        self.rpm = rpm
        self._granted: collections.deque[float] = collections.deque()
        self._promised: collections.deque[float] = collections.deque()

    def acquire(self, now: float) -> tuple[bool, float, list[tuple[str, str]]]:
        """Take a slot and return (granted, retry_after_s, x-ratelimit headers)."""
        granted = self._granted
        while granted and granted[0] <= now - RATE_WINDOW_S:
            granted.popleft()

        while self._promised and self._promised[0] <= now:
            self._promised.popleft()

        if len(granted) < self.rpm:
            granted.append(now)
            return True, 0.0, self._headers(now)

        retry_at = self._next_free_slot()
        self._promised.append(retry_at)
        return False, retry_at - now, self._headers(now)

    def _next_free_slot(self) -> float:
        waiting = len(self._promised)
        rounds, index = divmod(waiting, len(self._granted))
        retry_at = self._granted[index] + RATE_WINDOW_S * (rounds + 1)
        if self._promised:
            spacing_s = RATE_WINDOW_S / self.rpm
            retry_at = max(retry_at, self._promised[-1] + spacing_s)

        return retry_at

    def _headers(self, now: float) -> list[tuple[str, str]]:
        # OpenAI defines the reset as the time until the limit is back to its
        # initial state, that is until the newest granted request expires.
        reset_s = self._granted[-1] + RATE_WINDOW_S - now if self._granted else 0.0
        return [
            ("x-ratelimit-limit-requests", str(self.rpm)),
            ("x-ratelimit-remaining-requests", str(self.rpm - len(self._granted))),
            ("x-ratelimit-reset-requests", format_duration(reset_s)),
        ]


@dataclasses.dataclass(slots=True)
class _FaultRule:
    fault: str
    lane: str | None
    match: str | None
    remaining: int | None
    retry_after_s: float | None

    def matches(self, lane: str, text: str | None) -> bool:
        if self.lane is not None and self.lane != lane:
            return False

        return self.match is None or (text is not None and self.match in text)


@dataclasses.dataclass(slots=True)
class RecordedRequest:
    """One request to an API path, as the fake server received and handled it.

    The Authorization header is never stored, only whether it was valid.
    """

    request_id: str
    #: "audio", "images", or "other" for a path the fake does not serve.
    lane: str
    method: str
    path: str
    #: Parsed JSON body, or None when the body was not a JSON object.
    body: dict[str, Any] | None
    model: str | None
    #: Speech ``input`` or image ``prompt``.
    text: str | None
    auth_valid: bool
    #: The SDK's ``x-stainless-retry-count`` header (0 on a first attempt).
    retry_count: int | None
    connection_id: int
    started_s: float
    #: HTTP status sent, or None while in flight and after reset or stall.
    status: int | None = None
    fault: str | None = None
    error_code: str | None = None
    ended_s: float | None = None


@dataclasses.dataclass(slots=True)
class _HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadHttpRequest(f"invalid request line {lines[0][:80]!r}")

    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()

    return parts[0], parts[1], parts[2], headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError as error:
            raise _BadHttpRequest(f"invalid chunk size {size_line[:20]!r}") from error

        if size == 0:
            await _skip_trailers(reader)
            return b"".join(chunks)

        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _skip_trailers(reader: asyncio.StreamReader) -> None:
    # The last chunk is followed by CRLF alone or by trailer lines and CRLFCRLF.
    first = await reader.readexactly(2)
    if first != b"\r\n":
        await reader.readuntil(b"\r\n\r\n")


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> _HttpRequest | None:
    """Read one request, or return None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if error.partial.strip():
            raise _BadHttpRequest(
                "connection closed inside the request head"
            ) from error
        return None
    except asyncio.LimitOverrunError as error:
        raise _BadHttpRequest("request head larger than 64 KiB") from error

    method, target, version, headers = _parse_head(head[:-4])
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(_CONTINUE)

    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    else:
        body = await _read_body(reader, headers.get("content-length", "0"))

    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.1":
        keep_alive = connection != "close"
    else:
        keep_alive = connection == "keep-alive"

    return _HttpRequest(method, target.partition("?")[0], headers, body, keep_alive)


async def _read_body(reader: asyncio.StreamReader, length_text: str) -> bytes:
    if not length_text.isdigit():
        raise _BadHttpRequest(f"invalid Content-Length {length_text[:20]!r}")

    length = int(length_text)
    return await reader.readexactly(length) if length else b""


def _parse_json_body(raw: bytes) -> tuple[dict[str, Any] | None, _ApiError | None]:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None

    if isinstance(body, dict):
        return body, None

    message = (
        "We could not parse the JSON body of your request. The API expects a "
        "JSON object as the request body."
    )
    return None, _ApiError(400, message)


def _encode_head(response: _Response, request_id: str, keep_alive: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}",
        f"content-type: {response.content_type}",
        f"content-length: {len(response.body)}",
        f"x-request-id: {request_id}",
        "openai-version: 2020-10-01",
        "connection: keep-alive" if keep_alive else "connection: close",
    ]
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _reset_connection(writer: asyncio.StreamWriter) -> None:
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)

    writer.transport.abort()


async def _wait_for_client_close(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


def _new_request_id() -> str:
    return "req_" + os.urandom(16).hex()


# --------------------------------------------------------------------------
# The server


class FakeOpenAI:
    """A fake OpenAI API server on 127.0.0.1 with fault injection and recording.

    ``start()`` serves from a background thread with its own event loop, and
    ``start_async()`` serves on the running loop. The public methods are
    thread-safe. ``latency_s``, ``latency_jitter_s`` and ``fault_rate`` are
    read on every request, so a test may change them while the server runs.
    """

    def __init__(
        self,
        *,
        api_key: str = "sk-test",
        latency_s: float = 0.0,
        latency_jitter_s: float = 0.0,
        audio_rpm: int | None = None,
        image_rpm: int | None = None,
        fault_rate: float = 0.0,
        seed: int = 0,
        port: int = 0,
        max_records: int | None = None,
    ) -> None:
        if latency_s < 0 or latency_jitter_s < 0:
            raise ValueError(
                f"latency_s ({latency_s}) and latency_jitter_s ({latency_jitter_s}) "
                "must not be negative"
            )
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be from 0.0 to 1.0, got {fault_rate}")

        self.latency_s = latency_s
        self.latency_jitter_s = latency_jitter_s
        self.fault_rate = fault_rate
        self._expected_authorization = f"Bearer {api_key}"
        self._rpm = {"audio": audio_rpm, "images": image_rpm}
        self._limiters = self._new_limiters()
        self._fault_rng = random.Random(seed)
        self._jitter_rng = random.Random(seed + 1)
        self._requested_port = port

        self._lock = threading.Lock()
        self._in_flight_changed = threading.Condition(self._lock)
        self._records: collections.deque[RecordedRequest] = collections.deque(
            maxlen=max_records
        )
        self._lane_totals: collections.Counter[str] = collections.Counter()
        self._status_counts: collections.Counter[tuple[str, int | None]] = (
            collections.Counter()
        )
        self._rate_limited: collections.Counter[str] = collections.Counter()
        self._fault_counts: collections.Counter[str] = collections.Counter()
        self._rules: list[_FaultRule] = []
        self._release_event: asyncio.Event | None = None
        self._in_flight = 0
        self._next_connection_id = 1

        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id: int | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connection_tasks: set[asyncio.Task[None]] = set()
        self._port: int | None = None

    def __repr__(self) -> str:
        where = self.base_url if self._port is not None else "stopped"
        return (
            f"<FakeOpenAI {where} requests={self.count()} in_flight={self._in_flight}>"
        )

    # -- lifecycle

    @property
    def port(self) -> int:
        """The TCP port the server listens on (RuntimeError before start)."""
        if self._port is None:
            raise RuntimeError("FakeOpenAI is not running. Call start() first.")

        return self._port

    @property
    def base_url(self) -> str:
        """The API base URL, for example ``http://127.0.0.1:40123/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        """Start serving from a background thread and return self."""
        if self._loop is not None:
            raise RuntimeError("FakeOpenAI is already running")

        loop = asyncio.new_event_loop()
        # The server thread shares the GIL with the client under test, so in
        # asyncio debug mode GIL waits alone can pass the default 0.1 s
        # slow-callback threshold and log warnings that are not server bugs.
        loop.slow_callback_duration = 0.5
        thread = threading.Thread(
            target=_run_loop_forever, args=(loop,), name="fake-openai", daemon=True
        )
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            asyncio.run_coroutine_threadsafe(self._open(), loop).result(timeout=10)
        except BaseException:
            self._stop_thread()
            raise

        return self

    def stop(self) -> None:
        """Stop the background server, closing held and stalled connections."""
        if self._thread is None:
            if self._loop is not None:
                raise RuntimeError(
                    "This server runs on an event loop. Await stop_async() instead."
                )
            return

        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
        try:
            future.result(timeout=10)
        finally:
            self._stop_thread()

    def _stop_thread(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def start_async(self) -> FakeOpenAI:
        """Start serving on the running event loop and return self."""
        if self._loop is not None:
            raise RuntimeError("FakeOpenAI is already running")

        self._loop = asyncio.get_running_loop()
        try:
            await self._open()
        except BaseException:
            self._loop = None
            raise

        return self

    async def stop_async(self) -> None:
        """Stop a server started with ``start_async()``."""
        if self._thread is not None:
            raise RuntimeError("This server runs in a thread. Call stop() instead.")

        if self._loop is not None:
            await self._close()
            self._loop = None

    async def __aenter__(self) -> FakeOpenAI:
        return await self.start_async()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop_async()

    async def _open(self) -> None:
        self._loop_thread_id = threading.get_ident()
        self._server = await asyncio.start_server(
            self._on_connection, "127.0.0.1", self._requested_port, backlog=1024
        )
        self._port = self._server.sockets[0].getsockname()[1]
        logger.info("Fake OpenAI server listening on %s", self.base_url)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()

        tasks = list(self._connection_tasks)
        for task in tasks:
            task.cancel()

        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

        logger.info(
            "Fake OpenAI server on port %s stopped: %s", self._port, self.stats()
        )
        self._server = None
        self._port = None
        self._loop_thread_id = None

    # -- control

    def inject(
        self,
        fault: str,
        *,
        lane: str | None = None,
        match: str | None = None,
        times: int | None = 1,
        retry_after_s: float | None = None,
    ) -> None:
        """Make the next ``times`` matching requests fail with ``fault``.

        ``lane`` limits the rule to "audio" or "images", and ``match`` limits
        it to requests whose speech input or image prompt contains that
        substring. ``times=None`` applies the fault forever. ``retry_after_s``
        adds retry-after and retry-after-ms headers to a ``429_rate_limit``.
        Rules apply in the order injected, and a request takes at most one.
        """
        if fault not in FAULTS:
            raise ValueError(
                f"unknown fault {fault!r}, expected one of {', '.join(FAULTS)}"
            )

        if lane is not None and lane not in LANES:
            raise ValueError(
                f"unknown lane {lane!r}, expected 'audio', 'images' or None"
            )

        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 or None (forever), got {times}")

        rule = _FaultRule(fault, lane, match, times, retry_after_s)
        with self._lock:
            self._rules.append(rule)

    def hold(self) -> None:
        """Make new requests wait until ``release()`` before the server responds."""
        with self._lock:
            if self._release_event is None:
                self._release_event = asyncio.Event()

    def release(self) -> None:
        """Let held requests and later ones proceed."""
        with self._lock:
            event, self._release_event = self._release_event, None

        if event is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(event.set)

    def wait_in_flight(self, count: int, timeout_s: float = 5.0) -> int:
        """Block until at least ``count`` API requests are in flight, return the number.

        A request is in flight from the end of its body until its response is
        written or its connection dropped, so held and stalled requests count.
        Raises TimeoutError after ``timeout_s``.
        """
        if threading.get_ident() == self._loop_thread_id:
            raise RuntimeError(
                "wait_in_flight() would block the server loop. "
                "Await wait_in_flight_async() instead."
            )

        deadline = time.monotonic() + timeout_s
        with self._in_flight_changed:
            while self._in_flight < count:
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    raise self._in_flight_timeout(count, timeout_s)

                self._in_flight_changed.wait(remaining_s)

            return self._in_flight

    async def wait_in_flight_async(self, count: int, timeout_s: float = 5.0) -> int:
        """Wait like ``wait_in_flight()`` without blocking the running loop."""
        deadline = time.monotonic() + timeout_s
        while self._in_flight < count:
            if time.monotonic() >= deadline:
                raise self._in_flight_timeout(count, timeout_s)

            await asyncio.sleep(0.002)

        return self._in_flight

    def _in_flight_timeout(self, count: int, timeout_s: float) -> TimeoutError:
        return TimeoutError(
            f"{self._in_flight} of {count} requests in flight after {timeout_s} s"
        )

    def reset_records(self) -> None:
        """Forget recorded requests and zero every counter."""
        with self._lock:
            self._records.clear()
            self._lane_totals.clear()
            self._status_counts.clear()
            self._rate_limited.clear()
            self._fault_counts.clear()

    def reset(self) -> None:
        """Reset records, drop injected faults, empty the rate windows, release."""
        self.reset_records()
        with self._lock:
            self._rules.clear()
            self._limiters = self._new_limiters()

        self.release()

    def _new_limiters(self) -> dict[str, _RateLimiter | None]:
        return {
            lane: None if rpm is None else _RateLimiter(rpm)
            for lane, rpm in self._rpm.items()
        }

    # -- recording

    @property
    def requests(self) -> list[RecordedRequest]:
        """Shallow copies of the recorded requests, oldest first."""
        with self._lock:
            return [copy.copy(record) for record in self._records]

    def requests_for(self, text: str) -> list[RecordedRequest]:
        """Recorded requests whose speech input or image prompt contains ``text``."""
        return [r for r in self.requests if r.text is not None and text in r.text]

    def count(self, lane: str | None = None, status: int | None = None) -> int:
        """Count API requests by lane and by status sent (None: any status).

        The counters survive ``max_records`` trimming. ``status=None`` also
        counts requests still in flight and those that ended without a response.
        """
        with self._lock:
            if status is None:
                totals = self._lane_totals.items()
                return sum(n for name, n in totals if lane in (None, name))

            statuses = self._status_counts.items()
            return sum(
                n
                for (name, code), n in statuses
                if code == status and lane in (None, name)
            )

    def stats(self) -> dict[str, Any]:
        """Counts per lane and status, limiter 429s per lane and injected faults.

        Status key "none" counts requests that ended without a status line
        (reset or stall).
        """
        with self._lock:
            lanes: dict[str, Any] = {}
            for lane, total in self._lane_totals.items():
                lanes[lane] = {
                    "total": total,
                    "status": {},
                    "rate_limited": self._rate_limited[lane],
                }
            for (lane, status), n in self._status_counts.items():
                lanes[lane]["status"]["none" if status is None else str(status)] = n

            return {
                "total": sum(self._lane_totals.values()),
                "in_flight": self._in_flight,
                "lanes": lanes,
                "faults": dict(self._fault_counts),
            }

    def _start_record(
        self, request: _HttpRequest, lane: str, connection_id: int
    ) -> tuple[RecordedRequest, _ApiError | None]:
        body, body_error = (
            (None, None) if lane == "other" else _parse_json_body(request.body)
        )
        text = None
        if body is not None:
            value = body.get("input" if lane == "audio" else "prompt")
            text = value if isinstance(value, str) else None

        model = body.get("model") if body is not None else None
        retry_count = request.headers.get("x-stainless-retry-count", "")
        record = RecordedRequest(
            request_id=_new_request_id(),
            lane=lane,
            method=request.method,
            path=request.path,
            body=body,
            model=model if isinstance(model, str) else None,
            text=text,
            auth_valid=request.headers.get("authorization")
            == self._expected_authorization,
            retry_count=int(retry_count) if retry_count.isdigit() else None,
            connection_id=connection_id,
            started_s=time.monotonic(),
        )
        with self._lock:
            self._records.append(record)
            self._lane_totals[lane] += 1
            self._in_flight += 1
            self._in_flight_changed.notify_all()

        return record, body_error

    def _finish_record(
        self, record: RecordedRequest, status: int | None, error_code: str | None
    ) -> None:
        with self._lock:
            record.status = status
            record.error_code = error_code
            record.ended_s = time.monotonic()
            self._status_counts[record.lane, status] += 1
            if record.fault is not None:
                self._fault_counts[record.fault] += 1
            self._in_flight -= 1
            self._in_flight_changed.notify_all()

    # -- connections

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connection_tasks.add(task)
        connection_id = self._next_connection_id
        self._next_connection_id += 1
        try:
            await self._serve_connection(reader, writer, connection_id)
        except (ConnectionError, asyncio.IncompleteReadError):
            logger.debug("Connection %d closed by the client", connection_id)
        except asyncio.CancelledError:
            # stop() cancels open connections. Ending normally keeps asyncio's
            # start_server callback from logging the cancellation as an error.
            logger.debug("Connection %d closed by stop()", connection_id)
        except Exception:
            logger.exception("Connection %d failed", connection_id)
        finally:
            self._connection_tasks.discard(task)
            writer.close()

    async def _serve_connection(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection_id: int,
    ) -> None:
        keep_alive = True
        while keep_alive:
            try:
                request = await _read_request(reader, writer)
            except _BadHttpRequest as error:
                logger.warning(
                    "Connection %d sent a bad request: %s", connection_id, error
                )
                response = _error_response(
                    _ApiError(400, f"Bad HTTP request: {error}.")
                )
                writer.write(
                    _encode_head(response, _new_request_id(), False) + response.body
                )
                return

            if request is None:
                return

            if request.path.startswith("/_fake/"):
                response = self._control(request)
                head = _encode_head(response, _new_request_id(), request.keep_alive)
                writer.write(head + response.body)
                await writer.drain()
                keep_alive = request.keep_alive
            else:
                keep_alive = await self._serve_api(
                    request, reader, writer, connection_id
                )

    async def _serve_api(
        self,
        request: _HttpRequest,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection_id: int,
    ) -> bool:
        """Serve one API request and return whether the connection stays open."""
        lane = (
            _API_PATHS.get(request.path, "other")
            if request.method == "POST"
            else "other"
        )
        record, body_error = self._start_record(request, lane, connection_id)
        try:
            event = self._release_event
            if event is not None:
                await event.wait()
                arrived_s = time.monotonic()
            else:
                arrived_s = record.started_s

            outcome = await self._build_outcome(request, record, body_error, arrived_s)
        except BaseException:
            self._finish_record(record, None, None)
            raise

        # The record is finished before the first response byte leaves, so a
        # client that has read the response always finds the status recorded.
        if outcome == "stall":
            try:
                await _wait_for_client_close(reader)
            finally:
                self._finish_record(record, None, None)
            return False

        if outcome == "reset":
            self._finish_record(record, None, None)
            _reset_connection(writer)
            return False

        assert isinstance(outcome, _Response)
        self._finish_record(record, outcome.status, outcome.error_code)
        return await self._send(writer, outcome, record, request.keep_alive)

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        response: _Response,
        record: RecordedRequest,
        keep_alive: bool,
    ) -> bool:
        head = _encode_head(response, record.request_id, keep_alive)
        if record.fault == "half_body":
            # Full Content-Length, half the body, then FIN.
            writer.write(head + response.body[: len(response.body) // 2])
            await writer.drain()
            return False

        writer.write(head + response.body)
        await writer.drain()
        return keep_alive

    async def _build_outcome(
        self,
        request: _HttpRequest,
        record: RecordedRequest,
        body_error: _ApiError | None,
        arrived_s: float,
    ) -> _Response | str:
        """Return the response to send, or the transport fault "reset" or "stall"."""
        if record.lane == "other":
            message = f"Invalid URL ({request.method} {request.path})"
            return _error_response(_ApiError(404, message))

        if not record.auth_valid:
            return _error_response(_invalid_api_key())

        fault, retry_after_s = self._take_fault(record)
        record.fault = fault
        if fault is not None and fault != "half_body":
            return await self._fault_outcome(record, fault, retry_after_s, arrived_s)

        try:
            if body_error is not None:
                raise body_error

            return await self._generate(record, arrived_s)
        except _ApiError as error:
            return _error_response(error)

    async def _fault_outcome(
        self,
        record: RecordedRequest,
        fault: str,
        retry_after_s: float | None,
        arrived_s: float,
    ) -> _Response | str:
        logger.debug("Injecting fault %s into request %s", fault, record.request_id)
        if fault == "stall":
            return fault

        if fault not in _NO_LATENCY_FAULTS:
            await self._sleep_latency(arrived_s)

        if fault == "reset":
            return fault

        error = _fault_error(fault, record.lane, record.model, retry_after_s)
        return _error_response(error)

    def _take_fault(self, record: RecordedRequest) -> tuple[str | None, float | None]:
        with self._lock:
            for index, rule in enumerate(self._rules):
                if rule.matches(record.lane, record.text):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining == 0:
                            del self._rules[index]
                    return rule.fault, rule.retry_after_s

        if self.fault_rate > 0 and self._fault_rng.random() < self.fault_rate:
            return self._fault_rng.choice(("500", "503", "reset")), None

        return None, None

    async def _sleep_latency(self, arrived_s: float) -> None:
        """Wait until the latency has passed since ``arrived_s``.

        The server's own work since then is part of the latency, so the
        response leaves as close to ``latency_s`` after the request's arrival
        as the event loop's timer allows (it wakes up to 1 ms late).
        """
        delay_s = self.latency_s
        if self.latency_jitter_s > 0:
            delay_s += self._jitter_rng.uniform(0.0, self.latency_jitter_s)

        if delay_s > 0:
            await asyncio.sleep(arrived_s + delay_s - time.monotonic())

    async def _generate(self, record: RecordedRequest, arrived_s: float) -> _Response:
        assert record.body is not None
        if record.lane == "audio":
            response_format = _check_speech(record.body)
            headers = self._take_rate_limit_slot(record)
            audio = build_speech_audio(record.body["input"], response_format)
            await self._sleep_latency(arrived_s)
            return _Response(200, audio, AUDIO_CONTENT_TYPES[response_format], headers)

        image_request = _check_image(record.body)
        headers = self._take_rate_limit_slot(record)
        response = _json_response(200, _image_payload(image_request))
        response.headers = headers
        await self._sleep_latency(arrived_s)
        return response

    def _take_rate_limit_slot(self, record: RecordedRequest) -> list[tuple[str, str]]:
        """Return the x-ratelimit headers, or raise the 429 when the lane is full."""
        with self._lock:
            limiter = self._limiters[record.lane]
            if limiter is None:
                return []

            granted, retry_after_s, headers = limiter.acquire(time.monotonic())
            if granted:
                return headers

            self._rate_limited[record.lane] += 1

        message = (
            f"Rate limit reached for {record.model} on requests per min (RPM): "
            f"Limit {limiter.rpm}, Used {limiter.rpm}, Requested 1. Please try "
            f"again in {format_duration(retry_after_s)}."
        )
        raise _ApiError(
            429,
            message,
            error_type="requests",
            code="rate_limit_exceeded",
            headers=headers + _retry_after_headers(retry_after_s),
        )

    # -- HTTP control endpoints

    def _control(self, request: _HttpRequest) -> _Response:
        route = (request.method, request.path)
        if route == ("GET", "/_fake/requests"):
            return _json_response(200, [dataclasses.asdict(r) for r in self.requests])

        if route == ("GET", "/_fake/stats"):
            return _json_response(200, self.stats())

        if route == ("POST", "/_fake/inject"):
            return self._control_inject(request.body)

        actions = {
            ("POST", "/_fake/reset"): self.reset,
            ("POST", "/_fake/hold"): self.hold,
            ("POST", "/_fake/release"): self.release,
        }
        action = actions.get(route)
        if action is None:
            message = f"Invalid URL ({request.method} {request.path})"
            return _error_response(_ApiError(404, message))

        action()
        return _json_response(200, {"ok": True})

    def _control_inject(self, raw: bytes) -> _Response:
        body, error = _parse_json_body(raw)
        if error is not None:
            return _error_response(error)

        assert body is not None
        allowed = {"fault", "lane", "match", "times", "retry_after_s"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            message = f"Unknown inject arguments {unknown}, expected {sorted(allowed)}."
            return _error_response(_ApiError(400, message))

        try:
            fault = body.pop("fault")
            self.inject(fault, **body)
        except (KeyError, TypeError, ValueError) as failure:
            return _error_response(
                _ApiError(400, f"Invalid inject request: {failure}.")
            )

        return _json_response(200, {"ok": True})


def _run_loop_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# --------------------------------------------------------------------------
# Command line


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Serve a fake OpenAI speech and images API on 127.0.0.1."
    )
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port (default 0: any free port)"
    )
    parser.add_argument(
        "--api-key", default="sk-test", help="the only API key accepted"
    )

    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay per request in ms"
    )
    parser.add_argument(
        "--latency-jitter-ms",
        type=float,
        default=0.0,
        help="extra random delay from 0 to this many ms",
    )

    parser.add_argument(
        "--audio-rpm", type=int, default=None, help="speech requests per minute"
    )
    parser.add_argument(
        "--image-rpm", type=int, default=None, help="image requests per minute"
    )

    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        help="share of requests (0.0 to 1.0) that fail with a random 500, 503 or reset",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random faults")

    parser.add_argument(
        "--max-records", type=int, default=None, help="keep only the newest N records"
    )
    parser.add_argument(
        "--log-level", default="WARNING", help="logging level on stderr"
    )
    return parser.parse_args(argv)


async def _serve_until_signal(args: argparse.Namespace) -> None:
    fake = FakeOpenAI(
        api_key=args.api_key,
        latency_s=args.latency_ms / 1000,
        latency_jitter_s=args.latency_jitter_ms / 1000,
        audio_rpm=args.audio_rpm,
        image_rpm=args.image_rpm,
        fault_rate=args.fault_rate,
        seed=args.seed,
        port=args.port,
        max_records=args.max_records,
    )
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop_requested.set)

    await fake.start_async()
    try:
        print(f"READY {fake.base_url}", flush=True)
        await stop_requested.wait()
    finally:
        await fake.stop_async()


def main(argv: list[str] | None = None) -> int:
    """Run the fake server until SIGTERM or SIGINT and return the exit code."""
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # select() takes its timeout in microseconds where epoll takes
    # milliseconds: here sleeps of 200 ms overshot by 0.48 ms instead of 0.9
    # ms. It watches descriptors below 1024 only, which is plenty for the
    # benchmarks' hundred or so connections.
    with asyncio.Runner(loop_factory=_precise_timer_loop) as runner:
        runner.run(_serve_until_signal(args))
    return 0


def _precise_timer_loop() -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


if __name__ == "__main__":
    sys.exit(main())
