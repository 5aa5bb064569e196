"""The API contract's parameter table: names, JSON types, ranges and defaults.

Spec validation and the simulator both check values here, so the client and
the server we test it against can never disagree about what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sweeper.errors import SpecError

MODEL = "black-forest-labs/flux-depth-dev"
FEATURE_TYPE = "IMAGE_EDITOR"
DEFAULT_API_BASE = "https://api.1min.ai"
API_KEY_ENV = "ONEMIN_API_KEY"
API_BASE_ENV = "ONEMIN_API_BASE"
ASSETS_PATH = "/api/assets"
FEATURES_PATH = "/api/features"
ASSET_PREFIX = "development/images/"
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MEGAPIXELS_CHOICES = ("1", "0.25")
FORMAT_CHOICES = ("webp", "jpg", "png")


@dataclass(frozen=True)
class Param:
    """One field of `promptObject`: its JSON type, allowed values and default."""

    name: str
    kind: type
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None

    def describe(self) -> str:
        """Say in words what this field accepts."""
        if self.choices:
            return "one of " + ", ".join(f'"{c}"' for c in self.choices)
        noun = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
        text = noun[self.kind]
        if self.minimum is not None and self.maximum is not None:
            text += f" from {_plain(self.minimum)} to {_plain(self.maximum)}"
        if self.kind is str and self.choices is None:
            text = "a non-empty string"
        return text

    def check(self, value: Any) -> Any:
        """Return `value` as the API wants it, or raise ValueError saying what is allowed."""
        normalised = self._coerce(value)
        if normalised is None:
            raise ValueError(f"must be {self.describe()}")
        return normalised

    def _coerce(self, value: Any) -> Any:
        if self.choices is not None:
            return _coerce_choice(self, value)
        if self.kind is bool:
            return value if isinstance(value, bool) else None
        if self.kind is str:
            return value if isinstance(value, str) and value.strip() else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if self.kind is int:
            if isinstance(value, float) and not value.is_integer():
                return None
            value = int(value)
        else:
            value = float(value)
        assert self.minimum is not None and self.maximum is not None  # numbers have bounds
        if not self.minimum <= value <= self.maximum:
            return None
        return value


def _coerce_choice(param: Param, value: Any) -> str | None:
    # YAML turns an unquoted 0.25 or 1 into a number; accept it as the string it means.
    if (
        param.name == "megapixels"
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        value = _plain(value)
    if isinstance(value, str) and param.name == "format":
        value = value.lower()
    return value if value in param.choices else None  # type: ignore[operator]


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


PARAMS: dict[str, Param] = {
    p.name: p
    for p in (
        Param("prompt", str),
        Param("num_inference_steps", int, 28, 1, 100),
        Param("guidance", float, 3.5, 1.0, 20.0),
        Param("seed", int, 0, 0, 4_294_967_295),
        Param("output_quality", int, 80, 1, 100),
        Param("megapixels", str, "1", choices=MEGAPIXELS_CHOICES),
        Param("format", str, "webp", choices=FORMAT_CHOICES),
        Param("num_outputs", int, 1, 1, 4),
        Param("go_fast", bool, False),
        Param("disable_safety_checker", bool, False),
    )
}
"""Every promptObject field except `imageUrl`, in the order the contract lists them."""

IMAGE = "image"
"""The spec's name for the input image; the request sends its asset path as `imageUrl`."""

PARAMETER_NAMES: tuple[str, ...] = (IMAGE, *PARAMS)
"""Every parameter a spec can set, in the order manifests, reports and plans show them."""

ALIASES = {"steps": "num_inference_steps", "quality": "output_quality"}
"""Short names a spec (and `report --x`) may use for long parameter names."""

SHORT_NAMES = {name: alias for alias, name in ALIASES.items()}


def canonical_name(name: str) -> str:
    """The parameter `name` stands for, aliases resolved."""
    return ALIASES.get(name, name)


REQUIRED = ("prompt",)
IMAGE_FIELD = "imageUrl"
EXTENSIONS = {"webp": "webp", "jpg": "jpg", "png": "png"}
PIL_FORMATS = {"webp": "WEBP", "jpg": "JPEG", "png": "PNG"}


def image_size(megapixels: str, aspect: float = 1.0) -> tuple[int, int]:
    """Width and height of an output at `megapixels`, keeping `aspect` (w/h), multiples of 16."""
    pixels = float(megapixels) * 1_000_000
    height = (pixels / aspect) ** 0.5
    width = height * aspect
    return max(16, round(width / 16) * 16), max(16, round(height / 16) * 16)


def check_api_key(key: str) -> str:
    """The key as sent in a header; refused before any request if it cannot be one."""
    if any(char in key for char in "\r\n"):
        raise SpecError("the API key contains a line break; check ONEMIN_API_KEY")
    if any(ord(char) < 32 or ord(char) == 127 for char in key):
        raise SpecError("the API key contains a control character; check ONEMIN_API_KEY")
    if not key.isascii():
        raise SpecError("the API key contains a non-ASCII character; check ONEMIN_API_KEY")
    return key
