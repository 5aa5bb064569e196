"""Downloads: caps after decompression, bounded http(s) redirects, spilling, fsync, reasons."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import os
import socket
import struct
import zlib
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from loopback import Handler, serve
from PIL import Image
from virtual_time import run_in_virtual_time

from sweeper.downloads import (
    SPILL_BYTES,
    BadDownload,
    DownloadedImage,
    DownloadLimits,
    download_output,
    kept_output,
)
from sweeper.errors import AbortError, JobError, SweeperError, TransientError

FILE = "images/a.png"
PART = "tmp/a.png.part"


def png(width: int = 40, height: int = 30, *, pad: int = 0) -> bytes:
    """A PNG of `width` x `height`, `pad` bytes longer through a private chunk Pillow skips."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 90)).save(buffer, "PNG")
    data = buffer.getvalue()
    if not pad:
        return data
    kind, payload = b"swPd", bytes(pad)
    crc = struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    header_end = 8 + 25  # the signature and the IHDR chunk
    return data[:header_end] + struct.pack(">I", pad) + kind + payload + crc + data[header_end:]


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 40, 90)).save(buffer, "JPEG")
    return buffer.getvalue()


def serving(body: bytes, *, status: int = 200, **headers: str) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, headers=headers)

    return answer


async def fetch(url: str, run_dir: Path, fmt: str = "png", **options: object) -> DownloadedImage:
    async with aiohttp.ClientSession() as session:
        return await download_output(session, url, run_dir, FILE, fmt, **options)


async def fetch_from(
    handler: Handler, run_dir: Path, path: str = "/img", **options: object
) -> DownloadedImage:
    async with serve(handler) as base:
        return await fetch(f"{base}{path}", run_dir, **options)


async def failure(
    handler: Handler, run_dir: Path, path: str = "/img", **options: object
) -> SweeperError:
    """The error a download fails with; it must leave neither an image nor a part file."""
    with pytest.raises(SweeperError) as caught:
        await fetch_from(handler, run_dir, path, **options)
    assert not (run_dir / FILE).exists() and not (run_dir / PART).exists()
    return caught.value


def landed(run_dir: Path, body: bytes) -> DownloadedImage:
    """What download_output must return for `body`, a 40 x 30 image, stored at FILE."""
    mtime_ns = (run_dir / FILE).stat().st_mtime_ns
    return DownloadedImage(FILE, hashlib.sha256(body).hexdigest(), len(body), 40, 30, mtime_ns)


# --- a download that lands ----------------------------------------------------------------


async def test_a_download_lands_in_images_with_its_exact_size_hash_and_dimensions(tmp_path):
    body = png(pad=300_000)  # more than one 256 KiB chunk
    image = await fetch_from(serving(body), tmp_path)
    assert image == landed(tmp_path, body)
    assert (tmp_path / FILE).read_bytes() == body
    assert not (tmp_path / PART).exists()


@pytest.mark.parametrize("pad", [0, 2 * SPILL_BYTES], ids=["in-memory", "spilled"])
async def test_a_part_file_left_by_a_killed_run_never_leaks_into_the_image(tmp_path, pad):
    (tmp_path / "tmp").mkdir()
    (tmp_path / PART).write_bytes(b"half an image from a run killed mid-download")
    body = png(pad=pad)
    image = await fetch_from(serving(body), tmp_path)
    assert image == landed(tmp_path, body)
    assert (tmp_path / FILE).read_bytes() == body


def size_on_disk(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


async def part_size(part: Path, expected: int) -> int:
    """The part file's size once it is `expected` (or after 2 s); never sooner than 30 ms,
    so a spill that should not happen has the time to show."""
    await asyncio.sleep(0.03)
    for _ in range(400):
        size = size_on_disk(part)
        if size == expected:
            break
        await asyncio.sleep(0.005)
    return size


async def next_cut(reached: asyncio.Queue[int], downloading: asyncio.Future) -> int:
    """The next cut the server has sent, or the download's own error if it failed first."""
    getting = asyncio.ensure_future(reached.get())
    await asyncio.wait({getting, downloading}, return_when=asyncio.FIRST_COMPLETED)
    if not getting.done():
        getting.cancel()
        downloading.result()
    return getting.result()


async def test_a_big_download_goes_to_its_part_file_each_time_4_mib_arrive(tmp_path):
    body = png(pad=2 * SPILL_BYTES + 1000)
    cuts = [SPILL_BYTES - 1, SPILL_BYTES, 2 * SPILL_BYTES - 1, 2 * SPILL_BYTES]
    spilled = [0, SPILL_BYTES, SPILL_BYTES, 2 * SPILL_BYTES]  # on disk once a cut has arrived
    reached: asyncio.Queue[int] = asyncio.Queue()
    go_on: asyncio.Queue[None] = asyncio.Queue()

    async def in_steps(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.content_length = len(body)
        await response.prepare(request)
        start = 0
        for cut in [*cuts, len(body)]:
            await response.write(body[start:cut])
            start = cut
            reached.put_nowait(cut)
            if cut != len(body):
                await go_on.get()
        return response

    run_dir = tmp_path / "new" / "run"  # not made yet: the first spill makes its folders
    part = run_dir / PART
    on_disk = []
    async with serve(in_steps) as base:
        downloading = asyncio.ensure_future(fetch(f"{base}/img", run_dir))
        for cut, expected in zip(cuts, spilled, strict=True):
            assert await next_cut(reached, downloading) == cut
            on_disk.append(await part_size(part, expected))
            if cut == 2 * SPILL_BYTES:
                both_spills = part.read_bytes()
            go_on.put_nowait(None)
        image = await downloading
    assert on_disk == spilled
    assert both_spills == body[: 2 * SPILL_BYTES]  # the second spill appended, in order
    assert image == landed(run_dir, body)
    assert (run_dir / FILE).read_bytes() == body and not part.exists()


async def test_a_download_without_content_length_lands(tmp_path):
    body = png()

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(body)
        return response

    assert await fetch_from(chunked, tmp_path) == landed(tmp_path, body)


async def test_the_image_and_its_folder_are_fsynced_around_the_rename(tmp_path, monkeypatch):
    real_fsync, synced = os.fsync, []

    def recording_fsync(descriptor: int) -> None:
        path = Path(f"/proc/self/fd/{descriptor}").readlink()
        synced.append((path, (tmp_path / FILE).exists()))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    await fetch_from(serving(png()), tmp_path)
    run_dir = tmp_path.resolve()
    # The bytes under their part name before the rename; the folder once the image is in it.
    assert synced == [(run_dir / PART, False), (run_dir / "images", True)]


# --- caps: bytes counted after decompression, pixels from the header ----------------------


async def test_the_size_cap_allows_exactly_max_bytes_and_refuses_one_more(tmp_path):
    body = png(pad=300_000)
    handler = serving(body)
    exact = DownloadLimits(max_bytes=len(body))
    assert await fetch_from(handler, tmp_path, limits=exact) == landed(tmp_path, body)
    (tmp_path / FILE).unlink()
    error = await failure(handler, tmp_path, limits=DownloadLimits(max_bytes=len(body) - 1))
    cap = f"{len(body) - 1:,}"
    assert (type(error), str(error)) == (
        BadDownload,
        f"the image is over {cap} bytes (run.max_download_mb)",
    )


async def test_a_gzip_encoded_image_is_verified_and_sized_after_decompression(tmp_path):
    body = png(pad=300_000)
    squeezed = gzip.compress(body)
    assert len(squeezed) < len(body) // 10  # Content-Length counts the compressed bytes
    handler = serving(squeezed, **{"Content-Encoding": "gzip", "Content-Type": "image/png"})
    assert await fetch_from(handler, tmp_path) == landed(tmp_path, body)
    assert (tmp_path / FILE).read_bytes() == body


async def test_a_gzip_bomb_stops_at_the_cap_counted_after_decompression(tmp_path):
    bomb = gzip.compress(bytes(4 * 1024 * 1024))  # 4 KiB on the wire, 4 MiB inflated
    handler = serving(bomb, **{"Content-Encoding": "gzip", "Content-Type": "image/png"})
    error = await failure(handler, tmp_path, limits=DownloadLimits(max_bytes=1024 * 1024))
    assert (type(error), str(error)) == (
        BadDownload,
        "the image is over 1,048,576 bytes (run.max_download_mb)",
    )


async def test_an_image_over_the_pixel_cap_is_refused_naming_its_size(tmp_path):
    handler = serving(png(40, 30))
    error = await failure(handler, tmp_path, limits=DownloadLimits(max_pixels=1199))
    assert (type(error), str(error)) == (
        BadDownload,
        "the downloaded image has more pixels (40 x 30) than the cap of 0.001199 megapixels; "
        "it may be a decompression bomb, or scale it down first",
    )


async def test_an_image_of_another_format_is_refused_naming_both(tmp_path):
    error = await failure(serving(jpeg()), tmp_path)
    assert (type(error), str(error)) == (
        BadDownload,
        "the downloaded image is JPEG, but png was requested",
    )


async def test_bytes_that_are_not_an_image_are_refused(tmp_path):
    error = await failure(serving(b"\x00not an image" * 100), tmp_path)
    assert (type(error), str(error)) == (
        BadDownload,
        "the downloaded image is not an image file Pillow can read (unknown format)",
    )


# --- links: http(s) only, bounded redirects, failure reasons ------------------------------


async def test_an_https_link_is_fetched_and_any_other_scheme_is_refused_unsent(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SweeperError) as tried:
        await fetch(f"https://127.0.0.1:{port}/img", tmp_path)
    assert type(tried.value) is TransientError  # it was tried: the connection was refused
    assert str(tried.value).startswith("download failed: ClientConnector")
    url = "ftp://storage.example/" + "x" * 100
    with pytest.raises(SweeperError) as refused:
        await fetch(url, tmp_path)
    assert (type(refused.value), str(refused.value)) == (
        JobError,
        f"the download link is not an http(s) URL: 'ftp://storage.example/{'x' * 58}'",
    )


async def test_a_download_follows_5_redirects_and_loses_the_job_at_the_6th(tmp_path):
    body, asked = png(), []

    async def hop(request: web.Request) -> web.StreamResponse:
        asked.append(request.path)
        left = int(request.path.rsplit("/", 1)[1])
        if left:
            raise web.HTTPFound(f"/hop/{left - 1}")
        return web.Response(body=body)

    assert await fetch_from(hop, tmp_path, "/hop/5") == landed(tmp_path, body)
    assert asked == ["/hop/5", "/hop/4", "/hop/3", "/hop/2", "/hop/1", "/hop/0"]
    (tmp_path / FILE).unlink()
    asked.clear()
    error = await failure(hop, tmp_path, "/hop/6")
    assert (type(error), str(error)) == (JobError, "the download link redirected more than 5 times")
    assert asked == ["/hop/6", "/hop/5", "/hop/4", "/hop/3", "/hop/2", "/hop/1"]


@pytest.mark.parametrize("location", ["file:///etc/passwd", "http://"])
async def test_a_redirect_to_anything_but_an_http_url_loses_the_job(tmp_path, location):
    async def away(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": location})

    error = await failure(away, tmp_path)
    assert (type(error), str(error)) == (
        JobError,
        "the download link redirected to a URL that is not http(s)",
    )


DEAD = "the download link is dead (HTTP {}); the image is lost unless the job is run again"


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        pytest.param(404, b"", JobError, DEAD.format(404), id="404"),
        pytest.param(410, b"", JobError, DEAD.format(410), id="410"),
        pytest.param(
            403, b"<Code>AccessDenied</Code>", JobError, DEAD.format(403), id="403-access-denied"
        ),
        pytest.param(403, b"Request has EXPIRED", JobError, DEAD.format(403), id="403-expired"),
        pytest.param(403, b"SignatureDoesNotMatch", JobError, DEAD.format(403), id="403-signature"),
        pytest.param(
            403,
            b"\xff\xfe not UTF-8, yet Request has expired",
            JobError,
            DEAD.format(403),
            id="403-expired-not-utf8",
        ),
        pytest.param(
            403,
            b"Forbidden by bucket policy",
            JobError,
            "download refused: HTTP 403",
            id="403-other",
        ),
        pytest.param(400, b"Bad Request", JobError, "download refused: HTTP 400", id="400"),
        pytest.param(405, b"", JobError, "download refused: HTTP 405", id="405"),
        pytest.param(500, b"", TransientError, "download failed: HTTP 500", id="500"),
        pytest.param(429, b"slow down", TransientError, "download failed: HTTP 429", id="429"),
    ],
)
async def test_an_error_answer_is_lost_or_retried_by_its_status_and_body(
    tmp_path, status, body, kind, message
):
    error = await failure(serving(body, status=status), tmp_path)
    assert (type(error), str(error)) == (kind, message)


def test_a_download_that_never_answers_fails_retryably_after_exactly_its_timeout(tmp_path):
    async def never(request: web.Request) -> web.StreamResponse:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def main() -> tuple[SweeperError, float]:
        loop = asyncio.get_running_loop()
        async with serve(never) as base:
            start = loop.time()
            with pytest.raises(SweeperError) as caught:
                await fetch(f"{base}/img", tmp_path, timeout_s=12.0)
            return caught.value, loop.time() - start

    error, waited = run_in_virtual_time(main())
    assert (type(error), str(error)) == (
        TransientError,
        "download failed: no answer before the request timed out",
    )
    assert 12.0 <= waited < 13.0  # not the session's own (5 minutes, 30 s to connect)


async def test_a_folder_that_cannot_be_written_aborts_the_run_naming_the_file(tmp_path):
    (tmp_path / "images").write_text("a file where the images folder should be")
    error = await failure(serving(png()), tmp_path)
    assert (type(error), str(error)) == (
        AbortError,
        f"cannot write {tmp_path / FILE}: File exists",
    )


# --- kept_output: an image already in images/ ----------------------------------------------


def test_an_image_already_in_images_is_kept_as_it_is(tmp_path):
    body = png()
    (tmp_path / "images").mkdir()
    (tmp_path / FILE).write_bytes(body)
    assert kept_output(tmp_path, FILE, "png") == landed(tmp_path, body)
    assert kept_output(tmp_path, FILE, "png", DownloadLimits(max_pixels=1200)) == landed(
        tmp_path, body
    )


@pytest.mark.parametrize(
    ("content", "limits"),
    [
        (None, None),
        (b"\x00not an image" * 100, None),
        (jpeg(), None),
        (png(40, 30), DownloadLimits(max_pixels=1199)),
    ],
    ids=["missing", "not-an-image", "another-format", "over-the-pixel-cap"],
)
def test_a_missing_or_unusable_image_is_not_kept(tmp_path, content, limits):
    (tmp_path / "images").mkdir()
    if content is not None:
        (tmp_path / FILE).write_bytes(content)
    assert kept_output(tmp_path, FILE, "png", limits) is None
