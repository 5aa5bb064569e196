"""Benchmark: memory of a large run, and the rerun of a finished one.

Runs a SMALL-job and a LARGE-job sweep against the zero-latency simulator (tiny
images, concurrency 32, no rate cap) and reports each run's peak RSS (target:
< 500 MB and flat in the job count). Then reruns the finished LARGE sweep into
the same directory RERUNS times (target: < 10 s wall for the whole `sweeper run`
process, and 0 requests by the simulator's own count).

    python bench/scale.py [SMALL] [LARGE] [RERUNS]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from measure import SimulatorProcess, median, print_header, run_sweep, write_seed_spec

CONCURRENCY = 32
TARGET_RSS_MB = 500.0
TARGET_RERUN_S = 10.0


def requests_seen(sim: SimulatorProcess) -> int:
    counters = sim.stats()["counters"]
    return sum(counters.get(kind, 0) for kind in ("uploads", "features", "storage"))


def main() -> None:
    small = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    large = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    reruns = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    print_header(f"scale: runs of {small:,} and {large:,} jobs, then {reruns} reruns of the large")
    with (
        SimulatorProcess("--latency", "0", "--tiny-images") as sim,
        tempfile.TemporaryDirectory(dir="/tmp") as folder,
    ):
        rss = {}
        for jobs in (small, large):
            spec = write_seed_spec(
                Path(folder), f"scale{jobs}", jobs, concurrency=CONCURRENCY, rpm="null"
            )
            out = Path(folder) / f"run{jobs}"
            run = run_sweep(sim.base_url, spec, out)
            rss[jobs] = run.sample.peak_rss_mb
            print(
                f"  run of {jobs:,} jobs: {run.sample.seconds:.1f} s wall, "
                f"{run.jobs_per_s:.0f} jobs/s, peak RSS {rss[jobs]:.0f} MB",
                flush=True,
            )
        before = requests_seen(sim)
        again = [run_sweep(sim.base_url, spec, out) for _ in range(reruns)]
        sent = requests_seen(sim) - before
    rerun_s = median([r.sample.seconds for r in again])
    rerun_rss = median([r.sample.peak_rss_mb for r in again])
    growth = rss[large] / rss[small]
    print(f"peak RSS: {rss[small]:.0f} MB at {small:,} jobs, {rss[large]:.0f} MB at {large:,}")
    print(f"RSS ratio large/small: {growth:.2f} for {large / small:.0f}x the jobs")
    rss_met = rss[large] < TARGET_RSS_MB and growth < 1.5
    print(f"target < {TARGET_RSS_MB:.0f} MB and flat: {'met' if rss_met else 'MISSED'}")
    print(
        f"rerun of the finished {large:,}-job sweep: median of {reruns} {rerun_s:.2f} s wall, "
        f"peak RSS {rerun_rss:.0f} MB, {sent} requests in all"
    )
    rerun_met = rerun_s < TARGET_RERUN_S and sent == 0
    print(f"target < {TARGET_RERUN_S:.0f} s and 0 requests: {'met' if rerun_met else 'MISSED'}")


if __name__ == "__main__":
    main()
