"""Check one local input image in a single read: its bytes, their sha256, and a full decode.

The bytes are read once; the hash that names the image in every job id and the
decode that proves it is a whole image are both computed from those same bytes, so
they can never disagree. The file's identity, size and modification time are
compared before and after the read: a file still being written is refused rather
than hashed half-way. Decoding is complete (a truncated JPEG fails), and an image
with more than `SpecLimits.max_input_pixels` is refused from its header, before its
pixels are decoded (a decompression bomb).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

from sweeper.contract import MAX_UPLOAD_BYTES
from sweeper.limits import DEFAULT_LIMITS

READ_CHUNK = 1024 * 1024


class ImageProblem(ValueError):
    """Why a local input image cannot be used: a phrase that follows its name."""


@dataclass(frozen=True)
class CheckedImage:
    """A local input image that reads, hashes and decodes: what a job needs to know of it."""

    path: Path
    sha256: str
    size: int
    width: int
    height: int
    format: str


def check_input_image(
    path: Path, *, max_pixels: int = DEFAULT_LIMITS.max_input_pixels
) -> CheckedImage:
    """Read `path` once, hash it and decode it fully; an ImageProblem says what is wrong."""
    return load_input_image(path, max_pixels=max_pixels)[0]


def load_input_image(
    path: Path, *, max_pixels: int = DEFAULT_LIMITS.max_input_pixels
) -> tuple[CheckedImage, bytes]:
    """`check_input_image`, and the very bytes it checked (what an upload sends)."""
    data, before = _read_stable(path)
    width, height, kind = decode_image(data, max_pixels)
    checked = CheckedImage(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        size=before.st_size,
        width=width,
        height=height,
        format=kind,
    )
    return checked, data


def _read_stable(path: Path) -> tuple[bytes, os.stat_result]:
    try:
        before = path.stat()
    except OSError as error:
        raise ImageProblem(_stat_problem(error)) from None
    _require_readable_size(before)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise ImageProblem(f"cannot be read ({error.strerror})") from None
    try:
        opened = os.fstat(descriptor)
        _require_readable_size(opened)
        data = _read_all(descriptor, MAX_UPLOAD_BYTES + 1)
        after = os.fstat(descriptor)
    finally:
        os.close(descriptor)
    try:
        now = path.stat()
    except OSError:
        now = None
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageProblem(_too_big(len(data)))
    if not _same_file(before, opened, after, now) or len(data) != after.st_size:
        raise ImageProblem(
            "changed while it was being read; wait until it is completely written, "
            "then run the command again"
        )
    return data, before


def _read_all(descriptor: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total < limit:
        chunk = os.read(descriptor, min(READ_CHUNK, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _same_file(*statuses: os.stat_result | None) -> bool:
    seen = {
        (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns) if s is not None else None for s in statuses
    }
    return len(seen) == 1 and None not in seen


def _stat_problem(error: OSError) -> str:
    if error.errno == errno.ENOENT:
        return "no such file"
    if error.errno == errno.ELOOP:
        return "is a symlink loop"
    return f"cannot be read ({error.strerror})"


def _require_readable_size(status: os.stat_result) -> None:
    if stat.S_ISDIR(status.st_mode):
        raise ImageProblem("is a directory")
    if not stat.S_ISREG(status.st_mode):
        raise ImageProblem("is not a regular file (a FIFO, device or socket)")
    if status.st_size > MAX_UPLOAD_BYTES:
        raise ImageProblem(_too_big(status.st_size))


def _too_big(size: int) -> str:
    return f"is {size / 2**20:.1f} MB; the API accepts images up to {MAX_UPLOAD_BYTES // 2**20} MB"


def decode_image(data: bytes, max_pixels: int) -> tuple[int, int, str]:
    """Width, height and Pillow format of `data`, fully decoded; an ImageProblem if it is
    not a whole image, or has more than `max_pixels` (judged from the header)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Our own cap, checked from the header below, decides; Pillow's warning would
            # only duplicate it. Pillow still raises DecompressionBombError far above it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageProblem(_bomb(width, height, max_pixels))
                kind = image.format or "unknown"
                image.load()
    except ImageProblem:
        raise
    except Image.DecompressionBombError:
        raise ImageProblem(_bomb(0, 0, max_pixels)) from None
    except UnidentifiedImageError:
        raise ImageProblem("is not an image file Pillow can read (unknown format)") from None
    except Exception as error:
        # Pillow's decoders raise many types on hostile bytes (OSError, SyntaxError,
        # struct.error, IndexError, ...); every one means "not an image we can send".
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ImageProblem(f"is not an image file Pillow can read ({reason[:200]})") from None
    return width, height, kind


def _bomb(width: int, height: int, max_pixels: int) -> str:
    size = f" ({width} x {height})" if width else ""
    return (
        f"has more pixels{size} than the cap of {max_pixels / 1e6:g} megapixels; "
        "it may be a decompression bomb, or scale it down first"
    )
