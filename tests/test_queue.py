"""The Redis queue in one process: scripts, worker, reaper, limits, status.

Every test runs against a real redis-server started by the ``redis_server``
fixture, and workers send their requests to the fake OpenAI server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from redis_server import RedisServer, free_port, start_redis_server

from esl_assets.errors import ConfigurationError, QueueError
from esl_assets.jobs import AssetKind, Job
from esl_assets.planner import Planner, build_request_template
from esl_assets.queue import (
    Claim,
    Finish,
    JobQueue,
    QueueKeys,
    Reconnector,
    Worker,
    WorkerOptions,
    job_id,
    read_status,
    redact_url,
)
from esl_assets.queue.status import RATE_WINDOW_S, QueueStatus, _finished_since
from esl_assets.queue_commands import queue_status
from esl_assets.rows import Row
from esl_assets.settings import Settings
from esl_assets.storage import existing_file_problem

pytestmark = pytest.mark.redis

API_KEY = "sk-test"


def make_jobs(settings: Settings, entries: int, *, images: bool = False) -> list[Job]:
    """Plan a word and a short definition (and an image) for each entry."""
    template = build_request_template(settings)
    kinds = {AssetKind.WORD, AssetKind.SHORTDEF}
    if images:
        kinds.add(AssetKind.IMAGE)
    rows = [
        Row(
            uuid=f"entry-{index:04d}",
            word=f"word{index}",
            pos="noun",
            level="A1",
            definition_id="1",
            definition=f"meaning number {index}",
        )
        for index in range(entries)
    ]
    planner = Planner(settings, template, frozenset(kinds))
    return [item for item in planner.plan(rows) if isinstance(item, Job)]


def make_settings(
    tmp_path: Path, fake: FakeOpenAI | None = None, **changes: object
) -> Settings:
    base_url = fake.base_url if fake is not None else None
    values: dict[str, object] = {
        "outdir": tmp_path / "out",
        "base_url": base_url,
        "max_retry_wait_s": 0.01,
        "images": False,
    }
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


def worker_options(**changes: object) -> WorkerOptions:
    values: dict[str, object] = {
        "concurrency": 4,
        "exit_when_empty": True,
        "api_key": API_KEY,
        "heartbeat_ttl_s": 5.0,
        "block_timeout_s": 0.2,
        "grace_s": 5.0,
    }
    values.update(changes)
    return WorkerOptions(**values)  # type: ignore[arg-type]


async def run_worker(queue: JobQueue, url: str, **changes: object) -> Worker:
    worker = Worker(queue, Reconnector(url), worker_options(**changes))
    await asyncio.wait_for(worker.run(), timeout=120)
    return worker


@pytest.fixture
async def queue(redis_server: RedisServer) -> AsyncIterator[JobQueue]:
    connected = await JobQueue.connect(redis_server.url, "test")
    try:
        yield connected
    finally:
        await connected.close()


async def wait_for_key_to_expire(queue: JobQueue, key: str) -> None:
    for _ in range(500):
        if not await queue.redis.exists(key):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{key} did not expire")


async def claim_as_dead_worker(
    queue: JobQueue, worker_id: str, count: int
) -> list[str]:
    """Claim jobs as a worker whose heartbeat then expires, as after SIGKILL."""
    await queue.beat(worker_id, {"host": "gone", "pid": 1, "claims": []}, 0.05)
    payloads = await queue.claim(worker_id, "audio", count)
    await wait_for_key_to_expire(queue, queue.keys.heartbeat(worker_id))
    return payloads


# -- enqueue


async def test_enqueue_same_plan_twice_adds_nothing(
    queue: JobQueue, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path)
    jobs = make_jobs(settings, 30)

    first = await queue.enqueue(settings, jobs)
    second = await queue.enqueue(settings, make_jobs(settings, 30))

    assert first.added == len(jobs)
    assert first.existing == 0
    assert second.added == 0
    assert second.existing == len(jobs)
    assert await queue.redis.llen(queue.keys.pending("audio")) == len(jobs)
    assert await queue.redis.scard(queue.keys.known) == len(jobs)


async def test_enqueue_changed_text_adds_new_job(
    queue: JobQueue, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path)
    await queue.enqueue(settings, make_jobs(settings, 3))

    changed = make_jobs(settings.replace(audio_voice="nova"), 3)
    report = await queue.enqueue(settings, changed)

    assert report.added == len(changed)


async def test_enqueued_job_carries_settings_without_key(
    queue: JobQueue, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, api_key="sk-never-stored", audio_rpm=30.0)
    await queue.enqueue(settings, make_jobs(settings, 1))

    payload = await queue.redis.lindex(queue.keys.pending("audio"), 0)
    claim = Claim.parse(payload)
    loaded = await queue.load_settings(claim.settings_id)

    assert loaded is not None
    assert loaded.audio_rpm == 30.0
    assert loaded.outdir == (tmp_path / "out").resolve()
    assert loaded.api_key is None
    assert claim.attempts == 0
    assert claim.max_attempts == settings.max_attempts


async def test_queue_name_with_brace_is_rejected(redis_server: RedisServer) -> None:
    with pytest.raises(ConfigurationError, match="--queue"):
        await JobQueue.connect(redis_server.url, "a{b}")


async def test_queues_keep_their_keys_apart(queue: JobQueue, tmp_path: Path) -> None:
    keys = QueueKeys.for_queue("other")
    assert keys.prefix != queue.keys.prefix
    assert queue.keys.prefix == "esl-assets:{test}:"


# -- worker


async def test_worker_drains_queue_and_records_results(
    queue: JobQueue, redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, fake_openai, images=True)
    jobs = make_jobs(settings, 10, images=True)
    await queue.enqueue(settings, jobs)

    worker = await run_worker(queue, redis_server.url)

    assert worker.report.outcome == "complete"
    assert worker.report.counts == Counter({"success": len(jobs)})
    for job in jobs:
        assert existing_file_problem(settings.outdir / job.file) is None, job.file
    assert fake_openai.count() == len(jobs)
    results = await queue.redis.hgetall(queue.keys.results)
    assert set(results) == {job_id(job) for job in jobs}
    record = json.loads(results[job_id(jobs[0])])
    assert record["status"] == "success"
    assert record["worker"] == worker.worker_id
    assert record["attempts"] == 1
    assert await queue.redis.hgetall(queue.keys.counts) == {"success": str(len(jobs))}
    assert await queue.redis.hlen(queue.keys.workers) == 0
    assert await queue.unfinished() == 0


@pytest.mark.parametrize(("provider", "warnings"), [("openai", 1), ("local", 0)])
async def test_worker_warns_shutdown_once(
    queue: JobQueue,
    redis_server: RedisServer,
    fake_openai: FakeOpenAI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    provider: str,
    warnings: int,
) -> None:
    settings = make_settings(tmp_path, fake_openai)
    jobs = make_jobs(settings, 10)
    await queue.enqueue(settings, jobs)
    caplog.clear()

    worker = await run_worker(queue, redis_server.url, provider=provider)

    assert worker.report.counts == Counter({"success": len(jobs)})
    shutdown = [r for r in caplog.records if "announced shutdown" in r.message]
    assert len(shutdown) == warnings


async def test_worker_skips_files_already_on_disk(
    queue: JobQueue, redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, fake_openai)
    jobs = make_jobs(settings, 3)
    await queue.enqueue(settings, jobs)
    await run_worker(queue, redis_server.url)
    # Enqueue the same files under a new voice: the files exist, so no request.
    fake_openai.reset_records()
    changed = make_jobs(settings.replace(audio_voice="nova"), 3)
    await queue.enqueue(settings, changed)

    worker = await run_worker(queue, redis_server.url)

    assert worker.report.counts == Counter({"skipped": len(changed)})
    assert fake_openai.count() == 0


async def test_always_failing_job_goes_to_dead_list(
    queue: JobQueue, redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, fake_openai, max_attempts=3)
    jobs = make_jobs(settings, 4)
    fake_openai.inject("500", match="meaning number 2", times=None)
    await queue.enqueue(settings, jobs)

    worker = await run_worker(queue, redis_server.url)

    failing = next(job for job in jobs if job.text == "meaning number 2")
    record = json.loads(await queue.redis.hget(queue.keys.results, job_id(failing)))
    assert record["outcome"] == "dead"
    assert record["status"] == "error"
    assert record["attempts"] == 3
    assert record["error"]
    assert len(fake_openai.requests_for("meaning number 2")) == 3
    dead = await queue.redis.lrange(queue.keys.dead, 0, -1)
    assert [Claim.parse(p).job_id for p in dead] == [job_id(failing)]
    assert worker.report.counts == Counter({"success": len(jobs) - 1, "dead": 1})


async def test_refused_job_is_failed_then_requeued(
    queue: JobQueue, redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, fake_openai)
    jobs = make_jobs(settings, 3)
    fake_openai.inject("400_moderation", match="meaning number 1", times=1)
    await queue.enqueue(settings, jobs)
    await run_worker(queue, redis_server.url)
    refused = next(job for job in jobs if job.text == "meaning number 1")

    record = json.loads(await queue.redis.hget(queue.keys.results, job_id(refused)))
    moved, dropped = await queue.requeue("error")
    worker = await run_worker(queue, redis_server.url)

    assert record["outcome"] == "error"
    assert await queue.redis.llen(queue.keys.dead) == 0
    assert (moved, dropped) == (1, 0)
    assert worker.report.counts == Counter({"success": 1})
    counts = await queue.redis.hgetall(queue.keys.counts)
    assert counts["success"] == str(len(jobs))
    assert counts["error"] == "0"


async def test_rejected_key_stops_worker_jobs_stay_pending(
    queue: JobQueue, redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, fake_openai)
    jobs = make_jobs(settings, 10)
    await queue.enqueue(settings, jobs)

    worker = await run_worker(queue, redis_server.url, api_key="sk-wrong")

    assert worker.report.outcome == "stopped"
    assert worker.report.exit_code == 3
    assert worker.report.fatal_message is not None
    assert "The key came from the api_key argument" in worker.report.fatal_message
    assert "sk-wrong" not in worker.report.fatal_message
    assert await queue.unfinished() == len(jobs)
    assert await queue.redis.llen(queue.keys.pending("audio")) == len(jobs)
    assert await queue.redis.llen(queue.keys.dead) == 0
    assert await queue.redis.hlen(queue.keys.results) == 0
    assert await queue.redis.hlen(queue.keys.workers) == 0


async def test_stop_request_returns_claims(
    queue: JobQueue, redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, fake_openai)
    jobs = make_jobs(settings, 10)
    await queue.enqueue(settings, jobs)
    fake_openai.hold()
    worker = Worker(queue, Reconnector(redis_server.url), worker_options(grace_s=0.2))
    running = asyncio.create_task(worker.run())
    await fake_openai.wait_in_flight_async(4)

    worker.request_stop()
    report = await asyncio.wait_for(running, 30)
    fake_openai.release()

    assert report.outcome == "interrupted"
    assert report.exit_code == 130
    assert report.released >= 4
    assert await queue.redis.llen(queue.keys.pending("audio")) == len(jobs)
    assert await queue.redis.hlen(queue.keys.results) == 0


# -- reaper


async def test_reaper_returns_claims_exactly_once(
    queue: JobQueue, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path)
    jobs = make_jobs(settings, 5)
    await queue.enqueue(settings, jobs)
    claimed = await claim_as_dead_worker(queue, "ghost", 4)
    other = await JobQueue.connect(redis_server.url, "test")

    try:
        reports = await asyncio.gather(queue.reap(), other.reap(), queue.reap())
    finally:
        await other.close()

    assert sum(report.workers for report in reports) == 1
    assert sum(report.requeued for report in reports) == len(claimed)
    pending = await queue.redis.lrange(queue.keys.pending("audio"), 0, -1)
    assert len(pending) == len(jobs)
    returned = [Claim.parse(p) for p in pending[: len(claimed)]]
    assert [c.job_id for c in returned] == [Claim.parse(p).job_id for p in claimed]
    assert [c.attempts for c in returned] == [1] * len(claimed)
    assert await queue.redis.exists(queue.keys.claims("ghost")) == 0
    assert await queue.redis.hlen(queue.keys.workers) == 0


async def test_reaper_leaves_live_workers_alone(
    queue: JobQueue, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path)
    await queue.enqueue(settings, make_jobs(settings, 2))
    await queue.beat("alive", {"claims": []}, 30.0)
    await queue.claim("alive", "audio", 2)

    report = await queue.reap()

    assert report.workers == 0
    assert await queue.redis.llen(queue.keys.claims("alive")) == 2


async def test_reaper_dead_letters_after_max_attempts(
    queue: JobQueue, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, max_attempts=2)
    jobs = make_jobs(settings, 1)[:1]
    await queue.enqueue(settings, jobs)

    await claim_as_dead_worker(queue, "first", 1)
    first = await queue.reap()
    await claim_as_dead_worker(queue, "second", 1)
    second = await queue.reap()

    assert (first.requeued, first.dead) == (1, 0)
    assert (second.requeued, second.dead) == (0, 1)
    record = json.loads(await queue.redis.hget(queue.keys.results, job_id(jobs[0])))
    assert record["outcome"] == "dead"
    assert record["reason"] == "worker_lost"
    assert record["attempts"] == 2
    assert await queue.redis.hget(queue.keys.counts, "dead") == "1"
    assert await queue.unfinished() == 0

    moved, _ = await queue.requeue("dead")

    assert moved == 1
    pending = await queue.redis.lrange(queue.keys.pending("audio"), 0, -1)
    assert [Claim.parse(p).attempts for p in pending] == [0]
    assert await queue.redis.hget(queue.keys.counts, "dead") == "0"


async def test_redelivered_job_gets_only_remaining_attempts(
    queue: JobQueue, redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, fake_openai, max_attempts=3)
    jobs = make_jobs(settings, 1)[:1]
    fake_openai.inject("503", times=None)
    await queue.enqueue(settings, jobs)
    await claim_as_dead_worker(queue, "ghost", 1)
    await queue.reap()

    await run_worker(queue, redis_server.url)

    record = json.loads(await queue.redis.hget(queue.keys.results, job_id(jobs[0])))
    assert fake_openai.count() == 2
    assert record["attempts"] == 3
    assert record["outcome"] == "dead"


# -- finishing


def success_finish(claim: Claim, worker: str, outcome: str = "success") -> Finish:
    status = "skipped" if outcome == "skipped" else "success"
    record = {
        "status": status,
        "file": claim.job.file,
        "outcome": outcome,
        "worker": worker,
    }
    return Finish(claim, outcome, record)


async def test_finish_replay_changes_nothing(queue: JobQueue, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    await queue.enqueue(settings, make_jobs(settings, 1))
    [payload] = await queue.claim("w1", "audio", 1)
    finish = success_finish(Claim.parse(payload), "w1")

    await queue.finish("w1", [finish])
    await queue.finish("w1", [finish])

    assert await queue.redis.hgetall(queue.keys.counts) == {"success": "1"}
    assert await queue.redis.hlen(queue.keys.results) == 1
    assert await queue.redis.llen(queue.keys.claims("w1")) == 0


async def test_finish_after_reap_withdraws_requeued_copy(
    queue: JobQueue, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path)
    await queue.enqueue(settings, make_jobs(settings, 1)[:1])
    [payload] = await claim_as_dead_worker(queue, "slow", 1)
    await queue.reap()
    assert await queue.redis.llen(queue.keys.pending("audio")) == 1

    await queue.finish("slow", [success_finish(Claim.parse(payload), "slow")])

    assert await queue.redis.llen(queue.keys.pending("audio")) == 0
    assert await queue.redis.hgetall(queue.keys.counts) == {"success": "1"}


async def test_skipped_never_replaces_success(queue: JobQueue, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    await queue.enqueue(settings, make_jobs(settings, 1))
    [payload] = await queue.claim("w1", "audio", 1)
    claim = Claim.parse(payload)

    await queue.finish("w1", [success_finish(claim, "w1")])
    await queue.finish("w2", [success_finish(claim, "w2", "skipped")])

    record = json.loads(await queue.redis.hget(queue.keys.results, claim.job_id))
    assert record["outcome"] == "success"
    assert record["worker"] == "w1"
    assert await queue.redis.hgetall(queue.keys.counts) == {"success": "1"}


async def test_finish_returns_shared_pause(queue: JobQueue, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    await queue.enqueue(settings, make_jobs(settings, 1))
    [payload] = await queue.claim("w1", "audio", 1)
    await queue.pause_lane("audio", 30.0)

    pauses = await queue.finish("w1", [success_finish(Claim.parse(payload), "w1")])

    assert 20.0 < pauses["audio"] <= 30.0
    assert pauses["images"] == 0.0


# -- shared rate limits


async def test_reservations_are_spaced_across_connections(
    queue: JobQueue, redis_server: RedisServer
) -> None:
    # 0.6 requests per minute: one slot every 100 s, so the few milliseconds
    # the calls take do not blur the spacing.
    other = await JobQueue.connect(redis_server.url, "test")
    try:
        waits = await asyncio.gather(
            *(q.reserve_request_slot("audio", 0.6) for q in [queue, other] * 10)
        )
    finally:
        await other.close()

    ordered = sorted(waits)
    assert ordered[0] <= 1.0
    gaps = [
        later - earlier for earlier, later in zip(ordered, ordered[1:], strict=False)
    ]
    assert all(99.0 <= gap <= 101.0 for gap in gaps), gaps


async def test_reservation_waits_for_pause(queue: JobQueue) -> None:
    await queue.pause_lane("images", 50.0)

    wait_s = await queue.reserve_request_slot("images", 6000.0)
    other_lane_s = await queue.reserve_request_slot("audio", 6000.0)

    assert 45.0 <= wait_s <= 50.0
    assert other_lane_s <= 1.0


async def test_longer_pause_wins(queue: JobQueue) -> None:
    await queue.pause_lane("audio", 40.0)
    await queue.pause_lane("audio", 1.0)

    assert await queue.redis.pttl(queue.keys.pause("audio")) > 30_000


# -- outages and secrets


async def test_unreachable_redis_names_url_without_password() -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"

    with pytest.raises(QueueError) as raised:
        await JobQueue.connect(url, "test")

    message = str(raised.value)
    assert "hunter2" not in message
    assert redact_url(url) in message
    assert "Cannot connect to Redis" in message


def test_redact_url_hides_password() -> None:
    assert redact_url("redis://user:pw@host:6379/1") == "redis://user:***@host:6379/1"
    assert (
        redact_url("redis://host:6379/0?password=pw")
        == "redis://host:6379/0?password=%2A%2A%2A"
    )
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"


async def test_results_recorded_after_redis_restart(
    durable_redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, fake_openai)
    jobs = make_jobs(settings, 4)
    queue = await JobQueue.connect(durable_redis_server.url, "test")
    try:
        await queue.enqueue(settings, jobs)
        fake_openai.hold()
        worker = Worker(
            queue,
            Reconnector(durable_redis_server.url),
            worker_options(heartbeat_ttl_s=30.0),
        )
        running = asyncio.create_task(worker.run())
        await fake_openai.wait_in_flight_async(4)
        await asyncio.to_thread(durable_redis_server.stop)
        fake_openai.release()
        # The fake server offers no event for its counters, so poll them.
        while fake_openai.count(status=200) < len(jobs):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        await asyncio.to_thread(durable_redis_server.start)

        report = await asyncio.wait_for(running, 60)

        assert report.outcome == "complete"
        assert report.counts == Counter({"success": len(jobs)})
        assert fake_openai.count() == len(jobs)
        assert await queue.redis.hgetall(queue.keys.counts) == {
            "success": str(len(jobs))
        }
        assert await queue.unfinished() == 0
    finally:
        await queue.close()


async def test_no_secret_in_redis(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    server = start_redis_server(tmp_path / "redis-auth", password="redis-pass-4242")
    settings = make_settings(
        tmp_path, fake_openai, api_key=API_KEY, redis_url=server.url, images=True
    )
    try:
        queue = await JobQueue.connect(server.url, "test")
        try:
            await queue.enqueue(settings, make_jobs(settings, 3, images=True))
            await run_worker(queue, server.url)
            values = await dump_all_values(queue)
        finally:
            await queue.close()
    finally:
        server.stop()

    assert values
    for text in values:
        assert API_KEY not in text
        assert "redis-pass-4242" not in text


async def dump_all_values(queue: JobQueue) -> list[str]:
    """Return every key name and every value in the database as text."""
    redis = queue.redis
    texts: list[str] = []
    async for key in redis.scan_iter(match="*"):
        texts.append(key)
        kind = await redis.type(key)
        if kind == "string":
            texts.append(await redis.get(key))
        elif kind == "list":
            texts += await redis.lrange(key, 0, -1)
        elif kind == "hash":
            for field, value in (await redis.hgetall(key)).items():
                texts += [field, value]
        elif kind == "set":
            texts += list(await redis.smembers(key))
        else:
            raise AssertionError(f"unexpected key type {kind} of {key}")
    return texts


# -- status


async def test_status_counts_workers_and_claims(
    queue: JobQueue, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path)
    jobs = make_jobs(settings, 5)
    await queue.enqueue(settings, jobs)
    claimed = await queue.claim("busy", "audio", 2)
    now = float((await queue.redis.time())[0])
    files = [[Claim.parse(p).job.file, now - 7.0] for p in claimed]
    await queue.beat("busy", {"host": "h", "pid": 42, "claims": files}, 30.0)
    await queue.finish("busy", [success_finish(Claim.parse(claimed[0]), "busy")])

    status = await read_status(queue)

    assert status.pending_total == len(jobs) - 2
    assert status.in_flight == 1
    assert status.counts["success"] == 1
    assert status.finished_last_minute == 1
    assert status.workers_alive == 1
    [worker] = status.workers
    assert worker.pid == 42
    assert worker.claims[0].age_s >= 6.0
    assert status.eta_s is not None
    data = status.to_dict()
    assert data["pending"] == len(jobs) - 2
    assert data["done"] == 1
    # One job finished this second: the rate is over about one second, not
    # over a minute of which most has not happened yet.
    assert 1.0 <= status.rate_window_s <= 2.0
    assert data["rate_per_min"] == round(60 / status.rate_window_s)


def test_rate_in_first_minute() -> None:
    per_second = {"1000": "100", "1002": "100", "1004": "40", "900": "7"}
    finished, first = _finished_since(per_second, 1005.0 - RATE_WINDOW_S)
    assert finished == 240
    assert first == 1000
    status = QueueStatus(
        queue="q",
        pending={"audio": 480},
        counts={},
        known=720,
        workers=[],
        finished_last_minute=finished,
        rate_window_s=5.0,
    )
    assert status.rate_per_min == 2880
    assert status.eta_s == pytest.approx(10.0)


def test_queue_status_command_prints_json(
    redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path)

    async def fill() -> None:
        queue = await JobQueue.connect(redis_server.url, "test")
        try:
            await queue.enqueue(settings, make_jobs(settings, 3))
        finally:
            await queue.close()

    asyncio.run(fill())
    args = argparse.Namespace(redis_url=redis_server.url, queue="test", json=True)

    code = queue_status(args)

    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["pending"] == 6
    assert data["in_flight"] == 0
    assert data["workers_alive"] == 0
    assert data["eta_s"] is None


async def test_purge_deletes_only_its_queue(
    queue: JobQueue, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path)
    other = await JobQueue.connect(redis_server.url, "other")
    try:
        await queue.enqueue(settings, make_jobs(settings, 2))
        await other.enqueue(settings, make_jobs(settings, 2))

        deleted = await queue.purge()

        assert deleted >= 3
        assert await queue.redis.keys(queue.keys.pattern) == []
        assert await other.redis.llen(other.keys.pending("audio")) == 4
    finally:
        await other.close()
