"""What sweeper remembers between runs on this machine: learned rates and learned prices.

One small JSON file, `learned.json`, in the user cache folder (platformdirs), or in
`$SWEEPER_CACHE_DIR` when that is set. A learned rate is kept per API base and key
fingerprint: a salted sha256 of the key, truncated, so the file never holds the key
and cannot be used to test a guess of it against other tools' hashes. A price is
kept per API base and model (a simulator's price must never be taken for the real
API's). Writes are atomic (a temporary file renamed over the old one). The cache is
only ever a hint: a missing, corrupt or unwritable file is logged as a warning and
otherwise ignored, never an error. Two runs writing at once: the last one wins.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeGuard

import platformdirs

from sweeper.atomic import replacing

logger = logging.getLogger("sweeper")

CACHE_DIR_ENV = "SWEEPER_CACHE_DIR"
FILE_NAME = "learned.json"
SCHEMA = 1
FINGERPRINT_SALT = b"sweeper/key-fingerprint/v1\x00"
FINGERPRINT_CHARS = 16


def key_fingerprint(api_key: str) -> str:
    """A short salted hash that tells keys apart without revealing them."""
    digest = hashlib.sha256(FINGERPRINT_SALT + api_key.encode("utf-8")).hexdigest()
    return digest[:FINGERPRINT_CHARS]


def default_cache_dir() -> Path:
    """`$SWEEPER_CACHE_DIR` if set, else the platform's user cache folder for sweeper."""
    override = os.environ.get(CACHE_DIR_ENV, "").strip()
    return Path(override) if override else platformdirs.user_cache_path("sweeper")


@dataclass(frozen=True)
class LearnedRate:
    """The pace an earlier run settled on for one API base and key."""

    rpm: float
    # The concurrency the server was found to allow, or None if none was found.
    concurrency: int | None
    # True when a 429 bounded the rate (a ceiling), False if it was only never refused.
    capped: bool
    updated_at: str


class UserCache:
    """Reads and writes `learned.json`; every failure is a logged warning, never a crash."""

    def __init__(self, folder: Path | None = None) -> None:
        self.path = (folder if folder is not None else default_cache_dir()) / FILE_NAME
        self._warned = False

    def learned_rate(self, api_base: str, api_key: str) -> LearnedRate | None:
        entry = self._read()["rates"].get(_rate_key(api_base, api_key))
        if not isinstance(entry, dict):
            return None
        rpm, concurrency = entry.get("rpm"), entry.get("concurrency")
        if not _positive_number(rpm) or not (concurrency is None or _positive_int(concurrency)):
            self._warn("a learned rate in it is malformed")
            return None
        return LearnedRate(
            rpm=float(rpm),
            concurrency=concurrency,
            capped=entry.get("capped") is True,
            updated_at=str(entry.get("updated_at", "")),
        )

    def remember_rate(
        self, api_base: str, api_key: str, *, rpm: float, concurrency: int | None, capped: bool
    ) -> None:
        entry = {"rpm": rpm, "concurrency": concurrency, "capped": capped, "updated_at": _now()}
        self._update("rates", _rate_key(api_base, api_key), entry)

    def learned_price(self, api_base: str, model: str) -> float | None:
        """Credits per output image an earlier run learned for this model, if any."""
        entry = self._read()["prices"].get(_price_key(api_base, model))
        if not isinstance(entry, dict):
            return None
        price = entry.get("credits_per_image")
        if not _positive_number(price):
            self._warn("a learned price in it is malformed")
            return None
        return float(price)

    def remember_price(self, api_base: str, model: str, credits_per_image: float) -> None:
        entry = {"credits_per_image": credits_per_image, "updated_at": _now()}
        self._update("prices", _price_key(api_base, model), entry)

    def _update(self, section: str, key: str, entry: dict[str, Any]) -> None:
        data = self._read()
        data[section][key] = entry
        self._write(data)

    def _read(self) -> dict[str, Any]:
        empty: dict[str, Any] = {"schema": SCHEMA, "rates": {}, "prices": {}}
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return empty
        except (OSError, UnicodeDecodeError) as error:
            self._warn(f"it cannot be read ({error})")
            return empty
        try:
            data = json.loads(text)
        except ValueError:
            self._warn("it is not valid JSON")
            return empty
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            self._warn("it is not a sweeper cache of a known version")
            return empty
        for section in ("rates", "prices"):
            if not isinstance(data.get(section), dict):
                data[section] = {}
        return data

    def _write(self, data: dict[str, Any]) -> None:
        # A private partial name: two runs may write the cache at once.
        partial = self.path.with_name(f".learned-{uuid.uuid4().hex}.tmp")
        text = json.dumps(data, indent=2, sort_keys=True)
        try:
            with replacing(self.path, partial=partial, durable=True) as path:
                path.write_text(text, encoding="utf-8")
        except OSError as error:
            self._warn(f"it cannot be written ({error})")

    def _warn(self, problem: str) -> None:
        if not self._warned:
            logger.warning(
                "ignoring the cache of learned rates and prices %s: %s", self.path, problem
            )
            self._warned = True


def _rate_key(api_base: str, api_key: str) -> str:
    return f"{api_base.rstrip('/')} {key_fingerprint(api_key)}"


def _price_key(api_base: str, model: str) -> str:
    return f"{api_base.rstrip('/')} {model}"


def _positive_number(value: Any) -> TypeGuard[int | float]:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _positive_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
