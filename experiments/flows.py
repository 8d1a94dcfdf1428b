"""Continuous-time flows of the full-batch objective, integrated beside the discrete optimizers.

Gradient flow dw/dt = −∇L(w) by classical RK4 with a step h ≤ α/S, S the sharpness at
the start of the step (RK4 is stable on a linear mode of curvature λ iff hλ ≲ 2.785, so
α ≤ 1 keeps every mode well resolved). Time is in the units of GD: one GD step of size
η advances time by η. Parameters are flat vectors in ``model.named_parameters()`` order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from experiments.probes.curvature import (
    CurvatureOperator,
    flatten,
    functional_params,
    top_eigenpairs,
    unflatten,
)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def rk4_step(field: Callable[[torch.Tensor], torch.Tensor], w: torch.Tensor,
             h: float) -> torch.Tensor:
    """One classical Runge–Kutta step of dw/dt = field(w)."""
    k1 = field(w)
    k2 = field(w + 0.5 * h * k1)
    k3 = field(w + 0.5 * h * k2)
    k4 = field(w + h * k3)
    return w + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)


class GradientFlow:
    """Gradient flow of mean_i loss_fn(model(x_i), y_i) from ``model``'s current parameters.

    ``advance_to(t)`` integrates with RK4 steps h = min(alpha/S, max_step), refreshing the
    sharpness S (warm-started Lanczos) every ``sharpness_every`` RK4 steps; ``w`` is the
    current flat parameter vector and ``t`` its time.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                 alpha: float = 1.0, max_step: float = 1.0, sharpness_every: int = 5,
                 lanczos_tol: float = 1e-4, lanczos_ncv: int = 8):
        self.model, self.loss_fn, self.x, self.y = model, loss_fn, x, y
        self.like = functional_params(model)
        self.w = flatten(self.like).clone()
        self.t = 0.0
        self.alpha, self.max_step = alpha, max_step
        self.sharpness_every = sharpness_every
        self.lanczos_tol, self.lanczos_ncv = lanczos_tol, lanczos_ncv
        self.sharpness = float("nan")
        self.eigenvector: np.ndarray | None = None
        self.rk4_steps = 0
        self.refresh_sharpness()

    def _operator(self, w: torch.Tensor) -> CurvatureOperator:
        return CurvatureOperator(self.model, self.loss_fn, self.x, self.y,
                                 params=unflatten(w, self.like))

    def negative_gradient(self, w: torch.Tensor) -> torch.Tensor:
        return -self._operator(w).gradient()

    def refresh_sharpness(self) -> float:
        eig = top_eigenpairs(self._operator(self.w), k=1, v0=self.eigenvector,
                             tol=self.lanczos_tol, ncv=self.lanczos_ncv)
        self.sharpness, self.eigenvector = float(eig.eigenvalues[0]), eig.eigenvectors[:, 0]
        return self.sharpness

    def loss(self) -> float:
        return self._operator(self.w).loss()

    def advance_to(self, t_end: float) -> None:
        while self.t < t_end - 1e-12:
            if self.rk4_steps % self.sharpness_every == 0:
                self.refresh_sharpness()
            h = min(self.alpha / max(self.sharpness, 1e-12), self.max_step, t_end - self.t)
            self.w = rk4_step(self.negative_gradient, self.w, h)
            self.t += h
            self.rk4_steps += 1
