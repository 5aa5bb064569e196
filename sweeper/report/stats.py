"""Which value of an axis is better: means with bootstrap confidence intervals, per axis and
per pair of axes.

A measure is a numeric column of the manifest joined with the scores: every
score column, plus `latency_s` and `bytes`. Only succeeded images count. Most
measures have one observation per image; `latency_s` belongs to the request, so
it has one per job (a job with four outputs is one latency, not four). `n` is
the number of observations behind each mean: images, or requests for latency.

The 95 % interval is a percentile bootstrap of the mean over the observations
in the cell, that is over every combination of the other axes (seed is the
usual replicate), with a fixed random seed so the same run gives the same
numbers. It is NaN where there is a single observation.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_COLUMNS = ["axis", "value", "measure", "n", "mean", "ci_low", "ci_high"]
PIVOT_COLUMNS = ["x", "y", "measure", "n", "mean", "ci_low", "ci_high"]
PER_REQUEST_MEASURES = ("latency_s",)
BASE_MEASURES = ("latency_s", "bytes")
CONFIDENCE = 0.95
RESAMPLES = 1000
BOOTSTRAP_SEED = 20240601
# Resampled values held at once: bounds the bootstrap's memory at any number of images.
BOOTSTRAP_BATCH_VALUES = 2_000_000


def summarise(
    frame: pd.DataFrame, varied_axes: Sequence[str], measures: Sequence[str]
) -> pd.DataFrame:
    """One row per (axis, value, measure): n, mean and its bootstrap 95 % interval."""
    done = succeeded(frame)
    records = []
    for axis in varied_axes:
        for (value,), measure, numbers in _cell_estimates(done, [axis], measures):
            records.append({"axis": axis, "value": value, "measure": measure} | numbers)
    return _table(records, SUMMARY_COLUMNS, ["value"])


def pivot(frame: pd.DataFrame, x: str, y: str, measures: Sequence[str]) -> pd.DataFrame:
    """One row per (x value, y value, measure): the cell's n, mean and bootstrap 95 % interval.

    Each cell averages over every other axis, so its mean is a plain groupby of
    the succeeded rows on (x, y) (per request for latency).
    """
    done = succeeded(frame)
    records = [
        {"x": x_value, "y": y_value, "measure": measure} | numbers
        for (x_value, y_value), measure, numbers in _cell_estimates(done, [x, y], measures)
    ]
    return _table(records, PIVOT_COLUMNS, ["x", "y"])


def default_measures(frame: pd.DataFrame, score_columns: Sequence[str]) -> list[str]:
    """The score columns, then latency and bytes, where the frame has them."""
    return [m for m in [*score_columns, *BASE_MEASURES] if m in frame.columns]


def succeeded(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "succeeded"] if "status" in frame.columns else frame


def _cell_estimates(
    done: pd.DataFrame, keys: list[str], measures: Sequence[str]
) -> list[tuple[tuple[Hashable, ...], str, dict[str, float | int]]]:
    """(cell key, measure, its numbers) for every cell of `keys`, in key then measure order."""
    # A job's images share its latency: one observation per (job, cell), not per image.
    per_request = done.drop_duplicates(["job_id", *keys]) if "job_id" in done.columns else done
    found: dict[tuple[Hashable, ...], dict[str, dict[str, float | int]]] = {}
    for measure in measures:
        rows = per_request if measure in PER_REQUEST_MEASURES else done
        column = rows[measure].astype("float64")
        for key, values in column.groupby([rows[k] for k in keys], sort=True, dropna=True):
            cell = tuple(_scalar(v) for v in key)
            found.setdefault(cell, {})[measure] = estimate(values.to_numpy(na_value=np.nan))
    return [
        (cell, m, numbers)
        for cell, by_measure in found.items()
        for m, numbers in by_measure.items()
    ]


def estimate(values: np.ndarray) -> dict[str, float | int]:
    """n, mean and bootstrap interval of the values that are not NaN."""
    values = values[~np.isnan(values)]
    low, high = bootstrap_interval(values)
    mean = float(values.mean()) if len(values) else float("nan")
    return {"n": len(values), "mean": mean, "ci_low": low, "ci_high": high}


def bootstrap_interval(
    values: np.ndarray, *, resamples: int = RESAMPLES, rng: np.random.Generator | None = None
) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the mean; NaN below two values.

    NumPy, not scipy.stats.bootstrap: the report asks for thousands of small
    cells, and scipy's per-call overhead (~6 ms) was most of the report's time.
    The random stream is fixed (BOOTSTRAP_SEED) unless `rng` is given.
    """
    if len(values) < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    rng = rng or np.random.default_rng(BOOTSTRAP_SEED)
    means = np.empty(resamples)
    batch = max(1, BOOTSTRAP_BATCH_VALUES // len(values))
    for start in range(0, resamples, batch):
        stop = min(start + batch, resamples)
        picks = rng.integers(0, len(values), size=(stop - start, len(values)))
        means[start:stop] = values[picks].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def _scalar(value: Hashable) -> Hashable:
    """A NumPy scalar from groupby as the plain Python value (1, not np.int64(1))."""
    return value.item() if isinstance(value, np.generic) else value


def _table(records: list[dict], columns: list[str], value_columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    table = pd.DataFrame.from_records(records, columns=columns)
    # Values of several axes share a column: from_records would make seed 1 a 1.0 next to
    # guidance 2.5; keep each value as the manifest has it.
    for column in value_columns:
        table[column] = pd.Series([r[column] for r in records], dtype=object)
    table["n"] = table["n"].astype("int64")
    return table
