"""A study answers its question: the done-when of issues 12 and 13, through the CLI.

The zipped study (two photos, each with its own prompt, × 3 seeds × 2 guidance
values) gets scored by a plugin and reported; the 3 × 3 vote study gets blind
pairwise votes and stars, and its report ranks the values.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image, ImageStat
from vote_study import files_by_cell, make_vote_run
from zipped_study import IMAGES, zipped_run

from sweeper.cli import main

PLUGIN = """
from PIL import ImageStat


def red_mean(output, input, row):
    return ImageStat.Stat(output.convert("RGB")).mean[0]
"""


def cli(*argv: str):
    return CliRunner().invoke(main, list(argv))


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "study_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "study_plugin:red_mean"
    sys.modules.pop("study_plugin", None)


def test_the_zipped_study_is_scored_reported_on_two_sheets_and_pivoted(tmp_path, plugin_path):
    run_dir = zipped_run(tmp_path)
    scored = cli("score", str(run_dir), "--scorer", plugin_path, "--no-builtin")
    assert scored.exit_code == 0, scored.output
    scores = pd.read_parquet(run_dir / "scores.parquet")
    assert len(scores) == IMAGES
    for row in scores.itertuples():
        with Image.open(run_dir / row.file) as image:
            assert math.isclose(row.red_mean, ImageStat.Stat(image.convert("RGB")).mean[0])

    reported = cli("report", str(run_dir), "--x", "guidance", "--y", "seed", "--thumb", "64")
    assert reported.exit_code == 0, reported.output
    report = run_dir / "report"
    assert len(list(report.glob("sheet-*.png"))) == 2  # one per zip row, never 4
    page = (report / "index.html").read_text(encoding="utf-8")
    assert "image+prompt" in page and "prompt=deep fog over the street" in page

    frame = pd.read_parquet(run_dir / "manifest.parquet").merge(scores, on="file")
    done = frame[frame["status"] == "succeeded"]
    pivot = pd.read_csv(report / "pivot.csv")
    for measure in ("red_mean", "bytes"):
        want = done.groupby(["guidance", "seed"])[measure].mean()
        got = pivot[pivot["measure"] == measure]
        assert len(got) == len(want) == 6
        for row in got.itertuples():
            assert math.isclose(row.mean, want[(row.x, row.y)], rel_tol=1e-9)
    summary = pd.read_csv(report / "summary.csv")
    assert "image+prompt" in set(summary["axis"]) and "red_mean" in set(summary["measure"])


@pytest.mark.parametrize("axis", ["prompt", "image", "image+prompt"])
def test_a_zip_member_or_the_group_names_the_same_axis(tmp_path, axis):
    run_dir = zipped_run(tmp_path)
    reported = cli("report", str(run_dir), "--x", axis, "--y", "seed", "--thumb", "32")
    assert reported.exit_code == 0, reported.output
    assert len(list((run_dir / "report").glob("sheet-*.png"))) == 2  # one per guidance


def test_where_filters_and_out_writes_elsewhere(tmp_path):
    run_dir = zipped_run(tmp_path)
    out = tmp_path / "elsewhere"
    reported = cli(
        "report", str(run_dir), "--where", "guidance >= 5 and format == 'png'",
        "--out", str(out), "--thumb", "32",
    )  # fmt: skip
    assert reported.exit_code == 0, reported.output
    assert not (run_dir / "report").exists()
    summary = pd.read_csv(out / "summary.csv")
    assert "guidance" not in set(summary["axis"])  # one value left: no longer an axis
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "../run/images/" in page  # links reach the run folder from wherever the report is


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("guidence > 3", "no column `guidence`; did you mean `guidance`?"),
        ("steps > 3", "no column `steps`; did you mean `num_inference_steps`?"),
        ("guidance >", "not a valid query"),
    ],
)
def test_a_bad_where_is_one_line(tmp_path, where, message):
    run_dir = zipped_run(tmp_path)
    reported = cli("report", str(run_dir), "--where", where)
    assert reported.exit_code == 2
    [line] = reported.stderr.strip().splitlines()
    assert message in line


def test_votes_rank_guidance_five_first_with_six_wins(tmp_path):
    run_dir = make_vote_run(tmp_path)
    cells = files_by_cell(run_dir)
    for seed in (1, 2, 3):
        for other in (2.5, 7.5):
            voted = cli("prefer", str(run_dir), cells[seed, 5.0], cells[seed, other])
            assert voted.exit_code == 0, voted.output
        rated = cli("rate", str(run_dir), cells[seed, 5.0], "--stars", "5", "--rater", "ana")
        assert rated.exit_code == 0, rated.output
    assert cli("rate", str(run_dir), cells[1, 2.5], "--stars", "6").exit_code == 2
    reported = cli("report", str(run_dir), "--thumb", "32")
    assert reported.exit_code == 0, reported.output
    ranking = pd.read_csv(run_dir / "report" / "ranking.csv")
    assert list(ranking.columns) == [
        "axis", "value", "comparisons", "wins", "losses", "ties", "win_rate", "strength",
        "strength_low", "strength_high",
    ]  # fmt: skip
    guidance = ranking[ranking["axis"] == "guidance"]
    first = guidance.iloc[0]
    assert (first["value"], first["wins"]) == (5.0, 6)
    assert (run_dir / "report" / "plots" / "ranking--guidance.png").is_file()
    manifest = pd.read_parquet(run_dir / "manifest.parquet")
    fives = manifest[manifest["guidance"] == 5.0]
    assert fives["stars_mean"].tolist() == [5.0] * 3
    summary = pd.read_csv(run_dir / "report" / "summary.csv")
    stars = summary[(summary["measure"] == "stars") & (summary["axis"] == "guidance")]
    assert stars["value"].tolist() == [5.0] and stars["mean"].tolist() == [5.0]
