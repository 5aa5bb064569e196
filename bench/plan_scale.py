"""Benchmark: `sweeper plan` of a 1,000,000-job grid (target < 10 s, < 300 MB peak RSS).

Two grids of the same size. `seed x guidance` is counted arithmetically, so plan
only expands the jobs it lists. `seed x guidance x num_outputs` makes plan count
images by walking every job's parameters (the worst case of the lazy expansion).

    python bench/plan_scale.py [JOBS] [RUNS]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from measure import REPO, median, print_header, repeat, sweeper_argv

TARGET_S = 10.0
TARGET_MB = 300.0


def write_spec(folder: Path, seeds: int, *, vary_outputs: bool = False) -> Path:
    spec = folder / ("million-outputs.yaml" if vary_outputs else "million.yaml")
    spec.write_text(
        "name: million\n"
        "params:\n"
        f"  image: {REPO / 'sweeps/inputs/astronaut.jpg'}\n"
        "  prompt: depth study\n"
        "grid:\n"
        f"  seed: {{start: 1, stop: {seeds}, step: 1}}\n"
        "  guidance: {start: 1.0, stop: 10.9, step: 0.1}\n"
        + ("  num_outputs: [1, 2]\n" if vary_outputs else "")
    )
    return spec


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    print_header(f"sweeper plan of a {jobs:,}-job grid, {runs} runs each")
    met = True
    with tempfile.TemporaryDirectory() as folder:
        for vary_outputs, seeds in ((False, jobs // 100), (True, jobs // 200)):
            spec = write_spec(Path(folder), seeds, vary_outputs=vary_outputs)
            argv = sweeper_argv("plan", str(spec), "--max-jobs", str(jobs), "--format", "json")
            samples = repeat([*argv, "--limit", "5"], runs)
            planned = json.loads(samples[0].stdout)["jobs"]
            seconds = median([s.seconds for s in samples])
            rss = median([s.peak_rss_mb for s in samples])
            label = "seed x guidance x num_outputs" if vary_outputs else "seed x guidance"
            print(f"{label} ({planned:,} jobs): median {seconds:.2f} s, peak RSS {rss:.0f} MB")
            met = met and seconds < TARGET_S and rss < TARGET_MB
    print(f"target < {TARGET_S:.0f} s and < {TARGET_MB:.0f} MB: {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
