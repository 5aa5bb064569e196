"""The report page in a real browser: headless Chromium opens report/index.html from disk.

Chromium is driven over its DevTools protocol with aiohttp's websocket client (no
extra dependency): it listens on a port it picks itself (--remote-debugging-port=0)
and writes that port to DevToolsActivePort in its fresh profile directory. The
tests ask the live DOM whether every image decoded and whether the filters change
what is shown, watch that the page fetches nothing but local files, and keep a
screenshot. Skipped only where no Chromium is installed (Debian: apt-get install
chromium; .ci/run does it).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from study_run import PROMPTS, run_study

from sweeper.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary on PATH (Debian package `chromium`; .ci/run installs it)",
)
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-port=0",
)  # fmt: skip
VIEWPORT = (1280, 1600)
START_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = run_study(tmp_path_factory.mktemp("study"))
    result = CliRunner().invoke(main, ["report", str(run_dir), "--thumb", "128"])
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture(scope="module")
def devtools_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A headless Chromium with a fresh profile; yields the port of its DevTools endpoint."""
    folder = tmp_path_factory.mktemp("chromium")
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
        while not any(e.get("method") == event for e in self.events):
            self.events.append(await self._socket.receive_json(timeout=20))
        return next(e for e in self.events if e.get("method") == event)

    async def evaluate(self, expression: str) -> Any:
        answer = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in answer, answer["exceptionDetails"]
        return answer["result"].get("value")

    async def open(self, url: str) -> None:
        for domain in ("Page", "Runtime", "Network"):
            await self.call(f"{domain}.enable")
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=VIEWPORT[0],
            height=VIEWPORT[1],
            deviceScaleFactor=1,
            mobile=False,
        )
        await self.call("Page.navigate", url=url)
        await self.wait_for("Page.loadEventFired")

    def seen(self, event: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self.events if e.get("method") == event]


async def open_report(port: int, run_dir: Path, session: aiohttp.ClientSession) -> Tab:
    async with session.get(f"http://127.0.0.1:{port}/json/list") as answer:
        targets = await answer.json()
    [page] = [t for t in targets if t["type"] == "page"][:1]
    socket = await session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
    tab = Tab(socket)
    await tab.open((run_dir / "report" / "index.html").as_uri())
    return tab


VISIBLE_CARDS = "[...document.querySelectorAll('.card')].filter(c => c.offsetParent).length"


def choose(param: str, value: str) -> str:
    """JavaScript that picks `value` in a filter the way a user does, then reports the counts."""
    return f"""(() => {{
      const select = document.querySelector('select[data-param="{param}"]');
      select.value = {json.dumps(value)};
      if (select.value !== {json.dumps(value)}) throw new Error('no option ' + {json.dumps(value)});
      select.dispatchEvent(new Event('change'));
      return [{VISIBLE_CARDS}, Number(document.getElementById('shown-count').textContent)];
    }})()"""


async def test_every_image_loads_from_disk_and_nothing_else_is_fetched(study, devtools_port):
    async with aiohttp.ClientSession() as session:
        tab = await open_report(devtools_port, study, session)
        images = await tab.evaluate(
            "[...document.images].map(i => ({src: i.getAttribute('src'), complete: i.complete,"
            " width: i.naturalWidth, card: !!i.closest('.card')}))"
        )
    frame = pd.read_parquet(study / "manifest.parquet")
    in_cards = [i for i in images if i["card"]]
    assert len(in_cards) == (frame["status"] == "succeeded").sum()
    assert len(images) - len(in_cards) == len(list((study / "report").glob("sheet-*.png")))
    for image in images:
        assert image["complete"] and image["width"] > 0, image["src"]
    fetched = [e["request"]["url"] for e in tab.seen("Network.requestWillBeSent")]
    assert fetched and all(url.startswith("file://") for url in fetched), fetched
    assert not tab.seen("Runtime.exceptionThrown")


async def test_the_filters_change_what_is_shown(study, devtools_port):
    frame = pd.read_parquet(study / "manifest.parquet")
    neon = next(p for p in PROMPTS if "<b>" in p)
    async with aiohttp.ClientSession() as session:
        tab = await open_report(devtools_port, study, session)
        everything = await tab.evaluate(f"[{VISIBLE_CARDS}, document.title]")
        by_seed = await tab.evaluate(choose("seed", "1"))
        by_both = await tab.evaluate(choose("prompt", neon))
        by_prompt = await tab.evaluate(choose("seed", "*"))
    assert everything == [len(frame), "sweeper report"]
    assert by_seed == [(frame["seed"] == 1).sum()] * 2
    both = (frame["seed"] == 1) & (frame["prompt"] == neon)
    assert by_both == [both.sum()] * 2
    assert by_prompt == [(frame["prompt"] == neon).sum()] * 2
    assert len(frame) > by_prompt[0] > by_both[0] > 0


async def test_a_screenshot_of_the_page_is_not_blank(study, devtools_port, tmp_path):
    async with aiohttp.ClientSession() as session:
        tab = await open_report(devtools_port, study, session)
        shot = await tab.call("Page.captureScreenshot", format="png")
    data = base64.b64decode(shot["data"])
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "report.png").write_bytes(data)
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == VIEWPORT
        colours = image.convert("RGB").getcolors(maxcolors=1 << 24)
    # Text, tables and photographs: far more than a blank or error page's few colours.
    assert len(colours) > 1000
    assert max(count for count, _ in colours) < 0.9 * VIEWPORT[0] * VIEWPORT[1]
