"""An httpx2 transport that serves the speech and image endpoints offline.

``LocalTransport`` serves ``POST /v1/audio/speech`` with eSpeak NG audio and
``POST /v1/images/generations`` with Pillow picture cards, using the status
codes, headers and JSON shapes of the OpenAI API, so an ``AsyncOpenAI`` client
built on it behaves as it does against the real service::

    client = create_local_client()
    audio = await client.audio.speech.create(
        model="gpt-4o-mini-tts", voice="coral", input="cat", response_format="aac"
    )

Synthesis, encoding and drawing run in worker threads through
``asyncio.to_thread``, so they do not block the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx2

from esl_assets.errors import EslAssetsError
from esl_assets.local_provider.api import (
    ApiError,
    ImageRequest,
    SpeechRequest,
    decode_body,
    parse_image_request,
    parse_speech_request,
)
from esl_assets.local_provider.card import draw_card, require_pillow
from esl_assets.local_provider.encode import (
    CONTENT_TYPES,
    encode_audio,
    resolve_audio_format,
)
from esl_assets.local_provider.speech import synthesize_pcm

if TYPE_CHECKING:
    from openai import AsyncOpenAI

logger = logging.getLogger(__name__)

#: API key the tool passes to ``AsyncOpenAI`` for the local provider.
LOCAL_API_KEY = "local"

#: Base URL of the local provider. The ``.invalid`` top-level domain never
#: resolves, so a request that bypasses the transport fails instead of leaving
#: the machine.
LOCAL_BASE_URL = "http://local.invalid/v1"

# Output tokens of one 1024x1024 image by quality, scaled by area for other
# sizes. NOTE: these are gpt-image-1 figures quoted from memory, not checked
# against current pricing, so the usage of a local response is only an estimate.
_OUTPUT_TOKENS_AT_1024 = {
    "low": 272,
    "medium": 1056,
    "high": 4160,
    "xhigh": 4160,
    "max": 4160,
}

Handler = Callable[[dict[str, Any]], Awaitable[httpx2.Response]]


class LocalTransport(httpx2.AsyncBaseTransport):
    """Serve the OpenAI speech and image endpoints from local engines.

    Creating and closing a transport is cheap: eSpeak NG is loaded once per
    process on the first speech request, and the transport owns no threads or
    sockets.
    """

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/v1/audio/speech"): self._create_speech,
            ("POST", "/v1/images/generations"): self._create_image,
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} base_url={LOCAL_BASE_URL!r}>"

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        path = request.url.path
        handler = self._routes.get((request.method, path))
        try:
            if handler is None:
                raise ApiError(404, f"Invalid URL ({request.method} {path})")
            response = await handler(decode_body(body))
        except ApiError as error:
            logger.debug(
                "Local provider rejected %s %s: %s", request.method, path, error
            )
            response = _json_response(error.status_code, error.body())
        except EslAssetsError:
            raise
        except Exception as error:  # noqa: BLE001 - the API returns 500 on server faults
            logger.exception("Local provider failed on %s %s", request.method, path)
            failure = ApiError(
                500,
                f"The local provider failed: {type(error).__name__}: {error}",
                error_type="server_error",
            )
            response = _json_response(500, failure.body())

        response.request = request
        return response

    async def aclose(self) -> None:
        """Close the transport, which owns no resources, so this does nothing."""

    async def _create_speech(self, payload: dict[str, Any]) -> httpx2.Response:
        speech = parse_speech_request(payload)
        started = time.perf_counter()
        audio, audio_format = await asyncio.to_thread(render_speech, speech)
        elapsed_ms = round((time.perf_counter() - started) * 1000)
        logger.debug(
            "Local speech: %d characters, voice %s, %s, %d bytes in %d ms",
            len(speech.text),
            speech.voice,
            audio_format,
            len(audio),
            elapsed_ms,
        )
        headers = _response_headers(elapsed_ms)
        headers["content-type"] = CONTENT_TYPES[audio_format]
        return httpx2.Response(200, headers=headers, content=audio)

    async def _create_image(self, payload: dict[str, Any]) -> httpx2.Response:
        image_request = parse_image_request(payload)
        started = time.perf_counter()
        image = await asyncio.to_thread(render_image, image_request)
        elapsed_ms = round((time.perf_counter() - started) * 1000)
        logger.debug(
            "Local image: %dx%d %s, %d bytes in %d ms",
            *image_request.size,
            image_request.output_format,
            len(image),
            elapsed_ms,
        )
        body = _image_response_body(image_request, image)
        return _json_response(200, body, _response_headers(elapsed_ms))


def render_speech(speech: SpeechRequest) -> tuple[bytes, str]:
    """Synthesise and encode a speech request; return the audio and its format.

    The format differs from ``speech.response_format`` only when that format
    cannot be encoded here, and is then ``"wav"``.
    """
    pcm, sample_rate = synthesize_pcm(speech.text, speech.voice, speech.speed)
    audio_format = resolve_audio_format(speech.response_format)
    return encode_audio(pcm, sample_rate, audio_format), audio_format


def render_image(image_request: ImageRequest) -> bytes:
    """Draw the card of an image request, or its prompt when it has no card."""
    card = image_request.card
    if card is None or not (card.word or card.pos or card.definition):
        return draw_card(
            "",
            "",
            image_request.prompt,
            image_request.size,
            image_request.output_format,
        )
    return draw_card(
        card.word,
        card.pos,
        card.definition,
        image_request.size,
        image_request.output_format,
        level=card.level,
    )


def _image_response_body(image_request: ImageRequest, image: bytes) -> dict[str, Any]:
    width, height = image_request.size
    encoded = base64.b64encode(image).decode("ascii")
    input_tokens = max(1, math.ceil(len(image_request.prompt) / 4))
    tokens_per_image = math.ceil(
        _OUTPUT_TOKENS_AT_1024[image_request.quality] * width * height / (1024 * 1024)
    )
    output_tokens = tokens_per_image * image_request.count
    return {
        "created": int(time.time()),
        "background": "opaque",
        "data": [{"b64_json": encoded} for _ in range(image_request.count)],
        "output_format": image_request.output_format,
        "quality": image_request.quality,
        "size": f"{width}x{height}",
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"text_tokens": input_tokens, "image_tokens": 0},
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        },
    }


def _response_headers(elapsed_ms: int) -> dict[str, str]:
    return {
        "x-request-id": f"req_local_{uuid.uuid4().hex}",
        "openai-processing-ms": str(elapsed_ms),
    }


def _json_response(
    status_code: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx2.Response:
    if headers is None:
        headers = _response_headers(0)
    return httpx2.Response(status_code, headers=headers, json=body)


def create_local_client() -> AsyncOpenAI:
    """Return an ``AsyncOpenAI`` client whose requests ``LocalTransport`` serves."""
    from openai import AsyncOpenAI

    return AsyncOpenAI(
        api_key=LOCAL_API_KEY,
        base_url=LOCAL_BASE_URL,
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=LocalTransport()),
    )


def check_dependencies() -> None:
    """Load eSpeak NG and Pillow now, so a missing package fails before a run.

    Raises ``ConfigurationError`` naming the package to install.
    """
    synthesize_pcm("ok")
    require_pillow()
