"""The 1min.ai API client: upload an input image, run one edit, classify every answer.

Each call makes exactly one HTTP request; retrying is the runner's decision. Every
answer is mapped onto the contract's error table as one of our exceptions:
AuthError / CreditsError (stop the run), RateLimited / TransientError (retry),
JobError (this job failed for good). The API key is sent only to the API base,
never to storage URLs, and is scrubbed from any text we keep.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from sweeper.contract import ASSETS_PATH, FEATURES_PATH, MAX_UPLOAD_BYTES
from sweeper.errors import (
    AuthError,
    CreditsError,
    JobError,
    RateLimited,
    SpecError,
    TransientError,
)
from sweeper.job import RemoteOutput
from sweeper.retry import parse_retry_after

TRANSIENT_STATUSES = frozenset({408, 500, 502, 503, 504})
INVALID_STATUSES = frozenset({400, 404, 413, 415, 422})
CREDITS_PATTERN = re.compile(r"credit", re.IGNORECASE)
MESSAGE_LIMIT = 300
NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


@dataclass(frozen=True)
class EditResult:
    """A successful edit as the API recorded it."""

    record_uuid: str
    outputs: tuple[RemoteOutput, ...]


class ApiClient:
    """Talks to one API base with one key over a shared aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_base: str,
        api_key: str,
        *,
        request_timeout_s: float = 300.0,
    ) -> None:
        self._session = session
        self._base = api_base.rstrip("/")
        self._key = api_key
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)

    @property
    def api_base(self) -> str:
        return self._base

    async def upload_asset(self, path: Path) -> str:
        """Upload a local image once and return its asset path for `imageUrl`."""
        data = _read_upload(path)
        form = aiohttp.FormData()
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        form.add_field("asset", data, filename=path.name, content_type=content_type)
        payload = await self._post(ASSETS_PATH, data=form)
        return _asset_path_from(payload, self._key)

    async def run_edit(self, request_json: str) -> EditResult:
        """Send one edit (the exact JSON text given) and return its outputs."""
        headers = {"Content-Type": "application/json"}
        payload = await self._post(FEATURES_PATH, data=request_json, headers=headers)
        return parse_edit_result(payload, self._key)

    async def _post(self, path: str, **kwargs: Any) -> Any:
        headers = {**kwargs.pop("headers", {}), "API-KEY": self._key}
        try:
            async with self._session.post(
                self._base + path, headers=headers, timeout=self._timeout, **kwargs
            ) as response:
                text = await response.text(errors="replace")
                return interpret_answer(response.status, response.headers, text, self._key)
        except NETWORK_ERRORS as error:
            raise TransientError(describe_network_error(error, self._key)) from None


def _read_upload(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SpecError(f"{path}: cannot read input image ({error.strerror})") from None
    if len(data) > MAX_UPLOAD_BYTES:
        raise SpecError(f"{path}: input image is {len(data)} bytes; the API accepts up to 50 MB")
    return data


def interpret_answer(status: int, headers: Any, text: str, api_key: str = "") -> Any:
    """Return the JSON of a 200 answer, or raise the exception the contract's table says."""
    message = server_message(text, api_key)
    if status == 200:
        try:
            return json.loads(text)
        except ValueError:
            raise TransientError(
                f"API answered 200 with a body that is not JSON: {message}"
            ) from None
    if status in (401, 403):
        raise AuthError(f"the API rejected the key in ONEMIN_API_KEY (HTTP {status})")
    if status == 402 or (400 <= status < 500 and CREDITS_PATTERN.search(message)):
        raise CreditsError(f"the account is out of credits (HTTP {status}: {message})")
    if status == 429:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        raise RateLimited(f"rate limited by the API (HTTP 429: {message})", retry_after)
    if status in TRANSIENT_STATUSES or status >= 500:
        raise TransientError(f"HTTP {status}: {message}")
    if status in INVALID_STATUSES or 400 <= status < 500:
        raise JobError(f"the API refused the request (HTTP {status}: {message})")
    raise TransientError(f"unexpected HTTP {status}: {message}")


def parse_edit_result(payload: Any, api_key: str = "") -> EditResult:
    """Check a 200 edit answer's record and pair each remote path with its URL."""
    record = payload.get("aiRecord") if isinstance(payload, dict) else None
    if not isinstance(record, dict):
        raise JobError("the API's answer has no aiRecord")
    detail = _mapping(record.get("aiRecordDetail"))
    status = record.get("status")
    paths = detail.get("resultObject") or []
    urls = record.get("temporaryUrl") or []
    if status != "SUCCESS":
        reason = detail.get("responseObject") or record.get("message") or "no message"
        text = redact(json.dumps(reason) if not isinstance(reason, str) else reason, api_key)
        raise JobError(f"the API recorded the edit as {status}: {text[:MESSAGE_LIMIT]}")
    if not paths or not isinstance(paths, list) or not isinstance(urls, list):
        raise JobError("the API answered SUCCESS but returned no images")
    if len(paths) != len(urls):
        raise JobError(f"the API returned {len(paths)} image paths but {len(urls)} URLs")
    outputs = tuple(
        RemoteOutput(index, str(path), str(url))
        for index, (path, url) in enumerate(zip(paths, urls, strict=True))
    )
    return EditResult(record_uuid=str(record.get("uuid", "")), outputs=outputs)


def _asset_path_from(payload: Any, api_key: str) -> str:
    if isinstance(payload, dict):
        path = _mapping(payload.get("fileContent")).get("path") or _mapping(
            payload.get("asset")
        ).get("key")
        if isinstance(path, str) and path:
            return path
    raise TransientError(
        "the upload answer has neither fileContent.path nor asset.key: "
        + redact(json.dumps(payload)[:MESSAGE_LIMIT], api_key)
    )


def _mapping(value: Any) -> dict[str, Any]:
    """`value` if the server sent an object there, else an empty one: never crash on a shape."""
    return value if isinstance(value, dict) else {}


def server_message(text: str, api_key: str = "") -> str:
    """The server's own words from an answer body, short, one line, with the key scrubbed."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for field in ("message", "error", "detail"):
            if isinstance(body.get(field), str):
                return _one_line(redact(body[field], api_key))
    if "<html" in text[:500].lower():
        return "non-JSON gateway page"
    return _one_line(redact(text, api_key)) or "empty body"


def describe_network_error(error: BaseException, api_key: str = "") -> str:
    """Name a network failure in one line (a timeout has no message of its own)."""
    if isinstance(error, asyncio.TimeoutError):
        return "request timed out"
    detail = str(error) or type(error).__name__
    return _one_line(redact(f"{type(error).__name__}: {detail}", api_key))


def redact(text: str, secret: str) -> str:
    """Remove the API key from text that came from elsewhere, in case a server echoes it."""
    return text.replace(secret, "***") if secret else text


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MESSAGE_LIMIT]
