"""`sweeper report DIR`: contact sheets, an HTML gallery and A/B summaries of a run.

Everything is written under DIR/report/ from the manifest (rebuilt from the
journal if the run never wrote one); rerunning overwrites it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sweeper.errors import SpecError

REPORT_DIR = "report"


def _load_manifest(run_dir: Path) -> Any:
    import pandas as pd

    parquet = run_dir / "manifest.parquet"
    if parquet.is_file():
        return pd.read_parquet(parquet)
    if (run_dir / "journal.sqlite").is_file():
        from sweeper.journal import Journal
        from sweeper.manifest import manifest_frame

        with Journal.open_existing(run_dir) as journal:
            return manifest_frame(journal)
    raise SpecError(f"{run_dir}: no manifest.parquet or journal here; is this a sweeper run?")


def _run_facts(run_dir: Path) -> dict[str, Any]:
    record_file = run_dir / "run.json"
    if not record_file.is_file():
        return {"run": str(run_dir)}
    record = json.loads(record_file.read_text(encoding="utf-8"))
    keys = ("spec_name", "outcome", "started_at", "finished_at", "duration_s", "api_base")
    return {"run": str(run_dir)} | {k: record[k] for k in keys if k in record}


def write_report(
    run_dir: Path, *, x_axis: str | None = None, y_axis: str | None = None, thumb: int = 256
) -> Path:
    """Write DIR/report/ and return the path of its index.html."""
    from sweeper.report.axis_choice import choose_axes, varied_parameters
    from sweeper.report.gallery import render_page
    from sweeper.report.sheets import write_sheets
    from sweeper.report.summary import ab_summary
    from sweeper.report.thumbs import make_thumbnails

    frame = _load_manifest(run_dir)
    if frame.empty:
        raise SpecError(f"{run_dir}: the manifest has no rows; run the sweep first")
    x, y, z = choose_axes(frame, x_axis, y_axis)
    varied = varied_parameters(frame)
    report_dir = run_dir / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    thumbs = make_thumbnails(frame, run_dir, report_dir, thumb)
    sheets = write_sheets(frame, x, y, z, thumbs, report_dir, thumb)
    summary = ab_summary(frame, varied)
    summary.to_csv(report_dir / "summary.csv", index=False)
    spec_file = run_dir / "spec.yaml"
    spec_text = spec_file.read_text(encoding="utf-8") if spec_file.is_file() else ""
    page = render_page(
        frame, varied, sheets, summary, thumbs, report_dir, _run_facts(run_dir), spec_text, thumb
    )
    index = report_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
