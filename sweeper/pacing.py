"""Pacing of generation requests so the account's rate limit is never exceeded.

A strict sliding-window server counts arrivals in the last 60 s. Spacing every
send at least `60 / rpm` seconds apart (plus a small safety margin against
network jitter) guarantees it never sees more than `rpm` in any window, while
sustaining ~99 % of the limit. No bursts: the first send goes at once, then
steady spacing.
"""

from __future__ import annotations

from sweeper.clock import Clock, MonotonicClock


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
