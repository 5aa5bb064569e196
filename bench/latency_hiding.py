"""Benchmark: latency hiding; simulator latency 2 s, concurrency 32, no rate cap.

Target: `sweeper run` sustains ≥ 0.9 of the ideal 32 / 2 s = 16 jobs/s. The naive
sequential client is measured against the same server for comparison (ideal 0.5
jobs/s). Jobs/s comes from run.json's duration, which includes the journal,
uploads, downloads with verification and the manifest.

    python bench/latency_hiding.py [JOBS] [RUNS]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from measure import SimulatorProcess, median, print_header, repeat, run_sweep, write_seed_spec

CONCURRENCY = 32
LATENCY_S = 2.0
TARGET_RATIO = 0.9
SEQUENTIAL_JOBS = 10


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 640
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    ideal = CONCURRENCY / LATENCY_S
    print_header(
        f"latency hiding: {jobs} jobs, latency {LATENCY_S:g} s, concurrency {CONCURRENCY}, "
        f"{runs} runs"
    )
    rates = []
    with (
        SimulatorProcess("--latency", str(LATENCY_S), "--tiny-images") as sim,
        tempfile.TemporaryDirectory(dir="/tmp") as folder,
    ):
        for run in range(runs):
            spec = write_seed_spec(
                Path(folder), f"latency{run}", jobs, concurrency=CONCURRENCY, rpm="null"
            )
            rates.append(run_sweep(sim.base_url, spec, Path(folder) / f"run{run}").jobs_per_s)
            print(f"  run {run + 1}: {rates[-1]:.2f} jobs/s", flush=True)
        argv = [sys.executable, "bench/naive_clients.py", "sequential", sim.base_url]
        sequential = json.loads(repeat([*argv, str(SEQUENTIAL_JOBS)], 1)[0].stdout)
    ratio = median(rates) / ideal
    print(f"sweeper run: median {median(rates):.2f} jobs/s of an ideal {ideal:g}")
    print(
        f"naive sequential requests: {sequential['jobs_per_s']:.2f} jobs/s "
        f"({SEQUENTIAL_JOBS} jobs; ideal {1 / LATENCY_S:g})"
    )
    verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
    print(f"ratio to ideal {ratio:.3f} (target ≥ {TARGET_RATIO}): {verdict}")


if __name__ == "__main__":
    main()
