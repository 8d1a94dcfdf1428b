"""``python -m experiments bench``: measured speed and memory ratios, printed, never asserted.

Workload (issue 3, part 6): fc-tanh 40-200-200-10 on the first 1,000 MNIST-1D
examples, ½-summed MSE on 0/1 targets, float32, CPU, at a point after a short run
of full-batch GD (η = 0.1), where the top of the Hessian spectrum is no longer
that of the initialisation.
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


def main(quick: bool = False) -> int:
    torch.manual_seed(0)
    repeats = 5 if quick else 20
    rows: list[Row] = []
    print(f"bench: fc-tanh 40-200-200-10, 1000 MNIST-1D examples, float32, CPU, "
          f"{torch.get_num_threads()} threads", flush=True)

    model, x, y = workload(gd_steps=195)
    op_prev = curvature.CurvatureOperator(model, losses.half_sum_mse, x, y)
    previous = curvature.top_eigenpairs(op_prev, k=1, tol=1e-6,
                                        v0=np.random.default_rng(0).standard_normal(
                                            op_prev.n_params))
    fit(model, losses.half_sum_mse, x, y, lambda p: torch.optim.SGD(p, lr=0.1), steps=5,
        eval_every=5)
    op = curvature.CurvatureOperator(model, losses.half_sum_mse, x, y)
    v = torch.randn(op.n_params)

    t_grad = median_seconds(op.gradient, repeats)
    t_hvp = median_seconds(lambda: op.matvec(v), repeats)
    rows.append(Row("time of one HVP / one gradient", f"{t_hvp / t_grad:.2f} "
                    f"({t_hvp * 1e3:.1f} ms / {t_grad * 1e3:.1f} ms)", "<= 2", t_hvp / t_grad <= 2))

    m_grad = peak_allocated_bytes(op.gradient)
    m_hvp = peak_allocated_bytes(lambda: op.matvec(v))
    rows.append(Row("peak memory of an HVP / a gradient", f"{m_hvp / m_grad:.2f} "
                    f"({m_hvp / 2**20:.1f} MiB / {m_grad / 2**20:.1f} MiB)", "<= 2.5",
                    m_hvp / m_grad <= 2.5))

    # Reference top eigenvalue: float64 copy of the same point, Lanczos at tol 1e-12.
    model64 = copy.deepcopy(model).double()
    op64 = curvature.CurvatureOperator(model64, losses.half_sum_mse, x.double(), y.double())
    reference = float(curvature.top_eigenpairs(op64, k=1, tol=1e-12,
                                               v0=previous.eigenvectors[:, 0]).eigenvalues[0])
    warm = previous.eigenvectors[:, 0]
    cold = np.random.default_rng(1).standard_normal(op.n_params)

    start = time.perf_counter()
    lanczos_warm, lanczos_err = lanczos_hvps_to(op, warm, reference, 1e-3)
    t_lanczos = time.perf_counter() - start
    lanczos_cold, _ = lanczos_hvps_to(op, cold, reference, 1e-3)
    start = time.perf_counter()
    power_warm = power_hvps_to(op, warm, reference, 1e-3)
    t_power = time.perf_counter() - start
    power_cold = power_hvps_to(op, cold, reference, 1e-3)
    ratio = power_warm / lanczos_warm
    rows.append(Row(
        "HVPs for λ_max to 1e-3: power / warm Lanczos (same warm start)",
        f"{ratio:.2f} ({power_warm} / {lanczos_warm} HVPs; {t_power:.2f} s / "
        f"{t_lanczos:.2f} s; Lanczos true error {lanczos_err:.1e})", ">= 2.5", ratio >= 2.5))
    rows.append(Row("HVPs from a cold start: power / Lanczos",
                    f"{power_cold / lanczos_cold:.2f} ({power_cold} / {lanczos_cold})", "", None))
    rows.append(Row("λ_max at the benchmark point (float64 reference)", f"{reference:.4f}", "",
                    None))

    width = max(len(r.what) for r in rows)
    print(f"{'measure'.ljust(width)}  {'target':8}  met  measured")
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "NO")
        print(f"{r.what.ljust(width)}  {r.target:8}  {met:3}  {r.measured}")
    return 0
