"""The two API calls: speech for audio jobs, image generation for image jobs."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import httpx2
from openai import AsyncOpenAI

from .jobs import AssetKind, Job


@dataclass(frozen=True, slots=True)
class Generated:
    """Bytes of one asset, with the response headers (rate-limit state)."""

    data: bytes
    headers: httpx2.Headers
    usage: dict[str, Any] | None = None


class BadResponseError(Exception):
    """Raised when a 200 response does not hold a usable asset."""


async def generate_asset(
    client: AsyncOpenAI,
    job: Job,
    *,
    http_timeout: httpx2.Timeout,
    card_fields: bool = False,
) -> Generated:
    """Send the job's request and return the asset's bytes.

    ``card_fields`` adds the entry's word, part of speech and definition to an
    image request for the offline provider, which draws them on a card. The
    real API would reject that member, so it is sent only to ``local``.
    """
    if job.kind is AssetKind.IMAGE:
        return await _generate_image(client, job, http_timeout, card_fields)
    return await _generate_speech(client, job, http_timeout)


async def _generate_speech(
    client: AsyncOpenAI, job: Job, http_timeout: httpx2.Timeout
) -> Generated:
    raw = await client.audio.speech.with_raw_response.create(
        input=job.text, **job.params, timeout=http_timeout
    )
    return Generated(data=raw.content, headers=raw.headers)


async def _generate_image(
    client: AsyncOpenAI, job: Job, http_timeout: httpx2.Timeout, card_fields: bool
) -> Generated:
    extra_body = None
    if card_fields:
        extra_body = {
            "esl_card": {
                "word": job.word,
                "pos": job.pos,
                "definition": job.definition,
                "level": job.level,
            }
        }
    raw = await client.images.with_raw_response.generate(
        prompt=job.text, **job.params, timeout=http_timeout, extra_body=extra_body
    )
    response = raw.parse()
    if not response.data or not response.data[0].b64_json:
        raise BadResponseError("The image response held no base64 image data.")
    try:
        data = base64.b64decode(response.data[0].b64_json, validate=True)
    except (binascii.Error, ValueError) as error:
        raise BadResponseError(f"The image data is not valid base64: {error}") from None
    usage = response.usage.model_dump(exclude_none=True) if response.usage else None
    return Generated(data=data, headers=raw.headers, usage=usage)
