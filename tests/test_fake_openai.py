"""Tests of the fake OpenAI server through the real openai SDK and httpx2."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from fake_openai import FakeOpenAI, _RateLimiter, build_speech_audio, format_duration
from PIL import Image

API_KEY = "sk-test"
DURATION_PATTERN = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d+)?s|\d+ms)$")


def make_client(fake: FakeOpenAI, **options: Any) -> openai.AsyncOpenAI:
    options.setdefault("max_retries", 0)
    options.setdefault("api_key", API_KEY)
    return openai.AsyncOpenAI(base_url=fake.base_url, **options)


async def create_speech(
    client: openai.AsyncOpenAI, text: str = "apple", **params: Any
) -> Any:
    params.setdefault("model", "tts-1")
    params.setdefault("voice", "alloy")
    return await client.audio.speech.create(input=text, **params)


async def generate_image(
    client: openai.AsyncOpenAI, prompt: str = "An apple on a table", **params: Any
) -> Any:
    params.setdefault("model", "gpt-image-1-mini")
    return await client.images.generate(prompt=prompt, **params)


# -- speech


def is_mp3(data: bytes) -> bool:
    return data[:3] == b"ID3" or (data[0] == 0xFF and data[1] & 0xE0 == 0xE0)


def is_adts(data: bytes) -> bool:
    return data[0] == 0xFF and data[1] in (0xF1, 0xF9)


def is_ogg_opus(data: bytes) -> bool:
    return data[:4] == b"OggS" and data[28:36] == b"OpusHead"


def is_flac(data: bytes) -> bool:
    return data[:4] == b"fLaC"


def is_wav(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WAVE"


def is_even_length(data: bytes) -> bool:
    return len(data) % 2 == 0


SPEECH_FORMATS: list[tuple[str, str, Callable[[bytes], bool]]] = [
    ("mp3", "audio/mpeg", is_mp3),
    ("aac", "audio/aac", is_adts),
    ("opus", "audio/opus", is_ogg_opus),
    ("flac", "audio/flac", is_flac),
    ("wav", "audio/wav", is_wav),
    ("pcm", "audio/pcm", is_even_length),
]


@pytest.mark.parametrize(
    ("response_format", "content_type", "has_signature"), SPEECH_FORMATS
)
async def test_speech_format_signature(
    fake_openai: FakeOpenAI,
    response_format: str,
    content_type: str,
    has_signature: Callable[[bytes], bool],
) -> None:
    async with make_client(fake_openai) as client:
        audio = await create_speech(client, response_format=response_format)

    assert has_signature(audio.content)
    assert len(audio.content) >= 300
    assert audio.response.headers["content-type"] == content_type


async def test_speech_default_format_is_mp3(fake_openai: FakeOpenAI) -> None:
    async with make_client(fake_openai) as client:
        audio = await create_speech(client)

    assert is_mp3(audio.content)
    assert audio.response.headers["content-type"] == "audio/mpeg"


async def test_speech_audio_depends_on_input(fake_openai: FakeOpenAI) -> None:
    async with make_client(fake_openai) as client:
        first = await create_speech(client, "apple")
        again = await create_speech(client, "apple", model="gpt-4o-mini-tts")
        other = await create_speech(client, "banana")

    assert first.content == again.content
    assert first.content != other.content


@pytest.mark.parametrize("response_format", ["mp3", "aac", "opus", "flac", "wav"])
def test_speech_audio_parses_as_container(response_format: str) -> None:
    av = pytest.importorskip("av")
    data = build_speech_audio(
        "a sentence long enough for several frames", response_format
    )

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        packets = [packet for packet in container.demux(stream) if packet.size]

    assert stream.channels == 1
    assert packets


async def test_speech_input_limit(fake_openai: FakeOpenAI) -> None:
    async with make_client(fake_openai) as client:
        await create_speech(client, "a" * 4096)
        with pytest.raises(openai.BadRequestError) as caught:
            await create_speech(client, "a" * 4097)

    assert caught.value.code == "string_above_max_length"
    assert caught.value.param == "input"


async def test_speech_instructions_need_gpt_model(fake_openai: FakeOpenAI) -> None:
    async with make_client(fake_openai) as client:
        await create_speech(
            client, model="gpt-4o-mini-tts", instructions="Speak slowly."
        )
        for model in ("tts-1", "tts-1-hd"):
            with pytest.raises(openai.BadRequestError) as caught:
                await create_speech(client, model=model, instructions="Speak slowly.")

            assert caught.value.param == "instructions"


async def test_speech_invalid_voice_rejected(fake_openai: FakeOpenAI) -> None:
    async with make_client(fake_openai) as client:
        await create_speech(client, voice={"id": "voice_1234"})
        with pytest.raises(openai.BadRequestError) as caught:
            await create_speech(client, voice="robot")

    assert caught.value.param == "voice"


# -- images


async def test_image_png_success(fake_openai: FakeOpenAI) -> None:
    async with make_client(fake_openai) as client:
        result = await generate_image(client, quality="low", size="1536x1024")

    assert result.data is not None
    png = base64.b64decode(result.data[0].b64_json or "")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        assert image.format == "PNG"

    assert result.output_format == "png"
    assert result.quality == "low"
    assert result.size == "1536x1024"
    assert result.usage is not None
    assert (
        result.usage.total_tokens
        == result.usage.input_tokens + result.usage.output_tokens
    )
    assert result.usage.input_tokens_details.text_tokens == result.usage.input_tokens


@pytest.mark.parametrize(
    ("output_format", "pillow_format"), [("jpeg", "JPEG"), ("webp", "WEBP")]
)
async def test_image_other_formats_decode(
    fake_openai: FakeOpenAI, output_format: str, pillow_format: str
) -> None:
    async with make_client(fake_openai) as client:
        result = await generate_image(client, output_format=output_format)

    assert result.data is not None
    data = base64.b64decode(result.data[0].b64_json or "")
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.format == pillow_format

    assert result.output_format == output_format


async def test_image_count_matches_n(fake_openai: FakeOpenAI) -> None:
    async with make_client(fake_openai) as client:
        result = await generate_image(client, n=3)

    assert result.data is not None
    assert len(result.data) == 3


@pytest.mark.parametrize("param", ["response_format", "style"])
async def test_image_legacy_parameter_rejected(
    fake_openai: FakeOpenAI, param: str
) -> None:
    value = {"response_format": "b64_json", "style": "vivid"}[param]
    async with make_client(fake_openai) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await generate_image(client, **{param: value})

    assert caught.value.code == "unknown_parameter"
    assert caught.value.param == param


async def test_image_prompt_limit(fake_openai: FakeOpenAI) -> None:
    async with make_client(fake_openai) as client:
        await generate_image(client, "p" * 32000)
        with pytest.raises(openai.BadRequestError) as caught:
            await generate_image(client, "p" * 32001)

    assert caught.value.param == "prompt"


IMAGE_SIZE_CASES = [
    ("gpt-image-1-mini", "auto", True),
    ("gpt-image-1-mini", "1024x1536", True),
    ("gpt-image-1-mini", "1536x864", False),
    ("chatgpt-image-latest", "1536x864", False),
    ("gpt-image-2", "1536x864", True),
    ("gpt-image-2", "3840x2160", True),
    ("gpt-image-2", "2160x3840", True),
    ("gpt-image-2", "512x1536", True),
    ("gpt-image-2", "1000x1000", False),
    ("gpt-image-2", "480x1600", False),
    ("gpt-image-2", "3840x2176", False),
    ("gpt-image-2", "1024x", False),
    ("gpt-image-2.5-flare-2026-09-08", "2048x1152", True),
    ("gpt-image-2.6-sunburst", "1280x720", True),
]


@pytest.mark.parametrize(("model", "size", "accepted"), IMAGE_SIZE_CASES)
async def test_image_size_rules(
    fake_openai: FakeOpenAI, model: str, size: str, accepted: bool
) -> None:
    async with make_client(fake_openai) as client:
        if accepted:
            result = await generate_image(client, model=model, size=size)
            assert result.size == ("1024x1024" if size == "auto" else size)
            return

        with pytest.raises(openai.BadRequestError) as caught:
            await generate_image(client, model=model, size=size)

    assert caught.value.param == "size"


# -- authentication, models, errors


async def test_wrong_key_returns_401(fake_openai: FakeOpenAI) -> None:
    async with make_client(fake_openai, api_key="sk-wrong") as client:
        with pytest.raises(openai.AuthenticationError) as speech_error:
            await create_speech(client)
        with pytest.raises(openai.AuthenticationError) as image_error:
            await generate_image(client)

    assert speech_error.value.code == "invalid_api_key"
    assert image_error.value.code == "invalid_api_key"
    assert [r.auth_valid for r in fake_openai.requests] == [False, False]


async def test_unknown_models_return_404(fake_openai: FakeOpenAI) -> None:
    async with make_client(fake_openai) as client:
        with pytest.raises(openai.NotFoundError) as speech_error:
            await create_speech(client, model="tts-2")
        with pytest.raises(openai.NotFoundError) as image_error:
            await generate_image(client, model="dall-e-3")

    assert speech_error.value.code == "model_not_found"
    assert image_error.value.code == "model_not_found"


async def test_error_body_shape_and_request_id(fake_openai: FakeOpenAI) -> None:
    async with httpx2.AsyncClient(base_url=fake_openai.base_url) as http:
        response = await http.post("/chat/completions", json={"model": "gpt-5"})

    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert response.headers["x-request-id"].startswith("req_")


async def test_invalid_json_returns_400(fake_openai: FakeOpenAI) -> None:
    headers = {"authorization": f"Bearer {API_KEY}"}
    async with httpx2.AsyncClient(base_url=fake_openai.base_url) as http:
        response = await http.post(
            "/audio/speech", content=b"{not json", headers=headers
        )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_chunked_request_body_is_read(fake_openai: FakeOpenAI) -> None:
    body = json.dumps({"model": "tts-1", "input": "chunked", "voice": "alloy"}).encode()

    async def chunks() -> Any:
        yield body[:10]
        yield body[10:]

    headers = {"authorization": f"Bearer {API_KEY}"}
    async with httpx2.AsyncClient(base_url=fake_openai.base_url) as http:
        response = await http.post("/audio/speech", content=chunks(), headers=headers)

    assert response.status_code == 200
    assert fake_openai.requests[0].text == "chunked"


# -- injected faults

STATUS_FAULTS = [
    ("500", openai.InternalServerError, 500, None),
    ("503", openai.InternalServerError, 503, None),
    ("429_rate_limit", openai.RateLimitError, 429, "rate_limit_exceeded"),
    ("429_quota", openai.RateLimitError, 429, "insufficient_quota"),
    ("400_moderation", openai.BadRequestError, 400, "moderation_blocked"),
    ("401", openai.AuthenticationError, 401, "invalid_api_key"),
    ("403", openai.PermissionDeniedError, 403, None),
    ("404_model", openai.NotFoundError, 404, "model_not_found"),
]


@pytest.mark.parametrize(("fault", "error_class", "status", "code"), STATUS_FAULTS)
async def test_status_fault_raises_sdk_error(
    fake_openai: FakeOpenAI,
    fault: str,
    error_class: type[openai.APIStatusError],
    status: int,
    code: str | None,
) -> None:
    fake_openai.inject(fault)
    async with make_client(fake_openai) as client:
        with pytest.raises(error_class) as caught:
            await generate_image(client)

    assert caught.value.status_code == status
    assert caught.value.code == code
    assert caught.value.response.headers["x-request-id"].startswith("req_")
    record = fake_openai.requests[0]
    assert record.fault == fault
    assert record.status == status


async def test_quota_fault_has_quota_type(fake_openai: FakeOpenAI) -> None:
    fake_openai.inject("429_quota")
    async with make_client(fake_openai) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await create_speech(client)

    assert caught.value.type == "insufficient_quota"
    assert "quota" in caught.value.message


async def test_reset_fault_raises_connection_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.inject("reset")
    async with make_client(fake_openai) as client:
        with pytest.raises(openai.APIConnectionError) as caught:
            await create_speech(client)

    assert not isinstance(caught.value, openai.APITimeoutError)
    assert isinstance(caught.value.__cause__, httpx2.ReadError)
    assert fake_openai.requests[0].status is None


async def test_half_body_fault_raises_connection_error(fake_openai: FakeOpenAI) -> None:
    fake_openai.inject("half_body")
    async with make_client(fake_openai) as client:
        with pytest.raises(openai.APIConnectionError) as caught:
            await create_speech(client)

    assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)
    assert fake_openai.requests[0].status == 200
    assert fake_openai.requests[0].fault == "half_body"


async def test_stall_fault_times_out(fake_openai: FakeOpenAI) -> None:
    fake_openai.inject("stall")
    async with make_client(fake_openai, timeout=0.3) as client:
        with pytest.raises(openai.APITimeoutError):
            await create_speech(client)

    assert fake_openai.requests[0].fault == "stall"
    assert fake_openai.requests[0].status is None


async def test_stalled_request_ends_on_stop() -> None:
    fake = FakeOpenAI().start()
    fake.inject("stall")
    async with make_client(fake, timeout=10.0) as client:
        request = asyncio.create_task(create_speech(client))
        await asyncio.to_thread(fake.wait_in_flight, 1, 2.0)
        await asyncio.to_thread(fake.stop)
        with pytest.raises(openai.APIConnectionError) as caught:
            await request

    assert not isinstance(caught.value, openai.APITimeoutError)


async def test_rate_limit_fault_retry_after_headers(fake_openai: FakeOpenAI) -> None:
    fake_openai.inject("429_rate_limit", retry_after_s=1.5)
    async with make_client(fake_openai) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await create_speech(client)

    headers = caught.value.response.headers
    assert headers["retry-after-ms"] == "1500"
    assert headers["retry-after"] == "2"


async def test_sdk_obeys_injected_retry_after(fake_openai: FakeOpenAI) -> None:
    fake_openai.inject("429_rate_limit", retry_after_s=0.05)
    async with make_client(fake_openai, max_retries=1) as client:
        audio = await create_speech(client)

    assert is_mp3(audio.content)
    assert [r.status for r in fake_openai.requests] == [429, 200]
    assert [r.retry_count for r in fake_openai.requests] == [0, 1]


async def test_inject_match_and_times(fake_openai: FakeOpenAI) -> None:
    fake_openai.inject("500", match="apple", times=2)
    async with make_client(fake_openai) as client:
        await create_speech(client, "banana")
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                await create_speech(client, "green apple")
        await create_speech(client, "green apple")

    statuses = [r.status for r in fake_openai.requests_for("apple")]
    assert statuses == [500, 500, 200]


async def test_inject_forever_until_reset(fake_openai: FakeOpenAI) -> None:
    fake_openai.inject("503", times=None)
    async with make_client(fake_openai) as client:
        for _ in range(3):
            with pytest.raises(openai.InternalServerError):
                await create_speech(client)
        fake_openai.reset()
        await create_speech(client)

    assert fake_openai.count(status=200) == 1
    assert fake_openai.count() == 1


async def test_inject_lane_only(fake_openai: FakeOpenAI) -> None:
    fake_openai.inject("503", lane="audio")
    async with make_client(fake_openai) as client:
        await generate_image(client)
        with pytest.raises(openai.InternalServerError):
            await create_speech(client)

    assert fake_openai.count(lane="images", status=200) == 1
    assert fake_openai.count(lane="audio", status=503) == 1


def test_inject_rejects_unknown_names(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        fake_openai.inject("502")
    with pytest.raises(ValueError, match="unknown lane"):
        fake_openai.inject("500", lane="video")


async def fault_sequence(fake: FakeOpenAI, total: int) -> list[str | None]:
    async with make_client(fake) as client:
        for index in range(total):
            try:
                await create_speech(client, f"word {index}")
            except openai.APIError:
                pass

    return [record.fault for record in fake.requests]


async def test_fault_rate_repeats_with_seed() -> None:
    with FakeOpenAI(fault_rate=0.5, seed=7) as first:
        first_faults = await fault_sequence(first, 24)
    with FakeOpenAI(fault_rate=0.5, seed=7) as second:
        second_faults = await fault_sequence(second, 24)

    assert first_faults == second_faults
    assert None in first_faults
    assert set(first_faults) - {None} <= {"500", "503", "reset"}
    assert len(set(first_faults)) > 1


# -- rate limits


async def test_rate_limit_headers_and_429() -> None:
    with FakeOpenAI(audio_rpm=2) as fake:
        async with make_client(fake) as client:
            first = await client.audio.speech.with_raw_response.create(
                model="tts-1", voice="alloy", input="one"
            )
            second = await client.audio.speech.with_raw_response.create(
                model="tts-1", voice="alloy", input="two"
            )
            with pytest.raises(openai.RateLimitError) as caught:
                await create_speech(client, "three")
            image = await client.images.with_raw_response.generate(
                model="gpt-image-1-mini", prompt="unlimited lane"
            )

        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        assert second.headers["x-ratelimit-remaining-requests"] == "0"
        assert DURATION_PATTERN.match(first.headers["x-ratelimit-reset-requests"])
        assert "x-ratelimit-limit-requests" not in image.headers

        error = caught.value
        assert error.code == "rate_limit_exceeded"
        retry_after_ms = int(error.response.headers["retry-after-ms"])
        assert 0 < retry_after_ms <= 60_000
        assert int(error.response.headers["retry-after"]) == math.ceil(
            retry_after_ms / 1000
        )
        assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
        assert DURATION_PATTERN.match(
            error.response.headers["x-ratelimit-reset-requests"]
        )
        assert fake.stats()["lanes"]["audio"]["rate_limited"] == 1


def test_rate_limiter_staggers_waiting_clients() -> None:
    limiter = _RateLimiter(2)

    assert limiter.acquire(0.0)[0]
    assert limiter.acquire(1.0)[0]
    first_waiter = limiter.acquire(2.0)
    second_waiter = limiter.acquire(2.0)
    assert first_waiter[:2] == (False, 58.0)
    assert second_waiter[:2] == (False, 88.0)
    assert limiter.acquire(60.0)[0]
    assert not limiter.acquire(60.5)[0]
    assert limiter.acquire(61.0)[0]


def test_rate_limiter_rejects_zero_rpm() -> None:
    with pytest.raises(ValueError, match="rpm"):
        _RateLimiter(0)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.12, "120ms"),
        (0.0004, "1ms"),
        (1, "1s"),
        (61.5, "1m1.5s"),
        (360, "6m0s"),
        (3725, "1h2m5s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# -- hold, release, in-flight


async def test_hold_release_wait_in_flight(fake_openai: FakeOpenAI) -> None:
    fake_openai.hold()
    async with make_client(fake_openai) as client:
        tasks = [
            asyncio.create_task(create_speech(client, f"held {i}")) for i in range(3)
        ]
        in_flight = await asyncio.to_thread(fake_openai.wait_in_flight, 3, 2.0)

        assert in_flight == 3
        assert not any(task.done() for task in tasks)
        assert fake_openai.count(status=200) == 0
        fake_openai.release()
        results = await asyncio.gather(*tasks)

    assert all(is_mp3(result.content) for result in results)
    assert fake_openai.count(status=200) == 3


async def test_latency_counts_from_arrival_or_release() -> None:
    latency_s = 0.05
    with FakeOpenAI(api_key=API_KEY, latency_s=latency_s) as fake:
        async with make_client(fake) as client:
            await create_speech(client, "direct")
            await generate_image(client, "direct picture")
            fake.hold()
            task = asyncio.create_task(create_speech(client, "held"))
            await asyncio.to_thread(fake.wait_in_flight, 1, 2.0)
            await asyncio.sleep(2 * latency_s)
            released_s = time.monotonic()
            fake.release()
            await task

        records = {record.text: record for record in fake.requests}

    for text in ("direct", "direct picture"):
        record = records[text]
        assert record.ended_s is not None
        assert record.ended_s - record.started_s >= latency_s
    after_hold = records["held"]
    assert after_hold.ended_s is not None
    # Time spent held is not latency: the response still waits after release.
    assert after_hold.ended_s - released_s >= latency_s


def test_wait_in_flight_times_out(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(TimeoutError, match="0 of 1"):
        fake_openai.wait_in_flight(1, 0.05)


async def test_held_requests_survive_client_exit(fake_openai: FakeOpenAI) -> None:
    fake_openai.hold()
    async with make_client(fake_openai) as client:
        tasks = [
            asyncio.create_task(create_speech(client, f"lost {i}")) for i in range(2)
        ]
        await asyncio.to_thread(fake_openai.wait_in_flight, 2, 2.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    fake_openai.release()
    async with make_client(fake_openai) as client:
        audio = await create_speech(client, "after")

    assert is_mp3(audio.content)
    assert fake_openai.requests_for("after")[0].status == 200


# -- recording and control endpoints


async def test_records_never_contain_key() -> None:
    secret, wrong = "sk-secret-value-123", "sk-wrong-value-456"
    with FakeOpenAI(api_key=secret) as fake:
        async with make_client(fake, api_key=secret) as client:
            await create_speech(client)
        async with make_client(fake, api_key=wrong) as client:
            with pytest.raises(openai.AuthenticationError) as caught:
                await create_speech(client)
        root = fake.base_url.removesuffix("/v1")
        async with httpx2.AsyncClient(base_url=root) as http:
            listing = (await http.get("/_fake/requests")).text

        dumps = [repr(fake.requests), repr(fake), json.dumps(fake.stats()), listing]

    assert [r.auth_valid for r in fake.requests] == [True, False]
    for text in [*dumps, caught.value.message]:
        assert secret not in text
        assert wrong not in text


async def test_record_fields(fake_openai: FakeOpenAI) -> None:
    async with make_client(fake_openai) as client:
        await create_speech(client, "apple pie", model="tts-1-hd", speed=1.5)
        await create_speech(client, "banana")

    [record] = fake_openai.requests_for("apple")
    assert record.lane == "audio"
    assert record.path == "/v1/audio/speech"
    assert record.model == "tts-1-hd"
    assert record.body == {
        "model": "tts-1-hd",
        "input": "apple pie",
        "voice": "alloy",
        "speed": 1.5,
    }
    assert record.status == 200
    assert record.ended_s is not None
    assert record.started_s <= record.ended_s
    assert fake_openai.count(lane="audio", status=200) == 2
    assert fake_openai.count(lane="images") == 0


async def test_keep_alive_reuses_connection(fake_openai: FakeOpenAI) -> None:
    async with make_client(fake_openai) as client:
        for index in range(3):
            await create_speech(client, f"word {index}")

    assert len({r.connection_id for r in fake_openai.requests}) == 1


async def test_reset_records_clears_counts(fake_openai: FakeOpenAI) -> None:
    async with make_client(fake_openai) as client:
        await create_speech(client)
    fake_openai.reset_records()

    assert fake_openai.requests == []
    assert fake_openai.count() == 0
    assert fake_openai.stats()["total"] == 0


async def test_control_endpoints(fake_openai: FakeOpenAI) -> None:
    root = fake_openai.base_url.removesuffix("/v1")
    async with (
        httpx2.AsyncClient(base_url=root) as http,
        make_client(fake_openai) as client,
    ):
        injected = await http.post(
            "/_fake/inject", json={"fault": "503", "lane": "images"}
        )
        rejected = await http.post("/_fake/inject", json={"fault": "502"})
        with pytest.raises(openai.InternalServerError):
            await generate_image(client)

        await http.post("/_fake/hold")
        held_request = asyncio.create_task(create_speech(client))
        await fake_openai.wait_in_flight_async(1, 2.0)
        held_stats = (await http.get("/_fake/stats")).json()
        await http.post("/_fake/release")
        await held_request

        listing = (await http.get("/_fake/requests")).json()
        stats = (await http.get("/_fake/stats")).json()
        await http.post("/_fake/reset")
        after_reset = (await http.get("/_fake/stats")).json()

    assert injected.status_code == 200
    assert rejected.status_code == 400
    assert held_stats["in_flight"] == 1
    assert [item["status"] for item in listing] == [503, 200]
    assert stats["lanes"]["images"]["status"] == {"503": 1}
    assert stats["lanes"]["audio"]["status"] == {"200": 1}
    assert stats["faults"] == {"503": 1}
    assert after_reset["total"] == 0


async def test_async_variant_serves_on_running_loop() -> None:
    async with FakeOpenAI() as fake, make_client(fake) as client:
        fake.hold()
        task = asyncio.create_task(create_speech(client))
        assert await fake.wait_in_flight_async(1, 2.0) == 1
        with pytest.raises(RuntimeError, match="wait_in_flight_async"):
            fake.wait_in_flight(1, 0.1)
        fake.release()
        audio = await task

    assert is_mp3(audio.content)


def test_cli_prints_ready_and_stops_on_sigterm() -> None:
    script = Path(__file__).with_name("fake_openai.py")
    command = [sys.executable, str(script), "--port", "0", "--audio-rpm", "5"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            match = re.fullmatch(r"READY (http://127\.0\.0\.1:\d+/v1)", line)
            assert match is not None, line

            body = {"model": "tts-1", "input": "cli", "voice": "alloy"}
            headers = {"authorization": f"Bearer {API_KEY}"}
            url = f"{match[1]}/audio/speech"
            response = httpx2.post(url, json=body, headers=headers)
            assert response.status_code == 200
            assert response.headers["x-ratelimit-limit-requests"] == "5"

            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=5) == 0
        finally:
            if process.poll() is None:
                process.kill()
