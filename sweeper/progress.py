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
    skipped: int = 0
    succeeded: int = 0
    failed: int = 0
    pending: int = 0
    in_flight: int = 0
    images: int = 0
    requests: int = 0

    @property
    def done(self) -> int:
        """Jobs settled one way or another, this run or before it."""
        return self.skipped + self.succeeded + self.failed + self.pending

    def as_record(self) -> dict[str, int]:
        """The tallies as run.json's `this_run` keeps them."""
        record = asdict(self)
        del record["in_flight"], record["total"]
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
