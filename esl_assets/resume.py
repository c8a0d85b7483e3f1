"""``--resume``: find the unfinished run of an output folder and its settings.

The journal keeps the settings of every run (the API key left out). Resuming
continues the newest run that neither completed nor was resumed already,
with those settings. Options given again override them, with a warning each,
unless they change which jobs the run makes (``--limit``, ``--level``,
``--audio-format`` ...). Those raise ``ResumeError``, because the resumed run
would complete with other jobs and the rest of the original run could no
longer be resumed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ResumeError
from .journal import JOURNAL_DIR, JOURNAL_NAME, Journal, RunRecord, kinds_of
from .settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResumePoint:
    """The run ``--resume`` continues, with its saved settings and progress."""

    run: RunRecord
    settings: Settings
    #: Jobs of the run's asset kinds with a file or a final result recorded.
    done: int
    #: Jobs of those kinds whose last result is an error.
    failed: int
    #: Jobs planned by the run (or by the run it resumed) at most.
    planned: int
    #: False when the run stopped before planning every job, so ``remaining``
    #: is a lower bound.
    planned_all: bool

    @property
    def remaining(self) -> int:
        return max(self.planned - self.done - self.failed, 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run.id,
            "started_at": self.run.started_at,
            "state": self.run.state,
            "done": self.done,
            "failed": self.failed,
            "planned": self.planned,
            "remaining": self.remaining,
            "remaining_exact": self.planned_all,
        }


def find_resume_point(outdir: Path) -> ResumePoint:
    """Return the newest unfinished run of ``outdir`` and its progress.

    Raises ``ResumeError`` when the folder has no journal, no unfinished run,
    or when that run is still running.
    """
    journal = Journal.open_existing(outdir)
    if journal is None:
        raise ResumeError(
            f"Nothing to resume: {outdir} has no journal ({JOURNAL_DIR}/"
            f"{JOURNAL_NAME}). Start a build without --resume."
        )
    with journal:
        run = journal.latest_unfinished_run()
        if run is None:
            raise ResumeError(
                f"Nothing to resume in {outdir}: every run there completed. "
                "Run build without --resume to make what is missing."
            )
        if run.state == "running":
            raise ResumeError(
                f"Run {run.id} in {outdir} is still running (process {run.pid}); "
                "stop it or wait for it before resuming."
            )
        settings = Settings.from_public_dict(run.settings)
        done, failed = journal.job_totals(kinds_of(settings))
        planned, planned_all = _chain_plan(journal, run)
    return ResumePoint(run, settings, done, failed, planned, planned_all)


def _chain_plan(journal: Journal, run: RunRecord) -> tuple[int, bool]:
    """Return the largest plan of ``run`` and the runs it resumed."""
    planned, planned_all = run.planned, run.planned_all
    previous = run.resumed_from
    while previous is not None:
        earlier = journal.run(previous)
        if earlier is None:
            break
        if earlier.planned_all and not planned_all:
            planned, planned_all = earlier.planned, True
        elif earlier.planned > planned and not planned_all:
            planned = earlier.planned
        previous = earlier.resumed_from
    return planned, planned_all


def apply_overrides(
    point: ResumePoint, given: dict[str, Any], outdir: Path
) -> Settings:
    """Return the saved settings with the options given again applied.

    ``given`` contains the options the user passed for this run (typed values,
    as ``Settings.from_options`` accepts them). Each one that differs from the
    saved value is logged as a warning. Raises ``ResumeError`` when one of them
    would change which jobs the run makes.
    """
    saved = point.settings
    typed = Settings.from_public_dict(
        {**saved.public_dict(), **{k: v for k, v in given.items() if k != "api_key"}}
    )
    if typed.dictionary is not None:
        typed = typed.replace(dictionary=typed.dictionary.resolve())
    changes: dict[str, Any] = {}
    for name in given:
        if name in ("resume", "api_key", "outdir") or not hasattr(saved, name):
            continue
        old, new = getattr(saved, name), getattr(typed, name)
        if old == new:
            continue
        changes[name] = new
    _reject_job_changes(point, changes)
    for name, new in changes.items():
        old = getattr(saved, name)
        if name not in _SILENT_OVERRIDES:
            logger.warning(
                "--%s %s overrides the value saved with run %d (%s).",
                name.replace("_", "-"),
                _shown(new),
                point.run.id,
                _shown(old),
            )
    settings = saved.replace(**changes, outdir=outdir, resume=True)
    if "api_key" in given:
        settings = settings.replace(api_key=given["api_key"])
    settings.validate()
    return settings


#: Options that set how to run rather than what to make: given again, they
#: apply without a warning.
_SILENT_OVERRIDES = frozenset({"dryrun", "retry_failed", "retry_blocked"})

#: Options that decide which jobs a run plans, and so which files it makes.
#: ``dictionary`` is checked apart, because a moved dictionary file may be given
#: again at its new path.
_JOB_OPTIONS = frozenset(
    {
        "format",
        "level",
        "pos",
        "words",
        "limit",
        "image_pos",
        "include_offensive",
        "audio",
        "images",
        "audio_format",
        "image_format",
    }
)


def _reject_job_changes(point: ResumePoint, changes: dict[str, Any]) -> None:
    """Raise ``ResumeError`` if ``changes`` would change the jobs of the run.

    A resumed run that completes marks the run it continues as done, so a
    narrower selection would leave the rest of that run impossible to resume.
    """
    rejected = [name for name in changes if name in _JOB_OPTIONS]
    saved_dictionary = point.settings.dictionary
    if (
        "dictionary" in changes
        and saved_dictionary is not None
        and saved_dictionary.exists()
    ):
        rejected.insert(0, "dictionary")
    if not rejected:
        return
    run_id = point.run.id
    new_values = ", ".join(_option_text(name, changes[name]) for name in rejected)
    saved_values = ", ".join(
        _option_text(name, getattr(point.settings, name)) for name in rejected
    )
    names = [_option_name(name) for name in rejected]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    raise ResumeError(
        f"--resume finishes run {run_id} with its saved settings, but {new_values} "
        f"would change which jobs it makes (run {run_id} was started with "
        f"{saved_values}). The rest of run {run_id} could then no longer be resumed. "
        f"To finish run {run_id}, run the same command without {listed}. To make "
        "other files, run build without --resume: it skips the files already made."
    )


def _option_name(name: str) -> str:
    if name == "dictionary":
        return "the dictionary"
    if name in ("audio", "images"):
        return f"--no-{name}"
    return "--" + name.replace("_", "-")


def _option_text(name: str, value: Any) -> str:
    """Describe ``name`` set to ``value`` as the command line gives it."""
    if name == "dictionary":
        return f"the dictionary {value}"
    if name in ("audio", "images"):
        return f"--no-{name}" if value is False else f"{name} on"
    if value is None or value is False or value == ():
        return f"no {_option_name(name)}"
    if value is True:
        return _option_name(name)
    return f"{_option_name(name)} {_shown(value)}"


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "(none)"
    return "(none)" if value is None else str(value)
