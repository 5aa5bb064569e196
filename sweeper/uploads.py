"""Upload each distinct local input image once and remember its asset path.

The path is cached in the journal by (API base, file sha256), so a rerun, or any
number of jobs sharing one photo, uploads nothing more. Concurrent workers asking
for the same image wait on the one upload in progress. An upload that fails
transiently on every attempt stops the run: every job needs its input, so an
unreachable API would otherwise be retried job after job, for nothing.
"""

from __future__ import annotations

import asyncio

from sweeper.client import ApiClient
from sweeper.errors import UploadFailed
from sweeper.job import ImageRef
from sweeper.journal import INPUT_PATH_META, Journal
from sweeper.retry import Attempts, GaveUp


class AssetUploader:
    """Give every job the asset path of its input image, uploading on first need."""

    def __init__(self, client: ApiClient, journal: Journal, attempts: Attempts) -> None:
        self._client = client
        self._journal = journal
        self._attempts = attempts
        self._uploads: dict[str, asyncio.Task[str]] = {}
        self._inputs_noted: set[str] = set()

    async def asset_path(self, image: ImageRef) -> str:
        """The path to send as imageUrl for `image`."""
        if not image.is_local:
            return image.asset_path or image.given
        assert image.sha256 is not None
        self._remember_input(image)
        cached = self._journal.cached_asset(self._client.api_base, image.sha256)
        if cached:
            return cached
        task = self._uploads.get(image.sha256)
        if task is None or _failed(task):
            task = asyncio.ensure_future(self._upload(image))
            self._uploads[image.sha256] = task
        return await asyncio.shield(task)

    def forget(self, image: ImageRef) -> None:
        """The server no longer knows this image's upload: the next job uploads it again."""
        assert image.sha256 is not None
        self._journal.forget_asset(self._client.api_base, image.sha256)
        self._uploads.pop(image.sha256, None)

    def _remember_input(self, image: ImageRef) -> None:
        """Note where the input file lives, so `sweeper reproduce --offline` can find it."""
        assert image.local_path is not None and image.sha256 is not None
        if image.sha256 not in self._inputs_noted:
            self._inputs_noted.add(image.sha256)
            self._journal.set_meta(
                f"{INPUT_PATH_META}{image.sha256}", str(image.local_path.resolve())
            )

    async def _upload(self, image: ImageRef) -> str:
        local_path, sha256 = image.local_path, image.sha256
        assert local_path is not None and sha256 is not None
        try:
            path = await self._attempts.call(
                lambda _attempt: self._client.upload_asset(local_path, sha256), paced=False
            )
        except GaveUp as error:
            raise UploadFailed(
                f"could not upload {image.given} to {self._client.api_base} ({error}); "
                "no edit was sent. Check the network and ONEMIN_API_BASE, then run again"
            ) from None
        self._journal.remember_asset(self._client.api_base, sha256, path)
        return path


def _failed(task: asyncio.Task[str]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)
