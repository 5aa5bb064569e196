"""Bradley–Terry rankings per axis, star summaries and per-image vote columns."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from vote_study import GUIDANCES, SEEDS, files_by_cell, make_vote_run

from sweeper.ranking import (
    MANIFEST_VOTE_COLUMNS,
    PRIOR_TIES,
    RANKING_COLUMNS,
    STAR_COLUMNS,
    axis_outcomes,
    empty_votes,
    fit_strengths,
    manifest_vote_columns,
    pair_axis,
    ranking_table,
    star_summary,
)
from sweeper.votes import list_votes, record_favourite, record_preference, record_stars

# ---- the Bradley–Terry fit against cases with a known answer


def test_two_values_differ_by_the_log_odds_of_their_record_with_the_prior_tie():
    # a beat b 7 times and lost 2: the MLE of the log-odds, with one virtual tie, is exact.
    a = np.array([0] * 7 + [1] * 2)
    b = np.array([1] * 7 + [0] * 2)
    strength = fit_strengths(2, a, b, np.ones(9))
    expected = math.log((7 + PRIOR_TIES / 2) / (2 + PRIOR_TIES / 2))
    assert strength[0] - strength[1] == pytest.approx(expected, abs=1e-6)
    assert strength.sum() == pytest.approx(0, abs=1e-9)


def test_a_tie_is_half_a_win_each_way():
    # 2 wins and 2 ties for a is the record of 3 wins and 1 loss.
    with_ties = fit_strengths(2, np.array([0, 0, 0, 0]), np.array([1, 1, 1, 1]),
                              np.array([1, 1, 0.5, 0.5]))  # fmt: skip
    decided = fit_strengths(2, np.array([0, 0, 0, 1]), np.array([1, 1, 1, 0]), np.ones(4))
    np.testing.assert_allclose(with_ties, decided, atol=1e-9)
    only_ties = fit_strengths(2, np.array([0, 1]), np.array([1, 0]), np.array([0.5, 0.5]))
    np.testing.assert_allclose(only_ties, [0, 0], atol=1e-9)


def test_the_fit_solves_the_bradley_terry_likelihood_equations():
    # At the maximum, each value's observed score equals its expected score:
    # sum_j n_ij p_ij = sum_j w_ij, whatever algorithm found it.
    rng = np.random.default_rng(4)
    n, m = 5, 200
    a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = a != b
    a, b = a[keep], b[keep]
    score = rng.choice([0.0, 0.5, 1.0], size=len(a), p=[0.3, 0.1, 0.6])
    strength = fit_strengths(n, a, b, score)
    won = np.full((n, n), PRIOR_TIES / 2)
    np.fill_diagonal(won, 0)
    np.add.at(won, (a, b), score)
    np.add.at(won, (b, a), 1 - score)
    games = won + won.T
    p = 1 / (1 + np.exp(strength[None, :] - strength[:, None]))
    np.testing.assert_allclose((games * p).sum(axis=1), won.sum(axis=1), rtol=1e-6)


def test_many_votes_recover_the_strengths_that_made_them():
    rng = np.random.default_rng(5)
    truth = np.array([-1.0, 0.0, 0.5, 1.5])
    truth -= truth.mean()
    a, b = rng.integers(0, 4, 20000), rng.integers(0, 4, 20000)
    keep = a != b
    a, b = a[keep], b[keep]
    won = rng.random(len(a)) < 1 / (1 + np.exp(truth[b] - truth[a]))
    np.testing.assert_allclose(fit_strengths(4, a, b, won.astype(float)), truth, atol=0.08)


# ---- on a real run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_vote_run(tmp_path)


def manifest(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "manifest.parquet")


def vote_for_guidance_five(run_dir: Path) -> None:
    """The done-when of issue 13: 5.0 beats 2.5 and 7.5 for every seed; its images get 5 stars."""
    cell = files_by_cell(run_dir)
    for seed in SEEDS:
        record_preference(run_dir, cell[seed, 5.0], cell[seed, 2.5], rater="ana")
        record_preference(run_dir, cell[seed, 5.0], cell[seed, 7.5], rater="ana")
        record_stars(run_dir, cell[seed, 5.0], 5, rater="ana")


def test_guidance_five_ranks_first_with_six_wins(run_dir):
    vote_for_guidance_five(run_dir)
    table = ranking_table(manifest(run_dir), list_votes(run_dir))
    assert list(table.columns) == RANKING_COLUMNS
    assert table["axis"].tolist() == ["guidance"] * 3
    first = table.iloc[0]
    assert first["value"] == 5.0
    assert (first["comparisons"], first["wins"], first["losses"], first["ties"]) == (6, 6, 0, 0)
    assert first["win_rate"] == 1.0
    for value in (2.5, 7.5):
        row = table[table["value"] == value].iloc[0]
        assert (row["comparisons"], row["wins"], row["losses"]) == (3, 0, 3)
        assert row["strength_high"] < first["strength_low"]
    assert np.isfinite(table[["strength", "strength_low", "strength_high"]].to_numpy()).all()
    assert (table["strength_low"] <= table["strength"]).all()
    assert (table["strength"] <= table["strength_high"]).all()
    assert table["strength"].sum() == pytest.approx(0, abs=1e-9)


def test_the_vote_columns_show_the_stars_of_guidance_five(run_dir):
    import sweeper
    from sweeper.journal import Journal
    from sweeper.manifest import write_manifest

    frame = manifest(run_dir)
    assert frame[MANIFEST_VOTE_COLUMNS].isna().all().all()  # no votes yet: empty columns
    vote_for_guidance_five(run_dir)
    joined = sweeper.open_run(run_dir).manifest()  # the journal's manifest, votes included
    with Journal.open_existing(run_dir) as journal:
        write_manifest(journal, run_dir)
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "manifest.parquet"), joined)
    assert list(joined.columns[-len(MANIFEST_VOTE_COLUMNS) :]) == MANIFEST_VOTE_COLUMNS
    assert joined["file"].tolist() == frame["file"].tolist()
    five = joined["guidance"] == 5.0
    assert joined.loc[five, "stars_mean"].tolist() == [5.0] * 3
    assert joined.loc[five, "stars_n"].tolist() == [1] * 3
    assert (
        joined.loc[five, ["pref_wins", "pref_losses", "pref_ties"]].values.tolist()
        == [[2, 0, 0]] * 3
    )
    assert joined.loc[~five, "stars_mean"].isna().all()
    assert joined.loc[~five, "pref_losses"].tolist() == [1] * 6
    assert joined["favourite"].isna().all()
    # Written to CSV, a missing vote is an empty cell.
    csv_rows = pd.read_csv(run_dir / "manifest.csv", dtype=str, keep_default_na=False)
    row = csv_rows.loc[(~five).to_numpy()].iloc[0]
    assert ",".join(row[MANIFEST_VOTE_COLUMNS]) == ",,,0,1,0"


def test_a_pair_counts_for_an_axis_only_when_it_differs_in_that_axis_alone(run_dir):
    cell = files_by_cell(run_dir)
    frame = manifest(run_dir)
    assert pair_axis(frame, cell[1, 5.0], cell[1, 2.5]) == "guidance"
    assert pair_axis(frame, cell[1, 5.0], cell[2, 5.0]) == "seed"
    assert pair_axis(frame, cell[1, 5.0], cell[2, 2.5]) is None
    assert pair_axis(frame, cell[1, 5.0], "images/gone_0.webp") is None

    record_preference(run_dir, cell[1, 5.0], cell[2, 2.5], rater="ana")  # two axes: no axis
    record_preference(run_dir, cell[3, 7.5], cell[1, 7.5], rater="ana")  # seed 3 over seed 1
    record_preference(run_dir, cell[2, 2.5], cell[2, 7.5], tie=True, rater="ana")
    votes = list_votes(run_dir)
    outcomes = axis_outcomes(frame, votes)
    assert outcomes.values.tolist() == [["seed", 3, 1, 1.0], ["guidance", 2.5, 7.5, 0.5]]

    table = ranking_table(frame, votes, resamples=50)
    assert table["axis"].tolist() == ["guidance"] * 3 + ["seed"] * 3
    seeds = table[table["axis"] == "seed"].set_index("value")
    assert seeds.loc[3, ["wins", "losses", "comparisons"]].tolist() == [1, 0, 1]
    assert seeds.loc[2, "comparisons"] == 0 and math.isnan(seeds.loc[2, "strength"])
    assert table[table["axis"] == "seed"]["value"].tolist() == [3, 1, 2]  # unvoted value last
    guidance = table[table["axis"] == "guidance"].set_index("value")
    assert guidance.loc[2.5, ["ties", "win_rate"]].tolist() == [1, 0.5]
    # The two-axis vote still counts for its images.
    columns = manifest_vote_columns(frame, votes).set_index("file")
    assert columns.loc[cell[1, 5.0], "pref_wins"] == 1
    assert columns.loc[cell[2, 2.5], ["pref_wins", "pref_losses", "pref_ties"]].tolist() == [
        0,
        1,
        1,
    ]


def test_the_bounds_are_reproducible_and_each_axis_has_its_own_stream(run_dir):
    vote_for_guidance_five(run_dir)
    frame = manifest(run_dir)
    first = ranking_table(frame, list_votes(run_dir), resamples=100)
    again = ranking_table(frame, list_votes(run_dir), resamples=100)
    pd.testing.assert_frame_equal(first, again)
    other_seed = ranking_table(frame, list_votes(run_dir), resamples=100, seed=99)
    assert not np.allclose(first["strength_low"], other_seed["strength_low"])

    cell = files_by_cell(run_dir)
    record_preference(run_dir, cell[2, 5.0], cell[1, 5.0], rater="ana")
    with_seed_vote = ranking_table(frame, list_votes(run_dir), resamples=100)
    guidance = with_seed_vote[with_seed_vote["axis"] == "guidance"].reset_index(drop=True)
    pd.testing.assert_frame_equal(guidance, first)


def test_star_summary_takes_each_raters_latest_rating_per_image(run_dir):
    cell = files_by_cell(run_dir)
    record_stars(run_dir, cell[1, 5.0], 1, rater="ana")
    record_stars(run_dir, cell[1, 5.0], 5, rater="ana")  # ana changed her mind
    record_stars(run_dir, cell[1, 5.0], 4, rater="ben")
    record_stars(run_dir, cell[2, 5.0], 3, rater="ana")
    record_stars(run_dir, cell[1, 2.5], 2, rater="ana")
    record_favourite(run_dir, cell[1, 2.5], rater="ben")
    frame, votes = manifest(run_dir), list_votes(run_dir)

    summary = star_summary(frame, votes, resamples=500)
    assert list(summary.columns) == STAR_COLUMNS
    assert set(summary["measure"]) == {"stars"}
    by_value = summary[summary["axis"] == "guidance"].set_index("value")
    assert by_value.loc[5.0, ["n", "mean"]].tolist() == [2, (4.5 + 3) / 2]
    assert by_value.loc[5.0, "ci_low"] == pytest.approx(3.0)
    assert by_value.loc[5.0, "ci_high"] == pytest.approx(4.5)
    assert by_value.loc[2.5, "n"] == 1 and math.isnan(by_value.loc[2.5, "ci_low"])
    assert by_value.loc[7.5, "n"] == 0 and math.isnan(by_value.loc[7.5, "mean"])
    assert summary["axis"].tolist() == ["guidance"] * 3 + ["seed"] * 3

    columns = manifest_vote_columns(frame, votes).set_index("file")
    assert columns.loc[cell[1, 5.0], ["stars_mean", "stars_n"]].tolist() == [4.5, 2]
    assert columns["favourite"].dtype == "boolean"
    assert columns.loc[cell[1, 2.5], "favourite"]
    assert columns["favourite"].sum() == 1
    assert columns.loc[cell[1, 5.0], "pref_wins"] is pd.NA


def test_no_votes_give_empty_tables_and_empty_columns(run_dir):
    frame = manifest(run_dir)
    for votes in (empty_votes(), list_votes(run_dir)):
        assert ranking_table(frame, votes).empty
        assert list(ranking_table(frame, votes).columns) == RANKING_COLUMNS
        assert star_summary(frame, votes).empty
        columns = manifest_vote_columns(frame, votes)
        assert len(columns) == len(SEEDS) * len(GUIDANCES)
        assert columns[MANIFEST_VOTE_COLUMNS].isna().all().all()
