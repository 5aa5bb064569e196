"""Time as the timing logic sees it: a real monotonic clock, or a virtual one for tests.

The rate limiter and the retry loop only ever ask `now()` and `await sleep()`, so
tests drive them with `FakeClock` and never sleep for real.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """The real clock: `time.monotonic` and `asyncio.sleep`."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """Virtual time: `sleep` jumps the clock forward instead of waiting.

    Each sleeper advances time to its own wake-up moment once every task that
    started earlier has had a chance to run, so concurrent sleepers wake in
    virtual-time order. `sleeps` records every requested duration.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._wakeups: list[float] = []
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.sleeps.append(seconds)
        wake_at = self._now + seconds
        self._wakeups.append(wake_at)
        try:
            # Let every other ready task run (and register its own wake-up) first.
            for _ in range(3):
                await asyncio.sleep(0)
            # Test-only busy yield: simpler than per-sleeper events and just as ordered.
            while min(self._wakeups) < wake_at:  # noqa: ASYNC110
                await asyncio.sleep(0)
        finally:
            self._wakeups.remove(wake_at)
        self._now = max(self._now, wake_at)
