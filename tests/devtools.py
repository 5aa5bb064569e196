"""Headless Chromium over its DevTools protocol, with aiohttp's websocket client only.

Chromium picks its own DevTools port (--remote-debugging-port=0) and writes it
to DevToolsActivePort in a fresh profile. `chromium` starts one browser;
`open_tab` drives its page. The report's and the review app's browser tests
both use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "no chromium binary on PATH (Debian package `chromium`; .ci/run installs it)"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-port=0",
)  # fmt: skip
START_TIMEOUT_S = 30
# What Input.dispatchKeyEvent needs to make a real keydown of each key.
KEYS = {
    "ArrowLeft": ("ArrowLeft", 37), "ArrowRight": ("ArrowRight", 39),
    "ArrowDown": ("ArrowDown", 40), " ": ("Space", 32), "z": ("KeyZ", 90), "f": ("KeyF", 70),
    **{str(n): (f"Digit{n}", 48 + n) for n in range(10)},
}  # fmt: skip


@contextlib.contextmanager
def chromium(folder: Path) -> Iterator[int]:
    """A headless Chromium with a fresh profile; yields the port of its DevTools endpoint."""
    assert CHROMIUM is not None
    profile = folder / "profile"
    with (folder / "chromium.log").open("wb") as log:
        browser = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own process group, so its helpers go with it
        )
    try:
        yield _read_port(profile / "DevToolsActivePort", browser, folder / "chromium.log")
    finally:
        _stop(browser)


def _read_port(port_file: Path, browser: subprocess.Popen, log: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if browser.poll() is not None:
            pytest.fail(f"chromium exited with {browser.returncode}:\n{log.read_text()[-2000:]}")
        lines = port_file.read_text().splitlines() if port_file.is_file() else []
        if lines and lines[0].isdigit():
            return int(lines[0])
        time.sleep(0.05)
    pytest.fail(f"chromium did not open its DevTools port:\n{log.read_text()[-2000:]}")


def _stop(browser: subprocess.Popen) -> None:
    """SIGTERM the browser's process group; once the browser is gone, SIGKILL any helper left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(browser.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            browser.wait(timeout=10)


class Tab:
    """One page over the DevTools protocol: commands in order, events kept as they come."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._last_id = 0
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._last_id += 1
        await self._socket.send_json({"id": self._last_id, "method": method, "params": params})
        while True:
            message = await self._socket.receive_json(timeout=20)
            if message.get("id") == self._last_id:
                assert "error" not in message, f"{method}: {message['error']}"
                return message["result"]
            self.events.append(message)

    async def wait_for(self, event: str) -> dict[str, Any]:
        """Wait until the page has sent `event` (kept with the others)."""
        while not any(e.get("method") == event for e in self.events):
            self.events.append(await self._socket.receive_json(timeout=20))
        return next(e for e in self.events if e.get("method") == event)

    async def evaluate(self, expression: str) -> Any:
        answer = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in answer, answer["exceptionDetails"]
        return answer["result"].get("value")

    async def wait_until(self, expression: str, timeout_s: float = 20) -> Any:
        """Poll a JavaScript expression until it is truthy; return its value."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError(f"still false after {timeout_s} s: {expression}")

    async def press(self, key: str) -> None:
        """A real key press, as the keyboard makes it: keydown then keyup."""
        code, key_code = KEYS[key]
        for kind in ("rawKeyDown", "keyUp"):
            await self.call(
                "Input.dispatchKeyEvent",
                type=kind,
                key=key,
                code=code,
                windowsVirtualKeyCode=key_code,
                nativeVirtualKeyCode=key_code,
            )

    def seen(self, event: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self.events if e.get("method") == event]


async def open_tab(
    port: int,
    url: str,
    session: aiohttp.ClientSession,
    *,
    viewport: tuple[int, int] | None = None,
) -> Tab:
    """Open `url` in the browser's page; with `viewport`, that size, waiting for the load."""
    async with session.get(f"http://127.0.0.1:{port}/json/list") as answer:
        targets = await answer.json()
    [page] = [t for t in targets if t["type"] == "page"][:1]
    socket = await session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
    tab = Tab(socket)
    for domain in ("Page", "Runtime", "Network", "Log"):
        await tab.call(f"{domain}.enable")
    if viewport is not None:
        width, height = viewport
        await tab.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
    await tab.call("Page.navigate", url=url)
    if viewport is not None:
        await tab.wait_for("Page.loadEventFired")
    return tab
