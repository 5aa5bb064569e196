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
    faults: list[FaultRule] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic
