"""The simulator's HTTP routes: the API contract's three endpoints, with scripted faults.

`POST /api/assets` stores an upload, `POST /api/features` validates a request the
way the contract says and answers the documented shape, and `GET /storage/...`
serves outputs at presigned-style URLs that need no key (and records it if one
is sent anyway).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from sweeper.contract import (
    ASSET_PREFIX,
    EXTENSIONS,
    FEATURE_TYPE,
    IMAGE_FIELD,
    MAX_UPLOAD_BYTES,
    MODEL,
    PARAMS,
)
from sweeper.simulator.config import FaultRule
from sweeper.simulator.render import read_size, render
from sweeper.simulator.state import ProducedImage, SimulatorState

SIGNING_KEY = b"sweeper-simulator"
CONTENT_TYPES = {"webp": "image/webp", "jpg": "image/jpeg", "png": "image/png"}
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"RIFF", b"GIF8", b"BM")
HANG_S = 3600.0
STATS_PATH = "/_simulator/stats"
WINDOW_S = 60.0
STATE_KEY: web.AppKey[SimulatorState] = web.AppKey("state", SimulatorState)
GATEWAY_PAGE = "<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"
EXPIRED_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    "<Message>Request has expired</Message></Error>"
)


def build_app(state: SimulatorState) -> web.Application:
    app = web.Application(client_max_size=MAX_UPLOAD_BYTES + 1024 * 1024)
    app[STATE_KEY] = state
    app.router.add_post("/api/assets", upload_asset)
    app.router.add_post("/api/features", run_feature)
    app.router.add_get("/storage/{path:.+}", download)
    app.router.add_get(STATS_PATH, stats)
    return app


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def _signature(path: str) -> str:
    return hmac.new(SIGNING_KEY, path.encode(), hashlib.sha256).hexdigest()


async def _apply_fault(request: web.Request, rule: FaultRule | None) -> web.StreamResponse | None:
    """The faulty answer for this request, or None to answer normally."""
    if rule is None:
        return None
    kind = rule.kind
    if kind == "redirect":
        return web.Response(status=rule.status, headers={"Location": rule.location})
    if kind == "gzip_bomb":
        return _gzip_bomb(rule.size_mb)
    if kind == "deep_json":
        depth = 100_000
        body = '{"message": ' + "[" * depth + "]" * depth + "}"
        return web.Response(status=rule.status, text=body, content_type="application/json")
    if kind == "forget_assets":
        request.app[STATE_KEY].assets.clear()
        return None
    if kind == "echo_key":
        key = request.headers.get("API-KEY", "")
        return _error(rule.status, f"request from key {key} refused; key={key}")
    if kind == "latency":
        await asyncio.sleep(rule.delay_s)
        return None
    if kind == "hang":
        await asyncio.sleep(HANG_S)
    if kind == "reset":
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError  # aiohttp drops a handler that was cut off
    if kind == "html_502":
        return web.Response(status=502, text=GATEWAY_PAGE, content_type="text/html")
    if kind == "rate_limit":
        headers = {"Retry-After": rule.retry_after} if rule.retry_after is not None else {}
        return web.json_response({"message": "Too many requests"}, status=429, headers=headers)
    if kind == "credits":
        return _error(402, "Insufficient credits")
    if kind == "expired":
        return web.Response(status=403, text=EXPIRED_XML, content_type="application/xml")
    if kind == "status":
        return _error(rule.status, rule.message)
    return None  # truncated and record_failed are handled where the body is made


def _gzip_bomb(size_mb: int) -> web.Response:
    """A small gzip body that inflates to `size_mb` MB of JSON-looking zeros."""
    import gzip

    body = gzip.compress(b"[" + b"0," * (size_mb * 512 * 1024) + b"0]", compresslevel=9)
    return web.Response(
        body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )


def _key_problem(request: web.Request, state: SimulatorState) -> web.Response | None:
    key = request.headers.get("API-KEY", "").strip()
    if not key:
        return _error(401, "Missing API key")
    expected = state.config.api_key
    if expected is not None and not hmac.compare_digest(key, expected):
        return _error(401, "Invalid API key")
    return None


async def upload_asset(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    state.counters["uploads"] += 1
    problem = _key_problem(request, state) or await _apply_fault(
        request, state.take_fault("assets")
    )
    if problem is not None:
        return problem
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        return _error(413, "File too large (max 50 MB)")
    field = form.get("asset")
    if not isinstance(field, web.FileField):
        return _error(400, "Expected a file field named 'asset'")
    data = field.file.read()
    if not data.startswith(IMAGE_MAGIC):
        return _error(400, "The uploaded file is not an image")
    digest = hashlib.sha256(data).hexdigest()
    stamp = datetime.now(UTC).strftime("%Y_%m_%d_%H_%M_%S_%f")[:-3]
    extension = (field.filename or "upload.jpg").rsplit(".", 1)[-1].lower()
    path = f"{ASSET_PREFIX}{stamp}_{digest[:8]}.{extension}"
    state.register_asset(path, data)
    answer: dict[str, Any] = {"asset": {"key": path, "size": len(data)}}
    if not state.config.omit_file_content:
        answer["fileContent"] = {"path": path, "size": len(data)}
    return web.json_response(answer)


def _validate(body: Any, state: SimulatorState) -> tuple[dict[str, Any] | None, str]:
    """The promptObject as the server takes it (defaults filled), or an error message."""
    if not isinstance(body, dict):
        return None, "Body must be a JSON object"
    if body.get("type") != FEATURE_TYPE:
        return None, f"type must be {FEATURE_TYPE}"
    if body.get("model") != MODEL:
        return None, f"model must be {MODEL}"
    prompt = body.get("promptObject")
    if not isinstance(prompt, dict):
        return None, "promptObject must be an object"
    unknown = sorted(set(prompt) - {IMAGE_FIELD, *PARAMS})
    if unknown:
        return None, f"promptObject.{unknown[0]} is not an allowed field"
    if prompt.get(IMAGE_FIELD) not in state.assets:
        return None, "imageUrl not found: upload it with /api/assets first"
    taken: dict[str, Any] = {IMAGE_FIELD: prompt[IMAGE_FIELD]}
    for name, param in PARAMS.items():
        if name not in prompt:
            if param.default is None:
                return None, f"promptObject.{name} is required"
            taken[name] = param.default
            continue
        problem = _type_problem(prompt[name], param.kind)
        if problem is None:
            try:
                taken[name] = param.check(prompt[name])
            except ValueError as error:
                problem = str(error)
        if problem is not None:
            return None, f"promptObject.{name} {problem}"
    return taken, ""


def _type_problem(value: Any, kind: type) -> str | None:
    """The strict JSON type check the real API does (no numbers for strings, no bools)."""
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[kind]
    if ok:
        return None
    return f"must be a JSON {kind.__name__.replace('float', 'number')} (got {value!r})"


def _rate_limited(state: SimulatorState) -> bool:
    limit = state.config.rpm_limit
    now = state.config.clock()
    state.feature_arrivals.append(now)
    if limit is None:
        return False
    while state.window and state.window[0] <= now - WINDOW_S:
        state.window.popleft()
    if len(state.window) >= limit:
        return True
    state.window.append(now)
    return False


async def run_feature(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    state.counters["features"] += 1
    problem = _key_problem(request, state)
    if problem is not None:
        return problem
    if _rate_limited(state):
        state.counters["rate_limited"] += 1
        return _too_many_requests(state)
    limit = state.config.max_concurrent
    if limit is not None and state.features_in_progress >= limit:
        state.counters["concurrency_limited"] += 1
        return _too_many_requests(state)
    state.features_in_progress += 1
    try:
        return await _answer_feature(request, state)
    finally:
        state.features_in_progress -= 1


def _too_many_requests(state: SimulatorState) -> web.Response:
    retry = state.config.rate_limit_retry_after_s
    headers = {"Retry-After": f"{retry:g}"} if retry is not None else {}
    return web.json_response({"message": "Too many requests"}, status=429, headers=headers)


async def _answer_feature(request: web.Request, state: SimulatorState) -> web.StreamResponse:
    rule = state.take_fault("features")
    faulty = await _apply_fault(request, rule)
    if faulty is not None:
        return faulty
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "Body is not valid JSON")
    taken, message = _validate(body, state)
    if taken is None:
        state.counters["invalid"] += 1
        return _error(400, message)
    if state.config.latency_s:
        await asyncio.sleep(state.config.latency_s)
    if rule is not None and rule.kind == "record_failed":
        return web.json_response(_record(taken, [], [], status="FAILED", error=rule.message))
    outputs = taken["num_outputs"]
    charge = outputs * state.config.credits_per_image
    limit = state.config.credit_limit
    if limit is not None and state.credits_used + charge > limit:
        return _error(402, "Insufficient credits")
    state.credits_used += charge
    state.counters["billed"] += 1
    state.counters["billed_images"] += outputs
    paths = await _produce(request, state, taken)
    state.counters["succeeded"] += 1
    if rule is not None and rule.kind == "billed_drop":
        state.counters["billed_unanswered"] += 1
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError  # billed, and no answer ever leaves
    urls = [_presigned(request, state, path) for path in paths]
    if rule is not None and rule.kind == "extra_results":
        paths, urls = _with_extra(request, state, taken, paths, urls, rule.extra)
    if rule is not None and rule.kind == "missing_url":
        urls = urls[:-1]
    record = _record(taken, paths, urls, used=state.credits_used)
    if state.config.single_strings and len(paths) == 1:
        ai = record["aiRecord"]
        ai["temporaryUrl"] = urls[0]
        ai["aiRecordDetail"]["resultObject"] = paths[0]
    return web.json_response(record)


def _presigned(request: web.Request, state: SimulatorState, path: str) -> str:
    """A storage URL shaped like S3's presigned ones: signed, dated, with a lifetime."""
    signed = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    lifetime = state.config.link_lifetime_s
    return (
        f"{_base(request)}/storage/{path}?X-Amz-Date={signed}&X-Amz-Expires={lifetime}"
        f"&X-Amz-Signature={_signature(path)}"
    )


def _with_extra(
    request: web.Request,
    state: SimulatorState,
    taken: dict[str, Any],
    paths: list[str],
    urls: list[str],
    extra: int,
) -> tuple[list[str], list[str]]:
    """The answer lists `extra` more images (copies of the first) than were asked for."""
    more = [f"{paths[0]}.extra{i}" for i in range(extra)]
    for path in more:
        state.produced[path] = state.produced[paths[0]]
    return paths + more, urls + [_presigned(request, state, path) for path in more]


async def _produce(request: web.Request, state: SimulatorState, taken: dict) -> list[str]:
    record_uuid = str(uuid.uuid4())
    input_data = state.assets[taken[IMAGE_FIELD]]
    params = {name: taken[name] for name in PARAMS}
    loop = asyncio.get_running_loop()
    paths = []
    for index in range(taken["num_outputs"]):
        data = await loop.run_in_executor(
            None, render, input_data, params, index, state.config.tiny_images
        )
        stamp = datetime.now(UTC).strftime("%Y_%m_%d_%H_%M_%S_%f")[:-3]
        path = f"{ASSET_PREFIX}{stamp}_{record_uuid[:8]}_{index}.{EXTENSIONS[params['format']]}"
        width, height = read_size(data)
        state.produced[path] = ProducedImage(
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            params=params,
            input_sha256=state.asset_sha256(taken[IMAGE_FIELD]),
            output_index=index,
            record_uuid=record_uuid,
            width=width,
            height=height,
            format=params["format"],
        )
        paths.append(path)
    return paths


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _record(
    taken: dict[str, Any],
    paths: list[str],
    urls: list[str],
    *,
    status: str = "SUCCESS",
    error: str = "",
    used: int = 0,
) -> dict[str, Any]:
    created = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "aiRecord": {
            "uuid": str(uuid.uuid4()),
            "model": MODEL,
            "type": FEATURE_TYPE,
            "status": status,
            "createdAt": created,
            "teamUser": {"usedCredit": used, "creditLimit": 100_000_000},
            "aiRecordDetail": {
                "promptObject": taken,
                "resultObject": paths,
                "responseObject": {"error": error} if error else {},
            },
            "temporaryUrl": urls,
        }
    }


async def download(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    state.counters["storage"] += 1
    if "API-KEY" in request.headers:
        state.counters["storage_requests_with_key"] += 1
    path = request.match_info["path"]
    image = state.produced.get(path)
    signature = request.query.get("X-Amz-Signature", "")
    if image is None or not hmac.compare_digest(signature, _signature(path)):
        return web.Response(status=403, text=EXPIRED_XML.replace("Request has expired", "Denied"))
    rule = state.take_fault("storage")
    faulty = await _apply_fault(request, rule)
    if faulty is not None:
        return faulty
    if rule is not None and rule.kind == "bomb_image":
        return web.Response(body=_pixel_bomb(), content_type="image/png")
    if rule is not None and rule.kind == "garbage":
        return web.Response(
            body=b"\x00not an image" * 100, content_type=CONTENT_TYPES[image.format]
        )
    data = await _image_bytes(state, image)
    if rule is not None and rule.kind == "truncated":
        return await _truncated(request, image, data)
    return web.Response(body=data, content_type=CONTENT_TYPES[image.format])


async def _image_bytes(state: SimulatorState, image: ProducedImage) -> bytes:
    """Render the image again: the same inputs always give the same bytes."""
    data = state.inputs[image.input_sha256]
    return await asyncio.get_running_loop().run_in_executor(
        None, render, data, image.params, image.output_index, state.config.tiny_images
    )


def _pixel_bomb() -> bytes:
    """A valid PNG header claiming 100,000 x 100,000 pixels: tiny on the wire."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 100_001 * 16)  # the first rows only
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


async def stats(request: web.Request) -> web.StreamResponse:
    """What the simulator counted, for a benchmark in another process (not part of the API)."""
    state = request.app[STATE_KEY]
    arrivals = state.feature_arrivals
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    return web.json_response(
        {
            "counters": dict(state.counters),
            "feature_arrivals": len(arrivals),
            "feature_span_s": span,
            "most_features_in_any_window": most_in_window(arrivals, WINDOW_S),
            "rpm_limit": state.config.rpm_limit,
            "max_concurrent": state.config.max_concurrent,
            "credits_used": state.credits_used,
        }
    )


def most_in_window(times: list[float], window_s: float) -> int:
    """The most of the (sorted) `times` that fall in any half-open window of `window_s`."""
    most, first = 0, 0
    for last, now in enumerate(times):
        while times[first] <= now - window_s:
            first += 1
        most = max(most, last - first + 1)
    return most


async def _truncated(request: web.Request, image: ProducedImage, data: bytes) -> web.StreamResponse:
    """Promise the whole image, send half of it, then drop the connection."""
    response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPES[image.format]})
    response.content_length = len(data)
    await response.prepare(request)
    await response.write(data[: len(data) // 2])
    if request.transport is not None:
        request.transport.abort()
    return response
