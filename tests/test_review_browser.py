"""The review app in a real browser: headless Chromium votes with the keyboard.

Skipped only where no Chromium is installed (Debian: apt-get install chromium;
.ci/run does it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from devtools import CHROMIUM, NO_CHROMIUM, chromium, open_tab
from vote_study import make_vote_run

from sweeper.review import ReviewSettings, run_review
from sweeper.votes import list_votes

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
READY = "document.body?.dataset.state === 'ready'"


def voted(count: int) -> str:
    return f"{READY} && document.body.dataset.votes === '{count}'"


@pytest.fixture(scope="module")
def devtools_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with chromium(tmp_path_factory.mktemp("chromium")) as port:
        yield port


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_vote_run(tmp_path)


async def test_pairs_voted_with_the_keyboard_are_in_the_journal(run_dir, devtools_port):
    settings = ReviewSettings(run_dir, mode="pairs", axis="guidance", rater="keyboard")
    async with run_review(settings) as review, aiohttp.ClientSession() as http:
        tab = await open_tab(devtools_port, review.url, http)
        await tab.wait_until(READY)
        images = await tab.evaluate(
            "[...document.querySelectorAll('#stage img')].map(i => i.naturalWidth)"
        )
        assert len(images) == 2 and all(width > 0 for width in images)
        assert await tab.evaluate("document.getElementById('reveal').textContent") == ""

        await tab.press("ArrowLeft")
        await tab.wait_until(voted(1))
        reveal = await tab.evaluate("document.getElementById('reveal').textContent")
        assert reveal.startswith("Last pair: guidance ") and "you chose left" in reveal
        await tab.press("ArrowDown")
        await tab.wait_until(voted(2))
        await tab.press(" ")
        await tab.wait_until("document.getElementById('reveal').textContent === 'Skipped.'")
        await tab.wait_until(READY)
        await tab.press("ArrowRight")
        await tab.wait_until(voted(3))
        await tab.press("z")
        await tab.wait_until(voted(2))
        await tab.press("ArrowRight")
        await tab.wait_until(voted(3))
        fetched = [e["request"]["url"] for e in tab.seen("Network.requestWillBeSent")]

    votes = list_votes(run_dir)
    assert votes["choice"].tolist() == ["win", "tie", "win"]
    assert set(votes["rater"]) == {"keyboard"}
    assert all(url.startswith(review.base_url) for url in fetched), fetched
    assert not tab.seen("Runtime.exceptionThrown")


async def test_stars_given_with_the_keyboard_are_in_the_journal(run_dir, devtools_port):
    settings = ReviewSettings(run_dir, mode="stars", rater="keyboard")
    async with run_review(settings) as review, aiohttp.ClientSession() as http:
        tab = await open_tab(devtools_port, review.url, http)
        await tab.wait_until(READY)
        shown = await tab.evaluate("document.getElementById('parameters').textContent")
        assert "seed" in shown and "guidance" in shown
        await tab.press("f")
        await tab.wait_until(voted(1))
        await tab.press("4")
        await tab.wait_until(voted(2))
        await tab.press("2")
        await tab.wait_until(voted(3))
        progress = await tab.evaluate("document.getElementById('progress').textContent")
    votes = list_votes(run_dir)
    assert votes["choice"].tolist() == ["favourite", "4", "2"]
    assert votes.loc[0, "file"] == votes.loc[1, "file"] != votes.loc[2, "file"]
    assert progress == "2 of 9 images rated by you"
    assert not tab.seen("Runtime.exceptionThrown")
