"""Plan the jobs of a CSV dictionary, enqueue them on Celery, wait for all results.

Run from the repository root with a worker already started::

    BENCH_REDIS_URL=redis://127.0.0.1:PORT/0 \
        python -m benchmarks.celery_baseline.driver DICT.csv --outdir OUT

It prints one JSON object: jobs, counts per status, and the seconds spent
waiting for a worker, enqueuing and waiting for the results.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from celery.result import ResultSet

from ..plan import plan_jobs
from .app import app, generate_asset

#: Seconds to wait for a worker's reply to a ping before giving up.
WORKER_WAIT_S = 60.0


def wait_for_worker(timeout_s: float = WORKER_WAIT_S) -> float:
    """Block until a worker replies to a ping; return the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if app.control.ping(timeout=0.5):
            return time.monotonic() - started
    raise RuntimeError(
        f"No Celery worker replied to a ping within {timeout_s:.0f} s; check the "
        "worker log (celery-worker.log in the scenario folder)."
    )


def run(dictionary: Path, outdir: Path, timeout_s: float) -> dict[str, Any]:
    """Enqueue every job, wait for the results and return the summary."""
    outdir.mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(dictionary)
    waited_s = wait_for_worker()
    enqueue_started = time.monotonic()
    pending = [generate_asset.delay(job, str(outdir)) for job in jobs]
    enqueued = time.monotonic()
    results = ResultSet(pending).get(timeout=timeout_s)
    finished = time.monotonic()
    statuses = Counter(result["status"] for result in results)
    errors = [result for result in results if result["status"] != "success"]
    return {
        "jobs": len(jobs),
        "statuses": dict(statuses),
        "first_errors": errors[:5],
        "worker_wait_s": round(waited_s, 3),
        "enqueue_s": round(enqueued - enqueue_started, 3),
        "results_s": round(finished - enqueued, 3),
        "enqueue_started_s": enqueue_started,
        "finished_s": finished,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dictionary", type=Path, help="CSV dictionary")
    parser.add_argument("--outdir", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for results"
    )
    args = parser.parse_args(argv)
    summary = run(args.dictionary, args.outdir, args.timeout)
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")
    return 0 if summary["statuses"].get("success", 0) == summary["jobs"] else 1


if __name__ == "__main__":
    sys.exit(main())
