"""The Python API: what `import sweeper` offers, and what every CLI command calls.

    sweeper.load_spec(path)                 validate a spec file
    sweeper.plan(spec_or_path, out=None)    count and estimate it; tally an existing run folder
    sweeper.run(spec_or_path, out=None, *, offline=False, concurrency=None,
                progress=True, **overrides) run it, blocking; works inside a notebook
    await sweeper.run_async(...)            the same, as a coroutine
    sweeper.open_run(dir)                   read a run folder back

Errors are exceptions from the `SweeperError` tree; nothing here prints unless
`progress=True`, and nothing ever calls `sys.exit`.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sweeper.errors import SpecError
from sweeper.execute import StopSwitch
from sweeper.planning import DEFAULT_MAX_JOBS, Plan, make_plan
from sweeper.run_folder import RunFolder, default_run_dir
from sweeper.run_result import RunResult
from sweeper.spec import RunSettings, SweepSpec
from sweeper.spec import load_spec as _load_spec

T = TypeVar("T")
SpecOrPath = SweepSpec | str | os.PathLike[str]


def load_spec(path: str | os.PathLike[str]) -> SweepSpec:
    """Read and validate the spec at `path`; raises `SpecError` listing every problem found."""
    return _load_spec(Path(path))


def plan(
    spec_or_path: SpecOrPath,
    out: str | os.PathLike[str] | None = None,
    *,
    max_jobs: int = DEFAULT_MAX_JOBS,
) -> Plan:
    """Count and estimate a spec without sending anything.

    Given `out`, a run folder that already holds results, the plan's `tally`
    also says which jobs are done, new, or would be sent again.
    """
    spec = _as_spec(spec_or_path)
    return make_plan(spec, Path(out) if out is not None else None, max_jobs=max_jobs)


def run(
    spec_or_path: SpecOrPath,
    out: str | os.PathLike[str] | None = None,
    *,
    offline: bool = False,
    concurrency: int | None = None,
    progress: bool = True,
    **overrides: Any,
) -> RunResult:
    """Run a sweep and wait for it; works in a script and inside a running event loop.

    `out` defaults to results/<spec name>/; running into a folder again resumes it.
    `offline=True` sends to the built-in simulator instead of the API (no key needed).
    `overrides` replace keys of the spec's `run:` section, e.g. `requests_per_minute=30`;
    `max_jobs` caps the spec's size. In a notebook cell (a loop is running) the
    sweep runs on a worker thread with its own loop; Ctrl-C (interrupt the kernel)
    still stops it cleanly: the first stops sending, the second cancels.

    Returns the result when every job was settled (exit_code 0 or 1). Raises
    `SpecError` before anything is sent, or an `AbortError` (its `.result` holds
    what was done) when the run stopped early.
    """
    call = lambda stop: run_async(  # noqa: E731
        spec_or_path,
        out,
        offline=offline,
        concurrency=concurrency,
        progress=progress,
        stop=stop,
        **overrides,
    )
    return _blocking(call)


async def run_async(
    spec_or_path: SpecOrPath,
    out: str | os.PathLike[str] | None = None,
    *,
    offline: bool = False,
    concurrency: int | None = None,
    progress: bool = True,
    stop: StopSwitch | None = None,
    **overrides: Any,
) -> RunResult:
    """`sweeper.run` as a coroutine; `stop.press()` stops it as Ctrl-C would."""
    from sweeper.display import console_logging, progress_display
    from sweeper.execute import api_target_from_env, execute_sweep, offline_target
    from sweeper.expand import check_job_count

    spec = _as_spec(spec_or_path)
    max_jobs = overrides.pop("max_jobs", DEFAULT_MAX_JOBS)
    settings = run_settings(spec, concurrency=concurrency, **overrides)
    total = check_job_count(spec, max_jobs)
    run_dir = Path(out) if out is not None else default_run_dir(spec.name)
    target = None if offline else api_target_from_env()
    with console_logging(progress):
        display = progress_display(progress)
        if target is not None:
            return await execute_sweep(
                spec, run_dir, target, settings, total, progress=display, stop=stop
            )
        async with offline_target() as simulator:
            return await execute_sweep(
                spec, run_dir, simulator, settings, total, progress=display, stop=stop
            )


def open_run(path: str | os.PathLike[str]) -> RunFolder:
    """A run folder, to read back: `.manifest()`, `.spec`, `.status()`, `.images()`."""
    return RunFolder(path)


def run_settings(
    spec: SweepSpec, *, concurrency: int | None = None, **overrides: Any
) -> RunSettings:
    """The spec's `run:` section with the caller's overrides (None means: keep the spec's)."""
    from pydantic import ValidationError

    known = list(RunSettings.model_fields)
    for name in overrides:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean `{close[0]}`?" if close else f"; known: {', '.join(known)}"
            raise SpecError(f"unknown run setting `{name}`{hint}")
    changes = {"concurrency": concurrency, **overrides}
    values = spec.run.model_dump() | {k: v for k, v in changes.items() if v is not None}
    try:
        return RunSettings.model_validate(values)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise SpecError(f"{where}: {problem['msg']} (got {problem.get('input')!r})") from None


def _as_spec(spec_or_path: SpecOrPath) -> SweepSpec:
    if isinstance(spec_or_path, SweepSpec):
        return spec_or_path
    return load_spec(spec_or_path)


def _blocking(call: Callable[[StopSwitch], Awaitable[T]]) -> T:
    """Run `call` to the end: here, or on a worker thread if this thread's loop is busy."""
    stop = StopSwitch()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_awaited(call(stop)))
    return _on_worker_thread(call, stop)


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _on_worker_thread(call: Callable[[StopSwitch], Awaitable[T]], stop: StopSwitch) -> T:
    """Run on a thread with its own loop; this thread relays Ctrl-C and SIGTERM to it."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = asyncio.run(_awaited(call(stop)))
        except BaseException as error:
            outcome["error"] = error

    worker = threading.Thread(target=work, name="sweeper-run", daemon=True)
    with _relayed_signals(stop):
        worker.start()
        while worker.is_alive():
            try:
                worker.join(0.1)
            except KeyboardInterrupt:  # a handler we did not replace raised it
                stop.press()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@contextmanager
def _relayed_signals(stop: StopSwitch) -> Iterator[None]:
    """While the worker runs, Ctrl-C and SIGTERM press its stop switch instead."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda _signum, _frame: stop.press())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
