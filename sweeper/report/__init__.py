"""`sweeper report DIR`: contact sheets, plots with confidence intervals, rankings and a gallery.

Everything is written under DIR/report/ (or `out`) from the run folder: the
manifest joined with the scores, the votes and the frozen spec. Rerunning
overwrites it. Files written:

    index.html      the page (see gallery.py)
    sheet-NNN.png   one contact sheet per combination of the Z axes
    summary.csv     axis,value,measure,n,mean,ci_low,ci_high (stars included)
    pivot.csv       x,y,measure,n,mean,ci_low,ci_high for the --x and --y axes
    ranking.csv     Bradley-Terry rankings from pairwise votes, when there are any
    plots/*.png     a chart per axis and measure, a heat-map per measure, a ranking per axis
    thumbs/*.jpg    the thumbnails
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.atomic import write_text_atomically
from sweeper.contract import canonical_name
from sweeper.errors import SpecError
from sweeper.run_folder import REPORT_DIR, RunFolder, require_output_folder, require_writable

if TYPE_CHECKING:
    import pandas as pd

    from sweeper.report.axis_choice import StudyAxes

PLOTS_DIR = "plots"


@dataclass(frozen=True)
class ReportOptions:
    """What `sweeper report` was asked for."""

    x_axis: str | None = None
    y_axis: str | None = None
    thumb: int = 256
    where: str | None = None
    out: Path | None = None
    include_all: bool = False


def _run_facts(folder: RunFolder) -> dict[str, Any]:
    record = folder.record
    keys = ("spec_name", "outcome", "started_at", "finished_at", "duration_s", "api_base")
    return {"run": str(folder.path)} | {k: record[k] for k in keys if k in record}


def write_report(
    run_dir: Path,
    *,
    x_axis: str | None = None,
    y_axis: str | None = None,
    thumb: int = 256,
    where: str | None = None,
    out: Path | None = None,
    include_all: bool = False,
) -> Path:
    """Write the report of `run_dir` (into `out`, default DIR/report/); its index.html's path."""
    options = ReportOptions(x_axis, y_axis, thumb, where, out, include_all)
    folder = RunFolder(run_dir)
    report_dir = options.out or folder.path / REPORT_DIR
    require_output_folder(report_dir, "--out")
    require_writable(report_dir, "give --out PATH for the report")
    frame = _rows_shown(folder, options)
    return _write(folder, frame, report_dir, options)


def _rows_shown(folder: RunFolder, options: ReportOptions) -> pd.DataFrame:
    frame = folder.frame()
    if frame.empty:
        raise SpecError(f"{folder.path}: the manifest has no rows; run the sweep first")
    if not options.include_all and "in_spec" in frame.columns:
        frame = frame[frame["in_spec"].fillna(True).astype(bool)]
    if options.where:
        frame = apply_where(frame, options.where)
    if frame.empty:
        raise SpecError(f"--where {options.where}: no image of {folder.path} matches it")
    return frame.reset_index(drop=True)


def apply_where(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """The rows matching a pandas query; a bad query is one line naming what is wrong."""
    import pandas as pd

    try:
        chosen = frame.query(where, local_dict={}, global_dict={})
    except pd.errors.UndefinedVariableError as error:
        unknown = re.search(r"name '([^']+)'", str(error))
        word = unknown.group(1) if unknown else where
        close = [canonical_name(word)] if canonical_name(word) != word else []
        close = close or difflib.get_close_matches(word, list(frame.columns), n=1)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        raise SpecError(f"--where {where}: no column `{word}`{hint}") from None
    except Exception as error:  # pandas raises many kinds for a malformed expression
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SpecError(f"--where {where}: not a valid query ({reason})") from None
    if not isinstance(chosen, pd.DataFrame):
        raise SpecError(f"--where {where}: not a condition on the rows")
    return chosen


def _write(
    folder: RunFolder, frame: pd.DataFrame, report_dir: Path, options: ReportOptions
) -> Path:
    from sweeper.report.axis_choice import choose_axes, study_axes
    from sweeper.report.gallery import PageParts, render_page
    from sweeper.report.sheets import write_sheets
    from sweeper.report.stats import default_measures, pivot
    from sweeper.report.thumbs import make_thumbnails
    from sweeper.score.table import measure_columns

    zipped = [canonical_name(str(key)) for key in folder.spec.get("zip", {}) or {}]
    frame, axes = study_axes(frame, zipped)
    x, y, z = choose_axes(frame, axes, options.x_axis, options.y_axis)
    report_dir.mkdir(parents=True, exist_ok=True)
    thumbs = make_thumbnails(frame, folder.path, report_dir, options.thumb)
    why_missing = MissingCells(folder.spec, frame, axes).reason
    sheets = write_sheets(frame, x, y, z, thumbs, report_dir, options.thumb, why_missing)
    measures = default_measures(frame, measure_columns(folder.scores()))
    ranking, summary = _votes_and_summary(folder, frame, axes, measures)
    pivot_table = pivot(frame, x, y, measures) if x and y else None
    _write_tables(report_dir, summary, pivot_table, ranking)
    plots, ranking_plots = _write_plots(report_dir / PLOTS_DIR, summary, pivot_table, ranking, x, y)
    spec_file = folder.spec_path
    parts = PageParts(
        frame=frame,
        axes=axes.varied,
        measures=measures,
        sheets=sheets,
        summary=summary,
        thumbs=thumbs,
        report_dir=report_dir,
        run_dir=folder.path,
        facts=_run_facts(folder),
        spec_text=spec_file.read_text(encoding="utf-8") if spec_file.is_file() else "",
        thumb_size=options.thumb,
        plots=plots,
        ranking=ranking,
        ranking_plots=ranking_plots,
    )
    index = report_dir / "index.html"
    write_text_atomically(index, render_page(parts))
    return index


def _votes_and_summary(
    folder: RunFolder, frame: pd.DataFrame, axes: StudyAxes, measures: list[str]
) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """The measures' summary (stars included when people rated), and the vote ranking."""
    import pandas as pd

    from sweeper.report.stats import summarise

    summary = summarise(frame, axes.varied, measures)
    votes = folder.votes()
    if votes.empty:
        return None, summary
    from sweeper.ranking import ranking_table, star_summary

    ranking = ranking_table(frame, votes)
    stars = star_summary(frame, votes)
    if not stars.empty:
        summary = pd.concat([summary, stars[stars["n"] > 0]], ignore_index=True)
    return ranking, summary


def _write_tables(
    report_dir: Path,
    summary: pd.DataFrame,
    pivot_table: pd.DataFrame | None,
    ranking: pd.DataFrame | None,
) -> None:
    write_text_atomically(report_dir / "summary.csv", summary.to_csv(index=False))
    if pivot_table is not None:
        write_text_atomically(report_dir / "pivot.csv", pivot_table.to_csv(index=False))
    if ranking is not None:
        write_text_atomically(report_dir / "ranking.csv", ranking.to_csv(index=False))


def _write_plots(
    folder: Path,
    summary: pd.DataFrame,
    pivot_table: pd.DataFrame | None,
    ranking: pd.DataFrame | None,
    x: str | None,
    y: str | None,
) -> tuple[list[Path], list[Path]]:
    from sweeper.report.plots import plot_ranking, write_plots

    for old in folder.glob("*.png") if folder.is_dir() else []:
        old.unlink()
    plots = write_plots(summary, pivot_table, folder, x=x or "", y=y or "")
    ranking_plots = plot_ranking(ranking, folder) if ranking is not None else []
    return plots, ranking_plots


class MissingCells:
    """Why a contact-sheet cell has no image: excluded by the spec, or not in this run."""

    def __init__(self, spec: dict[str, Any], frame: pd.DataFrame, axes: StudyAxes) -> None:
        raw = spec.get("exclude") or []
        self._excluded = [
            {canonical_name(str(k)): v for k, v in entry.items()}
            for entry in raw
            if isinstance(entry, dict)
        ]
        self._members = {
            group: {
                str(label): dict(zip(members, values, strict=True))
                for label, *values in frame[[group, *members]]
                .drop_duplicates()
                .itertuples(index=False)
            }
            for group, members in axes.groups.items()
        }

    def reason(self, cell: dict[str, Any]) -> str:
        values = dict(cell)
        for group, labels in self._members.items():
            values |= labels.get(str(cell.get(group)), {})
        if any(_matches(entry, values) for entry in self._excluded):
            return "excluded by the spec's exclude:"
        return "not in this run (sampled out, or not in its spec)"


def _matches(entry: dict[str, Any], values: dict[str, Any]) -> bool:
    return bool(entry) and all(
        name in values and _same(values[name], wanted) for name, wanted in entry.items()
    )


def _same(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)
