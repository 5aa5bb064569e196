"""A run folder is a record that travels: moved, copied or pulled, it reruns with 0 requests.

Runs go through the real CLI in a child process, against a simulator whose own
counters say how many requests of each kind (uploads, edits, downloads) arrived.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from sweeper.simulator import SimulatorConfig, SimulatorThread

REPO = Path(__file__).resolve().parent.parent
PHOTO = REPO / "sweeps" / "inputs" / "astronaut.jpg"


def write_spec(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    photo = folder / "photo.jpg"
    shutil.copyfile(PHOTO, photo)
    spec = folder / "travel.yaml"
    spec.write_text(
        "name: travel\n"
        "params:\n"
        "  image: photo.jpg            # relative to this spec\n"
        "  prompt: a quiet study of depth\n"
        "  megapixels: '0.25'\n"
        "  format: webp\n"
        "grid:\n"
        "  seed: [1, 2, 3]\n"
        "run:\n"
        "  concurrency: 3\n"
        "  requests_per_minute: null\n"
    )
    return spec


def sweeper(*argv: str, base_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"ONEMIN_API_KEY": "sk-travel-test", "ONEMIN_API_BASE": base_url}
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def requests(sim) -> int:
    counters = sim.state.counters
    return counters["uploads"] + counters["features"] + counters["storage"]


def test_a_moved_run_folder_reruns_from_its_own_spec_with_no_request(tmp_path):
    spec = write_spec(tmp_path / "project")
    with SimulatorThread(SimulatorConfig()) as sim:
        first = sweeper("run", str(spec), "--out", "results/travel", base_url=sim.base_url,
                        cwd=tmp_path / "project")  # fmt: skip
        assert first.returncode == 0, first.stderr
        original = tmp_path / "project" / "results" / "travel"
        moved = tmp_path / "elsewhere" / "archive" / "travel"
        moved.parent.mkdir(parents=True)
        shutil.move(original, moved)
        shutil.rmtree(tmp_path / "project")  # the spec and the photo are gone
        before = requests(sim)
        again = sweeper("run", str(moved / "spec.yaml"), "--out", str(moved),
                        base_url=sim.base_url, cwd=Path("/"))  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert requests(sim) == before  # no upload, no edit, no download
    frozen = yaml.safe_load((moved / "spec.yaml").read_text())
    kept = frozen["params"]["image"]
    assert kept.startswith("inputs/") and (moved / kept).read_bytes() == PHOTO.read_bytes()
    assert "photo.jpg" in (moved / "spec.yaml").read_text()  # the original path, in a comment
    rows = pd.read_parquet(moved / "manifest.parquet")
    assert set(rows["input_file"]) == {kept}
    record = json.loads((moved / "run.json").read_text())
    assert record["this_run"]["requests"] == 0


def test_a_rerun_from_the_original_spec_never_uploads_again(tmp_path):
    spec = write_spec(tmp_path / "project")
    with SimulatorThread(SimulatorConfig()) as sim:
        out = str(tmp_path / "run")
        assert sweeper("run", str(spec), "--out", out, base_url=sim.base_url,
                       cwd=tmp_path).returncode == 0  # fmt: skip
        uploads = sim.state.counters["uploads"]
        (tmp_path / "run" / "images").joinpath(
            pd.read_parquet(tmp_path / "run" / "manifest.parquet")["file"][0].split("/")[1]
        ).unlink()  # one download to redo, and no upload for it
        again = sweeper("run", str(spec), "--out", out, base_url=sim.base_url, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert sim.state.counters["uploads"] == uploads == 1
