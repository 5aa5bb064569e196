"""The unit of work: one fully specified edit request, its stable id, and its outputs.

A job's id is a short hash of the canonical request it sends (model, every
parameter with defaults filled in, and the input image's sha256 instead of its
path), so the same spec yields the same ids on any machine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeper.contract import FEATURE_TYPE, IMAGE_FIELD, PARAMS

JOB_ID_LENGTH = 16


@dataclass(frozen=True)
class ImageRef:
    """An input image as the user named it: a local file, or an already-uploaded asset."""

    given: str
    local_path: Path | None = None
    sha256: str | None = None
    asset_path: str | None = None

    @property
    def identity(self) -> str:
        """What the job id hashes: the file's content, or the asset path as given."""
        return self.sha256 if self.sha256 else f"asset:{self.asset_path}"

    @property
    def is_local(self) -> bool:
        return self.local_path is not None


@dataclass(frozen=True)
class RemoteOutput:
    """One image of a paid edit, as the API answered: where it is stored, where to fetch it."""

    index: int
    remote_path: str
    url: str


@dataclass(frozen=True)
class Job:
    """One request of the sweep: `params` holds every promptObject field but imageUrl."""

    job_id: str
    index: int
    model: str
    image: ImageRef
    params: dict[str, Any] = field(hash=False)

    def prompt_object(self, asset_path: str) -> dict[str, Any]:
        """The exact promptObject sent for this job, with `asset_path` as imageUrl."""
        return {IMAGE_FIELD: asset_path, **{name: self.params[name] for name in PARAMS}}

    def request_body(self, asset_path: str) -> dict[str, Any]:
        """The exact JSON body of `POST /api/features` for this job."""
        return {
            "type": FEATURE_TYPE,
            "model": self.model,
            "promptObject": self.prompt_object(asset_path),
        }

    @property
    def image_count(self) -> int:
        return int(self.params["num_outputs"])


def compute_job_id(model: str, image: ImageRef, params: dict[str, Any]) -> str:
    """Hash the canonical request: key order, paths and machines do not matter."""
    canonical = {
        "model": model,
        "image": image.identity,
        "params": {name: params[name] for name in PARAMS},
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:JOB_ID_LENGTH]


def make_job(index: int, model: str, image: ImageRef, params: dict[str, Any]) -> Job:
    """Build a Job whose id is derived from its request."""
    return Job(compute_job_id(model, image, params), index, model, image, params)
