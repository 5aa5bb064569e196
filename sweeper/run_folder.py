"""The run directory's small records: the frozen spec copy and `run.json`.

Images, the journal and the manifest have their own modules; this one owns the
files that say what was run, with which tool, and how it ended, and the lock
that keeps two runs out of one directory.
"""

from __future__ import annotations

import fcntl
import json
import platform
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sweeper import __version__
from sweeper.errors import SpecError

DEFAULT_RESULTS_ROOT = Path("results")
SPEC_COPY = "spec.yaml"
RUN_RECORD = "run.json"
LOCK_FILE = ".lock"


def default_run_dir(spec_name: str) -> Path:
    return DEFAULT_RESULTS_ROOT / spec_name


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def freeze_spec(run_dir: Path, spec_text: str) -> None:
    """Keep an exact copy of the spec that produced this run."""
    write_atomically(run_dir / SPEC_COPY, spec_text)


def base_record(spec_name: str, spec_sha256: str) -> dict[str, Any]:
    """What run.json says about the tool and the spec, before anything is sent."""
    return {
        "tool": "sweeper",
        "tool_version": __version__,
        "python_version": sys.version.split()[0],
        "platform": platform.platform(),
        "spec_name": spec_name,
        "spec_sha256": spec_sha256,
    }


def write_run_record(run_dir: Path, record: dict[str, Any]) -> None:
    write_atomically(run_dir / RUN_RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary name beside `path`, then rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def claim_run_dir(
    run_dir: Path, spec_name: str, api_base: str, *, offline: bool = False
) -> closing[IO[str]]:
    """Hold `run_dir` for this run until the returned handle is closed.

    Two runs in one directory would each send the jobs the other has not settled
    yet, and pay twice; a directory holding another spec's run, or results from
    another API (the offline simulator, say), would have its jobs skipped as done
    and mixed into one manifest. All are refused before anything is sent. The lock
    is an flock, so a killed run never leaves a stale one behind.
    """
    _refuse_another_run(run_dir, spec_name, api_base, offline)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = (run_dir / LOCK_FILE).open("a", encoding="utf-8")
    except OSError as error:
        raise SpecError(
            f"{run_dir}: cannot write the run folder ({error.strerror or error}); "
            "give a writable folder with --out"
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SpecError(
            f"{run_dir}: another sweeper run is using this folder; "
            "let it finish, or give another folder with --out"
        ) from None
    return closing(handle)


def _refuse_another_run(run_dir: Path, spec_name: str, api_base: str, offline: bool) -> None:
    try:
        earlier = json.loads((run_dir / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(earlier, dict):
        return
    name = earlier.get("spec_name")
    if name and name != spec_name:
        raise SpecError(
            f"{run_dir}: holds a run of spec {name!r}, not {spec_name!r}; "
            "give another folder with --out"
        )
    was_offline = bool(earlier.get("offline"))
    if (was_offline and offline) or "api_base" not in earlier:
        return
    if was_offline != offline or earlier["api_base"] != api_base:
        before = "the offline simulator" if was_offline else earlier["api_base"]
        now = "the offline simulator" if offline else api_base
        raise SpecError(
            f"{run_dir}: holds results from {before}, and this run would send to {now}; "
            "its jobs would be taken as done. Give another folder with --out"
        )
