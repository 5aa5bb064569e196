"""The run's source of truth: every job's state and every output, in `DIR/journal.sqlite`.

SQLite in WAL mode. Job states move planned → submitted → generated (the API
answered: paid for, downloads may be pending) → succeeded | failed. A job is
marked submitted *before* its request leaves, so after a crash we know what may
have been billed. The API key is never stored here.

Two kinds of write. A change that decides whether a job is paid for again
(submitted, generated with its remote paths, failed, an uploaded asset) is
committed before the method returns and survives `kill -9`; the runner may
stage submitted/generated instead (`commit=False`) and commit every worker's
change of one event-loop tick in one transaction, before any of them goes on. A change a rerun can
recompute for free (an output downloaded, a job succeeded) is deferred: it is
buffered and committed with the next durable change, on `flush()` (the runner
calls it every tick), before any read, and on close. Losing the deferred tail in
a crash only means the rerun downloads those outputs again from their recorded
URLs; it never resends a request.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby, islice
from operator import itemgetter
from pathlib import Path
from typing import Any

from sweeper.contract import PARAMS
from sweeper.errors import SpecError
from sweeper.job import Job, RemoteOutput
from sweeper.run_folder import JOURNAL_FILE

SCHEMA_VERSION = 1
STATES = ("planned", "submitted", "generated", "succeeded", "failed")
"""A job's states, in the order a job moves through them."""
BATCH = 5000
MAX_DEFERRED = 2000
# SQLite's page cache, in KiB (negative cache_size). Bounded so memory does not grow
# with the journal: 8 MiB holds the job-id index of several hundred thousand jobs,
# and the OS page cache serves the rest.
CACHE_KIB = 8192
# Ids per `IN (...)` look-up: well under SQLite's limit of 32,766 bound parameters.
STATES_BATCH = 1000
PARAM_COLUMNS = tuple(PARAMS)
SQL_TYPES = {int: "INTEGER", float: "REAL", str: "TEXT", bool: "INTEGER"}

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assets (
    api_base TEXT NOT NULL, sha256 TEXT NOT NULL, asset_path TEXT NOT NULL,
    PRIMARY KEY (api_base, sha256)
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, idx INTEGER NOT NULL, model TEXT NOT NULL,
    image_given TEXT NOT NULL, image_sha256 TEXT, asset_path TEXT,
    {", ".join(f"{name} {SQL_TYPES[p.kind]}" for name, p in PARAMS.items())},
    api_base TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'planned',
    attempts INTEGER NOT NULL DEFAULT 0, error TEXT, record_uuid TEXT,
    submitted_at REAL, finished_at REAL, latency_s REAL, request_json TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
CREATE TABLE IF NOT EXISTS outputs (
    job_id TEXT NOT NULL, output_index INTEGER NOT NULL, remote_path TEXT, url TEXT,
    status TEXT NOT NULL DEFAULT 'pending', file TEXT, sha256 TEXT, bytes INTEGER,
    width INTEGER, height INTEGER, error TEXT,
    PRIMARY KEY (job_id, output_index)
);
"""

INSERT_JOB = (
    f"INSERT INTO jobs (job_id, idx, model, image_given, image_sha256, asset_path, "
    f"{', '.join(PARAM_COLUMNS)}, api_base) "
    f"VALUES ({', '.join('?' * (6 + len(PARAM_COLUMNS) + 1))}) "
    # A job kept from an earlier, different spec takes its place in this one.
    "ON CONFLICT (job_id) DO UPDATE SET idx = excluded.idx"
)


@dataclass(frozen=True)
class PendingDownload:
    """An output the API made (and billed) that is not on disk yet."""

    job_id: str
    output_index: int
    remote_path: str
    url: str
    fmt: str


class Journal:
    """One SQLite connection, used from the event loop's thread only."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._deferred: list[tuple[str, Sequence[Any]]] = []
        self._assets: dict[tuple[str, str], str] = {}

    @classmethod
    def open(cls, run_dir: Path) -> Journal:
        """Open (creating if needed) the journal of `run_dir`."""
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / JOURNAL_FILE
        try:
            connection = sqlite3.connect(path, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            # Job ids are random hashes: inserts land all over the index, so keep it cached.
            connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            connection.executescript(SCHEMA)
        except sqlite3.DatabaseError as error:
            raise SpecError(f"{path}: not a usable sweeper journal ({error})") from error
        journal = cls(connection, path)
        journal._check_schema()
        return journal

    @classmethod
    def open_existing(cls, run_dir: Path) -> Journal:
        """Open the journal of a run directory that must already exist."""
        if not (run_dir / JOURNAL_FILE).is_file():
            raise SpecError(f"{run_dir}: no {JOURNAL_FILE} here; is this a sweeper run folder?")
        return cls.open(run_dir)

    def _check_schema(self) -> None:
        found = self.get_meta("schema_version")
        if found is None:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif int(found) > SCHEMA_VERSION:
            raise SpecError(
                f"{self.path}: written by a newer sweeper (journal schema {found}); upgrade sweeper"
            )

    def close(self) -> None:
        self.flush()
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction that also carries every deferred change (autocommit is off inside)."""
        self._db.execute("BEGIN")
        try:
            # Consecutive changes of one kind go in one executemany, in their order.
            for sql, changes in groupby(self._deferred, key=itemgetter(0)):
                self._db.executemany(sql, [args for _, args in changes])
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self._deferred.clear()

    def _write(self, sql: str, args: Sequence[Any] = ()) -> None:
        """Commit now: the change must survive a crash that happens right after."""
        with self._transaction() as db:
            db.execute(sql, args)

    def _defer(self, sql: str, args: Sequence[Any]) -> None:
        """Commit later: the change is safe to lose, a rerun recomputes it without paying."""
        self._deferred.append((sql, args))
        if len(self._deferred) >= MAX_DEFERRED:
            self.flush()

    def flush(self) -> None:
        """Commit every deferred change in one transaction."""
        if self._deferred:
            with self._transaction():
                pass

    def _read(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        self.flush()
        return self._db.execute(sql, args)

    # run-level metadata

    def set_meta(self, key: str, value: Any) -> None:
        self._write("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._read("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    # uploaded-asset cache

    def cached_asset(self, api_base: str, sha256: str) -> str | None:
        """Asked once per job, so answered from memory after the first look-up."""
        key = (api_base, sha256)
        if key not in self._assets:
            row = self._read(
                "SELECT asset_path FROM assets WHERE api_base = ? AND sha256 = ?", key
            ).fetchone()
            if row is None:
                return None
            self._assets[key] = row[0]
        return self._assets[key]

    def remember_asset(self, api_base: str, sha256: str, asset_path: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO assets VALUES (?, ?, ?)", (api_base, sha256, asset_path)
        )
        self._assets[(api_base, sha256)] = asset_path

    # jobs

    def add_jobs(self, jobs: Iterable[Job], api_base: str) -> int:
        """Record jobs as planned (existing ones untouched); returns how many were new."""
        before = self._job_total()
        iterator = iter(jobs)
        while batch := list(islice(iterator, BATCH)):
            with self._transaction() as db:
                db.executemany(INSERT_JOB, (_job_row(job, api_base) for job in batch))
        return self._job_total() - before

    def _job_total(self) -> int:
        return self._read("SELECT count(*) FROM jobs").fetchone()[0]

    def job_states(self) -> dict[str, str]:
        """Every job's state: for small journals and tests; the runner asks `states_of`."""
        return dict(self._read("SELECT job_id, state FROM jobs"))

    def states_of(self, job_ids: Sequence[str]) -> dict[str, str]:
        """The states of these jobs (those in the journal), in one query per STATES_BATCH ids."""
        states: dict[str, str] = {}
        for start in range(0, len(job_ids), STATES_BATCH):
            chunk = job_ids[start : start + STATES_BATCH]
            marks = ", ".join("?" * len(chunk))
            states.update(
                self._read(f"SELECT job_id, state FROM jobs WHERE job_id IN ({marks})", chunk)
            )
        return states

    def counts(self) -> dict[str, int]:
        return dict(self._read("SELECT state, count(*) FROM jobs GROUP BY state"))

    def mark_submitted(
        self,
        job_id: str,
        attempt: int,
        request_json: str,
        at: float,
        *,
        asset_path: str,
        commit: bool = True,
    ) -> None:
        """Before the request leaves: it may be billed from here on. Keeps the latest time.

        `asset_path` is the imageUrl inside `request_json` (the caller built both). With
        `commit=False` the change is only staged: the caller must `flush()` (or wait
        for the runner's group commit) before the request leaves.
        """
        self._stage(
            "UPDATE jobs SET state = 'submitted', attempts = ?, request_json = ?, "
            "submitted_at = ?, asset_path = ?, error = NULL WHERE job_id = ?",
            [(attempt, request_json, at, asset_path, job_id)],
            commit=commit,
        )

    def mark_generated(
        self,
        job_id: str,
        record_uuid: str,
        outputs: Sequence[RemoteOutput],
        at: float,
        latency_s: float,
        *,
        commit: bool = True,
    ) -> None:
        """The API answered with images: paid for. Outputs start as pending downloads.

        The state and the outputs always land in the same transaction; with
        `commit=False` the caller must `flush()` before downloading.
        """
        self._stage(
            "UPDATE jobs SET state = 'generated', record_uuid = ?, latency_s = ?, "
            "finished_at = ? WHERE job_id = ?",
            [(record_uuid, latency_s, at, job_id)],
            commit=False,
        )
        self._stage(
            "INSERT OR REPLACE INTO outputs (job_id, output_index, remote_path, url) "
            "VALUES (?, ?, ?, ?)",
            [(job_id, o.index, o.remote_path, o.url) for o in outputs],
            commit=commit,
        )

    def _stage(self, sql: str, rows: list[Sequence[Any]], *, commit: bool) -> None:
        self._deferred.extend((sql, args) for args in rows)
        if commit:
            self.flush()

    def mark_output_done(
        self,
        job_id: str,
        output_index: int,
        file: str,
        sha256: str,
        size: int,
        width: int,
        height: int,
    ) -> None:
        """Deferred: if lost, the rerun downloads this output again from its recorded URL."""
        self._defer(
            "UPDATE outputs SET status = 'done', file = ?, sha256 = ?, bytes = ?, width = ?, "
            "height = ?, error = NULL WHERE job_id = ? AND output_index = ?",
            (file, sha256, size, width, height, job_id, output_index),
        )

    def mark_output_failed(self, job_id: str, output_index: int, error: str) -> None:
        self._write(
            "UPDATE outputs SET status = 'failed', error = ? WHERE job_id = ? AND output_index = ?",
            (error, job_id, output_index),
        )

    def mark_succeeded(self, job_id: str, at: float) -> None:
        """Deferred: if lost, the job stays generated and the rerun settles it without paying."""
        self._defer(
            "UPDATE jobs SET state = 'succeeded', finished_at = ?, error = NULL WHERE job_id = ?",
            (at, job_id),
        )

    def mark_failed(self, job_id: str, error: str, at: float, attempts: int | None = None) -> None:
        self._write(
            "UPDATE jobs SET state = 'failed', error = ?, finished_at = ?, "
            "attempts = coalesce(?, attempts) WHERE job_id = ?",
            (error, at, attempts, job_id),
        )

    def pending_downloads(self) -> list[PendingDownload]:
        """Outputs of generated jobs not yet on disk: a rerun fetches them without paying."""
        rows = self._read(
            "SELECT o.job_id, o.output_index, o.remote_path, o.url, j.format "
            "FROM outputs o JOIN jobs j USING (job_id) "
            "WHERE j.state = 'generated' AND o.status != 'done' "
            "ORDER BY j.idx, o.output_index"
        )
        return [PendingDownload(*row) for row in rows]

    def downloaded_jobs(self) -> list[str]:
        """Generated jobs with every output on disk: only their success was lost (deferred)."""
        rows = self._read(
            "SELECT job_id FROM jobs j WHERE j.state = 'generated' AND NOT EXISTS "
            "(SELECT 1 FROM outputs o WHERE o.job_id = j.job_id AND o.status != 'done') "
            "ORDER BY j.idx"
        )
        return [job_id for (job_id,) in rows]

    def job_row(self, job_id: str) -> dict[str, Any] | None:
        """Everything stored about one job, its outputs included."""
        cursor = self._read("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        row = cursor.fetchone()
        if row is None:
            return None
        job = dict(zip([c[0] for c in cursor.description], row, strict=True))
        outputs = self._db.execute(
            "SELECT * FROM outputs WHERE job_id = ? ORDER BY output_index", (job_id,)
        )
        names = [c[0] for c in outputs.description]
        job["outputs"] = [dict(zip(names, r, strict=True)) for r in outputs]
        return job

    def reader(self) -> sqlite3.Connection:
        """A second, read-only connection to the same journal (for a reader thread)."""
        self.flush()
        return sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)

    def query(self, sql: str, args: Sequence[Any] = ()) -> Iterator[tuple]:
        """Read-only access for the manifest and status views."""
        return self._read(sql, args)

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection itself, every deferred change committed (for pandas and others)."""
        self.flush()
        return self._db


def _job_row(job: Job, api_base: str) -> tuple:
    params = tuple(job.params[name] for name in PARAM_COLUMNS)
    image = job.image
    return (
        job.job_id,
        job.index,
        job.model,
        image.given,
        image.sha256,
        image.asset_path,
        *params,
        api_base,
    )
