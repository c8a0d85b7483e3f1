"""Run the esl-assets benchmarks and print their tables.

Examples, from the repository root with the ``bench`` extra installed::

    python benchmarks/run.py latency --jobs 600 --concurrency 5,50
    python benchmarks/run.py overhead --jobs 10000
    python benchmarks/run.py all --json results.json

Every server runs on 127.0.0.1 in its own process: the fake OpenAI API from
``tests/fake_openai.py`` and, for Celery and the Redis queue, a private
``redis-server``. Tables are Markdown, ready for ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import scenarios, scenarios_scale
from benchmarks.harness import ScenarioResult, machine_info, source_revision
from benchmarks.scenarios import Workspace

Runner = Callable[[Workspace, argparse.Namespace], ScenarioResult]


def _integers(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers, e.g. 5,50"
        ) from None


def _latency(workspace: Workspace, args: argparse.Namespace) -> ScenarioResult:
    return scenarios.scenario_latency(
        workspace,
        jobs=args.jobs or 600,
        concurrency=args.concurrency or [5, 50],
        latency_ms=200.0 if args.latency_ms is None else args.latency_ms,
        celery=args.celery,
        repeats=args.repeats or 1,
    )


def _memory(workspace: Workspace, args: argparse.Namespace) -> ScenarioResult:
    return scenarios.scenario_memory(
        workspace,
        jobs=args.jobs or 600,
        concurrency=(args.concurrency or [50])[0],
        latency_ms=200.0 if args.latency_ms is None else args.latency_ms,
    )


def _overhead(workspace: Workspace, args: argparse.Namespace) -> ScenarioResult:
    return scenarios.scenario_overhead(
        workspace,
        jobs=args.jobs or 10_000,
        concurrency=(args.concurrency or [50])[0],
        profile=args.profile,
    )


def _startup(workspace: Workspace, args: argparse.Namespace) -> ScenarioResult:
    return scenarios.scenario_startup(workspace, repeats=args.repeats or 10)


def _ratelimit(workspace: Workspace, args: argparse.Namespace) -> ScenarioResult:
    return scenarios_scale.scenario_ratelimit(
        workspace,
        entries=args.entries or 1200,
        rpm=args.rpm,
        concurrency=(args.concurrency or [50])[0],
        latency_ms=100.0 if args.latency_ms is None else args.latency_ms,
        client_rpm=args.client_rpm,
    )


def _scale(workspace: Workspace, args: argparse.Namespace) -> ScenarioResult:
    return scenarios_scale.scenario_scale(workspace, rows=args.rows or 100_000)


def _resume(workspace: Workspace, args: argparse.Namespace) -> ScenarioResult:
    return scenarios_scale.scenario_resume(
        workspace,
        entries=args.entries or 100_000,
        on_disk=args.on_disk,
        concurrency=(args.concurrency or [50])[0],
    )


def _redis(workspace: Workspace, args: argparse.Namespace) -> ScenarioResult:
    levels = args.concurrency or [20]
    return scenarios_scale.scenario_redis(
        workspace,
        jobs=args.jobs or 20_000,
        instances=args.instances,
        concurrency=levels[0],
    )


SCENARIOS: dict[str, Runner] = {
    "latency": _latency,
    "memory": _memory,
    "overhead": _overhead,
    "startup": _startup,
    "ratelimit": _ratelimit,
    "scale": _scale,
    "resume": _resume,
    "redis": _redis,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark esl-assets against the latency bound and Celery.",
    )
    parser.add_argument(
        "scenario",
        choices=[*SCENARIOS, "all"],
        help="scenario to run; 'all' runs each with its default size",
    )
    _add_size_options(parser)
    _add_output_options(parser)
    return parser


def _add_size_options(parser: argparse.ArgumentParser) -> None:
    size = parser.add_argument_group("size (each scenario has its own default)")
    size.add_argument("--jobs", type=int, help="jobs to plan (3 per entry)")
    size.add_argument("--entries", type=int, help="dictionary entries")
    size.add_argument("--rows", type=int, help="CSV rows for the scale scenario")
    size.add_argument(
        "--concurrency", type=_integers, help="concurrency, e.g. 5,50 for latency"
    )
    size.add_argument("--latency-ms", type=float, help="fake server latency in ms")
    size.add_argument(
        "--repeats", type=int, help="runs per measure (default: latency 1, startup 10)"
    )
    size.add_argument(
        "--rpm", type=int, default=600, help="fake server limit per lane (ratelimit)"
    )
    size.add_argument(
        "--client-rpm",
        action="store_true",
        help="ratelimit: also pass the limit as --audio-rpm/--image-rpm",
    )
    size.add_argument(
        "--on-disk",
        type=float,
        default=0.99,
        help="resume: share of the files already on disk (0 to 1)",
    )
    size.add_argument(
        "--instances", type=int, default=4, help="redis: worker processes"
    )
    size.add_argument(
        "--no-celery", dest="celery", action="store_false", help="skip the baseline"
    )
    size.add_argument(
        "--no-profile", dest="profile", action="store_false", help="skip profiling"
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    output = parser.add_argument_group("output")
    output.add_argument("--workdir", type=Path, help="scratch folder (default: temp)")
    output.add_argument("--keep", action="store_true", help="keep the scratch folder")
    output.add_argument("--json", type=Path, help="also write the results here")
    output.add_argument(
        "--timeout", type=float, default=900.0, help="seconds per measured process"
    )


def header(argv: Sequence[str]) -> str:
    machine = machine_info()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Date: {now}\n"
        f"Machine: {machine['cpu']}, {machine['logical_cores']} logical cores, "
        f"{machine['memory_gib']} GiB, {machine['os']}, Python {machine['python']}, "
        f"load average {machine['load_average_1min']} at start, "
        f"{machine['python_loop_ms']} ms for a loop of 10^6 additions\n"
        f"Source: {source_revision()}\n"
        f"Command: python benchmarks/run.py {shlex.join(argv)}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    root = args.workdir or Path(tempfile.mkdtemp(prefix="esl-assets-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(root=root, timeout_s=args.timeout)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]

    print(header(argv), flush=True)
    results: list[dict[str, Any]] = []
    try:
        for name in names:
            results.append(run_scenario(name, workspace, args))
    finally:
        if args.json:
            write_results(args.json, argv, results)
        if args.keep or args.workdir:
            print(f"Scratch files kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)

    failed = [result for result in results if "failed" in result]
    return 1 if failed else 0


def run_scenario(
    name: str, workspace: Workspace, args: argparse.Namespace
) -> dict[str, Any]:
    """Run one scenario, print its table or why it did not run, return its data."""
    try:
        result = SCENARIOS[name](workspace, args)
    except scenarios_scale.NotAvailableError as error:
        print(f"### {name}: not run\n\n{error}\n", flush=True)
        return {"name": name, "not_run": str(error)}
    except RuntimeError as error:
        print(f"### {name}: failed\n\n{error}\n", flush=True)
        return {"name": name, "failed": str(error)}

    print(result.to_markdown(), flush=True)
    return result.to_dict()


def write_results(path: Path, argv: list[str], results: list[dict[str, Any]]) -> None:
    document = {
        "machine": machine_info(),
        "source": source_revision(),
        "argv": argv,
        "results": results,
    }
    path.write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
