"""The adaptive pacer: its rules under FakeClock, and whole runs against modelled servers.

The scenarios run minutes of virtual time on `VirtualTimeLoop` (tests/virtual_time.py)
against a server model with the simulator's semantics: a strict sliding 60 s window
that does not count refused requests, and/or a cap on requests being processed.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import itertools
import random
from dataclasses import dataclass, field

import pytest
from virtual_time import LoopClock, run_in_virtual_time

from sweeper.adaptive import (
    AdaptivePacer,
    Dispatch,
    PacingSettings,
    remember_pace,
    starting_settings,
)
from sweeper.clock import FakeClock
from sweeper.user_cache import UserCache

# --- the rules, one at a time -------------------------------------------------------


async def dispatch_many(pacer: AdaptivePacer, count: int) -> list[Dispatch]:
    return [await pacer.acquire() for _ in range(count)]


async def test_sends_are_spaced_for_rpm_start_and_the_first_goes_at_once():
    clock = FakeClock(start=100.0)
    pacer = AdaptivePacer(PacingSettings(rpm_start=60), clock=clock)
    sent = [d.sent_at for d in await dispatch_many(pacer, 3)]
    assert sent == pytest.approx([100.0, 101.01, 102.02])
    assert pacer.interval == pytest.approx(1.01)


async def busy_minute(pacer: AdaptivePacer, clock: FakeClock) -> list[Dispatch]:
    """A minute of requests sent one at a time as fast as paced, all successful."""
    sent = []
    start = clock.now()
    while clock.now() < start + 60.0:
        sent.append(await pacer.acquire())
        pacer.on_success(sent[-1])
    return sent


async def test_one_storm_gives_one_cut_and_the_next_storm_another():
    clock = FakeClock()
    pacer = AdaptivePacer(PacingSettings(rpm_start=600, slow_start=False), clock=clock)
    await busy_minute(pacer, clock)
    storm = await dispatch_many(pacer, 10)
    for dispatch in storm:  # every request in flight comes back 429
        pacer.on_rate_limited(dispatch, retry_after=2.0)
    assert (pacer.rate_cuts, pacer.concurrency_cuts, pacer.rate_limited) == (1, 0, 10)
    after_cut = pacer.current_rpm
    assert after_cut < 600

    fine = await pacer.acquire()
    assert fine.sent_at >= storm[-1].sent_at + 2.0  # after the pause
    pacer.on_success(fine)  # the cut worked: the storm is over
    refused = await pacer.acquire()
    pacer.on_rate_limited(refused, retry_after=2.0)
    assert pacer.rate_cuts == 2
    assert pacer.current_rpm < after_cut


async def test_refusals_until_the_cut_works_pause_longer_instead_of_cutting_again():
    clock = FakeClock()
    pacer = AdaptivePacer(PacingSettings(rpm_start=600), clock=clock)
    await busy_minute(pacer, clock)
    pacer.on_rate_limited(await pacer.acquire(), retry_after=1.0)
    assert pacer.rate_cuts == 1
    rpm = pacer.current_rpm
    gaps = []
    dispatch = await pacer.acquire()
    for _ in range(4):  # the server's minute is still full: every retry is refused
        pacer.on_rate_limited(dispatch, retry_after=1.0)
        retry = await pacer.acquire()
        gaps.append(retry.sent_at - dispatch.sent_at)
        dispatch = retry
    assert (pacer.rate_cuts, pacer.current_rpm) == (1, rpm)
    assert gaps[0] >= 1.0
    assert [round(b / a) for a, b in itertools.pairwise(gaps)] == [2, 2, 2]


async def test_a_429_in_the_first_minute_pauses_but_does_not_cut():
    # A run that starts while the server's minute is full of an earlier run's requests.
    clock = FakeClock()
    pacer = AdaptivePacer(PacingSettings(rpm_start=60), clock=clock)
    first = await pacer.acquire()
    pacer.on_rate_limited(first, retry_after=None)
    # Alone in flight, so not a concurrency cap; too early to say what rate the server took.
    assert (pacer.rate_cuts, pacer.current_rpm) == (0, 60)
    assert (pacer.concurrency_cuts, pacer.current_concurrency) == (0, 256)
    assert (await pacer.acquire()).sent_at >= 1.0


async def test_a_cut_lands_under_what_the_server_accepted_in_the_last_minute():
    clock = FakeClock()
    pacer = AdaptivePacer(PacingSettings(rpm_start=60), clock=clock)
    minute = await busy_minute(pacer, clock)  # slow start: from 60 to 240 a minute
    refused = await pacer.acquire()
    assert refused.window_count == sum(d.sent_at > refused.sent_at - 60 for d in minute)
    climbed_to = pacer.current_rpm
    pacer.on_rate_limited(refused, retry_after=None)
    assert pacer.current_rpm == pytest.approx(0.9 * refused.window_count)
    assert pacer.current_rpm < 0.6 * climbed_to


async def test_after_a_cut_the_last_minute_is_drained_before_sending_more():
    clock = FakeClock()
    pacer = AdaptivePacer(PacingSettings(rpm_start=100, slow_start=False), clock=clock)
    accepted = [d.sent_at for d in await busy_minute(pacer, clock)]
    first_after_cut = len(accepted)
    refused = await pacer.acquire()
    pacer.on_rate_limited(refused, retry_after=None)  # no pause asked: the window still holds
    cap = int(pacer.current_rpm)
    for dispatch in await dispatch_many(pacer, 30):
        pacer.on_success(dispatch)
        accepted.append(dispatch.sent_at)
    for index, sent in enumerate(accepted):
        in_last_minute = index - bisect.bisect_right(accepted, sent - 60.0) + 1
        assert index < first_after_cut or in_last_minute <= cap


async def test_retry_after_pauses_every_sender_and_a_shorter_one_never_shortens_it():
    clock = FakeClock()
    pacer = AdaptivePacer(PacingSettings(rpm_start=6000), clock=clock)
    first, second = await dispatch_many(pacer, 2)
    pacer.on_rate_limited(first, retry_after=30.0)
    pacer.on_rate_limited(second, retry_after=1.0)
    times = [d.sent_at for d in await asyncio.gather(*(pacer.acquire() for _ in range(4)))]
    assert min(times) >= 30.0
    pacer.slow_down(5)
    assert (await pacer.acquire()).sent_at >= 35.0


async def test_a_waiting_caller_gives_its_old_slot_back_at_a_cut():
    clock = FakeClock()
    pacer = AdaptivePacer(PacingSettings(rpm_start=100, slow_start=False), clock=clock)
    accepted = [d.sent_at for d in await busy_minute(pacer, clock)]
    refused = await pacer.acquire()
    waiting = asyncio.create_task(pacer.acquire())  # holds a slot spaced for 100/min
    await asyncio.sleep(0)
    pacer.on_rate_limited(refused, retry_after=None)
    later = await waiting
    # The last minute already holds more than the new rate: wait for the oldest to age out.
    cap = int(pacer.current_rpm)
    assert later.sent_at >= accepted[-cap] + 60.0


async def test_a_waiter_cancelled_after_a_cut_took_its_slot_back_leaves_cleanly():
    clock = FakeClock()
    pacer = AdaptivePacer(PacingSettings(rpm_start=100, slow_start=False), clock=clock)
    await busy_minute(pacer, clock)
    refused = await pacer.acquire()
    waiting = asyncio.create_task(pacer.acquire())
    await asyncio.sleep(0)
    pacer.on_rate_limited(refused, retry_after=None)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (await pacer.acquire()).in_flight == 1


async def test_a_429_at_an_in_flight_level_never_proven_cuts_the_concurrency():
    clock = FakeClock()
    pacer = AdaptivePacer(PacingSettings(rpm_start=6000, max_concurrency=16), clock=clock)
    for _ in range(3):
        for dispatch in await dispatch_many(pacer, 4):  # 1, 2, 3, 4 in flight succeed
            pacer.on_success(dispatch)
    held = await dispatch_many(pacer, 4)
    fifth = await pacer.acquire()
    assert fifth.in_flight == 5
    pacer.on_rate_limited(fifth, retry_after=None)
    assert (pacer.current_concurrency, pacer.concurrency_cuts, pacer.rate_cuts) == (4, 1, 0)
    assert pacer.current_rpm >= 6000

    # The cap holds: a fifth request waits until one of the four is answered.
    sleeps = len(clock.sleeps)
    waiting = asyncio.create_task(pacer.acquire())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    assert len(clock.sleeps) == sleeps  # it waits for an answer, not for send slots
    pacer.on_success(held[0])
    assert (await waiting).in_flight == 4


async def test_a_429_at_an_in_flight_level_that_has_succeeded_is_blamed_on_the_rate():
    clock = FakeClock()
    pacer = AdaptivePacer(PacingSettings(rpm_start=600, max_concurrency=16), clock=clock)
    await busy_minute(pacer, clock)
    for _ in range(3):
        for dispatch in await dispatch_many(pacer, 4):
            pacer.on_success(dispatch)
    held = await dispatch_many(pacer, 3)
    fourth = await pacer.acquire()
    pacer.on_rate_limited(fourth, retry_after=None)
    assert (pacer.rate_cuts, pacer.concurrency_cuts, pacer.current_concurrency) == (1, 0, 16)
    for dispatch in held:
        pacer.on_failure(dispatch)
    assert pacer.in_flight == 0


async def test_a_second_hook_for_the_same_request_changes_nothing():
    clock = FakeClock()
    pacer = AdaptivePacer(PacingSettings(rpm_start=600), clock=clock)
    dispatch = await pacer.acquire()
    pacer.on_success(dispatch)
    pacer.on_rate_limited(dispatch, retry_after=60.0)
    pacer.on_failure(dispatch)
    assert (pacer.rate_cuts, pacer.rate_limited, pacer.in_flight) == (0, 0, 0)
    assert (await pacer.acquire()).sent_at < 1.0


async def test_slow_start_doubles_while_busy_then_climbs_additively_after_a_cut():
    clock = FakeClock()
    pacer = AdaptivePacer(PacingSettings(rpm_start=60), clock=clock)
    await run_busy(pacer, clock, until=60.0)
    assert pacer.current_rpm == pytest.approx(240, rel=0.1)

    refused = await pacer.acquire()
    pacer.on_rate_limited(refused, retry_after=None)
    reference = min(240 * 1.1, refused.window_count)
    cut = pacer.current_rpm
    start = clock.now()
    await run_busy(pacer, clock, until=start + 120.0)
    halfway = pacer.current_rpm
    await run_busy(pacer, clock, until=start + 240.0)
    # Back to the level that drew the cut in recovery_min (4) minutes, in a straight line.
    assert halfway - cut == pytest.approx((reference - cut) / 2, rel=0.15)
    assert pacer.current_rpm == pytest.approx(reference, rel=0.05)


async def test_the_rate_does_not_grow_when_slow_answers_hold_the_senders_back():
    clock = FakeClock()
    pacer = AdaptivePacer(PacingSettings(rpm_start=60), clock=clock)
    await run_busy(pacer, clock, until=300.0, latency=10.0)  # one sender: 6 a minute
    assert pacer.current_rpm == 60


async def run_busy(pacer: AdaptivePacer, clock: FakeClock, until: float, latency: float = 0.0):
    """One sender that always has a request ready; every request succeeds."""
    while clock.now() < until:
        dispatch = await pacer.acquire()
        if latency:
            await clock.sleep(latency)
        pacer.on_success(dispatch)


async def test_concurrency_slots_are_first_come_first_served_and_survive_cancellation():
    pacer = AdaptivePacer(PacingSettings(max_concurrency=2), clock=FakeClock())
    order: list[int] = []
    release = asyncio.Event()

    async def holder(number: int) -> None:
        async with pacer.concurrency_slot():
            order.append(number)
            await release.wait()

    tasks = [asyncio.create_task(holder(n)) for n in range(5)]
    await asyncio.sleep(0)
    assert order == [0, 1]
    tasks[2].cancel()  # cancelled while queued: it must not take a slot later
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert order == [0, 1, 3, 4]
    async with pacer.concurrency_slot(), pacer.concurrency_slot():
        pass  # both slots are free again


def test_a_run_starts_from_the_spec_else_from_what_the_last_run_learned(tmp_path):
    cache = UserCache(tmp_path)
    where = {"api_base": "https://api.1min.ai", "api_key": "sk-one", "cache": cache}
    fresh = starting_settings(max_concurrency=16, rpm_start=None, **where)
    assert (fresh.rpm_start, fresh.slow_start, fresh.concurrency_start) == (60, True, None)

    ended = PacingSettings(rpm_start=216, slow_start=False, max_concurrency=16, concurrency_start=4)
    pacer = AdaptivePacer(ended)
    remember_pace(pacer, cache, "https://api.1min.ai", "sk-one")
    learned = starting_settings(max_concurrency=16, rpm_start=None, **where)
    assert (learned.rpm_start, learned.slow_start, learned.concurrency_start) == (216, False, 4)
    assert AdaptivePacer(learned).current_concurrency == 4

    other_key = starting_settings(max_concurrency=16, rpm_start=None, **{**where, "api_key": "x"})
    assert other_key.rpm_start == 60
    spec = starting_settings(max_concurrency=16, rpm_start=120, **where)
    assert (spec.rpm_start, spec.slow_start) == (120, True)


def test_settings_are_checked():
    with pytest.raises(ValueError):
        PacingSettings(rpm_start=0)
    with pytest.raises(ValueError):
        PacingSettings(decrease=1.0)
    with pytest.raises(ValueError):
        PacingSettings(max_concurrency=0)
    with pytest.raises(ValueError):
        PacingSettings(concurrency_start=0)


def test_the_snapshot_says_what_run_json_records():
    pacer = AdaptivePacer(PacingSettings(rpm_start=90, max_concurrency=8), clock=FakeClock())
    assert pacer.snapshot() == {
        "adaptive": True,
        "requests_per_minute": 90.0,
        "concurrency": 8,
        "phase": "slow_start",
        "rate_cuts": 0,
        "concurrency_cuts": 0,
        "answered_429": 0,
    }
    assert not pacer.capped
    assert AdaptivePacer(PacingSettings(slow_start=False), clock=FakeClock()).capped


# --- whole runs against a modelled server, in virtual time ---------------------------


@dataclass
class ModelServer:
    """The simulator's limits: a strict 60 s window (refusals not counted), a cap at once."""

    clock: LoopClock
    rpm_limit: int | None = None
    max_concurrent: int | None = None
    latency: tuple[float, float] = (1.0, 1.0)
    retry_after: float | None = 1.0
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    window: collections.deque[float] = field(default_factory=collections.deque)
    active: int = 0
    log: list[tuple[float, bool]] = field(default_factory=list)
    # Requests of an earlier run still in the window at the start, spread over its minute.
    earlier: int = 0

    def __post_init__(self) -> None:
        self.window.extend(-60.0 * (1 - (i + 1) / (self.earlier + 1)) for i in range(self.earlier))

    async def handle(self) -> bool:
        now = self.clock.now()
        while self.window and self.window[0] <= now - 60.0:
            self.window.popleft()
        refused = (self.rpm_limit is not None and len(self.window) >= self.rpm_limit) or (
            self.max_concurrent is not None and self.active >= self.max_concurrent
        )
        self.log.append((now, not refused))
        if refused:
            return False
        self.window.append(now)
        self.active += 1
        try:
            await self.clock.sleep(self.rng.uniform(*self.latency))
        finally:
            self.active -= 1
        return True

    def accepted_per_minute(self, start: float, end: float) -> float:
        return sum(ok for t, ok in self.log if start <= t < end) / ((end - start) / 60.0)

    def refused_share(self, start: float, end: float) -> float:
        answers = [ok for t, ok in self.log if start <= t < end]
        return answers.count(False) / len(answers)


async def pool(pacer: AdaptivePacer, server: ModelServer, *, workers: int, minutes: float):
    """What the pool will do: slot, pace, send, tell the pacer how it ended."""
    end = minutes * 60.0

    async def worker() -> None:
        while server.clock.now() < end:
            async with pacer.concurrency_slot():
                dispatch = await pacer.acquire()
                if await server.handle():
                    pacer.on_success(dispatch)
                else:
                    pacer.on_rate_limited(dispatch, server.retry_after)

    await asyncio.gather(*(worker() for _ in range(workers)))


def run_scenario(settings: PacingSettings, workers: int, minutes: float, **server_options):
    async def main() -> tuple[AdaptivePacer, ModelServer]:
        clock = LoopClock()
        server = ModelServer(clock, **server_options)
        pacer = AdaptivePacer(settings, clock=clock)
        await pool(pacer, server, workers=workers, minutes=minutes)
        return pacer, server

    return run_in_virtual_time(main())


@pytest.mark.parametrize("retry_after", [1.0, None])
def test_finds_a_strict_per_minute_limit_from_60_per_minute(retry_after):
    pacer, server = run_scenario(
        PacingSettings(max_concurrency=16),
        workers=16,
        minutes=10,
        rpm_limit=240,
        latency=(0.5, 3.0),
        retry_after=retry_after,
    )
    assert server.accepted_per_minute(120, 180) >= 0.85 * 240  # warm within 3 minutes
    assert server.accepted_per_minute(180, 600) >= 0.9 * 240
    assert server.refused_share(0, 600) <= 0.005
    assert pacer.rate_cuts <= 3


def test_a_learned_rate_above_a_lowered_limit_comes_down_in_one_storm():
    pacer, server = run_scenario(
        PacingSettings(rpm_start=400, slow_start=False, max_concurrency=16),
        workers=16,
        minutes=6,
        rpm_limit=240,
    )
    assert server.accepted_per_minute(60, 360) >= 0.85 * 240
    assert server.refused_share(0, 360) <= 0.005
    assert pacer.current_rpm <= 250


@pytest.mark.parametrize("rpm_start", [60.0, 216.0])
def test_a_run_started_while_the_servers_minute_is_full_neither_stalls_nor_storms(rpm_start):
    _, server = run_scenario(
        PacingSettings(rpm_start=rpm_start, slow_start=rpm_start == 60.0, max_concurrency=16),
        workers=16,
        minutes=6,
        rpm_limit=240,
        earlier=240,
    )
    assert server.log[0] == (0.0, False)  # the very first request is refused
    assert server.accepted_per_minute(180, 360) >= 0.85 * 240
    assert server.refused_share(0, 360) <= 0.005


def test_finds_a_concurrency_cap_of_4_with_16_workers():
    pacer, server = run_scenario(
        PacingSettings(max_concurrency=16),
        workers=16,
        minutes=10,
        max_concurrent=4,
        latency=(0.5, 1.5),
    )
    # Four at a time with answers in 1 s on average is 240 a minute at best.
    assert server.accepted_per_minute(120, 180) >= 0.85 * 240
    assert server.accepted_per_minute(180, 600) >= 0.9 * 240
    assert server.refused_share(0, 600) <= 0.005
    assert pacer.current_concurrency in (4, 5)
    assert pacer.rate_cuts == 0
    assert pacer.concurrency_cuts <= 6  # each failed probe waits twice as long as the last


def test_finds_whichever_limit_binds_when_there_are_both():
    pacer, server = run_scenario(
        PacingSettings(max_concurrency=16), workers=16, minutes=10, max_concurrent=4, rpm_limit=180
    )
    assert server.accepted_per_minute(180, 600) >= 0.85 * 180
    assert server.refused_share(0, 600) <= 0.01
    assert pacer.current_rpm <= 200
