"""Turn a validated spec into its sequence of jobs: counted arithmetically, expanded lazily.

Axis order: the grid axes as written, then the zip group as one axis; the last
varies fastest. `exclude` drops every combination matching all keys of an entry;
`sample` then keeps a reproducible random subset (random.Random(seed)), in order.
A sweep of any size is counted without enumerating it, and expansion is a
generator, so a million-job grid never sits in memory.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from typing import Any

from sweeper.contract import IMAGE
from sweeper.errors import SpecError
from sweeper.job import Job, make_job
from sweeper.spec import SweepSpec


def _dimensions(spec: SweepSpec) -> list[int]:
    sizes = [len(axis) for _, axis in spec.axes]
    return [*sizes, len(spec.zip_rows)] if spec.zip_rows else sizes


def _values_at(spec: SweepSpec, dim: int, position: int) -> dict[str, Any]:
    """The parameter values that position `position` of dimension `dim` stands for."""
    if dim < len(spec.axes):
        name, axis = spec.axes[dim]
        return {name: axis[position]}
    return dict(zip(spec.zip_names, spec.zip_rows[position], strict=True))


MAX_EXCLUDE_ENTRIES = 24


def _matching(spec: SweepSpec, constraints: dict[str, Any]) -> int:
    """How many grid × zip combinations have every constrained parameter at its value."""
    total = 1
    for name, axis in spec.axes:
        total *= (1 if constraints[name] in axis else 0) if name in constraints else len(axis)
    if spec.zip_rows:
        columns = {name: i for i, name in enumerate(spec.zip_names)}
        zipped = {k: v for k, v in constraints.items() if k in columns}
        total *= sum(all(row[columns[k]] == v for k, v in zipped.items()) for row in spec.zip_rows)
    return total


def _excluded_count(spec: SweepSpec) -> int:
    """Combinations matching at least one exclude entry, by inclusion-exclusion.

    Entries whose constraints conflict match nothing together, so those branches
    (and all their supersets) are pruned.
    """
    entries = spec.exclude
    if len(entries) > MAX_EXCLUDE_ENTRIES:
        raise SpecError(
            f"{spec.source_path}: exclude: more than {MAX_EXCLUDE_ENTRIES} entries; "
            "narrow the grid instead"
        )

    def extend(start: int, merged: dict[str, Any], size: int) -> int:
        total = 0
        for i in range(start, len(entries)):
            entry = entries[i]
            if any(k in merged and merged[k] != v for k, v in entry.items()):
                continue
            combined = merged | entry
            matches = _matching(spec, combined)
            if matches:
                total += (-1) ** size * matches + extend(i + 1, combined, size + 1)
        return total

    return extend(0, {}, 0)


def _kept_count(spec: SweepSpec) -> int:
    total = math.prod(_dimensions(spec))
    return total - _excluded_count(spec) if spec.exclude else total


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


def _kept_positions(spec: SweepSpec) -> Iterator[tuple[int, ...]]:
    for position in itertools.product(*(range(size) for size in _dimensions(spec))):
        if spec.exclude and _is_excluded(spec, position):
            continue
        yield position


def _is_excluded(spec: SweepSpec, position: tuple[int, ...]) -> bool:
    values: dict[str, Any] = {}
    for dim, index in enumerate(position):
        values |= _values_at(spec, dim, index)
    return any(all(values[k] == v for k, v in entry.items()) for entry in spec.exclude)


def _selected_positions(spec: SweepSpec) -> Iterator[tuple[int, ...]]:
    positions = _kept_positions(spec)
    if spec.sample is None or spec.sample.n >= (kept := _kept_count(spec)):
        yield from positions
        return
    chosen = sorted(random.Random(spec.sample.seed).sample(range(kept), spec.sample.n))
    wanted = iter(chosen)
    next_wanted = next(wanted)
    for number, position in enumerate(positions):
        if number == next_wanted:
            yield position
            next_wanted = next(wanted, -1)
            if next_wanted < 0:
                return


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
