"""run.json: what was run, with which tool, how it ended and what it cost.

One document per invocation, versioned by `schema` and described field by field
by `run.schema.json` (a JSON Schema shipped in the package; see
docs/run-json.md). `DIR/run.json` is the latest invocation's; every invocation
is also kept in the journal's `runs` table and in `DIR/runs/<n>.json`, which
`sweeper history` lists. The same document is what `--json` prints and what a
notification carries. Times are ISO 8601 UTC; the API key is never in it.
"""

from __future__ import annotations

import json
import platform
import sys
from contextvars import ContextVar
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper import __version__
from sweeper.atomic import write_text_atomically
from sweeper.run_folder import RUNS_DIR, utc_now, write_run_record

if TYPE_CHECKING:
    from sweeper.run_result import RunResult
    from sweeper.spec import SweepSpec

RECORD_SCHEMA = 1
RUN_COMMAND: ContextVar[str | None] = ContextVar("sweeper_run_command", default=None)
"""The command line being run, when the CLI runs it: what run.json's `command` says."""
SCHEMA_FILE = "run.schema.json"
REASONS = (
    "budget",
    "max_requests",
    "auth",
    "credits",
    "signal",
    "too_many_failures",
    "upload_failed",
    "redirect",
    "environment",
    "internal",
)
"""Why a run ended early: `reason` is one of these, or null when every job settled."""


def starting_record(
    spec: SweepSpec, api_base: str, *, offline: bool, command: str | None
) -> dict[str, Any]:
    """What run.json says before anything is sent."""
    return {
        "schema": RECORD_SCHEMA,
        "tool": "sweeper",
        "sweeper_version": __version__,
        "python_version": sys.version.split()[0],
        "platform": platform.platform(),
        "command": command or "python: sweeper.run",
        "cwd": str(Path.cwd()),
        "spec_name": spec.name,
        "spec_path": str(Path(spec.source_path).resolve()),
        "spec_sha256": spec.sha256,
        "api_base": api_base,
        "offline": offline,
        "started_at": utc_now(),
        "outcome": "running",
    }


def finished_record(
    start: dict[str, Any],
    result: RunResult,
    counts: dict[str, int],
    *,
    credits: dict[str, Any] | None = None,
    rate: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole record of an invocation that ended (however it ended)."""
    return (
        start
        | result.to_record()
        | {
            "finished_at": utc_now(),
            "message": result.message,
            "counts": counts,
            "credits": credits or {"spent": None, "price": None, "price_source": None},
            "rate": rate or {},
        }
    )


def keep_in_history(run_dir: Path, number: int, record: dict[str, Any]) -> None:
    """run.json, and DIR/runs/<n>.json: last night's record survives tonight's run."""
    write_run_record(run_dir, record)
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    write_text_atomically(run_dir / RUNS_DIR / f"{number}.json", text)


@cache
def record_schema() -> dict[str, Any]:
    """The JSON Schema every run.json follows."""
    text = resources.files("sweeper").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
