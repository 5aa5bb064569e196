"""One run, start to end: claim the folder, journal the jobs, run the pool, write the records.

`execute_sweep` is the whole of `sweeper.run` once the spec is loaded and the API
chosen. Whatever happens (success, failures, a rejected key, Ctrl-C, SIGTERM),
the manifest and run.json are written before it returns a `RunResult` or raises
an error carrying one. Ctrl-C and SIGTERM reach the run through a `StopSwitch`
from the moment the folder is claimed: the first stops sending and lets the
requests in flight finish, the second cancels them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.contract import API_BASE_ENV, API_KEY_ENV, DEFAULT_API_BASE, check_api_key
from sweeper.errors import (
    AbortError,
    InterruptedRun,
    SpecError,
    SweeperError,
    is_environment_error,
)
from sweeper.progress import NoProgress, ProgressListener
from sweeper.run_folder import claim_run_dir, require_writable, write_run_record
from sweeper.run_record import RUN_COMMAND, finished_record, keep_in_history, starting_record
from sweeper.run_result import ABORTED, STOPPED, RunResult, settled_outcome

if TYPE_CHECKING:
    from sweeper.budget import Budget
    from sweeper.job import Job
    from sweeper.journal import Journal
    from sweeper.pacing import Pacer
    from sweeper.pool import JobRunner
    from sweeper.retry import RetryPolicy
    from sweeper.spec import RunSettings, SweepSpec

OFFLINE_KEY = "offline-simulator"
MIB = 1024 * 1024
logger = logging.getLogger("sweeper")


@dataclass(frozen=True)
class ApiTarget:
    """Where requests go and the key they carry; `repr` never shows the key."""

    base: str
    key: str
    offline: bool = False  # the built-in simulator on a port of its own, new each run

    def __repr__(self) -> str:
        return f"ApiTarget(base={self.base!r}, key=<hidden>, offline={self.offline})"


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
    return ApiTarget(base.rstrip("/"), check_api_key(key))


@asynccontextmanager
async def offline_target() -> AsyncIterator[ApiTarget]:
    """The built-in simulator on a loopback port of its own, for as long as the block runs."""
    from sweeper.simulator import SimulatorConfig, run_simulator

    async with run_simulator(SimulatorConfig()) as simulator:
        logger.info("offline: using the built-in simulator at %s", simulator.base_url)
        yield ApiTarget(simulator.base_url, OFFLINE_KEY, offline=True)


class StopSwitch:
    """Ctrl-C, SIGTERM or a caller's own stop, carried into a run from any thread.

    The first press stops sending and lets the requests in flight finish (each may
    already be billed); the second cancels them. Presses made before the run binds
    the switch to its loop count as soon as it does.
    """

    def __init__(self) -> None:
        self.presses = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[Callable[[int], None]] = []
        self._lock = threading.Lock()
        self._early = 0

    def press(self) -> None:
        """Ask the run to stop; safe from a signal handler or another thread."""
        with self._lock:
            loop = self._loop
            if loop is None:
                self._early += 1
                return
        loop.call_soon_threadsafe(self._pressed)

    @property
    def requested(self) -> bool:
        return self.presses > 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._loop = loop
            early, self._early = self._early, 0
        for _ in range(early):
            loop.call_soon(self._pressed)

    def listen(self, listener: Callable[[int], None]) -> Callable[[], None]:
        """Call `listener(presses)` on every press from now on; returns the way to stop."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _pressed(self) -> None:
        self.presses += 1
        for listener in list(self._listeners):
            listener(self.presses)


async def execute_sweep(
    spec: SweepSpec,
    run_dir: Path,
    target: ApiTarget,
    settings: RunSettings,
    total: int,
    *,
    retry_policy: RetryPolicy | None = None,
    progress: ProgressListener | None = None,
    stop: StopSwitch | None = None,
    grace_s: float | None = None,
) -> RunResult:
    """Run every unsettled job of `spec` into `run_dir`; always leaves a manifest behind.

    After a first stop the requests in flight get `grace_s` to finish (default:
    the request timeout, since each may already be billed); a second one cancels.
    Returns the result when every job was settled (outcome complete or partial);
    raises the error that ended the run otherwise, with the result as `.result`.
    """
    stop = stop or StopSwitch()
    loop = asyncio.get_running_loop()
    stop.bind(loop)
    installed = _install_signal_handlers(loop, stop.press)
    try:
        return await _execute(
            spec,
            run_dir,
            target,
            settings,
            total,
            policy=retry_policy,
            progress=progress or NoProgress(),
            stop=stop,
            grace_s=settings.request_timeout_s if grace_s is None else grace_s,
        )
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def _execute(
    spec: SweepSpec,
    run_dir: Path,
    target: ApiTarget,
    settings: RunSettings,
    total: int,
    *,
    policy: RetryPolicy | None,
    progress: ProgressListener,
    stop: StopSwitch,
    grace_s: float,
) -> RunResult:
    import aiohttp

    from sweeper.client import ApiClient, ResponseLimits
    from sweeper.downloads import DownloadLimits
    from sweeper.expand import expand_jobs
    from sweeper.journal import Journal
    from sweeper.pool import JobRunner, PoolOptions
    from sweeper.preflight import (
        keep_inputs_and_spec,
        refuse_changed_inputs,
        refuse_results_without_journal,
        settle_what_the_last_run_left,
    )
    from sweeper.retry import Attempts, RetryPolicy

    require_writable(run_dir, "give a writable folder with --out")
    refuse_results_without_journal(run_dir)
    start = starting_record(spec, target.base, offline=target.offline, command=RUN_COMMAND.get())
    claim = claim_run_dir(run_dir, spec.name, target.base, offline=target.offline)
    started = time.monotonic()
    with claim, Journal.open(run_dir) as journal:
        await asyncio.to_thread(
            refuse_changed_inputs, journal, spec, accept=settings.accept_changes
        )
        await asyncio.to_thread(keep_inputs_and_spec, run_dir, spec, journal)
        number = journal.start_run(start["started_at"], start)
        write_run_record(run_dir, start | {"run_number": number})
        await asyncio.to_thread(settle_what_the_last_run_left, journal, run_dir)
        await asyncio.to_thread(journal.add_jobs, expand_jobs(spec), target.base)
        connector = aiohttp.TCPConnector(limit=settings.concurrency * 2 + 4)
        async with aiohttp.ClientSession(connector=connector) as session:
            client = ApiClient(
                session,
                target.base,
                target.key,
                request_timeout_s=settings.request_timeout_s,
                limits=ResponseLimits(
                    max_body_bytes=int(settings.max_response_mb * MIB),
                    max_json_depth=settings.max_json_depth,
                ),
            )
            pacer, budget = _pacer_and_budget(spec, target, settings)
            attempts = Attempts(
                policy or RetryPolicy(max_attempts=settings.max_attempts),
                pacer,
                rng=random.Random(),
            )
            runner = JobRunner(
                client=client,
                session=session,
                journal=journal,
                attempts=attempts,
                run_dir=run_dir,
                concurrency=settings.concurrency,
                request_timeout_s=settings.request_timeout_s,
                progress=progress,
                options=PoolOptions(
                    resend_unanswered=settings.resend_unanswered,
                    resend_lost=settings.resend_lost,
                    download_limits=DownloadLimits(
                        max_bytes=int(settings.max_download_mb * MIB),
                        max_pixels=int(settings.max_image_megapixels * 1_000_000),
                    ),
                    budget=budget,
                ),
            )
            runner.counts.total = total
            progress.started(total)
            error: BaseException | None = None
            try:
                await _run_pool(runner, expand_jobs(spec), total, grace_s, stop)
            except BaseException as caught:
                error = _with_unrecorded(caught, runner)
            progress.finished(runner.counts)
            _remember_pace(pacer, target)
            ending = Ending(spec, start, number, started, stop, pacer, budget)
            result, error = await _finish(journal, run_dir, runner, ending, error)
        if error is not None:  # raised inside: closing the journal must not hide it
            if isinstance(error, SweeperError):
                error.result = result
            raise error
    return result


def _with_unrecorded(error: BaseException, runner: JobRunner) -> BaseException:
    """A journal that could not be written: name the paid answers it could not keep."""
    from sweeper.pool import JournalWriteFailed

    if not isinstance(error, JournalWriteFailed):
        return error
    unrecorded = runner.unrecorded_answers()
    if not unrecorded:
        return error
    full = JournalWriteFailed(
        f"{error}; {len(unrecorded)} answered (paid) job{'' if len(unrecorded) == 1 else 's'} "
        "could not be recorded, and a rerun will not send them again. Their record uuids:\n"
        + "\n".join(unrecorded),
        unrecorded,
    )
    full.__cause__ = error.__cause__
    return full


async def _run_pool(
    runner: JobRunner, jobs: Iterable[Job], total: int, grace_s: float, stop: StopSwitch
) -> None:
    """Run the pool; the first stop ends sending, a second one (or the grace) cancels."""
    if stop.requested:  # stopped while the jobs were journalled: nothing was sent
        raise InterruptedRun("stopped before any request was sent; run the same command to start")
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(runner.run(jobs, total))

    def on_press(presses: int) -> None:
        # Counted apart from runner.stopping: after an abort (which also stops the
        # runner) a first Ctrl-C must still leave billed requests their grace.
        if presses > 1:
            task.cancel()
            return
        runner.stop()
        logger.warning(
            "stopping: no new requests; waiting up to %.0f s for %d in flight "
            "(Ctrl-C again to stop now)",
            grace_s,
            runner.counts.in_flight,
        )
        loop.call_later(grace_s, task.cancel)

    unlisten = stop.listen(on_press)
    try:
        await task
    except asyncio.CancelledError:
        if not runner.stopping:
            raise
    finally:
        unlisten()
    if runner.abort_error is not None:
        raise runner.abort_error  # also when Ctrl-C cut the abort's wait short
    if runner.stopping:
        raise InterruptedRun(
            "interrupted; everything finished so far is kept. Run the same command again to resume"
        )


def _install_signal_handlers(
    loop: asyncio.AbstractEventLoop, handler: Callable[[], None]
) -> list[signal.Signals]:
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (the caller relays signals), or no signals here
    return installed


@dataclass(frozen=True)
class Ending:
    """What the end of a run needs to know of its start."""

    spec: SweepSpec
    record: dict[str, Any]
    number: int
    started: float
    stop: StopSwitch
    pacer: Pacer
    budget: Budget


def _pacer_and_budget(
    spec: SweepSpec, target: ApiTarget, settings: RunSettings
) -> tuple[Pacer, Budget]:
    """The run's pace (fixed, or learned for `auto`) and budget (caps, and the price).

    What was learned before for this API (rate per key, price per model) comes from
    the user cache; never for the offline simulator, which is a new server each run.
    """
    from sweeper.adaptive import AdaptivePacer, starting_settings
    from sweeper.budget import Budget
    from sweeper.pacing import RateLimiter
    from sweeper.user_cache import UserCache

    cache = None if target.offline else UserCache()
    pacer: Pacer
    if settings.requests_per_minute == "auto":
        pacing = starting_settings(
            max_concurrency=settings.concurrency,
            rpm_start=settings.rpm_start,
            cache=cache,
            api_base=target.base,
            api_key=target.key,
        )
        pacer = AdaptivePacer(pacing)
    else:
        pacer = RateLimiter(settings.requests_per_minute)
    budget = Budget.for_run(
        api_base=target.base,
        model=spec.model,
        max_credits=settings.max_credits,
        max_requests=settings.max_requests,
        credits_per_image=settings.credits_per_image,
        cache=cache,
    )
    return pacer, budget


def _remember_pace(pacer: Pacer, target: ApiTarget) -> None:
    """Keep the rate `auto` learned, for the next run with this API and key."""
    from sweeper.adaptive import AdaptivePacer, remember_pace
    from sweeper.user_cache import UserCache

    if isinstance(pacer, AdaptivePacer) and not target.offline:
        remember_pace(pacer, UserCache(), target.base, target.key)


async def _finish(
    journal: Journal,
    run_dir: Path,
    runner: JobRunner,
    ending: Ending,
    error: BaseException | None,
) -> tuple[RunResult, BaseException | None]:
    """Write the manifest and run.json; return the result and the error that ends the run.

    The error that ended the run is never hidden by a later one (that is logged). A
    stop (Ctrl-C, SIGTERM) that comes while the results are written still counts.
    """
    from sweeper.manifest import write_manifest

    problem = await _environment_problem(asyncio.to_thread(write_manifest, journal, run_dir))
    if error is None and ending.stop.requested:
        error = InterruptedRun("stopped while the results were written; every job had settled")
    if problem is not None:
        failure = AbortError(
            f"could not write the manifest of {run_dir} ({problem}); the journal keeps every "
            f"result: once this is fixed, run `sweeper export {run_dir} --to FILE.csv`"
        )
        if error is None:
            error = failure
        else:
            logger.warning("%s", failure)
    result = await asyncio.to_thread(_result, journal, run_dir, runner, ending, error)
    written = _environment_problem_now(lambda: _record(journal, run_dir, result, ending))
    if written is not None:
        logger.warning("could not write %s/run.json (%s)", run_dir, written)
    return result, error


def _record(journal: Journal, run_dir: Path, result: RunResult, ending: Ending) -> None:
    credits = ending.budget.snapshot()
    record = finished_record(
        ending.record,
        result,
        journal.counts(),
        credits=credits | {"price": credits.pop("price_per_image")},
        rate=ending.pacer.snapshot(),
    ) | {"run_number": ending.number}
    keep_in_history(run_dir, ending.number, record)
    journal.finish_run(ending.number, record)


async def _environment_problem(work: Awaitable[Any]) -> Exception | None:
    """Run `work`; a full disk or a broken file is returned, a bug raised."""
    try:
        await work
    except Exception as failure:
        if not is_environment_error(failure):
            raise
        return failure
    return None


def _environment_problem_now(work: Callable[[], Any]) -> Exception | None:
    try:
        work()
    except Exception as failure:
        if not is_environment_error(failure):
            raise
        return failure
    return None


def _result(
    journal: Journal,
    run_dir: Path,
    runner: JobRunner,
    ending: Ending,
    error: BaseException | None,
) -> RunResult:
    """The run's result: its jobs counted by `planning.tally_jobs`, as plan and status count."""
    from sweeper.expand import expand_jobs
    from sweeper.planning import tally_jobs

    counts = runner.counts
    tally = tally_jobs(journal, expand_jobs(ending.spec))
    if error is None:
        outcome, reason, message = settled_outcome(tally), None, None
    elif isinstance(error, InterruptedRun):
        outcome, reason, message = STOPPED, error.reason, str(error)
    elif isinstance(error, AbortError):
        outcome, reason, message = ABORTED, error.reason, str(error)
    else:
        outcome, reason, message = ABORTED, "internal", f"{type(error).__name__}: {error}"
    return RunResult(
        run_dir=run_dir,
        outcome=outcome,
        jobs=counts.total,
        succeeded=tally.done,
        failed=tally.failed,
        lost=tally.lost,
        unanswered=tally.unanswered,
        pending=tally.downloads + tally.new,
        requests_sent=counts.requests,
        this_run=counts,
        duration_s=time.monotonic() - ending.started,
        api_base=ending.record["api_base"],
        reason=reason,
        message=message,
    )
