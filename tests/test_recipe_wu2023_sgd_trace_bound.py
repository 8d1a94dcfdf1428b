"""wu2023-sgd-trace-bound at quick scale: every claim passes; the exact trace is right."""

from __future__ import annotations

import json

import torch
from conftest import run_cli

from experiments.recipes import wu2023_sgd_trace_bound as recipe
from toy_models.networks import mlp, seeded

RECIPE = "wu2023-sgd-trace-bound"


def test_gram_spectrum_equals_the_dense_gauss_newton_matrix():
    torch.manual_seed(0)
    x = torch.randn(7, 3, dtype=torch.float64)
    model = seeded(0, mlp, [3, 5, 1], "tanh", dtype=torch.float64)
    trace, fro, lam = recipe.gram_spectrum(model, x)
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach()

    def outputs(theta):
        pieces = torch.split(theta, [s.numel() for s in shapes])
        params = {n: t.view(s) for n, t, s in zip(names, pieces, shapes, strict=True)}
        return torch.func.functional_call(model, params, (x,)).squeeze(1)

    jac = torch.autograd.functional.jacobian(outputs, flat)  # dense n × P
    gauss_newton = jac.T @ jac / len(x)
    assert abs(trace - torch.trace(gauss_newton).item()) < 1e-10
    assert abs(fro - gauss_newton.norm().item()) < 1e-10
    assert abs(lam - torch.linalg.eigvalsh(gauss_newton)[-1].item()) < 1e-10


def test_quick_run_passes_and_records(session_store):
    proc = run_cli("run", RECIPE, "--scale", "quick", env_dirs=session_store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((session_store[1] / f"{RECIPE}.json").read_text())
    assert record["passed"] and len(record["claims"]) >= 5
