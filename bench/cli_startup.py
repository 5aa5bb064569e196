"""Benchmark: cold start of `sweeper --help` (target < 0.4 s)."""

from __future__ import annotations

import sys

from measure import median, print_header, repeat, sweeper_argv

TARGET_S = 0.4


def main(runs: int = 11) -> None:
    print_header("sweeper --help cold start")
    baseline = repeat([sys.executable, "-c", "pass"], runs)
    samples = repeat(sweeper_argv("--help"), runs)
    python_s = median([s.seconds for s in baseline])
    help_s = median([s.seconds for s in samples])
    print(f"median of {runs}: bare python {python_s:.3f} s, sweeper --help {help_s:.3f} s")
    print(f"sweeper's own import cost: {help_s - python_s:.3f} s")
    print(f"target < {TARGET_S} s: {'met' if help_s < TARGET_S else 'MISSED'}")


if __name__ == "__main__":
    main()
