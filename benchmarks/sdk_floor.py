"""The floor of a Python client: bare ``AsyncOpenAI`` calls, C at a time.

No lanes, retries, checks or journal: C coroutines take jobs from one list,
send each with the SDK (``max_retries=0``) and write the file. Whatever gap
to ceil(N/C)*L remains here comes from the SDK, the fake server and the
machine, not from esl-assets. Run from the repository root::

    OPENAI_API_KEY=sk-bench python -m benchmarks.sdk_floor DICT.csv \
        --outdir OUT --base-url URL --concurrency 50
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
from pathlib import Path
from typing import Any

import httpx2
import openai

from .plan import plan_jobs


async def send(client: openai.AsyncOpenAI, job: dict[str, Any]) -> bytes:
    """Send one job's request and return the asset's bytes."""
    if job["kind"] == "image":
        response = await client.images.generate(prompt=job["text"], **job["params"])
        if not response.data or not response.data[0].b64_json:
            raise ValueError("The image response contains no base64 image data.")
        return base64.b64decode(response.data[0].b64_json)

    speech = await client.audio.speech.create(input=job["text"], **job["params"])
    return speech.content


async def drain(
    client: openai.AsyncOpenAI, jobs: list[dict[str, Any]], outdir: Path
) -> None:
    while jobs:
        job = jobs.pop()
        data = await send(client, job)
        # A blocking write is the cheapest way; this program is the floor.
        (outdir / job["file"]).write_bytes(data)  # noqa: ASYNC240


async def run(dictionary: Path, outdir: Path, base_url: str, concurrency: int) -> int:
    jobs = plan_jobs(dictionary)
    count = len(jobs)
    jobs.reverse()
    limits = httpx2.Limits(max_connections=concurrency + 4)
    client = openai.AsyncOpenAI(
        base_url=base_url,
        api_key=os.environ["OPENAI_API_KEY"],
        max_retries=0,
        http_client=httpx2.AsyncClient(limits=limits),
    )
    async with client:
        await asyncio.gather(*(drain(client, jobs, outdir) for _ in range(concurrency)))
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dictionary", type=Path, help="CSV dictionary")
    parser.add_argument("--outdir", type=Path, required=True, help="output folder")
    parser.add_argument("--base-url", required=True, help="API base URL")
    parser.add_argument("--concurrency", type=int, default=5, help="requests in flight")
    args = parser.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    count = asyncio.run(
        run(args.dictionary, args.outdir, args.base_url, args.concurrency)
    )
    print(f"{count} jobs done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
