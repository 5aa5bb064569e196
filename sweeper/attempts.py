"""Run one operation with bounded retries, as the contract's error table asks.

Transient failures wait an exponential backoff with full jitter; a 429 pauses the
whole pool through the shared rate limiter (so every worker slows down, not just
the one that was told). Anything else propagates at once. Time and randomness are
injected so tests can drive it without sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sweeper.clock import Clock, MonotonicClock
from sweeper.errors import InterruptedRun, RateLimited, TransientError
from sweeper.ratelimit import RateLimiter
from sweeper.retry import RetryPolicy

T = TypeVar("T")


class GaveUp(TransientError):
    """Every allowed attempt failed transiently; carries the last failure."""


@dataclass
class Attempts:
    """Shared retry machinery: policy, pacing, clock, jitter and the stop switch."""

    policy: RetryPolicy
    limiter: RateLimiter
    clock: Clock = field(default_factory=MonotonicClock)
    rng: random.Random = field(default_factory=random.Random)
    stopping: Callable[[], bool] = lambda: False

    async def call(
        self,
        operation: Callable[[int], Awaitable[T]],
        *,
        paced: bool,
        max_attempts: int | None = None,
    ) -> T:
        """Call `operation(attempt)` until it succeeds or attempts run out.

        `paced` calls wait for the rate limiter before every attempt and are not
        started once the run is stopping (InterruptedRun). Raises GaveUp after the
        last transient failure.
        """
        limit = max_attempts or self.policy.max_attempts
        last: TransientError | None = None
        for attempt in range(1, limit + 1):
            if paced:
                await self.limiter.acquire()
            # Only paid requests stop; downloads of images already paid for go on.
            if paced and self.stopping():
                raise InterruptedRun("the run is stopping")
            try:
                return await operation(attempt)
            except RateLimited as error:
                last = error
                await self._pause_pool(attempt, error.retry_after, paced=paced)
            except TransientError as error:
                last = error
                if attempt < limit:
                    await self.clock.sleep(self.policy.backoff(attempt, self.rng))
        raise GaveUp(f"gave up after {limit} attempts: {last}")

    async def _pause_pool(self, attempt: int, retry_after: float | None, *, paced: bool) -> None:
        delay = self.policy.delay(attempt, self.rng, retry_after)
        self.limiter.slow_down(delay)
        if not paced:
            await self.clock.sleep(delay)
