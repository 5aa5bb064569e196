"""`sweeper status DIR`: how far a run got, read from its journal alone.

Counts by state, images on disk, failures grouped by error, and what a rerun
would do: which jobs it sends (and may bill) and which downloads it finishes.
"""

from __future__ import annotations

from pathlib import Path

from sweeper.journal import Journal

STATES = ("planned", "submitted", "generated", "succeeded", "failed")
EXAMPLES = 3


def status_lines(journal: Journal) -> list[str]:
    """The status report as plain lines (the CLI prints them)."""
    counts = journal.counts()
    total = sum(counts.values())
    lines = [f"jobs: {total} (" + ", ".join(f"{s} {counts.get(s, 0)}" for s in STATES) + ")"]
    images = dict(journal.query("SELECT status, count(*) FROM outputs GROUP BY status"))
    lines.append(
        f"images: {images.get('done', 0)} downloaded, {images.get('pending', 0)} pending, "
        f"{images.get('failed', 0)} failed"
    )
    lines += _failure_lines(journal)
    unanswered = counts.get("submitted", 0)
    if unanswered:
        lines.append(
            f"{unanswered} jobs were sent and never answered: they may have been billed; "
            "a rerun sends them again"
        )
    pending = len(journal.pending_downloads())
    if pending:
        lines.append(f"{pending} images were paid for but not downloaded: a rerun fetches them")
    to_send = total - counts.get("succeeded", 0) - counts.get("generated", 0)
    lines.append(f"a rerun would send {to_send} request{'' if to_send == 1 else 's'}")
    return lines


def _failure_lines(journal: Journal) -> list[str]:
    groups = journal.query(
        "SELECT error, count(*), group_concat(job_id) FROM jobs WHERE state = 'failed' "
        "GROUP BY error ORDER BY count(*) DESC"
    )
    lines = []
    for error, count, job_ids in groups:
        examples = ", ".join(job_ids.split(",")[:EXAMPLES])
        lines.append(f"failed x{count}: {error} (e.g. {examples})")
    return lines


def print_status(run_dir: Path) -> None:
    with Journal.open_existing(run_dir) as journal:
        lines = status_lines(journal)
    print(f"run: {run_dir}")
    for line in lines:
        print(line)
