"""A consistent copy of a run folder's record, taken even while a run writes to it.

Owns which files a record holds and how each one is read, so that what is
copied is exactly what was checked:

- the journal through SQLite's backup API, in one read transaction: a live
  run's later writes are not in it;
- an image only when its bytes hash to the sha256 that this journal copy
  recorded for it (an image still downloading, or not yet recorded, is left
  out, as the journal copy does not know it either);
- an input under `inputs/` only when its bytes hash to its name;
- every other file as it is, read once (big files through a private copy).

Scratch never travels: the lock, `tmp/`, hidden files (`.part` files among
them), the live journal's -wal/-shm, symbolic links (they could point anywhere).
`pack` and `remote` both take their files from here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from sweeper.errors import SpecError
from sweeper.run_folder import IMAGES_DIR as IMAGES
from sweeper.run_folder import INPUTS_DIR as INPUTS
from sweeper.run_folder import JOURNAL_FILE as JOURNAL
from sweeper.run_folder import TMP_DIR, require_run_folder

logger = logging.getLogger("sweeper")

JOURNAL_SIDE_FILES = tuple(f"{JOURNAL}-{suffix}" for suffix in ("wal", "shm", "journal"))
# Never part of a record: the download scratch folder, the journal's live side
# files, and a MANIFEST.sha256 left by unpacking a pack with plain tar. (The lock
# and partial files are hidden, and hidden names never travel.)
SKIPPED_TOP_LEVEL = frozenset({TMP_DIR, *JOURNAL_SIDE_FILES, "MANIFEST.sha256"})
# A file up to this size is read into memory once; a bigger one is copied aside.
IN_MEMORY_BYTES = 64 * 2**20
CHUNK_BYTES = 2**20
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
DONE_OUTPUTS = (
    "SELECT file, sha256 FROM outputs "
    "WHERE status = 'done' AND file IS NOT NULL AND sha256 IS NOT NULL"
)


@dataclass(frozen=True)
class RecordFile:
    """One file of the record: where to read it, and the hash it must have, if known."""

    relative: str
    source: Path
    sha256: str | None = None
    stable: bool = False  # a private copy no one else writes: read it where it is


@dataclass(frozen=True)
class Content:
    """A file's bytes as checked: in memory, or (big files) in a private copy at `path`."""

    relative: str
    sha256: str
    size: int
    mtime: float
    data: bytes | None = None
    path: Path | None = None


class Snapshot:
    """The files of one run folder's record, with the journal copied at one instant."""

    def __init__(self, run_dir: Path, scratch: Path, files: list[RecordFile]) -> None:
        self.run_dir = run_dir
        self.files = tuple(files)
        self._scratch = scratch

    def known_sha256(self, file: RecordFile) -> str | None:
        """The hash a copy of this file will have: the recorded one, or the file's own now."""
        if file.sha256 is not None:
            return file.sha256
        try:
            return file_sha256(file.source)
        except FileNotFoundError:
            return None

    def content(self, file: RecordFile) -> Content | None:
        """The file's bytes now, or None (logged) when they are gone or not what was recorded."""
        try:
            content = self._read(file)
        except FileNotFoundError:
            logger.warning(
                "%s: %s disappeared while it was copied; left out", self.run_dir, file.relative
            )
            return None
        if file.sha256 is not None and content.sha256 != file.sha256:
            logger.warning(
                "%s: %s does not match the sha256 recorded for it; left out",
                self.run_dir,
                file.relative,
            )
            return None
        return content

    def release(self, content: Content) -> None:
        """Done with this content: remove its private copy, if it has one, to free the disk."""
        if content.path is not None and content.path.parent == self._scratch:
            content.path.unlink(missing_ok=True)

    def _read(self, file: RecordFile) -> Content:
        with file.source.open("rb") as handle:
            status = os.fstat(handle.fileno())
            if file.stable:
                digest = _hash_stream(handle)
                return Content(
                    file.relative, digest, status.st_size, status.st_mtime, path=file.source
                )
            if status.st_size <= IN_MEMORY_BYTES:
                data = handle.read()
                digest = hashlib.sha256(data).hexdigest()
                return Content(file.relative, digest, len(data), status.st_mtime, data=data)
            descriptor, name = tempfile.mkstemp(dir=self._scratch)
            copy = Path(name)
            with os.fdopen(descriptor, "wb") as sink:
                digest = _copy_hashing(handle, sink)
            return Content(file.relative, digest, copy.stat().st_size, status.st_mtime, path=copy)


@contextmanager
def taking_snapshot(run_dir: Path) -> Iterator[Snapshot]:
    """Copy the journal of `run_dir` now and list the record's files; scratch is removed after."""
    run_dir = Path(run_dir)
    with tempfile.TemporaryDirectory(prefix="sweeper-snapshot-") as scratch:
        journal_copy = Path(scratch) / JOURNAL
        done = backup_journal(run_dir, journal_copy)
        files = [RecordFile(JOURNAL, journal_copy, stable=True)]
        files += _recorded_images(run_dir, done)
        files += _other_files(run_dir)
        yield Snapshot(run_dir, Path(scratch), sorted(files, key=lambda f: f.relative))


def backup_journal(run_dir: Path, target: Path) -> dict[str, str]:
    """Copy DIR/journal.sqlite to `target` in one transaction; returns {file: sha256} done."""
    require_run_folder(run_dir)
    source_path = run_dir / JOURNAL
    if not source_path.is_file():
        raise SpecError(f"{run_dir}: no {JOURNAL} here; is this a sweeper run folder?")
    try:
        # mode=rw never creates a missing file; a write-protected one opens read-only.
        uri = f"{source_path.resolve().as_uri()}?mode=rw"
        with (
            closing(sqlite3.connect(uri, uri=True, timeout=30)) as source,
            closing(sqlite3.connect(target)) as copy,
        ):
            source.backup(copy)
            return dict(copy.execute(DONE_OUTPUTS).fetchall())
    except sqlite3.DatabaseError as error:
        raise SpecError(f"{source_path}: not a usable sweeper journal ({error})") from None


def is_safe_relative(name: str) -> bool:
    """A plain relative POSIX path: no root, no `..`, `.` or empty parts, no odd characters."""
    if not name or name.startswith("/") or any(c in name for c in "\\\n\r\0"):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def is_record_path(name: str) -> bool:
    """A path a record may hold: safe, and none of the scratch a snapshot leaves out.

    Checked on what arrives from elsewhere (a pack, a remote index): a copy must
    not bring a -wal file for the journal, a lock, or partial files with it.
    """
    if not is_safe_relative(name):
        return False
    parts = name.split("/")
    return not any(_skipped(part, at_top=index == 0) for index, part in enumerate(parts))


def _recorded_images(run_dir: Path, done: dict[str, str]) -> list[RecordFile]:
    files = []
    for relative, sha256 in done.items():
        source = run_dir / relative
        if not (is_safe_relative(relative) and relative.startswith(f"{IMAGES}/")):
            logger.warning(
                "%s: the journal names an odd image path %r; left out", run_dir, relative
            )
        elif source.is_symlink() or not source.is_file():
            logger.warning(
                "%s: %s is recorded as downloaded but missing; left out", run_dir, relative
            )
        else:
            files.append(RecordFile(relative, source, sha256.lower()))
    return files


def _other_files(run_dir: Path) -> list[RecordFile]:
    files = []
    for folder, subfolders, names in os.walk(run_dir):
        here = Path(folder)
        at_top = here == run_dir
        subfolders[:] = [
            name
            for name in subfolders
            if not _skipped(name, at_top) and not (at_top and name == IMAGES)
        ]
        for name in names:
            path = here / name
            relative = path.relative_to(run_dir).as_posix()
            if _skipped(name, at_top) or (at_top and name == JOURNAL):
                continue
            if path.is_symlink() or not is_safe_relative(relative):
                logger.warning("%s: %s is a link or has an odd name; left out", run_dir, relative)
            elif path.is_file():
                files.append(RecordFile(relative, path, _sha256_by_name(relative)))
    return files


def _skipped(name: str, at_top: bool) -> bool:
    return name.startswith(".") or (at_top and name in SKIPPED_TOP_LEVEL)


def _sha256_by_name(relative: str) -> str | None:
    """An input kept as inputs/<sha256>.<ext> must hash to its name."""
    path = PurePosixPath(relative)
    if len(path.parts) == 2 and path.parts[0] == INPUTS:
        stem = path.name.split(".", 1)[0]
        return stem if SHA256_PATTERN.match(stem) else None
    return None


def _hash_stream(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := handle.read(CHUNK_BYTES):
        digest.update(chunk)
    return digest.hexdigest()


def _copy_hashing(source: BinaryIO, sink: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := source.read(CHUNK_BYTES):
        digest.update(chunk)
        sink.write(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in chunks."""
    with path.open("rb") as handle:
        return _hash_stream(handle)


def unrecorded_images(folder: Path, hashes: dict[str, str]) -> list[str]:
    """The images among `hashes` ({path: sha256}) that the journal in `folder` did not record.

    For a copy that arrived from elsewhere: its images must be the ones its own
    journal vouches for, not only the ones its listing names.
    """
    # immutable: a private copy, read without locks or -wal/-shm side files.
    uri = f"{(folder / JOURNAL).resolve().as_uri()}?immutable=1"
    try:
        with closing(sqlite3.connect(uri, uri=True)) as journal:
            recorded = dict(journal.execute(DONE_OUTPUTS).fetchall())
    except sqlite3.DatabaseError as error:
        raise SpecError(f"{folder / JOURNAL}: not a usable sweeper journal ({error})") from None
    images = (name for name in hashes if name.startswith(f"{IMAGES}/"))
    return sorted(name for name in images if str(recorded.get(name, "")).lower() != hashes[name])


def restore_recorded_mtimes(folder: Path) -> None:
    """Give each image in a copied record the mtime its journal recorded.

    A rerun trusts an image whose size and mtime are as recorded without hashing
    it; a fresh copy has a new mtime, so restoring the recorded one (after the
    caller checked every hash) keeps that fast path for a moved record.
    """
    uri = f"{(folder / JOURNAL).resolve().as_uri()}?immutable=1"
    try:
        with closing(sqlite3.connect(uri, uri=True)) as journal:
            rows = journal.execute(
                "SELECT file, mtime_ns FROM outputs "
                "WHERE status = 'done' AND file IS NOT NULL AND mtime_ns IS NOT NULL"
            ).fetchall()
    except sqlite3.OperationalError:  # a journal from before mtimes were recorded
        return
    for relative, mtime_ns in rows:
        path = folder / relative
        if is_safe_relative(relative) and path.is_file() and not path.is_symlink():
            os.utime(path, ns=(int(mtime_ns), int(mtime_ns)))


def name_list(what: str, names: list[str], shown: int = 5) -> str:
    """`3 missing: a, b, c`, the first few names of many and how many more; "" for none."""
    if not names:
        return ""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)} {what}: {', '.join(names[:shown])}{more}"


def move_children(source: Path, dest: Path) -> None:
    """Move everything in `source` into `dest` (created if needed), replacing same names."""
    dest.mkdir(parents=True, exist_ok=True)
    for child in source.iterdir():
        target = dest / child.name
        if child.is_dir() and target.is_dir():
            move_children(child, target)
        else:
            shutil.move(child, target)
