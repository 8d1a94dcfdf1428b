"""Bench rows of the curvature probes (issues 3 and 23), at one torch thread.

Workload (issue 3, part 6): fc-tanh 40-w-w-10 on the first 1,000 MNIST-1D examples,
½-summed MSE on 0/1 targets, float32, CPU, eager. HVP against gradient at w = 100-800
(at initialisation; the cost does not depend on the point). Sharpness at w = 200 at a
point of full-batch GD (η = 0.1) past the edge of stability, where the top eigenvalues
cluster (λ2/λ1 ≈ 0.98), warm-started from the top eigenvector 5 GD steps earlier; the
true error is against a float64 ARPACK run at tol 1e-12.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from experiments import datasets, losses
from experiments.bench import Row, median_seconds, peak_allocated_bytes, torch_threads
from experiments.probes import curvature
from experiments.train import fit
from toy_models.networks import mlp, seeded

WIDTHS = (100, 200, 400, 800)


def _data():
    data = datasets.mnist1d(1000)
    return data.x.float(), losses.one_hot(data.y, 10)


def workload(gd_steps: int, width: int = 200):
    x, y = _data()
    model = seeded(0, mlp, [40, width, width, 10], "tanh", dtype=torch.float32)
    if gd_steps:
        fit(model, losses.half_sum_mse, x, y, lambda p: torch.optim.SGD(p, lr=0.1),
            steps=gd_steps, eval_every=gd_steps, progress=False)
    return model, x, y


def _operator(model, x, y, hvp: str = "retained") -> curvature.CurvatureOperator:
    return curvature.CurvatureOperator(model, losses.half_sum_mse, x, y, hvp=hvp)


def hvp_rows(width: int, repeats: int) -> list[Row]:
    """One product through the retained graph, and one from scratch, over one gradient;
    peak memory of a probe (graph + one product) over a gradient's."""
    model, x, y = workload(0, width)
    op = _operator(model, x, y)
    scratch = _operator(model, x, y, hvp="rev_rev")
    v = torch.randn(op.n_params, generator=torch.Generator().manual_seed(0))
    op.matvec(v)  # builds the graph once, as the first product of a probe does
    t_grad = median_seconds(op.gradient, repeats)
    t_retained = median_seconds(lambda: op.matvec(v), repeats)
    t_scratch = median_seconds(lambda: scratch.matvec(v), repeats)
    t_build = median_seconds(lambda: (op.release(), op._retained_graph()), repeats)
    op.release()
    m_grad = peak_allocated_bytes(op.gradient)
    m_probe = peak_allocated_bytes(lambda: _operator(model, x, y).matvec(v))
    m_scratch = peak_allocated_bytes(lambda: scratch.matvec(v))
    name = f"fc-tanh 40-{width}-{width}-10, 1 thread"
    ratio, memory = t_retained / t_grad, m_probe / m_grad
    return [
        Row(f"{name}: HVP (retained graph) / gradient time",
            f"{ratio:.2f} ({t_retained * 1e3:.1f} / {t_grad * 1e3:.1f} ms; from scratch "
            f"{t_scratch / t_grad:.2f}; graph build {t_build / t_grad:.2f})",
            "<= 2", ratio <= 2),
        Row(f"{name}: peak memory, graph + one HVP / gradient",
            f"{memory:.2f} ({m_probe / 2**20:.1f} / {m_grad / 2**20:.1f} MiB; from scratch "
            f"{m_scratch / m_grad:.2f})", "<= 2.5", memory <= 2.5),
    ]


def power_hvps_to(op, v0: np.ndarray, reference: float, rel_error: float,
                  max_iter: int = 2000) -> int:
    """HVPs that power iteration from ``v0`` needs until its Rayleigh quotient is within
    ``rel_error`` of ``reference`` (an oracle stop, the most favourable to power iteration)."""
    v = torch.as_tensor(v0, dtype=op.dtype)
    v = v / v.norm()
    for k in range(1, max_iter + 1):
        hv = op.matvec(v)
        rayleigh = float(v @ hv)
        if abs(rayleigh / reference - 1) <= rel_error:
            return k
        v = hv / hv.norm()
    return max_iter


def sharpness_rows() -> list[Row]:
    # 1,495 GD steps at η = 0.1 take fc-tanh past 2/η = 20 (edge of stability).
    model, x, y = workload(gd_steps=1495)
    previous = curvature.top_eigenpairs(_operator(model, x, y), k=1, tol=1e-6)
    fit(model, losses.half_sum_mse, x, y, lambda p: torch.optim.SGD(p, lr=0.1), steps=5,
        eval_every=5, progress=False)
    model64 = copy.deepcopy(model).double()
    top = curvature.top_eigenpairs(_operator(model64, x.double(), y.double()), k=2,
                                   tol=1e-12, v0=previous.eigenvectors[:, 0])
    reference = float(top.eigenvalues[0])
    warm = previous.eigenvectors[:, 0]
    cold = np.random.default_rng(1).standard_normal(warm.size)

    def error(result) -> float:
        return abs(result.eigenvalues[0] / reference - 1)

    start = time.perf_counter()
    lanczos = curvature.lanczos_sharpness(_operator(model, x, y), v0=warm, tol=1e-3)
    t_lanczos = time.perf_counter() - start
    arpack = curvature.top_eigenpairs(_operator(model, x, y), k=1, v0=warm, tol=1e-3, ncv=8)
    lanczos_cold = curvature.lanczos_sharpness(_operator(model, x, y), v0=cold, tol=1e-3)
    op = _operator(model, x, y)
    start = time.perf_counter()
    power_cold = power_hvps_to(op, cold, reference, 1e-3)
    t_power = time.perf_counter() - start
    power_warm = curvature.power_iteration(op, v0=warm, tol=1e-3).n_matvecs
    ratio = power_cold / lanczos.n_matvecs
    return [
        Row("warm-started sharpness, residual 1e-3: HVPs of Lanczos with a residual stop",
            f"{lanczos.n_matvecs} (ARPACK ncv 8, today's tracking: {arpack.n_matvecs}; "
            f"warm power iteration {power_warm})", "<= 5", lanczos.n_matvecs <= 5),
        Row("  its true relative error (float64 reference, ARPACK tol 1e-12)",
            f"{error(lanczos):.1e} (ARPACK ncv 8: {error(arpack):.1e})", "<= 1e-3",
            error(lanczos) <= 1e-3),
        Row("  cold start: HVPs of Lanczos, true error",
            f"{lanczos_cold.n_matvecs}, {error(lanczos_cold):.1e}", "<= 1e-3",
            error(lanczos_cold) <= 1e-3),
        Row("HVPs to λ_max within 1e-3: power (random start) / warm Lanczos",
            f"{ratio:.2f} ({power_cold} / {lanczos.n_matvecs} HVPs; {t_power:.2f} s / "
            f"{t_lanczos:.2f} s)", ">= 2.5", ratio >= 2.5),
        Row("  benchmark point: λ1, λ2 (float64), 2/η = 20",
            f"{top.eigenvalues[0]:.4f}, {top.eigenvalues[1]:.4f}", "", None),
    ]


def rows(quick: bool = False) -> list[Row]:
    repeats = 5 if quick else 20
    out: list[Row] = []
    with torch_threads(1):
        for width in WIDTHS:
            out += hvp_rows(width, repeats)
        out += sharpness_rows()
    return out
