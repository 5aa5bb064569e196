"""Tell someone how an unattended run ended: POST its record to a URL (`--notify`).

The body is the run's run.json with a one-line human `text` field added, which
is what Slack and most chat webhooks show. One try with a short timeout, and
one more after a failure; a notification that cannot be delivered is a warning
and never changes how the run ends. A webhook URL is a secret (Slack's carries
its token in the path): only its host is ever logged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

from sweeper.errors import SpecError

TIMEOUT_S = 10.0
TRIES = 2
RETRY_AFTER_S = 1.0
NOTIFY_ENV = "SWEEPER_NOTIFY"
logger = logging.getLogger("sweeper")


def check_notify_url(url: str) -> str:
    """A URL a notification can go to, refused (before anything is sent) if it cannot."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(f"--notify / {NOTIFY_ENV}: not an http(s) URL (host {parts.hostname})")
    return url


def summary_text(record: dict[str, Any]) -> str:
    """One line a person reads in a chat: the run, how it ended, what it did."""
    jobs = record.get("jobs") or {}
    this_run = record.get("this_run") or {}
    text = (
        f"sweeper {record.get('spec_name', '?')}: {record.get('outcome', '?')}"
        f"{' (' + str(record['reason']) + ')' if record.get('reason') else ''}; "
        f"{jobs.get('succeeded', 0)}/{jobs.get('total', 0)} jobs done, "
        f"{this_run.get('requests', 0)} requests this run"
    )
    for key, words in (("failed", "failed"), ("lost", "lost"), ("unanswered", "unanswered")):
        if jobs.get(key):
            text += f", {jobs[key]} {words}"
    spent = (record.get("credits") or {}).get("spent")
    if spent is not None:
        text += f", {spent:g} credits"
    return text


async def send_notification(url: str, record: dict[str, Any]) -> bool:
    """POST the record; True if the receiver took it. Never raises for a failed delivery."""
    import aiohttp

    host = urlsplit(url).hostname
    body = record | {"text": summary_text(record)}
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    for attempt in range(1, TRIES + 1):
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(url, json=body, allow_redirects=False) as answer,
            ):
                if 200 <= answer.status < 300:
                    return True
                problem = f"HTTP {answer.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            problem = type(error).__name__
        if attempt < TRIES:
            await asyncio.sleep(RETRY_AFTER_S)
    logger.warning("could not notify %s (%s); the run's result stands", host, problem)
    return False
