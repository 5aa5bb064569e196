"""Count, walk and index the grid positions that `exclude` rules leave, never enumerating.

A position is one index per dimension (each grid axis, then the zip group), in the
grid's order: the last dimension varies fastest. A rule is one `exclude` entry seen
as, for each dimension, the set of indices it matches (one index of an axis; the
rows of the zip group that match its keys), or None where it says nothing. A
position is excluded when some rule matches it in every dimension the rule names.

Rules that name no dimension in common are independent: the kept positions are the
product of what each group keeps, so each group is counted on its own. Within a
group, the count splits on one dimension at a time: each index some rule names is
counted with the rules that allow it plus those that say nothing about that
dimension, and all the indices no rule names share one count, computed once. Equal
sub-problems are computed once (memoised). Counting a union of such sets is #P-hard in general,
so the work is bounded by `EXCLUDE_COUNT_BUDGET` steps; past it, `TooIntricate`.
The same per-dimension tables give the k-th kept position by bisection, so a sample
of a huge grid finds its jobs without walking the grid.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sweeper.limits import EXCLUDE_COUNT_BUDGET

# The cost model, in steps of about a microsecond each (measured on CPython 3.11):
TABLE_STEPS = 20  # building one table, beyond its loops
SEGMENT_STEPS = 12  # each segment of a table: its count below and its record
RULE_STEPS = 1  # each rule looked at in a Python loop
ELEMENT_DIVISOR = 20  # set elements copied or hashed in C: twenty per step

Rule = tuple[frozenset[int] | None, ...]
"""Per dimension: the indices the rule matches, or None when it names no value there."""


class TooIntricate(Exception):
    """Counting the excluded positions would take more than the step budget."""


@dataclass(frozen=True)
class _Segment:
    """Indices [start, stop) of one dimension that share the rules still in play below them."""

    start: int
    stop: int
    kept_each: int
    rules: frozenset[int]


class Exclusions:
    """The positions of a grid with dimension `sizes` that no rule matches."""

    def __init__(
        self, sizes: Sequence[int], rules: Sequence[Rule], budget: int = EXCLUDE_COUNT_BUDGET
    ) -> None:
        self.sizes = tuple(sizes)
        # A rule with an empty set somewhere matches nothing: drop it.
        self.rules = tuple(rule for rule in rules if all(c is None or c for c in rule))
        self.named = tuple(
            tuple(d for d, c in enumerate(rule) if c is not None) for rule in self.rules
        )
        self.last_named = tuple(max(dims, default=-1) for dims in self.named)
        self.below = [math.prod(self.sizes[d:]) for d in range(len(self.sizes) + 1)]
        self.budget = budget
        self.steps = 0
        self.covered_memo: dict[tuple[int, frozenset[int]], int] = {}
        self.table_memo: dict[tuple[int, frozenset[int]], tuple[list[_Segment], list[int]]] = {}
        self.everything = frozenset(range(len(self.rules)))

    def kept(self) -> int:
        """Positions no rule matches."""
        return self.below[0] - self.covered(0, self.everything)

    def covered(self, dim: int, rules: frozenset[int]) -> int:
        """Positions of dimensions `dim`.. that some rule of `rules` matches (the rules'
        constraints on earlier dimensions are taken as met)."""
        if not rules:
            return 0
        if any(self.last_named[r] < dim for r in rules):
            return self.below[dim]
        key = (dim, rules)
        found = self.covered_memo.get(key)
        if found is None:
            groups = self.independent_groups(dim, rules)
            if len(groups) > 1:
                kept = self.below[dim]
                for group in groups:  # exact: the groups name disjoint dimensions
                    kept = kept * (self.below[dim] - self.covered(dim, group)) // self.below[dim]
                found = self.below[dim] - kept
            else:
                segments, _ = self.table(dim, rules)
                found = self.below[dim] - sum((s.stop - s.start) * s.kept_each for s in segments)
            self.covered_memo[key] = found
        return found

    def independent_groups(self, dim: int, rules: frozenset[int]) -> list[frozenset[int]]:
        """`rules` split into groups that share no named dimension from `dim` on."""
        self.spend(RULE_STEPS * len(rules))
        parent = {rule: rule for rule in rules}

        def root(rule: int) -> int:
            while parent[rule] != rule:
                parent[rule] = parent[parent[rule]]
                rule = parent[rule]
            return rule

        owner: dict[int, int] = {}
        for rule in rules:
            for named in self.named[rule]:
                if named < dim:
                    continue
                if named in owner:
                    parent[root(rule)] = root(owner[named])
                else:
                    owner[named] = rule
        groups: dict[int, set[int]] = {}
        for rule in rules:
            groups.setdefault(root(rule), set()).add(rule)
        return [frozenset(group) for group in groups.values()]

    def table(self, dim: int, rules: frozenset[int]) -> tuple[list[_Segment], list[int]]:
        """Dimension `dim` cut into segments of indices alike for `rules`, and the kept
        positions before each segment."""
        key = (dim, rules)
        found = self.table_memo.get(key)
        if found is not None:
            return found
        wild = frozenset(r for r in rules if self.rules[r][dim] is None)
        named: dict[int, set[int]] = {}
        for r in rules:
            allowed = self.rules[r][dim]
            if allowed is not None:
                self.spend(RULE_STEPS + len(allowed) // ELEMENT_DIVISOR)
                for index in allowed:
                    named.setdefault(index, set()).add(r)
        self.spend(TABLE_STEPS)
        below = self.below[dim + 1]
        kept_wild = below - self.covered(dim + 1, wild)
        segments: list[_Segment] = []
        start = 0
        for index in sorted(named):
            if index > start:
                segments.append(_Segment(start, index, kept_wild, wild))
            these = wild | named[index]
            self.spend(SEGMENT_STEPS + len(these) // ELEMENT_DIVISOR)
            segments.append(_Segment(index, index + 1, below - self.covered(dim + 1, these), these))
            start = index + 1
        if start < self.sizes[dim]:
            segments.append(_Segment(start, self.sizes[dim], kept_wild, wild))
        before = list(
            itertools.accumulate(((s.stop - s.start) * s.kept_each for s in segments), initial=0)
        )
        self.table_memo[key] = (segments, before)
        return segments, before

    def spend(self, steps: int) -> None:
        self.steps += steps
        if self.steps > self.budget:
            raise TooIntricate(self.steps)

    def position(self, number: int) -> tuple[int, ...]:
        """The `number`-th kept position (from 0), in grid order."""
        rules = self.everything
        position = []
        for dim in range(len(self.sizes)):
            segments, before = self.table(dim, rules)
            at = bisect.bisect_right(before, number) - 1
            segment = segments[at]
            offset, number = divmod(number - before[at], segment.kept_each)
            position.append(segment.start + offset)
            rules = segment.rules
        return tuple(position)

    def positions(self) -> Iterator[tuple[int, ...]]:
        """Every kept position, in grid order, lazily."""
        return self._walk(0, self.everything)

    def _walk(self, dim: int, rules: frozenset[int]) -> Iterator[tuple[int, ...]]:
        if dim == len(self.sizes):
            if not rules:  # a rule still in play here has matched every dimension
                yield ()
            return
        if not rules:
            yield from every_position(self.sizes[dim:])
            return
        segments, _ = self.table(dim, rules)
        for segment in segments:
            if segment.kept_each == 0:
                continue
            for index in range(segment.start, segment.stop):
                for rest in self._walk(dim + 1, segment.rules):
                    yield (index, *rest)


def every_position(sizes: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Every position of a grid, last dimension fastest, never materialising a dimension."""
    if all(size <= 1 << 16 for size in sizes):
        return itertools.product(*(range(size) for size in sizes))  # materialises each range
    return _odometer(tuple(sizes))


def _odometer(sizes: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    if not sizes:
        yield ()
        return
    for index in range(sizes[0]):
        for rest in every_position(sizes[1:]):
            yield (index, *rest)


def decode_position(sizes: Sequence[int], number: int) -> tuple[int, ...]:
    """The `number`-th position of the full grid (no exclusions), last dimension fastest."""
    position = []
    for size in reversed(sizes):
        number, index = divmod(number, size)
        position.append(index)
    return tuple(reversed(position))
