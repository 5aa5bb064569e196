"""The axes a report shows: which parameters a run varied, with each zip group as one axis.

Parameters zipped together in the spec move together: a photo with its own
prompt. Crossed as if independent they would give impossible cells (photo A
with prompt B), so a zip group is one axis whose values are its rows, labelled
`image=street.png, prompt=deep fog`, in a column of its own named after its
members (`image+prompt`). `--x` and `--y` may name the group or any member.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sweeper.contract import PARAMETER_NAMES, canonical_name
from sweeper.errors import SpecError

if TYPE_CHECKING:
    import pandas as pd

OUTPUT_AXIS = "output_index"
GROUP_JOINER = "+"


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


@dataclass(frozen=True)
class StudyAxes:
    """The report's axes, in order: parameters, and zip groups in place of their members."""

    varied: list[str]
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def axis_of(self, parameter: str) -> str:
        """The axis a parameter is shown on: its group's, or its own."""
        for group, members in self.groups.items():
            if parameter in members:
                return group
        return parameter


def study_axes(frame: pd.DataFrame, zipped: Sequence[str]) -> tuple[pd.DataFrame, StudyAxes]:
    """The varied axes of `frame`, with one labelled column added per zip group that varies.

    `zipped` is the parameters the spec's `zip:` section moves together (aliases
    resolved). Members that do not vary here (a filtered report) are plain
    parameters, and a group with one varying member is just that parameter.
    """
    varied = varied_parameters(frame)
    members = tuple(name for name in varied if name in {canonical_name(z) for z in zipped})
    if len(members) < 2:
        return frame, StudyAxes(varied)
    group = GROUP_JOINER.join(members)
    labels = (
        frame[list(members)]
        .astype(str)
        .apply(lambda row: ", ".join(f"{name}={row[name]}" for name in members), axis=1)
    )
    frame = frame.assign(**{group: labels})
    first = varied.index(members[0])
    shown = [name for name in varied if name not in members]
    shown.insert(first, group)
    return frame, StudyAxes(shown, {group: members})


def choose_axes(
    frame: pd.DataFrame, axes: StudyAxes, x_axis: str | None, y_axis: str | None
) -> tuple[str | None, str | None, list[str]]:
    """X, Y and the Z axes (one sheet per combination of Z values)."""
    varied = axes.varied
    allowed = [*varied, OUTPUT_AXIS] if frame[OUTPUT_AXIS].nunique() > 1 else list(varied)
    chosen = [
        _resolve(name, axes, allowed, flag) for name, flag in ((x_axis, "--x"), (y_axis, "--y"))
    ]
    if chosen[0] is not None and chosen[0] == chosen[1]:
        raise SpecError(f"--x and --y are both {chosen[0]}; pick two different axes")
    by_size = sorted(varied, key=lambda c: -frame[c].nunique())
    for slot in (0, 1):
        if chosen[slot] is None:
            chosen[slot] = next((c for c in by_size if c not in chosen), None)
    x, y = chosen
    z = [c for c in varied if c not in (x, y)]
    return x, y, z


def _resolve(name: str | None, axes: StudyAxes, allowed: list[str], flag: str) -> str | None:
    if name is None:
        return None
    resolved = axes.axis_of(canonical_name(name))
    if resolved in allowed:
        return resolved
    choices = ", ".join(allowed) or "none (this run varied nothing)"
    members = [m for group in axes.groups.values() for m in group]
    close = difflib.get_close_matches(name, [*allowed, *members], n=1, cutoff=0.6)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    raise SpecError(f"{flag} {name}: not a varied axis of this run; varied: {choices}{hint}")
