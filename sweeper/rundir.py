"""The run directory's small records: the frozen spec copy and `run.json`.

Images, the journal and the manifest have their own modules; this one owns the
files that say what was run, with which tool, and how it ended.
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sweeper import __version__

DEFAULT_RESULTS_ROOT = Path("results")
SPEC_COPY = "spec.yaml"
RUN_RECORD = "run.json"


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
