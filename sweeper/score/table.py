"""DIR/scores.parquet: the format of the scores table, and reading it back.

One row per succeeded image, keyed by the manifest's `file` column, one float
column per measure, `errors` (one "scorer: reason" line per scorer that failed
on that image) and `scorer_versions` (JSON: scorer name -> the version that
produced the row's values). The Parquet schema's metadata records, per scorer,
its version, its spec and the columns it wrote.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.atomic import replacing
from sweeper.errors import SpecError

if TYPE_CHECKING:
    import pandas as pd

    from sweeper.score.plugins import Scorer

SCORES_FILE = "scores.parquet"
KEY_COLUMN = "file"
ERRORS_COLUMN = "errors"
VERSIONS_COLUMN = "scorer_versions"
RESERVED_COLUMNS = (KEY_COLUMN, ERRORS_COLUMN, VERSIONS_COLUMN)
METADATA_KEY = b"sweeper.scores"


@dataclass(frozen=True)
class ImageOutcome:
    """What the scorers made of one image: columns per scorer that succeeded, reasons else."""

    file: str
    values: dict[str, dict[str, float]]  # scorer name -> its columns
    errors: dict[str, str]  # scorer name -> reason


def read_scores(run_dir: Path) -> pd.DataFrame:
    """DIR/scores.parquet as a frame (empty, with the key column, if nothing was scored)."""
    import pandas as pd

    path = Path(run_dir) / SCORES_FILE
    if not path.is_file():
        return pd.DataFrame({KEY_COLUMN: pd.Series(dtype="string")})
    return pd.read_parquet(path)


def measure_columns(scores: pd.DataFrame) -> list[str]:
    """The measure columns of a scores frame (everything but the key and bookkeeping)."""
    return [c for c in scores.columns if c not in RESERVED_COLUMNS]


def join_scores(manifest: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """The manifest with each image's measures (NaN where unscored); one row per manifest row."""
    measures = scores[[KEY_COLUMN, *measure_columns(scores)]]
    return manifest.merge(measures, on=KEY_COLUMN, how="left", validate="many_to_one")


class ScoreTable:
    """scores.parquet in memory: per image, each scorer's values, versions and errors."""

    def __init__(self, rows: dict[str, _Row], owners: dict[str, dict[str, Any]]) -> None:
        self.rows = rows
        # scorer name -> {"version", "spec", "columns"}: which columns a scorer wrote.
        self.owners = owners

    @classmethod
    def read(cls, path: Path) -> ScoreTable:
        if not path.is_file():
            return cls({}, {})
        import pyarrow.parquet as pq

        try:
            parquet = pq.read_table(path)
        except Exception as error:
            raise SpecError(f"{path}: not a readable scores table ({error}); delete it") from None
        meta = json.loads((parquet.schema.metadata or {}).get(METADATA_KEY, b"{}"))
        owners = meta.get("scorers", {})
        rows = {}
        for record in parquet.to_pylist():
            rows[record[KEY_COLUMN]] = _Row.from_record(record, owners)
        return cls(rows, owners)

    def keep_only(self, files: Iterable[str]) -> None:
        """Forget images the manifest no longer lists; add empty rows for new ones."""
        wanted = list(files)
        self.rows = {file: self.rows.get(file) or _Row() for file in wanted}

    def register(self, scorers: Sequence[Scorer], reserved: set[str]) -> None:
        """Note each scorer's current version; `needs` then compares every image's to it."""
        self._reserved = reserved | set(RESERVED_COLUMNS)
        for scorer in scorers:
            owner = self.owners.setdefault(scorer.name, {"columns": []})
            owner.update(version=scorer.version, spec=scorer.spec)

    def needs(self, file: str, scorer: Scorer) -> bool:
        return self.rows[file].versions.get(scorer.name) != scorer.version

    def apply(self, outcome: ImageOutcome, scorers: Sequence[Scorer]) -> dict[str, str]:
        """Record one image's outcome; the scorers that failed on it, with their reasons."""
        row = self.rows[outcome.file]
        failed = {}
        for scorer in scorers:
            reason = outcome.errors.get(scorer.name)
            values = outcome.values.get(scorer.name)
            if reason is None and values is not None:
                reason = self._column_clash(scorer.name, values)
            if reason is not None:
                row.fail(scorer.name, reason)
                failed[scorer.name] = reason
            elif values is not None:
                row.succeed(scorer.name, scorer.version, values)
                owned = self.owners[scorer.name]["columns"]
                owned.extend(c for c in values if c not in owned)
        return failed

    def _column_clash(self, name: str, values: dict[str, float]) -> str | None:
        for column in values:
            if column in self._reserved:
                return f"column {column!r} is taken by the manifest or the scores table"
            for other, owner in self.owners.items():
                if other != name and column in owner["columns"]:
                    return f"column {column!r} is already written by scorer {other!r}"
        return None

    def measure_columns(self) -> list[str]:
        """Each scorer's columns; a scorer that never succeeded shows as one column of NaN."""
        return [c for name, owner in self.owners.items() for c in owner["columns"] or [name]]

    def write(self, path: Path) -> None:
        """Replace the file atomically: a reader sees the old table or the new one."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        measures = self.measure_columns()
        files = list(self.rows)
        columns: dict[str, list[Any]] = {KEY_COLUMN: files}
        for column in measures:
            columns[column] = [self.rows[f].value(column) for f in files]
        columns[ERRORS_COLUMN] = [self.rows[f].error_text() for f in files]
        columns[VERSIONS_COLUMN] = [json.dumps(self.rows[f].versions) for f in files]
        schema = pa.schema(
            [(KEY_COLUMN, pa.string())]
            + [(c, pa.float64()) for c in measures]
            + [(ERRORS_COLUMN, pa.string()), (VERSIONS_COLUMN, pa.string())],
            metadata={METADATA_KEY: json.dumps({"format": 1, "scorers": self.owners})},
        )
        arrow = pa.table(columns, schema=schema)
        with replacing(path) as partial:
            pq.write_table(arrow, partial)


@dataclass
class _Row:
    """One image's values, the versions that produced them, and the reasons of failures."""

    values: dict[str, dict[str, float]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_record(cls, record: dict[str, Any], owners: dict[str, dict[str, Any]]) -> _Row:
        row = cls(versions=json.loads(record.get(VERSIONS_COLUMN) or "{}"))
        for name, owner in owners.items():
            row.values[name] = {
                c: _as_float(record.get(c)) for c in owner["columns"] if c in record
            }
        for line in (record.get(ERRORS_COLUMN) or "").splitlines():
            name, _, reason = line.partition(": ")
            row.errors[name] = reason
        return row

    def succeed(self, name: str, version: str, values: dict[str, float]) -> None:
        self.values[name] = values
        self.versions[name] = version
        self.errors.pop(name, None)

    def fail(self, name: str, reason: str) -> None:
        self.values.pop(name, None)
        self.versions.pop(name, None)
        self.errors[name] = reason

    def value(self, column: str) -> float | None:
        for values in self.values.values():
            if column in values:
                return values[column]
        return None

    def error_text(self) -> str | None:
        return "\n".join(f"{n}: {r}" for n, r in self.errors.items()) or None


def _as_float(value: Any) -> float:
    return math.nan if value is None else float(value)
