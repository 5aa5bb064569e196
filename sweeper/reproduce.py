"""Resend one job's exact recorded request and say how the new image compares.

The body sent is the journal's `request_json`, byte for byte, retried on the
contract's transient failures as a run would. The new image goes to
`DIR/reproduce/`; the verdict is byte-identical, pixel-identical, or how far it
differs (mean absolute pixel difference and the share of pixels that differ).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageStat

from sweeper.errors import AbortError, JobError, SpecError, TransientError
from sweeper.journal import INPUT_FILE_META, INPUT_PATH_META, Journal
from sweeper.retry import RetryPolicy
from sweeper.run_folder import REPRODUCE_DIR

logger = logging.getLogger("sweeper")


@dataclass(frozen=True)
class Comparison:
    """How a reproduced image relates to the original."""

    byte_identical: bool
    pixel_identical: bool
    mean_abs_diff: float
    share_differing: float
    note: str = ""

    @property
    def identical(self) -> bool:
        return self.byte_identical or self.pixel_identical

    def describe(self) -> str:
        if self.byte_identical:
            return "byte-identical to the original"
        if self.pixel_identical:
            return "pixel-identical to the original (the encoded bytes differ)"
        if self.note:
            return f"differs: {self.note}"
        return (
            f"differs: mean absolute pixel difference {self.mean_abs_diff:.3f} (of 255), "
            f"{self.share_differing:.2%} of pixels differ"
        )


@dataclass(frozen=True)
class Reproduction:
    """A job sent again: where its new image is, and how it compares with the original."""

    job_id: str
    output_index: int
    new_image: Path
    comparison: Comparison

    @property
    def exit_code(self) -> int:
        """0 when the new image is identical to the original, 1 when it differs."""
        return 0 if self.comparison.identical else 1

    def lines(self) -> list[str]:
        return [
            f"job {self.job_id} output {self.output_index}: {self.comparison.describe()}",
            f"new image: {self.new_image}",
        ]


def reproduce_job(
    run_dir: Path,
    job_id: str,
    *,
    output_index: int = 0,
    offline: bool,
    retry_policy: RetryPolicy | None = None,
) -> Reproduction:
    """Rerun the job's recorded request and compare its image with the original.

    Raises AbortError (exit 3) when no new image could be had at all.
    """
    recorded = _load_recorded(run_dir, job_id, output_index)
    input_data = recorded.input_bytes() if offline else None
    policy = retry_policy or RetryPolicy()
    try:
        comparison = asyncio.run(_reproduce(run_dir, recorded, input_data, policy))
    except (JobError, TransientError) as error:
        # Exit 1 means "the image differs"; having no new image at all is another outcome.
        raise AbortError(f"could not reproduce job {recorded.job_id}: {error}") from None
    return Reproduction(recorded.job_id, output_index, run_dir / recorded.new_file, comparison)


@dataclass(frozen=True)
class RecordedJob:
    """What the journal says was sent for one job, and the image it produced."""

    job_id: str
    request_json: str
    api_base: str
    original_file: str
    output_index: int
    fmt: str
    input_path: str | None

    @property
    def asset_path(self) -> str:
        return json.loads(self.request_json)["promptObject"]["imageUrl"]

    @property
    def new_file(self) -> str:
        extension = Path(self.original_file).suffix
        return f"{REPRODUCE_DIR}/{self.job_id}_{self.output_index}{extension}"

    def input_bytes(self) -> bytes:
        """The input image, for an offline simulator that never saw the upload."""
        if self.input_path is None or not Path(self.input_path).is_file():
            raise SpecError(
                f"the input image of job {self.job_id} is no longer on disk; "
                "offline reproduction needs it"
            )
        return Path(self.input_path).read_bytes()


def _load_recorded(run_dir: Path, job_id: str, output_index: int) -> RecordedJob:
    with Journal.open_existing(run_dir) as journal:
        row = journal.job_row(job_id)
        if row is None:
            raise SpecError(
                f"{run_dir}: no job {job_id!r}; the job_id column of manifest.csv lists them"
            )
        output = _output(row, output_index)
        sha256 = row["image_sha256"]
        kept = journal.get_meta(f"{INPUT_FILE_META}{sha256}")  # the run folder's own copy
        input_path = str(run_dir / kept) if kept else journal.get_meta(f"{INPUT_PATH_META}{sha256}")
    if not row.get("request_json"):
        raise SpecError(f"job {job_id} was never sent, so there is no request to reproduce")
    return RecordedJob(
        job_id=job_id,
        request_json=row["request_json"],
        api_base=row["api_base"],
        original_file=output["file"],
        output_index=output_index,
        fmt=row["format"],
        input_path=input_path,
    )


def _output(row: dict[str, Any], output_index: int) -> dict[str, Any]:
    for output in row.get("outputs", []):
        if output["output_index"] == output_index and output.get("file"):
            return output
    raise SpecError(
        f"job {row['job_id']} has no downloaded output {output_index} to compare against"
    )


async def _reproduce(
    run_dir: Path, recorded: RecordedJob, input_data: bytes | None, policy: RetryPolicy
) -> Comparison:
    import aiohttp

    from sweeper.client import ApiClient
    from sweeper.downloads import download_output
    from sweeper.pacing import RateLimiter
    from sweeper.retry import Attempts

    attempts = Attempts(policy, RateLimiter(None))
    target_for = _target_for(recorded, input_data)
    async with target_for as target, aiohttp.ClientSession() as session:
        client = ApiClient(session, target.base, target.key)
        result = await attempts.call(lambda _: client.run_edit(recorded.request_json), paced=True)
        if recorded.output_index >= len(result.outputs):
            raise JobError(f"the API answered with {len(result.outputs)} outputs this time")
        url = result.outputs[recorded.output_index].url
        await attempts.call(
            lambda _: download_output(session, url, run_dir, recorded.new_file, recorded.fmt),
            paced=False,
        )
    return compare_images(run_dir / recorded.original_file, run_dir / recorded.new_file)


@asynccontextmanager
async def _target_for(recorded: RecordedJob, input_data: bytes | None) -> AsyncIterator[Any]:
    """The real API from the environment, or (given the input's bytes) a fresh simulator."""
    from sweeper.execute import OFFLINE_KEY, ApiTarget, api_target_from_env

    if input_data is None:
        target = api_target_from_env()
        if target.base != recorded.api_base:
            logger.info(
                "note: this job ran against %s; now sending to %s", recorded.api_base, target.base
            )
        yield target
        return
    from sweeper.simulator import SimulatorConfig, run_simulator

    async with run_simulator(SimulatorConfig()) as simulator:
        simulator.state.register_asset(recorded.asset_path, input_data)
        yield ApiTarget(simulator.base_url, OFFLINE_KEY)


def compare_images(original: Path, new: Path) -> Comparison:
    """Byte, then pixel comparison; otherwise measure how far apart the two images are."""
    if original.read_bytes() == new.read_bytes():
        return Comparison(True, True, 0.0, 0.0)
    with Image.open(original) as a_file, Image.open(new) as b_file:
        a, b = a_file.convert("RGB"), b_file.convert("RGB")
    if a.size != b.size:
        note = f"size {b.size[0]}x{b.size[1]} instead of {a.size[0]}x{a.size[1]}"
        return Comparison(False, False, float("nan"), 1.0, note)
    difference = ImageChops.difference(a, b)
    mean = sum(ImageStat.Stat(difference).mean) / 3
    red, green, blue = difference.split()
    largest = ImageChops.lighter(red, ImageChops.lighter(green, blue))
    unchanged = largest.histogram()[0]
    share = 1 - unchanged / (a.size[0] * a.size[1])
    return Comparison(False, share == 0, mean, share)
