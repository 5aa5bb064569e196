"""Charts of the summary and the pivot, as PNG files, drawn with matplotlib's Agg backend.

One chart per (axis, measure) of `stats.summarise`: a line over numeric axis
values, bars over the others, each mean with its 95 % interval as an error bar.
One heat-map per measure of `stats.pivot`, each cell labelled with its mean.
Figures are built with `matplotlib.figure.Figure`, never pyplot, so nothing
opens a window or keeps global state between reports.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    import pandas as pd

DPI = 100
LABEL_CHARS = 28
MAX_LABELS = 40  # past this many values an axis gets matplotlib's own ticks, not one per value


def write_plots(
    summary: pd.DataFrame, pivot_table: pd.DataFrame | None, folder: Path, *, x: str, y: str
) -> list[Path]:
    """Every chart of the summary and, when given, every heat-map of the pivot."""
    paths = plot_summary(summary, folder)
    if pivot_table is not None:
        paths += plot_pivot(pivot_table, folder, x=x, y=y)
    return paths


def plot_summary(summary: pd.DataFrame, folder: Path) -> list[Path]:
    """One PNG per (axis, measure), named `AXIS--MEASURE.png`; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for (axis, measure), rows in summary.groupby(["axis", "measure"], sort=False):
        path = folder / f"{_file_part(axis)}--{_file_part(measure)}.png"
        _save(_axis_chart(rows, str(axis), str(measure)), path)
        paths.append(path)
    return paths


def plot_pivot(pivot_table: pd.DataFrame, folder: Path, *, x: str, y: str) -> list[Path]:
    """One heat-map PNG per measure, named `pivot--MEASURE.png`; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for measure, rows in pivot_table.groupby("measure", sort=False):
        path = folder / f"pivot--{_file_part(measure)}.png"
        _save(_heat_map(rows, x, y, str(measure)), path)
        paths.append(path)
    return paths


def plot_ranking(ranking: pd.DataFrame, folder: Path) -> list[Path]:
    """One PNG per axis of a Bradley-Terry ranking, named `ranking--AXIS.png`; their paths.

    Strongest value on top: its strength (log scale, 0 = the axis's average) with the
    bootstrap interval as whiskers, and its wins, losses and ties beside it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for axis, rows in ranking.groupby("axis", sort=False):
        rows = rows[rows["comparisons"] > 0]
        if rows.empty:
            continue
        path = folder / f"ranking--{_file_part(axis)}.png"
        _save(_ranking_chart(rows, str(axis)), path)
        paths.append(path)
    return paths


def _ranking_chart(rows: pd.DataFrame, axis: str) -> Figure:
    figure = Figure(figsize=(6.0, 1.2 + 0.45 * len(rows)), dpi=DPI, layout="constrained")
    chart = figure.add_subplot()
    positions = np.arange(len(rows))[::-1]  # the strongest first, at the top
    strengths = rows["strength"].to_numpy(dtype=float)
    whiskers = np.nan_to_num(
        np.vstack(
            [strengths - rows["strength_low"].to_numpy(float), rows["strength_high"] - strengths]
        ).clip(min=0)
    )
    chart.errorbar(strengths, positions, xerr=whiskers, fmt="o", capsize=4)
    labels = [
        f"{_short(value)}  ({wins}-{losses}-{ties})"
        for value, wins, losses, ties in zip(
            rows["value"], rows["wins"], rows["losses"], rows["ties"], strict=True
        )
    ]
    chart.set_yticks(positions, labels)
    chart.axvline(0, color="#999", linewidth=0.8)
    chart.set_xlabel("Bradley-Terry strength (log scale; 95 % bootstrap interval)")
    chart.set_title(f"{axis}: blind pairwise votes (wins-losses-ties)", fontsize=10)
    return figure


def _axis_chart(rows: pd.DataFrame, axis: str, measure: str) -> Figure:
    figure = Figure(figsize=(5.5, 3.6), dpi=DPI, layout="constrained")
    chart = figure.add_subplot()
    means = rows["mean"].to_numpy(dtype=float)
    errors = _error_bars(rows)
    values = rows["value"].tolist()
    if all(_is_number(v) for v in values):
        chart.errorbar(values, means, yerr=errors, marker="o", capsize=4)
        if len(values) <= MAX_LABELS:
            chart.set_xticks(values)
    else:
        positions = np.arange(len(values))
        chart.bar(positions, means, yerr=errors, capsize=4, color="#4c78a8")
        _set_x_labels(chart, positions.tolist(), values)
    chart.set_xlabel(axis)
    chart.set_ylabel(measure)
    chart.set_title(f"{measure} by {axis} (mean, 95 % CI; {_n_range(rows)})", fontsize=10)
    chart.grid(axis="y", alpha=0.3)
    return figure


def _heat_map(rows: pd.DataFrame, x: str, y: str, measure: str) -> Figure:
    x_values = list(dict.fromkeys(rows["x"]))
    y_values = list(dict.fromkeys(rows["y"]))
    grid = np.full((len(y_values), len(x_values)), np.nan)
    for x_value, y_value, mean in zip(rows["x"], rows["y"], rows["mean"], strict=True):
        grid[y_values.index(y_value), x_values.index(x_value)] = mean
    width = min(12.0, 2.5 + 0.9 * len(x_values))
    height = min(10.0, 1.8 + 0.5 * len(y_values))
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    chart = figure.add_subplot()
    image = chart.imshow(grid, cmap="viridis", aspect="auto")
    figure.colorbar(image, ax=chart, label=measure)
    _set_x_labels(chart, range(len(x_values)), x_values)
    if len(y_values) <= MAX_LABELS:
        chart.set_yticks(range(len(y_values)), [_short(v) for v in y_values])
    chart.set_xlabel(x)
    chart.set_ylabel(y)
    chart.set_title(f"mean {measure}", fontsize=10)
    if grid.size <= 400:  # past that, the labels would be too small to read
        _label_cells(chart, image, grid)
    return figure


def _label_cells(chart: Any, image: Any, grid: np.ndarray) -> None:
    for (row, column), mean in np.ndenumerate(grid):
        if np.isnan(mean):
            continue
        red, green, blue, _ = image.cmap(image.norm(mean))
        ink = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
        chart.text(column, row, f"{mean:.3g}", ha="center", va="center", color=ink, fontsize=8)


def _error_bars(rows: pd.DataFrame) -> np.ndarray:
    means = rows["mean"].to_numpy(dtype=float)
    below = means - rows["ci_low"].to_numpy(dtype=float)
    above = rows["ci_high"].to_numpy(dtype=float) - means
    return np.nan_to_num(np.vstack([below, above]).clip(min=0))


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path)


def _set_x_labels(chart: Any, positions: Sequence[int], values: Sequence[Any]) -> None:
    if len(values) > MAX_LABELS:  # unreadable anyway: leave the axis to matplotlib
        return
    labels = [_short(v) for v in values]
    if max(map(len, labels), default=0) > 6:  # long labels would overlap: slant them
        chart.set_xticks(positions, labels, rotation=20, ha="right")
    else:
        chart.set_xticks(positions, labels)


def _n_range(rows: pd.DataFrame) -> str:
    low, high = int(rows["n"].min()), int(rows["n"].max())
    return f"n {low}" if low == high else f"n {low}–{high}"


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def _file_part(name: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "_"
