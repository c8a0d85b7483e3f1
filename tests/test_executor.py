"""JobRunner against respx mocks of the OpenAI API (through httpx2/httpcore2)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from pathlib import Path

import httpx
import httpx2
import pytest
import respx
from openai import AsyncOpenAI

from esl_assets.executor import UNREACHABLE_AFTER, JobRunner, RunState
from esl_assets.generate import AssetApi, Generated
from esl_assets.jobs import AssetKind, Job, Status
from esl_assets.lanes import Lane
from esl_assets.models import warn_about_shutdown
from esl_assets.planner import Planner, build_request_template
from esl_assets.rows import Row
from esl_assets.settings import Settings

BASE_URL = "https://api.test/v1"
ADTS = b"\xff\xf1\x50\x80\x02\x1f\xfc" + b"\x00" * 64
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
ROW = Row(
    uuid="8e6f44da-7029-5537-b5de-d15f26b6b41f",
    word="be",
    pos="verb",
    level="A1",
    definition_id="1",
    definition="have the quality of being",
)


def plan(settings: Settings, row: Row = ROW) -> dict[AssetKind, Job]:
    template = build_request_template(settings)
    planner = Planner(settings, template, frozenset(AssetKind))
    return {job.kind: job for job in planner.plan([row]) if isinstance(job, Job)}


def make_runner(settings: Settings, outdir: Path) -> JobRunner:
    client = AsyncOpenAI(api_key="sk-test", base_url=BASE_URL, max_retries=0)
    lanes = {
        "audio": Lane("audio", settings.concurrency),
        "images": Lane("images", settings.concurrency),
    }
    return JobRunner(client, settings, outdir, lanes, RunState())


def image_body() -> dict[str, object]:
    return {"created": 1, "data": [{"b64_json": base64.b64encode(PNG).decode()}]}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(outdir=tmp_path, max_attempts=3, max_retry_wait_s=0.01)


async def test_speech_request_body_for_mini_tts(
    httpx2_mock: respx.Router, settings: Settings, tmp_path: Path
) -> None:
    route = httpx2_mock.post(f"{BASE_URL}/audio/speech").respond(200, content=ADTS)
    jobs = plan(settings)
    result = await make_runner(settings, tmp_path).run(jobs[AssetKind.SHORTDEF])
    assert result.status is Status.SUCCESS
    body = json.loads(route.calls.last.request.content)
    assert body["input"] == "have the quality of being"
    assert body["model"] == "gpt-4o-mini-tts"
    assert body["voice"] == "alloy"
    assert body["response_format"] == "aac"
    assert "instructions" in body
    assert (
        tmp_path / "shortdef_8e6f44da-7029-5537-b5de-d15f26b6b41f_1.aac"
    ).read_bytes() == ADTS


async def test_tts1_gets_no_instructions(
    httpx2_mock: respx.Router, settings: Settings, tmp_path: Path
) -> None:
    settings = settings.replace(audio_model="tts-1", audio_speed=0.9)
    route = httpx2_mock.post(f"{BASE_URL}/audio/speech").respond(200, content=ADTS)
    await make_runner(settings, tmp_path).run(plan(settings)[AssetKind.WORD])
    body = json.loads(route.calls.last.request.content)
    assert "instructions" not in body
    assert body["speed"] == 0.9
    assert body["input"] == "be"


async def test_image_request_has_no_response_format(
    httpx2_mock: respx.Router, settings: Settings, tmp_path: Path
) -> None:
    route = httpx2_mock.post(f"{BASE_URL}/images/generations").respond(
        200, json=image_body()
    )
    result = await make_runner(settings, tmp_path).run(plan(settings)[AssetKind.IMAGE])
    assert result.status is Status.SUCCESS
    body = json.loads(route.calls.last.request.content)
    assert "response_format" not in body
    assert "esl_card" not in body
    assert body["size"] == "1024x1536"
    assert body["model"] == "gpt-image-1-mini"
    assert "have the quality of being" in body["prompt"]


@pytest.mark.parametrize(
    ("size", "expected"),
    [("square", "1024x1024"), ("horizontal", "1536x1024"), ("vertical", "1024x1536")],
)
async def test_image_size_names(
    httpx2_mock: respx.Router,
    settings: Settings,
    tmp_path: Path,
    size: str,
    expected: str,
) -> None:
    settings = settings.replace(image_size=size)
    route = httpx2_mock.post(f"{BASE_URL}/images/generations").respond(
        200, json=image_body()
    )
    await make_runner(settings, tmp_path).run(plan(settings)[AssetKind.IMAGE])
    assert json.loads(route.calls.last.request.content)["size"] == expected


@pytest.mark.httpx2(assert_all_called=False)
async def test_valid_file_skipped_without_request(
    httpx2_mock: respx.Router, settings: Settings, tmp_path: Path
) -> None:
    route = httpx2_mock.post(f"{BASE_URL}/audio/speech").respond(200, content=ADTS)
    job = plan(settings)[AssetKind.WORD]
    (tmp_path / job.file).write_bytes(ADTS)
    result = await make_runner(settings, tmp_path).run(job)
    assert result.status is Status.SKIPPED
    assert result.reason == "exists"
    assert route.call_count == 0


@pytest.mark.parametrize("content", [b"", b"<html>oops</html>"])
async def test_empty_or_invalid_file_regenerated(
    httpx2_mock: respx.Router, settings: Settings, tmp_path: Path, content: bytes
) -> None:
    route = httpx2_mock.post(f"{BASE_URL}/audio/speech").respond(200, content=ADTS)
    job = plan(settings)[AssetKind.WORD]
    (tmp_path / job.file).write_bytes(content)
    result = await make_runner(settings, tmp_path).run(job)
    assert result.status is Status.SUCCESS
    assert route.call_count == 1
    assert (tmp_path / job.file).read_bytes() == ADTS


async def test_invalid_audio_response_retried_then_error(
    httpx2_mock: respx.Router, settings: Settings, tmp_path: Path
) -> None:
    route = httpx2_mock.post(f"{BASE_URL}/audio/speech").respond(
        200, content=b"not audio"
    )
    job = plan(settings)[AssetKind.WORD]
    result = await make_runner(settings, tmp_path).run(job)
    assert result.status is Status.ERROR
    assert result.reason == "bad_response"
    assert route.call_count == 3
    assert list(tmp_path.iterdir()) == []  # noqa: ASYNC240


async def test_transient_500_then_success(
    httpx2_mock: respx.Router, settings: Settings, tmp_path: Path
) -> None:
    route = httpx2_mock.post(f"{BASE_URL}/audio/speech")
    route.side_effect = [
        # respx builds responses with httpx and converts them for httpcore2.
        httpx.Response(500, json={"error": {"message": "boom", "code": None}}),
        httpx.Response(200, content=ADTS),
    ]
    result = await make_runner(settings, tmp_path).run(plan(settings)[AssetKind.WORD])
    assert result.status is Status.SUCCESS
    assert result.attempts == 2
    assert route.call_count == 2


async def test_freed_slot_sends_before_the_body_is_decoded(
    httpx2_mock: respx.Router,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With one slot, the second job must send its request as soon as the
    # first response is in, before the first job decodes it.
    events: list[tuple[str, str]] = []

    def respond(request: httpx.Request) -> httpx.Response:
        events.append(("sent", json.loads(request.content)["input"]))
        return httpx.Response(200, content=ADTS)

    def decode(job: Job, response: httpx2.Response) -> Generated:
        events.append(("decoded", job.text))
        return original_decode(job, response)

    original_decode = AssetApi.decode
    monkeypatch.setattr(AssetApi, "decode", staticmethod(decode))
    httpx2_mock.post(f"{BASE_URL}/audio/speech").mock(side_effect=respond)
    settings = settings.replace(concurrency=1)
    runner = make_runner(settings, tmp_path)
    jobs = plan(settings)
    word, shortdef = jobs[AssetKind.WORD], jobs[AssetKind.SHORTDEF]

    results = await asyncio.gather(runner.run(word), runner.run(shortdef))

    assert [result.status for result in results] == [Status.SUCCESS] * 2
    assert events == [
        ("sent", word.text),
        ("sent", shortdef.text),
        ("decoded", word.text),
        ("decoded", shortdef.text),
    ]


async def test_moderation_block_is_not_retried(
    httpx2_mock: respx.Router, settings: Settings, tmp_path: Path
) -> None:
    error = {
        "error": {
            "message": "Rejected by the safety system",
            "code": "moderation_blocked",
        }
    }
    route = httpx2_mock.post(f"{BASE_URL}/images/generations").respond(400, json=error)
    result = await make_runner(settings, tmp_path).run(plan(settings)[AssetKind.IMAGE])
    assert result.status is Status.ERROR
    assert result.reason == "moderation_blocked"
    assert result.error == "Rejected by the safety system"
    assert route.call_count == 1


async def test_unauthorized_stops_the_run(
    httpx2_mock: respx.Router, settings: Settings, tmp_path: Path
) -> None:
    error = {
        "error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}
    }
    route = httpx2_mock.post(f"{BASE_URL}/audio/speech").respond(401, json=error)
    runner = make_runner(settings, tmp_path)
    result = await runner.run(plan(settings)[AssetKind.WORD])
    assert result.status is Status.ERROR
    assert route.call_count == 1
    assert runner.state.stop.is_set()
    assert runner.state.fatal is not None
    assert runner.state.fatal.status_code == 401


async def test_mock_really_intercepts(settings: Settings, tmp_path: Path) -> None:
    # Without a route the respx router must refuse the request, which proves
    # the tests above reach the mock and not the network.
    with respx.mock(using="httpcore2", assert_all_called=False) as router:
        router.post(f"{BASE_URL}/images/generations").respond(200, json=image_body())
        with pytest.raises(respx.models.AllMockedAssertionError):
            await make_runner(settings, tmp_path).run(plan(settings)[AssetKind.WORD])


def test_request_template_never_warns_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Planning sends nothing: builds warn before their first request instead.
    build_request_template(Settings(provider="local"))
    build_request_template(Settings(provider="openai"))
    assert "shutdown" not in caplog.text


def test_shutdown_warning_before_shutdown_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    warn_about_shutdown("gpt-4o-mini-tts", today=dt.date(2027, 1, 5))
    assert "--audio-model 'gpt-4o-mini-tts'" in caplog.text
    assert "2027-01-06" in caplog.text
    caplog.clear()
    warn_about_shutdown("gpt-4o-mini-tts", today=dt.date(2027, 1, 6))
    warn_about_shutdown("gpt-image-1-mini", today=dt.date(2027, 1, 5))
    warn_about_shutdown("no-such-model", today=dt.date(2027, 1, 5))
    assert caplog.text == ""


def test_retired_model_rejected_even_offline() -> None:
    from esl_assets.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="gpt-image-2.5"):
        build_request_template(Settings(provider="local", image_model="gpt-image-1"))


async def test_connection_failures_without_any_response_stop_the_run(
    httpx2_mock: respx.Router, settings: Settings, tmp_path: Path
) -> None:
    settings = settings.replace(max_attempts=1)
    route = httpx2_mock.post(f"{BASE_URL}/audio/speech").mock(
        side_effect=httpx2.ConnectError("refused")
    )
    runner = make_runner(settings, tmp_path)
    job = plan(settings)[AssetKind.WORD]
    for _ in range(UNREACHABLE_AFTER - 1):
        result = await runner.run(job)
        assert result.reason == "connection"
    assert runner.state.fatal is None

    result = await runner.run(job)
    assert result.reason == "unreachable"
    assert runner.state.stop.is_set()
    assert runner.state.fatal is not None
    assert runner.state.fatal.reason == "unreachable"
    assert route.call_count == UNREACHABLE_AFTER


async def test_connection_failures_after_a_response_do_not_stop(
    httpx2_mock: respx.Router, settings: Settings, tmp_path: Path
) -> None:
    settings = settings.replace(max_attempts=1)
    route = httpx2_mock.post(f"{BASE_URL}/audio/speech")
    route.side_effect = [httpx.Response(200, content=ADTS)] + [
        httpx2.ConnectError("refused")
    ] * (2 * UNREACHABLE_AFTER)
    runner = make_runner(settings, tmp_path)
    jobs = plan(settings)
    assert (await runner.run(jobs[AssetKind.WORD])).status is Status.SUCCESS
    for _ in range(2 * UNREACHABLE_AFTER):
        result = await runner.run(jobs[AssetKind.SHORTDEF])
        assert result.reason == "connection"
    assert runner.state.fatal is None
    assert not runner.state.stop.is_set()
