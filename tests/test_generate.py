"""AssetApi: the requests it builds and the errors it raises, against respx."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx2
import openai
import pytest
import respx

from esl_assets.generate import AssetApi, BadResponseError
from esl_assets.jobs import AssetKind, Job

BASE_URL = "https://api.test/v1"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
TIMEOUT = httpx2.Timeout(5.0)


def make_job(kind: AssetKind, **params: object) -> Job:
    text = "an apple on a table" if kind is AssetKind.IMAGE else "apple"
    return Job(
        kind=kind,
        uuid="8e6f44da-7029-5537-b5de-d15f26b6b41f",
        word="apple",
        pos="noun",
        level="A1",
        definition_id="1",
        definition="a round fruit",
        text=text,
        file="file.bin",
        params=params,
        fingerprint="0" * 64,
    )


def make_client(**options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sk-secret", base_url=BASE_URL, max_retries=0, **options
    )


async def test_speech_request_headers(
    httpx2_mock: respx.Router,
) -> None:
    route = httpx2_mock.post(f"{BASE_URL}/audio/speech").respond(200, content=b"ID3aa")
    client = make_client(organization="org-1", project="proj-1")
    job = make_job(AssetKind.WORD, model="tts-1", voice="nova", response_format="mp3")

    generated = await AssetApi(client).generate(job, http_timeout=TIMEOUT)

    assert generated.data == b"ID3aa"
    request = route.calls.last.request
    assert request.headers["authorization"] == "Bearer sk-secret"
    assert request.headers["accept"] == "application/octet-stream"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["openai-organization"] == "org-1"
    assert request.headers["openai-project"] == "proj-1"
    assert request.headers["user-agent"].startswith("AsyncOpenAI/Python")
    assert json.loads(request.content) == {
        "input": "apple",
        "model": "tts-1",
        "voice": "nova",
        "response_format": "mp3",
    }


async def test_no_organization_header_when_none_is_set(
    httpx2_mock: respx.Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_ORG_ID", raising=False)
    monkeypatch.delenv("OPENAI_PROJECT_ID", raising=False)
    route = httpx2_mock.post(f"{BASE_URL}/audio/speech").respond(200, content=b"ID3")
    await AssetApi(make_client()).generate(
        make_job(AssetKind.WORD), http_timeout=TIMEOUT
    )
    headers = route.calls.last.request.headers
    assert "openai-organization" not in headers
    assert "openai-project" not in headers


async def test_image_request_and_usage_without_nulls(httpx2_mock: respx.Router) -> None:
    body = {
        "created": 1,
        "data": [{"b64_json": base64.b64encode(PNG).decode(), "revised_prompt": None}],
        "usage": {
            "input_tokens": 10,
            "output_tokens": 20,
            "total_tokens": 30,
            "input_tokens_details": {"text_tokens": 10, "image_tokens": None},
            "output_tokens_details": None,
        },
    }
    route = httpx2_mock.post(f"{BASE_URL}/images/generations").respond(200, json=body)
    job = make_job(AssetKind.IMAGE, model="gpt-image-1", size="1024x1024")

    generated = await AssetApi(make_client()).generate(job, http_timeout=TIMEOUT)

    assert generated.data == PNG
    assert generated.usage == {
        "input_tokens": 10,
        "output_tokens": 20,
        "total_tokens": 30,
        "input_tokens_details": {"text_tokens": 10},
    }
    sent = json.loads(route.calls.last.request.content)
    assert sent == {
        "prompt": "an apple on a table",
        "model": "gpt-image-1",
        "size": "1024x1024",
    }
    assert route.calls.last.request.headers["accept"] == "application/json"


async def test_card_fields_go_only_where_asked(httpx2_mock: respx.Router) -> None:
    body = {"created": 1, "data": [{"b64_json": base64.b64encode(PNG).decode()}]}
    route = httpx2_mock.post(f"{BASE_URL}/images/generations").respond(200, json=body)
    job = make_job(AssetKind.IMAGE, model="dall-e-3")

    await AssetApi(make_client(), card_fields=True).generate(job, http_timeout=TIMEOUT)
    card = json.loads(route.calls.last.request.content)["esl_card"]
    assert card == {
        "word": "apple",
        "pos": "noun",
        "definition": "a round fruit",
        "level": "A1",
    }

    await AssetApi(make_client()).generate(job, http_timeout=TIMEOUT)
    assert "esl_card" not in json.loads(route.calls.last.request.content)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<html>busy</html>", "not JSON"),
        (b'{"created": 1, "data": []}', "no base64 image data"),
        (b'{"created": 1, "data": [{"url": "https://x"}]}', "no base64 image data"),
        (b'{"created": 1, "data": [{"b64_json": "%%%"}]}', "not valid base64"),
        (b"[1, 2]", "no base64 image data"),
    ],
)
async def test_unusable_image_answers_raise_bad_response(
    httpx2_mock: respx.Router, content: bytes, message: str
) -> None:
    httpx2_mock.post(f"{BASE_URL}/images/generations").respond(200, content=content)
    with pytest.raises(BadResponseError, match=message):
        await AssetApi(make_client()).generate(
            make_job(AssetKind.IMAGE, model="dall-e-3"), http_timeout=TIMEOUT
        )


ERROR_BODY = {
    "error": {
        "message": "You exceeded your current quota.",
        "type": "insufficient_quota",
        "code": "insufficient_quota",
        "param": None,
    }
}


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 418, 422, 429, 500, 503])
@pytest.mark.parametrize("kind", [AssetKind.WORD, AssetKind.IMAGE])
async def test_errors_match_what_the_sdk_raises(
    httpx2_mock: respx.Router, status: int, kind: AssetKind
) -> None:
    path = "/images/generations" if kind is AssetKind.IMAGE else "/audio/speech"
    httpx2_mock.post(f"{BASE_URL}{path}").respond(
        status, json=ERROR_BODY, headers={"retry-after": "7"}
    )
    client = make_client()
    job = make_job(kind, model="dall-e-3" if kind is AssetKind.IMAGE else "tts-1")

    with pytest.raises(openai.APIStatusError) as ours:
        await AssetApi(client).generate(job, http_timeout=TIMEOUT)
    with pytest.raises(openai.APIStatusError) as sdks:
        if kind is AssetKind.IMAGE:
            await client.images.generate(prompt=job.text, model="dall-e-3")
        else:
            await client.audio.speech.create(
                input="apple", model="tts-1", voice="alloy"
            )

    assert type(ours.value) is type(sdks.value)
    assert ours.value.status_code == status
    assert ours.value.code == sdks.value.code == "insufficient_quota"
    assert ours.value.body == sdks.value.body
    assert str(ours.value) == str(sdks.value)
    assert ours.value.response.headers["retry-after"] == "7"


async def test_error_text_body_kept(
    httpx2_mock: respx.Router,
) -> None:
    httpx2_mock.post(f"{BASE_URL}/audio/speech").respond(502, content=b"Bad gateway\n")
    with pytest.raises(openai.InternalServerError) as raised:
        await AssetApi(make_client()).generate(
            make_job(AssetKind.WORD), http_timeout=TIMEOUT
        )
    assert raised.value.body == "Bad gateway"
    assert raised.value.status_code == 502


async def test_transport_errors_reach_the_caller_unchanged(
    httpx2_mock: respx.Router,
) -> None:
    httpx2_mock.post(f"{BASE_URL}/audio/speech").mock(
        side_effect=httpx2.ConnectError("refused")
    )
    with pytest.raises(httpx2.ConnectError):
        await AssetApi(make_client()).generate(
            make_job(AssetKind.WORD), http_timeout=TIMEOUT
        )


def test_asset_api_rejects_other_client() -> None:
    class Stub:
        _client = object()

    with pytest.raises(TypeError, match="httpx2.AsyncClient"):
        AssetApi(Stub())  # type: ignore[arg-type]


async def test_requests_go_straight_to_the_transport(
    httpx2_mock: respx.Router,
) -> None:
    api = AssetApi(make_client())
    assert isinstance(api._transport, httpx2.AsyncBaseTransport)
    httpx2_mock.post(f"{BASE_URL}/audio/speech").respond(200, content=b"ID3")
    generated = await api.generate(make_job(AssetKind.WORD), http_timeout=TIMEOUT)
    assert generated.data == b"ID3"


async def test_without_a_transport_the_client_sends(
    httpx2_mock: respx.Router,
) -> None:
    api = AssetApi(make_client())
    api._transport = None
    route = httpx2_mock.post(f"{BASE_URL}/audio/speech").respond(429, json=ERROR_BODY)
    with pytest.raises(openai.RateLimitError):
        await api.generate(make_job(AssetKind.WORD), http_timeout=TIMEOUT)
    assert route.calls.last.request.headers["authorization"] == "Bearer sk-secret"
