"""The review app over real HTTP on loopback: the token and origin guard, blind pairs, stars.

The app runs in the test's event loop (`run_review`, an ephemeral port) except
in the kill test, which runs `python -m sweeper review` as a process and kills
it with SIGKILL mid-review.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pandas as pd
import pytest
from vote_study import files_by_cell, make_vote_run

from sweeper.errors import SpecError
from sweeper.review import ReviewSettings, RunningReview, run_review
from sweeper.review.pairing import PairChooser, candidate_pairs, succeeded_images
from sweeper.votes import list_votes, record_preference

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_vote_run(tmp_path)


@asynccontextmanager
async def reviewing(run_dir: Path, **settings: Any) -> AsyncIterator[tuple[RunningReview, Client]]:
    settings.setdefault("rater", "ana")
    async with (
        run_review(ReviewSettings(run_dir, **settings), rng=random.Random(7)) as review,
        aiohttp.ClientSession() as http,
    ):
        yield review, Client(review, http)


class Client:
    """The page's side of the protocol: every request with the token, POSTs as JSON."""

    def __init__(self, review: RunningReview, http: aiohttp.ClientSession) -> None:
        self.review = review
        self.http = http
        self.token = {"X-Review-Token": review.token}

    async def get(self, path: str) -> Any:
        async with self.http.get(self.review.base_url + path, headers=self.token) as answer:
            assert answer.status == 200, await answer.text()
            return await answer.json()

    async def post(self, path: str, body: dict[str, Any], status: int = 200) -> Any:
        url = self.review.base_url + path
        async with self.http.post(url, json=body, headers=self.token) as answer:
            assert answer.status == status, await answer.text()
            return await answer.json()


async def status_of(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, str]:
    async with http.request(method, url, **kwargs) as answer:
        return answer.status, (await answer.read()).decode(errors="replace")


# ---- security


async def test_every_request_without_the_token_is_refused(run_dir):
    async with reviewing(run_dir) as (review, client):
        item = await client.get("/api/next")
        base, token = review.base_url, review.token
        paths = ["/", "/review.js", "/review.css", item["left"], "/api/next"]
        for path in paths:
            assert (await status_of(client.http, "GET", base + path))[0] == 403, path
            wrong = f"{base}{path}?token={token[:-2]}xx"
            assert (await status_of(client.http, "GET", wrong))[0] == 403, path
            assert (await status_of(client.http, "GET", f"{base}{path}?token={token}"))[0] == 200
        vote = {"pair": item["pair"], "choice": "left"}
        status, text = await status_of(client.http, "POST", base + "/api/vote", json=vote)
        assert (status, text) == (403, "403 Forbidden: missing or wrong token\n")
        assert (await status_of(client.http, "POST", base + "/api/undo", json={}))[0] == 403
        assert list_votes(run_dir).empty
        async with client.http.get(f"{base}{item['left']}?token={token}") as image:
            assert image.content_type == "image/webp"
            assert (await image.read())[8:12] == b"WEBP"


async def test_a_vote_from_another_origin_is_refused(run_dir):
    async with reviewing(run_dir) as (review, client):
        item = await client.get("/api/next")
        url = review.base_url + "/api/vote"
        vote = {"pair": item["pair"], "choice": "left"}
        foreign = [
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
            {"Origin": "http://127.0.0.1:1"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site"},
            {"Origin": review.base_url, "Sec-Fetch-Site": "cross-site"},
        ]
        for headers in foreign:
            status, text = await status_of(
                client.http, "POST", url, json=vote, headers={**client.token, **headers}
            )
            assert status == 403 and "cross-" in text, headers
        # A plain HTML form can post text/plain without a preflight: refused too.
        form = {**client.token, "Content-Type": "text/plain"}
        status, _ = await status_of(client.http, "POST", url, data=json.dumps(vote), headers=form)
        assert status == 403
        assert list_votes(run_dir).empty
        # The page's own request goes through.
        own = {**client.token, "Origin": review.base_url, "Sec-Fetch-Site": "same-origin"}
        status, _ = await status_of(client.http, "POST", url, json=vote, headers=own)
        assert status == 200
        assert len(list_votes(run_dir)) == 1


async def test_a_request_under_another_host_name_is_refused(run_dir):
    # A DNS-rebinding page reaches 127.0.0.1 under its own name; the Host header gives it away.
    async with reviewing(run_dir) as (review, client):
        port = review.base_url.rsplit(":", 1)[1]
        for host in (f"evil.example:{port}", "127.0.0.1", f"127.0.0.2:{port}"):
            headers = {**client.token, "Host": host}
            status, text = await status_of(
                client.http, "GET", review.base_url + "/api/next", headers=headers
            )
            assert (status, text) == (403, "403 Forbidden: unknown Host\n"), host
        localhost = {**client.token, "Host": f"localhost:{port}"}
        status, _ = await status_of(
            client.http, "GET", review.base_url + "/api/next", headers=localhost
        )
        assert status == 200


async def test_the_server_listens_on_loopback_only(run_dir):
    async with reviewing(run_dir) as (review, _):
        assert review.base_url.startswith("http://127.0.0.1:")
        port = int(review.base_url.rsplit(":", 1)[1])
        outside = _non_loopback_address()
        if outside is not None:
            with pytest.raises(OSError), socket.create_connection((outside, port), timeout=2):
                pass


def _non_loopback_address() -> str | None:
    """This machine's address on its default route, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


async def test_the_page_and_answers_carry_a_strict_content_policy(run_dir):
    async with reviewing(run_dir) as (review, client):
        async with client.http.get(review.url) as page:
            html = await page.text()
            headers = page.headers
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cache-Control"] == "no-store"
        assert f"/review.js?token={review.token}" in html
        async with client.http.get(review.base_url) as refused:
            assert "Content-Security-Policy" in refused.headers
            assert review.token not in await refused.text()


# ---- pairs


async def test_a_pair_is_blind_until_the_vote_and_differs_in_one_parameter(run_dir):
    frame = pd.read_parquet(run_dir / "manifest.parquet")
    async with reviewing(run_dir) as (_, client):
        for _ in range(6):
            item = await client.get("/api/next")
            shown = json.dumps(item)
            for secret in ("images/", ".webp", "guidance", "seed", *frame["job_id"]):
                assert secret not in shown
            answer = await client.post("/api/vote", {"pair": item["pair"], "choice": "left"})
            left, right = answer["reveal"]["left"], answer["reveal"]["right"]
            assert [k for k in left if left[k] != right[k]] == [answer["reveal"]["axis"]]
            assert isinstance(left["seed"], int)
            vote = list_votes(run_dir).iloc[-1]
            winner = frame.set_index("file").loc[vote["file"]]
            assert (vote["rater"], vote["choice"]) == ("ana", "win")
            assert {"seed": winner["seed"], "guidance": winner["guidance"]} == left
        # A pair is answered once: voting again on it is refused.
        again = await client.post(
            "/api/vote", {"pair": item["pair"], "choice": "right"}, status=400
        )
        assert "unknown pair" in again["error"]


async def test_right_and_tie_record_the_right_winner(run_dir):
    async with reviewing(run_dir, axis="guidance") as (_, client):
        item = await client.get("/api/next")
        right = await client.post("/api/vote", {"pair": item["pair"], "choice": "right"})
        item = await client.get("/api/next")
        tie = await client.post("/api/vote", {"pair": item["pair"], "choice": "tie"})
        bad = await client.get("/api/next")
        refused = await client.post("/api/vote", {"pair": bad["pair"], "choice": "up"}, 400)
    assert "choice must be one of left, right, tie" in refused["error"]
    frame = pd.read_parquet(run_dir / "manifest.parquet").set_index("file")
    votes = list_votes(run_dir)
    assert votes["choice"].tolist() == ["win", "tie"]
    winner = frame.loc[votes.loc[0, "file"], "guidance"]
    assert winner == right["reveal"]["right"]["guidance"]
    assert {frame.loc[votes.loc[1, f], "guidance"] for f in ("file", "other_file")} == {
        tie["reveal"]["left"]["guidance"],
        tie["reveal"]["right"]["guidance"],
    }


async def test_sides_are_random(run_dir):
    async with reviewing(run_dir, axis="guidance") as (_, client):
        lower_on_left = []
        for _ in range(12):
            item = await client.get("/api/next")
            reveal = (await client.post("/api/vote", {"pair": item["pair"], "choice": "tie"}))[
                "reveal"
            ]
            lower_on_left.append(reveal["left"]["guidance"] < reveal["right"]["guidance"])
    assert 0 < sum(lower_on_left) < len(lower_on_left)


async def test_skip_moves_on_and_undo_shows_the_pair_again(run_dir):
    async with reviewing(run_dir, axis="guidance") as (_, client):
        first = await client.get("/api/next")
        await client.post("/api/skip", {"pair": first["pair"]})
        second = await client.get("/api/next")
        assert {first["left"], first["right"]} != {second["left"], second["right"]}
        assert list_votes(run_dir).empty

        await client.post("/api/vote", {"pair": second["pair"], "choice": "left"})
        others = list(files_by_cell(run_dir).values())
        record_preference(run_dir, others[0], others[1], rater="ben")
        undone = await client.post("/api/undo", {})
        assert undone["undone"] == {"mode": "pairs", "choice": "win"}
        assert {undone["next"]["left"], undone["next"]["right"]} == {
            second["left"],
            second["right"],
        }
        assert list_votes(run_dir)["rater"].tolist() == ["ben"]  # only ana's vote went
        assert (await client.post("/api/undo", {}))["undone"] is None
        assert len(list_votes(run_dir)) == 1


def test_the_next_pair_is_the_least_compared_then_the_closest():
    manifest = pd.DataFrame(
        {
            "file": [f"images/{s}_{g}.png" for s in (1, 2) for g in (2.5, 5.0, 7.5)],
            "status": "succeeded",
            "output_index": 0,
            "seed": [1, 1, 1, 2, 2, 2],
            "guidance": [2.5, 5.0, 7.5] * 2,
            "prompt": "p",
        }
    )
    f = dict(zip(zip(manifest["seed"], manifest["guidance"], strict=True), manifest["file"],
                 strict=True))  # fmt: skip
    chooser = PairChooser(manifest, "guidance", random.Random(1))

    def votes(*outcomes: tuple[tuple, tuple, str]) -> pd.DataFrame:
        return pd.DataFrame(
            [(i, "t", "x", "pairs", f[a], f[b], c) for i, (a, b, c) in enumerate(outcomes)],
            columns=["id", "time", "rater", "mode", "file", "other_file", "choice"],
        )

    def values(pair: Any) -> set[float]:
        return {pair.value_a, pair.value_b}

    # Fewest comparisons first: 2.5 v 7.5 has none, though 2.5 v 5.0 is closer (split 1-1).
    seen = votes(
        ((1, 5.0), (1, 2.5), "win"), ((2, 2.5), (2, 5.0), "win"), ((1, 5.0), (1, 7.5), "win")
    )
    assert values(chooser.next_pair(seen)) == {2.5, 7.5}
    # All compared twice: the closest strengths go first (5.0 won everything; 2.5 ~ 7.5).
    even = votes(
        ((1, 5.0), (1, 2.5), "win"), ((2, 5.0), (2, 2.5), "win"),
        ((1, 5.0), (1, 7.5), "win"), ((2, 5.0), (2, 7.5), "win"),
        ((1, 2.5), (1, 7.5), "win"), ((2, 7.5), (2, 2.5), "win"),
    )  # fmt: skip
    assert values(chooser.next_pair(even)) == {2.5, 7.5}
    other = votes(
        ((1, 5.0), (1, 2.5), "win"), ((2, 2.5), (2, 5.0), "win"),
        ((1, 7.5), (1, 5.0), "win"), ((2, 7.5), (2, 5.0), "win"),
        ((1, 7.5), (1, 2.5), "win"), ((2, 7.5), (2, 2.5), "tie"),
    )  # fmt: skip
    assert values(chooser.next_pair(other)) == {2.5, 5.0}
    # Every value pair compared once, all tied: the images compared least (seed 2) go first.
    ties = votes(
        ((1, 2.5), (1, 5.0), "tie"), ((1, 5.0), (1, 7.5), "tie"), ((1, 2.5), (1, 7.5), "tie")
    )
    assert {f[2, 2.5], f[2, 5.0], f[2, 7.5]} >= chooser.next_pair(ties).files
    # A skipped pair goes behind every other: the other seed's 2.5 v 7.5 comes next.
    skipped = chooser.next_pair(seen)
    chooser.skip(skipped)
    following = chooser.next_pair(seen)
    assert values(following) == {2.5, 7.5} and following.files != skipped.files


def test_every_varied_axis_takes_its_turn(run_dir):
    manifest = pd.read_parquet(run_dir / "manifest.parquet")
    chooser = PairChooser(manifest, None, random.Random(3))
    empty = list_votes(run_dir)
    assert chooser.axes == ["guidance", "seed"]
    assert [chooser.next_pair(empty).axis for _ in range(4)] == ["guidance", "seed"] * 2
    pairs = candidate_pairs(succeeded_images(manifest), ["seed", "guidance"])
    assert {axis: len(found) for axis, found in pairs.items()} == {"seed": 9, "guidance": 9}


def test_an_axis_that_did_not_vary_is_refused_in_one_line(run_dir):
    manifest = pd.read_parquet(run_dir / "manifest.parquet")
    with pytest.raises(SpecError, match="--axis steps: not a varied parameter of this run; "
                       "varied: guidance, seed"):  # fmt: skip
        PairChooser(manifest, "steps", random.Random(0))
    assert PairChooser(manifest, "guidance", random.Random(0)).axes == ["guidance"]


# ---- stars


async def test_stars_rate_one_image_and_favourite_it_undo_takes_it_back(run_dir):
    async with reviewing(run_dir, mode="stars") as (_, client):
        item = await client.get("/api/next")
        assert item["mode"] == "stars" and set(item["parameters"]) == {"seed", "guidance"}
        await client.post("/api/vote", {"image": item["image"], "favourite": True})
        answer = await client.post("/api/vote", {"image": item["image"], "stars": 4})
        assert answer["reveal"]["parameters"] == item["parameters"]
        refused = await client.post("/api/vote", {"image": item["image"], "stars": 7}, 400)
        assert "stars must be a whole number from 1 to 5" in refused["error"]
        following = await client.get("/api/next")
        assert following["image"] != item["image"]
        assert following["progress"] == {"rated": 1, "images": 9}

        votes = list_votes(run_dir)
        assert votes["choice"].tolist() == ["favourite", "4"]
        assert votes["mode"].tolist() == ["stars", "stars"]
        undone = await client.post("/api/undo", {})
        assert undone["undone"] == {"mode": "stars", "choice": "4"}
        assert undone["next"]["image"] == item["image"]
        assert list_votes(run_dir)["choice"].tolist() == ["favourite"]


async def test_blind_stars_hide_the_parameters_until_the_vote(run_dir):
    async with reviewing(run_dir, mode="stars", blind=True) as (_, client):
        item = await client.get("/api/next")
        assert item["parameters"] is None
        answer = await client.post("/api/vote", {"image": item["image"], "stars": 2})
        assert set(answer["reveal"]["parameters"]) == {"seed", "guidance"}


# ---- a kill of the server loses nothing


def test_votes_survive_a_kill_of_the_review_server(run_dir):
    server = subprocess.Popen(
        [sys.executable, "-m", "sweeper", "review", str(run_dir), "--no-browser",
         "--rater", "kim", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = server.stdout.readline()
        assert "open http://127.0.0.1:" in line, line + server.stderr.read()
        url = line.rsplit(" ", 1)[1].strip()
        base, token = url.split("/?token=")
        cast = []
        for _ in range(5):
            item = _call(f"{base}/api/next", token)
            cast.append(_call(f"{base}/api/vote", token, {"pair": item["pair"], "choice": "left"}))
        os.kill(server.pid, signal.SIGKILL)
        assert server.wait(timeout=10) == -signal.SIGKILL
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    votes = list_votes(run_dir)
    assert votes["id"].tolist() == [answer["vote"] for answer in cast]
    assert set(votes["rater"]) == {"kim"}


def _call(url: str, token: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"X-Review-Token": token, **JSON})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


# ---- start-up mistakes


async def test_a_port_in_use_or_an_unknown_mode_is_refused_in_one_line(run_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SpecError, match=rf"^--port {port}: cannot listen on 127\.0\.0\.1"):
            async with run_review(ReviewSettings(run_dir, rater="ana"), port=port):
                pass
    with pytest.raises(SpecError, match=r"^--mode thumbs: choose pairs or stars$"):
        async with run_review(ReviewSettings(run_dir, mode="thumbs", rater="ana")):  # type: ignore[arg-type]
            pass
