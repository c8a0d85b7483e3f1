"""Plan the jobs of a generated CSV dictionary for the baseline programs.

The Celery baseline and the bare-SDK floor send the same requests as
esl-assets with its default settings: the word spoken once per entry, each
definition spoken, and one image per definition.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from esl_assets.settings import DEFAULT_AUDIO_INSTRUCTIONS, DEFAULT_IMAGE_PROMPT

# esl-assets' default request parameters.
SPEECH_PARAMS: dict[str, Any] = {
    "model": "gpt-4o-mini-tts",
    "voice": "alloy",
    "response_format": "aac",
    "instructions": DEFAULT_AUDIO_INSTRUCTIONS,
}
IMAGE_SIZE = "1024x1536"
IMAGE_PARAMS: dict[str, Any] = {
    "model": "gpt-image-1-mini",
    "size": IMAGE_SIZE,
    "output_format": "png",
}


def plan_jobs(dictionary: Path) -> list[dict[str, Any]]:
    """Return one job per file: the word once per entry, then each definition."""
    jobs: list[dict[str, Any]] = []
    words_done: set[str] = set()
    with open(dictionary, encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            entry_id = row["uuid"]
            if entry_id not in words_done:
                words_done.add(entry_id)
                jobs.append(_speech_job(f"word_{entry_id}_0.aac", row["word"]))
            definition_file = f"{entry_id}_{row['id']}"
            jobs.append(
                _speech_job(f"shortdef_{definition_file}.aac", row["definition"])
            )
            prompt = DEFAULT_IMAGE_PROMPT.format(
                word=row["word"],
                pos=row["pos"],
                definition=row["definition"],
                level=row["level"],
                aspect="portrait",
            )
            jobs.append(
                {
                    "kind": "image",
                    "file": f"image_{definition_file}.png",
                    "text": prompt,
                    "params": IMAGE_PARAMS,
                }
            )
    return jobs


def _speech_job(file_name: str, text: str) -> dict[str, Any]:
    return {"kind": "speech", "file": file_name, "text": text, "params": SPEECH_PARAMS}
