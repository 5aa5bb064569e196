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
        for value, cell in done.groupby(axis, sort=True, dropna=True):
            for measure in measures:
                records.append(
                    {"axis": axis, "value": _scalar(value), "measure": measure}
                    | estimate(cell, measure)
                )
    return _table(records, SUMMARY_COLUMNS, ["value"])


def pivot(frame: pd.DataFrame, x: str, y: str, measures: Sequence[str]) -> pd.DataFrame:
    """One row per (x value, y value, measure): the cell's n, mean and bootstrap 95 % interval.

    Each cell averages over every other axis, so its mean is a plain groupby of
    the succeeded rows on (x, y) (per request for latency).
    """
    done = succeeded(frame)
    records = []
    for (x_value, y_value), cell in done.groupby([x, y], sort=True, dropna=True):
        for measure in measures:
            records.append(
                {"x": _scalar(x_value), "y": _scalar(y_value), "measure": measure}
                | estimate(cell, measure)
            )
    return _table(records, PIVOT_COLUMNS, ["x", "y"])


def default_measures(frame: pd.DataFrame, score_columns: Sequence[str]) -> list[str]:
    """The score columns, then latency and bytes, where the frame has them."""
    return [m for m in [*score_columns, *BASE_MEASURES] if m in frame.columns]


def succeeded(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "succeeded"] if "status" in frame.columns else frame


def observations(cell: pd.DataFrame, measure: str) -> np.ndarray:
    """The cell's values of the measure, one per image, or one per request for latency."""
    if measure in PER_REQUEST_MEASURES and "job_id" in cell.columns:
        cell = cell.drop_duplicates("job_id")
    values = cell[measure].to_numpy(dtype=np.float64, na_value=np.nan)
    return values[~np.isnan(values)]


def estimate(cell: pd.DataFrame, measure: str) -> dict[str, float | int]:
    values = observations(cell, measure)
    low, high = bootstrap_interval(values)
    mean = float(values.mean()) if len(values) else float("nan")
    return {"n": len(values), "mean": mean, "ci_low": low, "ci_high": high}


def bootstrap_interval(values: np.ndarray) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the mean; NaN below two values."""
    if len(values) < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    from scipy.stats import bootstrap

    result = bootstrap(
        (values,),
        np.mean,
        n_resamples=RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        vectorized=True,
        batch=max(1, BOOTSTRAP_BATCH_VALUES // len(values)),
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    interval = result.confidence_interval
    return float(interval.low), float(interval.high)


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
