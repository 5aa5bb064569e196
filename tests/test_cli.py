"""The command line as a person meets it: help text, usage mistakes, and what a run prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sweeper.cli import main
from sweeper.display import LogLines, configure_logging, print_summary
from sweeper.progress import RunCounts
from sweeper.run_result import RunResult

REPO = Path(__file__).resolve().parent.parent
COMMANDS = [
    "plan", "run", "status", "report", "reproduce", "export", "serve", "repair", "review",
    "rate", "prefer", "votes", "score", "diff", "pack", "unpack", "push", "pull",
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_explains_itself_with_an_example(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and f"sweeper {command}" in result.output


def test_the_top_level_help_lists_every_command():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s", result.output, re.MULTILINE), command


@pytest.mark.parametrize(
    "argv",
    [
        ["plan"],
        ["plan", "sweeps/demo.yaml", "--limt", "3"],
        ["run", "sweeps/demo.yaml", "--concurrency", "0"],
        ["run", "sweeps/demo.yaml", "--offline", "--rpm", "nan"],
        ["run", "sweeps/demo.yaml", "--offline", "--rpm", "inf"],
        ["run", "sweeps/demo.yaml", "--offline", "--rpm", "-5"],
        ["frobnicate"],
    ],
)
def test_usage_mistakes_exit_2_without_a_traceback(argv):
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit) and "Error:" in result.output


def test_a_folder_given_as_the_spec_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["plan", str(tmp_path)])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "is a directory" in line


def test_python_dash_m_runs_the_same_cli():
    result = subprocess.run(
        [sys.executable, "-m", "sweeper", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "sweeper, version" in result.stdout


def test_the_plan_table_shows_whole_job_ids_on_an_80_column_terminal():
    spec = REPO / "sweeps" / "portrait-depth-study.yaml"
    result = CliRunner(env={"COLUMNS": "80"}).invoke(main, ["plan", str(spec), "--limit", "3"])
    assert result.exit_code == 0
    table_rows = [line for line in result.stdout.splitlines() if re.match(r"^ ?\d+\s", line)]
    assert len(table_rows) == 3
    for line in table_rows:
        assert re.search(r"\b[0-9a-f]{16}\b", line), line
        assert "…" not in line and len(line) <= 80


def test_the_plan_table_folds_long_prompts_and_keeps_the_numbers_at_80_columns():
    spec = REPO / "sweeps" / "ab-study.yaml"
    result = CliRunner(env={"COLUMNS": "80"}).invoke(main, ["plan", str(spec), "--limit", "2"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "job_id" in line)
    assert all(name in header for name in ("seed", "guidance", "image", "prompt"))
    rows = [line for line in lines if re.match(r"^ ?\d+\s+[0-9a-f]{16}\s", line)]
    assert len(rows) == 2
    for row in rows:
        assert re.search(r"[0-9a-f]{16}\s+[123]\s+(2\.5|5\.0)\s", row), row  # seed, guidance
        assert len(row) <= 80
    assert "shallow" in result.stdout and "depth of field" in result.stdout  # folded, all there


def test_without_a_terminal_progress_is_plain_timestamped_lines(capsys):
    configure_logging()
    lines_display = LogLines(interval_s=0.0)
    lines_display.started(10)
    lines_display.changed(RunCounts(total=10, succeeded=3, failed=1, in_flight=2, images=6))
    lines = capsys.readouterr().err.strip().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "
    assert re.fullmatch(stamp + "sweeper: starting 10 jobs", lines[0]), lines[0]
    assert re.match(stamp + "sweeper: ", lines[1]), lines[1]
    assert "4/10 jobs done (3 ok, 1 failed" in lines[1] and "2 in flight" in lines[1]


def test_the_summary_title_is_short_even_when_the_abort_reason_is_long(capsys):
    reason = "could not upload inputs/a.jpg to http://127.0.0.1:9 " + "x" * 200
    result = RunResult(
        run_dir=Path("results/x"),
        outcome="aborted",
        jobs=5,
        succeeded=0,
        failed=5,
        pending=0,
        requests_sent=0,
        this_run=RunCounts(total=5, failed=5),
        duration_s=1.0,
        api_base="http://127.0.0.1:9",
        reason="upload_failed",
        message=reason,
    )
    print_summary(result)
    err = capsys.readouterr().err
    assert "sweep aborted" in err and "could not upload" not in err
