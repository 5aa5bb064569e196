"""What a person sees: progress bars, log lines, and the tables at the end.

The engine only emits progress events and log records; this module turns them
into output, for the CLI and for `sweeper.run(progress=True)`:
- a live rich bar on a terminal, one updating tqdm bar in a notebook, and plain
  timestamped log lines at a sane interval when output is piped (cron, CI);
- the `sweeper` logger's console handler (`console_logging`);
- the summary table of a run, the plan table and the status lines.
User text (prompts, paths, error messages) never reaches rich as markup.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

from sweeper.contract import SHORT_NAMES
from sweeper.progress import NoProgress, ProgressListener, RunCounts

if TYPE_CHECKING:
    from sweeper.planning import JobTally, Plan
    from sweeper.run_result import RunResult

LOG_INTERVAL_S = 10.0
logger = logging.getLogger("sweeper")


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
    pace = "" if counts.requests_per_minute is None else f", {counts.requests_per_minute:g}/min"
    return (
        f"[{elapsed:6.0f}s] {counts.done}/{counts.total} jobs done "
        f"({counts.succeeded} ok, {counts.failed} failed, {counts.skipped} already done, "
        f"{counts.in_flight} in flight), {counts.images} images "
        f"({rate_text(counts.images, elapsed)}){pace}, ETA {eta_text}"
    )


class LogLines:
    """Progress as a log line every `interval_s` seconds: for cron logs and CI."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S) -> None:
        self._interval = interval_s
        self._started = time.monotonic()
        self._last = 0.0

    def started(self, total: int) -> None:
        self._started = time.monotonic()
        logger.info("starting %d job%s", total, "" if total == 1 else "s")

    def changed(self, counts: RunCounts) -> None:
        elapsed = time.monotonic() - self._started
        if elapsed - self._last >= self._interval:
            self._last = elapsed
            logger.info("%s", status_line(counts, elapsed))

    def finished(self, counts: RunCounts) -> None:
        pass


class TerminalBar:
    """A live rich progress bar on stderr; it disappears when the run ends."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._bar: Any = None
        self._task: Any = None

    def started(self, total: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self._started = time.monotonic()
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

    def changed(self, counts: RunCounts) -> None:
        if self._bar is None:
            return
        elapsed = time.monotonic() - self._started
        pace = (
            "" if counts.requests_per_minute is None else f" · {counts.requests_per_minute:g}/min"
        )
        detail = (
            f"[green]{counts.succeeded} ok[/] [red]{counts.failed} failed[/] "
            f"{counts.in_flight} in flight · {rate_text(counts.images, elapsed)} images{pace}"
        )
        self._bar.update(self._task, completed=counts.done, total=counts.total, detail=detail)

    def finished(self, counts: RunCounts) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class NotebookBar:
    """One tqdm bar that updates in place: a notebook cell never fills with lines."""

    def __init__(self) -> None:
        self._bar: Any = None

    def started(self, total: int) -> None:
        try:  # a widget when the notebook has ipywidgets, else one line rewritten in place
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm
        except ImportError:
            from tqdm import tqdm

        self._bar = tqdm(total=total, desc="sweep", unit="job", mininterval=0.5)

    def changed(self, counts: RunCounts) -> None:
        if self._bar is None:
            return
        self._bar.set_postfix_str(
            f"{counts.succeeded} ok, {counts.failed} failed, {counts.in_flight} in flight",
            refresh=False,
        )
        self._bar.update(counts.done - self._bar.n)

    def finished(self, counts: RunCounts) -> None:
        if self._bar is not None:
            self._bar.update(counts.done - self._bar.n)
            self._bar.close()
            self._bar = None


def in_notebook() -> bool:
    """Whether we run inside a Jupyter kernel."""
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    ipython = shell.get_ipython()
    return ipython is not None and hasattr(ipython, "kernel")


def progress_display(enabled: bool) -> ProgressListener:
    """The right display for where we run: nothing, a notebook bar, a terminal bar, or logs."""
    if not enabled:
        return NoProgress()
    if in_notebook():
        return NotebookBar()
    if sys.stderr.isatty():
        return TerminalBar()
    return LogLines()


@contextmanager
def count_progress(label: str, *, in_bytes: bool = False) -> Iterator[Callable[[int, int], None]]:
    """A callback `(done, total)` for counted work (scoring; a transfer's bytes): a bar on
    a terminal, else a log line every LOG_INTERVAL_S and at the end."""
    if not sys.stderr.isatty():
        last = [0.0]

        def log(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= LOG_INTERVAL_S or done == total:
                last[0] = now
                shown = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if in_bytes else f"{done}/{total}"
                logger.info("%s: %s", label, shown)

        yield log
        return
    from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn

    counter = DownloadColumn() if in_bytes else MofNCompleteColumn()
    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), counter, transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


class _ConsoleFormatter(logging.Formatter):
    """`sweeper: message`, `sweeper: warning: message`; with a UTC time when piped."""

    converter = staticmethod(time.gmtime)

    def __init__(self, timestamps: bool) -> None:
        super().__init__(datefmt="%Y-%m-%dT%H:%M:%SZ")
        self._timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        line = f"sweeper: {level}{record.getMessage()}"
        return f"{self.formatTime(record, self.datefmt)} {line}" if self._timestamps else line


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (rich swaps it while a bar is shown)."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def console_handler() -> logging.Handler:
    """A handler that prints the `sweeper` logger's records on stderr, one line each."""
    handler = _StderrHandler()
    handler.setFormatter(_ConsoleFormatter(timestamps=not sys.stderr.isatty()))
    return handler


def configure_logging(level: int = logging.INFO) -> None:
    """Show the `sweeper` logger on stderr (the CLI does this once)."""
    logger.handlers[:] = [h for h in logger.handlers if not isinstance(h, _StderrHandler)]
    logger.addHandler(console_handler())
    logger.setLevel(level)


@contextmanager
def console_logging(enabled: bool) -> Iterator[None]:
    """Show the `sweeper` logger on stderr for a block, unless the caller set up logging."""
    configured = any(not isinstance(h, logging.NullHandler) for h in logger.handlers)
    if not enabled or configured:
        yield
        return
    handler = console_handler()
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def print_summary(result: RunResult) -> None:
    """The table at the end of every run, on stderr so stdout stays clean for scripts."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sweep {result.outcome}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    counts = result.this_run
    rows = [
        ("jobs in spec", result.jobs),
        ("already done before", counts.skipped),
        ("succeeded now", counts.succeeded),
        ("failed", counts.failed),
        ("lost (paid, image not fetched)", counts.lost),
        ("no answer (maybe billed)", counts.unanswered),
        ("downloads pending", counts.pending),
        ("images downloaded", counts.images),
        ("API requests", counts.requests),
        ("duration", f"{result.duration_s:.1f} s"),
        ("API", result.api_base),
        ("results", str(result.run_dir)),
    ]
    for name, value in rows:
        table.add_row(name, _literal(str(value)))
    console = Console(stderr=True)
    console.print(table)
    for line in money_lines(result):
        console.print(_literal(f"sweeper: {line}"))


def money_lines(result: RunResult) -> list[str]:
    """What this run may have cost beyond its images, in words."""
    counts, lines = result.this_run, []
    if counts.unanswered_attempts:
        lines.append(
            f"{_counted(counts.unanswered_attempts, 'request')} may have been billed "
            "without an answer"
        )
    if counts.rebought:
        lines.append(f"{_counted(counts.rebought, 'lost job')} bought again")
    if counts.resent_unanswered:
        lines.append(
            f"{_counted(counts.resent_unanswered, 'job')} that may have been billed already "
            "sent again"
        )
    if result.unanswered and not counts.resent_unanswered:
        lines.append(
            f"{_counted(result.unanswered, 'job')} got no answer and may have been billed: "
            "not sent again (--resend-unanswered sends them)"
        )
    if result.lost:
        lines.append(
            f"{_counted(result.lost, 'job')} paid for lost an image (--resend-lost buys them again)"
        )
    return lines


def _literal(text: str) -> Any:
    """User text for rich, never read as markup."""
    from rich.text import Text

    return Text(text)


def print_plan_table(plan: Plan, limit: int) -> None:
    """The plan as a person reads it: counts, axes, the fixed parameters, the first jobs."""
    from rich.box import SIMPLE_HEAD
    from rich.console import Console
    from rich.table import Table

    console = Console()
    counts = f"{_counted(plan.jobs, 'job')}, {_counted(plan.images, 'image')}"
    console.print(_literal(f"{plan.spec.name}: {counts}{_sample_note(plan)}"))
    for name, values in plan.axes.items():
        console.print(_literal(f"  {name}: {', '.join(map(str, values))}"))
    fixed = ", ".join(f"{k}={v}" for k, v in plan.fixed.items())
    console.print(_literal(f"  fixed: {fixed}"), soft_wrap=True)
    console.print(_literal(f"duration: {plan.estimate}"))
    credits = (
        "unknown (learned from the first answers)"
        if plan.credits is None
        else (
            f"{plan.credits:,.6g} ({plan.images:,} images × {plan.price:g} credits, "
            f"price from the {plan.price_source})"
        )
    )
    console.print(_literal(f"credits: {credits}"))
    if plan.tally is not None:
        console.print(_literal(_tally_text(plan)))
    rows = plan.first_jobs(limit)
    if not rows:
        return
    table = Table(
        title=f"first {len(rows)} of {_counted(plan.jobs, 'job')}",
        box=SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    for column in rows[0]:
        header = SHORT_NAMES.get(column, column)
        if _is_text_column(rows, column):
            # Prompts and paths fold onto more lines, so the numbers keep their columns.
            table.add_column(header, overflow="fold", ratio=1, min_width=12)
        else:
            # Numbers, and the job id a user copies into `sweeper reproduce`: never cut.
            width = max(len(header), *(len(str(row[column])) for row in rows))
            table.add_column(header, no_wrap=True, min_width=width)
    for row in rows:
        table.add_row(*(_literal(str(v)) for v in row.values()))
    console.print(table)


def _is_text_column(rows: list[dict[str, Any]], column: str) -> bool:
    return column not in ("index", "job_id") and any(isinstance(row[column], str) for row in rows)


def _tally_text(plan: Plan) -> str:
    tally = plan.tally
    assert tally is not None
    return f"in {plan.run_dir}: " + tally_text(tally)


def tally_text(tally: JobTally) -> str:
    """The spec's jobs in a folder, in words: the same for plan, status and a run."""
    text = (
        f"{tally.done} done, {tally.downloads} to finish downloading, {tally.new} new, "
        f"{tally.failed} failed (sent again), {tally.lost} lost, {tally.unanswered} unanswered; "
        f"a rerun sends {tally.to_send}"
    )
    return text


def _counted(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _sample_note(plan: Plan) -> str:
    sample = plan.spec.sample
    if sample is None or sample.n <= plan.jobs:
        return ""
    return f" (sample.n is {sample.n:,}, more than there are: every job runs)"
