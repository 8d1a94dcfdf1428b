"""Bench rows for the live explorers (``experiments.explorers``): seconds per slider update.

An update is what a reader waits for after moving a slider: the compute function, the
figure and its PNG. Each row times the explorer's slowest setting (its ``slowest``
values, e.g. the widest nets, the largest p) with its caches cleared, at one torch thread
(the explorers compute at one); the target is interactive speed, at most 1 s on one
laptop core.
"""

from __future__ import annotations

from experiments import explorers
from experiments.bench import Row

TARGET_SECONDS = 1.0


def rows(quick: bool = False) -> list[Row]:
    repeats = 1 if quick else 3
    out = []
    for name, explorer in explorers.EXPLORERS.items():
        explorers.update_seconds(name, explorer.defaults, repeats=1)  # warm: imports, fonts
        seconds = explorers.update_seconds(name, repeats=repeats)
        setting = ", ".join(f"{k}={v}" for k, v in explorer.slowest.items())
        out.append(Row(f"explorer {name}: one update at {setting} (compute, draw, PNG)",
                       f"{seconds:.2f} s", f"<= {TARGET_SECONDS:g} s",
                       seconds <= TARGET_SECONDS))
    return out
