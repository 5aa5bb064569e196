"""The simulator's concurrency cap and per-image price, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from sweeper.contract import FEATURE_TYPE, FEATURES_PATH, MODEL
from sweeper.simulator import SimulatorConfig, run_simulator
from sweeper.simulator.app import STATS_PATH

PHOTO = Path(__file__).resolve().parent.parent / "sweeps" / "inputs" / "astronaut.jpg"
ASSET = "development/images/limits_test.jpg"


def edit_body(outputs: int = 1) -> dict:
    prompt = {"imageUrl": ASSET, "prompt": "limits", "megapixels": "0.25", "num_outputs": outputs}
    return {"type": FEATURE_TYPE, "model": MODEL, "promptObject": prompt}


async def post_edit(session: aiohttp.ClientSession, base_url: str, outputs: int = 1):
    url = base_url + FEATURES_PATH
    async with session.post(url, json=edit_body(outputs), headers={"API-KEY": "k"}) as answer:
        return answer.status, json.loads(await answer.text())


async def test_more_than_max_concurrent_at_once_is_answered_429():
    config = SimulatorConfig(max_concurrent=2, latency_s=0.3, tiny_images=True)
    async with run_simulator(config) as sim, aiohttp.ClientSession() as session:
        sim.state.register_asset(ASSET, PHOTO.read_bytes())
        statuses = [
            s
            for s, _ in await asyncio.gather(*(post_edit(session, sim.base_url) for _ in range(3)))
        ]
        assert sorted(statuses) == [200, 200, 429]
        assert sim.state.counters["concurrency_limited"] == 1
        # Once the two have finished, the next ones are let in again.
        statuses = [
            s
            for s, _ in await asyncio.gather(*(post_edit(session, sim.base_url) for _ in range(2)))
        ]
        assert statuses == [200, 200]
        assert sim.state.features_in_progress == 0


async def test_each_image_is_charged_credits_per_image_and_used_credit_reports_the_total():
    config = SimulatorConfig(credits_per_image=700, tiny_images=True)
    async with run_simulator(config) as sim, aiohttp.ClientSession() as session:
        sim.state.register_asset(ASSET, PHOTO.read_bytes())
        _, first = await post_edit(session, sim.base_url, outputs=2)
        _, second = await post_edit(session, sim.base_url, outputs=1)
        async with session.get(sim.base_url + STATS_PATH) as answer:
            stats = await answer.json()
    assert first["aiRecord"]["teamUser"]["usedCredit"] == 1400
    assert second["aiRecord"]["teamUser"]["usedCredit"] == 2100
    assert sim.state.counters["billed"] == 2
    assert sim.state.counters["billed_images"] == 3
    assert stats["credits_used"] == 2100


async def test_the_credit_limit_is_counted_in_credits():
    config = SimulatorConfig(credits_per_image=700, credit_limit=1000, tiny_images=True)
    async with run_simulator(config) as sim, aiohttp.ClientSession() as session:
        sim.state.register_asset(ASSET, PHOTO.read_bytes())
        assert (await post_edit(session, sim.base_url))[0] == 200
        assert (await post_edit(session, sim.base_url))[0] == 402
    assert sim.state.credits_used == 700
    assert sim.state.counters["billed"] == 1
