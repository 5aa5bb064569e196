"""`score`: measure every downloaded image of a run into DIR/scores.parquet, incrementally.

The table's format is sweeper.score.table's. A scorer is run on an image only
when that image has no value from the scorer's current version, so a rerun
scores only new images and the scorers whose version changed, and retries the
ones that failed. A scorer that raises
on one image leaves NaN and its reason; it never stops the others or the run.

Images are scored in a process pool (one worker per core by default), the
table is rewritten atomically every CHECKPOINT_S seconds and at the end, so an
interrupted `score` keeps what it finished.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import sys
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageOps

from sweeper.errors import SpecError
from sweeper.journal import INPUT_PATH_META, connect_read_only
from sweeper.run_folder import INPUTS_DIR, JOURNAL_FILE, MANIFEST_PARQUET, require_run_folder
from sweeper.score.plugins import Scorer, builtin_specs, check_unique_names, load_scorer
from sweeper.score.table import KEY_COLUMN, SCORES_FILE, ImageOutcome, ScoreTable

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger("sweeper")

CHECKPOINT_S = 30.0
# Images handed to the pool ahead of the ones being scored, per worker: enough to keep
# every core busy, few enough that memory does not grow with the run.
QUEUE_PER_WORKER = 4

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class ScoreResult:
    """What one `score_run` did."""

    path: Path
    images: int  # rows in scores.parquet: the run's succeeded images
    scored: int  # images that had at least one scorer run on them now
    up_to_date: int  # images every requested scorer had already scored
    failures: int  # (image, scorer) pairs that raised now
    columns: list[str]  # measure columns in the table
    first_errors: list[str] = field(default_factory=list)  # a few "file: scorer: reason"

    def describe(self) -> str:
        text = (
            f"scored {self.scored} of {self.images} images "
            f"({self.up_to_date} already up to date) into {self.path}"
        )
        if self.failures:
            text += f"; {self.failures} scorer failures left NaN (see the errors column)"
        return text


@dataclass(frozen=True)
class _Task:
    file: str
    image_path: str
    input_path: str | None
    input_note: str
    row: dict[str, Any]
    specs: tuple[str, ...]
    names: tuple[str, ...]


def score_run(
    run_dir: Path,
    scorers: Sequence[str | Scorer] = (),
    *,
    builtin: bool = True,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> ScoreResult:
    """Score the run's succeeded images that the given scorers have not scored yet.

    `scorers` are `module:function` specs, installed plugin names or loaded
    Scorers; `builtin` adds the four built-in measures first. `workers` defaults
    to one per core; 1 scores in this process. `progress(done, total)` is called
    after each image.
    """
    run_dir = Path(run_dir)
    chosen = _choose_scorers(scorers, builtin)
    manifest = _read_manifest(run_dir)
    table = ScoreTable.read(run_dir / SCORES_FILE)
    table.keep_only(manifest[KEY_COLUMN].tolist())
    table.register(chosen, reserved=set(manifest.columns))
    needed = [[s for s in chosen if table.needs(file, s)] for file in manifest[KEY_COLUMN]]
    total = sum(1 for scorers_of_image in needed if scorers_of_image)
    tasks = _tasks(run_dir, manifest, needed)
    _remember(chosen)
    worker_count = max(1, workers or os.cpu_count() or 1)
    if total <= 1:
        worker_count = 1
    first_errors: list[str] = []
    failed_pairs = 0
    last_write = time.monotonic()
    try:
        for done, outcome in enumerate(_execute(tasks, worker_count), start=1):
            failed = table.apply(outcome, chosen)
            failed_pairs += len(failed)
            for name, why in list(failed.items())[: 5 - len(first_errors)]:
                first_errors.append(f"{outcome.file}: {name}: {why}")
            if progress is not None:
                progress(done, total)
            if time.monotonic() - last_write > CHECKPOINT_S:
                table.write(run_dir / SCORES_FILE)
                last_write = time.monotonic()
    finally:
        table.write(run_dir / SCORES_FILE)
    return ScoreResult(
        path=run_dir / SCORES_FILE,
        images=len(table.rows),
        scored=total,
        up_to_date=len(table.rows) - total,
        failures=failed_pairs,
        columns=table.measure_columns(),
        first_errors=first_errors,
    )


def _choose_scorers(scorers: Sequence[str | Scorer], builtin: bool) -> list[Scorer]:
    loaded = [load_scorer(spec) for spec in builtin_specs()] if builtin else []
    loaded += [s if isinstance(s, Scorer) else load_scorer(s) for s in scorers]
    if not loaded:
        raise SpecError("nothing to score: give --scorer MODULE:FUNCTION or leave the built-ins on")
    check_unique_names(loaded)
    return loaded


def _read_manifest(run_dir: Path) -> pd.DataFrame:
    import pandas as pd

    require_run_folder(run_dir)
    path = run_dir / MANIFEST_PARQUET
    if not path.is_file():
        raise SpecError(f"{run_dir}: no {MANIFEST_PARQUET}; is this a run folder?")
    frame = pd.read_parquet(path)
    done = frame[(frame["status"] == "succeeded") & frame[KEY_COLUMN].notna()]
    return done.drop_duplicates(KEY_COLUMN).reset_index(drop=True)


def _tasks(run_dir: Path, manifest: pd.DataFrame, needed: list[list[Scorer]]) -> Iterator[_Task]:
    """One task per image some scorer needs, made as the pool asks: rows are not all held."""
    inputs = InputLocator(run_dir)
    for record, scorers in zip(manifest.itertuples(index=False), needed, strict=True):
        if not scorers:
            continue
        row = {k: (None if _is_missing(v) else v) for k, v in record._asdict().items()}
        input_path, note = inputs.locate(row.get("image_sha256"))
        file = str(row[KEY_COLUMN])
        yield _Task(
            file,
            str(run_dir / file),
            input_path,
            note,
            row,
            tuple(s.spec for s in scorers),
            tuple(s.name for s in scorers),
        )


def _is_missing(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


class InputLocator:
    """Where a job's input image is: DIR/inputs/<sha256>.*, else the path the journal noted."""

    def __init__(self, run_dir: Path) -> None:
        self._run_dir = run_dir
        self._found: dict[str, tuple[str | None, str]] = {}

    def locate(self, sha256: str | None) -> tuple[str | None, str]:
        """(path or None, why not found)."""
        if not sha256:
            return None, "the manifest row has no image_sha256"
        if sha256 not in self._found:
            self._found[sha256] = self._search(sha256)
        return self._found[sha256]

    def _search(self, sha256: str) -> tuple[str | None, str]:
        copies = sorted((self._run_dir / INPUTS_DIR).glob(f"{sha256}.*"))
        if copies:
            return str(copies[0]), ""
        noted = self._journal_path(sha256)
        if noted and Path(noted).is_file():
            return noted, ""
        where = f"nor at {noted}" if noted else "and the journal names no path"
        return None, f"input image {sha256[:12]} not found: not in {INPUTS_DIR}/ {where}"

    def _journal_path(self, sha256: str) -> str | None:
        journal = self._run_dir / JOURNAL_FILE
        if not journal.is_file():
            return None
        with closing(connect_read_only(journal)) as connection:
            found = connection.execute(
                "SELECT value FROM meta WHERE key = ?", (f"{INPUT_PATH_META}{sha256}",)
            ).fetchone()
        return json.loads(found[0]) if found else None


def _execute(tasks: Iterator[_Task], workers: int) -> Iterator[ImageOutcome]:
    if workers == 1:
        for task in tasks:
            yield score_image(task)
        return
    while True:
        lost = yield from _execute_in_pool(tasks, workers)
        if not lost:
            return
        # A worker died (out of memory, a crashing extension): its images fail, the rest go on.
        for task in lost:
            yield ImageOutcome(task.file, {}, dict.fromkeys(task.names, "the scoring process died"))


def _execute_in_pool(
    pending: Iterator[_Task], workers: int
) -> Generator[ImageOutcome, None, list[_Task]]:
    """Score tasks until they run out (returns []) or the pool breaks (returns the lost tasks)."""
    in_flight: dict[Future[ImageOutcome], _Task] = {}
    executor = ProcessPoolExecutor(
        max_workers=workers, initializer=_start_worker, initargs=(list(sys.path),)
    )
    try:
        while True:
            while len(in_flight) < workers * QUEUE_PER_WORKER:
                task = next(pending, None)
                if task is None:
                    break
                in_flight[executor.submit(score_image, task)] = task
            if not in_flight:
                return []
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                task = in_flight.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    return [task, *in_flight.values()]
                yield outcome
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _start_worker(parent_path: list[str]) -> None:
    """Give the worker the parent's import path, so `--scorer my_module:fn` imports there too."""
    sys.path[:] = parent_path + [p for p in sys.path if p not in parent_path]


# Scorers by spec, loaded once per process; the parent puts its own in first, so a
# Scorer handed to score_run in-process (or to forked workers) is used as it is.
_LOADED: dict[str, Scorer] = {}


def _remember(scorers: Iterable[Scorer]) -> None:
    for scorer in scorers:
        _LOADED[scorer.spec] = scorer


def _scorer_for(spec: str) -> Scorer:
    if spec not in _LOADED:
        _LOADED[spec] = load_scorer(spec)
    return _LOADED[spec]


@lru_cache(maxsize=4)
def _open_input(path: str) -> Image.Image:
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def score_image(task: _Task) -> ImageOutcome:
    """Run each of the task's scorers on one image; every failure is a reason, never a raise."""
    try:
        output, source = _open_pair(task)
    except (_Unscorable, OSError, ValueError) as error:  # Pillow raises these on bad files
        return ImageOutcome(task.file, {}, dict.fromkeys(task.names, _reason(error)))
    values: dict[str, dict[str, float]] = {}
    errors: dict[str, str] = {}
    for spec, name in zip(task.specs, task.names, strict=True):
        try:
            scorer = _scorer_for(spec)
            result = scorer.function(output.copy(), source.copy(), dict(task.row))
            values[name] = _columns_of(name, result)
        except Exception as error:
            errors[name] = _reason(error)
    return ImageOutcome(task.file, values, errors)


def _open_pair(task: _Task) -> tuple[Image.Image, Image.Image]:
    if not Path(task.image_path).is_file():
        raise _Unscorable(f"output image {task.file} is missing")
    if task.input_path is None:
        raise _Unscorable(task.input_note)
    with Image.open(task.image_path) as opened:
        output = opened.convert("RGB")
    return output, _open_input(task.input_path)


def _columns_of(name: str, result: Any) -> dict[str, float]:
    if isinstance(result, dict):
        columns = {}
        for key, value in result.items():
            if not isinstance(key, str) or not key:
                raise TypeError(f"returned a dict with key {key!r}; keys must be column names")
            columns[key] = _number(value)
        return columns
    return {name: _number(result)}


def _number(value: Any) -> float:
    if hasattr(value, "item") and not isinstance(value, numbers.Real):
        value = value.item()  # a NumPy scalar or 0-d array
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"returned {type(value).__name__}, expected a float or a dict of floats")


class _Unscorable(Exception):
    """The image or its input cannot be had; the message says why, as is."""


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "(no message)"
    return text if isinstance(error, _Unscorable) else f"{type(error).__name__}: {text}"
