"""Which parameters a finished run varied, and in what order their values go.

Read from the manifest alone, so a report needs nothing but the run directory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sweeper.contract import PARAMETER_NAMES, canonical_name
from sweeper.errors import SpecError

if TYPE_CHECKING:
    import pandas as pd

OUTPUT_AXIS = "output_index"


def sort_key(value: Any) -> tuple[int, Any]:
    """Numbers (and numeric strings like megapixels "0.25") in numeric order, then text."""
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value))


def axis_values(frame: pd.DataFrame, column: str) -> list[Any]:
    return sorted(frame[column].dropna().unique().tolist(), key=sort_key)


def varied_parameters(frame: pd.DataFrame) -> list[str]:
    """Parameter columns with more than one value, in manifest column order."""
    return [c for c in PARAMETER_NAMES if frame[c].nunique(dropna=True) > 1]


def choose_axes(
    frame: pd.DataFrame, x_axis: str | None, y_axis: str | None
) -> tuple[str | None, str | None, list[str]]:
    """X, Y and the Z axes (one sheet per combination of Z values)."""
    varied = varied_parameters(frame)
    allowed = [*varied, OUTPUT_AXIS] if frame[OUTPUT_AXIS].nunique() > 1 else varied
    chosen = [_resolve(name, allowed, flag) for name, flag in ((x_axis, "--x"), (y_axis, "--y"))]
    if chosen[0] is not None and chosen[0] == chosen[1]:
        raise SpecError(f"--x and --y are both {chosen[0]}; pick two different axes")
    by_size = sorted(varied, key=lambda c: -frame[c].nunique())
    for slot in (0, 1):
        if chosen[slot] is None:
            chosen[slot] = next((c for c in by_size if c not in chosen), None)
    x, y = chosen
    z = [c for c in varied if c not in (x, y)]
    return x, y, z


def _resolve(name: str | None, allowed: list[str], flag: str) -> str | None:
    if name is None:
        return None
    resolved = canonical_name(name)
    if resolved not in allowed:
        choices = ", ".join(allowed) or "none (this run varied nothing)"
        raise SpecError(f"{flag} {name}: not a varied axis of this run; varied: {choices}")
    return resolved
