"""Backoff bounds and growth, Retry-After parsing, and the retry loop under virtual time."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sweeper.clock import FakeClock
from sweeper.errors import JobError, RateLimited, TransientError
from sweeper.pacing import RateLimiter
from sweeper.retry import MAX_RETRY_AFTER_S, Attempts, GaveUp, RetryPolicy, parse_retry_after

NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)


@given(attempt=st.integers(1, 40), seed=st.integers(0, 2**32))
def test_backoff_stays_between_zero_and_the_capped_exponential(attempt, seed):
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=20)
    delay = policy.backoff(attempt, random.Random(seed))
    assert 0 <= delay <= min(20, 0.5 * 2 ** (attempt - 1))


def test_backoff_grows_with_attempts_and_is_reproducible():
    policy = RetryPolicy(base_delay_s=1, max_delay_s=1000)
    means = [sum(policy.backoff(a, random.Random(s)) for s in range(200)) / 200 for a in (1, 3, 5)]
    assert means[0] < means[1] < means[2]
    assert policy.backoff(4, random.Random(9)) == policy.backoff(4, random.Random(9))


def test_delay_honours_retry_after_exactly_and_caps_it():
    policy = RetryPolicy()
    assert policy.delay(1, random.Random(0), retry_after=7.5) == 7.5
    assert policy.delay(1, random.Random(0), retry_after=10**6) == MAX_RETRY_AFTER_S
    assert 0 <= policy.delay(2, random.Random(0)) <= 2


def test_should_retry_until_the_last_attempt():
    policy = RetryPolicy(max_attempts=3)
    assert [policy.should_retry(a) for a in (1, 2, 3)] == [True, True, False]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("wed, 21 oct 2015 07:28:30 gmt", 30.0),
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),
        ("-5", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_parse_retry_after(header, seconds):
    assert parse_retry_after(header, now=NOW) == seconds


async def test_the_retry_loop_backs_off_then_gives_up_with_the_last_error():
    clock = FakeClock()
    attempts = Attempts(
        RetryPolicy(max_attempts=3), RateLimiter(None, clock=clock), clock, random.Random(1)
    )
    tried: list[int] = []

    async def flaky(attempt: int) -> None:
        tried.append(attempt)
        raise TransientError(f"reset #{attempt}")

    with pytest.raises(GaveUp, match="reset #3"):
        await attempts.call(flaky, paced=True)
    assert tried == [1, 2, 3] and len(clock.sleeps) == 2


async def test_a_429_pauses_the_whole_pool_for_retry_after():
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock)
    attempts = Attempts(RetryPolicy(), limiter, clock, random.Random(1))
    told = asyncio.Event()

    async def limited_once(attempt: int) -> int:
        if attempt == 1:
            told.set()
            raise RateLimited("slow down", retry_after=12)
        return attempt

    async def another_worker() -> float:
        await told.wait()  # it asks to send just after the 429 came back
        await limiter.acquire()
        return clock.now()

    answered, other_sent_at = await asyncio.gather(
        attempts.call(limited_once, paced=True), another_worker()
    )
    assert answered == 2 and clock.now() == 12
    assert other_sent_at == 12  # held back by the same pause, not let through at 0


async def test_a_job_error_is_not_retried():
    clock = FakeClock()
    attempts = Attempts(RetryPolicy(), RateLimiter(None, clock=clock), clock, random.Random(1))
    calls = 0

    async def rejected(attempt: int) -> None:
        nonlocal calls
        calls += 1
        raise JobError("400: guidance out of range")

    with pytest.raises(JobError):
        await attempts.call(rejected, paced=False)
    assert calls == 1
