"""An asyncio event loop whose clock only moves when every task is waiting on a timer.

`FakeClock` advances time from inside `sleep`, a few loop turns after a sleeper
starts; work that takes more turns than that at one instant (a request ending, its
slot going to the next caller, that caller sending) sees the clock jump past it.
Minutes-long pacing scenarios need the exact rule instead: time stands still while
any callback is ready, and jumps to the next timer when none is. The selector's
wait is where the loop would block, so that is where virtual time advances.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop


class _AdvancingSelector(_VirtualSelector):
    def select(self, timeout: float | None = None) -> list:
        if timeout is None:
            raise RuntimeError("virtual time: every task is waiting and no timer is set")
        self._loop.virtual_now += max(0.0, timeout)
        return super().select(0)


class _IdleSelector(_VirtualSelector):
    """Lets virtual time jump to the next timer only once no socket has anything to do."""

    def select(self, timeout: float | None = None) -> list:
        ready = super().select(0 if timeout is None else min(timeout, 0.005))
        if not ready and timeout:
            self._loop.virtual_now += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    selector_class: type[_VirtualSelector] = _AdvancingSelector

    def __init__(self) -> None:
        self.virtual_now = 0.0
        super().__init__(selector=self.selector_class(self))

    def time(self) -> float:
        return self.virtual_now


class SocketVirtualTimeLoop(VirtualTimeLoop):
    """For real loopback sockets: I/O first, and time moves only when none is ready (the
    plain loop moves the clock before looking at sockets, so a hang looks like a timeout)."""

    selector_class = _IdleSelector


class LoopClock:
    """The `Clock` the pacer sees: the running loop's (virtual) time and its sleep."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


def run_in_virtual_time(main: Coroutine[Any, Any, T]) -> T:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()
