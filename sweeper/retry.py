"""When to try again: exponential backoff with full jitter, and `Retry-After`.

Pure functions of the attempt number, a seeded random generator and what the
server said; the retry loop itself lives in `sweeper.attempts`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

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
