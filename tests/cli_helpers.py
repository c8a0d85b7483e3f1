"""Run the ``esl-assets`` CLI as a subprocess, isolated from the caller's settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SAMPLE_CSV = Path(__file__).parent / "data" / "sample.csv"


def cli_environment(key: str | None = "sk-test") -> dict[str, str]:
    """Return this process's environment without OPENAI_* and ESL_ASSETS_*.

    ``key`` becomes OPENAI_API_KEY; None leaves the key unset.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OPENAI_", "ESL_ASSETS_"))
    }
    if key is not None:
        env["OPENAI_API_KEY"] = key
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "esl_assets", *args]


def run_cli(
    *args: str,
    key: str | None = "sk-test",
    cwd: Path | None = None,
    timeout_s: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run ``esl-assets ARGS`` to the end and capture its output as text."""
    return subprocess.run(
        cli_command(*args),
        capture_output=True,
        text=True,
        env=cli_environment(key),
        cwd=cwd,
        timeout=timeout_s,
    )


def write_sample_slice(folder: Path, rows: int) -> Path:
    """Write the header and the first ``rows`` rows of sample.csv to a file."""
    lines = SAMPLE_CSV.read_text(encoding="utf-8").splitlines(keepends=True)
    path = folder / "slice.csv"
    path.write_text("".join(lines[: rows + 1]), encoding="utf-8")
    return path
