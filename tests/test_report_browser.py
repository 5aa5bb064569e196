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
import io
import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pandas as pd
import pytest
from click.testing import CliRunner
from devtools import CHROMIUM, NO_CHROMIUM, Tab, chromium, open_tab
from PIL import Image
from study_run import PROMPTS, run_study

from sweeper.cli import main

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
VIEWPORT = (1280, 1600)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = run_study(tmp_path_factory.mktemp("study"))
    result = CliRunner().invoke(main, ["report", str(run_dir), "--thumb", "128"])
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture(scope="module")
def devtools_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with chromium(tmp_path_factory.mktemp("chromium")) as port:
        yield port


async def open_report(port: int, run_dir: Path, session: aiohttp.ClientSession) -> Tab:
    url = (run_dir / "report" / "index.html").as_uri()
    return await open_tab(port, url, session, viewport=VIEWPORT)


VISIBLE_CARDS = "[...document.querySelectorAll('.card')].filter(c => c.offsetParent).length"


def choose(param: str, value: str) -> str:
    """JavaScript that picks `value` in a filter the way a user does, then reports the counts."""
    return f"""(() => {{
      const select = document.querySelector('select[data-axis="{param}"]');
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
    sources = {i["src"] for i in images}
    for made in [*(study / "report").glob("sheet-*.png"), *(study / "report").glob("plots/*")]:
        assert made.relative_to(study / "report").as_posix() in sources, made
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


async def test_the_compare_view_shows_two_values_side_by_side_matched_on_the_rest(
    study, devtools_port
):
    frame = pd.read_parquet(study / "manifest.parquet")
    done = frame[frame["status"] == "succeeded"]
    low, high = sorted(done["guidance"].unique())[:2]
    others = ["prompt", "seed"]
    expected = len(
        done[done["guidance"] == low][others].merge(done[done["guidance"] == high][others])
    )
    pick = """(() => {
      const set = (id, value) => { const s = document.getElementById(id); s.value = value;
        if (s.value !== value) throw new Error('no option ' + value);
        s.dispatchEvent(new Event('change')); };
      set('compare-axis', 'guidance'); set('compare-a', 'LOW'); set('compare-b', 'HIGH');
      const pairs = [...document.querySelectorAll('#compare-pairs .pair')];
      return {count: Number(document.getElementById('compare-count').textContent),
              pairs: pairs.length,
              captions: pairs.map(p => [...p.querySelectorAll('figcaption')]
                                        .map(c => c.textContent.split('\\n')[0]))};
    })()""".replace("LOW", str(low)).replace("HIGH", str(high))
    async with aiohttp.ClientSession() as session:
        tab = await open_report(devtools_port, study, session)
        shown = await tab.evaluate(pick)
        loaded = await tab.wait_until(
            "[...document.querySelectorAll('#compare-pairs img')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        plots = await tab.evaluate(
            "[...document.querySelectorAll('img.plot')].map(i => i.complete && i.naturalWidth > 0)"
        )
    assert shown["count"] == shown["pairs"] == expected > 0
    assert loaded
    assert all(c == [f"guidance = {low}", f"guidance = {high}"] for c in shown["captions"])
    assert plots and all(plots)  # every plot decoded in the browser


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
