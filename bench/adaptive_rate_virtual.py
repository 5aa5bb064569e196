"""Adaptive pacing against modelled limits in virtual time: many cases in seconds.

The same pool and server model as the scenario tests in tests/test_adaptive.py
(a strict 60 s window that does not count refusals, and/or a cap on requests at
once), run for 10 virtual minutes each on an event loop whose clock only moves
when every task waits. Prints the accepted share of the limit per minute, the
warm share (minute 3 to 10) and the 429s. bench/adaptive_rate.py is the
real-clock measurement against the simulator; this is how its defaults were found.

    python bench/adaptive_rate_virtual.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_adaptive import run_scenario

from sweeper.adaptive import PacingSettings

MINUTES = 10
WARM_FROM_S = 180.0
# name, the best a client can get per minute, pacer settings, pool size, server model
CASES: list[tuple[str, float, dict, int, dict]] = [
    ("strict 240/min, answers in 1 s", 240, {}, 16, {"rpm_limit": 240}),
    ("strict 240/min, answers in 0.5-5 s", 240, {}, 16, {"rpm_limit": 240, "latency": (0.5, 5)}),
    ("strict 240/min, no Retry-After", 240, {}, 16, {"rpm_limit": 240, "retry_after": None}),
    ("strict 60/min", 60, {}, 16, {"rpm_limit": 60}),
    ("strict 600/min, 32 workers", 600, {}, 32, {"rpm_limit": 600}),
    (
        "learned 400/min, limit lowered to 240",
        240,
        {"rpm_start": 400, "slow_start": False},
        16,
        {"rpm_limit": 240},
    ),
    ("started into a full window, from 60", 240, {}, 16, {"rpm_limit": 240, "earlier": 240}),
    (
        "started into a full window, learned 216",
        240,
        {"rpm_start": 216, "slow_start": False},
        16,
        {"rpm_limit": 240, "earlier": 240},
    ),
    ("4 at once, answers in 1 s", 240, {}, 16, {"max_concurrent": 4}),
    ("4 at once, answers in 0.5-1.5 s", 240, {}, 16, {"max_concurrent": 4, "latency": (0.5, 1.5)}),
    ("2 at once, answers in 2-4 s", 40, {}, 16, {"max_concurrent": 2, "latency": (2, 4)}),
    ("4 at once and 180/min", 180, {}, 16, {"max_concurrent": 4, "rpm_limit": 180}),
]


def main() -> None:
    print(f"# adaptive pacing in virtual time, {MINUTES} min per case, from 60/min unless said")
    for name, best, settings, workers, server in CASES:
        pacer, model = run_scenario(
            PacingSettings(max_concurrency=workers, **settings),
            workers=workers,
            minutes=MINUTES,
            **server,
        )
        minutes = " ".join(
            f"{model.accepted_per_minute(m * 60.0, (m + 1) * 60.0) / best:.2f}"
            for m in range(MINUTES)
        )
        warm = model.accepted_per_minute(WARM_FROM_S, MINUTES * 60.0) / best
        refused = sum(not ok for _, ok in model.log)
        print(
            f"{name:42s} {minutes}  warm {warm:.3f}  429s {refused}/{len(model.log)}  "
            f"ends at {pacer.current_rpm:.0f}/min, {pacer.current_concurrency} at once"
        )


if __name__ == "__main__":
    main()
