"""What a person watching a run sees: a live bar on a terminal, log lines otherwise.

On a TTY a rich progress bar shows done/failed/in flight, images per second and
the ETA. When output is not a terminal (cron, CI) a plain line is printed every
`interval_s` seconds instead, so nightly logs stay readable. The summary table at
the end is printed the same way in both cases.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweeper.pool import RunCounts

LOG_INTERVAL_S = 10.0


@dataclass(frozen=True)
class RunSummary:
    """The figures of a finished (or stopped) run, for the table and run.json."""

    run_dir: str
    api_base: str
    total: int
    skipped: int
    succeeded: int
    failed: int
    pending: int
    images: int
    requests: int
    duration_s: float
    outcome: str


def rate_text(count: int, elapsed: float) -> str:
    return f"{count / elapsed:.2f}/s" if elapsed > 0 else "-"


def eta_seconds(counts: RunCounts, elapsed: float) -> float | None:
    """Remaining time at this run's own pace; skipped jobs do not count as speed."""
    finished_here = counts.succeeded + counts.failed + counts.pending
    remaining = counts.total - counts.done
    if finished_here == 0 or elapsed <= 0:
        return None
    return remaining * elapsed / finished_here


def status_line(counts: RunCounts, elapsed: float) -> str:
    """One plain line about the run so far."""
    eta = eta_seconds(counts, elapsed)
    eta_text = f"{eta:.0f}s" if eta is not None else "?"
    return (
        f"[{elapsed:6.0f}s] {counts.done}/{counts.total} jobs done "
        f"({counts.succeeded} ok, {counts.failed} failed, {counts.skipped} already done, "
        f"{counts.in_flight} in flight), {counts.images} images "
        f"({rate_text(counts.images, elapsed)}), ETA {eta_text}"
    )


class ProgressReporter:
    """Shows run progress; call `update` as often as you like, it throttles itself."""

    def __init__(self, *, live: bool | None = None, interval_s: float = LOG_INTERVAL_S) -> None:
        self._live = sys.stderr.isatty() if live is None else live
        self._interval = interval_s
        self._started = time.monotonic()
        self._last_log = 0.0
        self._bar: Any = None
        self._task: Any = None

    def start(self, total: int) -> None:
        self._started = time.monotonic()
        if not self._live:
            print(
                f"sweeper: starting {total} job{'' if total == 1 else 's'}",
                file=sys.stderr,
                flush=True,
            )
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("[bold]sweep"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
            transient=True,
        )
        self._task = self._bar.add_task("sweep", total=total, detail="")
        self._bar.start()

    def update(self, counts: RunCounts) -> None:
        elapsed = time.monotonic() - self._started
        if self._bar is not None:
            detail = (
                f"[green]{counts.succeeded} ok[/] [red]{counts.failed} failed[/] "
                f"{counts.in_flight} in flight · {rate_text(counts.images, elapsed)} images"
            )
            self._bar.update(self._task, completed=counts.done, total=counts.total, detail=detail)
        elif elapsed - self._last_log >= self._interval:
            self._last_log = elapsed
            print("sweeper: " + status_line(counts, elapsed), file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def print_summary(summary: RunSummary) -> None:
    """The table at the end of every run, on stderr so stdout stays clean for scripts."""
    from rich.console import Console
    from rich.table import Table

    # The abort's reason is printed once, as the error line; the title stays short.
    headline = summary.outcome.partition(":")[0]
    table = Table(title=f"sweep {headline}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("jobs in spec", summary.total),
        ("already done before", summary.skipped),
        ("succeeded now", summary.succeeded),
        ("failed", summary.failed),
        ("downloads pending", summary.pending),
        ("images downloaded", summary.images),
        ("API requests", summary.requests),
        ("duration", f"{summary.duration_s:.1f} s"),
        ("API", summary.api_base),
        ("results", summary.run_dir),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    Console(stderr=True).print(table)
