"""The values one swept parameter takes: a written list, or an exact inclusive range.

A range is never materialised: its length, its i-th value and membership are
computed with decimal arithmetic on the numbers as written, so 2.5..7.5 step 2.5
gives exactly 2.5, 5.0, 7.5 and a range of 10^12 values costs nothing. A range's
numbers are bounded (`sweeper.limits`) so that this arithmetic is always exact and
a hostile step such as 1e-300 is one clear error rather than a hang or an overflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from typing import Any

from sweeper.limits import MAX_RANGE_VALUES, RANGE_NUMBER_DIGITS, RANGE_NUMBER_MAGNITUDE

# Wide enough for every sum and product of bounded numbers to be exact.
EXACT = Context(prec=4 * RANGE_NUMBER_DIGITS, traps=[InvalidOperation, DivisionByZero, Overflow])
LARGEST = Decimal(1).scaleb(RANGE_NUMBER_MAGNITUDE)
SMALLEST = Decimal(1).scaleb(-RANGE_NUMBER_MAGNITUDE)

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
        count = int(EXACT.divide_int(EXACT.subtract(last, first), stride)) + 1
        if count > MAX_RANGE_VALUES:
            raise ValueError(
                f"the step is too small: the range would hold {count:,} values, "
                f"more than {MAX_RANGE_VALUES:,}"
            )
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
        value = EXACT.add(self._start, EXACT.multiply(self._step, index))
        return int(value) if self._integer else float(value)

    def __contains__(self, value: object) -> bool:
        return self.position(value) is not None

    def position(self, value: object) -> int | None:
        """The index of `value` in the range, or None; computed, never searched."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        try:
            offset = Decimal(str(value)) - self._start
            offset = EXACT.divide(offset, self._step)
        except (ArithmeticError, ValueError):
            return None
        if not offset.is_finite() or offset != offset.to_integral_value():
            return None
        index = int(offset)
        return index if 0 <= index < self._count else None

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        found = self.position(value)
        end = self._count if stop is None else stop
        if found is None or not start <= found < end:
            raise ValueError(f"{value!r} is not in the range")
        return found

    def count(self, value: Any) -> int:
        return 0 if self.position(value) is None else 1

    def __iter__(self):
        for index in range(self._count):
            yield self[index]

    def __repr__(self) -> str:
        return f"RangeAxis(start={self._start}, step={self._step}, count={self._count})"


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name} must be a number")
    if isinstance(value, str) and len(value.strip()) > 4 * RANGE_NUMBER_DIGITS:
        raise ValueError(f"{name} must be a number with at most {RANGE_NUMBER_DIGITS} digits")
    if isinstance(value, int) and value.bit_length() > 256:
        raise ValueError(_out_of_range(name))
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"{name} must be a number") from None
    if not number.is_finite():
        raise ValueError(f"{name} must be a finite number")
    if number and not SMALLEST <= abs(number) <= LARGEST:
        raise ValueError(_out_of_range(name))
    if len("".join(map(str, number.as_tuple().digits)).rstrip("0")) > RANGE_NUMBER_DIGITS:
        raise ValueError(f"{name} has more than {RANGE_NUMBER_DIGITS} significant digits")
    return number


def _out_of_range(name: str) -> str:
    return (
        f"{name} is out of range: a range's numbers are 0 or between "
        f"1e-{RANGE_NUMBER_MAGNITUDE} and 1e{RANGE_NUMBER_MAGNITUDE} in size"
    )
