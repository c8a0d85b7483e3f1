"""A private ``redis-server`` on 127.0.0.1 for the queue tests.

Each server runs in its own temporary folder on a free port, without
persistence by default (``--save "" --appendonly no``) or with an
append-only file synced on every write (``appendonly=True``) for tests that
restart it and expect the data back. It is stopped by its pid.

When the binary is missing the tests are skipped, unless
``ESL_ASSETS_REQUIRE_REDIS=1`` (set by CI) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def redis_server_binary() -> str:
    """Return the path of redis-server, or skip (fail under CI) the test."""
    binary = shutil.which("redis-server")
    if binary is not None:
        return binary
    message = "redis-server is not installed; install the redis-server package"
    if os.environ.get("ESL_ASSETS_REQUIRE_REDIS") == "1":
        pytest.fail(message + " (ESL_ASSETS_REQUIRE_REDIS=1 makes this an error)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One redis-server process; ``restart()`` keeps its port and folder."""

    def __init__(
        self, directory: Path, *, appendonly: bool = False, password: str | None = None
    ) -> None:
        self.directory = directory
        self.appendonly = appendonly
        self.password = password
        self.port = free_port()
        self._binary = redis_server_binary()
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        pid = self._process.pid if self._process else None
        return f"<RedisServer 127.0.0.1:{self.port} pid={pid}>"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """Return a synchronous client that decodes replies to str."""
        return redis.Redis.from_url(self.url, decode_responses=True)

    def start(self) -> RedisServer:
        if self._process is not None:
            raise RuntimeError(f"{self!r} is already running")
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            self._binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--daemonize", "no",
            "--logfile", "redis.log",
        ]  # fmt: skip
        if self.appendonly:
            command += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            command += ["--appendonly", "no"]
        if self.password:
            command += ["--requirepass", self.password]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        client = self.client()
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
                    pass
                assert self._process is not None
                if self._process.poll() is not None or time.monotonic() > deadline:
                    log = self.directory / "redis.log"
                    text = log.read_text(errors="replace") if log.exists() else ""
                    self.stop()
                    raise RuntimeError(
                        f"redis-server on port {self.port} did not start:\n"
                        f"{text[-2000:]}"
                    )
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server by its pid (SIGTERM, then SIGKILL after a timeout)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


def start_redis_server(directory: Path, **options: object) -> RedisServer:
    return RedisServer(directory, **options).start()  # type: ignore[arg-type]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started redis-server without persistence, stopped after the test."""
    server = start_redis_server(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def durable_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started redis-server with an fsynced append-only file, for restarts."""
    server = start_redis_server(tmp_path / "redis", appendonly=True)
    try:
        yield server
    finally:
        server.stop()
