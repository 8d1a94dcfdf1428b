"""Bench row for ``python -m experiments plan``: does a plan predict the run it plans?

``xu2024-xor-grokking`` at quick scale is planned (a few timed steps per phase, the rest
estimated) and then run in full without the cache, at the same thread count, on the same
machine state; the target is the estimate within a factor of two of the measured wall
time. A wall-time ratio depends on the load while the two ran, so it is a bench row and
not a test (a loaded machine makes the plan's few steps look slower than the run).
"""

from __future__ import annotations

import time

from experiments import api
from experiments import plan as plan_mod
from experiments.bench import Row

RECIPE = "xu2024-xor-grokking"


def rows(quick: bool = False) -> list[Row]:
    planned = plan_mod.plan(RECIPE, "quick", "cpu")
    start = time.perf_counter()
    api.run(RECIPE, scale="quick", device="cpu", write=False, use_cache=False, figure=False)
    measured = time.perf_counter() - start
    ratio = planned.seconds / measured if planned.ok and measured > 0 else float("nan")
    return [Row(f"plan {RECIPE} (quick): estimate / measured run "
                f"({planned.seconds:.1f} s / {measured:.1f} s; planning took "
                f"{planned.plan_seconds:.1f} s)",
                f"{ratio:.2f}", "in [0.5, 2]", bool(0.5 <= ratio <= 2))]
