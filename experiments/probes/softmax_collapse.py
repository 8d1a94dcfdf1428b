"""Softmax Collapse and naïve-loss-minimisation instruments (Prieto et al. 2025).

Each a plain function of logits, labels or a model's parameters and gradients:
- ``softmax_collapse_fraction``: the share of examples whose Σ_k exp(z_k − max z) is
  exactly 1 in the loss dtype (paper Def. 3, measured as the official logger does);
- ``stablemax_collapse_fraction``: the same test for StableMax's sum;
- ``zero_loss_fraction``: the share whose per-example loss is exactly 0;
- ``zero_gradient_fraction``: the share whose correct-class gradient ∂CE/∂z_y is exactly 0;
- ``logit_gap_stats``: the gap between the top logit and the others;
- ``layer_alignment``: per parameter tensor, cos(W, −∇L) (Fig. 5);
- ``weight_norm``: the L2 norm of all parameters.
"""

from __future__ import annotations

import torch
from torch import nn


def softmax_collapse_fraction(logits: torch.Tensor, dtype: torch.dtype | None = None) -> float:
    """Fraction of rows whose Σ_k exp(z_k − max_k z_k) evaluates to exactly 1 in ``dtype``."""
    z = logits.detach() if dtype is None else logits.detach().to(dtype)
    total = torch.exp(z - z.max(dim=1, keepdim=True).values).sum(dim=1)
    return float((total == 1).double().mean())


def stablemax_collapse_fraction(logits: torch.Tensor, dtype: torch.dtype | None = None) -> float:
    """The same test for StableMax: Σ_k s(z_k) / s(max z) evaluates to exactly 1 in ``dtype``.

    s grows linearly, so this needs gaps of order 2^p (float32: ~10⁷), not p·ln 2.
    """
    from toy_models.grokking import stablemax_s

    z = logits.detach() if dtype is None else logits.detach().to(dtype)
    s = stablemax_s(z)
    total = (s / s.max(dim=1, keepdim=True).values).sum(dim=1)
    return float((total == 1).double().mean())


def zero_loss_fraction(per_example_loss: torch.Tensor) -> float:
    """Fraction of examples whose loss is exactly 0 (the correct-class gradient is then 0)."""
    return float((per_example_loss.detach() == 0).double().mean())


def zero_gradient_fraction(logits: torch.Tensor, labels: torch.Tensor, criterion,
                           dtype: torch.dtype | None = None) -> float:
    """Fraction of examples whose correct-class gradient ∂CE_i/∂z_{i,y} is exactly 0, as
    autograd computes it through ``criterion`` (per-example losses) in ``dtype``.

    Not the same test as :func:`softmax_collapse_fraction`: that one sums the exponentials
    with ``torch.sum`` (as the authors' logger does), log-softmax sums them in another
    order, so the two disagree over a band of logit gaps. With the other C − 1 logits tied
    at a gap Δ below the top one (measured on a 0.001 grid of Δ): float32, C = 113, the sum
    is exactly 1 from Δ = 19.28 but the loss and ∂CE/∂z_y are non-zero until Δ = 20.66;
    float32, C = 12, the loss is 0 from 16.64 while the sum exceeds 1 until 18.02; float16,
    C = 113, both at 12.34. The other entries of the gradient stay ≈ e^−Δ until they
    underflow.
    """
    z = logits.detach() if dtype is None else logits.detach().to(dtype)
    z = z.clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(criterion(z, labels).sum(), z)
    return float((grad.gather(1, labels[:, None].long()) == 0).double().mean())


def logit_gap_stats(logits: torch.Tensor) -> dict[str, float]:
    """Top logit minus the second largest: min, median and max over examples."""
    top2 = logits.detach().double().topk(2, dim=1).values
    gap = top2[:, 0] - top2[:, 1]
    return {"min": float(gap.min()), "median": float(gap.median()), "max": float(gap.max())}


def layer_alignment(model: nn.Module) -> dict[str, float]:
    """cos(W, −∇_W L) per parameter tensor, from the gradients held in ``.grad``.

    Positive when the descent direction points along W, i.e. growing the weights lowers
    the loss: the naïve-loss-minimisation direction of a homogeneous net (Prieto Fig. 5).
    """
    out = {}
    for name, param in model.named_parameters():
        if param.grad is None:
            continue
        w, g = param.detach().double().flatten(), param.grad.detach().double().flatten()
        denom = w.norm() * g.norm()
        out[name] = float(-(w @ g) / denom) if denom > 0 else 0.0
    return out


def weight_norm(model: nn.Module) -> float:
    """‖θ‖₂ over all parameters."""
    return float(torch.sqrt(sum(p.detach().double().pow(2).sum() for p in model.parameters())))
