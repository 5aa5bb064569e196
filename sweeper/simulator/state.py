"""What a simulator has stored, produced and counted, for tests to check against.

Produced images are not kept: each is rendered again (deterministically) when it
is downloaded, so memory stays flat however many a run makes. The API key is
never stored: only whether a request carried one.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from sweeper.simulator.config import FaultRule, SimulatorConfig


@dataclass(frozen=True)
class ProducedImage:
    """One output the simulator made, keyed in `state.produced` by its remote path."""

    sha256: str
    size: int
    params: dict[str, Any]
    input_sha256: str
    output_index: int
    record_uuid: str
    width: int
    height: int
    format: str


@dataclass
class SimulatorState:
    config: SimulatorConfig
    assets: dict[str, bytes] = field(default_factory=dict)
    inputs: dict[str, bytes] = field(default_factory=dict)  # by sha256: outlive forgotten assets
    produced: dict[str, ProducedImage] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    feature_arrivals: list[float] = field(default_factory=list)
    window: deque[float] = field(default_factory=deque)
    credits_used: int = 0
    features_in_progress: int = 0
    faults: list[FaultRule] = field(default_factory=list)
    seen: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.faults = list(self.config.faults)

    def register_asset(self, path: str, data: bytes) -> None:
        """Make `path` a known asset (as if uploaded earlier) holding `data`."""
        self.assets[path] = data
        self.inputs[hashlib.sha256(data).hexdigest()] = data

    def asset_sha256(self, path: str) -> str:
        return hashlib.sha256(self.assets[path]).hexdigest()

    def take_fault(self, endpoint: str) -> FaultRule | None:
        """The fault this request to `endpoint` suffers, if any (rules fire in order)."""
        self.seen[endpoint] += 1
        for rule in self.faults:
            if rule.endpoint != endpoint or rule.times <= 0:
                continue
            if rule.after > 0:
                rule.after -= 1
                continue
            rule.times -= 1
            self.counters[f"fault_{rule.kind}"] += 1
            return rule
        return None

    @property
    def rate_limited(self) -> int:
        return self.counters["rate_limited"]
