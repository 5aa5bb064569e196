"""Benchmark: `requests_per_minute: auto` against a hidden limit, with a real clock.

Two simulators in their own processes, each hiding one limit behind 429s:
  rate         a strict sliding-window limit of 240 requests a minute;
  concurrency  at most 4 requests at once, answered in 1 s (so at best 240 a minute).
A pool of 16 workers sends edits through `AdaptivePacer` (starting at 60 a minute,
as a first run would) for MINUTES minutes, as the engine will: take a concurrency
slot, wait for the pacer, send, tell the pacer how it ended. Downloads are left
out: they are not paced and do not count against the limit.

Targets (issue 14): once warm, at least 0.85 of the limit accepted, with at most 2 %
of requests answered 429, warm within the first few minutes. "Warm" here is from
minute 3 to the end; the time to first reach 0.85 of the limit over a trailing
minute is reported too, and the 429 share over the whole run.

    python bench/adaptive_rate.py [MINUTES] [rate|concurrency|both]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

import aiohttp
from measure import REPO, print_header

from sweeper.adaptive import AdaptivePacer, PacingSettings
from sweeper.client import ApiClient
from sweeper.contract import FEATURE_TYPE, MODEL
from sweeper.errors import RateLimited, SweeperError

LIMIT_RPM = 240
CAP = 4
LATENCY_S = 1.0
WORKERS = 16
WARM_FROM_S = 180.0
TARGET_SHARE = 0.85
TARGET_429 = 0.02
PHOTO = REPO / "sweeps" / "inputs" / "astronaut.jpg"


@dataclass
class Trace:
    """What the client saw: each request's send time and outcome, and the pacer's state."""

    sent: list[tuple[float, str]] = field(default_factory=list)
    pace: list[tuple[float, float, int]] = field(default_factory=list)

    def accepted_times(self) -> list[float]:
        return [t for t, outcome in self.sent if outcome == "ok"]

    def accepted_per_minute(self, start: float, end: float) -> float:
        ok = sum(1 for t, outcome in self.sent if start <= t < end and outcome == "ok")
        return ok / ((end - start) / 60.0)

    def share_429(self, start: float, end: float) -> float:
        outcomes = [outcome for t, outcome in self.sent if start <= t < end]
        return outcomes.count("429") / max(1, len(outcomes))

    def warm_after(self, limit: float) -> float | None:
        """The first time the trailing minute held at least TARGET_SHARE of the limit."""
        times = self.accepted_times()
        for index, t in enumerate(times):
            if (
                t >= 60.0
                and index - bisect.bisect_right(times, t - 60.0) + 1 >= TARGET_SHARE * limit
            ):
                return t
        return None


async def drive(base_url: str, minutes: float) -> tuple[Trace, AdaptivePacer]:
    pacer = AdaptivePacer(PacingSettings(max_concurrency=WORKERS))
    trace = Trace()
    connector = aiohttp.TCPConnector(limit=WORKERS * 2)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = ApiClient(session, base_url, "bench-key", request_timeout_s=60)
        asset = await client.upload_asset(PHOTO)
        prompt = {"imageUrl": asset, "prompt": "bench", "megapixels": "0.25", "format": "webp"}
        request = json.dumps({"type": FEATURE_TYPE, "model": MODEL, "promptObject": prompt})
        start = time.monotonic()
        end = start + minutes * 60.0

        async def worker() -> None:
            while time.monotonic() < end:
                async with pacer.concurrency_slot():
                    dispatch = await pacer.acquire()
                    sent = dispatch.sent_at - start
                    try:
                        await client.run_edit(request)
                    except RateLimited as error:
                        pacer.on_rate_limited(dispatch, error.retry_after)
                        trace.sent.append((sent, "429"))
                    except SweeperError:
                        pacer.on_failure(dispatch)
                        trace.sent.append((sent, "error"))
                    else:
                        pacer.on_success(dispatch)
                        trace.sent.append((sent, "ok"))

        async def sample() -> None:
            while time.monotonic() < end:
                now = time.monotonic() - start
                trace.pace.append((now, pacer.current_rpm, pacer.current_concurrency))
                await asyncio.sleep(10)

        await asyncio.gather(sample(), *(worker() for _ in range(WORKERS)))
    return trace, pacer


class Simulator:
    """This script in `--serve` mode, in its own process, hiding one limit."""

    def __init__(self, *options: str) -> None:
        self._argv = [sys.executable, __file__, "--serve", *options]
        self._process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> Simulator:
        self._process = subprocess.Popen(
            self._argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if "http://" not in line:
            self._process.kill()
            raise SystemExit(f"simulator did not start: {line!r}")
        self.base_url = line.strip().split()[-1]
        return self

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.base_url}/_simulator/stats", timeout=30) as answer:
            return json.loads(answer.read())

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)


def report(name: str, trace: Trace, pacer: AdaptivePacer, stats: dict, minutes: float) -> bool:
    end = minutes * 60.0
    warm_share = trace.accepted_per_minute(WARM_FROM_S, end) / LIMIT_RPM
    warm_429 = trace.share_429(WARM_FROM_S, end)
    all_429 = trace.share_429(0.0, end)
    warm_at = trace.warm_after(LIMIT_RPM)
    per_minute = [
        f"{trace.accepted_per_minute(m * 60.0, (m + 1) * 60.0) / LIMIT_RPM:.2f}"
        for m in range(int(minutes))
    ]
    counters = stats["counters"]
    print(f"\n## {name}")
    print(f"accepted per minute, as a share of {LIMIT_RPM}: {' '.join(per_minute)}")
    print(
        "first trailing minute at >= "
        f"{TARGET_SHARE} of the limit: {'never' if warm_at is None else f'{warm_at:.0f} s'}"
    )
    print(
        f"warm (minute 3 to {minutes:g}): {warm_share:.3f} of the limit, "
        f"{warm_429:.2%} of requests answered 429"
    )
    print(
        f"whole run: {len(trace.sent)} requests, {all_429:.2%} answered 429 "
        f"(server: {counters.get('rate_limited', 0)} over the rate, "
        f"{counters.get('concurrency_limited', 0)} over the cap, "
        f"most in any 60 s: {stats['most_features_in_any_window']})"
    )
    print(f"pacer at the end: {json.dumps(pacer.snapshot())}")
    print(
        "pacer every 30 s (rpm/concurrency): "
        + " ".join(f"{rpm:.0f}/{cap}" for t, rpm, cap in trace.pace[::3])
    )
    met = (
        warm_share >= TARGET_SHARE
        and warm_429 <= TARGET_429
        and all_429 <= TARGET_429
        and warm_at is not None
        and warm_at <= WARM_FROM_S
    )
    print(f"target: {'met' if met else 'MISSED'}")
    return met


def serve(options: argparse.Namespace) -> None:
    from sweeper.simulator import SimulatorConfig, serve_forever

    config = SimulatorConfig(
        latency_s=LATENCY_S,
        rpm_limit=options.rpm_limit,
        max_concurrent=options.max_concurrent,
        tiny_images=True,
    )
    serve_forever("127.0.0.1", 0, config, lambda base_url: print(base_url, flush=True))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("minutes", nargs="?", type=float, default=10.0)
    parser.add_argument("scenario", nargs="?", default="both")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rpm-limit", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--max-concurrent", type=int, default=None, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve(options)
        return
    print_header(
        f"adaptive pacing, {WORKERS} workers from 60/min, {options.minutes:g} min per scenario"
    )
    scenarios = {
        "rate": (f"strict window of {LIMIT_RPM}/min", ["--rpm-limit", str(LIMIT_RPM)]),
        "concurrency": (
            f"at most {CAP} at once, answers in {LATENCY_S:g} s",
            ["--max-concurrent", str(CAP)],
        ),
    }
    chosen = list(scenarios) if options.scenario == "both" else [options.scenario]
    results = []
    for key in chosen:
        name, flags = scenarios[key]
        with Simulator(*flags) as simulator:
            trace, pacer = asyncio.run(drive(simulator.base_url, options.minutes))
            stats = simulator.stats()
        results.append(report(name, trace, pacer, stats, options.minutes))
    print(f"\nall targets: {'met' if all(results) else 'MISSED'}")


if __name__ == "__main__":
    main()
