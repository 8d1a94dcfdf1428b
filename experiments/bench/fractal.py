"""Bench rows for the fractal trainability planes (issue 9): pixel-steps per second.

Workload: the paper's tanh network (width 16, N = 272, full batch), a 64 × 64 plane of
(η₀, η₁) around the trainability boundary, 20 GD steps, CPU float64 and float32 (one
chunk-training thread per core, and one thread), and CUDA (a 1024² plane) when
present. One pixel-step costs ≈ 3×10⁵ FLOP (two 272×16×16 matrix products forward and
back), so the achieved FLOP/s is 3×10⁵ × the rate. The issue's target (≥ 7×10⁴ in
float64 on 2 cores) is checked on the per-core row.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from toy_models import fractal

FLOP_PER_PIXEL_STEP = 4 * 272 * 16 * 16 + 10 * 272 * 16  # ≈ 3.2×10⁵ (matmuls + elementwise)
TARGET_CPU_F64 = 7e4  # issue 9: ≥ 7×10⁴ pixel-steps/s in float64 on 2 CPU cores
TARGET_GPU_F64 = 4096**2 * 1000 / (15 * 60)  # issue 9: a 4096² × 1000-step plane in 15 min


def pixel_steps_per_second(dtype: str, device: str, resolution: int = 32, steps: int = 20,
                           threads: int | None = None, workers: int = 1) -> float:
    """Throughput of ``fractal.train_plane``: ``threads`` torch threads, ``workers``
    chunk-parallel threads (0: one per core)."""
    problem = fractal.make_problem("tanh")
    axis = 10.0 ** np.linspace(0.0, 2.5, resolution)
    lr0, lr1 = np.meshgrid(axis, 10.0 ** np.linspace(1.2, 3.2, resolution))
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        fractal.train_plane(problem, lr0[:2], lr1[:2], 2, dtype=dtype, device=device)  # warm
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fractal.train_plane(problem, lr0, lr1, steps, dtype=dtype, device=device,
                            workers=workers)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(before)
    return resolution * resolution * steps / seconds


def matmul_flops(dtype: torch.dtype, device: str, size: int = 1024) -> float:
    a = torch.randn(size, size, dtype=dtype, device=device)
    a @ a
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start, reps = time.perf_counter(), 5
    for _ in range(reps):
        a @ a
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 2 * size**3 * reps / (time.perf_counter() - start)


def rows(quick: bool = False) -> list[tuple[str, str, str, bool | None]]:
    out: list[tuple[str, str, str, bool | None]] = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        peak64 = matmul_flops(torch.float64, device)
        for dtype in ("float64", "float32"):
            if device == "cpu":
                cores = os.cpu_count() or 1
                configurations = [(1, cores, f"{cores} chunk threads"), (1, 1, "1 thread")]
            else:
                configurations = [(None, 1, "")]
            for threads, workers, label in configurations:
                rate = pixel_steps_per_second(dtype, device, threads=threads, workers=workers,
                                              resolution=64 if device == "cpu" else 1024)
                achieved = rate * FLOP_PER_PIXEL_STEP
                goal = {"cpu": TARGET_CPU_F64, "cuda": TARGET_GPU_F64}[device]
                target = (f">= {goal:.2g}" if dtype == "float64"
                          and (device != "cpu" or workers > 1) else "")
                met = rate >= goal if target else None
                out.append((f"fractal plane pixel-steps/s, {device} {dtype}"
                            + (f" ({label})" if label else ""),
                            f"{rate:.3g} ({achieved / 1e9:.2f} GFLOP/s achieved; "
                            f"1024² f64 matmul {peak64 / 1e9:.1f} GFLOP/s)", target, met))
    return out
