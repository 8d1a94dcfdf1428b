"""``python -m experiments bench``: measured speed and memory ratios, printed, never asserted.

Workload (issue 3, part 6): fc-tanh 40-200-200-10 on the first 1,000 MNIST-1D
examples, ½-summed MSE on 0/1 targets, float32, CPU, at a point of full-batch GD
(η = 0.1) past the edge of stability, where the top eigenvalues cluster.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from experiments import datasets, losses
from experiments.probes import curvature
from experiments.train import fit
from toy_models.networks import mlp, seeded


@dataclass
class Row:
    what: str
    measured: str
    target: str
    met: bool | None


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_allocated_bytes(fn: Callable[[], object]) -> int:
    """Peak of the bytes that ``fn`` allocates on top of what was live before it (CPU).

    Read from the profiler's allocation and free events in time order.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def workload(gd_steps: int):
    data = datasets.mnist1d(1000)
    y = losses.one_hot(data.y, 10)
    model = seeded(0, mlp, [40, 200, 200, 10], "tanh", dtype=torch.float32)
    x = data.x.float()
    fit(model, losses.half_sum_mse, x, y, lambda p: torch.optim.SGD(p, lr=0.1),
        steps=gd_steps, eval_every=gd_steps)
    return model, x, y


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


def lanczos_hvps_to(op, v0: np.ndarray | None, reference: float, rel_error: float,
                    ncv: int | None = None) -> tuple[int, float]:
    """HVPs of ARPACK Lanczos at tol = rel_error, and its true relative error."""
    result = curvature.top_eigenpairs(op, k=1, v0=v0, tol=rel_error, ncv=ncv)
    return result.n_matvecs, abs(result.eigenvalues[0] / reference - 1)


def curvature_rows(repeats: int) -> list[Row]:
    rows: list[Row] = []
    # 1,495 GD steps at η = 0.1 take fc-tanh past 2/η = 20 (edge of stability): the top
    # eigenvalues cluster (λ2/λ1 ≈ 0.98), the hard case for power iteration.
    model, x, y = workload(gd_steps=1495)
    op_prev = curvature.CurvatureOperator(model, losses.half_sum_mse, x, y)
    previous = curvature.top_eigenpairs(op_prev, k=1, tol=1e-6)
    fit(model, losses.half_sum_mse, x, y, lambda p: torch.optim.SGD(p, lr=0.1), steps=5,
        eval_every=5)

    for mode in curvature.HVP_MODES:
        op = curvature.CurvatureOperator(model, losses.half_sum_mse, x, y, hvp=mode)
        v = torch.randn(op.n_params, generator=torch.Generator().manual_seed(0))
        t_grad = median_seconds(op.gradient, repeats)
        t_hvp = median_seconds(lambda op=op, v=v: op.matvec(v), repeats)
        rows.append(Row(f"time of one HVP ({mode}) / one gradient",
                        f"{t_hvp / t_grad:.2f} ({t_hvp * 1e3:.1f} ms / {t_grad * 1e3:.1f} ms)",
                        "<= 2", t_hvp / t_grad <= 2))
        m_grad = peak_allocated_bytes(op.gradient)
        m_hvp = peak_allocated_bytes(lambda op=op, v=v: op.matvec(v))
        rows.append(Row(f"peak memory of an HVP ({mode}) / a gradient",
                        f"{m_hvp / m_grad:.2f} ({m_hvp / 2**20:.1f} MiB / "
                        f"{m_grad / 2**20:.1f} MiB)", "<= 2.5", m_hvp / m_grad <= 2.5))

    # Reference top eigenvalue: a float64 copy of the same point, Lanczos at tol 1e-12.
    model64 = copy.deepcopy(model).double()
    op64 = curvature.CurvatureOperator(model64, losses.half_sum_mse, x.double(), y.double())
    top = curvature.top_eigenpairs(op64, k=2, tol=1e-12, v0=previous.eigenvectors[:, 0])
    reference = float(top.eigenvalues[0])
    op = curvature.CurvatureOperator(model, losses.half_sum_mse, x, y)
    warm = previous.eigenvectors[:, 0]
    cold = np.random.default_rng(1).standard_normal(op.n_params)

    start = time.perf_counter()
    lanczos_warm, lanczos_err = lanczos_hvps_to(op, warm, reference, 1e-3, ncv=8)
    t_lanczos = time.perf_counter() - start
    lanczos_cold, _ = lanczos_hvps_to(op, cold, reference, 1e-3, ncv=8)
    lanczos_default, _ = lanczos_hvps_to(op, warm, reference, 1e-3)
    start = time.perf_counter()
    power_cold = power_hvps_to(op, cold, reference, 1e-3)
    t_power = time.perf_counter() - start
    power_warm = curvature.power_iteration(op, v0=warm, tol=1e-3).n_matvecs
    ratio = power_cold / lanczos_warm
    rows.append(Row(
        "HVPs to λ_max within 1e-3: power (random start) / warm Lanczos (ncv 8)",
        f"{ratio:.2f} ({power_cold} / {lanczos_warm} HVPs; {t_power:.2f} s / "
        f"{t_lanczos:.2f} s; Lanczos true error {lanczos_err:.1e})", ">= 2.5", ratio >= 2.5))
    rows.append(Row("  same start: power / Lanczos (ncv 8), cold",
                    f"{power_cold / lanczos_cold:.2f} ({power_cold} / {lanczos_cold} HVPs)",
                    "", None))
    rows.append(Row("  warm start: power (residual stop 1e-3) / Lanczos (ncv 8)",
                    f"{power_warm / lanczos_warm:.2f} ({power_warm} / {lanczos_warm} HVPs; "
                    f"warm Lanczos at ARPACK's default ncv 20: {lanczos_default})", "", None))
    rows.append(Row("  benchmark point: λ1, λ2 (float64), 2/η = 20",
                    f"{top.eigenvalues[0]:.4f}, {top.eigenvalues[1]:.4f}", "", None))
    return rows


def extra_rows() -> list[Row]:
    """Rows that the mechanism modules add (``experiments/bench_<topic>.py``: ``rows()``)."""
    import importlib
    import pkgutil

    import experiments

    rows: list[Row] = []
    for info in pkgutil.iter_modules(experiments.__path__):
        if info.name.startswith("bench_"):
            module = importlib.import_module(f"experiments.{info.name}")
            rows += [Row(*row) for row in module.rows()]
    return rows


def main(quick: bool = False) -> int:
    torch.manual_seed(0)
    repeats = 5 if quick else 20
    print(f"bench: fc-tanh 40-200-200-10, 1000 MNIST-1D examples, float32, CPU, "
          f"{torch.get_num_threads()} threads (ratios of medians; targets from the issues)",
          flush=True)
    rows = curvature_rows(repeats) + extra_rows()
    width = max(len(r.what) for r in rows)
    print(f"{'measure'.ljust(width)}  {'target':8}  met  measured")
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "NO")
        print(f"{r.what.ljust(width)}  {r.target:8}  {met:3}  {r.measured}")
    return 0
