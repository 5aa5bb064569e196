"""The run folder is claimed before anything is sent: one run at a time, one spec per folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from sweeper.cli import main
from sweeper.errors import SpecError
from sweeper.run_folder import claim_run_dir

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "sweeps" / "demo.yaml"


def run_demo(run_dir: Path):
    return CliRunner().invoke(main, ["run", str(DEMO), "--offline", "--out", str(run_dir)])


def test_a_second_run_into_a_busy_folder_is_refused_before_sending(tmp_path):
    run_dir = tmp_path / "run"
    with claim_run_dir(run_dir, "demo", "http://127.0.0.1:1"):
        result = run_demo(run_dir)
    assert result.exit_code == 2, result.output
    assert "another sweeper run is using this folder" in result.stderr
    assert not (run_dir / "journal.sqlite").exists()


def test_the_claim_ends_with_the_run_that_held_it(tmp_path):
    run_dir = tmp_path / "run"
    with claim_run_dir(run_dir, "demo", "http://127.0.0.1:1"):
        pass
    with claim_run_dir(
        run_dir, "demo", "http://127.0.0.1:1"
    ):  # would raise if the first were still held
        pass


def test_a_folder_holding_another_specs_run_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"spec_name": "portrait-depth-study"}))
    result = run_demo(run_dir)
    assert result.exit_code == 2
    assert "holds a run of spec 'portrait-depth-study', not 'demo'" in result.stderr
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash


def test_an_unwritable_folder_is_one_line_not_a_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_demo(blocker / "run")
    assert result.exit_code == 2
    assert "cannot write the run folder" in result.stderr and "--out" in result.stderr
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash


def test_an_offline_run_resumes_offline_but_is_never_taken_for_the_api(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    assert run_demo(run_dir).exit_code == 0
    again = run_demo(run_dir)  # another simulator on another port: still "offline"
    assert again.exit_code == 0
    record = json.loads((run_dir / "run.json").read_text())
    assert record["offline"] and record["this_run"]["skipped"] == 18
    monkeypatch.setenv("ONEMIN_API_KEY", "k")
    monkeypatch.setenv("ONEMIN_API_BASE", "http://127.0.0.1:1")
    real = CliRunner().invoke(main, ["run", str(DEMO), "--out", str(run_dir)])
    assert real.exit_code == 2
    assert "holds results from the offline simulator" in real.stderr
    assert "would send to http://127.0.0.1:1" in real.stderr


def test_results_from_one_api_are_not_resumed_against_another(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(
        json.dumps({"spec_name": "demo", "api_base": "https://api.1min.ai", "offline": False})
    )
    with pytest.raises(SpecError, match=r"holds results from https://api\.1min\.ai"):
        claim_run_dir(run_dir, "demo", "https://gateway.example")
    with claim_run_dir(run_dir, "demo", "https://api.1min.ai"):
        pass


def test_a_manifest_that_cannot_be_written_is_exit_3_and_leaves_no_part_file(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / ".manifest.parquet.part").mkdir(parents=True)  # as unwritable as a full disk
    result = run_demo(run_dir)
    assert result.exit_code == 3, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("sweeper: error: could not write the manifest")
    assert f"sweeper export {run_dir}" in last
    assert not (run_dir / ".manifest.csv.part").exists()


def test_an_error_of_the_machine_is_one_line_and_exit_3(capsys):
    from sweeper.cli import reports_errors

    @reports_errors
    def fails() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(SystemExit) as exited:
        fails()
    assert exited.value.code == 3
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("sweeper: error: [Errno 28] No space left on device")


def test_a_bug_is_exit_4_with_its_whole_traceback_in_crash_log(tmp_path, capsys):
    from sweeper.cli import reports_errors

    @reports_errors
    def buggy(run_dir: Path) -> None:
        try:
            raise ValueError("the cause")
        except ValueError as cause:
            raise KeyError("a bug") from cause

    with pytest.raises(SystemExit) as exited:
        buggy(run_dir=tmp_path)
    assert exited.value.code == 4
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "internal error: KeyError" in line and str(tmp_path / "crash.log") in line
    log = (tmp_path / "crash.log").read_text()
    assert "Traceback" in log and "ValueError: the cause" in log and "KeyError: 'a bug'" in log


def as_nobody() -> list[str]:
    """The command prefix that drops root, so that a read-only folder really is one."""
    import shutil
    import subprocess
    import sys

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a command as an unprivileged user")
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import sweeper"], capture_output=True, cwd="/"
    )
    if probe.returncode != 0:
        pytest.skip("an unprivileged user cannot read this checkout or its virtualenv")
    return prefix


@pytest.fixture
def outside_pytest_tmp():
    """A folder other users can reach: any pytest starting elsewhere re-tightens its own
    /tmp/pytest-of-<user> to 0700, which would race a chmod of that tree's parents."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="sweeper-read-only-"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755)
    shutil.rmtree(folder)


def test_a_read_only_folder_can_be_read_and_is_refused_in_one_line_for_writes(
    outside_pytest_tmp,
):
    import stat
    import subprocess
    import sys

    prefix = as_nobody()
    folder = outside_pytest_tmp / "shared"
    run_demo(folder / "run")
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(
            mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
            | stat.S_IROTH
            | (stat.S_IXOTH if path.is_dir() else 0)
        )
    run_dir = folder / "run"

    def sweeper(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, sys.executable, "-m", "sweeper", *argv],
            capture_output=True,
            text=True,
            cwd="/",
            timeout=60,
            env={"PATH": os.environ["PATH"], "HOME": "/tmp"},
        )

    status = sweeper("status", str(run_dir))
    assert status.returncode == 0, status.stderr
    assert "jobs: 18" in status.stdout and "a rerun would send 0 requests" in status.stdout
    demo = str(REPO / "sweeps" / "demo.yaml")
    for argv in (
        ("run", demo, "--offline", "--out", str(run_dir)),
        ("repair", str(run_dir)),
        ("rate", str(run_dir), _first_image(run_dir), "--stars", "3"),
    ):
        refused = sweeper(*argv)
        assert refused.returncode == 2, (argv, refused.stderr)
        [line] = refused.stderr.strip().splitlines()[-1:]
        assert "the folder is read-only" in line, (argv, refused.stderr)


def _first_image(run_dir: Path) -> str:
    import pandas as pd

    return str(pd.read_parquet(run_dir / "manifest.parquet")["file"].iloc[0])


@pytest.mark.parametrize(
    "command", ["status", "report", "review", "score", "votes", "repair", "history", "pack"]
)
def test_a_file_or_a_missing_folder_given_as_dir_is_named_in_one_line(tmp_path, command):
    a_file = tmp_path / "manifest.csv"
    a_file.write_text("file\n")
    for given, says in (
        (a_file, "is a file, not a run folder"),
        (tmp_path / "nowhere", "no such run folder; `sweeper run SPEC --out"),
    ):
        result = CliRunner().invoke(main, [command, str(given)])
        assert result.exit_code == 2, (command, result.output)
        assert "Traceback" not in result.output and "Usage:" not in result.output
        assert says in result.output.strip().splitlines()[-1], (command, result.output)


def test_an_output_path_that_is_a_fifo_or_a_device_is_refused_and_left_alone(tmp_path):
    # Run as root, a rename over `--out /dev/null` would swap the device for a file.
    run_dir = tmp_path / "run"
    assert run_demo(run_dir).exit_code == 0
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    for argv in (
        ["pack", str(run_dir), "--output", str(fifo)],
        ["export", str(run_dir), "--to", str(fifo)],
        ["report", str(run_dir), "--out", str(fifo)],
        ["diff", str(run_dir), str(run_dir), "--out", str(fifo)],
        ["run", str(DEMO), "--offline", "--out", str(fifo)],
    ):
        result = CliRunner().invoke(main, argv)
        assert result.exit_code == 2, (argv, result.output)
        assert f"{fifo}: is a FIFO (named pipe), not a " in result.output.strip().splitlines()[-1]
        assert fifo.is_fifo(), argv
    assert not list(tmp_path.glob(".pipe.csv*"))
