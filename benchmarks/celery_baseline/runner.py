"""Run the Celery baseline under measurement: Redis, a prefork worker, the driver."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..harness import (
    REPO_ROOT,
    ProcessRun,
    RedisServer,
    TreeSampler,
    benchmark_env,
    run_measured,
    stop_process,
)


@dataclasses.dataclass
class CeleryRun:
    """The measurements of one baseline run."""

    driver: ProcessRun
    summary: dict[str, Any]
    #: Peak summed RSS and PSS of the worker's process tree (main + pool).
    worker_peak_rss_bytes: int
    worker_peak_pss_bytes: int
    worker_processes: int
    redis_peak_rss_bytes: int


def worker_command(concurrency: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "benchmarks.celery_baseline.app",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        "--loglevel",
        "WARNING",
        "--hostname",
        "bench@%h",
    ]


def run_celery(
    dictionary: Path,
    outdir: Path,
    *,
    base_url: str,
    concurrency: int,
    workdir: Path,
    timeout_s: float,
) -> CeleryRun:
    """Start Redis and a worker, run the driver to its end, stop both."""
    workdir.mkdir(parents=True, exist_ok=True)
    with RedisServer(workdir / "redis") as redis:
        env = benchmark_env(BENCH_REDIS_URL=redis.url, BENCH_BASE_URL=base_url)
        redis_sampler = TreeSampler(redis.pid, interval_s=0.2).start()
        with open(workdir / "celery-worker.log", "wb") as log:
            worker = subprocess.Popen(
                worker_command(concurrency),
                stdout=log,
                stderr=log,
                env=env,
                cwd=REPO_ROOT,
            )
        sampler = TreeSampler(worker.pid, interval_s=0.05, pss_every=10).start()
        try:
            driver = run_measured(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.celery_baseline.driver",
                    str(dictionary),
                    "--outdir",
                    str(outdir),
                    "--timeout",
                    str(timeout_s),
                ],
                env=env,
                cwd=REPO_ROOT,
                log_prefix=workdir / "celery-driver",
                timeout_s=timeout_s + 60,
            ).check()
        finally:
            sampler.stop()
            redis_sampler.stop()
            stop_process(worker)
    return CeleryRun(
        driver=driver,
        summary=driver.stdout_json(),
        worker_peak_rss_bytes=sampler.peak_rss_bytes,
        worker_peak_pss_bytes=sampler.peak_pss_bytes,
        worker_processes=sampler.peak_processes,
        redis_peak_rss_bytes=redis_sampler.peak_rss_bytes,
    )
