"""sweeper: batch parameter-sweep runner for the 1min.ai Flux Depth Dev image editor.

    import sweeper
    result = sweeper.run("sweeps/demo.yaml", out="results/demo", offline=True)
    frame = sweeper.open_run(result.run_dir).manifest()

The names below are imported on first use, so `import sweeper` (and the CLI's
`--help`) stays fast. See docs/python-api.md.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# A library logs; the application decides what is shown (the CLI, or progress=True).
logging.getLogger("sweeper").addHandler(logging.NullHandler())

_EXPORTS = {
    "load_spec": "sweeper.api",
    "plan": "sweeper.api",
    "run": "sweeper.api",
    "run_async": "sweeper.api",
    "open_run": "sweeper.api",
    "Plan": "sweeper.planning",
    "JobTally": "sweeper.planning",
    "RunFolder": "sweeper.run_folder",
    "RunResult": "sweeper.run_result",
    "RunStatus": "sweeper.status",
    "StopSwitch": "sweeper.execute",
    "Spec": "sweeper.spec",
    "SweeperError": "sweeper.errors",
    "SpecError": "sweeper.errors",
    "AbortError": "sweeper.errors",
}

__all__ = [
    "AbortError",
    "JobTally",
    "Plan",
    "RunFolder",
    "RunResult",
    "RunStatus",
    "Spec",
    "SpecError",
    "StopSwitch",
    "SweeperError",
    "__version__",
    "load_spec",
    "open_run",
    "plan",
    "run",
    "run_async",
]

if TYPE_CHECKING:
    from sweeper.api import load_spec, open_run, plan, run, run_async
    from sweeper.errors import AbortError, SpecError, SweeperError
    from sweeper.execute import StopSwitch
    from sweeper.planning import JobTally, Plan
    from sweeper.run_folder import RunFolder
    from sweeper.run_result import RunResult
    from sweeper.spec import Spec
    from sweeper.status import RunStatus


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sweeper' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
