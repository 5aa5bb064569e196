"""Push a run folder to object storage and pull it back, through fsspec.

A pushed run is a normal run folder under the URL plus `.sweeper-index.json`:
every file's path, sha256 and size, and whether the last push finished.

- Push sends a consistent snapshot (`sweeper.snapshot`) and only the files
  whose sha256 the index lacks. Before anything at the remote changes, the
  index stops listing what will be replaced or removed and says the push is
  unfinished; each file is written before the index lists it, and the index
  is rewritten every INDEX_EVERY_S seconds and when the push is interrupted. So
  the index never lists a file that is not there, and a push run again after
  a crash or Ctrl-C sends only what is still missing.
- Pull fetches every listed file into a private folder beside the
  destination, checks every sha256 (and the images against the pulled
  journal), and only then moves the files into place.

Credentials come only from each backend's own environment and config (for S3
the `AWS_*` variables, `AWS_ENDPOINT_URL` included, and `~/.aws/`); sweeper
never takes them as arguments or writes them anywhere. Every failure of a
backend becomes one StorageError line, with every secret-looking environment
value and the URL's own user info and query scrubbed from it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from sweeper.errors import SpecError, StorageError, SweeperError
from sweeper.run_folder import LOCK_FILE, RUN_RECORD
from sweeper.snapshot import (
    IN_MEMORY_BYTES,
    JOURNAL,
    JOURNAL_SIDE_FILES,
    SHA256_PATTERN,
    Content,
    RecordFile,
    Snapshot,
    file_sha256,
    is_record_path,
    move_children,
    name_list,
    restore_recorded_mtimes,
    taking_snapshot,
    unrecorded_images,
)

logger = logging.getLogger("sweeper")

INDEX_NAME = ".sweeper-index.json"
INDEX_FORMAT = "sweeper-run-index"
INDEX_VERSION = 1
# Files sent or fetched at once (concurrently, where the backend can).
BATCH_FILES = 32
BATCH_BYTES = 64 * 2**20
# Seconds of sending between two index writes: what a kill -9 may send again.
INDEX_EVERY_S = 10.0
# Environment variables whose values are secrets, whatever the backend.
SECRET_NAME = re.compile(
    r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|ACCESS_KEY|ACCOUNT_KEY|CONNECTION_STRING|API_KEY"
    r"|SAS|SIGNATURE",
    re.IGNORECASE,
)
MIN_SECRET_LENGTH = 4
REDACTED = "<redacted>"
MAX_MESSAGE = 300
S3_PACKAGE = "s3fs (pip install 'sweeper[s3]')"
BACKEND_PACKAGES = {
    **dict.fromkeys(("s3", "s3a"), S3_PACKAGE),
    **dict.fromkeys(("gs", "gcs"), "gcsfs"),
    **dict.fromkeys(("az", "abfs", "abfss"), "adlfs"),
}


@dataclass(frozen=True)
class Transfer:
    """Where a push or pull stands, reported after each file."""

    path: str
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int


ProgressCallback = Callable[[Transfer], None]


@dataclass(frozen=True)
class PushResult:
    """What a push did: the paths it sent, how many it found there already, what it removed."""

    sent: tuple[str, ...]
    unchanged: int
    bytes_sent: int
    removed: tuple[str, ...]


@dataclass(frozen=True)
class PullResult:
    """What a pull brought: files and bytes, every one checked."""

    files: int
    bytes: int


@dataclass
class RemoteIndex:
    """The remote's `.sweeper-index.json`: {path: {sha256, size}} and whether a push finished."""

    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    complete: bool = False
    spec_name: str | None = None

    def sha256_of(self, relative: str) -> str | None:
        entry = self.files.get(relative)
        return entry["sha256"] if entry else None

    def to_bytes(self) -> bytes:
        document = {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "complete": self.complete,
            "spec_name": self.spec_name,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": dict(sorted(self.files.items())),
        }
        return json.dumps(document, indent=1).encode()

    @classmethod
    def from_bytes(cls, where: str, data: bytes) -> RemoteIndex:
        try:
            document = json.loads(data)
            if document.get("format") != INDEX_FORMAT:
                raise ValueError("not a sweeper index")
            if int(document["version"]) > INDEX_VERSION:
                raise SpecError(f"{where}: written by a newer sweeper; upgrade sweeper")
            files = {str(k): _checked_entry(k, v) for k, v in document["files"].items()}
            return cls(files, bool(document["complete"]), document.get("spec_name"))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise SpecError(f"{where}: not a usable sweeper index ({error})") from None


def _checked_entry(relative: Any, entry: Any) -> dict[str, Any]:
    if not (isinstance(relative, str) and is_record_path(relative)):
        raise ValueError(f"a path no record holds: {relative!r}")
    sha256, size = entry["sha256"], entry["size"]
    if not (isinstance(sha256, str) and SHA256_PATTERN.match(sha256)):
        raise ValueError(f"bad sha256 for {relative}")
    if not isinstance(size, int) or size < 0:
        raise ValueError(f"bad size for {relative}")
    return {"sha256": sha256, "size": size}


class Remote:
    """One URL's folder on an fsspec file system; every call's failure becomes a StorageError."""

    def __init__(self, url: str) -> None:
        import fsspec.core

        self.shown = display_url(url)
        self._secrets = secret_values(url)
        protocol = fsspec.core.split_protocol(url)[0] or "file"
        # fsspec reuses one file system per set of options in a process, with its client.
        options: dict[str, Any] = {"auto_mkdir": True} if protocol in ("file", "local") else {}
        try:
            self.fs, root = fsspec.core.url_to_fs(url, **options)
        except ImportError:
            package = BACKEND_PACKAGES.get(protocol, f"the fsspec package for {protocol}://")
            raise StorageError(f"{self.shown}: {protocol}:// needs {package}") from None
        except Exception as error:
            raise StorageError(f"{self.shown}: {self._describe(error)}") from None
        self.root = root.rstrip("/")
        if not self.root:
            raise StorageError(f"{self.shown}: give a folder, e.g. s3://bucket/runs/NAME")

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except SweeperError:
            raise
        except Exception as error:
            raise StorageError(f"{self.shown}: {action} failed: {self._describe(error)}") from None

    def _describe(self, error: BaseException) -> str:
        lines = str(error).strip().splitlines()
        text = f"{type(error).__name__}: {lines[0] if lines else 'no details'}"
        return scrub(text, self._secrets)[:MAX_MESSAGE]

    def read_index(self) -> RemoteIndex | None:
        with self._errors(f"reading {INDEX_NAME}"):
            try:
                data = self.fs.cat_file(self.path(INDEX_NAME))
            except FileNotFoundError:
                return None
        return RemoteIndex.from_bytes(f"{self.shown}/{INDEX_NAME}", data)

    def write_index(self, index: RemoteIndex) -> None:
        from fsspec.implementations.local import LocalFileSystem

        with self._errors(f"writing {INDEX_NAME}"):
            if isinstance(self.fs, LocalFileSystem):  # object stores replace whole; a disk may not
                partial = self.path(f".{INDEX_NAME}.part")
                self.fs.pipe_file(partial, index.to_bytes())
                self.fs.mv(partial, self.path(INDEX_NAME))
            else:
                self.fs.pipe_file(self.path(INDEX_NAME), index.to_bytes())

    def is_empty(self) -> bool:
        with self._errors("listing"):
            try:
                self.fs.invalidate_cache(self.root)  # another process may have written since
                return not self.fs.ls(self.root, detail=False)
            except FileNotFoundError:
                return True

    def send(self, contents: Sequence[Content]) -> None:
        with self._errors("upload"):
            small = {self.path(c.relative): c.data for c in contents if c.data is not None}
            if small:
                self.fs.pipe(small)
            for content in contents:
                if content.path is not None:
                    self.fs.put_file(str(content.path), self.path(content.relative))

    def fetch(self, relatives: Sequence[str]) -> dict[str, bytes | None]:
        """Each file's bytes, or None when the remote does not have it."""
        paths = {self.path(relative): relative for relative in relatives}
        with self._errors("download"):
            found = self.fs.cat(list(paths), on_error="return")
        result: dict[str, bytes | None] = {}
        for path, relative in paths.items():
            value = found.get(path, FileNotFoundError(path))
            if isinstance(value, FileNotFoundError):
                result[relative] = None
            elif isinstance(value, BaseException):
                problem = self._describe(value)
                raise StorageError(f"{self.shown}: download of {relative} failed: {problem}")
            else:
                result[relative] = value
        return result

    def fetch_to_file(self, relative: str, target: Path) -> bool:
        """Write one (big) file to `target`; False when the remote does not have it."""
        with self._errors(f"download of {relative}"):
            try:
                self.fs.get_file(self.path(relative), str(target))
            except FileNotFoundError:
                return False
        return True

    def remove(self, relatives: Sequence[str]) -> None:
        for relative in relatives:
            with self._errors(f"removing {relative}"), suppress(FileNotFoundError):
                self.fs.rm_file(self.path(relative))


def push_run(run_dir: Path, url: str, progress: ProgressCallback | None = None) -> PushResult:
    """Send a snapshot of `run_dir` to `url`, only the files the remote lacks; resumable."""
    run_dir = Path(run_dir)
    remote = Remote(url)
    name = _spec_name(run_dir)
    with taking_snapshot(run_dir) as snapshot:
        index = remote.read_index()
        if index is None:
            if not remote.is_empty():
                raise SpecError(
                    f"{remote.shown}: holds files but no {INDEX_NAME}; push to an empty "
                    "folder or to one sweeper pushed this run to"
                )
            index = RemoteIndex(spec_name=name)
        elif index.spec_name and name and index.spec_name != name:
            raise SpecError(
                f"{remote.shown}: holds a push of run {index.spec_name!r}, not {name!r}; "
                "give another URL"
            )
        wanted = {file.relative for file in snapshot.files}
        to_send = [
            file
            for file in snapshot.files
            if index.sha256_of(file.relative) != snapshot.known_sha256(file)
        ]
        stale = sorted(set(index.files) - wanted)
        if not to_send and not stale and index.complete:
            return PushResult((), len(wanted), 0, ())
        # From here until the end the index lists only files that are what it says.
        for relative in [f.relative for f in to_send] + stale:
            index.files.pop(relative, None)
        index.complete, index.spec_name = False, name or index.spec_name
        remote.write_index(index)
        sent, size = _send_all(remote, snapshot, to_send, index, progress)
        remote.remove(stale)
        index.complete = True
        remote.write_index(index)
    logger.info("%s: pushed %d files (%d bytes) to %s", run_dir, len(sent), size, remote.shown)
    return PushResult(tuple(sent), len(wanted) - len(to_send), size, tuple(stale))


def _send_all(
    remote: Remote,
    snapshot: Snapshot,
    files: list[RecordFile],
    index: RemoteIndex,
    progress: ProgressCallback | None,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[list[str], int]:
    """Send `files` in batches, listing them in the index at most every INDEX_EVERY_S.

    Rewriting the whole index costs as much as the files it lists, so it is
    timed, not counted: a kill -9 sends again at most that many seconds of work.
    Any other interruption lists everything that landed first.
    """
    by_name = {file.relative: file for file in files}
    sizes = {file.relative: _size(file.source) for file in files}
    total_bytes = sum(sizes.values())
    sent: list[str] = []
    done_files = done_bytes = sent_bytes = unlisted = 0
    listed_at = clock()
    try:
        for batch in _batches(list(by_name), sizes):
            contents = [c for name in batch if (c := snapshot.content(by_name[name])) is not None]
            remote.send(contents)
            for content in contents:
                snapshot.release(content)
                index.files[content.relative] = {"sha256": content.sha256, "size": content.size}
                sent.append(content.relative)
                sent_bytes += content.size
            unlisted += len(contents)
            if unlisted and clock() - listed_at >= INDEX_EVERY_S:
                remote.write_index(index)
                unlisted, listed_at = 0, clock()
            for name in batch:
                done_files, done_bytes = done_files + 1, done_bytes + sizes[name]
                if progress is not None:
                    progress(Transfer(name, done_files, len(files), done_bytes, total_bytes))
    except BaseException:
        if unlisted:  # list what did land, so the next push does not send it again
            with suppress(Exception):
                remote.write_index(index)
        raise
    return sent, sent_bytes


def _batches(names: list[str], sizes: dict[str, int]) -> Iterator[list[str]]:
    batch: list[str] = []
    batch_bytes = 0
    for name in names:
        if batch and (len(batch) >= BATCH_FILES or batch_bytes + sizes[name] > BATCH_BYTES):
            yield batch
            batch, batch_bytes = [], 0
        batch.append(name)
        batch_bytes += sizes[name]
    if batch:
        yield batch


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _spec_name(run_dir: Path) -> str | None:
    try:
        record = json.loads((run_dir / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = record.get("spec_name") if isinstance(record, dict) else None
    return name if isinstance(name, str) else None


def pull_run(
    url: str, dest: Path, force: bool = False, progress: ProgressCallback | None = None
) -> PullResult:
    """Fetch the run pushed to `url` into `dest`, checking every file; returns what came."""
    dest = Path(dest)
    remote = Remote(url)
    index = remote.read_index()
    if index is None:
        raise SpecError(f"{remote.shown}: no sweeper run here (no {INDEX_NAME})")
    if not index.complete:
        raise SpecError(f"{remote.shown}: the last push there did not finish; push it again")
    if JOURNAL not in index.files:
        raise SpecError(f"{remote.shown}: the pushed folder has no {JOURNAL}; not a run folder")
    _refuse_occupied(dest, force)
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with _holding_lock(dest):
            _fetch_into(remote, index, dest, progress)
    except BaseException:
        if created:  # nothing was moved in: leave no trace of a refused pull
            shutil.rmtree(dest, ignore_errors=True)
        raise
    size = sum(entry["size"] for entry in index.files.values())
    logger.info(
        "%s: pulled %d files (%d bytes) into %s", remote.shown, len(index.files), size, dest
    )
    return PullResult(len(index.files), size)


def _fetch_into(
    remote: Remote, index: RemoteIndex, dest: Path, progress: ProgressCallback | None
) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.pull-", dir=dest.parent))
    try:
        _fetch_all(remote, index, staging, progress)
        for side_file in JOURNAL_SIDE_FILES:  # an old journal's WAL must not meet the new one
            (dest / side_file).unlink(missing_ok=True)
        move_children(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _refuse_occupied(dest: Path, force: bool) -> None:
    if dest.exists() and not dest.is_dir():
        raise SpecError(f"{dest}: exists and is not a folder")
    occupied = dest.is_dir() and any(p.name != LOCK_FILE for p in dest.iterdir())
    if occupied and not force:
        raise SpecError(
            f"{dest}: is not empty; pull into an empty or new folder, "
            "or use --force to replace the files the remote lists"
        )


@contextmanager
def _holding_lock(dest: Path) -> Iterator[None]:
    """The run lock of `dest`, so a pull never writes into a folder a run is using."""
    with (dest / LOCK_FILE).open("a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SpecError(f"{dest}: a sweeper run is using this folder; let it finish") from None
        yield


def _fetch_all(
    remote: Remote, index: RemoteIndex, staging: Path, progress: ProgressCallback | None
) -> None:
    sizes = {name: entry["size"] for name, entry in sorted(index.files.items())}
    total_bytes = sum(sizes.values())
    found: dict[str, str] = {}
    missing: list[str] = []
    done_files = done_bytes = 0
    for batch in _batches(list(sizes), sizes):
        small = [name for name in batch if sizes[name] <= IN_MEMORY_BYTES]
        for name, data in remote.fetch(small).items():
            if data is None:
                missing.append(name)
            else:
                found[name] = _write_fetched(staging / name, data)
        for name in batch:
            if sizes[name] > IN_MEMORY_BYTES:
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                if remote.fetch_to_file(name, target):
                    found[name] = file_sha256(target)
                else:
                    missing.append(name)
            done_files, done_bytes = done_files + 1, done_bytes + sizes[name]
            if progress is not None:
                progress(Transfer(name, done_files, len(sizes), done_bytes, total_bytes))
    changed = sorted(n for n in found if found[n] != index.files[n]["sha256"])
    problems = [
        name_list("missing", sorted(missing)),
        name_list("corrupted (sha256 differs)", changed),
    ]
    if any(problems):
        raise SpecError(f"{remote.shown}: refused: " + "; ".join(p for p in problems if p))
    differ = unrecorded_images(staging, found)
    if differ:
        raise SpecError(
            f"{remote.shown}: refused: {name_list('not as the journal recorded', differ)}"
        )
    restore_recorded_mtimes(staging)


def _write_fetched(target: Path, data: bytes) -> str:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def display_url(url: str) -> str:
    """The URL without user info, query or fragment: what may appear in a message."""
    parts = urlsplit(url)
    if not parts.scheme:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def secret_values(url: str = "") -> list[str]:
    """Values to scrub from messages: secret-looking environment values, the URL's password
    and query values; longest first, so a secret containing another is removed whole."""
    values = {
        value
        for name, value in os.environ.items()
        if SECRET_NAME.search(name) and len(value) >= MIN_SECRET_LENGTH
    }
    parts = urlsplit(url)
    values.update(v for v in (parts.username, parts.password) if v)
    values.update(v for _, v in parse_qsl(parts.query) if len(v) >= MIN_SECRET_LENGTH)
    return sorted(values, key=len, reverse=True)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret replaced, on one line."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return " ".join(text.split())
