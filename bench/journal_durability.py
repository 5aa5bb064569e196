"""Benchmark: what the journal's synchronous=FULL costs against NORMAL.

FULL puts every commit on the disk before it returns, so a power cut cannot forget
that a request left or was answered; NORMAL in WAL mode survives `kill -9` but may
lose the last commits to a power cut. Two figures, each FULL vs NORMAL, interleaved:

- one commit: a small `set_meta` write in its own transaction, as a lone worker's
  submission commits, median ms;
- a whole run: `sweeper run` jobs/s at concurrency 32 against a zero-latency simulator
  (tiny images), where group commit shares one commit among the workers of a tick.

    python bench/journal_durability.py [JOBS] [RUNS]      (JOBS 0: the commit figure only)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from measure import SimulatorProcess, median, print_header, repeat, sweeper_env, write_seed_spec

from sweeper.journal import Journal

COMMITS = 300
CONCURRENCY = 32
# `sweeper run` with the journal switched to `synchronous=<mode>` after it opens.
RUN_WITH_MODE = """
import sys
from sweeper import journal
from sweeper.cli import main
opened = journal.Journal.open.__func__
def open_with_mode(cls, run_dir):
    opened_journal = opened(cls, run_dir)
    opened_journal._db.execute("PRAGMA synchronous={mode}")
    return opened_journal
journal.Journal.open = classmethod(open_with_mode)
sys.argv = ["sweeper", *sys.argv[1:]]
main()
"""


def commit_ms(folder: Path, mode: str) -> float:
    """Median milliseconds of one small commit under `synchronous=mode`."""
    journal = Journal.open(folder)
    journal._db.execute(f"PRAGMA synchronous={mode}")
    timings = []
    for attempt in range(COMMITS):
        started = time.perf_counter()
        journal.set_meta("bench", attempt)  # one small write in its own transaction
        timings.append((time.perf_counter() - started) * 1000)
    journal.close()
    return median(timings)


def run_rate(base_url: str, folder: Path, mode: str, jobs: int, run: int) -> float:
    name = f"{mode.lower()}{run}"
    spec = write_seed_spec(folder, name, jobs, concurrency=CONCURRENCY, rpm="null")
    out = folder / f"{name}-run"
    argv = [sys.executable, "-c", RUN_WITH_MODE.format(mode=mode), "run", str(spec)]
    repeat([*argv, "--out", str(out), "--max-jobs", "1000000"], 1, env=sweeper_env(base_url))
    return jobs / json.loads((out / "run.json").read_text())["duration_s"]


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    print_header(f"journal durability: FULL vs NORMAL, {jobs} jobs, {runs} runs each")
    commits: dict[str, list[float]] = {"FULL": [], "NORMAL": []}
    rates: dict[str, list[float]] = {"FULL": [], "NORMAL": []}
    with (
        SimulatorProcess("--latency", "0", "--tiny-images") as sim,
        tempfile.TemporaryDirectory(dir=Path.cwd()) as d,
    ):
        for run in range(runs):  # interleaved, so drift on the machine hits both alike
            for mode in ("FULL", "NORMAL"):
                commits[mode].append(commit_ms(Path(d) / f"commit-{mode}-{run}", mode))
                if jobs:
                    rates[mode].append(run_rate(sim.base_url, Path(d), mode, jobs, run))
                rate = f", sweeper run {rates[mode][-1]:.0f} jobs/s" if jobs else ""
                print(f"  run {run + 1} {mode:>6}: commit {commits[mode][-1]:.2f} ms{rate}")
    full_ms, normal_ms = median(commits["FULL"]), median(commits["NORMAL"])
    ratio = full_ms / normal_ms
    print(f"one commit: FULL {full_ms:.2f} ms, NORMAL {normal_ms:.2f} ms (x{ratio:.2f})")
    if not jobs:
        return
    full_rate, normal_rate = median(rates["FULL"]), median(rates["NORMAL"])
    print(
        f"sweeper run: FULL {full_rate:.0f} jobs/s, NORMAL {normal_rate:.0f} jobs/s "
        f"(FULL keeps {full_rate / normal_rate:.2f} of NORMAL's rate)"
    )


if __name__ == "__main__":
    main()
