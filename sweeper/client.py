"""The 1min.ai API client: upload an input image, run one edit, and classify every attempt.

Each call makes exactly one HTTP request; retrying is `sweeper.retry`'s decision.
Every attempt ends one of three ways, named as httpx names them so a reader sees
which case is which:

- *not sent* (`NotSent`: a connect error or connect timeout): the server never
  saw it, so it may be sent again freely;
- *answered*: any status with a readable body, mapped onto the contract's error
  table (`AuthError` / `CreditsError` stop the run, `RateLimited` /
  `TransientError` retry, `JobError` fails this job) or returned;
- *unanswered* (`Unanswered`: a read timeout, a reset after the request was
  written, a 200 whose body cannot be read in full and within the caps): it may
  have been processed and billed.

An error status is an answer even when its body is unreadable, too big or too
deep. The API key goes only to the API base, never along a redirect (a 3xx is
refused and names its target) and never to storage URLs, and is scrubbed from
any text we keep.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from sweeper.contract import ASSETS_PATH, FEATURES_PATH, check_api_key
from sweeper.errors import (
    ApiRedirected,
    AuthError,
    CreditsError,
    JobError,
    NotSent,
    RateLimited,
    RecordFailed,
    SpecError,
    TransientError,
    Unanswered,
)
from sweeper.image_check import ImageProblem, load_input_image
from sweeper.job import RemoteOutput
from sweeper.retry import parse_retry_after

TRANSIENT_STATUSES = frozenset({408, 500, 502, 503, 504})
# "Out of credits" is a 402, or a 4xx (not 429) whose message says the credits ran out.
CREDITS_PATTERN = re.compile(
    r"(insufficient|exhausted|not enough|no (more )?|out of|run out of|ran out of)\s*"
    r"(\w+\s+){0,2}credits?|credits?\s+(\w+\s+){0,2}(insufficient|exhausted|depleted)",
    re.IGNORECASE,
)
# The server has forgotten the uploaded input: upload it again, then retry the job.
UNKNOWN_ASSET_PATTERN = re.compile(
    r"(image|asset|imageurl|file).{0,40}(not found|unknown|does not exist|no longer|expired)"
    r"|(not found|unknown|no such).{0,40}(image|asset|imageurl|file)",
    re.IGNORECASE,
)
UNKNOWN_ASSET_STATUSES = frozenset({400, 404, 422})
MESSAGE_LIMIT = 300
CHUNK_BYTES = 64 * 1024
# Pool wait plus TCP (and TLS) set-up: past this the request was never written.
MAX_CONNECT_S = 30.0
NOT_SENT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


class UnknownAsset(JobError):
    """The server no longer knows the input's asset path: upload it again, then retry."""


@dataclass(frozen=True)
class ResponseLimits:
    """Caps on what the API may send back; past one, that attempt is unanswered."""

    max_body_bytes: int = 16 * 1024 * 1024
    max_json_depth: int = 64


@dataclass(frozen=True)
class EditResult:
    """A successful edit as the API recorded it: paid for, whatever happens to its images.

    `outputs` has one entry per image it owes (`num_outputs`); an output whose URL
    the answer did not carry has an empty `url`, and its image is lost.
    """

    record_uuid: str
    outputs: tuple[RemoteOutput, ...]
    used_credit: float | None = None
    surplus: int = 0  # images the answer listed beyond num_outputs, not kept


class ApiClient:
    """Talks to one API base with one key over a shared aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_base: str,
        api_key: str,
        *,
        request_timeout_s: float = 300.0,
        limits: ResponseLimits | None = None,
    ) -> None:
        self._session = session
        self._base = api_base.rstrip("/")
        self._key = check_api_key(api_key)
        # The connect timeout stays below the total one: were they equal, the total timer
        # would fire first, and a request that never left would look maybe billed.
        self._timeout = aiohttp.ClientTimeout(
            total=request_timeout_s, connect=min(MAX_CONNECT_S, request_timeout_s / 2)
        )
        self._limits = limits or ResponseLimits()

    @property
    def api_base(self) -> str:
        return self._base

    async def upload_asset(self, path: Path, sha256: str | None = None) -> str:
        """Upload a local image once and return its asset path for `imageUrl`.

        Given the `sha256` the jobs were planned with, a file that changed since is
        refused: the jobs' ids (and their images' meaning) name the old content.
        """
        data = await asyncio.to_thread(_read_upload, path, sha256)
        form = aiohttp.FormData()
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        form.add_field("asset", data, filename=path.name, content_type=content_type)
        payload = await self._post(ASSETS_PATH, data=form)
        return _asset_path_from(payload, self._key)

    async def run_edit(self, request_json: str, num_outputs: int | None = None) -> EditResult:
        """Send one edit (the exact JSON text given) and return what it made."""
        headers = {"Content-Type": "application/json"}
        payload = await self._post(FEATURES_PATH, data=request_json, headers=headers)
        return parse_edit_result(payload, self._key, num_outputs)

    async def _post(self, path: str, **kwargs: Any) -> Any:
        headers = {**kwargs.pop("headers", {}), "API-KEY": self._key}
        url = self._base + path
        try:
            async with self._session.post(
                url, headers=headers, timeout=self._timeout, allow_redirects=False, **kwargs
            ) as response:
                return await self._answer(response)
        except NOT_SENT_ERRORS as error:
            raise NotSent(describe_network_error(error, self._key)) from None
        except NETWORK_ERRORS as error:
            # The connection was made, so the request was (being) written: maybe billed.
            raise Unanswered(describe_network_error(error, self._key)) from None

    async def _answer(self, response: aiohttp.ClientResponse) -> Any:
        if 300 <= response.status < 400:
            target = urlsplit(response.headers.get("Location", "")).hostname or "nowhere"
            raise ApiRedirected(
                f"the API at {self._base} answered HTTP {response.status}, a redirect to "
                f"{target}; sweeper never follows one, since the API key would go with it. "
                "Check ONEMIN_API_BASE"
            )
        if response.status != 200:
            text = await _read_capped(response, self._limits.max_body_bytes, partial_ok=True)
            return interpret_answer(response.status, response.headers, text, self._key)
        try:
            text = await _read_capped(response, self._limits.max_body_bytes, partial_ok=False)
        except _TooBig:
            raise Unanswered(
                f"the API's answer is over {self._limits.max_body_bytes:,} bytes "
                "(run.max_response_mb); it may have been billed"
            ) from None
        return parse_json_answer(text, self._limits.max_json_depth, self._key)


class _TooBig(Exception):
    pass


async def _read_capped(response: aiohttp.ClientResponse, cap: int, *, partial_ok: bool) -> str:
    """The body as text, counted after decompression, stopping at `cap` bytes."""
    chunks, size = [], 0
    try:
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            size += len(chunk)
            if size > cap:
                if partial_ok:
                    break
                raise _TooBig
            chunks.append(chunk)
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
        if not partial_ok:
            raise
    return b"".join(chunks).decode("utf-8", errors="replace")


def _read_upload(path: Path, sha256: str | None) -> bytes:
    """The file's bytes, read once, checked whole and unchanged."""
    try:
        checked, data = load_input_image(path)
    except ImageProblem as problem:
        raise SpecError(f"{path}: {problem}") from None
    if sha256 is not None and checked.sha256 != sha256:
        raise SpecError(
            f"{path}: changed since the run started (its sha256 is not the one its jobs "
            "were planned with); run the same command again to plan with the new file"
        )
    return data


def parse_json_answer(text: str, max_depth: int, api_key: str = "") -> Any:
    """The JSON of a 200 answer; a body we cannot use is unanswered (it may have billed)."""
    try:
        payload = json.loads(text)
    except RecursionError:
        raise Unanswered("the API answered 200 with JSON nested too deeply to read") from None
    except ValueError:
        message = server_message(text, api_key)
        raise Unanswered(f"the API answered 200 with a body that is not JSON: {message}") from None
    if json_depth(payload) > max_depth:
        raise Unanswered(
            f"the API answered 200 with JSON nested deeper than {max_depth} levels "
            "(run.max_json_depth)"
        )
    return payload


def json_depth(value: Any) -> int:
    """How deeply lists and objects nest in `value`, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def interpret_answer(status: int, headers: Any, text: str, api_key: str = "") -> Any:
    """Return the JSON of a 200 answer, or raise the exception the contract's table says."""
    if status == 200:
        return parse_json_answer(text, ResponseLimits().max_json_depth, api_key)
    message = server_message(text, api_key)
    if status == 429:  # always a rate limit, even when it mentions credits per minute
        retry_after = parse_retry_after(headers.get("Retry-After"))
        raise RateLimited(f"rate limited by the API (HTTP 429: {message})", retry_after)
    if status == 402 or (400 <= status < 500 and CREDITS_PATTERN.search(message)):
        raise CreditsError(f"the account is out of credits (HTTP {status}: {message})")
    if status in (401, 403):
        raise AuthError(f"the API rejected the key in ONEMIN_API_KEY (HTTP {status})")
    if status in UNKNOWN_ASSET_STATUSES and UNKNOWN_ASSET_PATTERN.search(message):
        raise UnknownAsset(f"the API no longer knows the input image (HTTP {status}: {message})")
    if status in TRANSIENT_STATUSES or status >= 500:
        raise TransientError(f"HTTP {status}: {message}")
    if 400 <= status < 500:
        raise JobError(f"the API refused the request (HTTP {status}: {message})")
    raise TransientError(f"unexpected HTTP {status}: {message}")


def parse_edit_result(
    payload: Any, api_key: str = "", num_outputs: int | None = None
) -> EditResult:
    """Check a 200 edit answer's record and pair each image it owes with its URL.

    A record that is not SUCCESS fails the job. A SUCCESS was paid for: it always
    gives a result, with `num_outputs` outputs (more listed are dropped and
    counted in `surplus`; fewer, or missing URLs, leave outputs without a URL).
    """
    record = payload.get("aiRecord") if isinstance(payload, dict) else None
    if not isinstance(record, dict):
        raise JobError("the API's answer has no aiRecord")
    detail = _mapping(record.get("aiRecordDetail"))
    status = record.get("status")
    used_credit = _number(_mapping(record.get("teamUser")).get("usedCredit"))
    if status != "SUCCESS":
        reason = detail.get("responseObject") or record.get("message") or "no message"
        text = redact(json.dumps(reason) if not isinstance(reason, str) else reason, api_key)
        raise RecordFailed(
            f"the API recorded the edit as {status}: {text[:MESSAGE_LIMIT]}", used_credit
        )
    paths = _as_list(detail.get("resultObject"))
    urls = _as_list(record.get("temporaryUrl"))
    owed = num_outputs if num_outputs is not None else max(len(paths), 1)
    outputs = tuple(
        RemoteOutput(index, _item(paths, index), _item(urls, index)) for index in range(owed)
    )
    return EditResult(
        record_uuid=str(record.get("uuid", "")),
        outputs=outputs,
        used_credit=used_credit,
        surplus=max(0, len(paths) - owed),
    )


def _as_list(value: Any) -> list[Any]:
    """A list as sent, a single string as a one-element list, anything else as empty."""
    if isinstance(value, str):
        return [value] if value else []
    return value if isinstance(value, list) else []


def _item(values: list[Any], index: int) -> str:
    value = values[index] if index < len(values) else ""
    return value if isinstance(value, str) else ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


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
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict):
        for field in ("message", "error", "detail"):
            if isinstance(body.get(field), str):
                return _one_line(redact(body[field], api_key))
    if "<html" in text[:500].lower():
        return "non-JSON gateway page"
    return _one_line(redact(text[:2000], api_key)) or "empty body"


def describe_network_error(error: BaseException, api_key: str = "") -> str:
    """Name a network failure in one line (a timeout has no message of its own)."""
    if isinstance(error, asyncio.TimeoutError):
        return "no answer before the request timed out"
    detail = str(error) or type(error).__name__
    return _one_line(redact(f"{type(error).__name__}: {detail}", api_key))


def redact(text: str, secret: str) -> str:
    """Remove the API key from text that came from elsewhere, in case a server echoes it."""
    return text.replace(secret, "***") if secret else text


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MESSAGE_LIMIT]
