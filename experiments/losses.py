"""Losses with their reduction stated once.

Every loss here maps ``(outputs, targets)`` to a vector of **per-example** losses.
The training loop and the curvature probes take the **mean over examples** of that
vector, so the reduction over examples is fixed project-wide and only the
reduction over outputs differs between losses (sharpness scales with it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def half_sum_mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """½·Σ over outputs of (f − y)², per example (Cohen et al. 2021 ``mse``).

    With 0/1 one-hot targets this is the normalisation under which GD's
    sharpness equilibrates at 2/η.
    """
    diff = outputs - targets
    if diff.ndim == 1:
        return 0.5 * diff**2
    return 0.5 * diff.pow(2).flatten(1).sum(dim=1)


def mean_mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """mean over outputs of (f − y)², per example, no ½ (Sohl-Dickstein 2024)."""
    diff = outputs - targets
    if diff.ndim == 1:
        return diff**2
    return diff.pow(2).flatten(1).mean(dim=1)


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy with integer labels, per example."""
    return F.cross_entropy(outputs, targets, reduction="none")


LOSSES = {"half_sum_mse": half_sum_mse, "mean_mse": mean_mse, "cross_entropy": cross_entropy}


def one_hot(labels: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    """0/1 one-hot targets (Cohen et al.: 0/1 entries, not ±1)."""
    return F.one_hot(labels.long(), num_classes).to(dtype)


def logistic(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log(1 + exp(−y·f)) per example, for a scalar output f and ±1 labels y."""
    return F.softplus(-targets * outputs.reshape(targets.shape))
