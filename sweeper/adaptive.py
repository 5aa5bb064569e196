"""Adaptive pacing for `requests_per_minute: auto`: learn the account's limits from its 429s.

The per-account limits are unpublished, so the pacer finds them. It is a drop-in for
`RateLimiter` (`acquire`, `slow_down`, `interval`) that also hears how each request
ended, through `on_success`, `on_rate_limited` and `on_failure`, and keeps a learned
cap on requests in flight (`concurrency_slot()` queues callers for it in order).

Rate. Sends are spaced `60 / rpm` apart, as `RateLimiter` does. Until the first 429
the rate doubles every `doubling_s` (slow start: from `rpm_start = 60` a limit of a
few hundred is found in a minute or two, where an additive climb would take many).
After that it grows additively, by `(1 - decrease) × the rate that drew the last cut`
over `recovery_min` minutes: back to that level in a few minutes, then past it
slowly, which is how a raised limit is found. A 429 cuts it to
`decrease × min(rpm, N)`, where N is how many of our requests the server accepted
in the 60 s before the refused one: for a per-minute window N is the limit itself,
so a cut at the end of a fast climb lands just under the limit, not under the
overshoot. The rate grows only while we send at least `utilisation` of it: a pool
held back by something else (slow answers, the concurrency cap) cannot talk the
rate up to a value it never tried.

Window. Limits are per minute, and a strict server counts the last 60 s. After a
cut, that minute still holds the sends made at the old rate, and the server refuses
everything until enough of them age out, however slowly we now send. So the pacer
also keeps at most `rpm` of its own accepted sends in any trailing 60 s (plus a
margin for network jitter): the server's own count, which drains the storm instead
of feeding it. Steady spacing already keeps it, so it binds only after a cut.

Storms. Every 429 pauses the pool for its Retry-After (never shortened). Only a 429
for a request sent after the last reaction took effect (its pause over) is news: the
requests in flight when the first 429 came were sent at the old pace, and their 429s
say nothing new. One storm, one cut. A cut also takes back the slots already handed
to waiting callers, which were spaced for the old rate. The server's minute can stay
full after a cut (of requests sent before it, or before we started: a run that just
ended), and only time clears it; so until a request sent after the cut succeeds, a
429 of the same cause within a minute pauses the pool twice as long as the last
(from `storm_backoff_s`) instead of cutting again, which would take the rate to
nothing. For the same reason a rate 429 in our first minute, when N cannot yet be
told from someone else's requests, only pauses.

Rate or concurrency? Per request the client sees how many of ours were in flight
when it left (`in_flight`, itself included). A concurrency cap refuses only a
request that leaves with more in flight than the server allows; a per-minute limit
refuses whatever is in flight. So a 429 is blamed on concurrency when the request
left with at least 2 in flight and with more than any level at or above which
`confirm` requests have succeeded (no success has shown that level safe), and on
the rate otherwise. The cap becomes `max(1, min(floor(decrease × cap), in_flight - 1))`:
the server saw at most what we had in flight, so it allows fewer than that. When
both levels are new, as at the end of slow start where the rate and the number in
flight climb together, concurrency is blamed first: that cut is cheap, and if the
rate was the cause, the next 429 (sent after the pause, with few in flight, at a
level that has succeeded) is blamed on the rate. The opposite mistake would cost
minutes of additive climb. Mistakes against a changing limit correct themselves:
fewer requests per minute also means fewer in flight. `acquire()` never lets more
than the cap be in flight (a caller that took its slot before a cut waits there).
While the cap is full it is raised by one every `concurrency_probe_s`; a raise that
draws a 429 doubles the wait before the next (up to `concurrency_probe_max_s`), so a
known cap costs fewer and fewer probes.

Every `acquire()` returns a `Dispatch`; give it back to exactly one hook.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sweeper.clock import Clock, MonotonicClock
from sweeper.retry import MAX_RETRY_AFTER_S
from sweeper.user_cache import UserCache

logger = logging.getLogger("sweeper")

WINDOW_S = 60.0
# Rate growth is computed from the time since the last growth, at most this much of it,
# so a pool that was idle for an hour does not come back at a rate it never tried.
MAX_GROWTH_STEP_S = 5.0


@dataclass(frozen=True)
class PacingSettings:
    """The controller's knobs; the defaults meet the target in docs/benchmarks-pacing.md."""

    rpm_start: float = 60.0
    rpm_min: float = 1.0
    rpm_max: float = 60_000.0
    # False when starting from a learned rate: climb additively from the start.
    slow_start: bool = True
    doubling_s: float = 30.0
    decrease: float = 0.9
    recovery_min: float = 4.0
    # The pool's own concurrency: the cap never goes above it.
    max_concurrency: int = 256
    # Where the cap starts (a learned one), or None for max_concurrency.
    concurrency_start: int | None = None
    concurrency_probe_s: float = 30.0
    concurrency_probe_max_s: float = 480.0
    # The pause for a 429 that cannot be answered with a cut; it doubles within a storm.
    storm_backoff_s: float = 1.0
    confirm: int = 3
    # The rate grows only while we sent at least `utilisation` of it over the last
    # `bound_horizon_s` (or 4 intervals); the cap only while it was full that recently.
    bound_horizon_s: float = 5.0
    utilisation: float = 0.5
    safety: float = 0.01

    def __post_init__(self) -> None:
        if not 0 < self.rpm_min <= self.rpm_start <= self.rpm_max:
            raise ValueError("need 0 < rpm_min <= rpm_start <= rpm_max")
        if not 0 < self.decrease < 1:
            raise ValueError("decrease must be between 0 and 1")
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if self.concurrency_start is not None and self.concurrency_start < 1:
            raise ValueError("concurrency_start must be at least 1")


def starting_settings(
    *,
    max_concurrency: int,
    rpm_start: float | None,
    cache: UserCache | None,
    api_base: str,
    api_key: str,
) -> PacingSettings:
    """Where a run's pacing starts: `run.rpm_start` if the spec sets it, else the rate
    learned for this API base and key, else 60 a minute with a slow start."""
    if rpm_start is not None:
        return PacingSettings(rpm_start=rpm_start, max_concurrency=max_concurrency)
    learned = cache.learned_rate(api_base, api_key) if cache is not None else None
    if learned is None:
        return PacingSettings(max_concurrency=max_concurrency)
    return PacingSettings(
        rpm_start=min(max(PacingSettings.rpm_min, learned.rpm), PacingSettings.rpm_max),
        slow_start=not learned.capped,
        max_concurrency=max_concurrency,
        concurrency_start=learned.concurrency,
    )


def remember_pace(pacer: AdaptivePacer, cache: UserCache, api_base: str, api_key: str) -> None:
    """Keep where the pacing ended for the next run with this API base and key."""
    concurrency = pacer.current_concurrency
    learned_cap = concurrency < pacer.settings.max_concurrency
    cache.remember_rate(
        api_base,
        api_key,
        rpm=round(pacer.current_rpm, 1),
        concurrency=concurrency if learned_cap else None,
        capped=pacer.capped,
    )


@dataclass(frozen=True)
class Dispatch:
    """One request as it left, and what the pacer knew then; hand it back to one hook."""

    seq: int
    sent_at: float
    # Our requests in flight as it left, itself included.
    in_flight: int
    # Our requests sent in the 60 s before it and not refused with 429.
    window_count: int


class AdaptivePacer:
    """Paces requests at a learned rate and caps them at a learned concurrency."""

    def __init__(
        self, settings: PacingSettings | None = None, *, clock: Clock | None = None
    ) -> None:
        self.settings = settings or PacingSettings()
        self._clock = clock or MonotonicClock()
        now = self._clock.now()
        self._rpm = self.settings.rpm_start
        self._slow_start = self.settings.slow_start
        self._step_rpm_per_min = self._recovery_step(self._rpm)
        self._next_slot = float("-inf")
        self._paused_until = float("-inf")
        self._effective_at = float("-inf")
        self._last_growth_at = now
        self._started_at = now
        self._first_send_at = float("inf")
        # A storm: 429s since the last reaction and before any success since, or None.
        self._storm_refusals: int | None = None
        self._storm_cause = ""
        self._storm_started_at = float("-inf")
        # Send times of our requests in the last minute (and reserved ones), sorted.
        self._sends: list[float] = []
        self._seq = 0
        self._outstanding: set[int] = set()
        # Slots reserved by callers still waiting in acquire(), by ticket.
        self._reserved: dict[int, float] = {}
        self._settle_waiters: list[asyncio.Future[None]] = []
        self._successes_at: collections.Counter[int] = collections.Counter()
        self.rate_cuts = 0
        self.concurrency_cuts = 0
        self.rate_limited = 0
        # Concurrency cap and its slots.
        start = self.settings.concurrency_start or self.settings.max_concurrency
        self._concurrency = min(start, self.settings.max_concurrency)
        self._holders = 0
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._concurrency_bound_at = float("-inf")
        self._concurrency_changed_at = now
        self._probe_wait_s = self.settings.concurrency_probe_s
        self._probing = False

    @property
    def current_rpm(self) -> float:
        return self._rpm

    @property
    def current_concurrency(self) -> int:
        return self._concurrency

    @property
    def capped(self) -> bool:
        """True once a 429 has bounded the rate: `current_rpm` is then a learned ceiling."""
        return self.rate_cuts > 0 or not self.settings.slow_start

    @property
    def interval(self) -> float:
        return 60.0 / self._rpm * (1.0 + self.settings.safety)

    @property
    def in_flight(self) -> int:
        return len(self._outstanding)

    def snapshot(self) -> dict[str, object]:
        """The pacing state as run.json's `rate` records it."""
        return {
            "adaptive": True,
            "requests_per_minute": round(self._rpm, 1),
            "concurrency": self._concurrency,
            "phase": "slow_start" if self._slow_start else "additive",
            "rate_cuts": self.rate_cuts,
            "concurrency_cuts": self.concurrency_cuts,
            "answered_429": self.rate_limited,
        }

    async def acquire(self) -> Dispatch:
        """Wait for this request's send slot; the slot is reserved before waiting (FIFO).

        Never lets more than `current_concurrency` of ours be in flight: a caller that
        took its concurrency slot before a cut waits here until the cut allows it.
        """
        while True:
            if len(self._outstanding) >= self._concurrency:
                await self._next_settlement()
                continue
            now = self._clock.now()
            slot = max(now, self._next_slot, self._window_slot(), self._paused_until)
            self._next_slot = slot + self.interval
            ticket = self._reserve(slot)
            try:
                if slot > now:
                    await self._clock.sleep(slot - now)
            except asyncio.CancelledError:
                self._reserved.pop(ticket, None)  # its place stays counted: spacing holds
                raise
            held = self._reserved.pop(ticket, None) is not None
            if (
                held
                and self._paused_until <= self._clock.now()
                and len(self._outstanding) < self._concurrency
            ):
                return self._dispatch(slot)
            # A pause or a cut came while we waited: queue again. (A cut has already taken
            # the slot back: a slot spaced for the old rate would feed the storm.)
            if held:
                self._forget_send(slot)

    def slow_down(self, seconds: float) -> None:
        """Start no send before now + seconds (never shortens a pause already in force)."""
        self._paused_until = max(self._paused_until, self._clock.now() + max(0.0, seconds))
        self._release_reservations(before=self._paused_until)

    def on_success(self, dispatch: Dispatch) -> None:
        """The request succeeded: the pace it left at is fine."""
        if not self._settle(dispatch):
            return
        self._successes_at[dispatch.in_flight] += 1
        if dispatch.sent_at >= self._effective_at:
            self._storm_refusals = None  # the cut worked: the storm is over
            now = self._clock.now()
            self._grow_rate(now)
            self._grow_concurrency(now)

    def on_failure(self, dispatch: Dispatch) -> None:
        """Any other end (an error status, no answer): no news about the limits."""
        self._settle(dispatch)

    def on_rate_limited(
        self, dispatch: Dispatch, retry_after: float | None, pause_s: float = 0.0
    ) -> None:
        """The request was answered 429: pause for Retry-After; react once per storm."""
        if not self._settle(dispatch):
            return
        self.rate_limited += 1
        self._forget_send(dispatch.sent_at)  # the server did not count it
        if retry_after is not None:
            self.slow_down(min(retry_after, MAX_RETRY_AFTER_S))
        if dispatch.sent_at < self._effective_at:
            return  # sent before the last reaction took effect: nothing new
        now = self._clock.now()
        cause = "concurrency" if self._blame_concurrency(dispatch) else "rate"
        if self._storm_goes_on(cause, now):
            self._back_off()
        elif cause == "concurrency":
            self._start_storm(cause, now)
            self._cut_concurrency(dispatch)
        elif dispatch.sent_at - self._first_send_at >= WINDOW_S:
            self._start_storm(cause, now)
            self._cut_rate(dispatch)
        else:
            # Less than a minute of ours: the server's minute may be full of requests from
            # before us (a run that just ended), so the count we sent says nothing yet.
            self._start_storm(cause, now)
            self._back_off()
        self._effective_at = max(now, self._paused_until)
        self._last_growth_at = self._effective_at

    def _storm_goes_on(self, cause: str, now: float) -> bool:
        """True for a 429 of the same cause after a reaction and before any success.

        The server's minute can stay full well after a cut (of requests from before
        the cut, or from before we started); only time clears it. Cutting again for
        each refusal would take the rate to nothing, so within a minute of the
        storm's start it is answered with a longer pause instead.
        """
        return (
            self._storm_refusals is not None
            and cause == self._storm_cause
            and now < self._storm_started_at + WINDOW_S
        )

    def _start_storm(self, cause: str, now: float) -> None:
        self._storm_refusals = 0
        self._storm_cause = cause
        self._storm_started_at = now

    def _back_off(self) -> None:
        """Pause twice as long as at the storm's last refusal (at most a minute)."""
        assert self._storm_refusals is not None
        pause = min(self.settings.storm_backoff_s * 2**self._storm_refusals, WINDOW_S)
        self._storm_refusals += 1
        self.slow_down(pause)

    @asynccontextmanager
    async def concurrency_slot(self) -> AsyncIterator[None]:
        """Hold one of the `current_concurrency` slots (first come, first served)."""
        await self._take_slot()
        try:
            yield
        finally:
            self._holders -= 1
            self._wake_slot_waiters()

    def _dispatch(self, slot: float) -> Dispatch:
        self._first_send_at = min(self._first_send_at, slot)
        self._seq += 1
        self._outstanding.add(self._seq)
        if len(self._outstanding) >= self._concurrency:
            self._concurrency_bound_at = slot
        self._drop_old_sends(slot)
        return Dispatch(
            self._seq, slot, len(self._outstanding), self._sent_between(slot - WINDOW_S, slot)
        )

    def _sent_between(self, start: float, end: float) -> int:
        """Our sends (not refused with 429) in the open interval (start, end)."""
        return bisect.bisect_left(self._sends, end) - bisect.bisect_right(self._sends, start)

    def _settle(self, dispatch: Dispatch) -> bool:
        if dispatch.seq not in self._outstanding:
            return False  # settled already: a second hook for it changes nothing
        self._outstanding.discard(dispatch.seq)
        waiters, self._settle_waiters = self._settle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        return True

    async def _next_settlement(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._settle_waiters.append(waiter)
        await waiter

    def _window_slot(self) -> float:
        """The earliest time another send keeps our last-60-s count within the rate."""
        cap = max(1, math.floor(self._rpm))
        if len(self._sends) < cap:
            return float("-inf")
        return self._sends[-cap] + WINDOW_S * (1.0 + self.settings.safety)

    def _reserve(self, slot: float) -> int:
        self._seq += 1
        self._reserved[self._seq] = slot
        bisect.insort(self._sends, slot)
        return self._seq

    def _release_reservations(self, before: float) -> None:
        """Stop counting waiters' slots before `before`; those waiters will queue again."""
        for ticket, slot in list(self._reserved.items()):
            if slot < before:
                del self._reserved[ticket]
                self._forget_send(slot)

    def _forget_send(self, sent_at: float) -> None:
        index = bisect.bisect_left(self._sends, sent_at)
        if index < len(self._sends) and self._sends[index] == sent_at:
            del self._sends[index]

    def _drop_old_sends(self, now: float) -> None:
        horizon = now - 2 * WINDOW_S
        if self._sends and self._sends[0] < horizon:
            del self._sends[: bisect.bisect_left(self._sends, horizon)]

    def _recovery_step(self, rpm: float) -> float:
        """Additive growth per minute that regains a cut of `rpm` in `recovery_min` minutes."""
        settings = self.settings
        return (1.0 - settings.decrease) * rpm / settings.recovery_min

    def _grow_rate(self, now: float) -> None:
        elapsed = min(max(0.0, now - self._last_growth_at), MAX_GROWTH_STEP_S)
        self._last_growth_at = now
        if not self._rate_is_the_bottleneck(now):
            return  # something else holds the senders back: a higher rate would be untested
        if self._slow_start:
            self._rpm *= 2.0 ** (elapsed / self.settings.doubling_s)
        else:
            self._rpm += self._step_rpm_per_min * elapsed / 60.0
        self._rpm = min(self._rpm, self.settings.rpm_max)

    def _rate_is_the_bottleneck(self, now: float) -> bool:
        """True when we recently sent at least `utilisation` of the current rate."""
        span = min(max(self.settings.bound_horizon_s, 4 * self.interval), now - self._started_at)
        if span < self.interval:
            return False
        sent_per_min = self._sent_between(now - span, now + 1e-9) * 60.0 / span
        return sent_per_min >= self.settings.utilisation * self._rpm

    def _cut_rate(self, dispatch: Dispatch) -> None:
        accepted = max(1, dispatch.window_count)
        reference = min(self._rpm, accepted)
        self._rpm = max(self.settings.rpm_min, self.settings.decrease * reference)
        self._step_rpm_per_min = self._recovery_step(reference)
        self._slow_start = False
        self._next_slot = float("-inf")
        self._release_reservations(before=float("inf"))
        self.rate_cuts += 1
        logger.info(
            "rate limited (429) after %d requests in a minute: pacing at %.0f/min",
            accepted,
            self._rpm,
        )

    def _confirmed_concurrency(self) -> int:
        """The highest in-flight level at or above which `confirm` requests have succeeded."""
        seen = 0
        for level in sorted(self._successes_at, reverse=True):
            seen += self._successes_at[level]
            if seen >= self.settings.confirm:
                return level
        return 0

    def _blame_concurrency(self, dispatch: Dispatch) -> bool:
        return dispatch.in_flight >= 2 and dispatch.in_flight > self._confirmed_concurrency()

    def _cut_concurrency(self, dispatch: Dispatch) -> None:
        previous = self._concurrency
        shrunk = math.floor(self.settings.decrease * previous)
        self._concurrency = max(1, min(shrunk, dispatch.in_flight - 1))
        if self._probing:  # the last raise drew this 429: wait longer before the next
            self._probe_wait_s = min(self._probe_wait_s * 2, self.settings.concurrency_probe_max_s)
        self._probing = False
        self._concurrency_changed_at = self._clock.now()
        self.concurrency_cuts += 1
        logger.info(
            "rate limited (429) with %d requests in flight: at most %d at once",
            dispatch.in_flight,
            self._concurrency,
        )

    def _grow_concurrency(self, now: float) -> None:
        if self._concurrency >= self.settings.max_concurrency:
            return
        if now - self._concurrency_bound_at > self.settings.bound_horizon_s:
            return  # the cap was not full lately: a larger one would be untested
        if now - self._concurrency_changed_at < self._probe_wait_s:
            return
        if self._probing:  # the previous raise survived a whole wait: probe at the base pace
            self._probe_wait_s = self.settings.concurrency_probe_s
        self._concurrency += 1
        self._probing = True
        self._concurrency_changed_at = now
        self._wake_slot_waiters()

    async def _take_slot(self) -> None:
        if self._holders < self._concurrency and not self._slot_waiters:
            self._holders += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._slot_waiters.append(waiter)
        try:
            await waiter  # resolved with the slot already counted as ours
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._holders -= 1
                self._wake_slot_waiters()
            else:
                self._slot_waiters.remove(waiter)
            raise

    def _wake_slot_waiters(self) -> None:
        while self._slot_waiters and self._holders < self._concurrency:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                self._holders += 1
                waiter.set_result(None)
