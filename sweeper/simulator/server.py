"""Running a simulator: inside the current event loop, in a background thread, or forever.

`run_simulator` serves on an ephemeral loopback port (tests, `--offline`),
`SimulatorThread` does the same from synchronous code, and `serve_forever` is
`sweeper serve`, which prints its address first and stops cleanly on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from sweeper.simulator.app import build_app
from sweeper.simulator.config import SimulatorConfig
from sweeper.simulator.state import SimulatorState


@dataclass
class RunningSimulator:
    base_url: str
    state: SimulatorState


@asynccontextmanager
async def run_simulator(
    config: SimulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningSimulator]:
    """Serve a simulator in this event loop for the duration of the block."""
    state = SimulatorState(config or SimulatorConfig())
    runner = web.AppRunner(
        build_app(state), access_log=None, handle_signals=False, shutdown_timeout=0.5
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    try:
        yield RunningSimulator(f"http://{host}:{bound_port}", state)
    finally:
        await runner.cleanup()


class SimulatorThread:
    """A simulator on its own event loop in a daemon thread, for synchronous callers."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self._config = config or SimulatorConfig()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True, name="simulator")
        self._simulator: RunningSimulator | None = None

    def _serve(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with run_simulator(self._config) as simulator:
            self._simulator = simulator
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> RunningSimulator:
        self._thread.start()
        if not self._ready.wait(timeout=10) or self._simulator is None:
            raise RuntimeError("the simulator did not start")
        return self._simulator

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


def serve_forever(
    host: str, port: int, config: SimulatorConfig, on_ready: Callable[[str], None]
) -> None:
    """`sweeper serve`: serve until Ctrl-C or SIGTERM; `on_ready(base_url)` once listening."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_signalled(host, port, config, on_ready))


async def _serve_until_signalled(
    host: str, port: int, config: SimulatorConfig, on_ready: Callable[[str], None]
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with run_simulator(config, host=host, port=port) as simulator:
        on_ready(simulator.base_url)
        await stop.wait()
