"""Download one output image: stream, verify, and only then move it into `images/`.

Bytes arrive in chunks and go to `DIR/tmp/<name>.part` (held in memory up to
SPILL_BYTES first, so a typical image costs one worker-thread hop, not one per
chunk). The part file is renamed into place only after the byte count matches
Content-Length and the bytes decode as an image of the requested format, so
`images/` never holds a partial or wrong file, whatever happens to the process.
Storage URLs are presigned: no API key is ever sent to them.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from PIL import Image, UnidentifiedImageError

from sweeper.atomic import replacing
from sweeper.client import NETWORK_ERRORS, describe_network_error
from sweeper.contract import EXTENSIONS, PIL_FORMATS
from sweeper.errors import AbortError, JobError, TransientError
from sweeper.run_folder import IMAGES_DIR, TMP_DIR

CHUNK_BYTES = 256 * 1024
# A body is held in memory up to this much, then appended to its part file.
SPILL_BYTES = 4 * 1024 * 1024
EXPIRED_MARKERS = ("expired", "accessdenied", "signature")


@dataclass(frozen=True)
class DownloadedImage:
    """A verified image on disk; `file` is relative to the run directory."""

    file: str
    sha256: str
    size: int
    width: int
    height: int


def output_file_name(job_id: str, output_index: int, fmt: str) -> str:
    """Our own name for an output, relative to the run directory; never the server's."""
    return f"{IMAGES_DIR}/{job_id}_{output_index}.{EXTENSIONS[fmt]}"


async def download_output(
    session: aiohttp.ClientSession,
    url: str,
    run_dir: Path,
    file: str,
    fmt: str,
    *,
    timeout_s: float = 300.0,
) -> DownloadedImage:
    """Fetch `url` into `run_dir/file`; raise TransientError to retry or JobError if lost.

    The event loop only receives; the disk and the decoding happen in one worker
    thread per download (two for a large image), not one per chunk.
    """
    part = run_dir / TMP_DIR / (Path(file).name + ".part")
    try:
        received = await _receive(session, url, part, timeout_s)
        digest, width, height = await asyncio.to_thread(_store, received, part, run_dir / file, fmt)
    except OSError as error:
        part.unlink(missing_ok=True)
        raise AbortError(f"cannot write {run_dir / file}: {error.strerror or error}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return DownloadedImage(file, digest, received.size, width, height)


def kept_output(run_dir: Path, file: str, fmt: str) -> DownloadedImage | None:
    """The output already at `run_dir/file`, verified, or None if it is absent or unusable.

    Only whole, verified images are ever renamed into `images/`, so one found there
    was downloaded before and only its journal entry was lost (a crash right after
    the rename): keeping it spares a download, or the job, if its URL has expired.
    """
    target = run_dir / file
    if not target.is_file():
        return None
    data = target.read_bytes()
    try:
        width, height = _check_image(data, fmt)
    except (TransientError, JobError):
        return None
    return DownloadedImage(file, hashlib.sha256(data).hexdigest(), len(data), width, height)


@dataclass
class _Received:
    """A response body: its tail in memory, and whether its head was spilled to the part file."""

    chunks: list[bytes]
    size: int
    spilled: bool


async def _receive(
    session: aiohttp.ClientSession, url: str, part: Path, timeout_s: float
) -> _Received:
    """Stream the body in chunks; more than SPILL_BYTES held in memory goes to `part`."""
    received = _Received([], 0, spilled=False)
    held = 0
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with session.get(url, timeout=timeout) as response:
            if response.status != 200:
                raise await _download_failure(response)
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                received.chunks.append(chunk)
                received.size += len(chunk)
                held += len(chunk)
                if held >= SPILL_BYTES:
                    await asyncio.to_thread(_spill, received, part)
                    held = 0
            expected = response.content_length
    except NETWORK_ERRORS as error:
        raise TransientError(f"download failed: {describe_network_error(error)}") from None
    if expected is not None and received.size != expected:
        raise TransientError(f"download truncated: got {received.size} of {expected} bytes")
    return received


def _spill(received: _Received, part: Path) -> None:
    part.parent.mkdir(parents=True, exist_ok=True)
    with part.open("ab" if received.spilled else "wb") as sink:
        sink.writelines(received.chunks)
    received.chunks.clear()
    received.spilled = True


def _store(received: _Received, part: Path, target: Path, fmt: str) -> tuple[str, int, int]:
    """Write, verify, and only then rename into place; the sha256 and size of what landed."""
    with replacing(target, partial=part):
        if received.spilled:
            _spill(received, part)
            data = part.read_bytes()
        else:
            data = b"".join(received.chunks)
            part.write_bytes(data)
        width, height = _check_image(data, fmt)
    return hashlib.sha256(data).hexdigest(), width, height


async def _download_failure(response: aiohttp.ClientResponse) -> Exception:
    text = (await response.text(errors="replace"))[:500]
    if response.status == 403 and any(m in text.lower() for m in EXPIRED_MARKERS):
        return JobError("download URL has expired; the image is lost unless the job is run again")
    if response.status >= 500 or response.status == 429:
        return TransientError(f"download failed: HTTP {response.status}")
    return JobError(f"download refused: HTTP {response.status}")


def _check_image(data: bytes, fmt: str) -> tuple[int, int]:
    """Decode all of `data`; return its size, or raise if it is not a `fmt` image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            actual = image.format
            image.load()
            size = image.size
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise TransientError(f"downloaded bytes are not a valid image ({error})") from None
    if actual != PIL_FORMATS[fmt]:
        raise JobError(f"downloaded image is {actual}, but {fmt} was requested")
    return size
