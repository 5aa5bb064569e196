"""The manifest: one row per output image saying exactly which request made it.

Built from the journal with one SQL join, written as `DIR/manifest.csv` and
`DIR/manifest.parquet` (real types kept), each replaced atomically so a reader
never sees half a file. `export_manifest` writes the same table anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sweeper.contract import PARAMS
from sweeper.errors import SpecError
from sweeper.journal import Journal

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = [
    "job_id", "output_index", "status", "file", "sha256", "bytes", "width", "height",
    "prompt", "image", "image_sha256", "asset_path", "seed", "guidance",
    "num_inference_steps", "output_quality", "megapixels", "format", "num_outputs",
    "go_fast", "disable_safety_checker", "model", "api_base", "record_uuid", "remote_path",
    "attempts", "error", "submitted_at", "finished_at", "latency_s", "request_json",
]  # fmt: skip

PARAM_SELECT = ", ".join(f"j.{name}" for name in PARAMS if name != "prompt")

QUERY = f"""
SELECT j.job_id, coalesce(o.output_index, 0) AS output_index,
    CASE WHEN o.status = 'done' THEN 'succeeded'
         WHEN o.status = 'failed' OR j.state = 'failed' THEN 'failed'
         ELSE 'pending' END AS status,
    o.file, o.sha256, o.bytes, o.width, o.height,
    j.prompt, j.image_given AS image, j.image_sha256, j.asset_path, {PARAM_SELECT},
    j.model, j.api_base, j.record_uuid, o.remote_path, j.attempts,
    coalesce(o.error, j.error) AS error, j.submitted_at, j.finished_at, j.latency_s,
    j.request_json
FROM jobs j LEFT JOIN outputs o USING (job_id)
ORDER BY j.idx, o.output_index
"""

NULLABLE_INTS = ("bytes", "width", "height", "attempts", "output_index")
TEXT_COLUMNS = ("file", "sha256", "asset_path", "record_uuid", "remote_path", "error")
EXPORT_SUFFIXES = (".csv", ".parquet", ".jsonl")


def manifest_frame(journal: Journal) -> pd.DataFrame:
    """The manifest table, typed: ints, floats, bools, UTC timestamps, text."""
    import pandas as pd

    frame = pd.read_sql_query(QUERY, journal.connection)
    for name in NULLABLE_INTS:
        frame[name] = frame[name].astype("Int64")
    for name in ("seed", "num_inference_steps", "output_quality", "num_outputs"):
        frame[name] = frame[name].astype("int64")
    for name in ("go_fast", "disable_safety_checker"):
        frame[name] = frame[name].astype(bool)
    for name in ("guidance", "latency_s"):
        frame[name] = frame[name].astype("float64")
    for name in ("submitted_at", "finished_at"):
        # An explicit unit: pandas 2 and 3 infer different resolutions.
        frame[name] = pd.to_datetime(frame[name], unit="s", utc=True).astype("datetime64[us, UTC]")
    for name in TEXT_COLUMNS:
        frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    frame["megapixels"] = frame["megapixels"].astype(str)
    return frame[COLUMNS]


def write_manifest(journal: Journal, run_dir: Path) -> pd.DataFrame:
    """Write DIR/manifest.csv and DIR/manifest.parquet from the journal."""
    frame = manifest_frame(journal)
    write_frame(frame, run_dir / "manifest.csv")
    write_frame(frame, run_dir / "manifest.parquet")
    return frame


def write_frame(frame: pd.DataFrame, target: Path) -> None:
    """Write by suffix to a temporary name beside `target`, then rename into place."""
    suffix = checked_suffix(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    if suffix == ".csv":
        frame.to_csv(partial, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
    elif suffix == ".parquet":
        frame.to_parquet(partial, index=False, engine="pyarrow")
    else:
        # pandas' defaults would cut timestamps to milliseconds and floats to 10 decimals.
        frame.to_json(
            partial,
            orient="records",
            lines=True,
            date_format="iso",
            date_unit="us",
            double_precision=15,
        )
    partial.replace(target)


def export_manifest(run_dir: Path, target: Path) -> int:
    """Rebuild the manifest of `run_dir` from its journal into `target`; returns rows."""
    checked_suffix(target)
    with Journal.open_existing(run_dir) as journal:
        frame = manifest_frame(journal)
    write_frame(frame, target)
    return len(frame)


def checked_suffix(target: Path) -> str:
    suffix = target.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        allowed = ", ".join(EXPORT_SUFFIXES)
        raise SpecError(f"{target}: unknown format {suffix or '(none)'}; use {allowed}")
    return suffix
