"""Bench rows for issue 8: the exact Gauss–Newton trace against Hutchinson and Hutch++
given the same wall time.

Workload: the MLP of ``wu2023-sgd-trace-bound`` (64-64-1 tanh, 200 sklearn digits,
½-MSE, float64) at initialisation.
"""

from __future__ import annotations

import time

import torch

from experiments import losses
from experiments.probes import curvature
from experiments.recipes.wu2023_sgd_trace_bound import Config, workload
from toy_models.networks import mlp, seeded


def rows(quick: bool = False) -> list[tuple[str, str, str, bool | None]]:
    x, y = workload(Config())
    model = seeded(0, mlp, [64, 64, 1], "tanh", dtype=torch.float64)
    start = time.perf_counter()
    exact = curvature.gauss_newton_trace(model, losses.half_sum_mse, x, y)
    t_exact = time.perf_counter() - start
    op = curvature.CurvatureOperator(model, losses.half_sum_mse, x, y, kind="gauss_newton")
    start = time.perf_counter()
    op.matvec(torch.ones(op.n_params, dtype=torch.float64))
    t_matvec = time.perf_counter() - start
    # a multiple of 3, and at least 6: Hutch++ needs ≥ 4 products (a sketch, its image, the
    # residual), and on a fast or loaded machine the exact trace can cost < 4 products
    budget = max(6, int(t_exact / t_matvec))
    budget -= budget % 3
    generator = torch.Generator().manual_seed(0)
    hutch = curvature.hutchinson_trace(op, budget, generator)
    hutchpp = curvature.hutchpp_trace(op, budget, generator)
    out = [("exact GN trace (per-example gradients)", f"{exact:.4f} in {t_exact * 1e3:.0f} ms",
            "", None)]
    for name, est in (("Hutchinson", hutch), ("Hutch++", hutchpp)):
        error = abs(est.estimate / exact - 1)
        out.append((f"{name} with the same wall time ({est.n_matvecs} GN products)",
                    f"relative error {error:.2e} (stderr {est.stderr / exact:.1e})", "", None))
    return out
