"""Progress events: the live tallies of a run, and what it tells whoever is watching.

The engine never prints. The pool keeps a `RunCounts` up to date and calls a
`ProgressListener` as jobs start, settle and finish; the CLI and `sweeper.run`
pass a display from `sweeper.display` (a bar, or log lines), a caller of the
Python API may pass its own, and `NoProgress` shows nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol


@dataclass
class RunCounts:
    """Live tallies of one invocation: jobs settled, requests sent, images fetched."""

    total: int = 0
    skipped: int = 0  # had succeeded before this run
    succeeded: int = 0
    failed: int = 0
    pending: int = 0  # paid for, images still to fetch (a rerun does, for free)
    lost: int = 0  # paid for, an image could not be fetched
    unanswered: int = 0  # last attempt unanswered (maybe billed), not sent again
    in_flight: int = 0
    images: int = 0
    requests: int = 0
    unanswered_attempts: int = 0  # requests this run that may have been billed unanswered
    resent_unanswered: int = 0  # jobs sent again although an attempt may have been billed
    rebought: int = 0  # lost jobs bought again (--resend-lost)
    requests_per_minute: float | None = None  # the pace now (learned, with `auto`)

    @property
    def done(self) -> int:
        """Jobs settled one way or another, this run or before it."""
        return (
            self.skipped + self.succeeded + self.failed + self.pending + self.lost + self.unanswered
        )

    def as_record(self) -> dict[str, int]:
        """The tallies as run.json's `this_run` keeps them (`unanswered` counts attempts)."""
        record = asdict(self)
        del record["in_flight"], record["total"], record["requests_per_minute"]
        record["unanswered_jobs"] = record.pop("unanswered")
        record["unanswered"] = record.pop("unanswered_attempts")
        return record


class ProgressListener(Protocol):
    """Told about a run as it goes; every method must return quickly."""

    def started(self, total: int) -> None: ...

    def changed(self, counts: RunCounts) -> None: ...

    def finished(self, counts: RunCounts) -> None: ...


class NoProgress:
    """A listener that shows nothing."""

    def started(self, total: int) -> None:
        pass

    def changed(self, counts: RunCounts) -> None:
        pass

    def finished(self, counts: RunCounts) -> None:
        pass
