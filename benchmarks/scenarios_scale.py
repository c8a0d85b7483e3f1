"""Scenarios of scale: rate limits, a 100,000-row plan, resume, the Redis queue.

Like ``scenarios``, each function returns a ``ScenarioResult`` and asserts no
goal. A scenario whose feature is not in esl-assets yet raises
``NotAvailableError`` with what is missing.
"""

from __future__ import annotations

import struct
import subprocess
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .harness import (
    REPO_ROOT,
    FakeServer,
    RedisServer,
    ScenarioResult,
    TreeSampler,
    benchmark_env,
    command_delta,
    count_asset_files,
    entries_for_jobs,
    esl_assets_command,
    last_file_time_monotonic,
    mib,
    planned_jobs,
    run_measured,
    run_until_first_request,
    stop_process,
    summarize_requests,
    write_csv_dictionary,
)
from .scenarios import Workspace, _fmt, build_arguments

#: Length of the fake server's rate window, in seconds.
RATE_WINDOW_S = 60.0


class NotAvailableError(Exception):
    """Raised when a scenario needs a part of esl-assets that is not there yet."""


# --------------------------------------------------------------------------
# 5a. Rate limits


def minute_counts(starts: Sequence[float], origin: float, end: float) -> list[int]:
    """Count events per complete minute from ``origin``; partial minutes are left out.

    A sliding 60 s limit admits at most the limit in every such minute, so
    the mean count over complete minutes, divided by the limit, is the share
    of the limit a client used.
    """
    minutes = int((end - origin) // RATE_WINDOW_S)
    counts = [0] * minutes
    for start in starts:
        index = int((start - origin) // RATE_WINDOW_S)
        if 0 <= index < minutes:
            counts[index] += 1
    return counts


def lane_rate_figures(records: Sequence[Mapping[str, Any]], rpm: int) -> dict[str, Any]:
    """Return responses, 429 share and successes per complete minute of a lane."""
    answered = [r for r in records if r.get("status") is not None]
    successes = sorted(float(r["started_s"]) for r in answered if r["status"] == 200)
    limited = sum(1 for r in answered if r["status"] == 429)
    figures: dict[str, Any] = {
        "responses": len(answered),
        "success": len(successes),
        "rate_limited": limited,
        "share_429": limited / len(answered) if answered else None,
        "minutes": [],
        "mean_share_of_limit": None,
    }
    if not successes:
        return figures
    origin = min(float(r["started_s"]) for r in records)
    counts = minute_counts(successes, origin, successes[-1])
    figures["minutes"] = counts
    if counts:
        figures["mean_share_of_limit"] = sum(counts) / len(counts) / rpm
    figures["span_s"] = successes[-1] - origin
    return figures


def scenario_ratelimit(
    workspace: Workspace,
    *,
    entries: int = 1200,
    rpm: int = 600,
    concurrency: int = 50,
    latency_ms: float = 100.0,
    client_rpm: bool = False,
) -> ScenarioResult:
    """Build against a server that returns 429 beyond ``rpm`` requests per lane."""
    jobs = planned_jobs(entries)
    run_dir = workspace.folder("ratelimit")
    dictionary = run_dir / f"dictionary-{entries}.csv"
    write_csv_dictionary(dictionary, entries)
    extra = ["--audio-rpm", str(rpm), "--image-rpm", str(rpm)] if client_rpm else []

    server = FakeServer(
        latency_ms=latency_ms,
        audio_rpm=rpm,
        image_rpm=rpm,
        log_path=run_dir / "fake.log",
    )
    with server as fake:
        arguments = build_arguments(
            dictionary, run_dir / "out", fake.base_url, concurrency, *extra
        )
        process = run_measured(
            esl_assets_command(*arguments),
            env=benchmark_env(),
            cwd=run_dir,
            log_prefix=run_dir / "esl-assets",
            timeout_s=workspace.timeout_s,
        ).check(allowed=(0, 1))
        records = fake.records()

    report = process.stdout_json()
    lanes = {
        lane: lane_rate_figures([r for r in records if r["lane"] == lane], rpm)
        for lane in ("audio", "images")
    }
    rows = [_rate_row(lane, figures) for lane, figures in lanes.items()]
    counts = report.get("counts", {})
    errors = sum(kind.get("error", 0) for kind in counts.values())
    files = count_asset_files(run_dir / "out")

    return ScenarioResult(
        name="ratelimit",
        title=(
            f"5a. Rate limits: {rpm} requests/min per lane, L = {latency_ms:g} ms, "
            f"C = {concurrency}, {jobs} jobs"
        ),
        command=(
            f"python benchmarks/run.py ratelimit --entries {entries} --rpm {rpm} "
            f"--concurrency {concurrency} --latency-ms {latency_ms:g}"
            + (" --client-rpm" if client_rpm else "")
        ),
        headers=[
            "lane",
            "responses",
            "200",
            "429",
            "429 share",
            "200s per complete minute",
            "share of limit",
            "goal (>= 95 %, <= 2 % 429)",
        ],
        rows=rows,
        notes=[
            f"Run: {process.wall_s:.1f} s, {files} of {jobs} files, {errors} jobs "
            f"in error, exit code {process.returncode}.",
            "Minutes are counted from each lane's first request; the last, "
            "partial minute is left out. The fake server's window is a sliding "
            "60 s, so a client at the limit gets the limit in every such minute.",
            "Client limits: "
            + (
                "--audio-rpm/--image-rpm set to the limit."
                if client_rpm
                else "none (the tool adapts to 429s and x-ratelimit headers alone)."
            ),
        ],
        data={"lanes": lanes, "report_lanes": report.get("lanes"), "errors": errors},
    )


def _rate_row(lane: str, figures: Mapping[str, Any]) -> list[object]:
    share = figures["mean_share_of_limit"]
    return [
        lane,
        figures["responses"],
        figures["success"],
        figures["rate_limited"],
        _percent(figures["share_429"]),
        " / ".join(str(n) for n in figures["minutes"]) or "-",
        _percent(share),
        _verdict(share, figures["share_429"]),
    ]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _verdict(share: float | None, share_429: float | None) -> str:
    if share is None or share_429 is None:
        return "- (no complete minute)"
    return "met" if share >= 0.95 and share_429 <= 0.02 else "missed"


# --------------------------------------------------------------------------
# 5b. Planning a large dictionary


def scenario_scale(workspace: Workspace, *, rows: int = 100_000) -> ScenarioResult:
    """Time and peak memory of ``esl-assets plan --json`` on a large CSV."""
    run_dir = workspace.folder("scale")
    entries = max(1, rows // 2)
    dictionary = run_dir / f"dictionary-{rows}.csv"
    written = write_csv_dictionary(dictionary, entries, definitions_per_entry=2)

    command = esl_assets_command(
        "plan", str(dictionary), "--outdir", str(run_dir / "out"), "--json"
    )
    process = run_measured(
        command,
        env=benchmark_env(),
        cwd=run_dir,
        log_prefix=run_dir / "esl-assets",
        timeout_s=workspace.timeout_s,
    ).check(allowed=(0, 1))

    report = process.stdout_json()
    counts = report.get("counts", {})
    planned = sum(kind.get("dryrun", 0) for kind in counts.values())
    table: list[list[object]] = [
        ["CSV rows (definitions)", written],
        ["entries", entries],
        ["CSV size", mib(dictionary.stat().st_size)],
        ["jobs planned", planned],
        ["expected jobs", planned_jobs(entries, 2)],
        ["wall time (s)", _fmt(process.wall_s, 2)],
        ["CPU time (s)", _fmt(process.cpu_s, 2)],
        ["peak RSS", mib(process.peak_rss_bytes)],
    ]

    return ScenarioResult(
        name="scale",
        title=f"5b. Scale: plan a {written}-row CSV",
        command=f"python benchmarks/run.py scale --rows {rows}",
        headers=["measure", "value"],
        rows=table,
        notes=["Each entry has two definitions, so the plan has 5 jobs per entry."],
        data={
            "wall_s": process.wall_s,
            "cpu_s": process.cpu_s,
            "peak_rss_bytes": process.peak_rss_bytes,
            "planned": planned,
        },
    )


# --------------------------------------------------------------------------
# 5c. Resume


def minimal_png() -> bytes:
    """Return a valid 1x1 grey PNG."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x80")
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


#: One ADTS frame header of AAC-LC audio with an empty payload.
MINIMAL_AAC = bytes([0xFF, 0xF1, 0x50, 0x80, 0x01, 0x1F, 0xFC])


def planned_files(workspace: Workspace, dictionary: Path) -> list[str]:
    """Return the file names a build of ``dictionary`` would write, in plan order."""
    run_dir = workspace.folder("resume", "dryrun")
    command = esl_assets_command(
        "build", str(dictionary), "--outdir", str(run_dir / "out"), "--dryrun",
        "--json", "-v", "0",
    )  # fmt: skip
    process = run_measured(
        command,
        env=benchmark_env(),
        cwd=run_dir,
        log_prefix=run_dir / "esl-assets",
        timeout_s=workspace.timeout_s,
    ).check(allowed=(0, 1))
    return [result["file"] for result in process.stdout_json()["results"]]


def fill_outdir(outdir: Path, files: Sequence[str], missing: set[str]) -> int:
    """Write a small valid file for every name not in ``missing``."""
    outdir.mkdir(parents=True, exist_ok=True)
    png = minimal_png()
    written = 0
    for name in files:
        if name in missing:
            continue
        data = png if name.endswith(".png") else MINIMAL_AAC
        with open(outdir / name, "wb") as handle:
            handle.write(data)
        written += 1
    return written


def missing_files(files: Sequence[str], on_disk: float) -> set[str]:
    """Pick the files of the last entries, so the first request comes last.

    Files are grouped by entry (the uuid in the name), and whole entries at
    the end of the dictionary are left out. That is the worst case for the
    time to the first request, because the build checks every file on disk
    before it reaches a missing one.
    """
    entries: list[str] = []
    seen: set[str] = set()
    for name in files:
        entry = name.split("_")[1]
        if entry not in seen:
            seen.add(entry)
            entries.append(entry)
    keep = int(len(entries) * on_disk)
    left_out = set(entries[keep:])
    return {name for name in files if name.split("_")[1] in left_out}


def scenario_resume(
    workspace: Workspace,
    *,
    entries: int = 100_000,
    on_disk: float = 0.99,
    concurrency: int = 50,
) -> ScenarioResult:
    """Time to the first request and peak memory with most files on disk."""
    dictionary = workspace.root / "resume" / f"dictionary-{entries}.csv"
    write_csv_dictionary(dictionary, entries)
    files = planned_files(workspace, dictionary)
    missing = missing_files(files, on_disk)
    outdir = workspace.root / "resume" / "out"
    present = fill_outdir(outdir, files, missing)
    rows: list[list[object]] = []
    data: dict[str, Any] = {"files": len(files), "on_disk": present}
    with FakeServer(
        latency_ms=0.0, log_path=workspace.root / "resume" / "fake.log"
    ) as fake:
        build = _measure_first_request(
            workspace,
            fake,
            "build",
            build_arguments(
                dictionary, outdir, fake.base_url, concurrency, json_output=False
            ),
        )
        rows.append(_resume_row("build", build, len(missing)))
        data["build"] = build
        resumed = _measure_resume(
            workspace, fake, dictionary, outdir, missing, concurrency
        )
        rows.append(_resume_row("build --resume", resumed, None))
        data["resume"] = resumed
    return ScenarioResult(
        name="resume",
        title=(
            f"5c. Resume: {entries} entries, {len(files)} files, "
            f"{present} ({on_disk:.0%}) already on disk"
        ),
        command=(
            f"python benchmarks/run.py resume --entries {entries} --on-disk {on_disk}"
        ),
        headers=[
            "command",
            "requests",
            "start to first request s",
            "wall s",
            "RSS at first request",
            "peak RSS to last request",
            "peak RSS",
            "exit",
            "goal (<= 10 s, <= 300 MB)",
        ],
        rows=rows,
        notes=[
            "The missing files belong to the last entries of the dictionary, so "
            "the build checks every file on disk before its first request.",
            "The fake server replies at once (zero latency). The builds run "
            "without --json; peak RSS covers the whole process, including the "
            "summary at the end.",
        ],
        data=data,
    )


def _measure_first_request(
    workspace: Workspace, fake: FakeServer, label: str, arguments: list[str]
) -> dict[str, Any]:
    fake.reset()
    run_dir = workspace.folder("resume", label.replace(" ", "-"))
    process = run_measured(
        esl_assets_command(*arguments),
        env=benchmark_env(),
        cwd=run_dir,
        log_prefix=run_dir / "esl-assets",
        timeout_s=workspace.timeout_s,
    )
    summary = summarize_requests(fake.records())
    first = None
    if summary.first_start_s is not None:
        first = summary.first_start_s - process.started_s
    tail = process.stderr_path.read_text(encoding="utf-8", errors="replace")[-600:]
    return {
        "requests": summary.count,
        "first_request_s": first,
        "wall_s": process.wall_s,
        "peak_rss_bytes": process.peak_rss_bytes,
        "rss_at_first_request_bytes": _rss_at(process.sampler, summary.first_start_s),
        "peak_rss_until_last_request_bytes": _peak_rss_until(
            process.sampler, summary.last_end_s
        ),
        "returncode": process.returncode,
        "stderr_tail": tail if process.returncode not in (0, 1) else "",
    }


def _rss_at(sampler: TreeSampler, moment_s: float | None) -> int | None:
    """Return the last sampled RSS at or before ``moment_s``."""
    if moment_s is None:
        return None
    before = [
        sample.rss_bytes for sample in sampler.samples if sample.time_s <= moment_s
    ]
    return before[-1] if before else None


def _peak_rss_until(sampler: TreeSampler, moment_s: float | None) -> int | None:
    """Return the peak sampled RSS up to ``moment_s`` (before the final report)."""
    if moment_s is None:
        return None
    before = [
        sample.rss_bytes for sample in sampler.samples if sample.time_s <= moment_s
    ]
    return max(before, default=None)


def _measure_resume(
    workspace: Workspace,
    fake: FakeServer,
    dictionary: Path,
    outdir: Path,
    missing: set[str],
    concurrency: int,
) -> dict[str, Any]:
    """Interrupt a build after its first request, then time ``build --resume``."""
    for name in missing:
        (outdir / name).unlink(missing_ok=True)
    fake.reset()
    run_until_first_request(
        esl_assets_command(
            *build_arguments(
                dictionary, outdir, fake.base_url, concurrency, json_output=False
            )
        ),
        fake,
        env=benchmark_env(),
        cwd=workspace.root / "resume",
        stderr_path=workspace.root / "resume" / "interrupted.stderr",
        timeout_s=workspace.timeout_s,
    )
    arguments = ["build", "--resume", "--outdir", str(outdir), "-v", "0"]
    return _measure_first_request(workspace, fake, "build --resume", arguments)


def _resume_row(
    label: str, figures: Mapping[str, Any], expected_requests: int | None
) -> list[object]:
    first = figures["first_request_s"]
    peak = figures["peak_rss_bytes"]
    met = "-"
    if first is not None:
        met = "met" if first <= 10 and peak <= 300e6 else "missed"
    requests = str(figures["requests"])
    if expected_requests is not None:
        requests += f" (missing: {expected_requests})"
    if figures["returncode"] not in (0, 1):
        met = f"not measured: {figures['stderr_tail'].strip().splitlines()[-1:]}"
    return [
        label,
        requests,
        _fmt(first),
        _fmt(figures["wall_s"], 2),
        _mib_or_dash(figures["rss_at_first_request_bytes"]),
        _mib_or_dash(figures["peak_rss_until_last_request_bytes"]),
        mib(peak),
        figures["returncode"],
        met,
    ]


def _mib_or_dash(size_bytes: int | None) -> str:
    return "-" if size_bytes is None else mib(size_bytes)


# --------------------------------------------------------------------------
# 5d. Redis queue


def queue_available() -> bool:
    return (REPO_ROOT / "esl_assets" / "queue_commands.py").exists()


def scenario_redis(
    workspace: Workspace,
    *,
    jobs: int = 20_000,
    instances: int = 4,
    concurrency: int = 20,
) -> ScenarioResult:
    """Jobs per second and Redis commands per job: K workers against one."""
    if not queue_available():
        raise NotAvailableError(
            "The Redis queue (esl_assets/queue_commands.py) is not in this "
            "working tree yet, so the queue benchmark cannot run."
        )
    entries = entries_for_jobs(jobs)
    jobs = planned_jobs(entries)
    dictionary = workspace.root / "redis" / f"dictionary-{entries}.csv"
    write_csv_dictionary(dictionary, entries)
    layouts = [(instances, concurrency), (1, instances * concurrency)]
    rows: list[list[object]] = []
    runs: list[dict[str, Any]] = []
    for count, level in layouts:
        figures = run_queue(workspace, dictionary, jobs, count, level)
        runs.append(figures)
        rows.append(
            [
                f"{count} x C={level}",
                figures["files"],
                _fmt(figures["enqueue_s"], 2),
                _fmt(figures["workers_wall_s"], 2),
                _fmt(figures["drain_s"], 2),
                _fmt(figures["jobs_per_s"], 0),
                _fmt(figures["drain_commands_per_job"], 2),
                _fmt(figures["enqueue_commands_per_job"], 2),
                figures["top_commands"],
            ]
        )
    return ScenarioResult(
        name="redis",
        title=f"5d. Redis queue: {jobs} jobs, zero latency",
        command=(
            f"python benchmarks/run.py redis --jobs {jobs} --instances {instances} "
            f"--concurrency {concurrency}"
        ),
        headers=[
            "workers",
            "files",
            "enqueue s",
            "workers s",
            "drain s",
            "jobs/s",
            "Redis commands per job (drain)",
            "per job (enqueue)",
            "most called (drain)",
        ],
        rows=rows,
        notes=[
            "Goal: >= 1,500 jobs/s in total and <= 4 Redis round trips per job. "
            "INFO commandstats counts commands; a pipeline sends several "
            "commands in one round trip, so commands per job is an upper bound "
            "on round trips per job.",
            "enqueue s = the enqueue command, start to exit; workers s = worker "
            "processes started to the last one exited; drain = first request at "
            "the fake server to the last file written; jobs/s = jobs / drain.",
        ],
        data={"runs": runs},
    )


def run_queue(
    workspace: Workspace, dictionary: Path, jobs: int, instances: int, concurrency: int
) -> dict[str, Any]:
    """Enqueue the plan, drain it with ``instances`` workers, count Redis commands."""
    run_dir = workspace.folder("redis", f"{instances}x{concurrency}")
    outdir = run_dir / "out"
    with (
        RedisServer(run_dir / "redis") as redis,
        FakeServer(latency_ms=0.0, log_path=run_dir / "fake.log") as fake,
    ):
        queue_options = ["--redis-url", redis.url, "--outdir", str(outdir)]
        start = redis.command_calls()
        enqueue = run_measured(
            esl_assets_command(
                "enqueue",
                str(dictionary),
                *queue_options,
                "--base-url",
                fake.base_url,
                "-v",
                "0",
            ),  # fmt: skip
            env=benchmark_env(),
            cwd=run_dir,
            log_prefix=run_dir / "enqueue",
            timeout_s=workspace.timeout_s,
        ).check()
        enqueued = redis.command_calls()
        spawned = time.monotonic()
        workers = _start_workers(
            run_dir, queue_options, fake.base_url, instances, concurrency
        )
        try:
            codes = [worker.wait(workspace.timeout_s) for worker in workers]
        finally:
            for worker in workers:
                stop_process(worker)
        workers_wall_s = time.monotonic() - spawned
        drained = redis.command_calls()
        records = fake.records()
    summary = summarize_requests(records)
    last_file = last_file_time_monotonic(outdir)
    drain_s = None
    if summary.first_start_s is not None and last_file is not None:
        drain_s = max(last_file, summary.last_end_s or 0) - summary.first_start_s
    drain_delta = command_delta(enqueued, drained)
    top = sorted(drain_delta.items(), key=lambda item: item[1], reverse=True)[:4]
    return {
        "instances": instances,
        "concurrency": concurrency,
        "worker_exit_codes": codes,
        "files": count_asset_files(outdir),
        "requests": summary.count,
        "enqueue_s": enqueue.wall_s,
        "workers_wall_s": workers_wall_s,
        "drain_s": drain_s,
        "jobs_per_s": jobs / drain_s if drain_s else None,
        "enqueue_commands_per_job": sum(command_delta(start, enqueued).values()) / jobs,
        "drain_commands_per_job": sum(drain_delta.values()) / jobs,
        "top_commands": ", ".join(f"{name} {calls / jobs:.2f}" for name, calls in top),
        "drain_commands": drain_delta,
    }


def _start_workers(
    run_dir: Path,
    queue_options: list[str],
    base_url: str,
    instances: int,
    concurrency: int,
) -> list[subprocess.Popen[bytes]]:
    workers = []
    for index in range(instances):
        command = esl_assets_command(
            "worker", *queue_options, "--base-url", base_url,
            "--concurrency", str(concurrency), "--exit-when-empty", "-v", "0",
        )  # fmt: skip
        with open(run_dir / f"worker-{index}.log", "wb") as log:
            workers.append(
                subprocess.Popen(
                    command, stdout=log, stderr=log, env=benchmark_env(), cwd=run_dir
                )
            )
    return workers
