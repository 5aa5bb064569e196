"""`sweeper run` as a real process: kill -9 mid-run, Ctrl-C, then resume.

The simulator runs in a background thread of the test process with a little
latency, so the child is reliably caught with jobs in flight.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from PIL import Image

from sweeper.simulator import SimulatorConfig, SimulatorThread

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "sweeps" / "inputs" / "astronaut.jpg"
JOBS = 24


def write_spec(folder: Path) -> Path:
    spec = folder / "crash.yaml"
    spec.write_text(
        "name: crash\n"
        "params:\n"
        f"  image: {PHOTO}\n"
        "  prompt: crash test\n"
        "  megapixels: '0.25'\n"
        "  format: webp\n"
        "grid:\n"
        f"  seed: {{start: 1, stop: {JOBS}, step: 1}}\n"
        "run:\n"
        "  concurrency: 4\n"
        "  requests_per_minute: null\n"
    )
    return spec


def start_run(spec: Path, run_dir: Path, base_url: str, *extra: str) -> subprocess.Popen:
    env = os.environ | {"ONEMIN_API_KEY": "sk-crash-test", "ONEMIN_API_BASE": base_url}
    return subprocess.Popen(
        [sys.executable, "-m", "sweeper", "run", str(spec), "--out", str(run_dir), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def succeeded_in_journal(run_dir: Path) -> int:
    journal = run_dir / "journal.sqlite"
    if not journal.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM jobs WHERE state = 'succeeded'").fetchone()[0]
    except sqlite3.Error:
        return 0


def wait_for_progress(run_dir: Path, at_least: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while succeeded_in_journal(run_dir) < at_least:
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)


def assert_images_complete(run_dir: Path) -> None:
    for path in (run_dir / "images").glob("*"):
        with Image.open(path) as image:
            image.load()


def states_in_journal(run_dir: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{run_dir / 'journal.sqlite'}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())


def test_kill_9_loses_nothing_and_a_rerun_pays_only_for_what_was_never_sent(tmp_path):
    spec, run_dir = write_spec(tmp_path), tmp_path / "run"
    with SimulatorThread(SimulatorConfig(latency_s=0.15)) as sim:
        child = start_run(spec, run_dir, sim.base_url)
        wait_for_progress(run_dir, at_least=6)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        at_kill = states_in_journal(run_dir)
        sent_before = sim.state.counters["features"]
        assert_images_complete(run_dir)

        rerun = start_run(spec, run_dir, sim.base_url)
        _, errors = rerun.communicate(timeout=120)
        resent = sim.state.counters["features"] - sent_before
        # Exactly the jobs never sent; those in flight at the kill may have been billed.
        assert resent == at_kill.get("planned", 0)
        in_flight = at_kill.get("submitted", 0)
        assert rerun.returncode == (1 if in_flight else 0), errors
        assert states_in_journal(run_dir).get("unanswered", 0) == in_flight
        if in_flight:
            assert "may have been billed" in errors and "--resend-unanswered" in errors

        asked = start_run(spec, run_dir, sim.base_url, "--resend-unanswered")
        _, errors = asked.communicate(timeout=120)
        assert asked.returncode == 0, errors
        assert sim.state.counters["features"] - sent_before == resent + in_flight
    rows = pd.read_csv(run_dir / "manifest.csv")
    assert len(rows) == JOBS and set(rows["status"]) == {"succeeded"}
    assert_images_complete(run_dir)
    assert len(list((run_dir / "images").glob("*"))) == JOBS


def test_ctrl_c_stops_sending_writes_the_manifest_and_exits_3(tmp_path):
    spec, run_dir = write_spec(tmp_path), tmp_path / "run"
    with SimulatorThread(SimulatorConfig(latency_s=0.3)) as sim:
        child = start_run(spec, run_dir, sim.base_url)
        wait_for_progress(run_dir, at_least=2)
        child.send_signal(signal.SIGINT)
        _, errors = child.communicate(timeout=60)
        sent = sim.state.counters["features"]
    assert child.returncode == 3, errors
    assert "interrupted" in errors and "Traceback" not in errors
    assert sent < JOBS
    rows = pd.read_csv(run_dir / "manifest.csv")
    assert len(rows) == JOBS
    assert (rows["status"] == "succeeded").sum() == succeeded_in_journal(run_dir)
