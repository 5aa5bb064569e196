"""The run folder: the name of every file in it, the lock, the small records, and reading it back.

Every module that reads or writes a run folder takes its file names from here.
This module writes the frozen spec copy and `run.json`, holds the lock that keeps
two runs out of one folder, and gives callers `RunFolder`, the read side of a
finished (or live) run: its manifest, spec, status and images.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import closing
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sweeper.atomic import special_file_kind, write_text_atomically
from sweeper.errors import SpecError

if TYPE_CHECKING:
    import pandas as pd

    from sweeper.status import RunStatus

DEFAULT_RESULTS_ROOT = Path("results")
IMAGES_DIR = "images"
INPUTS_DIR = "inputs"
TMP_DIR = "tmp"
REPORT_DIR = "report"
REPRODUCE_DIR = "reproduce"
RUNS_DIR = "runs"
JOURNAL_FILE = "journal.sqlite"
MANIFEST_CSV = "manifest.csv"
MANIFEST_PARQUET = "manifest.parquet"
SPEC_COPY = "spec.yaml"
RUN_RECORD = "run.json"
LOCK_FILE = ".lock"


def default_run_dir(spec_name: str) -> Path:
    return DEFAULT_RESULTS_ROOT / spec_name


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def freeze_spec(run_dir: Path, spec_text: str) -> None:
    """Keep an exact copy of the spec that produced this run."""
    write_text_atomically(run_dir / SPEC_COPY, spec_text)


def write_run_record(run_dir: Path, record: dict[str, Any]) -> None:
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    write_text_atomically(run_dir / RUN_RECORD, text)


def read_run_record(run_dir: Path) -> dict[str, Any]:
    """run.json as a dict; empty when it is missing or unreadable."""
    try:
        record = json.loads((run_dir / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def require_run_folder(folder: Path) -> None:
    """Refuse, in one line naming the path and the fix, what cannot be a run folder."""
    if folder.is_dir():
        return
    if folder.exists():
        raise SpecError(
            f"{folder}: is a file, not a run folder; give the folder a run wrote "
            "(results/<name>/, or the --out of `sweeper run`)"
        )
    raise SpecError(f"{folder}: no such run folder; `sweeper run SPEC --out {folder}` makes one")


def require_output_folder(folder: Path, option: str) -> None:
    """Refuse, in one line, an output folder path that names a file, device or FIFO."""
    if folder.exists() and not folder.is_dir():
        kind = special_file_kind(folder.stat().st_mode) or "a file"
        raise SpecError(f"{folder}: is {kind}, not a folder; give {option} a folder path")


def require_writable(folder: Path, hint: str) -> None:
    """Refuse, in one line, to write into a folder that is read-only (`hint`: what to do)."""
    existing = next((f for f in (folder, *folder.parents) if f.exists()), None)
    if existing is not None and existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise SpecError(f"{folder}: the folder is read-only; {hint}")


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
    require_output_folder(run_dir, "--out")
    _refuse_another_run(run_dir, spec_name, api_base, offline)
    require_writable(run_dir, "give a writable folder with --out")
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


def is_live(run_dir: Path) -> bool:
    """Whether a run holds `run_dir` right now (its lock is taken)."""
    try:
        handle = (run_dir / LOCK_FILE).open("r", encoding="utf-8")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _refuse_another_run(run_dir: Path, spec_name: str, api_base: str, offline: bool) -> None:
    earlier = read_run_record(run_dir)
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


class RunFolder:
    """A run folder, read back: what `sweeper.open_run(DIR)` returns.

    Reading never changes the folder, and works while a run is still writing it.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        require_run_folder(self.path)
        if not (self.path / JOURNAL_FILE).is_file() and not self.manifest_path.is_file():
            raise SpecError(
                f"{self.path}: no {JOURNAL_FILE} or {MANIFEST_PARQUET} here; "
                "is this a sweeper run folder?"
            )

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_PARQUET

    @property
    def spec_path(self) -> Path:
        """The frozen copy of the spec that ran."""
        return self.path / SPEC_COPY

    @cached_property
    def spec(self) -> dict[str, Any]:
        """The frozen spec as written (a dict of its YAML); empty if it is missing."""
        import yaml

        try:
            loaded = yaml.safe_load(self.spec_path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    @property
    def record(self) -> dict[str, Any]:
        """run.json: the tool, the spec's hash, times, outcome and counts of the last run."""
        return read_run_record(self.path)

    def manifest(self) -> pd.DataFrame:
        """One row per image, with the same columns and dtypes as manifest.parquet.

        Built from the journal, the run's source of truth, so it is current even
        while a run is live or after one stopped before writing its manifest.
        """
        import pandas as pd

        if not (self.path / JOURNAL_FILE).is_file():
            return pd.read_parquet(self.manifest_path)
        from sweeper.journal import Journal
        from sweeper.manifest import manifest_frame

        with Journal.open_existing(self.path) as journal:
            return manifest_frame(journal)

    def status(
        self, *, verify: bool = False, spec: str | os.PathLike[str] | None = None
    ) -> RunStatus:
        """How far the run got: counts by state, failures, what a rerun would send.

        Checks every downloaded image against the journal (by size and time, or by
        hash with `verify=True`); given a `spec`, also counts its jobs the way `plan`
        and a run do. Never writes anything.
        """
        from sweeper.journal import Journal
        from sweeper.status import run_status

        tally = None
        with Journal.open_existing(self.path) as journal:
            if spec is not None:
                from sweeper.expand import expand_jobs
                from sweeper.planning import tally_jobs
                from sweeper.spec import load_spec

                tally = tally_jobs(journal, expand_jobs(load_spec(Path(spec))))
            return run_status(
                journal, self.path, live=is_live(self.path), verify=verify, tally=tally
            )

    def history(self) -> pd.DataFrame:
        """Every run into this folder, oldest first: n, started_at, finished_at, outcome,
        reason, requests, credits, duration_s, and `record` (its run.json as text)."""
        import pandas as pd

        from sweeper.journal import Journal

        columns = [
            "n", "started_at", "finished_at", "outcome", "reason", "requests", "credits",
            "duration_s", "record",
        ]  # fmt: skip
        with Journal.open_existing(self.path) as journal:
            rows = journal.query(f"SELECT {', '.join(columns)} FROM runs ORDER BY n")
        return pd.DataFrame.from_records(rows, columns=columns)

    def scores(self) -> pd.DataFrame:
        """scores.parquet: one row per scored image, keyed by the manifest's `file`."""
        from sweeper.score.table import read_scores

        return read_scores(self.path)

    def frame(self) -> pd.DataFrame:
        """The manifest with each image's scores joined on (NaN where unscored).

        The vote columns are part of the manifest already.
        """
        from sweeper.score.table import join_scores

        return join_scores(self.manifest(), self.scores())

    def votes(self, rater: str | None = None) -> pd.DataFrame:
        """Every vote cast on this run's images (one rater's if given), in the order cast."""
        from sweeper.votes import list_votes

        return list_votes(self.path, rater)

    def images(self) -> list[Path]:
        """The path of every downloaded image, in manifest order."""
        frame = self.manifest()
        done = frame[frame["status"] == "succeeded"]
        return [self.path / file for file in done["file"]]
