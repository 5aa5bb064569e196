"""Rebuild a lost or emptied journal from `manifest.parquet`, so that nothing is bought again.

Without its journal a run folder looks new, and a rerun would pay for every job
again although the images are there. The manifest keeps, for every image, the
exact request, the record uuid, the asset path and the file's hash: enough to
write a journal back in which finished jobs are done, paid jobs whose image is
gone are lost (the manifest keeps no download link), refused jobs are failed,
and the uploaded inputs are known, so a rerun sends nothing that was answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeper.contract import IMAGE, PARAMS
from sweeper.errors import SpecError
from sweeper.integrity import file_sha256
from sweeper.journal import Journal, has_jobs
from sweeper.run_folder import (
    IMAGES_DIR,
    JOURNAL_FILE,
    MANIFEST_PARQUET,
    require_run_folder,
    require_writable,
)

JOB_COLUMNS = (
    "job_id", "idx", "model", "image_given", "image_sha256", "asset_path", *PARAMS,
    "api_base", "state", "attempts", "unanswered_attempts", "error", "record_uuid",
    "submitted_at", "finished_at", "latency_s", "request_json",
)  # fmt: skip
OUTPUT_COLUMNS = (
    "job_id", "output_index", "remote_path", "status", "file", "sha256", "bytes", "width",
    "height", "error",
)  # fmt: skip


@dataclass(frozen=True)
class RepairResult:
    """What the rebuilt journal holds, by state."""

    jobs: int
    states: dict[str, int]

    def describe(self) -> str:
        shown = ", ".join(f"{state} {count}" for state, count in self.states.items() if count)
        return f"rebuilt the journal with {self.jobs} jobs ({shown}); a rerun pays for none of them"


def results_without_journal(run_dir: Path) -> str | None:
    """Why a run into `run_dir` would pay again for what it holds, or None if it would not.

    That is a folder with images or a manifest whose journal is missing or has no jobs.
    """
    images = run_dir / IMAGES_DIR
    has_results = (run_dir / MANIFEST_PARQUET).is_file() or (
        images.is_dir() and any(images.iterdir())
    )
    if not has_results:
        return None
    journal = run_dir / JOURNAL_FILE
    if journal.is_file() and has_jobs(journal):
        return None
    state = "has no jobs" if journal.is_file() else "is missing"
    fix = (
        f"run `sweeper repair {run_dir}` to rebuild it from {MANIFEST_PARQUET}"
        if (run_dir / MANIFEST_PARQUET).is_file()
        else "there is no manifest to rebuild it from: move the images away, or use another --out"
    )
    return (
        f"{run_dir}: holds results but its {JOURNAL_FILE} {state}, so a run would pay for "
        f"every job again; {fix}"
    )


def repair_journal(run_dir: Path) -> RepairResult:
    """Write a journal for `run_dir` from its manifest; refuses to touch a journal with jobs."""
    import pandas as pd

    require_run_folder(run_dir)
    journal_path = run_dir / JOURNAL_FILE
    require_writable(run_dir, "copy it somewhere writable, then repair the copy")
    if journal_path.is_file() and has_jobs(journal_path):
        raise SpecError(f"{run_dir}: its {JOURNAL_FILE} has jobs already; nothing to repair")
    manifest = run_dir / MANIFEST_PARQUET
    if not manifest.is_file():
        raise SpecError(f"{run_dir}: no {MANIFEST_PARQUET} to rebuild the journal from")
    try:
        frame = pd.read_parquet(manifest)
    except Exception as error:  # pyarrow raises several kinds on a damaged file
        raise SpecError(f"{manifest}: cannot read it ({type(error).__name__}: {error})") from None
    for stale in (journal_path, *journal_path.parent.glob(f"{JOURNAL_FILE}-*")):
        stale.unlink(missing_ok=True)
    jobs, outputs = _journal_rows(frame, run_dir)
    with Journal.open(run_dir) as journal:
        journal.restore(JOB_COLUMNS, jobs, OUTPUT_COLUMNS, outputs)
        states = journal.counts()
    return RepairResult(sum(states.values()), states)


def _journal_rows(frame: Any, run_dir: Path) -> tuple[list[tuple], list[tuple]]:
    jobs, outputs = [], []
    for index, (_job_id, rows) in enumerate(frame.groupby("job_id", sort=False)):
        records = [_plain(record) for record in rows.to_dict("records")]
        state, job_outputs = _job_state(records, run_dir)
        jobs.append(_job_row(records[0], index, state))
        outputs += job_outputs
    return jobs, outputs


def _job_state(records: list[dict[str, Any]], run_dir: Path) -> tuple[str, list[tuple]]:
    """The job's state as the manifest and the disk show it, and its output rows."""
    first = records[0]
    statuses = {record["status"] for record in records}
    if not first.get("record_uuid"):  # never answered with SUCCESS
        state = "unanswered" if "unanswered" in statuses else "failed"
        return state, []
    outputs = [_output_row(record, run_dir) for record in records]
    intact = all(row[3] == "done" for row in outputs)
    return ("succeeded" if intact else "lost"), outputs


def _output_row(record: dict[str, Any], run_dir: Path) -> tuple:
    file = record.get("file")
    on_disk = bool(file) and record["status"] == "succeeded" and _intact(run_dir, record)
    status = "done" if on_disk else "failed"
    error = None if on_disk else "repaired from the manifest: the image is not on disk as recorded"
    return (
        record["job_id"], record["output_index"], record.get("remote_path"), status,
        file, record.get("sha256"), record.get("bytes"), record.get("width"),
        record.get("height"), error,
    )  # fmt: skip


def _intact(run_dir: Path, record: dict[str, Any]) -> bool:
    path = run_dir / record["file"]
    return path.is_file() and file_sha256(path) == record.get("sha256")


def _job_row(record: dict[str, Any], index: int, state: str) -> tuple:
    values = {
        **record,
        "idx": index,
        "image_given": record[IMAGE],
        "state": state,
        "attempts": record.get("attempts") or 0,
        "unanswered_attempts": record.get("unanswered_attempts") or 0,
        "error": record.get("error") if state != "succeeded" else None,
    }
    return tuple(values.get(column) for column in JOB_COLUMNS)


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """pandas values as SQLite takes them: None for missing, epoch seconds for times."""
    return {key: _sql_value(value) for key, value in record.items()}


def _sql_value(value: Any) -> Any:
    import pandas as pd

    if value is None or (not isinstance(value, str | bytes) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.timestamp()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value
