"""Retrying, as the contract's error table asks: when to try again, and the loop that does.

`RetryPolicy` and `parse_retry_after` are pure functions of the attempt number, a
seeded random generator and what the server said: exponential backoff with full
jitter, or exactly the `Retry-After` the server gave. `Attempts` is the loop:
transient failures wait their backoff; a 429 pauses the whole pool through the
shared pacer (so every worker slows down, not just the one that was told);
anything else propagates at once. Time and randomness are injected so tests can
drive it without sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from sweeper.clock import Clock, MonotonicClock
from sweeper.errors import InterruptedRun, RateLimited, TransientError, Unanswered
from sweeper.pacing import Pacer

T = TypeVar("T")

# A server asking for more than this is treated as asking for this much, so one
# odd header cannot park a nightly run for hours.
MAX_RETRY_AFTER_S = 900.0


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts a request gets and how long to wait between them."""

    max_attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform(0, min(max, base * 2**(attempt-1))) after failed `attempt`."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** max(0, attempt - 1))
        return rng.uniform(0.0, ceiling)

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """The wait before the next attempt: exactly what the server asked, else backoff."""
        if retry_after is not None:
            return min(max(0.0, retry_after), MAX_RETRY_AFTER_S)
        return self.backoff(attempt, rng)

    def should_retry(self, attempt: int) -> bool:
        return attempt < self.max_attempts


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until_date(text, now or datetime.now(UTC))
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return None
    return seconds


def _seconds_until_date(text: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class GaveUp(TransientError):
    """Every allowed attempt failed transiently; `last` is the last failure."""

    def __init__(self, message: str, last: TransientError | None) -> None:
        super().__init__(message)
        self.last = last


@dataclass
class Attempts:
    """Shared retry machinery: policy, pacing, clock, jitter and the stop switch."""

    policy: RetryPolicy
    limiter: Pacer
    clock: Clock = field(default_factory=MonotonicClock)
    rng: random.Random = field(default_factory=random.Random)
    stopping: Callable[[], bool] = lambda: False

    async def call(
        self,
        operation: Callable[[int], Awaitable[T]],
        *,
        paced: bool,
        max_attempts: int | None = None,
        resend_unanswered: bool = True,
    ) -> T:
        """Call `operation(attempt)` until it succeeds or attempts run out.

        `paced` calls wait for the rate limiter before every attempt and are not
        started once the run is stopping (InterruptedRun). An `Unanswered` attempt may
        have been billed: unless `resend_unanswered`, it is raised at once instead of
        tried again. Raises GaveUp after the last transient failure.
        """
        limit = max_attempts or self.policy.max_attempts
        last: TransientError | None = None
        for attempt in range(1, limit + 1):
            try:
                return await self._attempt(operation, attempt, paced)
            except RateLimited as error:
                last = error
                if not paced:  # a download: only this one waits, the pool goes on
                    await self.clock.sleep(self.policy.delay(attempt, self.rng, error.retry_after))
            except TransientError as error:
                if isinstance(error, Unanswered) and not resend_unanswered:
                    raise
                last = error
                if attempt < limit:
                    await self.clock.sleep(self.policy.backoff(attempt, self.rng))
        raise GaveUp(f"gave up after {limit} attempts: {last}", last)

    async def _attempt(
        self, operation: Callable[[int], Awaitable[T]], attempt: int, paced: bool
    ) -> T:
        """One try; a paced one takes a send slot and tells the pacer how it ended."""
        if not paced:
            return await operation(attempt)
        ticket = await self.limiter.acquire()
        try:
            # Only paid requests stop; downloads of images already paid for go on.
            if self.stopping():
                raise InterruptedRun("the run is stopping")
            result = await operation(attempt)
        except RateLimited as error:
            pause = self.policy.delay(attempt, self.rng, error.retry_after)
            self.limiter.on_rate_limited(ticket, error.retry_after, pause)
            raise
        except BaseException:
            self.limiter.on_failure(ticket)
            raise
        self.limiter.on_success(ticket)
        return result
