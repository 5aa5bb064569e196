"""Images on disk against what the journal recorded: find the ones missing or changed.

A run trusts `images/`: a job whose images are recorded as downloaded is done.
Before a rerun (and in `status`) each recorded image is checked cheaply, by size
and modification time, and hashed only when those differ (`full=True` hashes
every one, for `status --verify`). A damaged image is fetched again while its
link lives; otherwise its job, paid for, is lost.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from sweeper.journal import Journal

HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class DamagedImage:
    """A downloaded image that is no longer on disk as it was recorded."""

    job_id: str
    output_index: int
    file: str
    problem: str  # "missing" or "changed"
    fetchable: bool  # its link has not expired


def find_damaged_images(
    journal: Journal, run_dir: Path, *, full: bool = False, now: float | None = None
) -> list[DamagedImage]:
    """Every recorded image that is missing or changed on disk; reads, never writes."""
    now = time.time() if now is None else now
    rows = journal.query(
        "SELECT job_id, output_index, file, sha256, bytes, mtime_ns, url, expires_at "
        "FROM outputs WHERE status = 'done' ORDER BY job_id, output_index"
    )
    damaged = []
    for job_id, index, file, sha256, size, mtime_ns, url, expires_at in rows:
        problem = _problem(run_dir / file, sha256, size, mtime_ns, full)
        if problem is not None:
            fetchable = bool(url) and (expires_at is None or expires_at >= now)
            damaged.append(DamagedImage(job_id, index, file, problem, fetchable))
    return damaged


def _problem(
    path: Path, sha256: str, size: int | None, mtime_ns: int | None, full: bool
) -> str | None:
    try:
        found = path.stat()
    except OSError:
        return "missing"
    if found.st_size != size:
        return "changed"
    if not full and mtime_ns is not None and found.st_mtime_ns == mtime_ns:
        return None
    return None if file_sha256(path) == sha256 else "changed"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def reopen_damaged(journal: Journal, damaged: list[DamagedImage]) -> None:
    """Fetch a damaged image again on this run, or call its job lost if its link is dead."""
    for image in damaged:
        journal.reopen_output(
            image.job_id, image.output_index, "generated" if image.fetchable else "lost"
        )
