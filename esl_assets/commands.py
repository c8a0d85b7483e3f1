"""Handlers of the build and plan subcommands, with their terminal output."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from .cli import (
    add_build_options,
    add_output_options,
    configure_logging,
    print_json,
    run_async,
    settings_options,
)
from .jobs import AssetKind, Job, JobResult, Status
from .journal import CHANGED, FAILED_BEFORE
from .progress import PlainProgress, RichProgress
from .report import BuildReport
from .resume import ResumePoint, apply_overrides, find_resume_point
from .settings import Settings
from .stopping import run_until_stopped

if TYPE_CHECKING:
    from .pipeline import BuildObserver


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    build = commands.add_parser("build", help="generate every missing asset")
    add_build_options(build)
    add_output_options(build)
    build.set_defaults(handler=run_build_command)
    plan = commands.add_parser("plan", help="show what a build would do, send nothing")
    add_build_options(plan)
    add_output_options(plan)
    plan.set_defaults(handler=run_build_command)


class PlanCounter:
    """Counts headwords by level and part of speech for ``plan``."""

    def __init__(self) -> None:
        self.levels: Counter[str] = Counter()
        self.pos: Counter[str] = Counter()
        self._seen: set[str] = set()

    def on_planned(self, job: Job) -> None:
        if job.uuid in self._seen:
            return
        self._seen.add(job.uuid)
        self.levels[job.level or "-"] += 1
        self.pos[job.pos or "-"] += 1

    def on_result(self, job: Job, result: JobResult) -> None:
        pass


def run_build_command(args: argparse.Namespace) -> int:
    options = settings_options(args)
    if args.command == "plan":
        options["dryrun"] = True
    settings = Settings.from_options(**options)
    if settings.redis_url and args.command == "build":
        from .queue_commands import run_queue_build

        return run_queue_build(args, settings)
    verbosity = 0 if args.json and args.verbosity == 1 else args.verbosity
    resume: ResumePoint | None = None
    if settings.resume:
        # Overrides of the saved settings are logged as warnings, which go to
        # stderr even with --json unless -v 0 selects errors only.
        configure_logging(args.verbosity)
        resume = find_resume_point(settings.outdir)
        settings = apply_overrides(resume, options, settings.outdir)
        if args.verbosity > 0:
            _print_resume(resume)
    observers: list[BuildObserver] = []
    counter = PlanCounter()
    if args.command == "plan":
        observers.append(counter)
    resumed_from = resume.run.id if resume is not None else None
    # plan prints its own table, so a progress line would only repeat it.
    progress_verbosity = 0 if args.command == "plan" and verbosity == 1 else verbosity
    report = _run_with_progress(
        settings,
        observers,
        verbosity,
        resumed_from,
        show_progress=progress_verbosity == 1,
    )
    if args.json:
        data = report.to_dict(results=args.command == "build")
        if args.command == "plan":
            data["entries"] = {
                "by_level": dict(counter.levels),
                "by_pos": dict(counter.pos),
            }
        if resume is not None:
            data["resume"] = resume.to_dict()
        print_json(data)
    elif args.command == "plan":
        print_plan(report, counter)
    elif verbosity > 0 or report.exit_code:
        print_summary(report)
        if report.outcome == "interrupted":
            Console(file=sys.stdout).print(
                "Interrupted. Continue with: esl-assets build --resume --outdir "
                f"{settings.outdir}",
                markup=False,
            )
    return report.exit_code


def _print_resume(resume: ResumePoint) -> None:
    run = resume.run
    to_do = f"{resume.remaining} to do"
    if not resume.planned_all:
        to_do = (
            f"at least {resume.remaining} to do (the run stopped before it had "
            "planned every job)"
        )
    Console(stderr=True).print(
        f"Resuming run {run.id} (started {run.started_at}, {run.state}): "
        f"{resume.done} job(s) done, {resume.failed} failed before, {to_do}.",
        markup=False,
    )


def _run_with_progress(
    settings: Settings,
    observers: list[BuildObserver],
    verbosity: int,
    resumed_from: int | None = None,
    *,
    show_progress: bool = True,
) -> BuildReport:
    console = Console(stderr=True)
    use_rich = verbosity == 1 and console.is_terminal
    configure_logging(verbosity, console if use_rich else None)
    progress: RichProgress | PlainProgress | None = None
    if verbosity == 1 and show_progress:
        progress = RichProgress(console) if use_rich else PlainProgress()
        observers = [*observers, progress]
    # Imported here, because the pipeline pulls in the openai SDK, which
    # `esl-assets --help` should not wait for.
    from .pipeline import Build

    build = Build(settings, observers=observers, resumed_from=resumed_from)
    if progress is None:
        return run_async(run_until_stopped(build, settings.grace_s))
    with progress:
        return run_async(run_until_stopped(build, settings.grace_s))


def print_summary(report: BuildReport) -> None:
    console = Console(file=sys.stdout)
    table = Table(title=f"esl-assets: {report.outcome} in {report.duration_s:.1f} s")
    table.add_column("kind")
    for status in Status:
        table.add_column(status.value, justify="right")
    for kind, counts in report.counts.items():
        if any(counts.values()):
            table.add_row(kind, *(str(counts[s.value]) for s in Status))
    console.print(table)
    for name, lane in report.lanes.items():
        console.print(
            f"{name}: {lane['requests']} requests, {lane['retries']} retries, "
            f"{lane['rate_limited']} rate-limited, mean latency "
            f"{_seconds(lane['latency_mean_s'])}, p95 {_seconds(lane['latency_p95_s'])}"
        )
    _print_problems(console, report)


def _print_problems(console: Console, report: BuildReport) -> None:
    if report.rejected:
        console.print(
            f"{len(report.rejected)} row(s) rejected; see the warnings above."
        )
    if report.errors and report.dryrun:
        console.print(
            f"{len(report.errors)} job(s) would fail without a request; see the "
            "warnings above."
        )
    elif report.errors:
        console.print(f"{len(report.errors)} job(s) failed; details in errors.jsonl.")
    if report.not_run:
        console.print(
            f"{report.not_run} planned job(s) were not run because the run "
            "stopped; jobs not planned yet were not counted."
        )
    _print_journal_notes(console, report)
    if report.fatal_message:
        console.print(f"[bold red]{report.fatal_message}[/]")
    if report.sample_prompts:
        console.print(f"Characters to speak: {report.characters_to_speak}")
        for prompt in report.sample_prompts:
            console.print(f"Image prompt: {prompt}", markup=False)


def _print_journal_notes(console: Console, report: BuildReport) -> None:
    not_refreshed = report.count_reason(CHANGED, Status.SKIPPED)
    refreshed = report.count_reason(CHANGED, Status.SUCCESS)
    failed_before = report.count_reason(FAILED_BEFORE)
    if not_refreshed:
        console.print(
            f"{not_refreshed} file(s) were made from other text or settings than the "
            "dictionary's now; --refresh-changed regenerates them."
        )
    if refreshed:
        console.print(f"{refreshed} changed file(s) regenerated.")
    if failed_before:
        console.print(
            f"{failed_before} job(s) failed in an earlier run and were not sent; "
            "--retry-failed retries them, and --retry-blocked retries content-policy "
            "refusals too."
        )


def print_plan(report: BuildReport, counter: PlanCounter) -> None:
    console = Console(file=sys.stdout)
    console.print(f"Headwords by level: {_counter_text(counter.levels)}")
    console.print(f"Headwords by part of speech: {_counter_text(counter.pos)}")
    table = Table(title="Jobs")
    table.add_column("kind")
    columns = (
        "to make",
        "on disk",
        "changed",
        "failed before",
        "skipped (empty)",
        "too long",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for kind in AssetKind:
        row = _plan_row(report, kind)
        if any(row):
            table.add_row(kind.value, *(str(n) for n in row))
    console.print(table)
    console.print(f"Characters to speak: {report.characters_to_speak}")
    for reason, number in sorted(report.excluded.items()):
        console.print(f"Left out ({reason}): {number}")
    for rejected in report.rejected:
        console.print(
            f"Rejected {rejected.origin} ({rejected.reason}): {rejected.message}",
            markup=False,
        )
    for prompt in report.sample_prompts:
        console.print(f"Image prompt: {prompt}", markup=False)
    if report.fatal_message:
        console.print(report.fatal_message, style="bold red", markup=False)


def _plan_row(report: BuildReport, kind: AssetKind) -> list[int]:
    reasons: Counter[tuple[str, str | None]] = Counter(
        (r.status.value, r.reason) for r in report.results if r.kind is kind
    )
    return [
        reasons[("dryrun", None)],
        reasons[("skipped", "exists")],
        # On disk, but made from other text or settings (journal).
        reasons[("skipped", CHANGED)],
        # Failed in an earlier run, not sent again without --retry-failed.
        reasons[("skipped", FAILED_BEFORE)],
        reasons[("skipped", "empty_text")],
        reasons[("error", "too_long")],
    ]


def _counter_text(counter: Counter[str]) -> str:
    return (
        ", ".join(f"{key} {value}" for key, value in sorted(counter.items())) or "none"
    )


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{value:.2f} s"
