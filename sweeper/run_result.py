"""How a run ended: its outcome, its exit code, and the numbers run.json and the API report.

`RunResult` is what `sweeper.run` returns (and what an error that ended a run
carries as `.result`); `to_record` is the part of run.json it fills in, so the
two never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.progress import RunCounts

if TYPE_CHECKING:
    import pandas as pd

COMPLETE, PARTIAL, ABORTED, STOPPED = "complete", "partial", "aborted", "stopped"
EXIT_CODES = {COMPLETE: 0, PARTIAL: 1, ABORTED: 3, STOPPED: 3}


@dataclass(frozen=True)
class RunResult:
    """One invocation of a sweep, finished or stopped.

    `succeeded`, `failed`, `lost`, `unanswered` and `pending` count the spec's jobs
    as the run folder holds them now: `lost` were paid for and an image could not
    be fetched; `unanswered` were sent, got no answer and may have been billed;
    `pending` are not settled yet, so a rerun would finish them. `requests_sent`,
    `unanswered_attempts` and `this_run` are what this invocation did.
    """

    run_dir: Path
    outcome: str
    jobs: int
    succeeded: int
    failed: int
    pending: int
    requests_sent: int
    this_run: RunCounts
    duration_s: float
    api_base: str
    reason: str | None = None
    message: str | None = None
    lost: int = 0
    unanswered: int = 0

    @property
    def unanswered_attempts(self) -> int:
        """Requests of this invocation that may have been billed without an answer."""
        return self.this_run.unanswered_attempts

    @property
    def exit_code(self) -> int:
        """0 every job succeeded, 1 some failed, 3 aborted or stopped early."""
        return EXIT_CODES[self.outcome]

    def manifest(self) -> pd.DataFrame:
        """The run folder's manifest (see `RunFolder.manifest`)."""
        from sweeper.run_folder import RunFolder

        return RunFolder(self.run_dir).manifest()

    def to_record(self) -> dict[str, Any]:
        """The fields of run.json that describe how this invocation ended."""
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "duration_s": round(self.duration_s, 3),
            "jobs": {
                "total": self.jobs,
                "succeeded": self.succeeded,
                "failed": self.failed,
                "lost": self.lost,
                "unanswered": self.unanswered,
                "pending": self.pending,
            },
            "this_run": self.this_run.as_record(),
        }


def settled_outcome(counts: RunCounts) -> str:
    """complete when every job of the spec succeeded, else partial."""
    return COMPLETE if counts.skipped + counts.succeeded == counts.total else PARTIAL
