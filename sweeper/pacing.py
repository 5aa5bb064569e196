"""Pacing of generation requests so the account's rate limit is never exceeded.

A strict sliding-window server counts arrivals in the last 60 s. Spacing every
send at least `60 / rpm` seconds apart (plus a small safety margin against
network jitter) guarantees it never sees more than `rpm` in any window, while
sustaining ~99 % of the limit. No bursts: the first send goes at once, then
steady spacing.

`Pacer` is what the retry loop asks of a pacer: this fixed `RateLimiter`, or the
`AdaptivePacer` (sweeper/adaptive.py) that learns the limits for
`requests_per_minute: auto`. `acquire()` returns a ticket that goes back to
exactly one of the hooks, which tell the pacer how the request ended.
"""

from __future__ import annotations

from typing import Any, Protocol

from sweeper.clock import Clock, MonotonicClock


class Pacer(Protocol):
    """Send slots, and how each request that took one ended."""

    async def acquire(self) -> Any: ...

    def slow_down(self, seconds: float) -> None: ...

    def on_success(self, ticket: Any) -> None: ...

    def on_failure(self, ticket: Any) -> None: ...

    def on_rate_limited(self, ticket: Any, retry_after: float | None, pause_s: float) -> None:
        """A 429: `retry_after` is what the server said, `pause_s` the retry policy's wait."""
        ...

    def snapshot(self) -> dict[str, object]: ...


class RateLimiter:
    """Hands out send slots spaced `interval` seconds apart, first come first served.

    Guarantees: at most `requests_per_minute` sends in any 60 s window, and
    consecutive sends never closer than `60 / rpm * (1 + safety)` seconds. A
    caller reserves its slot atomically before waiting for it, so concurrent
    callers get distinct slots in arrival order (FIFO, no starvation). A caller
    cancelled while waiting leaves its slot unused: spacing still holds, at the
    cost of one idle slot. `None` means no cap. `slow_down` pauses every sender
    (after a 429) and never shortens a pause already in force.
    """

    def __init__(
        self,
        requests_per_minute: float | None,
        *,
        clock: Clock | None = None,
        safety: float = 0.01,
    ) -> None:
        if requests_per_minute is not None and requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be > 0 or None")
        self._clock = clock or MonotonicClock()
        self._interval = 0.0 if requests_per_minute is None else 60.0 / requests_per_minute
        self._interval *= 1.0 + safety
        self._safety = safety
        self._next_slot = float("-inf")
        self._paused_until = float("-inf")

    @property
    def interval(self) -> float:
        return self._interval

    async def acquire(self) -> None:
        """Wait until this send is allowed; the slot is reserved before waiting."""
        while True:
            now = self._clock.now()
            slot = max(now, self._next_slot, self._paused_until)
            self._next_slot = slot + self._interval
            if slot > now:
                await self._clock.sleep(slot - now)
            if self._paused_until <= self._clock.now():
                return
            # A pause began while we waited: queue again behind it, in order.

    def slow_down(self, seconds: float) -> None:
        """Start no send before now + seconds."""
        self._paused_until = max(self._paused_until, self._clock.now() + max(0.0, seconds))

    def on_success(self, ticket: None) -> None:
        pass

    def on_failure(self, ticket: None) -> None:
        pass

    def on_rate_limited(self, ticket: None, retry_after: float | None, pause_s: float) -> None:
        """A 429 pauses every sender for the server's Retry-After (else the backoff)."""
        self.slow_down(pause_s)

    def snapshot(self) -> dict[str, object]:
        """The pace as run.json's `rate` records it."""
        rpm = None if self._interval == 0 else round(60.0 / self._interval * (1 + self._safety), 3)
        return {"adaptive": False, "requests_per_minute": rpm}
