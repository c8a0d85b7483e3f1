"""The file system's share of a job: write a run's files again, and nothing else.

Reads every asset file of a finished run into memory. Then writes each one
under a new name in a fresh folder on the same file system, through a
temporary file and a rename, and prints the CPU time of the writing phase
per file as JSON. It does this once with ``fsync`` before each rename (as
esl-assets does) and once without. Run from the repository root::

    python -m benchmarks.file_floor RUN_OUTDIR SCRATCH_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
from pathlib import Path

from .harness import iter_asset_files


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_all(contents: list[bytes], folder: Path, *, fsync: bool) -> float:
    """Write each content to a new file in ``folder`` and return CPU ms per file."""
    folder.mkdir(parents=True)
    started = cpu_s()
    for number, data in enumerate(contents):
        # The system calls of esl_assets.storage._write_file.
        temp = str(folder / f".{number}.part")
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            os.write(descriptor, data)
            if fsync:
                os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temp, folder / f"file-{number}")
    spent = cpu_s() - started
    shutil.rmtree(folder)
    return spent / max(1, len(contents)) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="outdir of a finished run")
    parser.add_argument("scratch", type=Path, help="empty folder on the same disk")
    args = parser.parse_args(argv)
    entries = iter_asset_files(args.source)
    contents = [Path(entry.path).read_bytes() for entry in entries]
    with_fsync = write_all(contents, args.scratch / "fsync", fsync=True)
    without_fsync = write_all(contents, args.scratch / "no-fsync", fsync=False)
    result = {
        "files": len(contents),
        "mean_bytes": sum(map(len, contents)) / max(1, len(contents)),
        "cpu_ms_per_file_fsync": with_fsync,
        "cpu_ms_per_file_no_fsync": without_fsync,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
