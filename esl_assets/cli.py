"""The ``esl-assets`` command: parse options, configure output, call the library."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from .errors import (
    AccountError,
    ConfigurationError,
    DictionaryError,
    EslAssetsError,
    QueueError,
    ResumeError,
)

logger = logging.getLogger("esl_assets")

EXIT_INTERRUPTED = 130
EXIT_USAGE = 2
INTERRUPTED_MESSAGE = (
    "Interrupted. Run the same command again, or add --resume, to continue."
)
#: ``error.kind`` in the ``--json`` output of a command that failed.
ERROR_KINDS: dict[type[EslAssetsError], str] = {
    ConfigurationError: "configuration",
    DictionaryError: "dictionary",
    QueueError: "queue",
    ResumeError: "resume",
    AccountError: "account",
}
T = TypeVar("T")


class UsageError(Exception):
    """Raised by ``ArgumentParser`` for an unknown option or an invalid value."""

    def __init__(self, message: str, parser: argparse.ArgumentParser) -> None:
        super().__init__(message)
        #: The parser of the command whose arguments are invalid.
        self.parser = parser


class ArgumentParser(argparse.ArgumentParser):
    """An argument parser that raises ``UsageError`` instead of exiting.

    ``main()`` then prints argparse's usage and error lines, and a JSON error when
    ``--json`` was given. Subparsers inherit the class.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self)


def _flag(parser: argparse._ActionsContainer, name: str, **kwargs: Any) -> None:
    """Add ``--dashed-name`` and the replaced script's ``--underscored_name``."""
    dashed = "--" + name.replace("_", "-")
    spellings = [dashed] if "_" not in name else [dashed, "--" + name]
    kwargs.setdefault("dest", name)
    parser.add_argument(*spellings, **kwargs)


def add_build_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``build``, ``plan`` and ``enqueue``."""
    parser.add_argument(
        "dictionary", nargs="?", type=Path, help="dictionary file or folder"
    )
    selection = parser.add_argument_group("selection")
    _flag(
        selection,
        "format",
        choices=("sqlite", "csv", "tsv", "json", "jsonl", "mw", "wordlist"),
        help="read the dictionary as this format instead of detecting it",
    )
    _flag(selection, "level", help="only these levels, comma-separated (A1,A2)")
    _flag(
        selection, "pos", help="only these parts of speech, comma-separated (noun,verb)"
    )
    _flag(
        selection,
        "words",
        action="append",
        help="only these headwords: cat,dog or @file",
    )
    _flag(selection, "limit", type=int, help="at most this many headwords")
    _flag(selection, "image_pos", help="parts of speech that get images (default: all)")
    _flag(
        selection,
        "include_offensive",
        action="store_true",
        default=None,
        help="also draw images for entries flagged offensive",
    )
    _flag(
        selection,
        "no_audio",
        action="store_false",
        dest="audio",
        default=None,
        help="make no audio",
    )
    parser.set_defaults(audio=None)
    _flag(
        selection,
        "no_images",
        action="store_false",
        dest="images",
        default=None,
        help="make no images",
    )
    parser.set_defaults(images=None)

    audio = parser.add_argument_group("audio")
    _flag(audio, "audio_model", help="speech model (default gpt-4o-mini-tts)")
    _flag(
        audio,
        "audio_voice",
        help="voice name (alloy ... marin, cedar) or a custom voice id",
    )
    _flag(audio, "audio_format", help="mp3, opus, aac (default), flac, wav or pcm")
    _flag(
        audio, "audio_instructions", help="how to speak; not sent to tts-1 and tts-1-hd"
    )
    _flag(audio, "audio_speed", type=float, help="speed from 0.25 to 4.0")

    image = parser.add_argument_group("images")
    _flag(image, "image_model", help="image model (default gpt-image-1-mini)")
    _flag(
        image, "image_size", help="square, vertical (default), horizontal, auto or WxH"
    )
    _flag(
        image, "image_quality", help="low, medium, high or auto (not sent by default)"
    )
    _flag(image, "image_format", help="png (default), jpeg or webp")
    _flag(
        image,
        "image_prompt",
        help="prompt template with {word} {pos} {definition} {level} {aspect}",
    )

    run = parser.add_argument_group("running")
    _flag(run, "outdir", type=Path, help="output folder (default assets_hires)")
    _flag(run, "concurrency", type=int, help="requests in flight at most (default 5)")
    _flag(run, "audio_concurrency", type=int, help="audio requests in flight at most")
    _flag(run, "image_concurrency", type=int, help="image requests in flight at most")
    _flag(run, "audio_rpm", type=float, help="audio requests per minute at most")
    _flag(run, "image_rpm", type=float, help="image requests per minute at most")
    _flag(
        run,
        "provider",
        choices=("openai", "local"),
        help="openai (default) or local: offline eSpeak NG audio and drawn cards",
    )
    _flag(run, "base_url", help="URL of an OpenAI-compatible API (or OPENAI_BASE_URL)")
    _flag(run, "max_attempts", type=int, help="requests per job at most (default 4)")
    _flag(
        run,
        "max_retry_wait",
        dest="max_retry_wait_s",
        type=float,
        help="maximum wait before a retry, in seconds (default 60)",
    )
    _flag(
        run,
        "audio_timeout",
        dest="audio_timeout_s",
        type=float,
        help="seconds per speech request (default 60)",
    )
    _flag(
        run,
        "image_timeout",
        dest="image_timeout_s",
        type=float,
        help="seconds per image request (default 240)",
    )
    parser.add_argument(
        "--dryrun",
        "--dry-run",
        dest="dryrun",
        action="store_true",
        default=None,
        help="plan and count, send nothing, need no key",
    )
    _flag(
        run,
        "grace",
        dest="grace_s",
        type=float,
        help="seconds in-flight jobs get after Ctrl-C or SIGTERM (default 10)",
    )

    state = parser.add_argument_group("resume")
    _flag(
        state,
        "resume",
        action="store_true",
        default=None,
        help="continue the last unfinished run in --outdir with its saved settings",
    )
    _flag(
        state,
        "retry_failed",
        action="store_true",
        default=None,
        help="retry the jobs that failed in the last run",
    )
    _flag(
        state,
        "retry_blocked",
        action="store_true",
        default=None,
        help="like --retry-failed, and also retry content-policy refusals",
    )
    _flag(
        state,
        "refresh_changed",
        action="store_true",
        default=None,
        help="regenerate files whose text or settings changed since they were made",
    )

    queue = parser.add_argument_group("redis queue")
    add_queue_options(queue)
    # A new option, so it has no underscore spelling from the replaced script.
    queue.add_argument(
        "--exit-when-empty",
        dest="exit_when_empty",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stop when nothing is pending or in flight (default for build)",
    )


def add_queue_options(group: argparse._ActionsContainer) -> None:
    _flag(
        group,
        "redis_url",
        help="Redis URL of a shared job queue (or ESL_ASSETS_REDIS_URL)",
    )
    _flag(
        group,
        "queue",
        help="queue name, to keep dictionaries apart (default esl-assets)",
    )


def add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v",
        "--verbosity",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="0 errors only, 1 progress (default), 2 a line per job",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the summary and per-job results, or the error, as JSON on stdout",
    )


#: Modules that add subcommands. Each has ``add_parsers(subparsers)`` and sets
#: ``handler`` (a function of the parsed arguments returning an exit code) on
#: each parser it adds. They are imported only when the command line is parsed.
COMMAND_MODULES = (
    "esl_assets.commands",
    "esl_assets.state_commands",
    "esl_assets.queue_commands",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = ArgumentParser(
        prog="esl-assets",
        description="Turn an ESL dictionary into spoken audio and illustrations.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        module.add_parsers(commands)
    return parser


_NOT_SETTINGS = {"command", "verbosity", "json", "handler"}


def settings_options(args: argparse.Namespace) -> dict[str, Any]:
    """Return the parsed options that are settings, leaving out unset ones."""
    return {
        key: value
        for key, value in vars(args).items()
        if key not in _NOT_SETTINGS and value is not None
    }


def configure_logging(verbosity: int, console: Any = None) -> None:
    level = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO}[verbosity]
    root = logging.getLogger()
    for old_handler in list(root.handlers):
        root.removeHandler(old_handler)
    if console is not None:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=console, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("esl_assets").setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    from .settings import load_environment

    arguments = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(arguments)
    except UsageError as error:
        error.parser.print_usage(sys.stderr)
        print(f"{error.parser.prog}: error: {error}", file=sys.stderr)
        if json_requested(arguments):
            print_json(error_json("usage", str(error)))
        return EXIT_USAGE
    as_json = bool(getattr(args, "json", False))
    load_environment()
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        if as_json:
            print_json(
                error_json(
                    "interrupted",
                    INTERRUPTED_MESSAGE,
                    EXIT_INTERRUPTED,
                    outcome="interrupted",
                )
            )
        return EXIT_INTERRUPTED
    except EslAssetsError as error:
        print(f"Error: {error}", file=sys.stderr)
        if as_json:
            kind = ERROR_KINDS.get(type(error), "error")
            print_json(error_json(kind, str(error), error.exit_code))
        return error.exit_code


def json_requested(arguments: Sequence[str]) -> bool:
    """Return whether ``--json`` is among ``arguments`` (before any ``--``)."""
    for argument in arguments:
        if argument == "--":
            return False
        if argument == "--json":
            return True
    return False


def error_json(
    kind: str, message: str, exit_code: int = EXIT_USAGE, *, outcome: str = "error"
) -> dict[str, Any]:
    """Return the ``--json`` output of a command that ended with an error.

    It has the ``outcome`` and ``exit_code`` keys of a build's JSON summary,
    and ``error`` with the error's ``kind`` and the message printed on stderr.
    """
    return {
        "outcome": outcome,
        "exit_code": exit_code,
        "error": {"kind": kind, "message": message},
    }


def print_json(data: dict[str, Any]) -> None:
    # One write: json.dump() straight into stdout makes dozens of small
    # writes per job result, which dominated builds of 300,000 skipped jobs.
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)
