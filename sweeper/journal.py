"""The run's source of truth: every job's state and every output, in `DIR/journal.sqlite`.

SQLite in WAL mode with synchronous=FULL, so a commit survives a power loss, not
just a crash. Job states:

    planned → submitted → generated → succeeded
                   │           └────→ lost        paid for, an image could not be fetched
                   ├─→ unanswered                 sent, no answer: may have been billed
                   └─→ failed                     refused, or never got through

A job is marked submitted *before* its request leaves, so after a crash we know
what may have been billed (a rerun turns it into unanswered). The API key is
never stored here.

Two kinds of write. A change that decides whether a job is paid for again
(submitted, generated with its remote paths, unanswered, failed, lost, an
uploaded asset) is committed before the method returns and survives `kill -9`;
the pool may stage submitted/generated instead (`commit=False`) and commit every
worker's change of one event-loop tick in one transaction, before any of them
goes on. A change a rerun can recompute for free (an output downloaded, a job
succeeded) is deferred: it is buffered and committed with the next durable
change, on `flush()` (the pool calls it every tick), before any read, and on
close. Losing the deferred tail in a crash only means the rerun finds the image
on disk, or downloads it again from its recorded URL; it never resends a request.

One connection, guarded by a lock, so the pool may commit from a worker thread
and keep the event loop free.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from itertools import groupby, islice
from operator import itemgetter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sweeper.contract import PARAMS
from sweeper.errors import SpecError
from sweeper.job import Job, RemoteOutput
from sweeper.run_folder import JOURNAL_FILE, require_run_folder

SCHEMA_VERSION = 2
STATES = ("planned", "submitted", "generated", "succeeded", "failed", "unanswered", "lost")
"""Every state a job can be in."""
BUSY_TIMEOUT_MS = 10_000
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
    submitted_at REAL, finished_at REAL, latency_s REAL, request_json TEXT,
    unanswered_attempts INTEGER NOT NULL DEFAULT 0, in_spec INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
CREATE TABLE IF NOT EXISTS runs (
    n INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT NOT NULL, finished_at TEXT,
    outcome TEXT NOT NULL, reason TEXT, requests INTEGER, credits REAL, duration_s REAL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outputs (
    job_id TEXT NOT NULL, output_index INTEGER NOT NULL, remote_path TEXT, url TEXT,
    status TEXT NOT NULL DEFAULT 'pending', file TEXT, sha256 TEXT, bytes INTEGER,
    width INTEGER, height INTEGER, error TEXT, expires_at REAL, mtime_ns INTEGER,
    PRIMARY KEY (job_id, output_index)
);
"""
# Columns added since schema 1, for journals an older sweeper wrote.
MIGRATIONS = (
    ("jobs", "unanswered_attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("jobs", "in_spec", "INTEGER NOT NULL DEFAULT 1"),
    ("outputs", "expires_at", "REAL"),
    ("outputs", "mtime_ns", "INTEGER"),
)
NO_URL = "the API's answer carried no URL for this image"
# Meta keys, + an input image's sha256: where it was found (absolute), and where the
# run folder keeps its copy (relative to the folder).
INPUT_PATH_META = "input:"
INPUT_FILE_META = "input_file:"
GENERATED_SQL = "UPDATE jobs SET state = 'generated', "

INSERT_JOB = (
    f"INSERT INTO jobs (job_id, idx, model, image_given, image_sha256, asset_path, "
    f"{', '.join(PARAM_COLUMNS)}, api_base) "
    f"VALUES ({', '.join('?' * (6 + len(PARAM_COLUMNS) + 1))}) "
    # A job kept from an earlier, different spec takes its place in this one.
    "ON CONFLICT (job_id) DO UPDATE SET idx = excluded.idx, in_spec = 1"
)


@dataclass(frozen=True)
class PendingDownload:
    """An output the API made (and billed) that is not on disk yet, and may still be fetched."""

    job_id: str
    output_index: int
    remote_path: str
    url: str
    fmt: str
    state: str  # the job's: generated, or lost (a rerun tries its live links again, free)
    missing: int  # the job's images not on disk, this one included


def link_expiry(url: str) -> float | None:
    """When a presigned URL dies: X-Amz-Date + X-Amz-Expires, in epoch seconds, if it says."""
    query = parse_qs(urlsplit(url).query)
    try:
        signed = time.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
        lifetime = float(query["X-Amz-Expires"][0])
    except (KeyError, IndexError, ValueError):
        return None
    return _utc_seconds(signed) + lifetime


def _utc_seconds(moment: time.struct_time) -> float:
    import calendar

    return float(calendar.timegm(moment))


class Journal:
    """One SQLite connection to a run's journal, safe to share between threads."""

    # A seam for tests: called before every COMMIT, it can fail it as a full disk would.
    before_commit: Callable[[], None] | None = None

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        self._deferred: list[tuple[str, Sequence[Any]]] = []
        self._assets: dict[tuple[str, str], str] = {}
        self._lock = threading.RLock()

    @classmethod
    def open(cls, run_dir: Path) -> Journal:
        """Open (creating if needed) the journal of `run_dir`, for reading and writing."""
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / JOURNAL_FILE
        try:
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on the disk before it returns, so a power cut cannot
            # forget that a request left (and may be billed), or that it was answered.
            connection.execute("PRAGMA synchronous=FULL")
            # Job ids are random hashes: inserts land all over the index, so keep it cached.
            connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            connection.executescript(SCHEMA)
        except sqlite3.DatabaseError as error:
            raise SpecError(f"{path}: not a usable sweeper journal ({error})") from error
        journal = cls(connection, path)
        journal._migrate()
        return journal

    @classmethod
    def open_existing(cls, run_dir: Path) -> Journal:
        """Open the journal of an existing run folder; read-only if the folder is."""
        require_run_folder(run_dir)
        path = run_dir / JOURNAL_FILE
        if not path.is_file():
            raise SpecError(f"{run_dir}: no {JOURNAL_FILE} here; is this a sweeper run folder?")
        if os.access(run_dir, os.W_OK) and os.access(path, os.W_OK):
            return cls.open(run_dir)
        return cls._open_read_only(path)

    @classmethod
    def _open_read_only(cls, path: Path) -> Journal:
        """Read a journal in a folder we may not write (where SQLite cannot make its -shm)."""
        try:
            connection = connect_read_only(path, check_same_thread=False)
        except sqlite3.DatabaseError as error:
            raise SpecError(f"{path}: cannot read this journal ({error})") from None
        journal = cls(connection, path)
        found = journal.get_meta("schema_version", 1)
        if int(found) != SCHEMA_VERSION:
            raise SpecError(
                f"{path}: journal schema {found}, and the folder is read-only so it "
                "cannot be brought up to date; copy the folder somewhere writable"
            )
        return journal

    def _migrate(self) -> None:
        found = self.get_meta("schema_version")
        if found is not None and int(found) > SCHEMA_VERSION:
            raise SpecError(
                f"{self.path}: written by a newer sweeper (journal schema {found}); upgrade sweeper"
            )
        if found is None or int(found) < SCHEMA_VERSION:
            for table, column, kind in MIGRATIONS:
                present = {row[1] for row in self._rows(f"PRAGMA table_info({table})")}
                if column not in present:
                    self._write(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            self.set_meta("schema_version", SCHEMA_VERSION)

    def close(self) -> None:
        with self._lock:
            try:
                self.flush()
            finally:
                self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None:
            self.close()
            return
        # Leaving on an error already: a failing last flush (a full disk) must not hide it.
        with self._lock, suppress(sqlite3.Error, OSError):
            try:
                self.flush()
            finally:
                self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction that also carries every deferred change.

        The deferred changes are dropped from memory only once COMMIT returned: a
        commit that fails (a full disk) rolls back and keeps them for the next try.
        """
        with self._lock:
            self._db.execute("BEGIN")
            try:
                # Consecutive changes of one kind go in one executemany, in their order.
                for sql, changes in groupby(self._deferred, key=itemgetter(0)):
                    self._db.executemany(sql, [args for _, args in changes])
                yield self._db
                if self.before_commit is not None:
                    self.before_commit()
                self._db.execute("COMMIT")
            except BaseException:
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
            self._deferred.clear()

    def _write(self, sql: str, args: Sequence[Any] = ()) -> None:
        """Commit now: the change must survive a crash that happens right after."""
        with self._transaction() as db:
            db.execute(sql, args)

    def _defer(self, sql: str, args: Sequence[Any]) -> None:
        """Commit later: the change is safe to lose, a rerun recomputes it without paying."""
        with self._lock:
            self._deferred.append((sql, args))
            full = len(self._deferred) >= MAX_DEFERRED
        if full:
            self.flush()

    def flush(self) -> None:
        """Commit every deferred change in one transaction."""
        with self._lock:
            if self._deferred:
                with self._transaction():
                    pass

    @property
    def uncommitted(self) -> list[tuple[str, Sequence[Any]]]:
        """Changes staged or deferred but not committed yet (after a failed commit)."""
        with self._lock:
            return list(self._deferred)

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            # Reads see the deferred changes; if they cannot be written now (a full disk),
            # the read goes on without them, and the next write or close tries again.
            with suppress(sqlite3.OperationalError, OSError):
                self.flush()
            return self._db.execute(sql, args).fetchall()

    # run-level metadata

    def set_meta(self, key: str, value: Any) -> None:
        self._write("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        return default if not rows else json.loads(rows[0][0])

    # uploaded-asset cache

    def cached_asset(self, api_base: str, sha256: str) -> str | None:
        """Asked once per job, so answered from memory after the first look-up."""
        key = (api_base, sha256)
        if key not in self._assets:
            rows = self._rows(
                "SELECT asset_path FROM assets WHERE api_base = ? AND sha256 = ?", key
            )
            if not rows:
                return None
            self._assets[key] = rows[0][0]
        return self._assets[key]

    def remember_asset(self, api_base: str, sha256: str, asset_path: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO assets VALUES (?, ?, ?)", (api_base, sha256, asset_path)
        )
        self._assets[(api_base, sha256)] = asset_path

    def forget_asset(self, api_base: str, sha256: str) -> None:
        """The server no longer knows this upload: the next job uploads the file again."""
        self._write("DELETE FROM assets WHERE api_base = ? AND sha256 = ?", (api_base, sha256))
        self._assets.pop((api_base, sha256), None)

    # jobs

    def add_jobs(self, jobs: Iterable[Job], api_base: str) -> int:
        """Record the spec's jobs as planned (existing ones keep their state); returns how
        many were new. Every job the journal holds and this spec does not is marked
        `in_spec = 0`: kept, but no longer part of the spec (a spec edited between runs)."""
        before = self.job_count()
        iterator = iter(jobs)
        first = True
        while batch := list(islice(iterator, BATCH)):
            with self._transaction() as db:
                if first:
                    db.execute("UPDATE jobs SET in_spec = 0")
                    first = False
                db.executemany(INSERT_JOB, (_job_row(job, api_base) for job in batch))
        return self.job_count() - before

    def changed_inputs(self, images: Iterable[tuple[str, str]]) -> list[tuple[str, int]]:
        """Inputs, given as (path as written, sha256 now), whose path names settled jobs made
        from another content: the photo was replaced. Returns (path, such jobs) pairs."""
        changed = []
        for given, sha256 in images:
            [(count,)] = self._rows(
                "SELECT count(*) FROM jobs WHERE image_given = ? AND image_sha256 != ? "
                "AND state IN ('succeeded', 'generated', 'lost', 'unanswered')",
                (given, sha256),
            )
            if count:
                changed.append((given, int(count)))
        return changed

    def start_run(self, started_at: str, record: dict[str, Any]) -> int:
        """A new line in the run history; returns its number."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO runs (started_at, outcome, record) VALUES (?, 'running', ?)",
                (started_at, json.dumps(record)),
            )
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)

    def finish_run(self, number: int, record: dict[str, Any]) -> None:
        """How run `number` ended, from its finished run.json record."""
        credits = (record.get("credits") or {}).get("spent")
        self._write(
            "UPDATE runs SET finished_at = ?, outcome = ?, reason = ?, requests = ?, "
            "credits = ?, duration_s = ?, record = ? WHERE n = ?",
            (
                record.get("finished_at"),
                record.get("outcome"),
                record.get("reason"),
                (record.get("this_run") or {}).get("requests"),
                credits,
                record.get("duration_s"),
                json.dumps(record),
                number,
            ),
        )

    def job_count(self) -> int:
        return int(self._rows("SELECT count(*) FROM jobs")[0][0])

    def job_states(self) -> dict[str, str]:
        """Every job's state: for small journals and tests; the pool asks `states_of`."""
        return dict(self._rows("SELECT job_id, state FROM jobs"))

    def states_of(self, job_ids: Sequence[str]) -> dict[str, str]:
        """The states of these jobs (those in the journal), in one query per STATES_BATCH ids."""
        states: dict[str, str] = {}
        for start in range(0, len(job_ids), STATES_BATCH):
            chunk = job_ids[start : start + STATES_BATCH]
            marks = ", ".join("?" * len(chunk))
            states.update(
                self._rows(f"SELECT job_id, state FROM jobs WHERE job_id IN ({marks})", chunk)
            )
        return states

    def counts(self) -> dict[str, int]:
        """Jobs in each state, every state present (zeros included)."""
        found = dict(self._rows("SELECT state, count(*) FROM jobs GROUP BY state"))
        return {state: int(found.get(state, 0)) for state in STATES}

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
        for the pool's group commit) before the request leaves.
        """
        self._stage(
            "UPDATE jobs SET state = 'submitted', attempts = ?, request_json = ?, "
            "submitted_at = ?, asset_path = ?, error = NULL WHERE job_id = ?",
            [(attempt, request_json, at, asset_path, job_id)],
            commit=commit,
        )

    def count_unanswered(self, job_id: str, *, commit: bool = True) -> None:
        """One more attempt of this job went unanswered: it may have been billed."""
        self._stage(
            "UPDATE jobs SET unanswered_attempts = unanswered_attempts + 1 WHERE job_id = ?",
            [(job_id,)],
            commit=commit,
        )

    def mark_refused(self, job_id: str, error: str) -> None:
        """The API refused this attempt with an answer (or it never left): nothing was
        billed, so until a retry sends it again the job is failed, and a rerun resends it.
        Deferred: if lost, the job stays submitted and a rerun counts it maybe billed."""
        self._defer(
            "UPDATE jobs SET state = 'failed', error = ? WHERE job_id = ? AND state = 'submitted'",
            (error, job_id),
        )

    def mark_unanswered(self, job_id: str, error: str, at: float) -> None:
        """The job's last attempt went unanswered and is not sent again (unless asked)."""
        self._write(
            "UPDATE jobs SET state = 'unanswered', error = ?, finished_at = ? WHERE job_id = ?",
            (error, at, job_id),
        )

    def settle_orphans(self) -> int:
        """Jobs a dead run left submitted: their request left, no answer was recorded.

        Only called while the folder's lock is held, so no request of theirs is still in
        flight: each counts as one unanswered attempt. Returns how many there were.
        """
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE jobs SET state = 'unanswered', "
                "unanswered_attempts = unanswered_attempts + 1, "
                "error = 'sent before the last run stopped, and never answered' "
                "WHERE state = 'submitted'"
            ).rowcount
        return int(changed)

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
        """The API answered SUCCESS: paid for. Outputs start as pending downloads.

        An output the answer gave no URL for is failed at once: its image is lost. The
        state and the outputs always land in the same transaction; with `commit=False`
        the caller must `flush()` before downloading.
        """
        self._stage(
            GENERATED_SQL + "record_uuid = ?, latency_s = ?, finished_at = ?, error = NULL "
            "WHERE job_id = ?",
            [(record_uuid, latency_s, at, job_id)],
            commit=False,
        )
        self._stage(
            "INSERT OR REPLACE INTO outputs "
            "(job_id, output_index, remote_path, url, expires_at, status, error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    job_id,
                    o.index,
                    o.remote_path,
                    o.url,
                    link_expiry(o.url),
                    "pending" if o.url else "failed",
                    None if o.url else NO_URL,
                )
                for o in outputs
            ],
            commit=commit,
        )

    def _stage(self, sql: str, rows: list[Sequence[Any]], *, commit: bool) -> None:
        with self._lock:
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
        mtime_ns: int | None = None,
    ) -> None:
        """Deferred: if lost, the rerun finds the image on disk or downloads it again."""
        self._defer(
            "UPDATE outputs SET status = 'done', file = ?, sha256 = ?, bytes = ?, width = ?, "
            "height = ?, mtime_ns = ?, error = NULL WHERE job_id = ? AND output_index = ?",
            (file, sha256, size, width, height, mtime_ns, job_id, output_index),
        )

    def mark_output_failed(self, job_id: str, output_index: int, error: str) -> None:
        """This image cannot be fetched (a dead link, a bad file): its job is lost."""
        self._write(
            "UPDATE outputs SET status = 'failed', error = ? WHERE job_id = ? AND output_index = ?",
            (error, job_id, output_index),
        )

    def mark_output_pending(self, job_id: str, output_index: int, error: str) -> None:
        """This image could not be fetched this time; a rerun tries again. Keeps why."""
        self._defer(
            "UPDATE outputs SET status = 'pending', error = ? "
            "WHERE job_id = ? AND output_index = ?",
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

    def mark_lost(self, job_id: str, error: str, at: float) -> None:
        """Paid for, and one or more of its images could not be fetched."""
        self._write(
            "UPDATE jobs SET state = 'lost', error = ?, finished_at = ? WHERE job_id = ?",
            (error, at, job_id),
        )

    def reopen_output(self, job_id: str, output_index: int, state: str) -> None:
        """A succeeded image went missing or changed on disk: fetch it again, or it is lost."""
        problem = "the image file went missing or changed on disk"
        with self._transaction() as db:
            db.execute(
                "UPDATE outputs SET status = 'pending', error = ? "
                "WHERE job_id = ? AND output_index = ?",
                (problem, job_id, output_index),
            )
            error = None if state == "generated" else f"{problem}, and its link is dead"
            db.execute(
                "UPDATE jobs SET state = ?, error = ? WHERE job_id = ?", (state, error, job_id)
            )

    def note_mtime(self, job_id: str, output_index: int, mtime_ns: int) -> None:
        """The image was checked by hash and is intact: remember its mtime for a cheap check."""
        self._defer(
            "UPDATE outputs SET mtime_ns = ? WHERE job_id = ? AND output_index = ?",
            (mtime_ns, job_id, output_index),
        )

    def pending_downloads(self, now: float | None = None) -> list[PendingDownload]:
        """Images paid for and not on disk whose link may still work: a rerun fetches them.

        Outputs of generated jobs, and of lost jobs whose link has not expired (a link
        that failed before may work now; trying costs nothing).
        """
        now = time.time() if now is None else now
        rows = self._rows(
            "SELECT o.job_id, o.output_index, o.remote_path, o.url, j.format, j.state, "
            "(SELECT count(*) FROM outputs m WHERE m.job_id = o.job_id AND m.status != 'done') "
            "FROM outputs o JOIN jobs j USING (job_id) "
            "WHERE j.state IN ('generated', 'lost') AND o.status != 'done' "
            "AND coalesce(o.url, '') != '' AND coalesce(o.expires_at, ?) >= ? "
            "ORDER BY j.idx, o.output_index",
            (now, now),
        )
        return [PendingDownload(*row) for row in rows]

    def downloaded_jobs(self) -> list[str]:
        """Generated jobs with every output on disk: only their success was lost (deferred)."""
        rows = self._rows(
            "SELECT job_id FROM jobs j WHERE j.state = 'generated' AND NOT EXISTS "
            "(SELECT 1 FROM outputs o WHERE o.job_id = j.job_id AND o.status != 'done') "
            "ORDER BY j.idx"
        )
        return [job_id for (job_id,) in rows]

    def restore(
        self,
        job_columns: Sequence[str],
        jobs: list[tuple],
        output_columns: Sequence[str],
        outputs: list[tuple],
    ) -> None:
        """Write jobs and outputs rebuilt elsewhere (`sweeper repair`), and their uploads."""
        with self._transaction() as db:
            db.executemany(_insert("jobs", job_columns), jobs)
            db.executemany(_insert("outputs", output_columns), outputs)
            db.execute(
                "INSERT OR REPLACE INTO assets SELECT DISTINCT api_base, image_sha256, "
                "asset_path FROM jobs WHERE image_sha256 IS NOT NULL AND asset_path IS NOT NULL"
            )

    def unrecorded_answers(self) -> list[str]:
        """Record uuids of SUCCESS answers staged but never committed (a failed write)."""
        with self._lock:
            return [str(args[0]) for sql, args in self._deferred if sql.startswith(GENERATED_SQL)]

    def job_row(self, job_id: str) -> dict[str, Any] | None:
        """Everything stored about one job, its outputs included."""
        with self._lock:
            self.flush()
            cursor = self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
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
        return connect_read_only(self.path)

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        """Read-only access for the manifest, status and repair views."""
        return self._rows(sql, args)


def _insert(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def connect_read_only(path: Path, **options: Any) -> sqlite3.Connection:
    """A connection that never writes the journal, even in a folder we may not write.

    SQLite in WAL mode wants to create its -shm file to read; where the folder is
    read-only it cannot, and `immutable=1` (nothing else writes it then) is the way in.
    """
    uri = path.resolve().as_uri()
    try:
        connection = sqlite3.connect(f"{uri}?mode=ro", uri=True, **options)
        connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone()
        return connection
    except sqlite3.OperationalError:
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, **options)


def has_jobs(path: Path) -> bool:
    """Whether the journal at `path` records any job (read-only; an unreadable one has none)."""
    try:
        with closing(connect_read_only(path)) as db:
            return db.execute("SELECT 1 FROM jobs LIMIT 1").fetchone() is not None
    except sqlite3.DatabaseError:
        return False


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
