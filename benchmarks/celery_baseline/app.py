"""A Celery app whose task makes one asset with the synchronous OpenAI SDK.

This is the shape of the replaced tool: a prefork worker pool, one blocking
request per worker process, Redis as broker and result backend. The worker
reads its settings from the environment:

- ``BENCH_REDIS_URL``: broker and result backend;
- ``BENCH_BASE_URL``: base URL of the (fake) OpenAI API;
- ``OPENAI_API_KEY``: the key sent to that API.

Start it with ``celery -A benchmarks.celery_baseline.app worker --concurrency N``
from the repository root.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import openai
from celery import Celery

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("esl_assets_bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    # Results are read once by the driver; an hour is longer than any run.
    result_expires=3600,
)

_client: openai.OpenAI | None = None


def get_client() -> openai.OpenAI:
    """Return this process's client, created after the pool forked it."""
    global _client
    if _client is None:
        _client = openai.OpenAI(
            base_url=os.environ["BENCH_BASE_URL"],
            api_key=os.environ["OPENAI_API_KEY"],
            max_retries=0,
        )
    return _client


def request_asset(job: dict[str, Any]) -> bytes:
    """Send the job's request and return the bytes of the asset."""
    client = get_client()
    if job["kind"] == "image":
        response = client.images.generate(prompt=job["text"], **job["params"])
        if not response.data or not response.data[0].b64_json:
            raise ValueError("The image response contains no base64 image data.")
        return base64.b64decode(response.data[0].b64_json)

    speech = client.audio.speech.create(input=job["text"], **job["params"])
    return speech.content


def write_file(outdir: Path, name: str, data: bytes) -> None:
    """Write through a temporary name and a rename, so no file is half written."""
    path = outdir / name
    temp = outdir / f".{name}.{os.getpid()}.part"
    temp.write_bytes(data)
    os.replace(temp, path)


@app.task(name="esl_assets_bench.generate_asset")
def generate_asset(job: dict[str, Any], outdir: str) -> dict[str, str]:
    """Make one asset and return ``{"status", "file"[, "error"]}``."""
    try:
        data = request_asset(job)
        write_file(Path(outdir), job["file"], data)
    except (openai.OpenAIError, OSError, ValueError) as error:
        return {"status": "error", "file": job["file"], "error": str(error)}
    return {"status": "success", "file": job["file"]}
