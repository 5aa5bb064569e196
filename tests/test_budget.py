"""The credit and request budget and the price it learns: pure asyncio, then over real HTTP."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from sweeper.budget import Budget, PriceLearner
from sweeper.client import ApiClient
from sweeper.contract import FEATURE_TYPE, MODEL
from sweeper.errors import NotSent, RateLimited, TransientError, Unanswered
from sweeper.simulator import FaultRule, SimulatorConfig, run_simulator
from sweeper.user_cache import UserCache

BASE = "https://api.1min.ai"
PHOTO = Path(__file__).resolve().parent.parent / "sweeps" / "inputs" / "astronaut.jpg"


def test_the_price_is_the_smallest_positive_delta_per_image_of_the_later_answer():
    learner = PriceLearner()
    steps = [
        (1000, 1, None),  # a first answer says nothing about the price
        (3100, 1, 2100),  # someone else on the team was billed in between: too high
        (4500, 2, 700),  # 1400 for 2 images
        (4400, 1, 700),  # answered out of order: the total went down, ignored
        (4400, 1, 700),  # nothing moved: ignored
        (5100, 1, 700),
        (5100, 0, 700),  # no image billed: no delta to divide
        (7800, 1, 700),
    ]
    for used_credit, images, price in steps:
        learner.observe(used_credit, images)
        assert learner.price == price
    assert learner.observe(None, 1) is False
    assert learner.observe(8490, 1) is True
    assert learner.price == 690


async def settle_all(reservations, price=700, start=0):
    for number, reservation in enumerate(reservations, start=1):
        reservation.settle(1, start + number * price)


async def test_until_a_price_is_known_a_capped_run_sends_one_request_at_a_time():
    budget = Budget(max_credits=10_000)
    first = await budget.reserve()
    second = asyncio.create_task(budget.reserve())
    await asyncio.sleep(0)
    assert not second.done() and budget.in_flight == 1
    first.settle(1, used_credit=50_000)
    assert budget.price is None
    reservation = await second
    third = asyncio.create_task(budget.reserve())
    await asyncio.sleep(0)
    assert not third.done()
    reservation.settle(1, used_credit=50_700)
    assert (budget.price, budget.price_source, budget.spent_credits) == (700, "learned", 1400)
    assert await third is not None
    # With a price known, requests go out together.
    together = await asyncio.gather(*(budget.reserve() for _ in range(5)))
    assert all(together) and budget.in_flight == 6


async def test_a_request_that_could_pass_the_cap_waits_for_those_in_flight_then_is_refused():
    budget = Budget(max_credits=10_000, price=700, price_source="spec")
    in_flight = await asyncio.gather(*(budget.reserve() for _ in range(14)))  # 9800
    fifteenth = asyncio.create_task(budget.reserve())
    await asyncio.sleep(0)
    assert not fifteenth.done()  # it fits only if one in flight is refused
    await settle_all(in_flight)
    assert await fifteenth is None
    assert (budget.stop_reason, budget.spent_credits) == ("budget", 9800)
    assert await budget.reserve() is None  # stopped for good
    assert budget.snapshot() == {
        "spent": 9800,
        "spent_images": 14,
        "spent_requests": 14,
        "price_per_image": 700,
        "price_source": "spec",
        "max_credits": 10_000,
        "max_requests": None,
        "stopped": "budget",
    }


async def test_a_refused_request_gives_its_reservation_back():
    budget = Budget(max_credits=1400, price=700, price_source="spec")
    first, second = await budget.reserve(), await budget.reserve()
    third = asyncio.create_task(budget.reserve())
    await asyncio.sleep(0)
    assert not third.done()
    first.refused()  # a 429: not billed
    assert await third is not None
    assert budget.spent_credits == 0
    second.refused()
    second.settle(1, 5000)  # a second word about the same request changes nothing
    assert budget.spent_requests == 0


async def test_an_unanswered_request_counts_as_spent_in_full():
    budget = Budget(max_credits=2800, price=700, price_source="spec")
    lost = await budget.reserve(images=2)
    lost.unanswered()
    assert (budget.spent_credits, budget.spent_requests) == (1400, 1)
    answered = await budget.reserve(images=2)
    answered.settle(2, None)
    assert await budget.reserve() is None
    assert budget.spent_credits == 2800


async def test_a_failed_record_is_spent_in_full_but_teaches_no_price():
    budget = Budget(max_credits=2100)
    (await budget.reserve()).settle(1, used_credit=1000)
    (await budget.reserve()).failed_record(used_credit=1010)  # charged 10? or nothing?
    assert budget.price is None
    (await budget.reserve()).settle(1, used_credit=1710)
    assert (budget.price, budget.spent_images, budget.spent_credits) == (700, 3, 2100)
    assert await budget.reserve() is None


async def test_a_request_is_reserved_at_the_price_of_every_image_it_asks_for():
    budget = Budget(max_credits=3000, price=700, price_source="spec")
    four = await budget.reserve(images=4)  # 2800
    one = asyncio.create_task(budget.reserve(images=1))
    await asyncio.sleep(0)
    assert not one.done()
    four.settle(3)  # the server made (and billed) only three
    assert await one is not None  # 2100 + 700
    with pytest.raises(ValueError):
        await budget.reserve(images=0)


async def test_max_requests_counts_requests_the_server_may_have_billed():
    budget = Budget(max_requests=3)
    first, second, third = [await budget.reserve() for _ in range(3)]
    fourth = asyncio.create_task(budget.reserve())
    await asyncio.sleep(0)
    assert not fourth.done()
    first.refused()  # 429: not a billed request
    fourth_reservation = await fourth
    second.settle(1, None)
    third.unanswered()
    fourth_reservation.settle(1, None)
    assert await budget.reserve() is None
    assert (budget.stop_reason, budget.spent_requests) == ("max_requests", 3)


async def test_a_price_that_turns_out_above_the_cap_stops_after_the_two_that_learned_it():
    budget = Budget(max_credits=1000)
    for used_credit in (700, 1400):
        (await budget.reserve()).settle(1, used_credit)
    assert await budget.reserve() is None
    assert budget.spent_credits == 1400  # the documented cost of learning the price


async def test_no_cap_never_waits_but_still_learns_the_price():
    budget = Budget()
    reservations = await asyncio.gather(*(budget.reserve() for _ in range(50)))
    await settle_all(reservations, price=3, start=10)
    assert (budget.price, budget.spent_credits, budget.stop_reason) == (3, 150, None)


async def test_the_spec_price_wins_then_this_runs_learned_price_then_the_cache(tmp_path):
    cache = UserCache(tmp_path)
    spec = Budget.for_run(api_base=BASE, model=MODEL, credits_per_image=5, cache=cache)
    assert (spec.price, spec.price_source) == (5, "spec")
    assert Budget.for_run(api_base=BASE, model=MODEL, cache=cache).price is None

    learning = Budget.for_run(api_base=BASE, model=MODEL, cache=cache)
    for used_credit in (100, 800):
        (await learning.reserve()).settle(1, used_credit)
    assert cache.learned_price(BASE, MODEL) == 700

    cached = Budget.for_run(api_base=BASE, model=MODEL, cache=cache)
    assert (cached.price, cached.price_source) == (700, "cache")
    for used_credit in (0, 900):  # the price went up since
        (await cached.reserve()).settle(1, used_credit)
    assert (cached.price, cached.price_source) == (900, "learned")

    for used_credit in (0, 700):
        (await spec.reserve()).settle(1, used_credit)
    assert (spec.price, spec.price_source, spec.learned_price) == (5, "spec", 700)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        Budget(max_credits=-1)
    with pytest.raises(ValueError):
        Budget(max_requests=-1)
    with pytest.raises(ValueError):
        Budget(price=700)
    with pytest.raises(ValueError):
        Budget(price=0, price_source="spec")


# --- over real HTTP: the client, the budget and a small pool of our own ---------------


async def spend_until_refused(client: ApiClient, budget: Budget, concurrency: int):
    """The pool in small: reserve, send, close the reservation with what came back."""
    asset = await client.upload_asset(PHOTO)
    prompt = {"imageUrl": asset, "prompt": "budget", "megapixels": "0.25", "num_outputs": 1}
    request = json.dumps({"type": FEATURE_TYPE, "model": MODEL, "promptObject": prompt})

    async def worker() -> None:
        while (reservation := await budget.reserve(images=1)) is not None:
            try:
                result = await client.run_edit(request, num_outputs=1)
            except Unanswered:
                reservation.unanswered()
            except (RateLimited, NotSent, TransientError):  # an error status, or never sent
                reservation.refused()
            else:
                reservation.settle(len(result.outputs), result.used_credit)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_max_credits_is_never_passed_against_a_server_charging_700_per_image(
    tmp_path, concurrency
):
    faults = [
        FaultRule("features", "rate_limit", times=2, after=3, retry_after="0"),
        FaultRule("features", "billed_drop", after=4),  # billed, and never answered
        FaultRule("features", "status", status=503, after=6),
    ]
    config = SimulatorConfig(credits_per_image=700, tiny_images=True, latency_s=0.02, faults=faults)
    budget = Budget.for_run(
        api_base="loopback", model=MODEL, max_credits=10_000, cache=UserCache(tmp_path)
    )
    async with run_simulator(config) as sim, aiohttp.ClientSession() as session:
        client = ApiClient(session, sim.base_url, "key", request_timeout_s=10)
        await spend_until_refused(client, budget, concurrency)
    billed = sim.state.credits_used
    assert 10_000 - (concurrency + 1) * 700 <= billed <= 10_000
    assert sim.state.counters["fault_rate_limit"] == 2
    assert sim.state.counters["billed_unanswered"] == 1
    assert (budget.stop_reason, budget.price, budget.price_source) == ("budget", 700, "learned")
    assert budget.spent_credits == billed  # the dropped answer counted, the 429s and 503 not
    assert UserCache(tmp_path).learned_price("loopback", MODEL) == 700
