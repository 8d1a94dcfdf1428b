"""Optimizers the papers introduce, as wrappers over any ``torch.optim`` optimizer.

``OrthoGrad`` (⊥Grad, Prieto et al. 2025 Def. 7): before the base optimizer's step the
gradient loses its component along the weights,

    ∇⊥L = ∇L − (θᵀ∇L / θᵀθ) θ,

so the step cannot grow the weights along themselves, the naïve-loss-minimisation
direction of a homogeneous net. Two forms:
- ``mode="global"``: the paper's Eq. 12, θ the concatenation of every parameter;
- ``mode="per_tensor"``: the official code's variant, each tensor projected on its own
  and the projected gradient rescaled to the tensor's original gradient norm.
Every base-optimizer argument is passed through (the official wrapper dropped all but
``lr`` and ``weight_decay``, so its ⊥AdamW ran with PyTorch's default β and eps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

MODES = ("global", "per_tensor")


class OrthoGrad(torch.optim.Optimizer):
    """⊥Grad around ``base`` (a ``torch.optim.Optimizer`` class); ``**base_kwargs`` go to it.

    ``OrthoGrad(model.parameters(), torch.optim.AdamW, lr=0.01, betas=(0.9, 0.99))``.
    """

    def __init__(self, params: Iterable, base: Callable[..., torch.optim.Optimizer],
                 mode: str = "global", projection_eps: float = 1e-30,
                 **base_kwargs):
        if mode not in MODES:
            raise ValueError(f"unknown ⊥Grad mode {mode!r}; one of {MODES}")
        super().__init__(params, dict(base_kwargs))
        self.base = base(self.param_groups, **base_kwargs)
        self.param_groups = self.base.param_groups
        self.mode, self.projection_eps = mode, projection_eps

    @torch.no_grad()
    def project(self) -> None:
        """Replace every ``.grad`` by its ⊥Grad projection, in place."""
        params = [p for group in self.param_groups for p in group["params"]
                  if p.grad is not None]
        if not params:
            return
        if self.mode == "global":
            dot = sum((p.double() * p.grad.double()).sum() for p in params)
            norm2 = sum(p.double().pow(2).sum() for p in params)
            if norm2 > 0:
                coef = dot / norm2
                for p in params:
                    p.grad.sub_((coef * p.double()).to(p.grad.dtype))
            return
        for p in params:
            w, g = p.double().flatten(), p.grad.double().flatten()
            g_perp = g - (w @ g) / (w @ w + self.projection_eps) * w
            g_perp = g_perp * (g.norm() / (g_perp.norm() + self.projection_eps))
            p.grad.copy_(g_perp.view_as(p.grad).to(p.grad.dtype))

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.project()
        self.base.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return self.base.state_dict()

    def load_state_dict(self, state_dict) -> None:
        self.base.load_state_dict(state_dict)
        self.param_groups = self.base.param_groups


def orthograd(base: Callable[..., torch.optim.Optimizer], mode: str = "global", **base_kwargs):
    """A factory ``params -> OrthoGrad`` for ``experiments.train.fit``."""
    return lambda params: OrthoGrad(params, base, mode, **base_kwargs)
