"""How far a run got, read from its journal alone: what `sweeper status DIR` shows.

Counts by state, images on disk, failures grouped by error, and what a rerun
would do: which jobs it sends (and may bill) and which downloads it finishes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sweeper.integrity import DamagedImage, find_damaged_images
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
    damaged: tuple[DamagedImage, ...] = ()
    unanswered: int = field(init=False)
    to_send: int = field(init=False)

    def __post_init__(self) -> None:
        # Outside a live run, a job still marked submitted was in flight when its run died.
        in_flight = 0 if self.live else self.counts.get("submitted", 0)
        unanswered = self.counts.get("unanswered", 0) + in_flight
        kept = ("succeeded", "generated", "lost", "unanswered", "submitted")
        object.__setattr__(self, "unanswered", unanswered)
        object.__setattr__(
            self, "to_send", sum(self.counts.values()) - sum(self.counts.get(s, 0) for s in kept)
        )

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
        if self.live and self.counts.get("submitted", 0):
            lines.append(
                f"{self.counts['submitted']} jobs are in flight: a run is using this folder now"
            )
        if self.unanswered:
            lines.append(
                f"{self.unanswered} jobs were sent and got no answer: they may have been billed; "
                "a rerun does not send them again unless given --resend-unanswered"
            )
        lost = self.counts.get("lost", 0)
        if lost:
            lines.append(
                f"{lost} jobs were paid for but their images could not be fetched (lost): a rerun "
                "tries their live links again for free; --resend-lost buys them again"
            )
        if self.damaged:
            missing = sum(image.problem == "missing" for image in self.damaged)
            lines.append(
                f"{len(self.damaged)} downloaded images are not on disk as recorded "
                f"({missing} missing, {len(self.damaged) - missing} changed): a rerun fetches "
                "them again while their links live"
            )
        if self.pending_downloads:
            lines.append(
                f"{self.pending_downloads} images were paid for but not downloaded: "
                "a rerun fetches them"
            )
        plural = "" if self.to_send == 1 else "s"
        lines.append(f"a rerun would send {self.to_send} request{plural}")
        return lines


def run_status(
    journal: Journal, run_dir: Path, *, live: bool = False, verify: bool = False
) -> RunStatus:
    """Read a run's status from its journal and its images; `live` when a run holds it now."""
    counts = {state: 0 for state in STATES} | journal.counts()
    images = dict(journal.query("SELECT status, count(*) FROM outputs GROUP BY status"))
    return RunStatus(
        counts=counts,
        images=images,
        failures=_failure_groups(journal),
        pending_downloads=len(journal.pending_downloads()),
        live=live,
        damaged=tuple(find_damaged_images(journal, run_dir, full=verify)),
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
