"""Small networks shared by the reproductions."""

from __future__ import annotations

import math
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


def cnn(input_shape: Sequence[int], classes: int = 10, channels: Sequence[int] = (32, 32),
        activation: str = "relu") -> nn.Sequential:
    """Cohen et al.'s ``cnn-{relu,tanh,...}``: [conv 3 (padding 1) → act → max-pool 2] per
    entry of ``channels``, then one linear layer, PyTorch's default init.

    It takes flat inputs (as the datasets store them) and reshapes them to
    ``input_shape``: (channels, height, width) for 2-D convolutions (CIFAR-10: (3, 32, 32),
    giving Linear(2048, 10) after two poolings), (channels, length) for 1-D ones (MNIST-1D:
    (1, 40)).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; one of {sorted(ACTIVATIONS)}")
    shape = tuple(int(d) for d in input_shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"input_shape must be (C, L) or (C, H, W), got {shape}")
    conv, pool = (nn.Conv1d, nn.MaxPool1d) if len(shape) == 2 else (nn.Conv2d, nn.MaxPool2d)
    layers: list[nn.Module] = [nn.Unflatten(1, shape)]
    fan_in, spatial = shape[0], list(shape[1:])
    for width in channels:
        layers += [conv(fan_in, width, 3, padding=1), ACTIVATIONS[activation](), pool(2)]
        fan_in, spatial = width, [d // 2 for d in spatial]
    features = fan_in * math.prod(spatial)
    if features == 0:
        raise ValueError(f"input_shape {shape} is too small for {len(channels)} poolings")
    layers += [nn.Flatten(), nn.Linear(features, classes)]
    return nn.Sequential(*layers)


def seeded(seed: int, build, *args, dtype: torch.dtype = torch.float32, **kwargs) -> nn.Module:
    """Build a module under ``torch.manual_seed(seed)`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build(*args, **kwargs)
    return module.to(dtype)
