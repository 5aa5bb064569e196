"""`sweeper report DIR`: contact sheets, an HTML gallery and A/B summaries of a run.

Everything is written under DIR/report/ from the manifest (rebuilt from the
journal if the run never wrote one); rerunning overwrites it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweeper.atomic import write_text_atomically
from sweeper.errors import SpecError
from sweeper.run_folder import REPORT_DIR, RunFolder


def _run_facts(folder: RunFolder) -> dict[str, Any]:
    record = folder.record
    keys = ("spec_name", "outcome", "started_at", "finished_at", "duration_s", "api_base")
    return {"run": str(folder.path)} | {k: record[k] for k in keys if k in record}


def write_report(
    run_dir: Path, *, x_axis: str | None = None, y_axis: str | None = None, thumb: int = 256
) -> Path:
    """Write DIR/report/ and return the path of its index.html."""
    from sweeper.report.axis_choice import choose_axes, varied_parameters
    from sweeper.report.gallery import render_page
    from sweeper.report.sheets import write_sheets
    from sweeper.report.summary import ab_summary
    from sweeper.report.thumbs import make_thumbnails

    folder = RunFolder(run_dir)
    frame = folder.manifest()
    if frame.empty:
        raise SpecError(f"{run_dir}: the manifest has no rows; run the sweep first")
    x, y, z = choose_axes(frame, x_axis, y_axis)
    varied = varied_parameters(frame)
    report_dir = run_dir / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    thumbs = make_thumbnails(frame, run_dir, report_dir, thumb)
    sheets = write_sheets(frame, x, y, z, thumbs, report_dir, thumb)
    summary = ab_summary(frame, varied)
    write_text_atomically(report_dir / "summary.csv", summary.to_csv(index=False))
    spec_file = folder.spec_path
    spec_text = spec_file.read_text(encoding="utf-8") if spec_file.is_file() else ""
    page = render_page(
        frame, varied, sheets, summary, thumbs, report_dir, _run_facts(folder), spec_text, thumb
    )
    index = report_dir / "index.html"
    write_text_atomically(index, page)
    return index
