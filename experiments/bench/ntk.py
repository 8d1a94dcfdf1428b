"""Bench rows for the empirical NTK (issue 5): the three methods side by side.

Depth-4 (3 hidden layers) ReLU MLPs in the NTK parameterisation on circle points:
width 500 on 64 points and width 2048 on 16 points, float32 and float64, at one torch
thread; the structured method also at 2 threads (the lab runs it at one).
"""

from __future__ import annotations

import numpy as np
import torch

from experiments.bench import (
    Row,
    median_seconds,
    peak_allocated_bytes,
    thread_counts,
    torch_threads,
)
from experiments.probes import ntk as probe
from toy_models import ntk


def _case(width: int, n_points: int, dtype: torch.dtype, repeats: int):
    torch.manual_seed(0)
    net = ntk.ntk_mlp([2, width, width, width, 1], dtype=dtype)
    x = torch.tensor(ntk.circle(np.linspace(0, 2 * np.pi, n_points, endpoint=False)),
                     dtype=dtype)
    times, memory, kernels = {}, {}, {}
    for method in probe.METHODS:
        def compute(method=method):
            return probe.empirical_ntk(net, x, method=method, chunk_size=None)

        kernels[method] = compute()
        times[method] = median_seconds(compute, repeats)
        memory[method] = peak_allocated_bytes(compute)
    structured = {}
    for threads in thread_counts():
        with torch_threads(threads):
            structured[threads] = median_seconds(
                lambda: probe.empirical_ntk(net, x, method="structured", chunk_size=None),
                repeats)
    return times, memory, kernels, structured


def rows(quick: bool = False) -> list[Row]:
    repeats = 3 if quick else 5
    out = []
    for width, n_points in ((500, 64), (2048, 16)):
        for dtype in (torch.float32, torch.float64):
            with torch_threads(1):
                times, memory, kernels, structured = _case(width, n_points, dtype, repeats)
            name = f"NTK width {width}, {n_points} points, {str(dtype)[6:]}"
            speedup = times["jacobian"] / times["structured"]
            out.append((f"{name}: Jacobian / structured time",
                        f"{speedup:.1f} ({times['jacobian'] * 1e3:.1f} ms / "
                        f"{times['structured'] * 1e3:.1f} ms; NTK-vector products "
                        f"{times['ntk_vp'] * 1e3:.1f} ms)", ">= 10", speedup >= 10))
            out.append((f"{name}: structured time at "
                        + " / ".join(f"{t} thread{'s' if t > 1 else ''}" for t in structured),
                        " / ".join(f"{s * 1e3:.2f}" for s in structured.values()) + " ms",
                        "", None))
            out.append((f"{name}: peak memory (Jacobian / vp / structured)",
                        " / ".join(f"{memory[m] / 2**20:.1f}" for m in probe.METHODS) + " MiB",
                        "", None))
            if dtype == torch.float64:
                ref = kernels["jacobian"]
                error = max(float((kernels[m] - ref).abs().max() / ref.abs().max())
                            for m in ("structured", "ntk_vp"))
                out.append((f"{name}: max relative difference between methods",
                            f"{error:.1e}", "<= 1e-5", error <= 1e-5))
    return [Row(*row) for row in out]
