"""Human votes on a run's images: the `votes` table of `DIR/journal.sqlite`.

A vote is one row, committed before the function returns, so closing a review
tab or killing the review server loses nothing, and several raters can vote on
one run at once (SQLite serialises the writers; a busy timeout waits out a run
that holds the journal). The table:

    id          autoincrement, the order votes were cast in
    time        ISO 8601 UTC, e.g. 2026-11-02T09:14:03.271Z
    rater       who voted (free text)
    mode        'pairs' or 'stars'
    file        pairs: the preferred image (either one for a tie); stars: the image rated
    other_file  pairs: the other image; stars: NULL
    choice      pairs: 'win' (file beat other_file) or 'tie'; stars: '1'..'5' or 'favourite'

`file` and `other_file` are the manifest's `file` values (paths relative to DIR).
Undo deletes the row: a vote taken back was never cast.
"""

from __future__ import annotations

import functools
import getpass
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sweeper.errors import SpecError
from sweeper.journal import connect_read_only
from sweeper.run_folder import JOURNAL_FILE, require_run_folder, require_writable
from sweeper.run_folder import MANIFEST_PARQUET as MANIFEST_FILE

if TYPE_CHECKING:
    import pandas as pd

# A run writing its journal holds the write lock for milliseconds at a time; a
# vote waits for it rather than failing.
BUSY_TIMEOUT_S = 30.0
MAX_RATER_LENGTH = 100
STARS = range(1, 6)
WIN, TIE, FAVOURITE = "win", "tie", "favourite"
VOTE_COLUMNS = ["id", "time", "rater", "mode", "file", "other_file", "choice"]
Mode = Literal["pairs", "stars"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    rater TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('pairs', 'stars')),
    file TEXT NOT NULL,
    other_file TEXT,
    choice TEXT NOT NULL CHECK (
        (mode = 'pairs' AND choice IN ('win', 'tie') AND other_file IS NOT NULL)
        OR (mode = 'stars' AND choice IN ('1', '2', '3', '4', '5', 'favourite')
            AND other_file IS NULL)
    )
);
CREATE INDEX IF NOT EXISTS votes_by_rater ON votes (rater, id);
"""


@dataclass(frozen=True)
class Vote:
    """One row of the votes table."""

    id: int
    time: str
    rater: str
    mode: str
    file: str
    other_file: str | None
    choice: str


def default_rater() -> str:
    """The login name, or "anonymous" where the system has none (some containers)."""
    try:
        return getpass.getuser() or "anonymous"
    except (OSError, KeyError):
        return "anonymous"


def record_stars(
    run_dir: Path | str,
    file: str,
    stars: int,
    rater: str | None = None,
    *,
    at: datetime | None = None,
) -> int:
    """Rate one image 1–5 stars; return the vote's id. A rater's latest rating of a file counts."""
    if isinstance(stars, bool) or not isinstance(stars, int) or stars not in STARS:
        raise SpecError(f"stars must be a whole number from 1 to 5, not {stars!r}")
    run_dir = Path(run_dir)
    return _insert(run_dir, "stars", resolve_file(run_dir, file), None, str(stars), rater, at)


def record_favourite(
    run_dir: Path | str, file: str, rater: str | None = None, *, at: datetime | None = None
) -> int:
    """Mark one image as a favourite; return the vote's id."""
    run_dir = Path(run_dir)
    return _insert(run_dir, "stars", resolve_file(run_dir, file), None, FAVOURITE, rater, at)


def record_preference(
    run_dir: Path | str,
    winner_file: str,
    loser_file: str,
    tie: bool = False,
    rater: str | None = None,
    *,
    at: datetime | None = None,
) -> int:
    """Record that `winner_file` beat `loser_file` (or that they tied); return the vote's id."""
    run_dir = Path(run_dir)
    winner, loser = resolve_file(run_dir, winner_file), resolve_file(run_dir, loser_file)
    if winner == loser:
        raise SpecError(f"{winner}: an image cannot be compared with itself")
    return _insert(run_dir, "pairs", winner, loser, TIE if tie else WIN, rater, at)


def list_votes(run_dir: Path | str, rater: str | None = None) -> pd.DataFrame:
    """Every vote in the order cast (one rater's if given); `time` as UTC datetimes."""
    import pandas as pd

    with _connect(Path(run_dir), read_only=True) as db:
        rows = _select(db, rater) if _has_votes_table(db) else []
    frame = pd.DataFrame.from_records(rows, columns=VOTE_COLUMNS)
    frame["id"] = frame["id"].astype("int64")
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    for column in VOTE_COLUMNS[2:]:
        frame[column] = frame[column].astype("string")
    return frame


def undo_last(run_dir: Path | str, rater: str | None = None) -> Vote | None:
    """Delete the latest vote (of `rater` if given) and return it; None if there is none."""
    with _connect(Path(run_dir)) as db:
        if not _has_votes_table(db):
            return None
        db.execute("BEGIN IMMEDIATE")  # the read and the delete see the same latest vote
        try:
            rows = _select(db, rater, newest_first=True, limit=1)
            if rows:
                db.execute("DELETE FROM votes WHERE id = ?", (rows[0][0],))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return Vote(*rows[0]) if rows else None


def resolve_file(run_dir: Path, given: str) -> str:
    """The manifest `file` value `given` names: that value itself, or a path to the image."""
    files = manifest_files(run_dir)
    if given in files:
        return given
    candidate = Path(given)
    if not candidate.is_absolute():
        candidate = Path.cwd() / candidate
    try:
        relative = candidate.resolve().relative_to(run_dir.resolve()).as_posix()
    except (OSError, ValueError):
        relative = None
    if relative in files:
        return relative
    example = next(iter(sorted(files)), "images/<job_id>_0.png")
    raise SpecError(
        f"{given}: not an image of {run_dir}; give a `file` value of its manifest, e.g. {example}"
    )


def manifest_files(run_dir: Path) -> frozenset[str]:
    """The `file` values of the run's manifest, read again only when the manifest changes."""
    _journal_path(run_dir)  # a folder that is not a run at all says so first
    path = run_dir / MANIFEST_FILE
    try:
        stat = path.stat()
    except OSError:
        raise SpecError(
            f"{run_dir}: no {MANIFEST_FILE} here; is this a sweeper run folder? "
            f"(`sweeper export {run_dir} --to {path}` rebuilds it)"
        ) from None
    return _read_files(path.resolve(), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_files(path: Path, mtime_ns: int, size: int) -> frozenset[str]:
    """The cache key includes the manifest's mtime and size, so a rewrite is seen."""
    import pyarrow.parquet as pq

    try:
        column = pq.read_table(path, columns=["file"]).column("file")
    except Exception as error:  # pyarrow raises several unrelated types for a bad file
        raise SpecError(f"{path}: not a readable manifest ({error})") from error
    return frozenset(value for value in column.to_pylist() if value)


def _insert(
    run_dir: Path,
    mode: Mode,
    file: str,
    other_file: str | None,
    choice: str,
    rater: str | None,
    at: datetime | None,
) -> int:
    row = (_timestamp(at), check_rater(rater), mode, file, other_file, choice)
    with _connect(run_dir) as db:
        db.executescript(SCHEMA)
        cursor = db.execute(
            "INSERT INTO votes (time, rater, mode, file, other_file, choice) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            row,
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid


def check_rater(rater: str | None) -> str:
    """The rater's name as stored (the login name if None), or SpecError."""
    name = default_rater() if rater is None else rater.strip()
    if not name or len(name) > MAX_RATER_LENGTH or not name.isprintable():
        raise SpecError(
            f"rater {rater!r} is not a usable name (1–{MAX_RATER_LENGTH} printable characters)"
        )
    return name


def _timestamp(at: datetime | None) -> str:
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextmanager
def _connect(run_dir: Path, *, read_only: bool = False) -> Iterator[sqlite3.Connection]:
    """An autocommit connection: every statement outside BEGIN commits at once.

    `read_only` opens the journal as such, so votes can be read from a folder we
    may not write.
    """
    path = _journal_path(run_dir)
    if not read_only:
        require_writable(run_dir, "votes cannot be recorded in it")
    try:
        if read_only:
            connection = connect_read_only(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        else:
            connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        with closing(connection) as db:
            if not read_only:  # a vote outlives a power cut, not only a kill
                db.execute("PRAGMA synchronous = FULL")
            yield db
    except sqlite3.DatabaseError as error:
        if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
            raise
        raise SpecError(f"{path}: not a usable sweeper journal ({error})") from error


def _journal_path(run_dir: Path) -> Path:
    require_run_folder(run_dir)
    path = run_dir / JOURNAL_FILE
    if not path.is_file():
        raise SpecError(f"{run_dir}: no {JOURNAL_FILE} here; is this a sweeper run folder?")
    return path


def _has_votes_table(db: sqlite3.Connection) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'votes'"
    return db.execute(query).fetchone() is not None


def _select(
    db: sqlite3.Connection, rater: str | None, *, newest_first: bool = False, limit: int = -1
) -> list[tuple]:
    where, args = ("WHERE rater = ?", (rater,)) if rater is not None else ("", ())
    order = "DESC" if newest_first else "ASC"
    sql = f"SELECT {', '.join(VOTE_COLUMNS)} FROM votes {where} ORDER BY id {order} LIMIT ?"
    return db.execute(sql, (*args, limit)).fetchall()
