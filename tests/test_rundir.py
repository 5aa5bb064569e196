"""The run folder is claimed before anything is sent: one run at a time, one spec per folder."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sweeper.cli import main
from sweeper.rundir import claim_run_dir

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "sweeps" / "demo.yaml"


def run_demo(run_dir: Path):
    return CliRunner().invoke(main, ["run", str(DEMO), "--offline", "--out", str(run_dir)])


def test_a_second_run_into_a_busy_folder_is_refused_before_sending(tmp_path):
    run_dir = tmp_path / "run"
    with claim_run_dir(run_dir, "demo"):
        result = run_demo(run_dir)
    assert result.exit_code == 2, result.output
    assert "another sweeper run is using this folder" in result.stderr
    assert not (run_dir / "journal.sqlite").exists()


def test_the_claim_ends_with_the_run_that_held_it(tmp_path):
    run_dir = tmp_path / "run"
    with claim_run_dir(run_dir, "demo"):
        pass
    with claim_run_dir(run_dir, "demo"):  # would raise if the first were still held
        pass


def test_a_folder_holding_another_specs_run_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"spec_name": "portrait-depth-study"}))
    result = run_demo(run_dir)
    assert result.exit_code == 2
    assert "holds a run of spec 'portrait-depth-study', not 'demo'" in result.stderr
    assert "Traceback" not in result.output


def test_an_unwritable_folder_is_one_line_not_a_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_demo(blocker / "run")
    assert result.exit_code == 2
    assert "cannot write the run folder" in result.stderr and "--out" in result.stderr
    assert "Traceback" not in result.output
