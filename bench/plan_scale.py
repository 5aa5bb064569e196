"""Benchmark: `sweeper plan` of a 1,000,000-job grid (target < 10 s, < 300 MB peak RSS).

The plan walks every job (ids are computed for the whole grid), so this measures
lazy expansion end to end, not just the arithmetic count.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from measure import REPO, median, print_header, repeat, sweeper_argv

TARGET_S = 10.0
TARGET_MB = 300.0


def write_spec(folder: Path, seeds: int) -> Path:
    spec = folder / "million.yaml"
    spec.write_text(
        "name: million\n"
        "params:\n"
        f"  image: {REPO / 'sweeps/inputs/astronaut.jpg'}\n"
        "  prompt: depth study\n"
        "grid:\n"
        f"  seed: {{start: 1, stop: {seeds}, step: 1}}\n"
        "  guidance: {start: 1.0, stop: 10.9, step: 0.1}\n"
    )
    return spec


def main(runs: int = 3) -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print_header(f"sweeper plan of a {jobs:,}-job grid")
    with tempfile.TemporaryDirectory() as folder:
        spec = write_spec(Path(folder), jobs // 100)
        argv = sweeper_argv("plan", str(spec), "--max-jobs", str(jobs), "--format", "json")
        samples = repeat([*argv, "--limit", "5"], runs)
    seconds = median([s.seconds for s in samples])
    rss = median([s.peak_rss_mb for s in samples])
    print(f"median of {runs}: {seconds:.2f} s, peak RSS {rss:.0f} MB")
    met = seconds < TARGET_S and rss < TARGET_MB
    print(f"target < {TARGET_S:.0f} s and < {TARGET_MB:.0f} MB: {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
