"""Scenarios against the latency bound and the Celery baseline: latency, memory,
CPU overhead and start-up time.

Each scenario function takes a ``Workspace`` and its size options and returns
a ``ScenarioResult``. Nothing here asserts a goal. Each table states whether
a goal was met, and its numbers are whatever the run measured.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .harness import (
    REPO_ROOT,
    FakeServer,
    ProcessRun,
    RequestSummary,
    ScenarioResult,
    benchmark_env,
    count_asset_files,
    entries_for_jobs,
    esl_assets_command,
    last_file_time_monotonic,
    mib,
    planned_jobs,
    run_measured,
    run_until_first_request,
    summarize_requests,
    write_csv_dictionary,
)

SAMPLE_SQLITE = REPO_ROOT / "tests" / "data" / "sample.sqlite"


@dataclasses.dataclass
class Workspace:
    """A scratch folder for one benchmark invocation, and its limits."""

    root: Path
    #: Seconds one measured process may run before it is stopped.
    timeout_s: float = 900.0

    def folder(self, *parts: str) -> Path:
        """Return a fresh, empty folder under the workspace."""
        path = self.root.joinpath(*parts)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path


@dataclasses.dataclass
class PipelineRun:
    """One measured run of either design against a fresh fake server."""

    design: str
    concurrency: int
    jobs: int
    files: int
    requests: int
    statuses: dict[str, int]
    #: From the first request's start to the later of the last response and
    #: the last file written.
    wall_s: float | None
    process: ProcessRun | None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def build_arguments(
    dictionary: Path,
    outdir: Path,
    base_url: str,
    concurrency: int,
    *extra: str,
    json_output: bool = True,
) -> list[str]:
    arguments = [
        "build",
        str(dictionary),
        "--outdir",
        str(outdir),
        "--base-url",
        base_url,
        "--concurrency",
        str(concurrency),
        "-v",
        "0",
        *extra,
    ]
    if json_output:
        arguments.append("--json")
    return arguments


def pipeline_wall_s(fake: FakeServer, outdir: Path) -> tuple[float | None, Any]:
    """Return (first request to last file, request summary) of a finished run."""
    summary = summarize_requests(fake.records())
    if summary.first_start_s is None or summary.last_end_s is None:
        return None, summary
    last_file = last_file_time_monotonic(outdir) or summary.last_end_s
    return max(last_file, summary.last_end_s) - summary.first_start_s, summary


def run_ours(
    workspace: Workspace,
    dictionary: Path,
    *,
    latency_ms: float,
    concurrency: int,
    jobs: int,
    label: str,
    extra: Sequence[str] = (),
) -> PipelineRun:
    """Run ``esl-assets build`` against a fresh fake server and measure it."""
    run_dir = workspace.folder(label)
    outdir = run_dir / "out"
    with FakeServer(latency_ms=latency_ms, log_path=run_dir / "fake.log") as fake:
        arguments = build_arguments(
            dictionary, outdir, fake.base_url, concurrency, *extra
        )
        process = run_measured(
            esl_assets_command(*arguments),
            env=benchmark_env(),
            cwd=run_dir,
            log_prefix=run_dir / "esl-assets",
            timeout_s=workspace.timeout_s,
            pss_every=10,
        ).check()
        wall_s, summary = pipeline_wall_s(fake, outdir)
    return PipelineRun(
        design="esl-assets",
        concurrency=concurrency,
        jobs=jobs,
        files=count_asset_files(outdir),
        requests=summary.count,
        statuses=summary.by_status,
        wall_s=wall_s,
        process=process,
        extra=_request_extra(summary),
    )


def run_baseline(
    workspace: Workspace,
    dictionary: Path,
    *,
    latency_ms: float,
    concurrency: int,
    jobs: int,
    label: str,
) -> PipelineRun:
    """Run the Celery baseline against a fresh fake server and measure it."""
    from .celery_baseline.runner import run_celery

    run_dir = workspace.folder(label)
    outdir = run_dir / "out"
    with FakeServer(latency_ms=latency_ms, log_path=run_dir / "fake.log") as fake:
        celery = run_celery(
            dictionary,
            outdir,
            base_url=fake.base_url,
            concurrency=concurrency,
            workdir=run_dir / "celery",
            timeout_s=workspace.timeout_s,
        )
        wall_s, summary = pipeline_wall_s(fake, outdir)
    return PipelineRun(
        design="Celery prefork",
        concurrency=concurrency,
        jobs=celery.summary["jobs"],
        files=count_asset_files(outdir),
        requests=summary.count,
        statuses=summary.by_status,
        wall_s=wall_s,
        process=None,
        extra={
            **_request_extra(summary),
            "worker_peak_rss_bytes": celery.worker_peak_rss_bytes,
            "worker_peak_pss_bytes": celery.worker_peak_pss_bytes,
            "worker_processes": celery.worker_processes,
            "driver_peak_rss_bytes": celery.driver.peak_rss_bytes,
            "redis_peak_rss_bytes": celery.redis_peak_rss_bytes,
            "summary": celery.summary,
        },
    )


def _request_extra(summary: RequestSummary) -> dict[str, Any]:
    return {
        "first_request_s": summary.first_start_s,
        "mean_server_s": summary.mean_server_s,
        "mean_turnaround_s": summary.mean_turnaround_s,
        "connections": summary.connections,
    }


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def run_floor(
    workspace: Workspace,
    dictionary: Path,
    *,
    latency_ms: float,
    concurrency: int,
    jobs: int,
    label: str,
) -> PipelineRun:
    """Run the bare-SDK client of ``benchmarks/sdk_floor.py`` and measure it."""
    run_dir = workspace.folder(label)
    outdir = run_dir / "out"
    with FakeServer(latency_ms=latency_ms, log_path=run_dir / "fake.log") as fake:
        command = [
            sys.executable,
            "-m",
            "benchmarks.sdk_floor",
            str(dictionary),
            "--outdir",
            str(outdir),
            "--base-url",
            fake.base_url,
            "--concurrency",
            str(concurrency),
        ]
        process = run_measured(
            command,
            env=benchmark_env(),
            cwd=REPO_ROOT,
            log_prefix=run_dir / "sdk-floor",
            timeout_s=workspace.timeout_s,
        ).check()
        wall_s, summary = pipeline_wall_s(fake, outdir)
    return PipelineRun(
        design="bare AsyncOpenAI",
        concurrency=concurrency,
        jobs=jobs,
        files=count_asset_files(outdir),
        requests=summary.count,
        statuses=summary.by_status,
        wall_s=wall_s,
        process=process,
        extra=_request_extra(summary),
    )


def latency_bound_s(jobs: int, concurrency: int, latency_ms: float) -> float:
    """Return ceil(N/C)*L, the earliest N requests of latency L can finish."""
    return math.ceil(jobs / concurrency) * latency_ms / 1000


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# --------------------------------------------------------------------------
# 1. Latency bound


def scenario_latency(
    workspace: Workspace,
    *,
    jobs: int = 600,
    concurrency: Sequence[int] = (5, 50),
    latency_ms: float = 200.0,
    celery: bool = True,
    repeats: int = 1,
) -> ScenarioResult:
    """Wall time of N jobs at latency L and concurrency C against ceil(N/C)*L.

    With ``repeats`` > 1 each design runs that many times per concurrency
    and the row shows the run with the median wall time and the range.
    """
    entries = entries_for_jobs(jobs)
    jobs = planned_jobs(entries)
    dictionary = workspace.root / "latency" / f"dictionary-{entries}.csv"
    write_csv_dictionary(dictionary, entries)
    designs: dict[str, Any] = {"esl-assets": run_ours, "bare AsyncOpenAI": run_floor}
    if celery:
        designs["Celery prefork"] = run_baseline
    slugs = {
        "esl-assets": "ours",
        "bare AsyncOpenAI": "floor",
        "Celery prefork": "celery",
    }
    rows: list[list[object]] = []
    runs: list[dict[str, Any]] = []
    for level in concurrency:
        bound = latency_bound_s(jobs, level, latency_ms)
        for design, runner in designs.items():
            repeated = [
                runner(
                    workspace,
                    dictionary,
                    latency_ms=latency_ms,
                    concurrency=level,
                    jobs=jobs,
                    label=f"latency/{slugs[design]}-c{level}-{index}",
                )
                for index in range(repeats)
            ]
            median = _median_run(repeated)
            rows.append(_latency_row(design, median, repeated, bound))
            runs.extend(
                _run_data(run, bound=bound, efficiency=_efficiency(bound, run))
                for run in repeated
            )
    notes = _latency_notes(runs)
    return ScenarioResult(
        name="latency",
        title=f"1. Latency bound: {jobs} jobs, L = {latency_ms:g} ms",
        command=(
            f"python benchmarks/run.py latency --jobs {jobs} "
            f"--concurrency {','.join(map(str, concurrency))} "
            f"--latency-ms {latency_ms:g}"
            + ("" if celery else " --no-celery")
            + (f" --repeats {repeats}" if repeats > 1 else "")
        ),
        headers=[
            "design",
            "C",
            "jobs",
            "files",
            "requests",
            "wall s" if repeats == 1 else f"wall s, median of {repeats} (range)",
            "bound s",
            "efficiency",
            "server ms/request",
            "turnaround ms",
            "connections",
            "goal",
            "met",
        ],
        rows=rows,
        notes=notes,
        data={"runs": runs},
    )


#: Efficiency goals of esl-assets by concurrency.
LATENCY_GOALS = {5: 0.98, 50: 0.95}


def _efficiency(bound: float, run: PipelineRun) -> float | None:
    return bound / run.wall_s if run.wall_s else None


def _median_run(runs: list[PipelineRun]) -> PipelineRun:
    ordered = sorted(runs, key=lambda run: run.wall_s or math.inf)
    return ordered[(len(ordered) - 1) // 2]


def _latency_row(
    design: str, run: PipelineRun, repeated: list[PipelineRun], bound: float
) -> list[object]:
    efficiency = _efficiency(bound, run)
    goal = LATENCY_GOALS.get(run.concurrency) if design == "esl-assets" else None
    met = "-"
    if goal is not None and efficiency is not None:
        met = "yes" if efficiency >= goal else "no"
    walls = [r.wall_s for r in repeated if r.wall_s is not None]
    wall = _fmt(run.wall_s)
    if len(walls) > 1:
        wall += f" ({min(walls):.3f}-{max(walls):.3f})"
    return [
        design,
        run.concurrency,
        run.jobs,
        run.files,
        run.requests,
        wall,
        _fmt(bound),
        _fmt(efficiency),
        _ms(run.extra["mean_server_s"]),
        _ms(run.extra["mean_turnaround_s"]),
        run.extra["connections"],
        f">= {goal}" if goal else "",
        met,
    ]


def _latency_notes(runs: list[dict[str, Any]]) -> list[str]:
    notes = [
        "wall = first request received by the fake server to the later of the "
        "last response sent and the last asset file written; bound = ceil(N/C) * L.",
        "server ms/request = mean time from a request's arrival to the end of its "
        "response at the fake server (L plus the server's own work); turnaround "
        "ms = mean time from a response's end to the next request on the same "
        "connection (client work plus loopback).",
        "bare AsyncOpenAI = benchmarks/sdk_floor.py: C coroutines calling the "
        "SDK and writing files, with no lanes, retries or checks; its gap to "
        "the bound is what the SDK, the fake server and the machine cost.",
    ]
    by_level: dict[int, dict[str, list[float]]] = {}
    for run in runs:
        if run["wall_s"] is not None:
            walls = by_level.setdefault(run["concurrency"], {})
            walls.setdefault(run["design"], []).append(run["wall_s"])
    for level, walls in sorted(by_level.items()):
        if "esl-assets" in walls and "Celery prefork" in walls:
            ratio = statistics.median(walls["esl-assets"]) / statistics.median(
                walls["Celery prefork"]
            )
            verdict = "met" if ratio <= 1 else "missed"
            notes.append(
                f"C = {level}: esl-assets wall / Celery wall = {ratio:.3f} "
                f"(medians; goal <= 1: {verdict})."
            )
    return notes


def _run_data(run: PipelineRun, **values: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "design": run.design,
        "concurrency": run.concurrency,
        "jobs": run.jobs,
        "files": run.files,
        "requests": run.requests,
        "statuses": run.statuses,
        "wall_s": run.wall_s,
        **values,
        **{k: v for k, v in run.extra.items() if k != "summary"},
    }
    if run.process is not None:
        data.update(
            process_wall_s=run.process.wall_s,
            cpu_s=run.process.cpu_s,
            peak_rss_bytes=run.process.peak_rss_bytes,
            peak_pss_bytes=run.process.peak_pss_bytes,
        )
    return data


# --------------------------------------------------------------------------
# 2. Peak memory


def scenario_memory(
    workspace: Workspace,
    *,
    jobs: int = 600,
    concurrency: int = 50,
    latency_ms: float = 200.0,
) -> ScenarioResult:
    """Peak summed RSS of each design's process tree at the same concurrency."""
    entries = entries_for_jobs(jobs)
    jobs = planned_jobs(entries)
    dictionary = workspace.root / "memory" / f"dictionary-{entries}.csv"
    write_csv_dictionary(dictionary, entries)

    ours = run_ours(
        workspace,
        dictionary,
        latency_ms=latency_ms,
        concurrency=concurrency,
        jobs=jobs,
        label="memory/ours",
    )
    celery = run_baseline(
        workspace,
        dictionary,
        latency_ms=latency_ms,
        concurrency=concurrency,
        jobs=jobs,
        label="memory/celery",
    )

    assert ours.process is not None
    ours_rss = ours.process.peak_rss_bytes
    celery_rss = int(celery.extra["worker_peak_rss_bytes"])
    ratio = ours_rss / celery_rss if celery_rss else None

    rows: list[list[object]] = [
        [
            "esl-assets (one process)",
            ours.process.peak_processes,
            mib(ours_rss),
            mib(ours.process.peak_pss_bytes),
        ],
        [
            "Celery worker (main + prefork pool)",
            celery.extra["worker_processes"],
            mib(celery_rss),
            mib(celery.extra["worker_peak_pss_bytes"]),
        ],
        [
            "Celery driver (enqueues, waits)",
            1,
            mib(celery.extra["driver_peak_rss_bytes"]),
            "-",
        ],
        [
            "redis-server (Celery's broker)",
            1,
            mib(celery.extra["redis_peak_rss_bytes"]),
            "-",
        ],
    ]
    verdict = "-"
    if ratio is not None:
        verdict = "met" if ratio <= 0.1 else "missed"

    return ScenarioResult(
        name="memory",
        title=(
            f"2. Peak memory at C = {concurrency} ({jobs} jobs, L = {latency_ms:g} ms)"
        ),
        command=(
            f"python benchmarks/run.py memory --jobs {jobs} "
            f"--concurrency {concurrency} --latency-ms {latency_ms:g}"
        ),
        headers=["process tree", "processes", "peak RSS (sum)", "peak PSS (sum)"],
        rows=rows,
        notes=[
            f"esl-assets RSS / Celery worker tree RSS = {_fmt(ratio)} "
            f"(goal <= 0.1: {verdict}).",
            "RSS is sampled every 50 ms; PSS every 0.5 s. RSS sums count pages "
            "shared by forked processes once per process; PSS splits them.",
        ],
        data={
            "ours": _run_data(ours),
            "celery": _run_data(celery),
            "ratio_rss": ratio,
        },
    )


# --------------------------------------------------------------------------
# 3. CPU overhead


def scenario_overhead(
    workspace: Workspace,
    *,
    jobs: int = 10_000,
    concurrency: int = 50,
    profile: bool = True,
) -> ScenarioResult:
    """CPU seconds per job of the esl-assets process against a zero-latency server.

    The bare-SDK client runs the same jobs as a reference: what the openai
    SDK and httpx2 cost per request without any esl-assets code.
    """
    entries = entries_for_jobs(jobs)
    jobs = planned_jobs(entries)
    dictionary = workspace.root / "overhead" / f"dictionary-{entries}.csv"
    write_csv_dictionary(dictionary, entries)
    options = {"latency_ms": 0.0, "concurrency": concurrency, "jobs": jobs}
    ours = run_ours(workspace, dictionary, label="overhead/ours", **options)
    files = file_system_floor(workspace, workspace.root / "overhead" / "ours" / "out")
    floor = run_floor(workspace, dictionary, label="overhead/floor", **options)
    figures = [_overhead_figures(run) for run in (ours, floor)]
    rows = [
        [label, *(figure[key] for figure in figures)]
        for label, key in OVERHEAD_MEASURES
    ]
    goal_value, measured_over = figures[0]["window_ms"], "from the first request"
    if goal_value == "-":
        goal_value, measured_over = figures[0]["process_ms"], "over the whole process"
    notes = [
        "Goal <= 1 ms CPU per job for esl-assets: "
        + ("met" if float(goal_value) <= 1.0 else "missed")
        + f" ({goal_value} ms {measured_over}).",
        "The whole-process figure includes start-up (imports, reading the "
        "dictionary before the first request); the window figure does not.",
        "bare AsyncOpenAI = benchmarks/sdk_floor.py, the same requests with "
        "no esl-assets code: the cost of the openai SDK and httpx2 alone.",
        "The fake server runs in its own process on the same 2 cores, so it "
        "also limits jobs per second.",
        f"Writing the same {files['files']} files again and nothing else "
        f"(benchmarks/file_floor.py, mean {files['mean_bytes'] / 1024:.1f} KiB, "
        f"on the same file system as the run) took "
        f"{files['cpu_ms_per_file_fsync']:.3f} ms of CPU per file through a "
        "temporary name with fsync and a rename, as esl-assets writes, and "
        f"{files['cpu_ms_per_file_no_fsync']:.3f} ms without fsync.",
    ]
    data: dict[str, Any] = {
        "ours": _run_data(ours),
        "floor": _run_data(floor),
        "figures": figures,
        "file_system": files,
    }
    if profile:
        data["profiles"] = profile_overhead(workspace, dictionary, concurrency)
        notes.append(
            "Profiles: " + ", ".join(str(p) for p in data["profiles"].values())
        )
    return ScenarioResult(
        name="overhead",
        title=f"3. Overhead: {jobs} jobs, zero latency, C = {concurrency}",
        command=(
            f"python benchmarks/run.py overhead --jobs {jobs} "
            f"--concurrency {concurrency}" + ("" if profile else " --no-profile")
        ),
        headers=["measure", "esl-assets", "bare AsyncOpenAI"],
        rows=rows,
        notes=notes,
        data=data,
    )


def file_system_floor(workspace: Workspace, outdir: Path) -> dict[str, Any]:
    """Measure the CPU that writing ``outdir``'s files alone costs."""
    scratch = workspace.folder("overhead", "file-floor")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.file_floor", str(outdir), str(scratch)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env=benchmark_env(),
        timeout=workspace.timeout_s,
    )
    figures: dict[str, Any] = json.loads(result.stdout)
    return figures


OVERHEAD_MEASURES = [
    ("jobs", "jobs"),
    ("requests at the fake server", "requests"),
    ("files written", "files"),
    ("process wall time (s)", "process_wall_s"),
    ("first request to last file (s)", "window_s"),
    ("jobs per second (first request to last file)", "jobs_per_s"),
    ("CPU s, whole process (user + sys)", "cpu_s"),
    ("CPU ms per job, whole process", "process_ms"),
    ("CPU ms per job, first request to last file", "window_ms"),
    ("peak RSS", "peak_rss"),
]


def _overhead_figures(run: PipelineRun) -> dict[str, str]:
    process = run.process
    assert process is not None
    first = run.extra["first_request_s"]
    window_cpu = None
    if first is not None and run.wall_s:
        window_cpu = process.sampler.cpu_between(first, first + run.wall_s)
    return {
        "jobs": str(run.jobs),
        "requests": str(run.requests),
        "files": str(run.files),
        "process_wall_s": _fmt(process.wall_s),
        "window_s": _fmt(run.wall_s),
        "jobs_per_s": _fmt(run.jobs / run.wall_s if run.wall_s else None, 0),
        "cpu_s": _fmt(process.cpu_s),
        "process_ms": _fmt(process.cpu_s / run.jobs * 1000),
        "window_ms": _fmt(None if window_cpu is None else window_cpu / run.jobs * 1000),
        "peak_rss": mib(process.peak_rss_bytes),
    }


def profile_overhead(
    workspace: Workspace, dictionary: Path, concurrency: int
) -> dict[str, str]:
    """Profile the overhead run with pyinstrument and cProfile; return the files."""
    outputs: dict[str, str] = {}
    profilers = {
        "pyinstrument": _pyinstrument_prefix,
        "cprofile": _cprofile_prefix,
    }
    for name, prefix in profilers.items():
        run_dir = workspace.folder("overhead", f"profile-{name}")
        report = run_dir / f"{name}.txt"
        with FakeServer(latency_ms=0.0, log_path=run_dir / "fake.log") as fake:
            arguments = build_arguments(
                dictionary, run_dir / "out", fake.base_url, concurrency
            )
            command = prefix(run_dir) + ["-m", "esl_assets", *arguments]
            run_measured(
                command,
                env=benchmark_env(),
                cwd=run_dir,
                log_prefix=run_dir / "esl-assets",
                timeout_s=workspace.timeout_s,
            ).check()
        if name == "cprofile":
            _write_cprofile_report(run_dir / "profile.pstats", report)
        else:
            _write_pyinstrument_report(run_dir / "session.pyisession", report)
        outputs[name] = str(report)
    return outputs


def _pyinstrument_prefix(run_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pyinstrument",
        "--renderer",
        "pyisession",
        "--outfile",
        str(run_dir / "session.pyisession"),
    ]


def _write_pyinstrument_report(
    session_path: Path, report: Path, lines: int = 60
) -> None:
    """Render a saved session as a call tree and two flat lists of self time.

    The first flat list folds library frames into the esl-assets frame that
    called them, so it points at lines of esl-assets. The second lists every
    frame.
    """
    from pyinstrument.renderers import ConsoleRenderer
    from pyinstrument.session import Session

    session = Session.load(str(session_path))
    sections = {
        "Call tree (library frames hidden)": ConsoleRenderer(
            time="percent_of_total",
            processor_options={"filter_threshold": 0.01},
        ),
        "Self time, library frames folded into their callers": ConsoleRenderer(
            flat=True, time="percent_of_total"
        ),
        "Self time, every frame": ConsoleRenderer(
            flat=True, show_all=True, time="percent_of_total"
        ),
    }
    parts = []
    for title, renderer in sections.items():
        text = renderer.render(session)
        parts.append(f"== {title}\n" + "\n".join(text.splitlines()[:lines]))
    report.write_text("\n\n".join(parts) + "\n", encoding="utf-8")


def _cprofile_prefix(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "cProfile", "-o", str(run_dir / "profile.pstats")]


def _write_cprofile_report(stats_path: Path, report: Path) -> None:
    import io
    import pstats

    buffer = io.StringIO()
    stats = pstats.Stats(str(stats_path), stream=buffer)
    stats.sort_stats("tottime").print_stats(40)
    buffer.write("\n\nesl_assets functions by total time:\n")
    stats.sort_stats("tottime").print_stats("esl_assets", 30)
    buffer.write("\n\nesl_assets functions by cumulative time:\n")
    stats.sort_stats("cumulative").print_stats("esl_assets", 30)
    report.write_text(buffer.getvalue(), encoding="utf-8")


# --------------------------------------------------------------------------
# 4. Start-up


def scenario_startup(workspace: Workspace, *, repeats: int = 10) -> ScenarioResult:
    """Wall time of ``esl-assets --help`` and time to the first request."""
    help_times = [_time_help() for _ in range(repeats)]
    python_times = [
        _time_command([sys.executable, "-c", "pass"]) for _ in range(repeats)
    ]
    first_request = [
        _time_to_first_request(workspace, attempt)
        for attempt in range(max(3, repeats // 3))
    ]
    help_median = statistics.median(help_times)
    first_median = statistics.median(first_request)
    rows: list[list[object]] = [
        [
            "python -c pass (interpreter alone)",
            _fmt(statistics.median(python_times)),
            _fmt(min(python_times)),
            len(python_times),
            "",
            "",
        ],
        [
            "esl-assets --help",
            _fmt(help_median),
            _fmt(min(help_times)),
            len(help_times),
            "<= 0.3",
            "yes" if help_median <= 0.3 else "no",
        ],
        [
            "start to first request, sample.sqlite",
            _fmt(first_median),
            _fmt(min(first_request)),
            len(first_request),
            "<= 1.0",
            "yes" if first_median <= 1.0 else "no",
        ],
    ]
    imports = slowest_imports(["--help"])
    return ScenarioResult(
        name="startup",
        title="4. Start-up",
        command=f"python benchmarks/run.py startup --repeats {repeats}",
        headers=["measure", "median s", "min s", "runs", "goal s", "met"],
        rows=rows,
        notes=[
            "esl-assets is started as its console script when the virtual "
            "environment has one, else as python -m esl_assets.",
            "Slowest imports of --help (cumulative, python -X importtime): "
            + ", ".join(f"{name} {ms:.0f} ms" for name, ms in imports),
        ],
        data={
            "help_s": help_times,
            "python_s": python_times,
            "first_request_s": first_request,
            "slowest_imports_ms": imports,
        },
    )


def entry_point() -> list[str]:
    script = Path(sys.executable).with_name("esl-assets")
    return [str(script)] if script.exists() else esl_assets_command()


def _time_command(command: Sequence[str]) -> float:
    started = time.monotonic()
    subprocess.run(
        list(command), env=benchmark_env(), stdout=subprocess.DEVNULL, check=True
    )
    return time.monotonic() - started


def _time_help() -> float:
    return _time_command([*entry_point(), "--help"])


def _time_to_first_request(workspace: Workspace, attempt: int) -> float:
    """Time a build of the sample dictionary to its first request, then stop it."""
    run_dir = workspace.folder("startup", f"first-request-{attempt}")
    with FakeServer(latency_ms=0.0, log_path=run_dir / "fake.log") as fake:
        arguments = build_arguments(SAMPLE_SQLITE, run_dir / "out", fake.base_url, 5)
        run = run_until_first_request(
            [*entry_point(), *arguments],
            fake,
            env=benchmark_env(),
            cwd=run_dir,
            stderr_path=run_dir / "esl-assets.stderr",
            timeout_s=workspace.timeout_s,
        )
        summary = summarize_requests(fake.records())
    if summary.first_start_s is None:
        raise RuntimeError(
            f"The sample build sent no request (exit code {run.returncode}); "
            f"see {run_dir / 'esl-assets.stderr'}."
        )
    return summary.first_start_s - run.started_s


def slowest_imports(arguments: Sequence[str], top: int = 8) -> list[tuple[str, float]]:
    """Return the imports of third-party and standard modules that took longest.

    Only modules imported directly by an ``esl_assets`` module are listed,
    with their cumulative time from ``python -X importtime``, because those
    are the imports esl-assets could defer.
    """
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "esl_assets", *arguments],
        env=benchmark_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    # importtime prints children before their parent, one line per module:
    # "import time: self_us | cumulative_us | <indent>name".
    parsed: list[tuple[int, str, int]] = []
    for line in completed.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        depth = len(name) - len(name.lstrip())
        parsed.append((depth, name.strip(), int(parts[1].strip())))
    found: list[tuple[str, float]] = []
    for index, (depth, name, cumulative_us) in enumerate(parsed):
        parent = next((p for p in parsed[index + 1 :] if p[0] < depth), None)
        if parent is None or name.startswith("esl_assets"):
            continue
        if parent[1].startswith("esl_assets"):
            found.append((name, cumulative_us / 1000))
    found.sort(key=lambda item: item[1], reverse=True)
    return found[:top]
