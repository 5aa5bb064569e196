"""The baseline a user could write by hand: one upload, then POST + GET per job with aiohttp.

No journal, no retries, no verification: only the HTTP calls `sweeper run` makes,
at the same concurrency, against the same server. Prints jobs/s as JSON.

    python bench/bare_loop.py BASE_URL JOBS CONCURRENCY
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp

PHOTO = Path(__file__).resolve().parent.parent / "sweeps" / "inputs" / "astronaut.jpg"
HEADERS = {"API-KEY": "bench-key"}


async def upload(session: aiohttp.ClientSession, base: str) -> str:
    form = aiohttp.FormData()
    form.add_field("asset", PHOTO.read_bytes(), filename=PHOTO.name, content_type="image/jpeg")
    async with session.post(f"{base}/api/assets", data=form, headers=HEADERS) as answer:
        answer.raise_for_status()
        return (await answer.json())["fileContent"]["path"]


def body(asset: str, seed: int) -> dict:
    prompt = {"imageUrl": asset, "prompt": "bench", "seed": seed, "megapixels": "0.25"}
    prompt["format"] = "webp"
    return {
        "type": "IMAGE_EDITOR",
        "model": "black-forest-labs/flux-depth-dev",
        "promptObject": prompt,
    }


async def one_job(session: aiohttp.ClientSession, base: str, asset: str, seed: int) -> int:
    async with session.post(f"{base}/api/features", json=body(asset, seed), headers=HEADERS) as r:
        r.raise_for_status()
        urls = (await r.json())["aiRecord"]["temporaryUrl"]
    for url in urls:
        async with session.get(url) as download:
            download.raise_for_status()
            await download.read()
    return len(urls)


async def run(base: str, jobs: int, concurrency: int) -> dict:
    connector = aiohttp.TCPConnector(limit=concurrency * 2 + 4)
    async with aiohttp.ClientSession(connector=connector) as session:
        asset = await upload(session, base)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for seed in range(1, jobs + 1):
            queue.put_nowait(seed)

        async def worker() -> None:
            while not queue.empty():
                await one_job(session, base, asset, queue.get_nowait())

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {"jobs": jobs, "seconds": seconds, "jobs_per_s": jobs / seconds}


if __name__ == "__main__":
    base_url, job_count, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(asyncio.run(run(base_url, job_count, workers))))
