"""Continuous-time flows of the full-batch objective, integrated beside the discrete optimizers.

Gradient flow dw/dt = −∇L(w) by classical RK4 with a step h ≤ α/S, S the sharpness at
the start of the step (RK4 is stable on a linear mode of curvature λ iff hλ ≲ 2.785, so
α ≤ 1 keeps every mode well resolved). Time is in the units of GD: one GD step of size
η advances time by η. Parameters are flat vectors in ``model.named_parameters()`` order.

The central flow of GD with one unstable eigenvalue (Cohen, Damian et al. 2025) by Euler
substeps with the sharpness constraint S = 2/η (``CentralFlow``).
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
    sharpness_gradient,
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


def central_flow_sigma2(loss_gradient: torch.Tensor, sharpness_gradient: torch.Tensor,
                        excess: float = 0.0, lr: float = 1.0, relax: float = 0.0) -> float:
    """σ² = 2⟨−∇L, ∇S⟩/‖∇S‖², clipped at 0 (Cohen, Damian et al. 2025, one eigenvalue).

    It makes dS/dt = 0 along dw/dt = −η[∇L + ½σ²∇S]. ``excess`` = S − 2/η and ``relax``
    (per GD step) add the term that pulls a numerically drifted S back:
    dS/dτ = −relax·excess in GD steps τ.
    """
    norm2 = float(torch.dot(sharpness_gradient, sharpness_gradient))
    push = 2.0 * float(torch.dot(-loss_gradient, sharpness_gradient))
    return max(0.0, (push + 2.0 * relax * excess / lr) / norm2) if norm2 > 0 else 0.0


class CentralFlow:
    """Central flow of full-batch GD at step ``lr`` with one unstable eigenvalue.

    In GD steps τ (t = η·τ): dw/dτ = −η[∇L(w) + ½σ²∇S(w)], σ² from ``central_flow_sigma2``.
    While S < 2/η it is the gradient flow (σ² = 0). From the first time S reaches 2/η the
    flow is held on S = 2/η (σ² ≥ 0 chosen so that dS/dτ = −relax·(S − 2/η)); if the
    constraint stops binding the clip gives σ² = 0, and once S falls below
    (1 − ``release``)·2/η the flow is gradient flow again until S next reaches 2/η.

    Integration: explicit Euler, ``substeps`` per GD step (the authors' code uses 4, i.e. a
    step η/4 in time t, where the flow's stiffest curvature is 2/η: ηS·¼ = ½).
    S = uᵀHu and ∇S = ∇(uᵀHu) with u held fixed (``sharpness_gradient``); u follows the
    top eigenvector by one power step per substep (Hu comes with ∇S) and a warm-started
    Lanczos refresh every ``refresh_every`` substeps.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                 lr: float, substeps: int = 4, relax: float = 0.2, release: float = 0.01,
                 refresh_every: int = 20, lanczos_tol: float = 1e-6, lanczos_ncv: int = 8):
        self.model, self.loss_fn, self.x, self.y = model, loss_fn, x, y
        self.like = functional_params(model)
        self.w = flatten(self.like).clone()
        self.lr, self.threshold = lr, 2.0 / lr
        self.substeps, self.relax, self.release = substeps, relax, release
        self.refresh_every = refresh_every
        self.lanczos_tol, self.lanczos_ncv = lanczos_tol, lanczos_ncv
        self.n_substeps = 0
        self.diverged = False
        self.active = False
        self.onset_step = float("nan")
        self.sigma2 = 0.0
        self.sharpness = float("nan")
        self.u = torch.zeros_like(self.w)
        self.refresh()

    @property
    def step(self) -> float:
        """Time in GD steps τ."""
        return self.n_substeps / self.substeps

    def _operator(self, w: torch.Tensor) -> CurvatureOperator:
        return CurvatureOperator(self.model, self.loss_fn, self.x, self.y,
                                 params=unflatten(w, self.like))

    def refresh(self, k: int = 1) -> np.ndarray:
        """Top ``k`` eigenvalues of H(w) by warm-started Lanczos; u becomes the top eigenvector."""
        start = self.u if self.n_substeps else None
        eig = top_eigenpairs(self._operator(self.w), k=k, v0=start, tol=self.lanczos_tol,
                             ncv=self.lanczos_ncv)
        self.sharpness = float(eig.eigenvalues[0])
        self.u = torch.as_tensor(eig.eigenvectors[:, 0], dtype=self.w.dtype,
                                 device=self.w.device)
        return eig.eigenvalues

    def loss(self) -> float:
        return self._operator(self.w).loss()

    def _substep(self) -> None:
        op = self._operator(self.w)
        h = 1.0 / self.substeps
        if not self.active:
            hu = op.matvec(self.u)
            s_u = float(torch.dot(self.u, hu))
            if s_u < self.threshold:  # gradient flow
                self.u = hu / torch.linalg.vector_norm(hu)
                self.sharpness, self.sigma2 = s_u, 0.0
                self.w = self.w - h * self.lr * op.gradient()
                return
            self.active, self.onset_step = True, self.step
        at = sharpness_gradient(op, self.u)
        self.sharpness = at.value
        self.active = at.value >= (1.0 - self.release) * self.threshold
        self.sigma2 = (central_flow_sigma2(at.loss_gradient, at.gradient,
                                           at.value - self.threshold, self.lr, self.relax)
                       if self.active else 0.0)
        self.u = at.hvp / torch.linalg.vector_norm(at.hvp)
        self.w = self.w - h * self.lr * (at.loss_gradient + 0.5 * self.sigma2 * at.gradient)

    def advance_to(self, step: float) -> None:
        """Integrate up to time ``step`` (in GD steps; a multiple of 1/substeps).

        A non-finite state sets ``diverged`` and stops the flow where it is.
        """
        target = int(round(step * self.substeps))
        while self.n_substeps < target and not self.diverged:
            if self.n_substeps % self.refresh_every == 0 and self.n_substeps:
                self.refresh()
            self._substep()
            self.n_substeps += 1
            # a non-finite state is an outcome: the flow stops and says so
            self.diverged = not bool(torch.isfinite(self.w).all())
