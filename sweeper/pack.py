"""Packs: a run folder as one verified .tar.gz, and the checked way back.

`pack_run` writes a consistent snapshot (see `sweeper.snapshot`) of a run
folder, even a live one, as `<name>/...` inside a gzip'd tar, with
`<name>/MANIFEST.sha256` (sha256sum format, so `sha256sum -c` works in the
unpacked folder) listing every file. `unpack_run` extracts into a private
folder beside the destination, checks every member before writing it (only
regular files and folders, under one top folder, no absolute names, no `..`)
and every hash after, and moves the files into place only when all of them are
exactly what the manifest lists: a refused pack leaves nothing behind.

The hashes catch corruption and careless edits, not a forger: whoever can
change an image can also change MANIFEST.sha256 and the journal.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import re
import shutil
import tarfile
import tempfile
import time
import zlib
from pathlib import Path
from typing import IO

from sweeper.atomic import replacing
from sweeper.errors import SpecError
from sweeper.snapshot import (
    CHUNK_BYTES,
    JOURNAL,
    Content,
    is_record_path,
    is_safe_relative,
    move_children,
    name_list,
    restore_recorded_mtimes,
    taking_snapshot,
    unrecorded_images,
)

logger = logging.getLogger("sweeper")

MANIFEST = "MANIFEST.sha256"
SUFFIX = ".tar.gz"
# sha256sum's line: the hash, a space, a space (text) or `*` (binary), the name.
MANIFEST_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")
MAX_MANIFEST_BYTES = 64 * 2**20
READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


def default_pack_path(run_dir: Path) -> Path:
    """`<dir name>.tar.gz` beside the run folder."""
    resolved = Path(run_dir).resolve()
    return resolved.parent / f"{resolved.name}{SUFFIX}"


def pack_run(run_dir: Path, out: Path | None = None) -> Path:
    """Write a verified snapshot of `run_dir` to `out` (default: beside it); returns the path."""
    run_dir = Path(run_dir)
    target = Path(out) if out is not None else default_pack_path(run_dir)
    resolved = run_dir.resolve()
    if target.resolve().is_relative_to(resolved):
        raise SpecError(f"{target}: write the pack outside the run folder it packs")
    top = resolved.name or "run"
    with (
        replacing(target) as partial,
        taking_snapshot(run_dir) as snapshot,
        tarfile.open(partial, "w:gz") as tar,
    ):
        lines = []
        for file in snapshot.files:
            content = snapshot.content(file)
            if content is not None:
                _add(tar, f"{top}/{content.relative}", content)
                lines.append(f"{content.sha256}  {content.relative}\n")
                snapshot.release(content)
        listing = "".join(lines).encode()
        now = time.time()
        _add(tar, f"{top}/{MANIFEST}", Content(MANIFEST, "", len(listing), now, data=listing))
    logger.info("%s: packed %d files into %s", run_dir, len(lines), target)
    return target


def _add(tar: tarfile.TarFile, name: str, content: Content) -> None:
    info = tarfile.TarInfo(name)
    info.size = content.size
    info.mtime = int(content.mtime)
    info.mode = 0o644
    if content.data is not None:
        tar.addfile(info, io.BytesIO(content.data))
    else:
        assert content.path is not None
        with content.path.open("rb") as handle:
            tar.addfile(info, handle)


def unpack_run(archive: Path, dest: Path) -> Path:
    """Check and extract a pack into `dest` (absent or empty); returns `dest`.

    Raises SpecError naming every missing, unlisted or changed file, and any
    member that is a link, a device, or would land outside `dest`.
    """
    archive, dest = Path(archive), Path(dest)
    _refuse_occupied(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpack-", dir=dest.parent))
    try:
        found, listing = _extract(archive, staging)
        _verify(archive, staging, found, listing)
        restore_recorded_mtimes(staging)
        move_children(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("%s: unpacked %d verified files into %s", archive, len(found), dest)
    return dest


def _refuse_occupied(dest: Path) -> None:
    if dest.exists() and not dest.is_dir():
        raise SpecError(f"{dest}: exists and is not a folder; give an empty or new folder")
    if dest.is_dir() and any(dest.iterdir()):
        raise SpecError(f"{dest}: is not empty; unpack into an empty or new folder")


def _extract(archive: Path, staging: Path) -> tuple[dict[str, str], bytes]:
    """Write each regular file under `staging`; returns {path: sha256} and MANIFEST.sha256."""
    if not archive.is_file():
        raise SpecError(f"{archive}: no such pack file")
    found: dict[str, str] = {}
    listing: bytes | None = None
    top: str | None = None
    try:
        with tarfile.open(archive, "r|gz") as tar:
            for member in tar:
                top, relative = _checked_member(archive, member, staging, top)
                if member.isdir() or relative is None:
                    continue
                source = tar.extractfile(member)
                assert source is not None  # a regular file always has contents
                if relative == MANIFEST:
                    listing = _read_manifest(archive, source, member.size)
                else:
                    found[relative] = _write_member(archive, source, staging, relative)
    except READ_ERRORS as error:
        raise SpecError(f"{archive}: not a readable .tar.gz pack ({error})") from None
    if listing is None:
        raise SpecError(f"{archive}: no {MANIFEST} inside; not a sweeper pack")
    return found, listing


def _checked_member(
    archive: Path, member: tarfile.TarInfo, staging: Path, top: str | None
) -> tuple[str, str | None]:
    """The pack's top folder and the member's path under it; refuses anything unsafe."""
    name = member.name.rstrip("/") if member.isdir() else member.name
    if not (member.isreg() or member.isdir()):
        kind = "a link" if member.issym() or member.islnk() else "a device or special file"
        raise SpecError(f"{archive}: refused: {member.name!r} is {kind}; a pack holds plain files")
    if not is_safe_relative(name):
        raise SpecError(
            f"{archive}: refused: {member.name!r} is an absolute or escaping path; "
            "a pack holds plain relative paths"
        )
    try:  # the standard library's own checks, on top of ours
        tarfile.data_filter(member, str(staging))
    except tarfile.FilterError as error:
        raise SpecError(f"{archive}: refused: {error}") from None
    first, _, relative = name.partition("/")
    if relative and relative != MANIFEST and not is_record_path(relative):
        raise SpecError(f"{archive}: refused: {member.name!r} is scratch, not part of a record")
    if top is not None and first != top:
        raise SpecError(f"{archive}: refused: {member.name!r} is outside the pack's folder {top!r}")
    if not relative and not member.isdir():
        raise SpecError(f"{archive}: refused: {member.name!r} is outside the pack's folder")
    return first, relative or None


def _read_manifest(archive: Path, source: IO[bytes], size: int) -> bytes:
    if size > MAX_MANIFEST_BYTES:
        raise SpecError(f"{archive}: {MANIFEST} is implausibly large ({size} bytes)")
    return source.read()


def _write_member(archive: Path, source: IO[bytes], staging: Path, relative: str) -> str:
    target = staging / relative
    digest = hashlib.sha256()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        sink = target.open("xb")  # exclusive: a name given twice is refused, not overwritten
    except (FileExistsError, IsADirectoryError, NotADirectoryError):
        raise SpecError(f"{archive}: refused: {relative} appears more than once") from None
    with sink:
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
            sink.write(chunk)
    return digest.hexdigest()


def _verify(archive: Path, staging: Path, found: dict[str, str], listing: bytes) -> None:
    listed = _parse_manifest(archive, listing)
    missing = sorted(set(listed) - set(found))
    extra = sorted(set(found) - set(listed))
    changed = sorted(name for name in set(listed) & set(found) if listed[name] != found[name])
    problems = [
        name_list("missing", missing),
        name_list(f"not listed in {MANIFEST}", extra),
        name_list("changed (sha256 differs)", changed),
    ]
    if any(problems):
        raise SpecError(f"{archive}: refused: " + "; ".join(p for p in problems if p))
    if JOURNAL not in found:
        raise SpecError(f"{archive}: no {JOURNAL} inside; not a sweeper run pack")
    differ = unrecorded_images(staging, found)
    if differ:
        raise SpecError(f"{archive}: refused: {name_list('not as the journal recorded', differ)}")


def _parse_manifest(archive: Path, listing: bytes) -> dict[str, str]:
    listed: dict[str, str] = {}
    try:
        lines = listing.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise SpecError(f"{archive}: {MANIFEST} is not UTF-8 text") from None
    for number, line in enumerate(lines, 1):
        match = MANIFEST_LINE.match(line)
        if not match or not is_record_path(match[2]) or match[2] in listed:
            raise SpecError(f"{archive}: {MANIFEST} line {number} is malformed: {line[:120]!r}")
        listed[match[2]] = match[1].lower()
    return listed
