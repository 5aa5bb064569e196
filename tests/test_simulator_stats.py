"""The simulator's stats route, which the benchmarks read from another process."""

from __future__ import annotations

import aiohttp

from sweeper.simulator import SimulatorConfig, run_simulator
from sweeper.simulator.app import STATS_PATH, most_in_window


def test_most_in_window_counts_a_half_open_sliding_window():
    assert most_in_window([], 60.0) == 0
    assert most_in_window([0.0, 10.0, 59.9, 60.0, 61.0], 60.0) == 4
    assert most_in_window([0.0, 60.0, 120.0], 60.0) == 1


async def test_stats_report_429s_and_arrivals():
    async with (
        run_simulator(SimulatorConfig(rpm_limit=2)) as sim,
        aiohttp.ClientSession() as session,
    ):
        for _ in range(3):
            url = f"{sim.base_url}/api/features"
            async with session.post(url, json={}, headers={"API-KEY": "k"}) as answer:
                await answer.read()
        async with session.get(sim.base_url + STATS_PATH) as answer:
            stats = await answer.json()
    assert stats["counters"]["rate_limited"] == 1
    assert stats["feature_arrivals"] == 3
    assert stats["most_features_in_any_window"] == 3
