"""A finished offline 3 × 3 sweep (seed × guidance) for the vote, ranking and review tests.

Made once per test process with `sweeper run SPEC --offline --out DIR`, the way a
user makes one; each caller gets its own copy, so votes never leak between tests.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from sweeper.cli import main

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "sweeps" / "inputs" / "astronaut.jpg"
SEEDS = (1, 2, 3)
GUIDANCES = (2.5, 5.0, 7.5)
SPEC = f"""\
name: votes
params:
  image: {PHOTO}
  prompt: "a quiet study of depth"
  megapixels: '0.25'
  format: webp
grid:
  seed: {list(SEEDS)}
  guidance: {list(GUIDANCES)}
run:
  concurrency: 9
  requests_per_minute: null
"""
_template: Path | None = None


def make_vote_run(folder: Path) -> Path:
    """A copy of the finished 3 × 3 run at folder/run."""
    global _template
    if _template is None:
        scratch = Path(tempfile.mkdtemp(prefix="sweeper-vote-study-"))
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        (scratch / "votes.yaml").write_text(SPEC, encoding="utf-8")
        result = CliRunner().invoke(
            main, ["run", str(scratch / "votes.yaml"), "--offline", "--out", str(scratch / "run")]
        )
        assert result.exit_code == 0, result.output
        _template = scratch / "run"
    return Path(shutil.copytree(_template, folder / "run"))


def files_by_cell(run_dir: Path) -> dict[tuple[int, float], str]:
    """The manifest `file` of each (seed, guidance)."""
    frame = pd.read_parquet(run_dir / "manifest.parquet")
    return {(int(r.seed), float(r.guidance)): r.file for r in frame.itertuples()}
