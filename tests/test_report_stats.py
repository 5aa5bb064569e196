"""Summaries that say which value is better: `stats.summarise`, `stats.pivot` and the plots.

The numbers come from the offline zipped study (tests/zipped_study.py) joined
with a real scores table; the latency-per-request rule and the interval are
also checked on small frames whose answers are known by hand.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from zipped_study import GUIDANCES, PROMPTS, SEEDS, zipped_run

from sweeper.report.plots import write_plots
from sweeper.report.stats import (
    PIVOT_COLUMNS,
    SUMMARY_COLUMNS,
    bootstrap_interval,
    default_measures,
    pivot,
    summarise,
)
from sweeper.score.plugins import Scorer
from sweeper.score.scoring import score_run
from sweeper.score.table import join_scores, read_scores

AXES = ["prompt", "seed", "guidance"]


def red_mean(output: Image.Image, input: Image.Image, row: dict) -> float:
    return float(np.asarray(output)[..., 0].mean())


def constant(output: Image.Image, input: Image.Image, row: dict) -> float:
    return 0.5


@pytest.fixture(scope="module")
def study_frame(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The zipped study's manifest joined with two scores, one job marked failed."""
    run_dir = zipped_run(tmp_path_factory.mktemp("stats"))
    scorers = [Scorer("red_mean", "1", "t:red", red_mean), Scorer("constant", "1", "t:c", constant)]
    score_run(run_dir, scorers, builtin=False, workers=1)
    frame = join_scores(pd.read_parquet(run_dir / "manifest.parquet"), read_scores(run_dir))
    # A failed job's row must count in no mean; give it values that would show if it did.
    frame.loc[0, ["status", "latency_s", "bytes", "red_mean"]] = ["failed", 999.0, 10**9, 999.0]
    return frame


@pytest.fixture(scope="module")
def measures(study_frame: pd.DataFrame) -> list[str]:
    return default_measures(study_frame, ["red_mean", "constant"])


def test_pivot_means_equal_a_plain_groupby(study_frame: pd.DataFrame, measures: list[str]) -> None:
    table = pivot(study_frame, "guidance", "seed", measures)
    assert list(table.columns) == PIVOT_COLUMNS
    assert len(table) == len(GUIDANCES) * len(SEEDS) * len(measures)
    done = study_frame[study_frame["status"] == "succeeded"]
    expected = done.groupby(["guidance", "seed"])[measures].agg(["mean", "count"])
    for row in table.itertuples():
        mean, count = (
            expected.loc[(row.x, row.y), (row.measure, "mean")],
            expected.loc[(row.x, row.y), (row.measure, "count")],
        )
        assert row.mean == pytest.approx(mean, rel=1e-12), (row.x, row.y, row.measure)
        assert row.n == count
        assert row.ci_low <= row.mean <= row.ci_high or row.n < 2


def test_summary_has_a_row_per_axis_value_and_measure(
    study_frame: pd.DataFrame, measures: list[str]
) -> None:
    summary = summarise(study_frame, AXES, measures)
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert len(summary) == (len(PROMPTS) + len(SEEDS) + len(GUIDANCES)) * len(measures)
    seeds = summary[(summary["axis"] == "seed") & (summary["measure"] == "red_mean")]
    assert seeds["value"].tolist() == list(SEEDS)  # ints stay ints beside float guidance
    done = study_frame[study_frame["status"] == "succeeded"]
    for axis in AXES:
        expected = done.groupby(axis)[measures].mean()
        rows = summary[summary["axis"] == axis]
        for row in rows.itertuples():
            assert row.mean == pytest.approx(expected.loc[row.value, row.measure], rel=1e-12)
    # 4 images per guidance value in the 12, one of the guidance 2.5 ones failed.
    counts = summary[(summary["axis"] == "guidance") & (summary["measure"] == "bytes")]
    assert counts["n"].tolist() == [5, 6]


def test_intervals_are_reproducible_and_contain_the_mean(
    study_frame: pd.DataFrame, measures: list[str]
) -> None:
    first = summarise(study_frame, AXES, measures)
    again = summarise(study_frame, AXES, measures)
    pd.testing.assert_frame_equal(first, again)
    assert ((first["ci_low"] <= first["mean"]) & (first["mean"] <= first["ci_high"])).all()
    flat = first[first["measure"] == "constant"]  # no spread, so no width
    assert (flat["ci_low"] == flat["ci_high"]).all()
    spread = first[first["measure"] == "red_mean"]
    assert (spread["ci_low"] < spread["ci_high"]).all()


def test_latency_is_counted_per_request_and_bytes_per_image() -> None:
    frame = pd.DataFrame(
        {
            "job_id": ["a", "a", "a", "b"],  # job a made three images in one 10 s request
            "status": ["succeeded"] * 4,
            "guidance": [3.0] * 4,
            "seed": [1, 1, 1, 2],
            "latency_s": [10.0, 10.0, 10.0, 1.0],
            "bytes": [100, 200, 300, 400],
        }
    )
    summary = summarise(frame, ["guidance"], ["latency_s", "bytes"]).set_index("measure")
    assert (summary.loc["latency_s", "n"], summary.loc["latency_s", "mean"]) == (2, 5.5)
    assert (summary.loc["bytes", "n"], summary.loc["bytes", "mean"]) == (4, 250.0)
    cell = pivot(frame, "guidance", "seed", ["latency_s"]).set_index("y")
    assert (cell.loc[1, "n"], cell.loc[1, "mean"]) == (1, 10.0)


def test_the_bootstrap_interval_is_about_two_standard_errors_wide() -> None:
    values = np.random.default_rng(5).normal(10.0, 2.0, size=2_000)
    low, high = bootstrap_interval(values)
    half_width = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.1)
    assert low < values.mean() < high
    assert all(math.isnan(v) for v in bootstrap_interval(np.array([3.0])))
    assert bootstrap_interval(np.array([2.0, 2.0, 2.0])) == (2.0, 2.0)


def test_nan_scores_are_left_out_of_n_and_the_mean() -> None:
    frame = pd.DataFrame({"status": ["succeeded"] * 3, "seed": [1, 1, 1], "m": [1.0, None, 3.0]})
    row = summarise(frame, ["seed"], ["m"]).iloc[0]
    assert (row["n"], row["mean"]) == (2, 2.0)


def test_plots_are_one_png_per_axis_and_measure_and_one_heat_map_per_measure(
    study_frame: pd.DataFrame, tmp_path: Path
) -> None:
    measures = ["red_mean", "latency_s"]
    summary = summarise(study_frame, AXES, measures)
    table = pivot(study_frame, "guidance", "seed", measures)
    paths = write_plots(summary, table, tmp_path / "plots", x="guidance", y="seed")

    expected = {f"{a}--{m}.png" for a in AXES for m in measures}
    expected |= {f"pivot--{m}.png" for m in measures}
    assert {p.name for p in paths} == expected
    assert all(p.parent == tmp_path / "plots" for p in paths)
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.width > 300
            assert len(image.convert("L").getcolors(1 << 16) or []) > 10  # something is drawn
