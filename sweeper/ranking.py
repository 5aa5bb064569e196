"""From votes to answers: Bradley–Terry rankings per axis, star summaries, per-image columns.

A pairwise vote counts for axis A when its two images differ in exactly A and
match on every other parameter; it then says which value of A won. Per axis, a
Bradley–Terry model is fitted to those outcomes with `choix` (ties count as half
a win each way). Each pair of values also starts with one virtual tie, a weak
prior that keeps every strength finite when one value has won every vote (the
usual case after a few votes) and pulls values with little evidence towards
each other. Strengths are log-scale and centred on 0 within the axis: value i
beats value j with probability 1 / (1 + exp(strength_j - strength_i)).

Uncertainty comes from a percentile bootstrap over the votes (for stars, over
the rated images) with a fixed seed, so a report is the same every time it is
made from the same votes.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

from sweeper.contract import PARAMETER_NAMES as PARAMETER_COLUMNS
from sweeper.manifest import VOTE_KINDS
from sweeper.report.axis_choice import sort_key
from sweeper.report.stats import CONFIDENCE, bootstrap_interval
from sweeper.votes import FAVOURITE, TIE, VOTE_COLUMNS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

RANKING_COLUMNS = [
    "axis", "value", "comparisons", "wins", "losses", "ties", "win_rate",
    "strength", "strength_low", "strength_high",
]  # fmt: skip
# The same long form as the study summary's summary.csv, so the two can be concatenated.
STAR_COLUMNS = ["axis", "value", "measure", "n", "mean", "ci_low", "ci_high"]
MANIFEST_VOTE_COLUMNS = list(VOTE_KINDS)
BOOTSTRAP_SEED = 13
RESAMPLES = 1000
PRIOR_TIES = 1.0
MAX_ITERATIONS = 10_000


def pair_axis(manifest_frame: pd.DataFrame, file_a: str, file_b: str) -> str | None:
    """The one parameter in which two images differ, or None (none, several, or unknown file)."""
    rows = _parameters_by_file(manifest_frame)
    if file_a not in rows.index or file_b not in rows.index:
        return None
    differing = [c for c in rows.columns if not _same(rows.at[file_a, c], rows.at[file_b, c])]
    return differing[0] if len(differing) == 1 else None


def axis_outcomes(manifest_frame: pd.DataFrame, votes_frame: pd.DataFrame) -> pd.DataFrame:
    """The pairwise votes that count for an axis: columns axis, value_a, value_b, score_a.

    score_a is 1 when value_a won, 0.5 for a tie (value_a is then `file`'s value).
    """
    import pandas as pd

    pairs = votes_frame[votes_frame["mode"] == "pairs"]
    rows = _parameters_by_file(manifest_frame)
    known = pairs["file"].isin(rows.index) & pairs["other_file"].isin(rows.index)
    pairs = pairs[known]
    first = rows.loc[pairs["file"].to_numpy()].reset_index(drop=True)
    second = rows.loc[pairs["other_file"].to_numpy()].reset_index(drop=True)
    differs = ~((first == second) | (first.isna() & second.isna()))
    single = differs.sum(axis=1) == 1
    axes = differs[single].idxmax(axis=1)
    choices = pairs["choice"].to_numpy()[single.to_numpy()]
    return pd.DataFrame(
        {
            "axis": pd.Series(axes.to_numpy(), dtype=object),
            "value_a": pd.Series([first.at[i, a] for i, a in axes.items()], dtype=object),
            "value_b": pd.Series([second.at[i, a] for i, a in axes.items()], dtype=object),
            "score_a": [0.5 if choice == TIE else 1.0 for choice in choices],
        }
    )


def fit_strengths(
    n_values: int, index_a: np.ndarray, index_b: np.ndarray, score_a: np.ndarray
) -> np.ndarray:
    """Bradley–Terry log-strengths (mean 0) of n_values items from outcomes a vs b."""
    import choix
    import numpy as np

    wins = np.full((n_values, n_values), PRIOR_TIES / 2)
    np.fill_diagonal(wins, 0.0)
    np.add.at(wins, (index_a, index_b), score_a)
    np.add.at(wins, (index_b, index_a), 1.0 - score_a)
    return choix.ilsr_pairwise_dense(wins, max_iter=MAX_ITERATIONS)


def ranking_table(
    manifest_frame: pd.DataFrame,
    votes_frame: pd.DataFrame,
    *,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> pd.DataFrame:
    """One row per value of every axis with pairwise votes, strongest first within an axis."""
    import pandas as pd

    outcomes = axis_outcomes(manifest_frame, votes_frame)
    done = _succeeded(manifest_frame)
    records: list[dict[str, Any]] = []
    for axis in [c for c in PARAMETER_COLUMNS if c in set(outcomes["axis"])]:
        values = _axis_values(done, axis)
        records += _rank_axis(axis, values, outcomes[outcomes["axis"] == axis], resamples, seed)
    table = pd.DataFrame.from_records(records, columns=RANKING_COLUMNS)
    table["value"] = pd.Series([r["value"] for r in records], dtype=object)
    for column in ("comparisons", "wins", "losses", "ties"):
        table[column] = table[column].astype("int64")
    return table


def star_summary(
    manifest_frame: pd.DataFrame,
    votes_frame: pd.DataFrame,
    *,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> pd.DataFrame:
    """Mean stars per value of each varied axis, with a bootstrap CI over the rated images.

    An image's stars are the mean of each rater's latest rating of it; `n` counts images.
    """
    import pandas as pd

    scores = _image_stars(votes_frame)
    done = _succeeded(manifest_frame)
    rated = done.merge(scores, on="file", how="inner")
    records = []
    for axis in _varied(done):
        if rated.empty:
            break
        for value in _axis_values(done, axis):
            stars = rated.loc[rated[axis].map(_key) == _key(value), "stars_mean"]
            low, high = bootstrap_interval(
                stars.to_numpy(float), resamples=resamples, rng=_rng(seed, axis, value)
            )
            mean = stars.mean() if len(stars) else float("nan")
            records.append((axis, value, "stars", len(stars), mean, low, high))
    summary = pd.DataFrame.from_records(records, columns=STAR_COLUMNS)
    summary["value"] = pd.Series([r[1] for r in records], dtype=object)
    summary["n"] = summary["n"].astype("int64")
    return summary


def manifest_vote_columns(manifest_frame: pd.DataFrame, votes_frame: pd.DataFrame) -> pd.DataFrame:
    """Per manifest `file`: stars_mean, stars_n, favourite, pref_wins/losses/ties (NA if no votes).

    stars_n counts raters (each rater's latest rating of the file); favourite is
    True when anyone marked it, NA otherwise. Pair counts cover every pairwise
    vote on the file, whether or not the pair counts for an axis.
    """
    import pandas as pd

    files = pd.Series(
        manifest_frame["file"].dropna().drop_duplicates().to_numpy(), name="file", dtype=object
    )
    columns = pd.DataFrame({"file": files})
    columns = columns.merge(_image_stars(votes_frame), on="file", how="left")
    favourites = votes_frame.loc[votes_frame["choice"] == FAVOURITE, "file"]
    columns["favourite"] = pd.array(
        [True if f else pd.NA for f in columns["file"].isin(set(favourites))], dtype="boolean"
    )
    columns = columns.merge(_pair_counts(votes_frame), on="file", how="left")
    columns["stars_mean"] = columns["stars_mean"].astype("Float64")
    for column in ("stars_n", "pref_wins", "pref_losses", "pref_ties"):
        columns[column] = columns[column].astype("Int64")
    return columns[["file", *MANIFEST_VOTE_COLUMNS]]


def empty_votes() -> pd.DataFrame:
    """A votes frame with no rows, shaped like `sweeper.votes.list_votes` output."""
    import pandas as pd

    return pd.DataFrame({column: pd.Series(dtype="string") for column in VOTE_COLUMNS})


def _rank_axis(
    axis: str, values: list[Any], outcomes: pd.DataFrame, resamples: int, seed: int
) -> list[dict[str, Any]]:
    import numpy as np

    position = {_key(v): i for i, v in enumerate(values)}
    index_a = np.array([position[_key(v)] for v in outcomes["value_a"]], dtype=int)
    index_b = np.array([position[_key(v)] for v in outcomes["value_b"]], dtype=int)
    score_a = outcomes["score_a"].to_numpy(float)
    compared = np.unique(np.concatenate([index_a, index_b]))
    # Only values with votes enter the fit; the others have no strength to report.
    local = np.full(len(values), -1)
    local[compared] = np.arange(len(compared))
    a, b = local[index_a], local[index_b]
    strength = fit_strengths(len(compared), a, b, score_a)
    low, high = _bootstrap_strengths(len(compared), a, b, score_a, resamples, _rng(seed, axis))
    records = []
    for i, value in enumerate(values):
        records.append(_value_record(axis, value, i, index_a, index_b, score_a))
        if local[i] >= 0:
            j = local[i]
            records[-1].update(strength=strength[j], strength_low=low[j], strength_high=high[j])
    return sorted(records, key=lambda r: (np.isnan(r["strength"]), -np.nan_to_num(r["strength"])))


def _value_record(
    axis: str, value: Any, i: int, index_a: np.ndarray, index_b: np.ndarray, score_a: np.ndarray
) -> dict[str, Any]:
    import numpy as np

    score = np.concatenate([score_a[index_a == i], 1.0 - score_a[index_b == i]])
    wins, losses = int((score == 1.0).sum()), int((score == 0.0).sum())
    return {
        "axis": axis,
        "value": value,
        "comparisons": len(score),
        "wins": wins,
        "losses": losses,
        "ties": len(score) - wins - losses,
        "win_rate": score.mean() if len(score) else float("nan"),
        "strength": float("nan"),
        "strength_low": float("nan"),
        "strength_high": float("nan"),
    }


def _bootstrap_strengths(
    n_values: int,
    index_a: np.ndarray,
    index_b: np.ndarray,
    score_a: np.ndarray,
    resamples: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    draws = rng.integers(0, len(score_a), size=(resamples, len(score_a)))
    fits = np.array([fit_strengths(n_values, index_a[d], index_b[d], score_a[d]) for d in draws])
    tail = (1 - CONFIDENCE) / 2 * 100
    return np.percentile(fits, tail, axis=0), np.percentile(fits, 100 - tail, axis=0)


def _rng(seed: int, *names: Any) -> np.random.Generator:
    """One stream per axis (and value), so votes on one axis never move another's bounds."""
    import numpy as np

    return np.random.default_rng([seed, *(zlib.crc32(repr(n).encode()) for n in names)])


def _image_stars(votes_frame: pd.DataFrame) -> pd.DataFrame:
    """file, stars_mean, stars_n: each rater's latest star rating of a file, averaged."""
    import pandas as pd

    stars = votes_frame[(votes_frame["mode"] == "stars") & (votes_frame["choice"] != FAVOURITE)]
    latest = stars.sort_values("id").drop_duplicates(["rater", "file"], keep="last")
    numbers = pd.DataFrame({"file": latest["file"].astype(object), "stars": latest["choice"]})
    numbers["stars"] = numbers["stars"].astype(int)
    grouped = numbers.groupby("file", sort=False)["stars"]
    return pd.DataFrame({"stars_mean": grouped.mean(), "stars_n": grouped.size()}).reset_index()


def _pair_counts(votes_frame: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    pairs = votes_frame[votes_frame["mode"] == "pairs"]
    tie = pairs["choice"] == TIE
    sides = pd.concat(
        [
            pd.DataFrame({"file": pairs["file"], "win": ~tie, "loss": False, "tie": tie}),
            pd.DataFrame({"file": pairs["other_file"], "win": False, "loss": ~tie, "tie": tie}),
        ]
    )
    sides["file"] = sides["file"].astype(object)
    counts = sides.groupby("file", sort=False)[["win", "loss", "tie"]].sum().reset_index()
    return counts.rename(columns={"win": "pref_wins", "loss": "pref_losses", "tie": "pref_ties"})


def _parameters_by_file(manifest_frame: pd.DataFrame) -> pd.DataFrame:
    done = _succeeded(manifest_frame)
    columns = [c for c in PARAMETER_COLUMNS if c in done.columns]
    return done.drop_duplicates("file").set_index("file")[columns].astype(object)


def _succeeded(manifest_frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with an image, without the vote columns a manifest carries (votes are the input)."""
    done = manifest_frame[
        manifest_frame["file"].notna() & (manifest_frame["status"] == "succeeded")
    ]
    return done.drop(columns=[c for c in MANIFEST_VOTE_COLUMNS if c in done.columns])


def _varied(done: pd.DataFrame) -> list[str]:
    return [c for c in PARAMETER_COLUMNS if c in done.columns and done[c].nunique() > 1]


def _axis_values(done: pd.DataFrame, axis: str) -> list[Any]:
    return sorted(done[axis].dropna().unique().tolist(), key=sort_key)


def _key(value: Any) -> Any:
    """A dictionary key under which 5 and 5.0 (an int column read back as float) are one value."""
    return sort_key(value)


def _same(a: Any, b: Any) -> bool:
    import pandas as pd

    if pd.isna(a) and pd.isna(b):
        return True
    return bool(a == b)
