"""Processes and measurements shared by the benchmark scenarios.

Every server here listens on 127.0.0.1 only: the fake OpenAI API from
``tests/fake_openai.py`` and, for the Celery and queue scenarios, a private
``redis-server``. Each runs as its own process, so its CPU time never counts
as the measured program's. Times are ``time.monotonic()`` values, which on
Linux come from one system-wide clock, so the fake server's request records,
the harness and the measured process share a time base.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import psutil

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
FAKE_SERVER_SCRIPT = REPO_ROOT / "tests" / "fake_openai.py"
#: The key the fake server accepts; it is not a real OpenAI key.
API_KEY = "sk-bench"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
#: Seconds a server gets to print that it is ready.
START_TIMEOUT_S = 20.0
#: Seconds a server or worker gets to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT_S = 10.0

# Variables that would change what esl-assets reads or where it sends requests.
_SCRUBBED_PREFIXES = ("ESL_ASSETS_", "OPENAI_")

_PARTS_OF_SPEECH = ("noun", "verb", "adjective", "adverb")
_LEVELS = ("A1", "A2", "B1", "B2", "C1", "C2")


# --------------------------------------------------------------------------
# Machine and environment


def python_speed_ms() -> float:
    """Return the best of 5 timings of a fixed pure-Python loop, in ms.

    The same VM has run this project's code at speeds a factor of two apart
    from one hour to the next, so every result carries this figure: compare
    CPU times of two runs only after comparing their speeds.
    """
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for number in range(1_000_000):
            total += number
        timings.append(time.perf_counter() - started)
    return round(min(timings) * 1000, 1)


def machine_info() -> dict[str, Any]:
    """Describe the machine: CPU model, cores, memory, OS and Python version."""
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    return {
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu": model or "unknown",
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_loop_ms": python_speed_ms(),
    }


def source_revision() -> str:
    """Return the commit of the working tree, with ``-dirty`` for local edits."""
    try:
        completed = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return completed.stdout.strip()


def benchmark_env(**extra: str) -> dict[str, str]:
    """Return a copy of the environment for a measured process.

    Settings of the user's own shell (``ESL_ASSETS_*``, ``OPENAI_*``) are
    removed, and the key becomes the fake server's key.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_SCRUBBED_PREFIXES)
    }
    paths = [str(REPO_ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["OPENAI_API_KEY"] = API_KEY
    env.update(extra)
    return env


def esl_assets_command(*arguments: str) -> list[str]:
    """Return the command line that runs esl-assets with this interpreter."""
    return [sys.executable, "-m", "esl_assets", *arguments]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --------------------------------------------------------------------------
# Dictionaries


def write_csv_dictionary(
    path: Path,
    entries: int,
    *,
    definitions_per_entry: int = 1,
    first_entry: int = 0,
) -> int:
    """Write a CSV dictionary in the layout of ``tests/data/sample.csv``.

    Each entry gets a stable uuid5 id, so two calls with the same numbers
    write the same rows. Returns the number of rows (definitions) written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("id,uuid,word,pos,level,definition,example\n")
        for entry in range(first_entry, first_entry + entries):
            entry_id = uuid.uuid5(uuid.NAMESPACE_URL, f"esl-assets-bench/{entry}")
            word = f"word{entry}"
            pos = _PARTS_OF_SPEECH[entry % len(_PARTS_OF_SPEECH)]
            level = _LEVELS[entry % len(_LEVELS)]
            for sense in range(definitions_per_entry):
                rows += 1
                definition = (
                    f"sense {sense + 1} of the test {pos} number {entry}, "
                    "used only to measure the tool"
                )
                example = f"An example sentence with {word} in it."
                handle.write(
                    f'{rows},{entry_id},{word},{pos},{level},"{definition}",{example}\n'
                )

    return rows


def planned_jobs(entries: int, definitions_per_entry: int = 1) -> int:
    """Count the jobs esl-assets plans for a generated dictionary (all kinds)."""
    return entries * (1 + 2 * definitions_per_entry)


def entries_for_jobs(jobs: int) -> int:
    """Return how many one-definition entries give at least ``jobs`` jobs."""
    return max(1, -(-jobs // 3))


# --------------------------------------------------------------------------
# Servers


def _read_ready_line(process: subprocess.Popen[str], what: str) -> str:
    """Return the URL from the server's ``READY <url>`` line, or raise."""
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    result: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("READY "):
                result.append(line.split()[1])
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(max(0.0, deadline - time.monotonic()))
    if not result:
        raise RuntimeError(
            f"{what} did not print READY within {START_TIMEOUT_S:.0f} s "
            f"(exit code {process.poll()}); see its log."
        )

    return result[0]


def stop_process(
    process: subprocess.Popen[Any], timeout_s: float = STOP_TIMEOUT_S
) -> None:
    """End a process this harness started: SIGTERM, then SIGKILL after a timeout."""
    if process.poll() is not None:
        return

    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        logger.warning("Process %d ignored SIGTERM; killing it.", process.pid)
        process.kill()
        process.wait(timeout_s)


class FakeServer:
    """The fake OpenAI server of ``tests/fake_openai.py`` in its own process."""

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        audio_rpm: int | None = None,
        image_rpm: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.latency_ms = latency_ms
        self.audio_rpm = audio_rpm
        self.image_rpm = image_rpm
        self.log_path = log_path
        self.base_url = ""
        self._process: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("FakeServer is not running; call start() first")

        return self._process.pid

    @property
    def control_url(self) -> str:
        return self.base_url.removesuffix("/v1") + "/_fake"

    def command(self) -> list[str]:
        command = [
            sys.executable,
            str(FAKE_SERVER_SCRIPT),
            "--port",
            "0",
            "--api-key",
            API_KEY,
            "--latency-ms",
            str(self.latency_ms),
        ]
        if self.audio_rpm:
            command += ["--audio-rpm", str(self.audio_rpm)]
        if self.image_rpm:
            command += ["--image-rpm", str(self.image_rpm)]
        return command

    def start(self) -> FakeServer:
        if not FAKE_SERVER_SCRIPT.exists():
            raise RuntimeError(
                f"The fake OpenAI server {FAKE_SERVER_SCRIPT} is missing."
            )

        log_path = self.log_path or Path(os.devnull)
        self._log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115
        self._process = subprocess.Popen(
            self.command(),
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=benchmark_env(),
        )
        self.base_url = _read_ready_line(self._process, "The fake OpenAI server")
        return self

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.control_url}/{path}",
            method=method,
            data=b"" if method == "POST" else None,
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return json.load(response)

    def records(self) -> list[dict[str, Any]]:
        """Return every recorded API request, oldest first."""
        return list(self._call("GET", "requests"))

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "stats"))

    def reset(self) -> None:
        """Forget the records and empty the rate-limit windows."""
        self._call("POST", "reset")


class RedisServer:
    """A private ``redis-server`` on a free loopback port, without persistence."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("RedisServer is not running; call start() first")

        return self._process.pid

    def start(self) -> RedisServer:
        if not Path(REDIS_SERVER).exists():
            raise RuntimeError(
                f"redis-server was not found at {REDIS_SERVER}; install the "
                "redis-server package to run this scenario."
            )

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        command = [
            REDIS_SERVER,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--loglevel", "warning",
        ]  # fmt: skip
        log = open(self.workdir / "redis.log", "wb")  # noqa: SIM115
        self._process = subprocess.Popen(command, stdout=log, stderr=log)
        log.close()
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                client.ping()
                client.close()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or (
                    self._process is not None and self._process.poll() is not None
                ):
                    raise RuntimeError(
                        f"redis-server on port {self.port} did not start; see "
                        f"{self.workdir / 'redis.log'}."
                    ) from None
                time.sleep(0.05)

    def command_calls(self) -> dict[str, int]:
        """Return calls per command from ``INFO commandstats``."""
        import redis

        client = redis.Redis.from_url(self.url)
        try:
            stats = client.info("commandstats")
        finally:
            client.close()
        return {
            name.removeprefix("cmdstat_"): int(values["calls"])
            for name, values in stats.items()
        }

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
            self._process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def command_delta(
    before: Mapping[str, int], after: Mapping[str, int]
) -> dict[str, int]:
    """Return the calls per command made between two ``command_calls()``."""
    delta = {name: after[name] - before.get(name, 0) for name in after}
    # The harness's own INFO call is not the measured program's.
    delta["info"] = max(0, delta.get("info", 0) - 1)
    return {name: calls for name, calls in delta.items() if calls > 0}


# --------------------------------------------------------------------------
# Measuring a process


@dataclasses.dataclass
class TreeSample:
    """One sample of a process tree: time, total RSS, CPU of the root process."""

    time_s: float
    rss_bytes: int
    processes: int
    root_cpu_s: float


class TreeSampler:
    """Samples the summed RSS of a process and its descendants from a thread.

    RSS counts shared pages once per process, so for a forked pool the sum
    is larger than the memory in use. ``peak_pss_bytes`` is the proportional
    set size, which splits shared pages between the processes that map them.
    It is sampled less often because it reads ``smaps``.
    """

    def __init__(
        self, pid: int, *, interval_s: float = 0.02, pss_every: int = 0
    ) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.pss_every = pss_every
        self.samples: list[TreeSample] = []
        self.peak_rss_bytes = 0
        self.peak_pss_bytes = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return

        count = 0
        while not self._stop.is_set():
            count += 1
            with_pss = self.pss_every > 0 and count % self.pss_every == 1
            if not self._sample(root, with_pss=with_pss):
                return
            self._stop.wait(self.interval_s)

    def _sample(self, root: psutil.Process, *, with_pss: bool) -> bool:
        try:
            processes = [root, *root.children(recursive=True)]
            cpu = root.cpu_times()
        except psutil.Error:
            return False

        rss = 0
        pss = 0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                if with_pss:
                    info = process.memory_full_info()
                    rss += info.rss
                    pss += info.pss
                else:
                    rss += process.memory_info().rss
        now = time.monotonic()
        self.samples.append(TreeSample(now, rss, len(processes), cpu.user + cpu.system))
        self.peak_rss_bytes = max(self.peak_rss_bytes, rss)
        self.peak_pss_bytes = max(self.peak_pss_bytes, pss)
        self.peak_processes = max(self.peak_processes, len(processes))
        return True

    def cpu_between(self, start_s: float, end_s: float) -> float | None:
        """Return the root's CPU seconds between two times, from the samples."""
        inside = [s for s in self.samples if start_s <= s.time_s <= end_s]
        if len(inside) < 2:
            return None
        return inside[-1].root_cpu_s - inside[0].root_cpu_s


@dataclasses.dataclass
class ProcessRun:
    """A finished measured process: exit code, times, CPU and peak memory."""

    command: list[str]
    returncode: int
    started_s: float
    ended_s: float
    cpu_user_s: float
    cpu_system_s: float
    peak_rss_bytes: int
    peak_pss_bytes: int
    peak_processes: int
    stdout_path: Path
    stderr_path: Path
    sampler: TreeSampler

    @property
    def wall_s(self) -> float:
        return self.ended_s - self.started_s

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_system_s

    def stdout_json(self) -> Any:
        """Parse the process's stdout as JSON (``--json`` output)."""
        return json.loads(self.stdout_path.read_text(encoding="utf-8"))

    def check(self, allowed: Iterable[int] = (0,)) -> ProcessRun:
        """Raise with the tail of stderr when the exit code is not allowed."""
        if self.returncode not in set(allowed):
            tail = self.stderr_path.read_text(encoding="utf-8", errors="replace")[
                -3000:
            ]
            raise RuntimeError(
                f"{' '.join(self.command[:6])} ... exited with {self.returncode}; "
                f"stderr ends with:\n{tail}"
            )
        return self


def run_measured(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_prefix: Path,
    timeout_s: float,
    sample_interval_s: float = 0.05,
    pss_every: int = 0,
) -> ProcessRun:
    """Run a command to its end and measure it.

    CPU time comes from ``wait4`` (the process and the children it waited
    for); peak memory from a ``TreeSampler``. The ``ru_maxrss`` of ``wait4``
    is not used: Linux carries the pre-exec high-water mark of the forked
    harness into it, so it reports the harness's size, not the command's.
    After ``timeout_s`` the process gets SIGTERM, then SIGKILL.
    """
    stdout_path = log_prefix.with_suffix(".stdout")
    stderr_path = log_prefix.with_suffix(".stderr")
    with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
        started = time.monotonic()
        process = subprocess.Popen(
            list(command), stdout=stdout, stderr=stderr, env=dict(env), cwd=cwd
        )
    sampler = TreeSampler(
        process.pid, interval_s=sample_interval_s, pss_every=pss_every
    ).start()
    timer = threading.Timer(timeout_s, _terminate_after_timeout, (process,))
    timer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        timer.cancel()
    ended = time.monotonic()
    sampler.stop()
    process.returncode = os.waitstatus_to_exitcode(status)
    return ProcessRun(
        command=list(command),
        returncode=process.returncode,
        started_s=started,
        ended_s=ended,
        cpu_user_s=usage.ru_utime,
        cpu_system_s=usage.ru_stime,
        peak_rss_bytes=sampler.peak_rss_bytes,
        peak_pss_bytes=sampler.peak_pss_bytes,
        peak_processes=sampler.peak_processes,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        sampler=sampler,
    )


def _terminate_after_timeout(process: subprocess.Popen[bytes]) -> None:
    logger.warning("Process %d timed out; sending SIGTERM.", process.pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    time.sleep(STOP_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGKILL)


@dataclasses.dataclass
class InterruptedRun:
    """A process stopped with SIGINT once the fake server saw its first request."""

    started_s: float
    returncode: int


def run_until_first_request(
    command: Sequence[str],
    fake: FakeServer,
    *,
    env: Mapping[str, str],
    cwd: Path,
    stderr_path: Path,
    timeout_s: float,
) -> InterruptedRun:
    """Start a command, send it SIGINT after its first request, wait for its exit.

    The fake server's records must be empty at the start, because any
    recorded request counts as the first one.
    """
    with open(stderr_path, "wb") as stderr:
        started = time.monotonic()
        process = subprocess.Popen(
            list(command),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=dict(env),
            cwd=cwd,
        )
    deadline = started + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        if fake.stats().get("total", 0) > 0:
            break
        time.sleep(0.01)
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        returncode = process.wait(STOP_TIMEOUT_S * 3)
    except subprocess.TimeoutExpired:
        stop_process(process)
        returncode = process.wait()
    return InterruptedRun(started_s=started, returncode=returncode)


# --------------------------------------------------------------------------
# Reading the results


@dataclasses.dataclass
class RequestSummary:
    """Counts and times of the requests the fake server recorded in one run."""

    count: int
    first_start_s: float | None
    last_end_s: float | None
    by_status: dict[str, int]
    by_lane: dict[str, int]
    #: Mean of (response end - request start) at the server, in seconds.
    mean_server_s: float | None = None
    #: Mean time from a response's end to the next request's start on the
    #: same connection: the client's turnaround plus loopback transfer.
    mean_turnaround_s: float | None = None
    connections: int = 0

    @property
    def span_s(self) -> float | None:
        if self.first_start_s is None or self.last_end_s is None:
            return None
        return self.last_end_s - self.first_start_s


def summarize_requests(records: Sequence[Mapping[str, Any]]) -> RequestSummary:
    """Count the recorded requests and find the first start and last end."""
    by_status: dict[str, int] = {}
    by_lane: dict[str, int] = {}
    starts = []
    ends = []
    for record in records:
        status = str(record.get("status"))
        by_status[status] = by_status.get(status, 0) + 1
        lane = str(record.get("lane"))
        by_lane[lane] = by_lane.get(lane, 0) + 1
        starts.append(float(record["started_s"]))
        if record.get("ended_s") is not None:
            ends.append(float(record["ended_s"]))
    durations = [
        float(r["ended_s"]) - float(r["started_s"])
        for r in records
        if r.get("ended_s") is not None
    ]
    gaps, connections = _turnarounds(records)
    return RequestSummary(
        count=len(records),
        first_start_s=min(starts) if starts else None,
        last_end_s=max(ends) if ends else None,
        by_status=by_status,
        by_lane=by_lane,
        mean_server_s=sum(durations) / len(durations) if durations else None,
        mean_turnaround_s=sum(gaps) / len(gaps) if gaps else None,
        connections=connections,
    )


def _turnarounds(records: Sequence[Mapping[str, Any]]) -> tuple[list[float], int]:
    """Return the gaps between requests on each connection, and the connections."""
    by_connection: dict[int, list[tuple[float, float]]] = {}
    for record in records:
        if record.get("ended_s") is None:
            continue
        times = (float(record["started_s"]), float(record["ended_s"]))
        by_connection.setdefault(int(record["connection_id"]), []).append(times)
    gaps = []
    for times in by_connection.values():
        times.sort()
        gaps.extend(start - end for (_, end), (start, _) in itertools.pairwise(times))
    return gaps, len(by_connection)


def iter_asset_files(outdir: Path) -> Iterator[os.DirEntry[str]]:
    """Yield the asset files of an output folder (no hidden or temp files)."""
    with os.scandir(outdir) as entries:
        for entry in entries:
            if entry.is_file() and entry.name.split("_", 1)[0] in (
                "word",
                "shortdef",
                "image",
            ):
                yield entry


def last_file_time_monotonic(outdir: Path) -> float | None:
    """Return when the newest asset file was written, on the monotonic clock.

    File times are wall-clock times, so the newest one is shifted by the
    current difference between the two clocks. Linux stamps files from a
    clock tick, so this is exact to a few milliseconds.
    """
    newest = max(
        (entry.stat().st_mtime for entry in iter_asset_files(outdir)), default=None
    )
    if newest is None:
        return None
    return newest - (time.time() - time.monotonic())


def count_asset_files(outdir: Path) -> int:
    return sum(1 for _ in iter_asset_files(outdir))


# --------------------------------------------------------------------------
# Output


def mib(size_bytes: int | float) -> str:
    return f"{size_bytes / 2**20:.1f} MiB"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Format a Markdown pipe table with aligned columns."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [_table_line(cells[0], widths)]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines.extend(_table_line(row, widths) for row in cells[1:])
    return "\n".join(lines)


def _table_line(cells: Sequence[str], widths: Sequence[int]) -> str:
    padded = (cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
    return "| " + " | ".join(padded) + " |"


@dataclasses.dataclass
class ScenarioResult:
    """The figures of one scenario, as a table and as JSON-ready data."""

    name: str
    title: str
    command: str
    headers: list[str]
    rows: list[list[object]]
    notes: list[str] = dataclasses.field(default_factory=list)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_markdown(self) -> str:
        parts = [f"### {self.title}", "", f"`{self.command}`", ""]
        parts.append(format_table(self.headers, self.rows))
        if self.notes:
            parts.append("")
            parts.extend(f"- {note}" for note in self.notes)
        return "\n".join(parts) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "command": self.command,
            "headers": self.headers,
            "rows": [[str(c) for c in row] for row in self.rows],
            "notes": self.notes,
            "data": self.data,
        }
