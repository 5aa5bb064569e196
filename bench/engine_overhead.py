"""Benchmark: jobs/s through `sweeper run` vs a bare aiohttp loop (target ≥ 0.8 of the loop).

Both talk to the same zero-latency simulator (tiny images, its own process) at
concurrency 32 with no rate cap. sweeper's figure is its run.json duration, which
includes the journal, uploads, downloads with verification and the manifest.

    python bench/engine_overhead.py [JOBS] [RUNS]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from measure import (
    SimulatorProcess,
    median,
    print_header,
    repeat,
    sweeper_argv,
    sweeper_env,
    write_seed_spec,
)

CONCURRENCY = 32
TARGET_RATIO = 0.8
SEQUENTIAL_JOBS = 500


def bare_loop_rate(base_url: str, jobs: int) -> float:
    argv = [sys.executable, "bench/bare_loop.py", base_url, str(jobs), str(CONCURRENCY)]
    return json.loads(repeat(argv, 1)[0].stdout)["jobs_per_s"]


def sweeper_rate(base_url: str, jobs: int, folder: Path, run: int) -> float:
    spec = write_seed_spec(folder, f"overhead{run}", jobs, concurrency=CONCURRENCY, rpm="null")
    out = folder / f"run{run}"
    repeat(sweeper_argv("run", str(spec), "--out", str(out)), 1, env=sweeper_env(base_url))
    return jobs / json.loads((out / "run.json").read_text())["duration_s"]


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    print_header(f"engine overhead, {jobs} jobs, concurrency {CONCURRENCY}, {runs} runs each")
    bare, ours = [], []
    with (
        SimulatorProcess("--latency", "0", "--tiny-images") as sim,
        tempfile.TemporaryDirectory() as d,
    ):
        for run in range(runs):  # interleaved, so drift on the machine hits both alike
            bare.append(bare_loop_rate(sim.base_url, jobs))
            ours.append(sweeper_rate(sim.base_url, jobs, Path(d), run))
            print(
                f"  run {run + 1}: bare {bare[-1]:.0f}, sweeper {ours[-1]:.0f} jobs/s, "
                f"ratio {ours[-1] / bare[-1]:.2f}",
                flush=True,
            )
        argv = [sys.executable, "bench/naive_clients.py", "sequential", sim.base_url]
        sequential = json.loads(repeat([*argv, str(SEQUENTIAL_JOBS)], 1)[0].stdout)
    print(
        f"naive sequential requests: {sequential['jobs_per_s']:.0f} jobs/s "
        f"({SEQUENTIAL_JOBS} jobs, one run)"
    )
    ratio = median(ours) / median(bare)
    print(f"bare aiohttp loop: median {median(bare):.0f} jobs/s")
    print(f"sweeper run:       median {median(ours):.0f} jobs/s")
    verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
    print(f"ratio {ratio:.2f} (target ≥ {TARGET_RATIO}): {verdict}")


if __name__ == "__main__":
    main()
