"""The exception hierarchy every sweeper failure belongs to.

    SweeperError            anything sweeper raises on purpose
    ├── SpecError           the user's spec or command line is wrong (exit 2)
    │   └── StorageError    object storage refused or failed (push, pull)
    ├── AbortError          the whole run must stop now (exit 3)
    │   ├── AuthError       the API key is missing or was rejected
    │   ├── CreditsError    the account is out of credits
    │   ├── UploadFailed    an input image could not be uploaded, so no job can run
    │   ├── ApiUnavailable  job after job gave up on transient failures: an outage
    │   ├── ApiRedirected   the API answered a redirect, which would carry the key away
    │   └── InterruptedRun  the user pressed Ctrl-C or the process got SIGTERM
    │       ├── BudgetReached       the next request could pass run.max_credits
    │       └── RequestLimitReached the next request would pass run.max_requests
    ├── TransientError      a failure worth retrying (5xx, 429, reset, timeout)
    │   ├── RateLimited     a 429; carries the server's Retry-After, if any
    │   ├── NotSent         the request never reached the server: resend freely
    │   └── Unanswered      the request was written, no answer came: maybe billed
    └── JobError            this one job failed for good; the run goes on
        └── RecordFailed    the API answered with a record that is not SUCCESS

Messages never contain the API key. An error that ended a run carries that
run's `RunResult` as `.result` (None otherwise); an `AbortError`'s `reason` is
the code run.json records. `is_environment_error` tells the machine's failures
(a full disk, a permission, a broken database) from bugs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sweeper.run_result import RunResult


class SweeperError(Exception):
    """Base of every error sweeper raises on purpose."""

    exit_code = 1
    result: RunResult | None = None


class SpecError(SweeperError):
    """The spec file or a command-line value is wrong; nothing was sent.

    `problems` lists every problem found, one self-contained line each
    (`<file>: line L, column C: <field>: <what is wrong>`); `str(error)` is that line
    when there is one, else a count followed by the problems, one per line.
    """

    exit_code = 2

    def __init__(self, message: str, *, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems) or [message]


class StorageError(SpecError):
    """Object storage refused or failed an operation; the message is one scrubbed line."""


class AbortError(SweeperError):
    """The run cannot go on; finished work is kept."""

    exit_code = 3
    reason = "environment"


class AuthError(AbortError):
    """The API key is missing or the API rejected it (401/403)."""

    reason = "auth"


class CreditsError(AbortError):
    """The account has run out of credits (402 or a credits message)."""

    reason = "credits"


class UploadFailed(AbortError):
    """Every attempt to upload an input image failed: the API is down or unreachable."""

    reason = "upload_failed"


class ApiUnavailable(AbortError):
    """Several jobs in a row exhausted their attempts: the API is down or unreachable."""

    reason = "too_many_failures"


class ApiRedirected(AbortError):
    """The API answered 3xx: following it would send the key to another host."""

    reason = "redirect"


class InterruptedRun(AbortError):
    """The user stopped the run (SIGINT/SIGTERM)."""

    reason = "signal"


class TransientError(SweeperError):
    """A failure that may succeed if tried again."""


class RateLimited(TransientError):
    """The server answered 429; `retry_after` is in seconds when it said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BudgetReached(InterruptedRun):
    """The next request could make the server bill past run.max_credits: stop sending."""

    reason = "budget"


class RequestLimitReached(InterruptedRun):
    """The next request would pass run.max_requests: stop sending."""

    reason = "max_requests"


class NotSent(TransientError):
    """The request never reached the server (connect error or timeout): resend freely."""


class Unanswered(TransientError):
    """The request was written but no readable answer came: it may have been billed."""


class JobError(SweeperError):
    """This job failed for good (invalid request, failed record, dead URL)."""


class RecordFailed(JobError):
    """The API answered with a generation record that is not SUCCESS: it may have billed.

    `used_credit` is the team's running total the answer carried, if it did.
    """

    def __init__(self, message: str, used_credit: float | None = None) -> None:
        super().__init__(message)
        self.used_credit = used_credit


def is_environment_error(error: BaseException) -> bool:
    """A full disk, a permission, a locked or broken database: the machine's, not a bug."""
    import sqlite3  # here, not at the top: `sweeper --help` imports this module

    return isinstance(error, OSError | sqlite3.Error)
