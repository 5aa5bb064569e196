"""How a simulator behaves: latency, limits, the accepted key, and scripted faults."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

ENDPOINTS = ("assets", "features", "storage")
FAULT_KINDS = (
    "status",  # answer `status` with a JSON {"message"}
    "html_502",  # a gateway's HTML error page, not JSON
    "rate_limit",  # 429, with Retry-After `retry_after` (seconds or HTTP date) or none
    "reset",  # drop the connection without answering
    "hang",  # never answer (the client's timeout must fire)
    "truncated",  # storage: promise more bytes than are sent
    "expired",  # storage: S3's 403 "Request has expired"
    "record_failed",  # features: 200 with status FAILED and no outputs
    "credits",  # 402 Insufficient credits
    "latency",  # answer normally after `delay_s` more seconds
    "billed_drop",  # features: do the edit and bill it, then drop the connection unanswered
    "redirect",  # answer `status` (a 3xx) with Location: `location`
    "gzip_bomb",  # a 200 whose gzip body inflates to `size_mb` megabytes
    "deep_json",  # answer `status` with JSON nested 100,000 levels deep
    "bomb_image",  # storage: a PNG that claims 100,000 x 100,000 pixels
    "extra_results",  # features: a SUCCESS listing `extra` more images than asked for
    "missing_url",  # features: a SUCCESS whose temporaryUrl lacks the last image's URL
    "forget_assets",  # features: forget every upload first (as if they expired)
    "garbage",  # storage: bytes of the promised length that are not an image
    "echo_key",  # answer `status` with a message that repeats the API key it was sent
)


@dataclass
class FaultRule:
    """Make `times` requests to `endpoint` misbehave as `kind`, after letting `after` pass."""

    endpoint: str
    kind: str
    times: int = 1
    after: int = 0
    status: int = 500
    message: str = "simulated failure"
    retry_after: str | None = None
    delay_s: float = 0.0
    location: str = ""
    size_mb: int = 64
    extra: int = 9

    def __post_init__(self) -> None:
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}")
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {FAULT_KINDS}")


@dataclass
class SimulatorConfig:
    """Everything about a simulator run; the defaults behave like a healthy API."""

    latency_s: float = 0.0
    rpm_limit: float | None = None
    # Answer 429 to a feature request that arrives while this many are being processed.
    max_concurrent: int | None = None
    api_key: str | None = None
    credit_limit: int | None = None
    # What one output image costs; `teamUser.usedCredit` reports the running total.
    credits_per_image: int = 1
    tiny_images: bool = False
    rate_limit_retry_after_s: float | None = 1.0
    omit_file_content: bool = False
    # Answer temporaryUrl and resultObject as single strings when there is one image,
    # a shape public clients of the API accept.
    single_strings: bool = False
    link_lifetime_s: int = 604_800
    faults: list[FaultRule] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic
