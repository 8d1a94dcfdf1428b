"""Bench rows for grokking (issue 6): seconds per full-batch step.

The 226-200-200-113 bias-free MLP on the 40% split of addition mod 113 (5,107 examples),
float32, softmax cross-entropy: target ≤ 30 ms per step on 2 CPU cores (a plain NumPy
forward+backward takes 32 ms). Also the one-layer transformer (5,017 two-token examples)
and the ⊥AdamW step's overhead over AdamW. The MLP step is timed at 1 and 2 torch threads
(the lab runs recipes at one, ``api.torch_threads``); the target row is the faster one.
"""

from __future__ import annotations

import torch

from experiments.bench import Row, median_seconds, thread_counts, torch_threads
from experiments.recipes import _prieto2025 as pr
from toy_models import grokking as g


def _seconds_per_step(model, data, make_optimizer, repeats: int) -> float:
    criterion = pr.loss_fn("softmax", torch.float32)
    opt = make_optimizer(model.parameters())
    x, y = data["x_train"], data["y_train"]

    def step():
        opt.zero_grad(set_to_none=True)
        criterion(model(x), y).mean().backward()
        opt.step()

    step()
    return median_seconds(step, repeats)


def rows(quick: bool = False) -> list[Row]:
    repeats = 5 if quick else 10
    mlp_data = g.modular_arithmetic(113, "add", 0.4, 42)
    adamw = pr.optimizer("adamw", 0.005)
    ortho = pr.optimizer("ortho_adamw", 0.01, (0.9, 0.999), 1e-8)
    t_mlp = {}
    for threads in thread_counts():
        with torch_threads(threads):
            t_mlp[threads] = _seconds_per_step(g.grokking_mlp(226, 113, seed=0), mlp_data,
                                               adamw, repeats)
    best = min(t_mlp, key=t_mlp.get)
    with torch_threads(1):
        t_ortho = _seconds_per_step(g.grokking_mlp(226, 113, seed=0), mlp_data, ortho, repeats)
        tokens = g.modular_arithmetic(113, "add", 0.4, 42, encoding="tokens",
                                      exclude_zero=True)
        t_tr = _seconds_per_step(g.transformer(113, seed=0), tokens, adamw,
                                 max(2, repeats // 2))
    name = (f"grokking MLP 226-200-200-113, {len(mlp_data['y_train'])} examples, float32: "
            "full-batch AdamW step")
    out = [Row(f"{name}, {threads} thread{'s' if threads > 1 else ''}",
               f"{t * 1e3:.1f} ms", "<= 30 ms" if threads == best else "",
               t <= 0.030 if threads == best else None) for threads, t in t_mlp.items()]
    return out + [
        Row("  ⊥AdamW (global projection) / AdamW step time, 1 thread",
            f"{t_ortho / t_mlp[1]:.2f}", "", None),
        Row(f"one-layer transformer (d 128, 4 heads), {len(tokens['y_train'])} examples: "
            "full-batch AdamW step, 1 thread", f"{t_tr * 1e3:.0f} ms", "", None),
    ]
