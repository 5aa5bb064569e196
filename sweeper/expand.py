"""Turn a validated spec into its sequence of jobs: counted arithmetically, expanded lazily.

Axis order: the grid axes as written, then the zip group as one axis; the last
varies fastest. `exclude` drops every combination matching all keys of an entry;
`sample` then keeps a reproducible random subset (random.Random(seed)), in order.
A sweep of any size is counted without enumerating it (exclusions included, see
`sweeper.exclusion`), and expansion is a generator, so a million-job grid never sits
in memory; a sample's jobs are located by their numbers, never by walking the grid.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Iterator
from typing import Any

from sweeper.contract import IMAGE
from sweeper.errors import SpecError
from sweeper.exclusion import Exclusions, TooIntricate, decode_position, every_position
from sweeper.job import Job, make_job
from sweeper.limits import EXCLUDE_COUNT_BUDGET
from sweeper.ranges import RangeAxis
from sweeper.spec import SweepSpec

EXCLUDE_EXPAND_BUDGET = 10 * EXCLUDE_COUNT_BUDGET
"""Steps locating sampled jobs among exclusions may take, on top of the count's."""


def _dimensions(spec: SweepSpec) -> list[int]:
    sizes = [len(axis) for _, axis in spec.axes]
    return [*sizes, len(spec.zip_rows)] if spec.zip_rows else sizes


def _values_at(spec: SweepSpec, dim: int, position: int) -> dict[str, Any]:
    """The parameter values that position `position` of dimension `dim` stands for."""
    if dim < len(spec.axes):
        name, axis = spec.axes[dim]
        return {name: axis[position]}
    return dict(zip(spec.zip_names, spec.zip_rows[position], strict=True))


def _exclusions(spec: SweepSpec) -> Exclusions:
    """The grid's dimensions and the exclude entries as rules over their indices."""
    sizes = _dimensions(spec)
    if not spec.exclude:
        return Exclusions(sizes, ())
    lookups = [_value_index(axis) for _, axis in spec.axes]
    axis_dims = {name: dim for dim, (name, _) in enumerate(spec.axes)}
    rows_with = _zip_rows_by_value(spec)
    rules = []
    for entry in spec.exclude:
        rule: list[frozenset[int] | None] = [None] * len(sizes)
        zipped: frozenset[int] | None = None
        for name, value in entry.items():
            if name in axis_dims:
                index = lookups[axis_dims[name]](value)
                rule[axis_dims[name]] = frozenset() if index is None else frozenset({index})
            else:
                rows = rows_with.get((name, value), frozenset())
                zipped = rows if zipped is None else zipped & rows
        if zipped is not None:
            rule[-1] = zipped
        rules.append(tuple(rule))
    return Exclusions(sizes, rules)


def _value_index(axis: Any) -> Any:
    """A function from a value to its index in `axis`, or None; a range computes it."""
    if isinstance(axis, RangeAxis):
        return axis.position
    indices = {value: index for index, value in enumerate(axis)}
    return indices.get


def _zip_rows_by_value(spec: SweepSpec) -> dict[tuple[str, Any], frozenset[int]]:
    rows: dict[tuple[str, Any], set[int]] = {}
    for number, row in enumerate(spec.zip_rows):
        for name, value in zip(spec.zip_names, row, strict=True):
            rows.setdefault((name, value), set()).add(number)
    return {key: frozenset(numbers) for key, numbers in rows.items()}


def _counted_exclusions(spec: SweepSpec) -> tuple[Exclusions, int]:
    """The exclusions and the number of combinations they keep, or a SpecError if too intricate."""
    exclusions = _exclusions(spec)
    try:
        kept = exclusions.kept()
    except TooIntricate:
        raise SpecError(_too_intricate(spec)) from None
    return exclusions, kept


def _too_intricate(spec: SweepSpec) -> str:
    return (
        f"{spec.source_path}: exclude: these {len(spec.exclude):,} entries pin too many "
        "parameters to too many different values to count quickly; exclude whole values "
        "of one parameter at a time, or narrow the grid instead"
    )


def _kept_count(spec: SweepSpec) -> int:
    return _counted_exclusions(spec)[1] if spec.exclude else math.prod(_dimensions(spec))


def count_jobs(spec: SweepSpec) -> int:
    """Jobs the spec runs, after exclude and sample; never enumerates."""
    kept = _kept_count(spec)
    return min(kept, spec.sample.n) if spec.sample else kept


def check_job_count(spec: SweepSpec, max_jobs: int) -> int:
    """The job count, or a SpecError when it is zero or above `max_jobs`."""
    total = count_jobs(spec)
    if total == 0:
        raise SpecError(f"{spec.source_path}: exclude: every job is excluded; nothing to run")
    if total > max_jobs:
        raise SpecError(
            f"{spec.source_path}: the sweep expands to {total:,} jobs, more than --max-jobs "
            f"{max_jobs:,}; add `sample: {{n: ..., seed: ...}}`, narrow the grid, "
            "or raise --max-jobs"
        )
    return total


def _selected_positions(spec: SweepSpec) -> Iterator[tuple[int, ...]]:
    """The positions of the jobs, in grid order; a sample is found without walking the grid."""
    sizes = _dimensions(spec)
    exclusions, kept = _counted_exclusions(spec) if spec.exclude else (None, math.prod(sizes))
    if exclusions is not None:
        exclusions.budget = exclusions.steps + EXCLUDE_EXPAND_BUDGET
    try:
        if spec.sample is None or spec.sample.n >= kept:
            yield from exclusions.positions() if exclusions else every_position(sizes)
            return
        for number in _drawn_numbers(kept, spec.sample.n, spec.sample.seed):
            yield exclusions.position(number) if exclusions else decode_position(sizes, number)
    except TooIntricate:
        raise SpecError(_too_intricate(spec)) from None


def _drawn_numbers(kept: int, n: int, seed: int) -> list[int]:
    """Which of the `kept` combinations (by number, in grid order) the sample keeps, sorted.

    The same draws as ever, so job sets never change: `random.sample` on a range,
    which materialises nothing when n is small next to the range (and n is capped by
    `MAX_SAMPLE_N`). A range too long for `len()` takes the same draws `sample` makes
    for a large population: one `randrange` per pick, drawing again on a repeat.
    """
    rng = random.Random(seed)
    if kept <= sys.maxsize:
        chosen = rng.sample(range(kept), n)
    else:
        seen: set[int] = set()
        chosen = []
        for _ in range(n):
            number = rng.randrange(kept)
            while number in seen:
                number = rng.randrange(kept)
            seen.add(number)
            chosen.append(number)
    chosen.sort()
    return chosen


def iter_params(spec: SweepSpec) -> Iterator[dict[str, Any]]:
    """Every job's full parameter set (image included), in order, lazily."""
    for position in _selected_positions(spec):
        params = dict(spec.fixed)
        for dim, index in enumerate(position):
            params |= _values_at(spec, dim, index)
        yield params


def expand_jobs(spec: SweepSpec) -> Iterator[Job]:
    """The jobs of the sweep, in order, built one at a time."""
    for index, params in enumerate(iter_params(spec)):
        image = params.pop(IMAGE)
        yield make_job(index, spec.model, image, params)


def varied_axes(spec: SweepSpec) -> dict[str, Any]:
    """API name → its values (a sequence, possibly a lazy range), for every varied axis."""
    axes: dict[str, Any] = dict(spec.axes)
    for column, name in enumerate(spec.zip_names):
        axes[name] = [row[column] for row in spec.zip_rows]
    return axes


def count_images(spec: SweepSpec) -> int:
    """Images the sweep makes: jobs × num_outputs, enumerating only if num_outputs varies."""
    if "num_outputs" in spec.fixed:
        return count_jobs(spec) * int(spec.fixed["num_outputs"])
    return sum(int(params["num_outputs"]) for params in iter_params(spec))
