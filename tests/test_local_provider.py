"""Tests of the offline provider through the real AsyncOpenAI client."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import math
import sys
import threading
from array import array
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest
from openai import AsyncOpenAI
from PIL import Image

from esl_assets.local_provider import (
    LOCAL_API_KEY,
    LOCAL_BASE_URL,
    LocalTransport,
    draw_card,
    encode,
    encode_audio,
    parse_size,
    speech,
    supported_audio_formats,
    synthesize_pcm,
    transport,
    voice_for,
)
from esl_assets.local_provider.api import parse_speech_request
from esl_assets.local_provider.encode import OUTPUT_SAMPLE_RATE
from esl_assets.local_provider.speech import OPENAI_VOICES, rate_for_speed

av = pytest.importorskip("av")

SPEECH_MODEL = "gpt-4o-mini-tts"
IMAGE_MODEL = "gpt-image-1.5"
DEFINITION = "a small domesticated animal with soft fur that people keep as a pet"


@pytest.fixture
async def client() -> AsyncIterator[AsyncOpenAI]:
    http_client = httpx2.AsyncClient(transport=LocalTransport())
    async with AsyncOpenAI(
        api_key=LOCAL_API_KEY,
        base_url=LOCAL_BASE_URL,
        max_retries=0,
        http_client=http_client,
    ) as openai_client:
        yield openai_client


@pytest.fixture
async def raw_client() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(
        transport=LocalTransport(), base_url="http://local.invalid"
    ) as http_client:
        yield http_client


async def speak(client: AsyncOpenAI, text: str, **options: Any) -> bytes:
    options.setdefault("voice", "alloy")
    options.setdefault("response_format", "pcm")
    response = await client.audio.speech.create(
        model=SPEECH_MODEL, input=text, **options
    )
    return response.content


def has_signature(audio: bytes, fmt: str) -> bool:
    if fmt == "mp3":
        # An ID3v2 tag, or an MPEG audio frame header (11 set sync bits).
        return audio[:3] == b"ID3" or (audio[0] == 0xFF and audio[1] & 0xE0 == 0xE0)
    if fmt == "aac":
        # ADTS frame header: 12 set sync bits.
        return audio[0] == 0xFF and audio[1] & 0xF0 == 0xF0
    if fmt == "opus":
        return audio[:4] == b"OggS" and b"OpusHead" in audio[:64]
    if fmt == "flac":
        return audio[:4] == b"fLaC"
    if fmt == "wav":
        return audio[:4] == b"RIFF" and audio[8:12] == b"WAVE"
    return len(audio) % 2 == 0


def decoded_seconds(audio: bytes) -> tuple[float, int]:
    """Decode a clip with PyAV; return its duration and sample rate."""
    with av.open(io.BytesIO(audio)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        rate = stream.codec_context.sample_rate
    return samples / rate, rate


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
async def test_speech_format_signature(client: AsyncOpenAI, fmt: str) -> None:
    response = await client.audio.speech.create(
        model=SPEECH_MODEL, voice="coral", input="Hello, cat.", response_format=fmt
    )
    audio = response.content
    expected = fmt if fmt in supported_audio_formats() else "wav"

    assert len(audio) > 1000
    assert has_signature(audio, expected)
    assert response.response.headers["content-type"] == encode.CONTENT_TYPES[expected]
    assert response.response.headers["x-request-id"].startswith("req_")


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
async def test_speech_decodes_with_duration(client: AsyncOpenAI, fmt: str) -> None:
    pcm = await speak(client, "Hello, cat.")
    audio = await speak(client, "Hello, cat.", response_format=fmt)
    pcm_seconds = len(pcm) / 2 / OUTPUT_SAMPLE_RATE

    seconds, _ = decoded_seconds(audio)

    # Encoders add priming and padding samples, so allow a tenth of a second.
    assert seconds == pytest.approx(pcm_seconds, abs=0.1)


async def test_speech_pcm_is_not_silent(client: AsyncOpenAI) -> None:
    samples = array("h")
    samples.frombytes(await speak(client, "Hello, cat."))

    assert max(abs(sample) for sample in samples) > 1000


async def test_speech_longer_text_longer_audio(client: AsyncOpenAI) -> None:
    short = await speak(client, "cat")
    long = await speak(client, f"cat. {DEFINITION}")

    assert len(long) > 2 * len(short)


def rms(pcm: bytes) -> float:
    samples = array("h")
    samples.frombytes(pcm)
    return math.sqrt(sum(sample * sample for sample in samples) / len(samples))


async def test_speech_voices_differ(client: AsyncOpenAI) -> None:
    # eSpeak NG output varies slightly between calls (pitch flutter state), so
    # compare the loudness gap between voices with the gap within one voice.
    alloy = rms(await speak(client, DEFINITION, voice="alloy"))
    alloy_again = rms(await speak(client, DEFINITION, voice="alloy"))
    onyx = rms(await speak(client, DEFINITION, voice="onyx"))

    assert abs(alloy - onyx) > 5 * abs(alloy - alloy_again)


async def test_speech_same_voice_close(client: AsyncOpenAI) -> None:
    first = await speak(client, DEFINITION, voice="shimmer")
    second = await speak(client, DEFINITION, voice="shimmer")

    assert len(second) == pytest.approx(len(first), rel=0.02)
    assert rms(second) == pytest.approx(rms(first), rel=0.02)


async def test_speech_custom_voice_object(client: AsyncOpenAI) -> None:
    audio = await speak(client, "cat", voice={"id": "voice_1234"})

    assert len(audio) > 0


def test_custom_voice_object_uses_id() -> None:
    payload = {"model": "tts", "input": "cat", "voice": {"id": "voice_1234"}}

    assert parse_speech_request(payload).voice == "voice_1234"


@pytest.mark.parametrize("name", ["alloy", "verse", "voice_1234", "x", "Zed"])
def test_voice_names_synthesise(name: str) -> None:
    pcm, _ = synthesize_pcm("cat", name)

    assert len(pcm) > 0


def test_fallback_voices_all_load() -> None:
    # Every language and variant a custom voice name can map to must exist.
    for language in speech._FALLBACK_LANGUAGES:
        voice = speech.EspeakVoice(language, "m1")
        with speech._ESPEAK_LOCK:
            pcm = speech._get_espeak().synthesize("cat", voice, 175)
        assert pcm, language
    for variant in speech._FALLBACK_VARIANTS:
        voice = speech.EspeakVoice("en-us", variant)
        with speech._ESPEAK_LOCK:
            pcm = speech._get_espeak().synthesize("cat", voice, 175)
        assert pcm, variant


async def test_speech_faster_speed_shorter(client: AsyncOpenAI) -> None:
    normal = await speak(client, DEFINITION, speed=1.0)
    fast = await speak(client, DEFINITION, speed=2.0)

    assert len(fast) < 0.8 * len(normal)


async def test_speech_input_at_limit_succeeds(client: AsyncOpenAI) -> None:
    text = ("word " * 1000)[:4096]

    audio = await speak(client, text)

    assert len(audio) > 0


async def test_speech_input_over_limit_rejected(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await speak(client, "a" * 4097)

    assert caught.value.status_code == 400
    assert caught.value.param == "input"
    assert caught.value.code == "string_above_max_length"
    assert "4097" in caught.value.message


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"speed": 5.0}, "speed"),
        ({"speed": 0.1}, "speed"),
        ({"response_format": "ogg"}, "response_format"),
        ({"voice": 7}, "voice"),
    ],
)
async def test_speech_invalid_option_rejected(
    client: AsyncOpenAI, options: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await speak(client, "cat", **options)

    assert caught.value.param == param


@pytest.mark.parametrize(
    "size", ["1024x1024", "1024x1536", "1536x1024", "256x256", "auto"]
)
async def test_image_decodes_at_size(client: AsyncOpenAI, size: str) -> None:
    result = await client.images.generate(
        model=IMAGE_MODEL,
        prompt="An illustration of a cat for an English learner.",
        size=size,
        extra_body={
            "esl_card": {"word": "cat", "pos": "noun", "definition": DEFINITION}
        },
    )
    expected = parse_size(size)

    assert result.data is not None
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json or "")))
    assert image.format == "PNG"
    assert image.size == expected
    assert result.size == f"{expected[0]}x{expected[1]}"


@pytest.mark.parametrize(("fmt", "pillow_name"), [("jpeg", "JPEG"), ("webp", "WEBP")])
async def test_image_output_format(
    client: AsyncOpenAI, fmt: str, pillow_name: str
) -> None:
    result = await client.images.generate(
        model=IMAGE_MODEL, prompt="a cat", size="1024x1536", output_format=fmt
    )

    assert result.data is not None
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json or "")))
    assert image.format == pillow_name
    assert image.size == (1024, 1536)
    assert result.output_format == fmt


async def test_image_response_shape(client: AsyncOpenAI) -> None:
    result = await client.images.generate(
        model=IMAGE_MODEL, prompt="a cat", quality="low", n=2
    )

    assert result.data is not None
    assert len(result.data) == 2
    assert result.created > 0
    assert result.quality == "low"
    assert result.usage is not None
    assert result.usage.input_tokens > 0
    assert result.usage.output_tokens > 0
    assert result.usage.total_tokens == (
        result.usage.input_tokens + result.usage.output_tokens
    )


@pytest.mark.parametrize(
    "size", ["1000x1000", "1024x4096", "3840x3840", "0x1024", "big", "1024x"]
)
async def test_image_invalid_size_rejected(client: AsyncOpenAI, size: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.images.generate(model=IMAGE_MODEL, prompt="a cat", size=size)

    assert caught.value.status_code == 400
    assert caught.value.param == "size"


async def test_image_bad_card_rejected(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.images.generate(
            model=IMAGE_MODEL, prompt="a cat", extra_body={"esl_card": ["cat"]}
        )

    assert caught.value.param == "esl_card"


async def test_unknown_path_not_found(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.models.list()

    assert caught.value.status_code == 404


async def test_error_body_shape(raw_client: httpx2.AsyncClient) -> None:
    response = await raw_client.post("/v1/audio/speech", json={"model": "tts"})

    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "input"
    assert error["code"] == "missing_required_parameter"


async def test_invalid_json_rejected(raw_client: httpx2.AsyncClient) -> None:
    response = await raw_client.post(
        "/v1/images/generations",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


async def test_concurrent_requests_succeed(client: AsyncOpenAI) -> None:
    speech = [
        speak(client, f"word number {index}", response_format="aac")
        for index in range(6)
    ]
    images = [
        client.images.generate(model=IMAGE_MODEL, prompt=f"card {index}")
        for index in range(4)
    ]

    results = await asyncio.gather(*speech, *images)

    assert len(results) == 10
    for audio in results[:6]:
        assert has_signature(
            audio, "aac" if "aac" in supported_audio_formats() else "wav"
        )
    for image in results[6:]:
        assert image.data is not None
        assert image.data[0].b64_json


async def test_work_runs_off_event_loop(
    client: AsyncOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    render_speech = transport.render_speech

    def record_thread(*args: Any) -> tuple[bytes, str]:
        threads.append(threading.get_ident())
        return render_speech(*args)

    monkeypatch.setattr(transport, "render_speech", record_thread)

    await speak(client, "cat")

    assert len(threads) == 1
    assert threads[0] != threading.get_ident()


async def test_transport_closes_cleanly() -> None:
    local = LocalTransport()

    async with httpx2.AsyncClient(transport=local) as http_client:
        response = await http_client.post(
            "http://local.invalid/v1/audio/speech",
            json={"model": "tts", "input": "cat", "voice": "echo"},
        )

    assert response.status_code == 200
    await local.aclose()


async def test_fallback_to_wav_when_encoder_missing(
    client: AsyncOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(
        encode, "_probe_supported_formats", lambda: frozenset({"wav", "pcm"})
    )
    monkeypatch.setattr(encode, "_warned_formats", set())

    with caplog.at_level(logging.WARNING, logger=encode.__name__):
        first = await client.audio.speech.create(
            model=SPEECH_MODEL, voice="alloy", input="cat", response_format="aac"
        )
        await speak(client, "dog", response_format="aac")

    assert supported_audio_formats() == {"wav", "pcm"}
    assert has_signature(first.content, "wav")
    assert first.response.headers["content-type"] == "audio/wav"
    warnings = [record for record in caplog.records if "aac" in record.getMessage()]
    assert len(warnings) == 1


def test_without_pyav_only_wav_pcm(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes "import av" raise ImportError.
    monkeypatch.setitem(sys.modules, "av", None)
    source = array("h", [1000] * 2205).tobytes()

    formats = encode._probe_supported_formats.__wrapped__()
    resampled = encode.resample_pcm(source, 22050, 24000)

    assert formats == {"wav", "pcm"}
    assert len(resampled) == 2 * 2400


def test_supported_formats_include_wav_pcm() -> None:
    formats = supported_audio_formats()

    assert {"wav", "pcm"} <= formats
    assert formats <= set(encode.AUDIO_FORMATS)


def test_builtin_voices_all_distinct() -> None:
    voices = [voice_for(name) for name in OPENAI_VOICES]

    assert len(set(voices)) == len(OPENAI_VOICES)


def test_unknown_voice_is_deterministic() -> None:
    assert voice_for("my-custom-voice") == voice_for("My-Custom-Voice ")
    assert voice_for("my-custom-voice").language.startswith("en")


@pytest.mark.parametrize(("speed", "expected"), [(1.0, 175), (0.25, 80), (4.0, 450)])
def test_rate_for_speed_clamps(speed: float, expected: int) -> None:
    assert rate_for_speed(speed) == expected


def test_synthesize_pcm_direct() -> None:
    pcm, sample_rate = synthesize_pcm("cat", "nova", 1.0)

    assert sample_rate > 8000
    assert len(pcm) > sample_rate // 10
    assert len(pcm) % 2 == 0


def test_encode_audio_empty_pcm() -> None:
    audio = encode_audio(b"", 22050, "wav")

    assert has_signature(audio, "wav")
    assert len(audio) > 44


def test_encode_audio_unknown_format() -> None:
    with pytest.raises(ValueError, match="ogg"):
        encode_audio(b"\0\0", 22050, "ogg")


def test_linear_resample_keeps_level() -> None:
    source = array("h", [1000] * 2205)

    resampled = array("h")
    resampled.frombytes(encode._resample_linear(source.tobytes(), 22050, 24000))

    assert len(resampled) == 2400
    assert set(resampled) == {1000}


@pytest.mark.parametrize(
    ("word", "definition"),
    [
        ("pneumonoultramicroscopicsilicovolcanoconiosis", "x" * 400),
        ("", "A watercolour picture of a cat. " * 300),
        ("cat", ""),
    ],
)
def test_draw_card_hard_text(word: str, definition: str) -> None:
    data = draw_card(word, "noun", definition, (512, 768), "png", level="C2")

    image = Image.open(io.BytesIO(data))
    assert image.size == (512, 768)


def test_draw_card_shows_text() -> None:
    blank = Image.open(io.BytesIO(draw_card("", "", "", (512, 512), "png")))
    card = Image.open(io.BytesIO(draw_card("cat", "noun", DEFINITION, (512, 512))))

    # Text pixels are darker than the background, so the card has more colours.
    assert len(card.getcolors(maxcolors=1 << 16) or []) > len(
        blank.getcolors(maxcolors=1 << 16) or []
    )
