"""Atomic file replacement: a reader sees the old file or the new one, never half of one.

Everything `sweeper` writes into a run folder (images, manifests, run.json, the
frozen spec, reports) goes through `replacing`: the bytes go to a partial file
beside the target (or wherever the caller keeps partial files), and only a
complete file is renamed over the target. With `durable=True` the file and its
folder are also fsynced, so the rename survives a power loss, not just a crash.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from sweeper.errors import SpecError


def special_file_kind(mode: int) -> str | None:
    """What a path that is not a regular file (or a symlink) is, in words; else None."""
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "not a regular file"


def require_replaceable(target: Path) -> None:
    """Refuse a target that a rename would destroy rather than update: run as root,
    `--out /dev/null` would otherwise swap the system's /dev/null for a file."""
    try:
        mode = target.lstat().st_mode
    except OSError:
        return
    kind = special_file_kind(mode)
    if kind is not None:
        raise SpecError(f"{target}: is {kind}, not a file; give the path of a file to write")


def partial_path(target: Path) -> Path:
    """Where `target` is written before it is complete: a hidden name beside it."""
    return target.with_name(f".{target.name}.part")


@contextmanager
def replacing(
    target: Path, *, partial: Path | None = None, durable: bool = False
) -> Iterator[Path]:
    """Yield a path to write; on success it replaces `target`, on any error it is removed."""
    require_replaceable(target)
    partial = partial or partial_path(target)
    partial.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield partial
        if durable:
            fsync_file(partial)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.replace(target)
    except BaseException:
        with suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
    if durable:
        fsync_folder(target.parent)


def write_text_atomically(target: Path, text: str, *, durable: bool = False) -> None:
    """Replace `target` with `text` (UTF-8) in one step."""
    with replacing(target, durable=durable) as partial:
        partial.write_text(text, encoding="utf-8")


def write_bytes_atomically(target: Path, data: bytes, *, durable: bool = False) -> None:
    """Replace `target` with `data` in one step."""
    with replacing(target, durable=durable) as partial:
        partial.write_bytes(data)


def fsync_file(path: Path) -> None:
    """Force the file's bytes to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_folder(folder: Path) -> None:
    """Force a folder's entries (a rename into it) to the disk."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
