"""Download one output image: stream, verify, and only then move it into `images/`.

Bytes stream to `DIR/tmp/` and are renamed into place only after the byte count
matches Content-Length and they decode as an image of the requested format, so
`images/` never holds a partial or wrong file, whatever happens to the process.
Storage URLs are presigned: no API key is ever sent to them.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import aiofiles
import aiohttp
from PIL import Image, UnidentifiedImageError

from sweeper.client import NETWORK_ERRORS, describe_network_error
from sweeper.contract import EXTENSIONS, PIL_FORMATS
from sweeper.errors import AbortError, JobError, TransientError

CHUNK_BYTES = 256 * 1024
EXPIRED_MARKERS = ("expired", "accessdenied", "signature")
IMAGES_DIR = "images"
TMP_DIR = "tmp"


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
    """Fetch `url` into `run_dir/file`; raise TransientError to retry or JobError if lost."""
    part = run_dir / TMP_DIR / (Path(file).name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        digest, size = await _stream_to(session, url, part, timeout_s)
        width, height = await asyncio.to_thread(_check_image, part, fmt)
        target = run_dir / file
        target.parent.mkdir(parents=True, exist_ok=True)
        part.replace(target)
    except OSError as error:
        raise AbortError(f"cannot write {run_dir / file}: {error.strerror or error}") from None
    finally:
        part.unlink(missing_ok=True)
    return DownloadedImage(file, digest, size, width, height)


async def _stream_to(
    session: aiohttp.ClientSession, url: str, part: Path, timeout_s: float
) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with session.get(url, timeout=timeout) as response:
            if response.status != 200:
                raise await _download_failure(response)
            async with aiofiles.open(part, "wb") as sink:
                async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                    digest.update(chunk)
                    size += len(chunk)
                    await sink.write(chunk)
            expected = response.content_length
    except NETWORK_ERRORS as error:
        raise TransientError(f"download failed: {describe_network_error(error)}") from None
    if expected is not None and size != expected:
        raise TransientError(f"download truncated: got {size} of {expected} bytes")
    return digest.hexdigest(), size


async def _download_failure(response: aiohttp.ClientResponse) -> Exception:
    text = (await response.text(errors="replace"))[:500]
    if response.status == 403 and any(m in text.lower() for m in EXPIRED_MARKERS):
        return JobError("download URL has expired; the image is lost unless the job is run again")
    if response.status >= 500 or response.status == 429:
        return TransientError(f"download failed: HTTP {response.status}")
    return JobError(f"download refused: HTTP {response.status}")


def _check_image(path: Path, fmt: str) -> tuple[int, int]:
    """Decode the whole file; return its size, or raise if it is not a `fmt` image."""
    data = path.read_bytes()
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
