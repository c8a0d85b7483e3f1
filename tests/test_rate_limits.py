"""Retries, rate limits and API failures, counted at the fake OpenAI server."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI

from esl_assets.jobs import AssetKind, Status
from esl_assets.pipeline import Build
from esl_assets.report import BuildReport
from esl_assets.settings import Settings
from esl_assets.storage import TEMP_SUFFIX, existing_file_problem


def write_dictionary(path: Path, entries: int) -> Path:
    """Write a CSV with one definition per entry: three jobs per entry."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "uuid", "word", "pos", "level", "definition"])
        for number in range(1, entries + 1):
            writer.writerow(
                [
                    number,
                    f"entry-{number:05d}",
                    f"word{number}",
                    "noun",
                    "A1",
                    f"definition number {number} of the test dictionary",
                ]
            )
    return path


def make_settings(
    server: FakeOpenAI, tmp_path: Path, entries: int, **options: object
) -> Settings:
    values: dict[str, object] = {
        "dictionary": write_dictionary(tmp_path / "dictionary.csv", entries),
        "outdir": tmp_path / "out",
        "base_url": server.base_url,
        "api_key": "sk-test",
        "max_retry_wait_s": 5.0,
    }
    values.update(options)
    return Settings.from_options(**values)


async def run(settings: Settings) -> BuildReport:
    return await Build(settings).run()


def assert_all_files_valid(report: BuildReport, outdir: Path) -> None:
    for result in report.results:
        assert result.status is Status.SUCCESS, result
        assert existing_file_problem(outdir / result.file) is None, result.file
    assert not [p for p in outdir.iterdir() if p.name.endswith(TEMP_SUFFIX)]


async def test_retry_after_is_obeyed(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    fake_openai.inject(
        "429_rate_limit", lane="audio", match="word1", retry_after_s=2, times=1
    )
    settings = make_settings(fake_openai, tmp_path, 1, images=False)
    report = await run(settings)
    word_requests = [r for r in fake_openai.requests if r.text == "word1"]
    assert len(word_requests) == 2
    assert word_requests[0].status == 429
    assert word_requests[1].status == 200
    assert word_requests[1].started_s - word_requests[0].started_s >= 2.0
    assert report.count(status=Status.SUCCESS) == 2
    assert report.lanes["audio"]["rate_limited"] == 1


async def test_insufficient_quota_stops_the_run(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.inject("429_quota", times=None)
    settings = make_settings(fake_openai, tmp_path, 50, concurrency=4)
    report = await run(settings)
    assert report.outcome == "stopped"
    assert report.exit_code == 3
    assert fake_openai.count() <= 4
    assert "quota" in (report.fatal_message or "")
    assert not [p for p in settings.outdir.iterdir() if p.suffix in (".aac", ".png")]
    assert not [p for p in settings.outdir.iterdir() if p.name.endswith(TEMP_SUFFIX)]


async def test_moderation_block_fails_one_image(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.inject(
        "400_moderation", lane="images", match="definition number 3 ", times=None
    )
    settings = make_settings(fake_openai, tmp_path, 10)
    report = await run(settings)
    errors = report.errors
    assert len(errors) == 1
    assert errors[0].kind is AssetKind.IMAGE
    assert errors[0].reason == "moderation_blocked"
    assert errors[0].file == "image_entry-00003_3.png"
    assert report.count(status=Status.SUCCESS) == 29
    blocked = [
        r for r in fake_openai.requests if r.lane == "images" and r.status == 400
    ]
    assert len(blocked) == 1
    lines = (settings.outdir / "errors.jsonl").read_text().splitlines()
    assert len(lines) == 1
    assert "moderation_blocked" in lines[0]


async def test_random_faults_all_delivered(tmp_path: Path) -> None:
    with FakeOpenAI(fault_rate=0.05, seed=7) as server:
        settings = make_settings(
            server, tmp_path, 100, concurrency=10, max_attempts=6, max_retry_wait_s=0.2
        )
        report = await run(settings)
        faults = sum(1 for r in server.requests if r.fault)
    assert report.count() == 300
    assert_all_files_valid(report, settings.outdir)
    assert faults > 0
    assert report.retries == faults


async def test_half_body_retried_without_partial_file(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.inject("half_body", lane="audio", match="word2", times=1)
    settings = make_settings(
        fake_openai, tmp_path, 3, images=False, max_retry_wait_s=0.1
    )
    report = await run(settings)
    assert_all_files_valid(report, settings.outdir)
    word2 = [r for r in fake_openai.requests if r.text == "word2"]
    assert [r.fault for r in word2] == ["half_body", None]


async def test_stall_hits_the_deadline_and_retries(
    fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.inject("stall", lane="audio", match="word1", times=1)
    settings = make_settings(
        fake_openai,
        tmp_path,
        2,
        images=False,
        audio_timeout_s=1.0,
        max_retry_wait_s=0.1,
    )
    report = await run(settings)
    assert_all_files_valid(report, settings.outdir)
    word1 = [r for r in fake_openai.requests if r.text == "word1"]
    assert len(word1) == 2
    assert word1[0].fault == "stall"
    failed_first = [r for r in report.results if r.file == "word_entry-00001_0.aac"]
    assert failed_first[0].attempts == 2


async def test_slow_image_lane_does_not_stall_audio(tmp_path: Path) -> None:
    # The image lane may send one request per second; audio has no limit, so
    # all audio must be done while the images still trickle out.
    with FakeOpenAI(latency_s=0.02) as server:
        settings = make_settings(server, tmp_path, 6, concurrency=4, image_rpm=60)
        report = await run(settings)
        audio = [r for r in server.requests if r.lane == "audio"]
        images = sorted(r.started_s for r in server.requests if r.lane == "images")
    assert report.count(status=Status.SUCCESS) == 18
    assert len(audio) == 12
    assert len(images) == 6
    last_audio_end = max(r.ended_s or 0.0 for r in audio)
    assert last_audio_end < images[2]
    # The client-side limit spaced the images about a second apart.
    assert images[-1] - images[0] >= 4.0


@pytest.mark.parametrize("fault", ["401", "403", "404_model"])
async def test_account_failures_stop(
    fake_openai: FakeOpenAI, tmp_path: Path, fault: str
) -> None:
    fake_openai.inject(fault, times=None)
    settings = make_settings(fake_openai, tmp_path, 20, concurrency=3)
    report = await run(settings)
    assert report.exit_code == 3
    assert fake_openai.count() <= 3
    assert report.not_run > 0


async def test_retry_wait_frees_the_slot(tmp_path: Path) -> None:
    # One slot in all: while the audio job waits 2 s to retry, image jobs
    # must get the slot. Three images of 0.3 s each outlast the first audio
    # request whichever lane starts first.
    with FakeOpenAI(latency_s=0.3) as server:
        server.inject(
            "429_rate_limit", lane="audio", match="word1", retry_after_s=2, times=1
        )
        settings = make_settings(
            server, tmp_path, 3, concurrency=1, max_retry_wait_s=2.0
        )
        report = await run(settings)
        word1 = [r for r in server.requests if r.text == "word1"]
        images = [r.started_s for r in server.requests if r.lane == "images"]
    assert report.count(status=Status.SUCCESS) == 9
    assert len(word1) == 2
    assert word1[0].ended_s is not None
    assert any(word1[0].ended_s <= s < word1[1].started_s for s in images)


async def test_wrong_base_url_names_the_address(tmp_path: Path) -> None:
    with FakeOpenAI() as server:
        wrong = server.base_url.removesuffix("/v1") + "/nope"
        settings = make_settings(server, tmp_path, 3, base_url=wrong)
        report = await run(settings)
    assert report.exit_code == 3
    assert "--base-url" in (report.fatal_message or "")
    assert "model was not found" not in (report.fatal_message or "")
