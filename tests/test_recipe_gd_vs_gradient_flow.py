"""Recipe cohen2021-gd-vs-gradient-flow at quick scale, and the RK4 integrator."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import quick_cli_run

from experiments.flows import rk4_step

RECIPE = "cohen2021-gd-vs-gradient-flow"


def test_rk4_on_exponential_decay_has_fourth_order_error():
    # dw/dt = −λw has the exact solution e^{−λt}; RK4's global error is O(h⁴).
    def field(w):
        return -2.0 * w

    errors = []
    for n in (10, 20):
        w = torch.ones(1, dtype=torch.float64)
        for _ in range(n):
            w = rk4_step(field, w, 1.0 / n)
        errors.append(abs(float(w) - math.exp(-2.0)))
    assert errors[0] / errors[1] == pytest.approx(16.0, rel=0.1)


@pytest.fixture(scope="module")
def quick_run(session_store):
    return quick_cli_run(RECIPE, session_store)


@pytest.mark.slow
def test_quick_run_passes_its_claim(quick_run):
    proc, dirs = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((dirs[1] / f"{RECIPE}.json").read_text())
    assert record["passed"] and len(record["claims"]) == 1
