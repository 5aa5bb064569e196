"""A small sweep run through the engine against a simulator, for the engine's tests.

`run_sweep` is what `sweeper run` does once the spec is loaded: `execute_sweep`
over real HTTP on loopback, with fast retries so faults cost milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from sweeper.contract import MODEL, PARAMS
from sweeper.execute import ApiTarget, execute_sweep
from sweeper.job import ImageRef, Job, make_job
from sweeper.retry import RetryPolicy
from sweeper.run_result import RunResult
from sweeper.spec import RunSettings, load_spec

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "sweeps" / "inputs" / "astronaut.jpg"
KEY = "sk-test-SENTINEL-7f3a9c"
FAST_RETRIES = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.05)
# An input named only by its path and hash, for tests that drive a journal without a spec.
STAND_IN_IMAGE = ImageRef(given="inputs/a.jpg", sha256="ab" * 32)


def journal_job(index: int, outputs: int = 1, image: ImageRef = STAND_IN_IMAGE) -> Job:
    """Job `index` with every parameter at its default but seed (= index) and outputs."""
    params = {name: p.default for name, p in PARAMS.items()}
    params |= {"prompt": "p", "seed": index, "num_outputs": outputs}
    return make_job(index, MODEL, image, params)


def write_spec(folder: Path, seeds: list[int], *, outputs: int = 2, name: str = "engine") -> Path:
    spec = folder / f"{name}.yaml"
    spec.write_text(
        f"name: {name}\n"
        "params:\n"
        f"  image: {PHOTO}\n"
        "  prompt: a quiet study of depth\n"
        "  megapixels: '0.25'\n"
        "  format: png\n"
        f"  num_outputs: {outputs}\n"
        "grid:\n"
        f"  seed: {json.dumps(seeds)}\n"
        "  guidance: [2.5, 5]\n"
        "run:\n"
        "  concurrency: 4\n"
        "  requests_per_minute: null\n"
    )
    return spec


async def run_sweep(
    spec_path: Path,
    run_dir: Path,
    base_url: str,
    *,
    key: str = KEY,
    rpm: float | None = None,
    concurrency: int = 4,
    **run_settings: object,
) -> RunResult:
    from sweeper.expand import count_jobs

    spec = load_spec(spec_path)
    settings = RunSettings(
        concurrency=concurrency,
        requests_per_minute=rpm,
        max_attempts=4,
        request_timeout_s=5,
        **run_settings,
    )
    return await execute_sweep(
        spec,
        run_dir,
        ApiTarget(base_url, key),
        settings,
        count_jobs(spec),
        retry_policy=FAST_RETRIES,
    )


def manifest(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "manifest.parquet")


def feature_requests(sim: object) -> int:
    return sim.state.counters["features"]
