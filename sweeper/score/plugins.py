"""Finding scorers: built-in measures, `module:function` specs and `sweeper.scorers` plugins.

A scorer is a function `fn(output: PIL.Image, input: PIL.Image, row: dict) ->
float | dict[str, float]`. A float becomes one column named after the scorer; a
dict adds one column per key. Its version (the function's `version` attribute,
else its module's `__version__`, else "1") tells `score` which images a new
release of the scorer must score again.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from sweeper.errors import SpecError

ENTRY_POINT_GROUP = "sweeper.scorers"
BUILTIN_MODULE = "sweeper.score.measures"
BUILTIN_NAMES = ("structure_ssim", "edge_f1", "sharpness", "colorfulness")
DEFAULT_VERSION = "1"

ScoreFunction = Callable[..., "float | dict[str, float]"]


@dataclass(frozen=True)
class Scorer:
    """A loaded scorer: its name (the column of a float result), version and spec."""

    name: str
    version: str
    spec: str  # what loads it again in a worker process: `module:function` or a plugin name
    function: ScoreFunction


def builtin_specs() -> list[str]:
    return [f"{BUILTIN_MODULE}:{name}" for name in BUILTIN_NAMES]


def check_unique_names(scorers: Iterable[Scorer]) -> None:
    """SpecError when two scorers share a name: their columns would collide."""
    seen: dict[str, str] = {}
    for scorer in scorers:
        if scorer.name in seen:
            raise SpecError(
                f"scorers {seen[scorer.name]} and {scorer.spec} are both named "
                f"{scorer.name!r}; rename one of the functions"
            )
        seen[scorer.name] = scorer.spec


def load_scorer(spec: str) -> Scorer:
    """`package.module:function` (from the current folder or PYTHONPATH) or a plugin's name."""
    if ":" in spec:
        return _load_function_spec(spec)
    return _load_entry_point(spec)


def installed_plugins() -> dict[str, str]:
    """Plugin name → `module:function` for every scorer installed under ENTRY_POINT_GROUP."""
    return {point.name: point.value for point in entry_points(group=ENTRY_POINT_GROUP)}


def scorer_version(function: Any) -> str:
    version = getattr(function, "version", None)
    if version is None:
        module = sys.modules.get(getattr(function, "__module__", "") or "")
        version = getattr(module, "__version__", None)
    return str(version) if version is not None else DEFAULT_VERSION


def _load_function_spec(spec: str) -> Scorer:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise SpecError(f"--scorer {spec}: expected MODULE:FUNCTION, e.g. my_scores:redness")
    _allow_current_folder()
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise SpecError(f"--scorer {spec}: cannot import {module_name}: {error}") from None
    except Exception as error:  # the user's module raised while importing
        raise SpecError(
            f"--scorer {spec}: importing {module_name} failed: {type(error).__name__}: {error}"
        ) from None
    function: Any = module
    for part in attribute.split("."):
        function = getattr(function, part, None)
        if function is None:
            raise SpecError(f"--scorer {spec}: {module_name} has no {attribute}")
    if not callable(function):
        raise SpecError(f"--scorer {spec}: {attribute} is not a function")
    return Scorer(_scorer_name(function, attribute), scorer_version(function), spec, function)


def _load_entry_point(name: str) -> Scorer:
    points = {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP)}
    point = points.get(name)
    if point is None:
        installed = ", ".join(sorted(points)) or "none"
        raise SpecError(
            f"--scorer {name}: not MODULE:FUNCTION and not an installed scorer plugin "
            f"(installed: {installed})"
        )
    try:
        function = point.load()
    except Exception as error:
        raise SpecError(
            f"--scorer {name}: plugin {point.value} failed to load: {type(error).__name__}: {error}"
        ) from None
    if not callable(function):
        raise SpecError(f"--scorer {name}: plugin {point.value} is not a function")
    return Scorer(name, scorer_version(function), name, function)


def _scorer_name(function: Any, attribute: str) -> str:
    return getattr(function, "__name__", None) or attribute.rsplit(".", 1)[-1]


def _allow_current_folder() -> None:
    """Let `--scorer my_scores:fn` import my_scores.py from where the command was run."""
    here = str(Path.cwd())
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
