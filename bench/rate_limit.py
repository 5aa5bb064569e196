"""Benchmark: rate-limit adherence against a strict sliding-window simulator.

`sweeper serve --rpm-limit RPM` answers 429 to any /api/features request that
would be the RPM+1-th in 60 s. The spec asks for the same requests_per_minute.
Targets: 0 requests over the limit (the simulator's own 429 count, and the most
arrivals it saw in any 60 s window), and sustained throughput ≥ 0.95 of the
limit (arrivals per second between the first and the last request, × 60 / RPM).
Runs should last well over 60 s so the window fills. For comparison,
asyncio.gather with no pacing is sent at a fresh strict simulator.

    python bench/rate_limit.py [RPM] [JOBS] [RUNS]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from measure import SimulatorProcess, median, print_header, repeat, run_sweep, write_seed_spec

CONCURRENCY = 32
TARGET_RATIO = 0.95


def sustained_ratio(stats: dict, rpm: float) -> float:
    per_s = (stats["feature_arrivals"] - 1) / stats["feature_span_s"]
    return per_s * 60 / rpm


def main() -> None:
    rpm = float(sys.argv[1]) if len(sys.argv) > 1 else 600
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 900
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    print_header(f"rate-limit adherence: {jobs} jobs at {rpm:g}/min, strict simulator, {runs} runs")
    ratios, over, most = [], [], []
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        for run in range(runs):  # a fresh simulator each time: an empty window
            with SimulatorProcess(
                "--latency", "0", "--tiny-images", "--rpm-limit", f"{rpm:g}"
            ) as sim:
                spec = write_seed_spec(
                    Path(folder), f"rate{run}", jobs, concurrency=CONCURRENCY, rpm=f"{rpm:g}"
                )
                run_sweep(sim.base_url, spec, Path(folder) / f"run{run}")
                stats = sim.stats()
            ratios.append(sustained_ratio(stats, rpm))
            over.append(stats["counters"].get("rate_limited", 0))
            most.append(stats["most_features_in_any_window"])
            print(
                f"  run {run + 1}: {ratios[-1]:.4f} of the limit, {over[-1]} answered 429, "
                f"at most {most[-1]} in any 60 s",
                flush=True,
            )
        with SimulatorProcess("--latency", "0", "--tiny-images", "--rpm-limit", f"{rpm:g}") as sim:
            argv = [sys.executable, "bench/naive_clients.py", "gather", sim.base_url, str(jobs)]
            gather = json.loads(repeat(argv, 1)[0].stdout)
    print(f"sweeper run: median {median(ratios):.4f} of the limit; 429s per run: {over}")
    print(f"most requests in any 60 s window: {max(most)} (limit {rpm:g})")
    statuses = gather["statuses"]
    print(
        f"asyncio.gather, no pacing, {jobs} jobs: {statuses.get('429', 0)} answered 429, "
        f"{statuses.get('200', 0)} answered 200"
    )
    met = max(over) == 0 and max(most) <= rpm and median(ratios) >= TARGET_RATIO
    print(f"target 0 over the limit and ≥ {TARGET_RATIO} of it: {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
