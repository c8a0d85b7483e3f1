"""Turn dictionary rows into jobs, one per asset, each file planned once.

The planner is a generator over a row stream, so memory keeps one row at a
time plus a set of the file names planned so far (about 100 bytes each), and
the rows whose definition is empty, which wait for the end of the stream.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .jobs import AssetKind, Job, compute_fingerprint, params_key
from .models import SPEECH_VOICES, check_model, image_aspect, resolve_image_size
from .rows import RejectedRow, Row
from .settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RequestTemplate:
    """Request parameters shared by every job of one kind in a build."""

    speech: dict[str, object]
    image: dict[str, object]
    image_size: str


def build_request_template(settings: Settings) -> RequestTemplate:
    """Check the models and sizes once and fix the per-kind parameters.

    Raises ``ConfigurationError`` for a retired model or an impossible size,
    before anything is read or sent.
    """
    speech: dict[str, object] = {}
    image: dict[str, object] = {}
    size = ""
    if settings.audio:
        speech = _speech_params(settings)
    if settings.images:
        info = check_model(
            settings.image_model, "image", warn=settings.provider != "local"
        )
        size = resolve_image_size(settings.image_size, info)
        image = {
            "model": info.name,
            "size": size,
            "output_format": settings.image_format,
        }
        if settings.image_quality:
            _check_quality(settings.image_quality, info.qualities, info.name)
            image["quality"] = settings.image_quality
    return RequestTemplate(speech=speech, image=image, image_size=size)


def _speech_params(settings: Settings) -> dict[str, object]:
    info = check_model(
        settings.audio_model, "speech", warn=settings.provider != "local"
    )
    voice: object = settings.audio_voice
    if settings.audio_voice not in SPEECH_VOICES and settings.audio_voice.startswith(
        "voice_"
    ):
        voice = {"id": settings.audio_voice}
    params: dict[str, object] = {
        "model": info.name,
        "voice": voice,
        "response_format": settings.audio_format,
    }
    if settings.audio_instructions and info.accepts_instructions:
        params["instructions"] = settings.audio_instructions
    if settings.audio_speed is not None:
        params["speed"] = settings.audio_speed
    return params


def _check_quality(quality: str, allowed: tuple[str, ...], model: str) -> None:
    from .errors import ConfigurationError

    if quality not in allowed:
        raise ConfigurationError(
            f"--image-quality {quality!r} is invalid for {model}; "
            f"choose one of {', '.join(allowed)}."
        )


@dataclass
class Planner:
    """Plan jobs of the given kinds from rows. One planner per pass."""

    settings: Settings
    template: RequestTemplate
    kinds: frozenset[AssetKind]
    #: Rows or assets left out on purpose, by reason (``offensive``, ...).
    excluded: Counter[str] = field(default_factory=Counter)
    _planned_files: set[str] = field(default_factory=set)
    _params_keys: dict[int, str] = field(default_factory=dict)

    def _params_key(self, params: dict[str, object]) -> str:
        # The template's two dicts live as long as the planner, so their ids
        # are stable keys.
        key = self._params_keys.get(id(params))
        if key is None:
            key = params_key(params, self.settings.provider)
            self._params_keys[id(params)] = key
        return key

    def plan(self, rows: Iterable[Row | RejectedRow]) -> Iterator[Job | RejectedRow]:
        """Yield jobs in row order, and rejected rows as they come.

        A row whose definition is empty yields its word job in order, and its
        definition's jobs after the last row. A later row with the same uuid
        and definition id and a definition takes its place, and the empty row
        comes back as a ``duplicate`` rejection that names both rows.
        """
        empty_rows: dict[tuple[str, str], Row] = {}
        for row in rows:
            if isinstance(row, RejectedRow):
                yield row
                continue
            if row.definition_id is not None and not row.definition:
                empty_rows[(row.uuid, row.definition_id)] = row
                yield from self._plan_word(row)
                continue
            if empty_rows and row.definition_id is not None:
                replaced = empty_rows.pop((row.uuid, row.definition_id), None)
                if replaced is not None:
                    yield _replaced_row(replaced, row)
            yield from self._plan_row(row)
        for row in empty_rows.values():
            yield from self._plan_definition(row)

    def _plan_word(self, row: Row) -> Iterator[Job]:
        if AssetKind.WORD in self.kinds:
            job = self._word_job(row)
            if job is not None:
                yield job

    def _plan_row(self, row: Row) -> Iterator[Job]:
        yield from self._plan_word(row)
        yield from self._plan_definition(row)

    def _plan_definition(self, row: Row) -> Iterator[Job]:
        if row.definition_id is None or row.definition is None:
            return
        if AssetKind.SHORTDEF in self.kinds:
            job = self._shortdef_job(row)
            if job is not None:
                yield job
        if AssetKind.IMAGE in self.kinds and self._wants_image(row):
            job = self._image_job(row)
            if job is not None:
                yield job

    def _wants_image(self, row: Row) -> bool:
        if row.is_offensive and not self.settings.include_offensive:
            self.excluded["image_offensive"] += 1
            return False
        allowed = self.settings.image_pos
        if allowed and (row.pos or "").lower() not in {p.lower() for p in allowed}:
            self.excluded["image_pos"] += 1
            return False
        return True

    def _word_job(self, row: Row) -> Job | None:
        extension = self.settings.audio_format
        return self._job(
            AssetKind.WORD, row, "0", row.word, self.template.speech, extension
        )

    def _shortdef_job(self, row: Row) -> Job | None:
        assert row.definition_id is not None and row.definition is not None
        return self._job(
            AssetKind.SHORTDEF,
            row,
            row.definition_id,
            row.definition,
            self.template.speech,
            self.settings.audio_format,
        )

    def _image_job(self, row: Row) -> Job | None:
        assert row.definition_id is not None and row.definition is not None
        prompt = ""
        if row.definition.strip():
            prompt = self.settings.image_prompt.format(
                word=row.word,
                pos=row.pos or "word",
                definition=row.definition,
                level=row.level or "",
                aspect=image_aspect(self.template.image_size),
            )
        return self._job(
            AssetKind.IMAGE,
            row,
            row.definition_id,
            prompt,
            self.template.image,
            self.settings.image_format,
        )

    def _job(
        self,
        kind: AssetKind,
        row: Row,
        definition_id: str,
        text: str,
        params: dict[str, object],
        extension: str,
    ) -> Job | None:
        file = f"{kind.value}_{row.uuid}_{definition_id}.{extension}"
        if file in self._planned_files:
            return None
        self._planned_files.add(file)
        return Job(
            kind=kind,
            uuid=row.uuid,
            definition_id=definition_id,
            file=file,
            text=text,
            params=params,
            word=row.word,
            pos=row.pos,
            level=row.level,
            definition=row.definition,
            fingerprint=compute_fingerprint(kind, text, self._params_key(params)),
        )


def _replaced_row(empty: Row, replacement: Row) -> RejectedRow:
    """Return the rejection of ``empty``, whose ids ``replacement`` repeats."""
    from .inputs.common import RejectReason

    return RejectedRow(
        origin=empty.origin,
        reason=RejectReason.DUPLICATE,
        message=(
            f"{empty.origin}: uuid {empty.uuid!r} definition id "
            f"{empty.definition_id!r} has an empty definition, and "
            f"{replacement.origin} has a definition for the same uuid and "
            "definition id, which is kept."
        ),
        uuid=empty.uuid,
        definition_id=empty.definition_id,
    )
