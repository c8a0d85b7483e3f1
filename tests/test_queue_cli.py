"""The Redis queue through the CLI: worker processes, SIGKILL, rate limits, errors.

Workers run as subprocesses (``python -m esl_assets worker``) against a real
redis-server and the fake OpenAI server, which counts every request.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
from cli_helpers import cli_environment
from cli_helpers import run_cli as run_cli_with_key
from fake_openai import FakeOpenAI
from redis_server import RedisServer, free_port

from esl_assets.queue.worker import CLAIMS_PER_SLOT
from esl_assets.storage import existing_file_problem

pytestmark = [pytest.mark.redis, pytest.mark.slow]

WORKER_TIMEOUT_S = 180


def cli_env(key: str | None = "sk-test") -> dict[str, str]:
    return cli_environment(key)


def run_cli(
    *args: str, key: str | None = "sk-test", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli_with_key(*args, key=key, cwd=cwd, timeout_s=WORKER_TIMEOUT_S)


def start_worker(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "esl_assets", "worker", *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=cli_env(),
        )


def write_dictionary(path: Path, entries: int) -> Path:
    """Write a CSV dictionary: one definition per entry, unique texts."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "uuid", "word", "pos", "level", "definition", "example"])
        for index in range(entries):
            uuid = f"00000000-0000-4000-8000-{index:012d}"
            writer.writerow(
                [1, uuid, f"word{index}", "noun", "A1", f"meaning number {index}", ""]
            )
    return path


def enqueue(
    dictionary: Path, server: RedisServer, outdir: Path, fake: FakeOpenAI, *options: str
) -> dict[str, object]:
    result = run_cli(
        "enqueue", str(dictionary), "--redis-url", server.url, "--outdir", str(outdir),
        "--base-url", fake.base_url, "--no-images", "--json", *options,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def wait_for(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def wait_all(workers: list[subprocess.Popen[bytes]], logs: list[Path]) -> list[int]:
    codes = []
    for worker, log in zip(workers, logs, strict=True):
        try:
            codes.append(worker.wait(timeout=WORKER_TIMEOUT_S))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
            raise AssertionError(
                f"worker did not exit:\n{log.read_text()[-3000:]}"
            ) from None
    return codes


def queue_counts(server: RedisServer) -> dict[str, int]:
    client = server.client()
    try:
        counts = client.hgetall("esl-assets:{esl-assets}:counts")
    finally:
        client.close()
    return {k: int(v) for k, v in counts.items()}


def test_three_workers_survive_sigkill(
    redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    dictionary = write_dictionary(tmp_path / "dict.csv", 150)
    outdir = tmp_path / "out"
    enqueued = enqueue(dictionary, redis_server, outdir, fake_openai)
    assert enqueued["added"] == 300
    fake_openai.latency_s = 0.1
    concurrency = 5
    options = [
        "--redis-url", redis_server.url, "--concurrency", str(concurrency),
        "--exit-when-empty", "--heartbeat-ttl", "2", "-v", "0", "--json",
    ]  # fmt: skip
    logs = [tmp_path / f"worker-{index}.log" for index in range(3)]
    workers = [start_worker(*options, log=log) for log in logs]

    wait_for(lambda: fake_openai.count() >= 60, 60, "60 requests")
    workers[0].send_signal(signal.SIGKILL)
    workers[0].wait()
    codes = wait_all(workers[1:], logs[1:])

    assert codes == [0, 0], [log.read_text()[-2000:] for log in logs[1:]]
    reports = [json.loads(log.read_text()) for log in logs[1:]]
    # The killed worker's claims (the only ones reaped) are its jobs in
    # flight: sent, or with a response whose file was not yet written.
    # Only those may be requested twice.
    reaped = sum(report["reaped"] for report in reports)
    assert 1 <= reaped <= CLAIMS_PER_SLOT * concurrency
    files = sorted(p for p in outdir.iterdir() if not p.name.startswith("."))
    assert len(files) == 300
    for path in files:
        assert existing_file_problem(path) is None, path.name
    per_text = Counter(r.text for r in fake_openai.requests)
    assert len(per_text) == 300
    assert max(per_text.values()) <= 2
    requested_twice = [text for text, n in per_text.items() if n == 2]
    assert len(requested_twice) <= reaped
    counts = queue_counts(redis_server)
    assert counts.get("success", 0) + counts.get("skipped", 0) == 300
    assert counts.get("dead", 0) == 0


def test_two_workers_share_rpm_limit(
    redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    # 120 per minute is one request every 0.5 s for both workers together.
    # Without the shared limit, 16 jobs at concurrency 4 take well under 1 s.
    dictionary = write_dictionary(tmp_path / "dict.csv", 8)
    outdir = tmp_path / "out"
    enqueue(dictionary, redis_server, outdir, fake_openai, "--audio-rpm", "120")
    options = [
        "--redis-url", redis_server.url, "--concurrency", "4", "--exit-when-empty",
        "-v", "0",
    ]  # fmt: skip
    logs = [tmp_path / f"worker-{index}.log" for index in range(2)]
    workers = [start_worker(*options, log=log) for log in logs]

    codes = wait_all(workers, logs)

    assert codes == [0, 0]
    starts = sorted(r.started_s for r in fake_openai.requests)
    assert len(starts) == 16
    assert fake_openai.count(status=429) == 0
    # Slots are 0.5 s apart on Redis's clock; allow 1 s for delivery jitter.
    assert starts[-1] - starts[0] >= 15 * 0.5 - 1.0
    for index, start in enumerate(starts):
        in_minute = [s for s in starts[index:] if s - start < 60.0]
        assert len(in_minute) <= 120


def test_unreachable_redis_exits_2_without_password() -> None:
    url = f"redis://:s3cret-pass@127.0.0.1:{free_port()}/0"

    for command in (["worker", "--redis-url", url], ["status", "--redis-url", url]):
        result = run_cli(*command)

        assert result.returncode == 2, (command, result.stderr)
        assert "Cannot connect to Redis at redis://:***@127.0.0.1" in result.stderr
        assert "s3cret-pass" not in result.stderr
        assert result.stderr.count("Error:") == 1


def test_build_with_redis_url_is_idempotent(
    redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    dictionary = write_dictionary(tmp_path / "dict.csv", 5)
    outdir = tmp_path / "out"
    build = [
        "build", str(dictionary), "--redis-url", redis_server.url, "--outdir",
        str(outdir), "--base-url", fake_openai.base_url, "--json",
    ]  # fmt: skip

    first = run_cli(*build)
    requests_after_first = fake_openai.count()
    second = run_cli(*build)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    first_data, second_data = json.loads(first.stdout), json.loads(second.stdout)
    assert first_data["added"] == 15
    assert first_data["outcomes"] == {"success": 15}
    assert second_data["added"] == 0
    assert second_data["existing"] == 15
    assert second_data["outcomes"] == {"success": 15}
    assert requests_after_first == 15
    assert fake_openai.count() == requests_after_first
    assert len([p for p in outdir.iterdir() if not p.name.startswith(".")]) == 15


def test_build_exits_1_when_a_job_is_dead(
    redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    dictionary = write_dictionary(tmp_path / "dict.csv", 3)
    fake_openai.inject("503", match="meaning number 1", times=None)

    result = run_cli(
        "build", str(dictionary), "--redis-url", redis_server.url, "--outdir",
        str(tmp_path / "out"), "--base-url", fake_openai.base_url, "--no-images",
        "--max-attempts", "2", "--max-retry-wait", "0.01", "--json",
    )  # fmt: skip

    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["outcomes"] == {"success": 5, "dead": 1}
    requeued = run_cli("requeue", "--dead", "--redis-url", redis_server.url, "--json")
    assert requeued.returncode == 0, requeued.stderr
    assert json.loads(requeued.stdout) == {
        "queue": "esl-assets",
        "requeued": 1,
        "dropped": 0,
    }


def test_worker_exits_1_when_a_job_is_dead(
    redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    dictionary = write_dictionary(tmp_path / "dict.csv", 3)
    fake_openai.inject("503", match="meaning number 1", times=None)
    enqueue(
        dictionary, redis_server, tmp_path / "out", fake_openai,
        "--max-attempts", "2", "--max-retry-wait", "0.01",
    )  # fmt: skip

    result = run_cli(
        "worker", "--redis-url", redis_server.url, "--exit-when-empty", "--json"
    )

    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["counts"] == {"success": 5, "dead": 1}


def test_build_retry_blocked_requeues_refusals(
    redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    dictionary = write_dictionary(tmp_path / "dict.csv", 3)
    fake_openai.inject("400_moderation", match="meaning number 1", times=1)
    build = (
        "build", str(dictionary), "--redis-url", redis_server.url, "--outdir",
        str(tmp_path / "out"), "--base-url", fake_openai.base_url, "--no-images",
        "--max-attempts", "1", "--json",
    )  # fmt: skip

    first = run_cli(*build)
    # --retry-blocked alone, because it implies --retry-failed.
    second = run_cli(*build, "--retry-blocked")

    assert first.returncode == 1, first.stderr
    assert json.loads(first.stdout)["outcomes"] == {"success": 5, "error": 1}
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["outcomes"] == {"success": 6}


def test_purge_needs_yes(
    redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    dictionary = write_dictionary(tmp_path / "dict.csv", 2)
    enqueue(dictionary, redis_server, tmp_path / "out", fake_openai)

    refused = run_cli("purge", "--redis-url", redis_server.url)
    purged = run_cli("purge", "--yes", "--redis-url", redis_server.url, "--json")

    assert refused.returncode == 2
    assert "--yes" in refused.stderr
    assert purged.returncode == 0, purged.stderr
    assert json.loads(purged.stdout)["deleted_keys"] >= 3
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.dbsize() == 0
    finally:
        client.close()


def test_status_command_shows_queue(
    redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    dictionary = write_dictionary(tmp_path / "dict.csv", 2)
    enqueue(dictionary, redis_server, tmp_path / "out", fake_openai)

    result = run_cli("status", "--redis-url", redis_server.url, "--json")

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["pending"] == 4
    assert data["known"] == 4


def test_workers_finish_after_redis_restart(
    durable_redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    dictionary = write_dictionary(tmp_path / "dict.csv", 50)
    outdir = tmp_path / "out"
    enqueue(dictionary, durable_redis_server, outdir, fake_openai)
    fake_openai.latency_s = 0.05
    options = [
        "--redis-url", durable_redis_server.url, "--concurrency", "4",
        "--exit-when-empty", "-v", "1",
    ]  # fmt: skip
    logs = [tmp_path / f"worker-{index}.log" for index in range(2)]
    workers = [start_worker(*options, log=log) for log in logs]

    wait_for(lambda: fake_openai.count() >= 30, 60, "30 requests")
    durable_redis_server.restart()
    codes = wait_all(workers, logs)

    assert codes == [0, 0], [log.read_text()[-2000:] for log in logs]
    assert len([p for p in outdir.iterdir() if not p.name.startswith(".")]) == 100
    counts = queue_counts(durable_redis_server)
    assert counts.get("success", 0) + counts.get("skipped", 0) == 100
    # Each worker's pooled connections broke, so each logged a reconnect.
    for log in logs:
        assert "responds again" in log.read_text()


def test_resume_build_recovers_orphans(
    redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    dictionary = write_dictionary(tmp_path / "dict.csv", 3)
    outdir = tmp_path / "out"
    enqueue(dictionary, redis_server, outdir, fake_openai)
    # A worker that died holding two claims: registered, no heartbeat key.
    prefix = "esl-assets:{esl-assets}:"
    client = redis_server.client()
    try:
        for _ in range(2):
            client.lmove(f"{prefix}pending:audio", f"{prefix}worker:gone:claims")
        client.hset(f"{prefix}workers", "gone", "{}")
    finally:
        client.close()

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    result = run_cli(
        "build", "--resume", "--redis-url", redis_server.url, "--json", cwd=workdir
    )

    assert result.returncode == 0, result.stderr
    # The jobs carry their own --outdir, so the default one is not created.
    assert list(workdir.iterdir()) == []
    data = json.loads(result.stdout)
    assert data["added"] is None
    assert data["outcomes"] == {"success": 6}
    assert data["worker"]["reaped"] == 2
    assert len([p for p in outdir.iterdir() if not p.name.startswith(".")]) == 6
    assert fake_openai.count() == 6


def test_worker_with_local_provider_needs_no_key(
    redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    dictionary = write_dictionary(tmp_path / "dict.csv", 2)
    outdir = tmp_path / "out"
    enqueue(dictionary, redis_server, outdir, fake_openai)

    result = subprocess.run(
        [
            sys.executable, "-m", "esl_assets", "worker", "--redis-url",
            redis_server.url, "--provider", "local", "--exit-when-empty", "--json",
        ],
        capture_output=True,
        text=True,
        env=cli_env(key=None),
        timeout=WORKER_TIMEOUT_S,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["counts"] == {"success": 4}
    assert fake_openai.count() == 0
    for path in outdir.iterdir():
        assert existing_file_problem(path) is None, path.name


def test_worker_without_key_exits_2_jobs_stay(
    redis_server: RedisServer, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    dictionary = write_dictionary(tmp_path / "dict.csv", 2)
    enqueue(dictionary, redis_server, tmp_path / "out", fake_openai)

    result = subprocess.run(
        [
            sys.executable, "-m", "esl_assets", "worker", "--redis-url",
            redis_server.url, "--exit-when-empty",
        ],
        capture_output=True,
        text=True,
        env=cli_env(key=None),
        timeout=WORKER_TIMEOUT_S,
    )  # fmt: skip

    assert result.returncode == 2
    assert "OPENAI_API_KEY" in result.stderr
    status = run_cli("status", "--redis-url", redis_server.url, "--json")
    data = json.loads(status.stdout)
    assert data["pending"] == 4
    assert data["workers_alive"] == 0
    assert fake_openai.count() == 0
