"""A small finished sweep for the report, reproduce and browser tests.

It runs the real engine against the simulator over HTTP on loopback (as
test_run_engine.py does) and leaves a run directory with everything a study
needs to show: three varied axes (so there is a Z axis and more than one sheet),
one job the server refused (a failed cell) and one excluded grid point (a
missing cell). One of the prompts carries HTML metacharacters, to check that the
page escapes them and that the browser's filters still match them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sweeper.execute import ApiTarget, execute_sweep
from sweeper.expand import count_jobs
from sweeper.retry import RetryPolicy
from sweeper.simulator import FaultRule, SimulatorConfig, run_simulator
from sweeper.spec import RunSettings, load_spec

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "sweeps" / "inputs" / "astronaut.jpg"
KEY = "sk-test-study"
# They share a long start so that a label cut short would make the two rows look alike.
PROMPTS = (
    "a quiet study of depth, soft morning light",
    'a quiet study of depth, <b>neon</b> & "rain"',
)
SEEDS = (1, 2, 3)
GUIDANCES = (2.5, 5.0)
EXCLUDED = {"seed": 3, "guidance": 5.0}
FAILURE = "guidance is not allowed for this image"
JOBS = len(PROMPTS) * len(SEEDS) * len(GUIDANCES) - len(PROMPTS)


def write_study_spec(folder: Path) -> Path:
    spec = folder / "study.yaml"
    spec.write_text(
        "name: study\n"
        "params:\n"
        f"  image: {PHOTO}\n"
        "  megapixels: '0.25'\n"
        "  format: webp\n"
        "grid:\n"
        f"  prompt: {json.dumps(PROMPTS)}\n"
        f"  seed: {json.dumps(SEEDS)}\n"
        f"  guidance: {json.dumps(GUIDANCES)}\n"
        "exclude:\n"
        f"  - {json.dumps(EXCLUDED)}\n"
        "run:\n"
        "  concurrency: 4\n"
        "  requests_per_minute: null\n",
        encoding="utf-8",
    )
    return spec


def run_study(folder: Path) -> Path:
    """Run the study sweep into folder/run (one job fails with FAILURE) and return that path."""
    spec = load_spec(write_study_spec(folder))
    run_dir = folder / "run"
    refusal = FaultRule("features", "status", status=422, message=FAILURE, after=3)
    settings = RunSettings(
        concurrency=4, requests_per_minute=None, max_attempts=3, request_timeout_s=10
    )

    async def run() -> None:
        async with run_simulator(SimulatorConfig(faults=[refusal])) as simulator:
            await execute_sweep(
                spec,
                run_dir,
                ApiTarget(simulator.base_url, KEY),
                settings,
                count_jobs(spec),
                retry_policy=RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05),
            )

    asyncio.run(run())
    return run_dir
