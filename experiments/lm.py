"""Training pieces of the transformer recipes (Wortsman et al. 2024, "Small-scale proxies
for large-scale Transformer training instabilities", ICLR): the learning-rate schedule,
AdamW with gradient clipping and either weight decay, and LR sensitivity.

The paper's optimiser: AdamW with β = (0.9, 0.95), ε = 1e-8, gradient clipping at global
norm 1, a linear warm-up to the peak LR η then cosine decay to a minimum LR, and an
*independent* weight decay λ = 1e-4 (each of these read from the paper's methodology
section as quoted in the lab's reference note on it). The two decays differ in how they
scale with the schedule s_t = η_t/η:

- coupled (``torch.optim.AdamW``'s own, and Optax's): θ ← θ − η_t·λ·θ, so a sweep over η
  also sweeps the decay;
- independent (Loshchilov & Hutter's recommendation, the paper's default): θ ← θ − s_t·λ·θ,
  the same decay at every peak LR.

:class:`ScheduledAdamW` is a ``torch.optim.AdamW`` whose ``step`` clips, sets this step's
LR and, for the independent decay, applies it as a separate step before Adam's (with
AdamW's own ``weight_decay`` then 0). Its step counter lives in its param groups, so a
checkpointed run (``train.fit`` saves the optimizer's ``state_dict``) resumes on schedule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

DECAYS = ("independent", "coupled")


def lr_at(step: int, peak: float, total: int, warmup: int, minimum: float) -> float:
    """The LR of update ``step`` (1-based): linear from peak/warmup to peak over the first
    ``warmup`` updates, then cosine from peak down to ``minimum`` at update ``total``."""
    if warmup > 0 and step <= warmup:
        return peak * step / warmup
    if total <= warmup:
        return peak
    progress = min((step - warmup) / (total - warmup), 1.0)
    return minimum + (peak - minimum) * 0.5 * (1.0 + math.cos(math.pi * progress))


class ScheduledAdamW(torch.optim.AdamW):
    """AdamW on the schedule :func:`lr_at`, with global-norm clipping and the chosen decay.

    ``last_grad_norm`` is the global gradient norm of the last step before clipping.
    """

    def __init__(self, params, peak_lr: float, total_steps: int, warmup: int = 0,
                 min_lr: float = 0.0, weight_decay: float = 0.0,
                 decay: str = "independent", clip: float | None = 1.0,
                 betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8):
        if decay not in DECAYS:
            raise ValueError(f"decay must be one of {DECAYS}, got {decay!r}")
        if not 0 <= warmup <= total_steps:
            raise ValueError(f"warmup must be in [0, total_steps], got {warmup}")
        super().__init__(params, lr=peak_lr, betas=betas, eps=eps,
                         weight_decay=weight_decay if decay == "coupled" else 0.0)
        for group in self.param_groups:
            group.update(peak_lr=peak_lr, total_steps=total_steps, warmup=warmup,
                         min_lr=min_lr, independent_decay=(
                             weight_decay if decay == "independent" else 0.0),
                         clip=clip, updates=0)
        self.last_grad_norm = float("nan")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        clip = self.param_groups[0]["clip"]
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip else float("inf"))
        self.last_grad_norm = float(norm)
        for group in self.param_groups:
            group["updates"] += 1
            group["lr"] = lr_at(group["updates"], group["peak_lr"], group["total_steps"],
                                group["warmup"], group["min_lr"])
            if group["independent_decay"]:
                shrink = 1.0 - group["lr"] / group["peak_lr"] * group["independent_decay"]
                for p in group["params"]:
                    if p.grad is not None:
                        p.mul_(shrink)
        super().step()
        return loss


def lr_sensitivity(final_losses: Sequence[float], initial_loss: float) -> float:
    """E over the LR grid of min(ℓ(η), ℓ₀) − min_η ℓ(η) (Wortsman et al. §2): a run that
    diverged (NaN or ∞) or ended above its initial loss ℓ₀ counts as ℓ₀. The grid is the
    caller's (log-spaced in the paper, so the plain mean is the log-uniform expectation)."""
    losses = np.asarray(final_losses, dtype=float)
    clipped = np.where(np.isfinite(losses), np.minimum(losses, initial_loss), initial_loss)
    return float(np.mean(clipped - clipped.min()))
