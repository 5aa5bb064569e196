"""Running the review app: on loopback only, with a fresh token, until stopped.

`run_review` serves for the duration of an `async with` block (tests use port 0
for an ephemeral port); `serve_review` is `sweeper review`: it announces the
URL, opens a browser if asked, and serves until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import signal
import webbrowser
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from sweeper.errors import SpecError
from sweeper.review.app import TOKEN_PARAM, allow_hosts, build_app
from sweeper.review.session import Mode, ReviewSession, ReviewSettings

HOST = "127.0.0.1"  # never a setting: the app must not be reachable from another machine


@dataclass(frozen=True)
class RunningReview:
    """A review server that is up: `url` (with the token) is what a browser opens."""

    base_url: str
    token: str
    session: ReviewSession

    @property
    def url(self) -> str:
        return f"{self.base_url}/?{TOKEN_PARAM}={self.token}"


@asynccontextmanager
async def run_review(
    settings: ReviewSettings, *, port: int = 0, rng: random.Random | None = None
) -> AsyncIterator[RunningReview]:
    """Serve a review of settings.run_dir on 127.0.0.1:port for the duration of the block."""
    session = await asyncio.to_thread(ReviewSession, settings, rng)
    token = secrets.token_urlsafe(32)
    app = build_app(session, token)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, HOST, port).start()
    except OSError as error:
        await runner.cleanup()
        raise SpecError(f"--port {port}: cannot listen on {HOST} ({error.strerror})") from None
    bound_port = runner.addresses[0][1]
    allow_hosts(app, bound_port)
    try:
        yield RunningReview(f"http://{HOST}:{bound_port}", token, session)
    finally:
        await runner.cleanup()


async def serve_review(
    run_dir: Path | str,
    mode: Mode = "pairs",
    axis: str | None = None,
    rater: str | None = None,
    port: int = 0,
    blind: bool = False,
    open_browser: bool = True,
    *,
    announce: Callable[[str], None] | None = None,
) -> None:
    """`sweeper review`: serve until Ctrl-C or SIGTERM; `announce` gets the URL to open.

    The URL carries the session's secret token, so it is handed to `announce`
    (the CLI prints it) rather than logged.
    """
    settings = ReviewSettings(Path(run_dir), mode, axis, rater, blind)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with run_review(settings, port=port) as review:
            if announce is not None:
                announce(review.url)
            if open_browser:
                await asyncio.to_thread(webbrowser.open, review.url)
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
