"""Bench rows of the edge-of-stability issues (4 and 23): the sharpness-tracking overhead.

In ``cohen2021-progressive-sharpening`` at its quick settings and cadence, at one torch
thread (the recipe's thread policy), the seconds spent in the warm-started sharpness
probe over the seconds spent training (GD steps, loss and accuracy), for the η = 0.1 run
(it spends about half its steps at the edge of stability, where warm starts help least).
"""

from __future__ import annotations

import numpy as np

from experiments.bench import Row, torch_threads
from experiments.recipes import cohen2021_progressive_sharpening as recipe

TARGET = 0.8  # issue 23: tracking costs at most 0.8x the training it tracks


def rows(quick: bool = False) -> list[Row]:
    cfg = recipe.PRESETS["quick"]
    lr = cfg.lrs[0]
    _, x, y = recipe.load_data(cfg)
    with torch_threads(1):
        out = recipe.train(cfg, x, y, lr, "cpu")
    key = f"lr={lr:.6g}."
    probe_s, train_s = out[key + "probe_seconds"], out[key + "train_seconds"]
    matvecs = out[key + "sharpness.matvecs"]
    n_probes, steps = len(out[key + "sharpness.value"]), int(out[key + "steps"])
    half = n_probes // 2
    ratio = probe_s / train_s
    return [
        Row(f"sharpness tracking, 1 thread: probe s / training s (GD η = {lr:g}, every "
            f"{cfg.sharpness_every} steps, residual tol {cfg.lanczos_tol:g})",
            f"{ratio:.2f} ({probe_s:.1f} s / {train_s:.1f} s; {n_probes} probes over "
            f"{steps} steps)", f"<= {TARGET:g}", ratio <= TARGET),
        Row("  HVPs per probe: mean, first half, second half (edge of stability)",
            f"{np.mean(matvecs):.1f}, {np.mean(matvecs[:half]):.1f}, "
            f"{np.mean(matvecs[half:]):.1f}", "", None),
    ]
