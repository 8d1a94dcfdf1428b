"""Small networks shared by the reproductions."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
}


def mlp(widths: Sequence[int], activation: str = "tanh", bias: bool = True) -> nn.Sequential:
    """Fully connected net ``widths[0] -> ... -> widths[-1]`` with PyTorch's default init.

    ``mlp([40, 200, 200, 10], "tanh")`` is Cohen et al.'s fc-tanh on MNIST-1D inputs.
    """
    if len(widths) < 2:
        raise ValueError(f"mlp needs at least an input and an output width, got {list(widths)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; one of {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out, bias=bias))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def seeded(seed: int, build, *args, dtype: torch.dtype = torch.float32, **kwargs) -> nn.Module:
    """Build a module under ``torch.manual_seed(seed)`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build(*args, **kwargs)
    return module.to(dtype)
