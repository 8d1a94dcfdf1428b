"""wu2023-norm-selection: the trace ↔ norm identities, and the quick run's claims."""

from __future__ import annotations

import json

import numpy as np
import torch
from conftest import run_cli

from experiments import losses
from experiments.probes.curvature import gauss_newton_trace
from toy_models import sgd_stability as theory
from toy_models.networks import mlp, seeded

RECIPE = "wu2023-norm-selection"


def test_diagonal_trace_closed_form_equals_the_probe_and_bounds_l1():
    x, y, _ = theory.sparse_regression(15, 8, 2, seed=1)
    model = theory.DiagonalLinear(8, 0.7)
    with torch.no_grad():
        model.u.add_(torch.randn(8, dtype=torch.float64))
    exact = gauss_newton_trace(model, losses.half_sum_mse, x, y)
    u, v = model.u.detach().numpy(), model.v.detach().numpy()
    assert abs(theory.diagonal_trace(u, v, x.numpy()) - exact) < 1e-10
    weights = np.mean(x.numpy() ** 2, axis=0)
    assert exact >= 2 * np.sum(np.abs(u * v) * weights) - 1e-12


def test_relu_trace_closed_form_equals_the_probe():
    x, y = theory.xor_hypercube(20, 6, seed=2)
    model = seeded(3, mlp, [6, 9, 1], "relu", bias=False, dtype=torch.float64)
    exact = gauss_newton_trace(model, losses.half_sum_mse, x, y)
    w = model[0].weight.detach().numpy()
    a = model[2].weight.detach().numpy()[0]
    assert abs(theory.relu_trace(w, a, x.numpy()) - exact) < 1e-10 * max(1.0, exact)


def test_quick_run_passes_and_records(session_store):
    proc = run_cli("run", RECIPE, "--scale", "quick", env_dirs=session_store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((session_store[1] / f"{RECIPE}.json").read_text())
    assert record["passed"] and len(record["claims"]) == 6
