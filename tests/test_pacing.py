"""The rate limiter under virtual time: spacing, window counts, FIFO, pauses, cancellation."""

from __future__ import annotations

import asyncio
import bisect
import itertools

import pytest

from sweeper.clock import FakeClock
from sweeper.pacing import RateLimiter


async def send_times(limiter: RateLimiter, clock: FakeClock, sends: int, tasks: int) -> list:
    times: list[float] = []

    async def sender(count: int) -> None:
        for _ in range(count):
            await limiter.acquire()
            times.append(clock.now())

    per_task = [sends // tasks + (1 if i < sends % tasks else 0) for i in range(tasks)]
    await asyncio.gather(*(sender(n) for n in per_task))
    return times


def most_in_any_window(times: list[float], window: float = 60.0) -> int:
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered))


@pytest.mark.parametrize("rpm", [1, 7, 60, 600, 6000])
async def test_never_more_than_rpm_in_any_window_and_at_least_95_percent(rpm):
    clock = FakeClock()
    limiter = RateLimiter(rpm, clock=clock)
    sends = min(300, rpm * 3)
    times = await send_times(limiter, clock, sends, tasks=8)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 60 / rpm - 1e-9
    assert most_in_any_window(times) <= rpm
    sustained = (len(times) - 1) / (times[-1] - times[0]) * 60
    assert sustained >= 0.95 * rpm


async def test_the_first_send_goes_at_once():
    clock = FakeClock(start=100.0)
    await RateLimiter(60, clock=clock).acquire()
    assert clock.now() == 100.0


async def test_no_cap_never_waits():
    clock = FakeClock()
    times = await send_times(RateLimiter(None, clock=clock), clock, 1000, tasks=16)
    assert set(times) == {0.0} and clock.sleeps == []


async def test_waiters_are_served_in_arrival_order():
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock)
    order: list[int] = []

    async def sender(number: int) -> None:
        await limiter.acquire()
        order.append(number)

    await asyncio.gather(*(sender(n) for n in range(20)))
    assert order == list(range(20))


async def test_slow_down_pauses_everyone_and_never_shortens_a_pause():
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock)
    limiter.slow_down(30)
    limiter.slow_down(5)
    times = await send_times(limiter, clock, 4, tasks=4)
    assert min(times) >= 30


async def test_a_pause_that_starts_while_waiting_keeps_the_spacing_after_it():
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock)
    times: list[float] = []

    async def sender() -> None:
        await limiter.acquire()
        times.append(clock.now())

    tasks = [asyncio.create_task(sender()) for _ in range(5)]
    await asyncio.sleep(0)
    limiter.slow_down(10)
    await asyncio.gather(*tasks)
    after_pause = sorted(t for t in times if t >= 10)
    assert len(after_pause) >= 4
    gaps = [b - a for a, b in itertools.pairwise(after_pause)]
    assert min(gaps) >= 1.0


async def test_a_cancelled_waiter_does_not_break_the_spacing():
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    times = await send_times(limiter, clock, 5, tasks=2)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(times) >= 60 / 60 and min(gaps) >= 60 / 60


def test_interval_includes_the_safety_margin():
    assert RateLimiter(60, clock=FakeClock()).interval == pytest.approx(1.01)
    assert RateLimiter(None, clock=FakeClock()).interval == 0
    with pytest.raises(ValueError):
        RateLimiter(0)
