"""What a user might write instead of sweeper, to compare against it.

    python bench/naive_clients.py sequential BASE_URL JOBS   # `requests`, one job at a time
    python bench/naive_clients.py gather BASE_URL JOBS       # asyncio.gather, no pacing

Both print JSON: jobs, seconds, jobs/s and how many answers had each HTTP status
(the gather client's 429 count is the point of it). Neither retries, journals or
verifies anything.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

from bare_loop import HEADERS, PHOTO, body


def sequential(base: str, jobs: int) -> dict:
    import requests  # the bench extra; not a dependency of sweeper itself

    statuses: Counter[int] = Counter()
    with requests.Session() as session:
        files = {"asset": (PHOTO.name, PHOTO.read_bytes(), "image/jpeg")}
        asset = session.post(f"{base}/api/assets", files=files, headers=HEADERS).json()
        path = asset["fileContent"]["path"]
        started = time.perf_counter()
        for seed in range(1, jobs + 1):
            answer = session.post(f"{base}/api/features", json=body(path, seed), headers=HEADERS)
            statuses[answer.status_code] += 1
            if answer.ok:
                for url in answer.json()["aiRecord"]["temporaryUrl"]:
                    session.get(url).content  # noqa: B018 - the download is the point
        seconds = time.perf_counter() - started
    return report(jobs, seconds, statuses)


async def unpaced_gather(base: str, jobs: int) -> dict:
    import aiohttp
    from bare_loop import upload

    statuses: Counter[int] = Counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        path = await upload(session, base)

        async def one(seed: int) -> None:
            url = f"{base}/api/features"
            async with session.post(url, json=body(path, seed), headers=HEADERS) as answer:
                statuses[answer.status] += 1
                await answer.read()

        started = time.perf_counter()
        await asyncio.gather(*(one(seed) for seed in range(1, jobs + 1)))
        seconds = time.perf_counter() - started
    return report(jobs, seconds, statuses)


def report(jobs: int, seconds: float, statuses: Counter[int]) -> dict:
    return {
        "jobs": jobs,
        "seconds": seconds,
        "jobs_per_s": jobs / seconds,
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
    }


if __name__ == "__main__":
    mode, base_url, job_count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "sequential":
        result = sequential(base_url, job_count)
    else:
        result = asyncio.run(unpaced_gather(base_url, job_count))
    print(json.dumps(result))
