"""Jobs (one asset each) and their results.

A job is the persisted unit of work: one file, one API request. It carries
every parameter of that request, so a queue worker on another machine needs
nothing but the job and its own API key. Its ``fingerprint`` is a hash of
everything that shapes the asset, so an edited definition or a new voice shows
up as a changed fingerprint for the same file name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class AssetKind(StrEnum):
    """Kind of asset a job makes. The value is the file name prefix."""

    #: The headword spoken: ``word_{uuid}_0.{audio format}``.
    WORD = "word"
    #: One short definition spoken: ``shortdef_{uuid}_{id}.{audio format}``.
    SHORTDEF = "shortdef"
    #: An illustration of one definition: ``image_{uuid}_{id}.{image format}``.
    IMAGE = "image"

    @property
    def lane(self) -> str:
        return "images" if self is AssetKind.IMAGE else "audio"


class Status(StrEnum):
    """Outcome of one job, as existing consumers of the result dicts expect."""

    #: The file was generated and written in this run.
    SUCCESS = "success"
    #: No request was needed: the file is already valid on disk, or the text
    #: is empty.
    SKIPPED = "skipped"
    #: The job failed, and ``error`` gives the reason.
    ERROR = "error"
    #: ``--dryrun``: the job was planned and nothing was sent.
    DRYRUN = "dryrun"


@dataclass(frozen=True, slots=True)
class Job:
    """One asset to generate, with every parameter of its API request."""

    kind: AssetKind
    uuid: str
    definition_id: str
    #: File name relative to the output folder.
    file: str
    #: The text to speak, or the image prompt.
    text: str
    #: Request parameters other than the text (model, voice, size, ...).
    params: dict[str, Any]
    word: str = ""
    pos: str | None = None
    level: str | None = None
    definition: str | None = None
    fingerprint: str = field(default="", compare=False)

    @property
    def lane(self) -> str:
        return self.kind.lane

    @property
    def ref(self) -> str:
        """Short reference for logs: ``image:{uuid}:{id}``."""
        return f"{self.kind.value}:{self.uuid}:{self.definition_id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "uuid": self.uuid,
            "definition_id": self.definition_id,
            "file": self.file,
            "text": self.text,
            "params": self.params,
            "word": self.word,
            "pos": self.pos,
            "level": self.level,
            "definition": self.definition,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        values = dict(data)
        values["kind"] = AssetKind(values["kind"])
        return cls(**values)


def params_key(params: dict[str, Any], provider: str = "openai") -> str:
    """Return the canonical JSON of request parameters, for fingerprints.

    A provider other than ``openai`` is part of it, so files from the offline
    provider count as changed when the same folder is built with a real API.
    """
    shape: dict[str, Any] = {"params": params}
    if provider != "openai":
        shape["provider"] = provider
    return json.dumps(shape, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def compute_fingerprint(kind: AssetKind, text: str, parameters_key: str) -> str:
    """Hash everything that shapes an asset: kind, cleaned text, parameters.

    ``parameters_key`` comes from ``params_key``; the planner computes it once
    per kind instead of once per job.
    """
    payload = f"{kind.value}\n{parameters_key}\n{text}"
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


@dataclass(slots=True)
class JobResult:
    """Outcome of one job. ``to_status_dict`` returns the public shape."""

    status: Status
    file: str
    kind: AssetKind
    #: Machine-readable cause for ``skipped`` and ``error``: ``exists``,
    #: ``empty_text``, ``too_long``, ``moderation_blocked``, ``http_500``, ...
    reason: str | None = None
    error: str | None = None
    status_code: int | None = None
    error_code: str | None = None
    attempts: int = 0
    duration_s: float = 0.0
    bytes: int = 0
    usage: dict[str, Any] | None = None
    ref: str = ""

    def to_status_dict(self) -> dict[str, Any]:
        """Return ``{"status", "file"}`` plus ``error`` when there is one."""
        result: dict[str, Any] = {"status": self.status.value, "file": self.file}
        if self.error is not None:
            result["error"] = self.error
        return result

    def to_dict(self) -> dict[str, Any]:
        """Return every field as JSON-ready values."""
        result = self.to_status_dict()
        result.update(
            kind=self.kind.value,
            reason=self.reason,
            status_code=self.status_code,
            error_code=self.error_code,
            attempts=self.attempts,
            duration_s=round(self.duration_s, 4),
            bytes=self.bytes,
            ref=self.ref,
        )
        if self.usage is not None:
            result["usage"] = self.usage
        return result
