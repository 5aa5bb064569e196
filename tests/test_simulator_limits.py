"""The simulator's concurrency cap and per-image price, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import gc
import json
from collections import deque
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


def bytes_held_by(root: object) -> int:
    """The size of every bytes object reachable from `root` through containers and the
    simulator's own objects (each counted once)."""
    seen: set[int] = set()
    stack, total = [root], 0
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, bytes | bytearray):
            total += len(item)
        elif isinstance(item, dict | list | tuple | set | frozenset | deque):
            stack.extend(gc.get_referents(item))
        elif type(item).__module__.startswith("sweeper."):
            stack.extend(vars(item).values())
    return total


async def test_the_simulator_keeps_no_image_it_served_so_its_memory_is_flat():
    # Once, every output stayed in memory: 20 GB for 10k 1 MP PNGs. Now an image is rendered
    # again from its input whenever it is downloaded, and only the input photo is held.
    config = SimulatorConfig(tiny_images=True)
    async with run_simulator(config) as sim, aiohttp.ClientSession() as session:
        sim.state.register_asset(ASSET, PHOTO.read_bytes())
        held_before = bytes_held_by(sim.state)
        served = 0
        for _ in range(6):
            _, answer = await post_edit(session, sim.base_url, outputs=2)
            for url in answer["aiRecord"]["temporaryUrl"]:
                async with session.get(url) as image:
                    served += len(await image.read())
        held_after = bytes_held_by(sim.state)
    assert served > 12 * 100  # twelve images were served
    assert held_after - held_before < served / 10
