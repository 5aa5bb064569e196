"""Measuring for the hand-run benchmarks: wall time and peak RSS of a child process.

Each figure comes from a fresh child process (`os.wait4` gives that child's own
peak RSS), repeated, and reported as a median; ratios are computed from medians
measured in the same run of a script.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Sample:
    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str


def run_child(argv: list[str], *, env: dict[str, str] | None = None) -> Sample:
    """Run argv to completion; its wall time, its own peak RSS and its stdout."""
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True, cwd=REPO
    )
    stdout = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return Sample(seconds, usage.ru_maxrss / 1024, process.returncode, stdout)


def repeat(argv: list[str], times: int, *, env: dict[str, str] | None = None) -> list[Sample]:
    samples = [run_child(argv, env=env) for _ in range(times)]
    failed = [s for s in samples if s.returncode != 0]
    if failed:
        raise SystemExit(f"{shlex.join(argv)} exited {failed[0].returncode}")
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)


def sweeper_argv(*args: str) -> list[str]:
    return [str(VENV_BIN / "sweeper"), *args]


def describe_machine() -> str:
    """nproc, CPU model, memory, OS, Python and the versions of the packages that matter."""
    from importlib.metadata import version

    cpu = _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown CPU"
    memory_kb = _proc_field("/proc/meminfo", "MemTotal").split()[0] or "0"
    packages = ", ".join(
        f"{name} {version(name)}" for name in ("aiohttp", "pandas", "pyarrow", "pillow", "pydantic")
    )
    return (
        f"{len(os.sched_getaffinity(0))} CPUs ({cpu}), {int(memory_kb) / 2**20:.0f} GB RAM, "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {packages}"
    )


def _proc_field(path: str, name: str) -> str:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


def print_header(title: str) -> None:
    print(f"# {title}")
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {describe_machine()}")


class SimulatorProcess:
    """`sweeper serve` in its own process, so it never competes for the client's GIL."""

    def __init__(self, *options: str) -> None:
        self._argv = sweeper_argv("serve", "--port", "0", *options)
        self._process: subprocess.Popen | None = None
        self.base_url = ""

    def __enter__(self) -> SimulatorProcess:
        self._process = subprocess.Popen(
            self._argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO
        )
        first_line = self._process.stdout.readline() if self._process.stdout else ""
        if "http://" not in first_line:
            self._process.kill()
            raise SystemExit(f"simulator did not start: {first_line!r}")
        self.base_url = first_line.strip().split()[-1]
        return self

    def stats(self) -> dict:
        """The simulator's own counts (requests by kind, 429s, arrivals per window)."""
        with urllib.request.urlopen(f"{self.base_url}/_simulator/stats", timeout=30) as answer:
            return json.loads(answer.read())

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)


def write_seed_spec(folder: Path, name: str, jobs: int, *, concurrency: int, rpm: str) -> Path:
    """A spec of `jobs` jobs that differ only by seed."""
    spec = folder / f"{name}.yaml"
    spec.write_text(
        f"name: {name}\n"
        "params:\n"
        f"  image: {REPO / 'sweeps/inputs/astronaut.jpg'}\n"
        "  prompt: bench\n"
        "  megapixels: '0.25'\n"
        "  format: webp\n"
        "grid:\n"
        f"  seed: {{start: 1, stop: {jobs}, step: 1}}\n"
        "run:\n"
        f"  concurrency: {concurrency}\n"
        f"  requests_per_minute: {rpm}\n"
        "  request_timeout_s: 60\n"
    )
    return spec


def sweeper_env(base_url: str) -> dict[str, str]:
    return os.environ | {"ONEMIN_API_KEY": "bench-key", "ONEMIN_API_BASE": base_url}


@dataclass(frozen=True)
class SweepRun:
    """One `sweeper run` child: its wall time and peak RSS, and the run.json it left."""

    sample: Sample
    record: dict

    @property
    def jobs_per_s(self) -> float:
        this_run = self.record["this_run"]
        return (this_run["succeeded"] + this_run["failed"]) / self.record["duration_s"]


def run_sweep(base_url: str, spec: Path, out: Path, *extra: str) -> SweepRun:
    """`sweeper run SPEC --out OUT` against `base_url`; exits if the run did not complete."""
    argv = sweeper_argv("run", str(spec), "--out", str(out), "--max-jobs", "1000000", *extra)
    sample = repeat(argv, 1, env=sweeper_env(base_url))[0]
    return SweepRun(sample, json.loads((out / "run.json").read_text()))
