"""What a run may spend (`max_credits`, `max_requests`), and the price per image it learns.

The run must never cause the server to bill past the cap, so spending is counted
before it happens: a request reserves its price (price × images asked) before it is
sent, and its reservation is closed by what came back:

- `settle(billed_images, used_credit)`: answered SUCCESS, spent at the current price;
- `failed_record(used_credit)`: answered with a record that is not SUCCESS; it may
  have been billed, so it counts as spent in full;
- `refused()`: answered with an error status (429, 4xx, 5xx), or never sent: nothing
  billed;
- `unanswered()`: no answer; it may have been billed, so it counts as spent in full.

`reserve()` refuses (returns None) once the next request could pass a cap even if
every request in flight were refused; while it would fit only if some of them were,
it waits for them. Once it has refused it always refuses: the pool stops sending,
lets the requests in flight finish, and ends the run with `stop_reason`.

Price. The API does not say what an image costs, but each answer carries the team's
running total, `teamUser.usedCredit`. Between two consecutive answers the total grows
by at least the later answer's own bill (it is a snapshot taken after billing), and
by more when someone else on the team, or one of our requests answered out of order,
was billed in between; so each positive delta divided by the images in the later
answer is an upper bound of the price, and the smallest one seen is the estimate.
It is never below the true price, so a budget reckoned with it never overspends.
Until a price is known (from `run.credits_per_image`, a learned price in the user
cache, or two answers), a capped run sends one request at a time: the first two
requests are therefore sent before anything says what they cost. A price learned in
this run replaces a cached one, even a higher one: prices can rise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

from sweeper.user_cache import UserCache

PriceSource = Literal["spec", "learned", "cache"]
StopReason = Literal["budget", "max_requests"]
# Float prices (a learned 700.0, a spec's 0.35) must not refuse a request that fits exactly.
TOLERANCE = 1e-9


class PriceLearner:
    """The smallest positive `usedCredit` delta per image over consecutive answers."""

    def __init__(self) -> None:
        self.price: float | None = None
        self._last_used_credit: float | None = None

    def observe(self, used_credit: float | None, billed_images: int) -> bool:
        """Take one answer's running total; True when it lowered (or set) the price."""
        if used_credit is None:
            return False
        previous, self._last_used_credit = self._last_used_credit, used_credit
        if previous is None or billed_images <= 0 or used_credit <= previous:
            return False
        candidate = (used_credit - previous) / billed_images
        if self.price is not None and candidate >= self.price:
            return False
        self.price = candidate
        return True


class Reservation:
    """One request's claim on the budget; close it exactly once with what came back."""

    def __init__(self, budget: Budget, images: int) -> None:
        self.images = images
        self._budget = budget
        self._open = True

    def settle(self, billed_images: int | None = None, used_credit: float | None = None) -> None:
        """Answered SUCCESS: `billed_images` (default: as reserved) were billed."""
        billed = self.images if billed_images is None else billed_images
        if self._close():
            self._budget._record_answer(billed, used_credit, learn_from=billed)

    def failed_record(self, used_credit: float | None = None) -> None:
        """Answered with a record that is not SUCCESS: perhaps billed, so spent in full.

        Its `usedCredit` is no evidence of the price (nothing says what it was charged),
        only the total the next answer is compared with.
        """
        if self._close():
            self._budget._record_answer(self.images, used_credit, learn_from=0)

    def refused(self) -> None:
        """Answered with an error status, or never sent: the server billed nothing."""
        if self._close():
            self._budget._changed()

    def unanswered(self) -> None:
        """No answer: it may have been billed, so it is spent in full."""
        if self._close():
            self._budget._record_unanswered(self.images)

    def _close(self) -> bool:
        if not self._open:
            return False  # closed already: the first word stands
        self._open = False
        self._budget._release(self)
        return True


class Budget:
    """Counts what a run has spent and reserved, and refuses a request that could pass a cap."""

    def __init__(
        self,
        *,
        max_credits: float | None = None,
        max_requests: int | None = None,
        price: float | None = None,
        price_source: PriceSource | None = None,
        on_price_learned: Callable[[float], None] = lambda price: None,
    ) -> None:
        if max_credits is not None and max_credits < 0:
            raise ValueError("max_credits must be >= 0")
        if max_requests is not None and max_requests < 0:
            raise ValueError("max_requests must be >= 0")
        if (price is None) != (price_source is None) or (price is not None and price <= 0):
            raise ValueError("give a positive price with its source, or neither")
        self.max_credits = max_credits
        self.max_requests = max_requests
        self._given_price = price
        self._given_source = price_source
        self._learner = PriceLearner()
        self._on_price_learned = on_price_learned
        self._spent_images = 0
        self._spent_requests = 0
        self._in_flight: set[Reservation] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self.stop_reason: StopReason | None = None

    @classmethod
    def for_run(
        cls,
        *,
        api_base: str,
        model: str,
        max_credits: float | None = None,
        max_requests: int | None = None,
        credits_per_image: float | None = None,
        cache: UserCache | None = None,
    ) -> Budget:
        """A run's budget: the spec's price, else the cache's; learned prices go to the cache."""
        price: float | None = credits_per_image
        source: PriceSource | None = "spec" if price is not None else None
        if price is None and cache is not None:
            price = cache.learned_price(api_base, model)
            source = "cache" if price is not None else None

        def remember(learned: float) -> None:
            if cache is not None:
                cache.remember_price(api_base, model, learned)

        return cls(
            max_credits=max_credits,
            max_requests=max_requests,
            price=price,
            price_source=source,
            on_price_learned=remember,
        )

    @property
    def price(self) -> float | None:
        """Credits per image the budget reckons with: spec, else learned now, else cache."""
        if self._given_source == "spec":
            return self._given_price
        return self._learner.price if self._learner.price is not None else self._given_price

    @property
    def price_source(self) -> PriceSource | None:
        if self._given_source == "spec":
            return "spec"
        return "learned" if self._learner.price is not None else self._given_source

    @property
    def learned_price(self) -> float | None:
        """What this run's answers say an image costs, whatever price the budget uses."""
        return self._learner.price

    @property
    def spent_images(self) -> int:
        return self._spent_images

    @property
    def spent_requests(self) -> int:
        """Requests answered with a record, or not answered at all."""
        return self._spent_requests

    @property
    def spent_credits(self) -> float | None:
        price = self.price
        return None if price is None else price * self._spent_images

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def snapshot(self) -> dict[str, Any]:
        """What run.json's `credits` records."""
        spent = self.spent_credits
        return {
            "spent": None if spent is None else round(spent, 6),
            "spent_images": self._spent_images,
            "spent_requests": self._spent_requests,
            "price_per_image": self.price,
            "price_source": self.price_source,
            "max_credits": self.max_credits,
            "max_requests": self.max_requests,
            "stopped": self.stop_reason,
        }

    async def reserve(self, images: int = 1) -> Reservation | None:
        """Claim the budget for one request of `images` images, or None: stop sending."""
        if images < 1:
            raise ValueError("a request asks for at least one image")
        while self.stop_reason is None:
            refusal = self._refusal(images, counting_in_flight=False)
            if refusal is not None:
                self.stop_reason = refusal
                break
            if self._may_send_now(images):
                reservation = Reservation(self, images)
                self._in_flight.add(reservation)
                return reservation
            await self._next_change()
        return None

    def _may_send_now(self, images: int) -> bool:
        if self.max_credits is not None and self.price is None:
            return not self._in_flight  # price unknown: one at a time
        return self._refusal(images, counting_in_flight=True) is None

    def _refusal(self, images: int, *, counting_in_flight: bool) -> StopReason | None:
        """Which cap the next request could pass, or None if it fits."""
        in_flight = list(self._in_flight) if counting_in_flight else []
        requests = self._spent_requests + len(in_flight) + 1
        if self.max_requests is not None and requests > self.max_requests:
            return "max_requests"
        price = self.price
        if self.max_credits is not None and price is not None:
            reserved_images = sum(r.images for r in in_flight)
            worst_case = (self._spent_images + reserved_images + images) * price
            if worst_case > self.max_credits * (1 + TOLERANCE):
                return "budget"
        return None

    def _record_answer(self, spent_images: int, used_credit: float | None, learn_from: int) -> None:
        self._spent_requests += 1
        self._spent_images += max(0, spent_images)
        if self._learner.observe(used_credit, learn_from):
            assert self._learner.price is not None
            self._on_price_learned(self._learner.price)
        self._changed()

    def _record_unanswered(self, images: int) -> None:
        self._spent_requests += 1
        self._spent_images += images
        self._changed()

    def _release(self, reservation: Reservation) -> None:
        self._in_flight.discard(reservation)

    async def _next_change(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def _changed(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
