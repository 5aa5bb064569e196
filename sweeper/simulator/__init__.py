"""An API-compatible local server for offline runs, tests and benchmarks.

It speaks the contract in ../shared/api-contract.md over real HTTP on loopback:
uploads, edits that render a deterministic image, presigned-style downloads,
strict request validation, a sliding-window rate limit, credits, and faults
scripted per endpoint.
"""

from sweeper.simulator.config import FaultRule, SimulatorConfig
from sweeper.simulator.server import RunningSimulator, SimulatorThread, run_simulator, serve_forever
from sweeper.simulator.state import ProducedImage, SimulatorState

__all__ = [
    "FaultRule",
    "ProducedImage",
    "RunningSimulator",
    "SimulatorConfig",
    "SimulatorState",
    "SimulatorThread",
    "run_simulator",
    "serve_forever",
]
