"""The review web app: routes, and the guard that lets only its own page in.

Every request must carry the session token (query `token=` or header
`X-Review-Token`), images included, and name this server as its Host (so a
DNS-rebinding page cannot reach it by another name). A POST must also be JSON
from this origin: a foreign `Origin` or a `Sec-Fetch-Site` other than
same-origin is refused, so another page open in the same browser can neither
vote nor read. Refusals are 403 with a one-line reason.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web

from sweeper.errors import SpecError
from sweeper.review.session import ReviewSession

TOKEN_PARAM = "token"
TOKEN_HEADER = "X-Review-Token"
SESSION: web.AppKey[ReviewSession] = web.AppKey("session", ReviewSession)
TOKEN: web.AppKey[str] = web.AppKey("token", str)
HOSTS: web.AppKey[set[str]] = web.AppKey("hosts", set)
LOCK: web.AppKey[asyncio.Lock] = web.AppKey("lock", asyncio.Lock)
SAFE_METHODS = ("GET", "HEAD")
IMAGE_TYPES = {
    ".webp": "image/webp", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
}  # fmt: skip
MAX_BODY_BYTES = 4096
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(session: ReviewSession, token: str) -> web.Application:
    """The app; the caller adds the hosts it answers to (`HOSTS`) once the port is bound."""
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY_BYTES)
    app[SESSION] = session
    app[TOKEN] = token
    app[HOSTS] = set()
    app[LOCK] = asyncio.Lock()
    app.add_routes(
        [
            web.get("/", page),
            web.get("/review.js", static_file),
            web.get("/review.css", static_file),
            web.get("/image/{image_id}", image),
            web.get("/api/next", next_item),
            web.post("/api/vote", vote),
            web.post("/api/skip", skip),
            web.post("/api/undo", undo),
        ]
    )
    return app


def allow_hosts(app: web.Application, port: int) -> None:
    app[HOSTS].update({f"127.0.0.1:{port}", f"localhost:{port}"})


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    reason = refusal(request)
    if reason is not None:
        return _with_headers(web.Response(status=403, text=f"403 Forbidden: {reason}\n"))
    try:
        response = await handler(request)
    except SpecError as error:
        response = web.json_response({"error": str(error)}, status=400)
    return _with_headers(response)


def refusal(request: web.Request) -> str | None:
    """Why this request is refused, or None to let it through."""
    app = request.app
    if request.host not in app[HOSTS]:
        return "unknown Host"
    given = request.query.get(TOKEN_PARAM) or request.headers.get(TOKEN_HEADER) or ""
    if not hmac.compare_digest(given.encode(), app[TOKEN].encode()):
        return "missing or wrong token"
    if request.method in SAFE_METHODS:
        return None
    origin = request.headers.get("Origin")
    if origin is not None and origin.removeprefix("http://") not in app[HOSTS]:
        return "cross-origin request"
    if request.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
        return "cross-site request"
    if request.content_type != "application/json":
        return "a vote must be JSON"
    return None


def _with_headers(response: web.StreamResponse) -> web.StreamResponse:
    response.headers.update(SECURITY_HEADERS)
    return response


async def page(request: web.Request) -> web.Response:
    html = _static_text("review.html").replace("__TOKEN__", request.app[TOKEN])
    return web.Response(text=html, content_type="text/html")


async def static_file(request: web.Request) -> web.Response:
    name = request.path.lstrip("/")
    kind = "text/javascript" if name.endswith(".js") else "text/css"
    return web.Response(text=_static_text(name), content_type=kind)


async def image(request: web.Request) -> web.StreamResponse:
    path = request.app[SESSION].image_path(request.match_info["image_id"])
    if path is None or not path.is_file():
        raise web.HTTPNotFound(text="no such image\n")
    response = web.FileResponse(path)
    # Set here: Python 3.11's mimetypes does not know webp.
    response.content_type = IMAGE_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return response


async def next_item(request: web.Request) -> web.Response:
    return await _call(request, lambda session, _: session.next_item())


async def vote(request: web.Request) -> web.Response:
    return await _call(request, lambda session, body: session.vote(body))


async def skip(request: web.Request) -> web.Response:
    return await _call(request, lambda session, body: session.skip(body))


async def undo(request: web.Request) -> web.Response:
    return await _call(request, lambda session, _: session.undo())


async def _call(
    request: web.Request, action: Callable[[ReviewSession, dict[str, Any]], dict[str, Any]]
) -> web.Response:
    """Run a session method off the event loop (SQLite may wait on a busy journal), one by one."""
    body = await _json_body(request) if request.method == "POST" else {}
    async with request.app[LOCK]:
        answer = await asyncio.to_thread(action, request.app[SESSION], body)
    return web.json_response(answer)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SpecError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise SpecError("the request body must be a JSON object")
    return body


def _static_text(name: str) -> str:
    return resources.files("sweeper.review").joinpath("static", name).read_text(encoding="utf-8")
