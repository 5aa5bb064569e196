"""Run one sweep end to end: spec → journal → worker pool → manifest and run record.

`run_from_cli` is what `sweeper run` calls; `execute_sweep` is the same run for a
caller that already has a spec and an API target (the tests, the benchmarks).
Whatever happens (success, failures, a rejected key, Ctrl-C), the manifest and
run.json are written before it returns.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sweeper.contract import API_BASE_ENV, API_KEY_ENV, DEFAULT_API_BASE
from sweeper.errors import AbortError, InterruptedRun, SpecError, is_environment_error
from sweeper.run_folder import (
    base_record,
    claim_run_dir,
    default_run_dir,
    freeze_spec,
    utc_now,
    write_run_record,
)

if TYPE_CHECKING:
    from sweeper.progress import ProgressReporter, RunSummary
    from sweeper.retry import RetryPolicy
    from sweeper.spec import SweepSpec

OFFLINE_KEY = "offline-simulator"


@dataclass(frozen=True)
class RunOptions:
    """What the user asked for on the command line."""

    spec_path: Path
    out_dir: Path | None = None
    offline: bool = False
    concurrency: int | None = None
    requests_per_minute: float | None = None
    max_jobs: int = 100_000


@dataclass(frozen=True)
class PoolSettings:
    """The spec's `run` section with command-line overrides applied."""

    concurrency: int
    requests_per_minute: float | None
    max_attempts: int
    request_timeout_s: float


@dataclass(frozen=True)
class ApiTarget:
    """Where requests go and the key they carry; `repr` never shows the key."""

    base: str
    key: str
    offline: bool = False  # the built-in simulator on a port of its own, new each run

    def __repr__(self) -> str:
        return f"ApiTarget(base={self.base!r}, key=<hidden>, offline={self.offline})"


def run_from_cli(options: RunOptions) -> int:
    """Validate, then run; returns 0 (all succeeded) or 1 (some failed), raises otherwise."""
    from sweeper.expand import check_job_count
    from sweeper.spec import load_spec

    spec = load_spec(options.spec_path)
    total = check_job_count(spec, options.max_jobs)
    settings = pool_settings(spec, options)
    run_dir = options.out_dir or default_run_dir(spec.name)
    target = None if options.offline else api_target_from_env()
    summary = asyncio.run(_run_somewhere(spec, run_dir, target, settings, total))
    return 0 if summary.outcome == "complete" else 1


def pool_settings(spec: SweepSpec, options: RunOptions) -> PoolSettings:
    run = spec.run
    return PoolSettings(
        concurrency=options.concurrency or run.concurrency,
        requests_per_minute=options.requests_per_minute or run.requests_per_minute,
        max_attempts=run.max_attempts,
        request_timeout_s=run.request_timeout_s,
    )


def api_target_from_env() -> ApiTarget:
    """Read the key and base from the environment; a missing key costs nothing."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise SpecError(
            f"{API_KEY_ENV} is not set; export your 1min.ai API key in it, "
            "or add --offline to run against the built-in simulator"
        )
    base = os.environ.get(API_BASE_ENV, "").strip() or DEFAULT_API_BASE
    if not base.startswith(("http://", "https://")):
        raise SpecError(f"{API_BASE_ENV}={base!r} is not an http(s) URL")
    return ApiTarget(base.rstrip("/"), key)


async def _run_somewhere(
    spec: SweepSpec, run_dir: Path, target: ApiTarget | None, settings: PoolSettings, total: int
) -> RunSummary:
    if target is not None:
        return await execute_sweep(spec, run_dir, target, settings, total)
    async with _offline_target() as offline:
        return await execute_sweep(spec, run_dir, offline, settings, total)


@asynccontextmanager
async def _offline_target() -> AsyncIterator[ApiTarget]:
    from sweeper.simulator import SimulatorConfig, run_simulator

    async with run_simulator(SimulatorConfig()) as simulator:
        print(
            f"sweeper: offline: using the built-in simulator at {simulator.base_url}",
            file=sys.stderr,
        )
        yield ApiTarget(simulator.base_url, OFFLINE_KEY, offline=True)


async def execute_sweep(
    spec: SweepSpec,
    run_dir: Path,
    target: ApiTarget,
    settings: PoolSettings,
    total: int,
    *,
    retry_policy: RetryPolicy | None = None,
    reporter: ProgressReporter | None = None,
    grace_s: float | None = None,
) -> RunSummary:
    """Run every unsettled job of `spec` into `run_dir`; always leaves a manifest behind.

    After a first Ctrl-C the requests in flight get `grace_s` to finish (default:
    the request timeout, since each may already be billed); a second one cancels.
    """
    import aiohttp

    from sweeper.client import ApiClient
    from sweeper.expand import expand_jobs
    from sweeper.journal import Journal
    from sweeper.pacing import RateLimiter
    from sweeper.pool import JobRunner
    from sweeper.progress import ProgressReporter
    from sweeper.retry import Attempts, RetryPolicy

    policy = retry_policy or RetryPolicy(max_attempts=settings.max_attempts)
    reporter = reporter or ProgressReporter()
    record = base_record(spec.name, spec.sha256) | {
        "api_base": target.base,
        "offline": target.offline,
        "started_at": utc_now(),
    }
    claim = claim_run_dir(run_dir, spec.name, target.base, offline=target.offline)
    freeze_spec(run_dir, spec.source_text)
    write_run_record(run_dir, record | {"outcome": "running"})
    started = time.monotonic()
    with claim, Journal.open(run_dir) as journal:
        journal.add_jobs(expand_jobs(spec), target.base)
        _warn_about_unanswered(journal)
        connector = aiohttp.TCPConnector(limit=settings.concurrency * 2 + 4)
        async with aiohttp.ClientSession(connector=connector) as session:
            client = ApiClient(
                session, target.base, target.key, request_timeout_s=settings.request_timeout_s
            )
            attempts = Attempts(
                policy, RateLimiter(settings.requests_per_minute), rng=random.Random()
            )
            runner = JobRunner(
                client=client,
                session=session,
                journal=journal,
                attempts=attempts,
                run_dir=run_dir,
                concurrency=settings.concurrency,
                request_timeout_s=settings.request_timeout_s,
                on_change=reporter.update,
            )
            reporter.start(total)
            outcome = "failed"
            try:
                grace = settings.request_timeout_s if grace_s is None else grace_s
                await _run_until_done_or_stopped(runner, expand_jobs(spec), total, grace)
                outcome = _outcome(runner.counts)
            except InterruptedRun:
                outcome = "interrupted"
                raise
            except BaseException as error:
                outcome = f"aborted: {error}" if str(error) else "aborted"
                raise
            finally:
                reporter.stop()
                summary = _finish(journal, run_dir, target, runner, record, started, outcome)
    return summary


async def _run_until_done_or_stopped(runner, jobs, total: int, grace_s: float) -> None:
    """Run the pool; the first Ctrl-C/SIGTERM stops sending, a second (or the grace) cancels."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(runner.run(jobs, total))
    signals = 0

    def on_signal() -> None:
        # Counted apart from runner.stopping: after an abort (which also stops the
        # runner) a first Ctrl-C must still leave billed requests their grace.
        nonlocal signals
        signals += 1
        if signals > 1:
            task.cancel()
            return
        runner.stop()
        print(
            f"\nsweeper: stopping: no new requests; waiting up to {grace_s:.0f} s for "
            f"{runner.counts.in_flight} in flight (Ctrl-C again to stop now)",
            file=sys.stderr,
        )
        loop.call_later(grace_s, task.cancel)

    installed = _install_signal_handlers(loop, on_signal)
    try:
        await task
    except asyncio.CancelledError:
        if not runner.stopping:
            raise
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    if runner.abort_error is not None:
        raise runner.abort_error  # also when Ctrl-C cut the abort's wait short
    if runner.stopping:
        raise InterruptedRun(
            "interrupted; everything finished so far is kept. Run the same command again to resume"
        )


def _install_signal_handlers(loop: asyncio.AbstractEventLoop, handler) -> list[int]:
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (e.g. tests), or a platform without it
    return installed


def _warn_about_unanswered(journal) -> None:
    unanswered = journal.counts().get("submitted", 0)
    if unanswered:
        print(
            f"sweeper: warning: {unanswered} jobs were sent before the last run stopped and never "
            "answered; they are sent again and may be billed twice",
            file=sys.stderr,
        )


FINISHED_OUTCOMES = ("complete", "finished with failures")


def _outcome(counts) -> str:
    settled = counts.skipped + counts.succeeded
    return FINISHED_OUTCOMES[0] if settled == counts.total else FINISHED_OUTCOMES[1]


def _finish(journal, run_dir: Path, target: ApiTarget, runner, record, started, outcome):
    """Write the manifest, run.json and the summary; never hide the error that ended a run."""
    try:
        return _write_results(journal, run_dir, target, runner, record, started, outcome)
    except Exception as error:
        if not is_environment_error(error):
            raise
        problem = AbortError(
            f"could not write the manifest of {run_dir} ({error}); the journal keeps every "
            f"result: once this is fixed, run `sweeper export {run_dir} --to FILE.csv`"
        )
        if outcome in FINISHED_OUTCOMES:
            raise problem from None
        # Already ending with an error (called from a finally): that one is what the user sees.
        print(f"sweeper: warning: {problem}", file=sys.stderr)
        return None


def _write_results(journal, run_dir: Path, target: ApiTarget, runner, record, started, outcome):
    from sweeper.manifest import write_manifest
    from sweeper.progress import RunSummary, print_summary

    write_manifest(journal, run_dir)
    counts = runner.counts
    summary = RunSummary(
        run_dir=str(run_dir),
        api_base=target.base,
        total=counts.total,
        skipped=counts.skipped,
        succeeded=counts.succeeded,
        failed=counts.failed,
        pending=counts.pending,
        images=counts.images,
        requests=counts.requests,
        duration_s=time.monotonic() - started,
        outcome=outcome,
    )
    write_run_record(
        run_dir,
        record
        | {
            "finished_at": utc_now(),
            "outcome": outcome,
            "duration_s": round(summary.duration_s, 3),
            "counts": journal.counts(),
            "this_run": {
                "succeeded": counts.succeeded,
                "failed": counts.failed,
                "pending_downloads": counts.pending,
                "images": counts.images,
                "requests": counts.requests,
                "skipped_already_done": counts.skipped,
            },
        },
    )
    print_summary(summary)
    print(f"Images and manifest: {run_dir}/ (manifest.csv, manifest.parquet)")
    return summary
