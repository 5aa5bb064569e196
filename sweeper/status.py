"""How far a run got, read from its journal alone: what `sweeper status DIR` shows.

Counts by state, images on disk, failures grouped by error, and what a rerun
would do: which jobs it sends (and may bill) and which downloads it finishes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sweeper.journal import STATES, Journal

EXAMPLES = 3


@dataclass(frozen=True)
class FailureGroup:
    """Failed jobs that share one error message."""

    error: str
    count: int
    examples: tuple[str, ...]


@dataclass(frozen=True)
class RunStatus:
    """A run folder's state, as `RunFolder.status()` returns it."""

    counts: dict[str, int]
    images: dict[str, int]
    failures: tuple[FailureGroup, ...] = ()
    pending_downloads: int = 0
    live: bool = False
    unanswered: int = field(init=False)
    to_send: int = field(init=False)

    def __post_init__(self) -> None:
        submitted = self.counts.get("submitted", 0)
        settled = self.counts.get("succeeded", 0) + self.counts.get("generated", 0)
        object.__setattr__(self, "unanswered", submitted)
        object.__setattr__(self, "to_send", sum(self.counts.values()) - settled)

    @property
    def jobs(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        """The status as plain lines of text."""
        states = ", ".join(f"{state} {self.counts.get(state, 0)}" for state in STATES)
        lines = [f"jobs: {self.jobs} ({states})"]
        lines.append(
            f"images: {self.images.get('done', 0)} downloaded, "
            f"{self.images.get('pending', 0)} pending, {self.images.get('failed', 0)} failed"
        )
        for group in self.failures:
            examples = ", ".join(group.examples)
            lines.append(f"failed x{group.count}: {group.error} (e.g. {examples})")
        if self.unanswered and self.live:
            lines.append(f"{self.unanswered} jobs are in flight: a run is using this folder now")
        elif self.unanswered:
            lines.append(
                f"{self.unanswered} jobs were sent and never answered: they may have been "
                "billed; a rerun sends them again"
            )
        if self.pending_downloads:
            lines.append(
                f"{self.pending_downloads} images were paid for but not downloaded: "
                "a rerun fetches them"
            )
        plural = "" if self.to_send == 1 else "s"
        lines.append(f"a rerun would send {self.to_send} request{plural}")
        return lines


def run_status(journal: Journal, *, live: bool = False) -> RunStatus:
    """Read a run's status from its journal; `live` when a run holds the folder now."""
    counts = {state: 0 for state in STATES} | journal.counts()
    images = dict(journal.query("SELECT status, count(*) FROM outputs GROUP BY status"))
    return RunStatus(
        counts=counts,
        images=images,
        failures=_failure_groups(journal),
        pending_downloads=len(journal.pending_downloads()),
        live=live,
    )


def _failure_groups(journal: Journal) -> tuple[FailureGroup, ...]:
    groups = journal.query(
        "SELECT error, count(*), group_concat(job_id) FROM jobs WHERE state = 'failed' "
        "GROUP BY error ORDER BY count(*) DESC"
    )
    return tuple(
        FailureGroup(error, count, tuple(job_ids.split(",")[:EXAMPLES]))
        for error, count, job_ids in groups
    )
