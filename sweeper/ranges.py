"""The values one swept parameter takes: a written list, or an exact inclusive range.

A range is never materialised: its length, its i-th value and membership are
computed with decimal arithmetic on the numbers as written, so 2.5..7.5 step 2.5
gives exactly 2.5, 5.0, 7.5 and a range of 10^12 values costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

Axis = Sequence[Any]


class ListAxis(tuple):
    """Values as the spec listed them."""

    __slots__ = ()


class RangeAxis(Sequence[Any]):
    """start, start+step, ..., up to and including stop (when it lands on it)."""

    def __init__(self, start: Decimal, step: Decimal, count: int, integer: bool) -> None:
        self._start = start
        self._step = step
        self._count = count
        self._integer = integer

    @classmethod
    def build(cls, start: Any, stop: Any, step: Any, *, integer: bool) -> RangeAxis:
        first, last, stride = (
            _decimal(v, name) for v, name in ((start, "start"), (stop, "stop"), (step, "step"))
        )
        if stride <= 0:
            raise ValueError("step must be greater than 0")
        if last < first:
            raise ValueError("backwards range: stop is less than start")
        if integer and any(v != v.to_integral_value() for v in (first, last, stride)):
            raise ValueError("this parameter is an integer; start, stop and step must be integers")
        count = int((last - first) // stride) + 1
        return cls(first, stride, count, integer)

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(index)
        value = self._start + self._step * index
        return int(value) if self._integer else float(value)

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        offset = (Decimal(str(value)) - self._start) / self._step
        return offset == offset.to_integral_value() and 0 <= offset < self._count

    def __iter__(self):
        for index in range(self._count):
            yield self[index]

    def __repr__(self) -> str:
        return f"RangeAxis(start={self._start}, step={self._step}, count={self._count})"


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name} must be a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{name} must be a number") from None
    if not number.is_finite():
        raise ValueError(f"{name} must be a finite number")
    return number
