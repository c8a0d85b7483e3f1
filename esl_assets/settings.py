"""Settings of one build, shared by the CLI, the library API and queue workers.

Precedence: explicit arguments (CLI flags or keyword arguments) beat
environment variables, which beat a ``.env`` file in the working directory.
``load_environment()`` reads ``.env`` without overriding variables that are
already set, and ``Settings.from_options()`` applies the arguments on top.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .errors import ConfigurationError
from .models import AUDIO_FORMATS, IMAGE_FORMATS, MAX_SPEECH_CHARS, SPEECH_VOICES

DEFAULT_AUDIO_INSTRUCTIONS = (
    "Speak clearly in a neutral accent at a moderate, even pace, as a teacher"
    " reading to English learners. Pronounce every word fully."
)
DEFAULT_IMAGE_PROMPT = (
    "A clear, friendly illustration for an English learners' picture dictionary"
    ' that shows the meaning of the {pos} "{word}": {definition}. One simple'
    " scene, plain background, bright natural colours, {aspect} composition,"
    " suitable for children. No text, letters, numbers or labels anywhere in"
    " the image."
)

#: Environment variables that the tool reads, with the setting each one sets.
ENVIRONMENT_SETTINGS = {
    "ESL_ASSETS_OUTDIR": "outdir",
    "ESL_ASSETS_CONCURRENCY": "concurrency",
    "ESL_ASSETS_PROVIDER": "provider",
    "ESL_ASSETS_AUDIO_MODEL": "audio_model",
    "ESL_ASSETS_AUDIO_VOICE": "audio_voice",
    "ESL_ASSETS_IMAGE_MODEL": "image_model",
    "ESL_ASSETS_REDIS_URL": "redis_url",
    "ESL_ASSETS_QUEUE": "queue",
    "OPENAI_BASE_URL": "base_url",
}


@dataclass(frozen=True)
class Settings:
    """Every option of a build. Field names match the CLI's long options."""

    dictionary: Path | None = None
    format: str | None = None
    outdir: Path = Path("assets_hires")
    concurrency: int = 5
    audio: bool = True
    images: bool = True
    provider: str = "openai"
    base_url: str | None = None
    audio_model: str = "gpt-4o-mini-tts"
    audio_voice: str = "alloy"
    audio_format: str = "aac"
    audio_instructions: str | None = DEFAULT_AUDIO_INSTRUCTIONS
    audio_speed: float | None = None
    image_model: str = "gpt-image-1-mini"
    image_size: str = "vertical"
    image_quality: str | None = None
    image_format: str = "png"
    image_prompt: str = DEFAULT_IMAGE_PROMPT
    # Selection of rows.
    level: tuple[str, ...] = ()
    pos: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    limit: int | None = None
    image_pos: tuple[str, ...] = ()
    include_offensive: bool = False
    # Running.
    dryrun: bool = False
    max_attempts: int = 4
    max_retry_wait_s: float = 60.0
    audio_timeout_s: float = 60.0
    image_timeout_s: float = 240.0
    connect_timeout_s: float = 10.0
    audio_concurrency: int | None = None
    image_concurrency: int | None = None
    audio_rpm: float | None = None
    image_rpm: float | None = None
    grace_s: float = 10.0
    # Resume and the journal.
    resume: bool = False
    retry_failed: bool = False
    retry_blocked: bool = False
    refresh_changed: bool = False
    # Redis queue.
    redis_url: str | None = None
    queue: str = "esl-assets"
    exit_when_empty: bool = True
    api_key: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_options(cls, **options: Any) -> Settings:
        """Build settings from keyword arguments over the environment.

        Unknown names raise ``ConfigurationError`` so a typo never passes
        silently. ``None`` means "not given" and leaves the default.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigurationError(
                f"Unknown setting(s): {', '.join(unknown)}. "
                f"Known settings: {', '.join(sorted(known))}."
            )
        values: dict[str, Any] = _environment_values()
        option_values = {k: v for k, v in options.items() if v is not None}
        from_environment = set(values) - set(option_values)
        values.update(option_values)
        try:
            settings = cls(**_coerce(values))
            settings.validate()
        except ConfigurationError as error:
            hint = _variable_behind(str(error), from_environment)
            if hint is None:
                raise
            raise ConfigurationError(f"{error} {hint}") from None
        return settings

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """Raise ``ConfigurationError`` for values no request could use."""
        _check_positive("--concurrency", self.concurrency)
        _check_positive("--max-attempts", self.max_attempts)
        for name in ("audio_concurrency", "image_concurrency"):
            value = getattr(self, name)
            if value is not None:
                _check_positive("--" + name.replace("_", "-"), value)
        _check_choice("--audio-format", self.audio_format, AUDIO_FORMATS)
        _check_choice("--image-format", self.image_format, IMAGE_FORMATS)
        _check_choice("--provider", self.provider, ("openai", "local"))
        if self.audio_speed is not None and not 0.25 <= self.audio_speed <= 4.0:
            raise ConfigurationError(
                f"--audio-speed {self.audio_speed} is out of range; use 0.25 to 4.0."
            )
        if self.audio_instructions and len(self.audio_instructions) > MAX_SPEECH_CHARS:
            raise ConfigurationError(
                "--audio-instructions is longer than 4096 characters; shorten it."
            )
        for name in ("audio_timeout_s", "image_timeout_s", "connect_timeout_s"):
            if getattr(self, name) <= 0:
                option = "--" + name.removesuffix("_s").replace("_", "-")
                raise ConfigurationError(
                    f"{option} {getattr(self, name)} must be above 0 seconds."
                )
        for name in ("grace_s", "max_retry_wait_s"):
            if getattr(self, name) < 0:
                option = "--" + name.removesuffix("_s").replace("_", "-")
                raise ConfigurationError(
                    f"{option} {getattr(self, name)} must be 0 seconds or more."
                )
        _check_voice(self)
        for name in ("audio_rpm", "image_rpm"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigurationError(
                    f"--{name.replace('_', '-')} {value} must be above 0."
                )
        _check_prompt_template(self.image_prompt)
        if not self.audio and not self.images:
            raise ConfigurationError(
                "--no-audio and --no-images together leave nothing to build;"
                " drop one of them."
            )

    @property
    def retries_rejected_jobs(self) -> bool:
        """Whether jobs the API rejected in an earlier run are sent again.

        ``--retry-blocked`` implies ``--retry-failed``, because it retries
        content-policy refusals in addition to the other refusals.
        """
        return self.retry_failed or self.retry_blocked

    @property
    def lane_concurrency(self) -> dict[str, int]:
        """In-flight request caps per lane, each at most the overall cap."""
        audio = min(self.audio_concurrency or self.concurrency, self.concurrency)
        images = min(self.image_concurrency or self.concurrency, self.concurrency)
        return {"audio": audio, "images": images}

    def public_dict(self) -> dict[str, Any]:
        """Return the settings as JSON-ready values, without secrets.

        The API key is left out, and so are the user name, password and
        secret-looking query parameters of the URL settings.
        """
        values = dataclasses.asdict(self)
        values.pop("api_key", None)
        values["base_url"] = without_credentials(self.base_url)
        values["redis_url"] = without_credentials(self.redis_url)
        for key, value in values.items():
            if isinstance(value, Path):
                values[key] = str(value)
            elif isinstance(value, tuple):
                values[key] = list(value)
        return values

    @classmethod
    def from_public_dict(cls, values: dict[str, Any]) -> Settings:
        """Rebuild settings saved by ``public_dict`` (the journal, a queue job)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**_coerce({k: v for k, v in values.items() if k in known}))


_SECRET_QUERY_NAMES = ("key", "token", "secret", "password", "sig", "auth")


def without_credentials(url: str | None) -> str | None:
    """Return ``url`` without a user name, password or secret-looking query.

    Query parameters whose names contain key, token, secret, password, sig or
    auth are dropped, others (such as ``api-version``) are kept.
    """
    if url is None:
        return None
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if not any(word in name.lower() for word in _SECRET_QUERY_NAMES)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), ""))


#: Variables that ``load_environment`` copied from a .env file, with the
#: file and the value copied, so messages can name where a value came from.
_DOTENV_VALUES: dict[str, tuple[Path, str]] = {}


def load_environment(dotenv_path: Path | None = None) -> None:
    """Load ``.env`` into ``os.environ`` without overriding set variables."""
    from dotenv import load_dotenv

    path = dotenv_path or Path.cwd() / ".env"
    already_set = set(os.environ)
    load_dotenv(path, override=False)
    for name in set(os.environ) - already_set:
        _DOTENV_VALUES[name] = (path, os.environ[name])


def environment_source(name: str) -> str:
    """Name where environment variable ``name`` got its value, for messages.

    The result names the .env file when ``load_environment`` copied the
    current value from one, and the environment otherwise. It never contains
    the value.
    """
    loaded = _DOTENV_VALUES.get(name)
    if loaded is not None and os.environ.get(name) == loaded[1]:
        return f"{name} in {loaded[0]}"
    return f"{name} in the environment"


def _variable_behind(message: str, names: set[str]) -> str | None:
    """Name the variable behind a rejected setting that no option gave.

    Messages name a setting by its field (``concurrency``) or its option
    (``--concurrency``, ``--grace`` for ``grace_s``), so both are looked for.
    """
    for variable, name in ENVIRONMENT_SETTINGS.items():
        if name not in names:
            continue
        option = "--" + name.removesuffix("_s").replace("_", "-")
        if re.search(rf"(?<![\w-]){re.escape(option)}\b|\b{name}\b", message):
            return (
                f"The value comes from {variable} in the environment or a .env "
                "file; correct it there."
            )
    return None


def _environment_values() -> dict[str, Any]:
    values: dict[str, Any] = {}
    for variable, name in ENVIRONMENT_SETTINGS.items():
        raw = os.environ.get(variable)
        if raw:
            values[name] = raw
    return values


_TUPLE_FIELDS = ("level", "pos", "words", "image_pos")
_INT_FIELDS = (
    "concurrency",
    "max_attempts",
    "limit",
    "audio_concurrency",
    "image_concurrency",
)
_FLOAT_FIELDS = (
    "audio_speed",
    "max_retry_wait_s",
    "audio_timeout_s",
    "image_timeout_s",
    "connect_timeout_s",
    "audio_rpm",
    "image_rpm",
    "grace_s",
)


def _coerce(values: dict[str, Any]) -> dict[str, Any]:
    """Convert strings from the environment or JSON into field types."""
    result = dict(values)
    for key in ("dictionary", "outdir"):
        if result.get(key) is not None:
            result[key] = Path(result[key])
    for key in _TUPLE_FIELDS:
        value = result.get(key)
        if isinstance(value, str):
            result[key] = tuple(p.strip() for p in value.split(",") if p.strip())
        elif value is not None:
            result[key] = tuple(value)
    for key, kind in [(k, int) for k in _INT_FIELDS] + [
        (k, float) for k in _FLOAT_FIELDS
    ]:
        value = result.get(key)
        if value is None or isinstance(value, kind):
            continue
        try:
            result[key] = kind(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"Setting {key} must be a number, got {value!r}."
            ) from None
    return result


def _check_voice(settings: Settings) -> None:
    """Reject a voice OpenAI does not have, before it costs a request.

    Other OpenAI-compatible servers (``--base-url``) and the offline provider
    may have voices of their own, so any name passes there.
    """
    voice = settings.audio_voice
    if not settings.audio or settings.base_url or settings.provider != "openai":
        return
    if voice in SPEECH_VOICES or voice.startswith("voice_"):
        return
    raise ConfigurationError(
        f"--audio-voice {voice!r} is not an OpenAI voice; use one of "
        f"{', '.join(SPEECH_VOICES)} or a custom voice id (voice_...)."
    )


def _check_positive(option: str, value: int) -> None:
    if value < 1:
        raise ConfigurationError(f"{option} {value} must be 1 or more.")


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigurationError(
            f"{option} {value!r} is invalid; choose one of {', '.join(choices)}."
        )


_PROMPT_FIELDS = {"word": "", "pos": "", "definition": "", "level": "", "aspect": ""}


def _check_prompt_template(template: str) -> None:
    try:
        template.format(**_PROMPT_FIELDS)
    except (KeyError, IndexError, ValueError) as error:
        raise ConfigurationError(
            f"--image-prompt has an invalid placeholder ({error}); use only "
            "{word}, {pos}, {definition}, {level} and {aspect}, and write a "
            "literal brace as {{ or }}."
        ) from None
