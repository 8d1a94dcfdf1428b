"""Bench rows of the edge-of-stability issue (collected by ``experiments.bench``).

Sharpness-tracking overhead: in ``cohen2021-progressive-sharpening`` at its quick
settings and cadence, the seconds spent in the warm-started Lanczos probe over the
seconds spent training (GD steps, loss and accuracy), for the η = 0.1 run (it spends
about half its steps at the edge of stability, where warm starts help least).
"""

from __future__ import annotations

import numpy as np

from experiments.recipes import cohen2021_progressive_sharpening as recipe


def rows() -> list[tuple[str, str, str, bool | None]]:
    cfg = recipe.PRESETS["quick"]
    lr = cfg.lrs[0]
    _, x, y = recipe.load_data(cfg)
    out = recipe.train(cfg, x, y, lr, "cpu")
    key = f"lr={lr:.6g}."
    probe_s, train_s = out[key + "probe_seconds"], out[key + "train_seconds"]
    matvecs = float(np.mean(out[key + "sharpness.matvecs"]))
    n_probes, steps = len(out[key + "sharpness.value"]), int(out[key + "steps"])
    return [(
        f"sharpness tracking: probe s / training s (GD η = {lr:g}, Lanczos every "
        f"{cfg.sharpness_every} steps, ncv {cfg.lanczos_ncv})",
        f"{probe_s / train_s:.2f} ({probe_s:.1f} s / {train_s:.1f} s; {n_probes} probes, "
        f"{matvecs:.1f} HVPs each, {steps} steps)",
        "", None)]
