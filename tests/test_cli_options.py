"""CLI options, the replaced script's spellings, and settings precedence."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cli_helpers import run_cli as run_cli_with_key

from esl_assets import commands
from esl_assets.cli import build_parser, main, settings_options
from esl_assets.errors import ConfigurationError
from esl_assets.settings import Settings, environment_source, load_environment

DATA = Path(__file__).parent / "data"


def parse(*argv: str) -> dict[str, object]:
    return settings_options(build_parser().parse_args(["build", "dict.csv", *argv]))


def test_underscore_spellings_match_dashes() -> None:
    old = parse(
        "--no_audio",
        "--audio_model",
        "tts-1",
        "--audio_voice",
        "nova",
        "--image_model",
        "gpt-image-2",
        "--image_size",
        "square",
        "--outdir",
        "x",
    )
    new = parse(
        "--no-audio",
        "--audio-model",
        "tts-1",
        "--audio-voice",
        "nova",
        "--image-model",
        "gpt-image-2",
        "--image-size",
        "square",
        "--outdir",
        "x",
    )
    assert old == new
    assert old["audio"] is False
    assert old["image_size"] == "square"


def test_dryrun_spellings() -> None:
    assert parse("--dryrun")["dryrun"] is True
    assert parse("--dry-run")["dryrun"] is True
    assert "dryrun" not in parse()


def test_unset_flags_leave_defaults() -> None:
    settings = Settings.from_options(**parse())
    assert settings.outdir == Path("assets_hires")
    assert settings.concurrency == 5
    assert settings.audio_format == "aac"
    assert settings.image_size == "vertical"
    assert settings.audio_voice == "alloy"


def test_flags_beat_environment_beat_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ESL_ASSETS_CONCURRENCY", raising=False)
    monkeypatch.delenv("ESL_ASSETS_AUDIO_VOICE", raising=False)
    monkeypatch.delenv("ESL_ASSETS_OUTDIR", raising=False)
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "ESL_ASSETS_CONCURRENCY=7\nESL_ASSETS_AUDIO_VOICE=sage\nESL_ASSETS_OUTDIR=from-dotenv\n"
    )
    monkeypatch.setenv("ESL_ASSETS_AUDIO_VOICE", "coral")
    load_environment(dotenv)
    settings = Settings.from_options(outdir=Path("from-flag"))
    assert settings.concurrency == 7
    assert settings.audio_voice == "coral"
    assert settings.outdir == Path("from-flag")
    # load_environment put these into os.environ; monkeypatch does not know.
    os.environ.pop("ESL_ASSETS_CONCURRENCY", None)
    os.environ.pop("ESL_ASSETS_OUTDIR", None)


def test_environment_source_names_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ESL_ASSETS_QUEUE", raising=False)
    dotenv = tmp_path / ".env"
    dotenv.write_text("ESL_ASSETS_QUEUE=from-dotenv\n")
    try:
        load_environment(dotenv)
        assert environment_source("ESL_ASSETS_QUEUE") == f"ESL_ASSETS_QUEUE in {dotenv}"
        # A value set later in the process replaces the one from .env.
        os.environ["ESL_ASSETS_QUEUE"] = "set-later"
        assert environment_source("ESL_ASSETS_QUEUE") == (
            "ESL_ASSETS_QUEUE in the environment"
        )
    finally:
        os.environ.pop("ESL_ASSETS_QUEUE", None)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"concurrency": 0}, "--concurrency 0"),
        ({"audio_format": "ogg"}, "--audio-format 'ogg'"),
        ({"audio_speed": 5.0}, "--audio-speed 5.0"),
        ({"image_prompt": "{word} {colour}"}, "{word}, {pos}"),
        ({"audio": False, "images": False}, "nothing to build"),
        ({"concurrncy": 3}, "concurrncy"),
    ],
)
def test_invalid_settings_name_the_value(
    options: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_options(**options)
    assert fragment in str(caught.value)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli_with_key(*args, key=None, cwd=cwd)


def test_bad_rows_never_escape_outdir(tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    result = run_cli(
        "build",
        str(DATA / "bad-rows.csv"),
        "--provider",
        "local",
        "--outdir",
        str(outdir),
        "--json",
        cwd=tmp_path,
    )
    report = json.loads(result.stdout)
    assert result.returncode in (0, 1), result.stderr
    # Everything the run wrote is directly inside outdir, and nothing else.
    written = sorted(
        p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()
    )
    assert all(p.parts[0] == "out" for p in written)
    assert not (tmp_path / "escape").exists()
    rejected = {r["origin"].split()[-1]: r["reason"] for r in report["rejected"]}
    assert "unsafe_id" in rejected.values()
    reasons = {r["reason"] for r in report["errors"]}
    assert reasons <= {"too_long"}
    skipped_empty = [r for r in report["results"] if r.get("reason") == "empty_text"]
    assert skipped_empty


@pytest.mark.parametrize("command", [("build", "--dryrun"), ("plan",)])
def test_dry_run_creates_no_outdir(tmp_path: Path, command: tuple[str, ...]) -> None:
    outdir = tmp_path / "new" / "out"
    # bad-rows.csv has a text over the speech limit, which a dry run reports.
    result = run_cli(
        *command, str(DATA / "bad-rows.csv"), "--outdir", str(outdir), cwd=tmp_path
    )
    assert "Traceback" not in result.stderr
    assert "Characters to speak" in result.stdout
    assert not (tmp_path / "new").exists()


def test_dry_run_writes_nothing_in_outdir(tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    outdir.mkdir()
    result = run_cli(
        "plan", str(DATA / "bad-rows.csv"), "--outdir", str(outdir), cwd=tmp_path
    )
    assert "Traceback" not in result.stderr
    assert list(outdir.iterdir()) == []


def test_plan_warns_about_too_long_text(tmp_path: Path) -> None:
    dictionary = tmp_path / "long.csv"
    dictionary.write_text(
        f"uuid,word,id,definition\nu1,cat,1,a small animal\nu2,dog,1,{'x' * 4097}\n",
        "utf-8",
    )
    result = run_cli(
        "plan", str(dictionary), "--no-images", "--outdir", str(tmp_path / "o"),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ERROR" not in result.stderr
    warning = next(
        line for line in result.stderr.splitlines() if "shortdef:u2:1" in line
    )
    assert warning.startswith("WARNING")
    assert "'dog'" in warning
    assert "at most 4096" in warning
    # Only the texts that a build would send: "cat", "a small animal", "dog".
    assert "Characters to speak: 20" in result.stdout


def test_json_output_has_status_dicts(tmp_path: Path) -> None:
    result = run_cli(
        "build",
        str(DATA / "sample.csv"),
        "--provider",
        "local",
        "--outdir",
        str(tmp_path / "o"),
        "--limit",
        "2",
        "--no-images",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    statuses = {r["status"] for r in report["results"]}
    assert statuses == {"success"}
    assert all(set(r) >= {"status", "file"} for r in report["results"])
    assert report["counts"]["word"]["success"] == 2
    assert report["counts"]["image"]["success"] == 0


def test_verbosity_zero_prints_nothing_on_success(tmp_path: Path) -> None:
    result = run_cli(
        "build",
        str(DATA / "sample.csv"),
        "--provider",
        "local",
        "--outdir",
        str(tmp_path / "o"),
        "--limit",
        "1",
        "--no_images",
        "--verbosity",
        "0",
        cwd=tmp_path,
    )
    assert result.returncode == 0
    assert result.stdout == ""
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("content", "args", "fragment"),
    [
        (b"id,uuid,word,definition\n1,u1,caf\xe9,a drink\n", [], "not UTF-8"),
        (b'{"uuid": "u2"', ["--format", "json"], "not valid JSON"),
        (None, ["--limit", "-1"], "--limit"),
        (None, ["--words", "@/nonexistent/words.txt"], "/nonexistent/words.txt"),
    ],
)
def test_input_errors_are_one_line(
    tmp_path: Path, content: bytes | None, args: list[str], fragment: str
) -> None:
    dictionary = DATA / "sample.csv"
    if content is not None:
        dictionary = tmp_path / "dictionary.csv"
        dictionary.write_bytes(content)
    result = run_cli(
        "build",
        str(dictionary),
        "--provider",
        "local",
        "--outdir",
        str(tmp_path / "o"),
        *args,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "ExceptionGroup" not in result.stderr
    assert fragment in result.stderr


@pytest.mark.parametrize(
    ("args", "kind", "fragment"),
    [
        (["build", "missing.csv"], "dictionary", "missing.csv does not exist"),
        (
            ["build", str(DATA / "sample.csv"), "--image_size", "huge"],
            "configuration",
            "--image-size 'huge'",
        ),
        (
            ["plan", str(DATA / "sample.csv"), "--limit", "-1"],
            "configuration",
            "--limit",
        ),
        (["build", "--resume", "--outdir", "empty"], "resume", "Nothing to resume"),
        (["build", "x.csv", "--limit", "abc"], "usage", "invalid int value: 'abc'"),
        (["build", "x.csv", "--bogus"], "usage", "unrecognized arguments: --bogus"),
    ],
)
def test_json_error_on_stdout(
    tmp_path: Path, args: list[str], kind: str, fragment: str
) -> None:
    result = run_cli(*args, "--json", cwd=tmp_path)

    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    data = json.loads(result.stdout)
    assert data["outcome"] == "error"
    assert data["exit_code"] == 2
    assert data["error"]["kind"] == kind
    assert fragment in data["error"]["message"]
    assert data["error"]["message"] in result.stderr


def test_error_without_json_keeps_stdout_empty(tmp_path: Path) -> None:
    result = run_cli("build", "missing.csv", cwd=tmp_path)

    assert result.returncode == 2
    assert result.stdout == ""
    assert "missing.csv does not exist" in result.stderr


def test_json_says_interrupted(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(commands, "run_build_command", interrupted)

    code = main(["build", "x.csv", "--json"])

    output = capsys.readouterr()
    assert code == 130
    data = json.loads(output.out)
    assert data["outcome"] == "interrupted"
    assert data["exit_code"] == 130
    assert data["error"]["kind"] == "interrupted"
    assert "--resume" in output.err


def test_library_raises_the_dictionary_error(tmp_path: Path) -> None:
    from esl_assets import DictionaryError, build

    dictionary = tmp_path / "latin1.csv"
    dictionary.write_bytes(b"id,uuid,word,definition\n1,u1,caf\xe9,a drink\n")
    with pytest.raises(DictionaryError, match="not UTF-8"):
        build(dictionary, outdir=tmp_path / "o", provider="local", progress=False)


def test_unknown_voice_rejected_for_openai() -> None:
    with pytest.raises(ConfigurationError, match="'nobody' is not an OpenAI voice"):
        Settings.from_options(audio_voice="nobody")
    assert Settings.from_options(audio_voice="voice_1234").audio_voice == "voice_1234"
    # Other servers may have voices of their own.
    custom = Settings.from_options(
        audio_voice="nobody", base_url="http://127.0.0.1:9/v1"
    )
    assert custom.audio_voice == "nobody"


def test_public_dict_drops_url_credentials() -> None:
    settings = Settings(
        base_url="http://bob:URLPASS@127.0.0.1:9/v1?token=QTOKEN&api-version=1",
        redis_url="redis://:REDISPASS@127.0.0.1:6379/0",
        api_key="sk-secret",
    )
    text = json.dumps(settings.public_dict())
    for secret in ("URLPASS", "QTOKEN", "REDISPASS", "sk-secret"):
        assert secret not in text
    assert settings.public_dict()["base_url"] == "http://127.0.0.1:9/v1?api-version=1"


def test_words_not_found_are_named(tmp_path: Path) -> None:
    result = run_cli(
        "plan",
        str(DATA / "sample.sqlite"),
        "--words",
        "be,zzzz",
        "--outdir",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 0
    assert "not found in the dictionary: zzzz" in result.stderr


def test_manifest_names_the_offline_engine(tmp_path: Path) -> None:
    outdir = tmp_path / "o"
    built = run_cli(
        "build",
        str(DATA / "sample.csv"),
        "--provider",
        "local",
        "--outdir",
        str(outdir),
        "--limit",
        "1",
        "-v",
        "0",
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    listed = run_cli(
        "manifest", "--outdir", str(outdir), "--format", "json", cwd=tmp_path
    )
    assert listed.returncode == 0, listed.stderr
    assets = json.loads(listed.stdout)["assets"]
    models = {row["kind"]: row["model"] for row in assets}
    assert models["word"] == "local:espeak-ng"
    assert models["image"] == "local:card"


@pytest.mark.parametrize("command", ["build", "plan"])
@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "object.json",
            '{"hello": "world"}',
            [
                "No usable entry in",
                "all 1 row(s) were rejected",
                "the word is missing or empty",
            ],
        ),
        (
            "header.csv",
            "uuid,word,pos,level,definition_id,definition\n",
            ["header.csv has no entries, so nothing was planned"],
        ),
    ],
)
def test_input_without_usable_row_exits_2(
    tmp_path: Path, command: str, name: str, content: str, expected: list[str]
) -> None:
    dictionary = tmp_path / name
    dictionary.write_text(content, "utf-8")
    result = run_cli(
        command, str(dictionary), "--provider", "local",
        "--outdir", str(tmp_path / "o"), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    output = " ".join((result.stdout + result.stderr).split())
    for text in expected:
        assert text in output


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--level", "Z9"], "matched --level, so nothing was planned"),
        (
            ["--no-audio", "--image-pos", "xyz"],
            "was excluded (image_pos: ",
        ),
    ],
)
def test_selection_that_matches_nothing_still_exits_0(
    tmp_path: Path, options: list[str], expected: str
) -> None:
    result = run_cli(
        "build", str(DATA / "sample.csv"), "--provider", "local",
        "--outdir", str(tmp_path / "o"), *options, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "No usable entry" not in result.stdout + result.stderr
    assert "has no entries" not in result.stdout + result.stderr
    output = " ".join(result.stderr.split())
    assert expected in output
    assert "--pos" not in output


@pytest.mark.parametrize("value", ["abc", "0", "-2"])
def test_bad_environment_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ESL_ASSETS_CONCURRENCY", value)
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_options()
    message = str(caught.value)
    assert "ESL_ASSETS_CONCURRENCY" in message
    assert "environment or a .env file" in message


def test_bad_option_does_not_blame_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ESL_ASSETS_CONCURRENCY", "4")
    monkeypatch.setenv("ESL_ASSETS_AUDIO_VOICE", "nova")
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_options(concurrency=0)
    message = str(caught.value)
    assert "--concurrency 0" in message
    assert "ESL_ASSETS_" not in message
