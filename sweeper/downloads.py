"""Download one output image: stream, verify, and only then move it into `images/`.

Bytes arrive in chunks and go to `DIR/tmp/<name>.part` (held in memory up to
SPILL_BYTES first, so a typical image costs one worker-thread hop, not one per
chunk). The part file is renamed into place only after the byte count matches
Content-Length, the bytes stay under the size cap and decode (within the pixel
cap) as an image of the requested format; the file and its folder are fsynced
before the rename counts. So `images/` never holds a partial or wrong file,
whatever happens to the process or the power.

Storage URLs are presigned: no API key is ever sent to them. They may redirect,
a bounded number of times and only to http(s).

Failures: `TransientError` (a reset, a 5xx, a truncated body) is worth another
try, and if every try fails the image stays pending for a rerun; `BadDownload`
(too big, not an image, a pixel bomb) and `JobError` (a dead or expired link)
mean the image is lost.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from sweeper.atomic import replacing
from sweeper.client import NETWORK_ERRORS, describe_network_error
from sweeper.contract import EXTENSIONS, PIL_FORMATS
from sweeper.errors import AbortError, JobError, TransientError
from sweeper.image_check import ImageProblem, decode_image
from sweeper.run_folder import IMAGES_DIR, TMP_DIR

CHUNK_BYTES = 256 * 1024
# A body is held in memory up to this much, then appended to its part file.
SPILL_BYTES = 4 * 1024 * 1024
EXPIRED_MARKERS = ("expired", "accessdenied", "signature")
MAX_REDIRECTS = 5


class BadDownload(TransientError):
    """The bytes are not the image asked for (too big, undecodable, a pixel bomb).

    Retried like any transient failure, in case the store served a bad copy; when
    every try fails the same way the image is lost, not left for a rerun.
    """


@dataclass(frozen=True)
class DownloadLimits:
    """Caps on one downloaded image."""

    max_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 50_000_000


@dataclass(frozen=True)
class DownloadedImage:
    """A verified image on disk; `file` is relative to the run directory."""

    file: str
    sha256: str
    size: int
    width: int
    height: int
    mtime_ns: int


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
    limits: DownloadLimits | None = None,
) -> DownloadedImage:
    """Fetch `url` into `run_dir/file`; raise TransientError to retry or JobError if lost.

    The event loop only receives; the disk and the decoding happen in one worker
    thread per download (two for a large image), not one per chunk.
    """
    limits = limits or DownloadLimits()
    part = run_dir / TMP_DIR / (Path(file).name + ".part")
    try:
        received = await _receive(session, url, part, timeout_s, limits.max_bytes)
        stored = await asyncio.to_thread(
            _store, received, part, run_dir / file, fmt, limits.max_pixels
        )
    except OSError as error:
        part.unlink(missing_ok=True)
        raise AbortError(f"cannot write {run_dir / file}: {error.strerror or error}") from error
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    digest, width, height, mtime_ns = stored
    return DownloadedImage(file, digest, received.size, width, height, mtime_ns)


def kept_output(
    run_dir: Path, file: str, fmt: str, limits: DownloadLimits | None = None
) -> DownloadedImage | None:
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
        width, height = check_image(data, fmt, (limits or DownloadLimits()).max_pixels)
    except (TransientError, JobError):
        return None
    digest = hashlib.sha256(data).hexdigest()
    return DownloadedImage(file, digest, len(data), width, height, target.stat().st_mtime_ns)


@dataclass
class _Received:
    """A response body: its tail in memory, and whether its head was spilled to the part file."""

    chunks: list[bytes]
    size: int
    spilled: bool


async def _receive(
    session: aiohttp.ClientSession, url: str, part: Path, timeout_s: float, max_bytes: int
) -> _Received:
    """Stream the body in chunks; more than SPILL_BYTES held in memory goes to `part`."""
    received = _Received([], 0, spilled=False)
    held = 0
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    if not url.startswith(("http://", "https://")):
        raise JobError(f"the download link is not an http(s) URL: {url[:80]!r}")
    try:
        # aiohttp gives up when the redirect count reaches max_redirects: one more, so
        # that MAX_REDIRECTS redirects are followed and the next one is refused.
        redirects = MAX_REDIRECTS + 1
        async with session.get(url, timeout=timeout, max_redirects=redirects) as response:
            if response.status != 200:
                raise await _download_failure(response)
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                received.chunks.append(chunk)
                received.size += len(chunk)  # after decompression: a gzip bomb stops here
                if received.size > max_bytes:
                    raise BadDownload(
                        f"the image is over {max_bytes:,} bytes (run.max_download_mb)"
                    )
                held += len(chunk)
                if held >= SPILL_BYTES:
                    await asyncio.to_thread(_spill, received, part)
                    held = 0
            expected = response.content_length
    except aiohttp.TooManyRedirects:
        raise JobError(f"the download link redirected more than {MAX_REDIRECTS} times") from None
    except (aiohttp.NonHttpUrlRedirectClientError, aiohttp.InvalidUrlRedirectClientError):
        raise JobError("the download link redirected to a URL that is not http(s)") from None
    except NETWORK_ERRORS as error:
        raise TransientError(f"download failed: {describe_network_error(error)}") from None
    if expected is not None and received.size != expected and not _compressed(response):
        raise TransientError(f"download truncated: got {received.size} of {expected} bytes")
    return received


def _compressed(response: aiohttp.ClientResponse) -> bool:
    """Content-Length counts the compressed bytes, so it cannot be checked after decoding."""
    return response.headers.get("Content-Encoding", "identity").lower() != "identity"


def _spill(received: _Received, part: Path) -> None:
    part.parent.mkdir(parents=True, exist_ok=True)
    with part.open("ab" if received.spilled else "wb") as sink:
        sink.writelines(received.chunks)
    received.chunks.clear()
    received.spilled = True


def _store(
    received: _Received, part: Path, target: Path, fmt: str, max_pixels: int
) -> tuple[str, int, int, int]:
    """Write, verify, fsync, and only then rename into place.

    Returns the sha256, width, height and mtime of what landed.
    """
    with replacing(target, partial=part, durable=True):
        if received.spilled:
            _spill(received, part)
            data = part.read_bytes()
        else:
            data = b"".join(received.chunks)
            part.write_bytes(data)
        width, height = check_image(data, fmt, max_pixels)
    return hashlib.sha256(data).hexdigest(), width, height, target.stat().st_mtime_ns


async def _download_failure(response: aiohttp.ClientResponse) -> Exception:
    text = (await response.content.read(4096)).decode("utf-8", errors="replace")
    if response.status in (403, 404, 410) and (
        response.status != 403 or any(m in text.lower() for m in EXPIRED_MARKERS)
    ):
        return JobError(
            f"the download link is dead (HTTP {response.status}); the image is lost "
            "unless the job is run again"
        )
    if response.status >= 500 or response.status == 429:
        return TransientError(f"download failed: HTTP {response.status}")
    return JobError(f"download refused: HTTP {response.status}")


def check_image(data: bytes, fmt: str, max_pixels: int) -> tuple[int, int]:
    """Decode all of `data`; return its size, or raise if it is not a `fmt` image."""
    try:
        width, height, actual = decode_image(data, max_pixels)
    except ImageProblem as problem:
        raise BadDownload(f"the downloaded image {problem}") from None
    if actual != PIL_FORMATS[fmt]:
        raise BadDownload(f"the downloaded image is {actual}, but {fmt} was requested")
    return width, height
