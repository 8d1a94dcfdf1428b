"""The feature-noise patch model and ReLU² CNN of Lu, Wu, Yang, Zou (ICLR 2024).

Data: every example x = (x⁽¹⁾, x⁽²⁾, x⁽³⁾) has three patches in R^d: a *strong* patch
y·u in a fraction of the examples (zero in the others, the weak-only examples), a
*weak* patch y·v in every example (‖v‖ ≤ 0.1‖u‖) and a noise patch
ξ ~ N(0, σ_p²(I − ûûᵀ − v̂v̂ᵀ)) orthogonal to both features; y = ±1 with equal chance.

Network: the two-layer CNN f(W, x) = F₊₁(x) − F₋₁(x) with a fixed second layer,
F_j(x) = (1/m) Σ_r Σ_patches σ(⟨w_{j,r}, x⁽ᵖ⁾⟩), σ(z) = max(z, 0)² (ReLU²). Loss: the
squared loss (f − y)² = (y·f − 1)² per example (no ½; ``experiments.losses.mean_mse``).

Why the learning-rate window η ∈ [m/(4‖u‖²), 2m/(5‖u‖²)] (derived here, [derived] in
the reference note): on strong examples of one class only the u-patch matters, and one
SGD step multiplies every c_r = ⟨w_{y,r}, y·u⟩ > 0 by the same factor
1 − (4η‖u‖²/m)(y f − 1). With F = Σ_r c_r²/m ≈ y f and C = √F this is the scalar map

    C ← C·(1 − k·(C² − 1)),   k = 4η‖u‖²/m,

whose fixed point C = 1 (a perfect fit) is stable iff k < 1, i.e. η < m/(4‖u‖²): the
window's lower end. For 1 < k the fit oscillates; the maximum of the map, at
C = √((1 + k)/(3k)), is sent to C ≥ 0 (no neuron switched off) iff k ≤ 3√3/2 − 1 ≈ 1.598,
which the upper end k = 8/5 rounds.
On the period-two orbit (1 < k < √5 − 1 ≈ 1.236, in closed form in ``period_two_orbit``)
y·f alternates between F₁ > 1 and F₂ < 1 with F₁ − 1 < 1 − F₂: the terms (y f − 1) do
not cancel and their mean is −(k − 1)/(2k).

The weak feature: on any example the neurons' b_r = ⟨w_{y,r}, y·v⟩ > 0 are multiplied
by 1 − (4η‖v‖²/m)(y f − 1). Summed over an oscillation the log-growth is
−(4η‖v‖²/m)·Σ(y f − 1) > 0, so b_r grows exponentially while the strong examples
oscillate (Lu et al.'s Theorem 5); at a small lr, y f → 1 geometrically and b_r stays at
its initialisation scale (their Proposition 6).

The growth limits itself [derived]: once the weak patch supplies a share
s = Σ_r b_r²/m of y·f on the strong examples, the fit there is A = 1 − s with
A = Σ_r c_r²/m, and writing A = (1 − s)·a turns the map into the same map for a with
k replaced by k(1 − s), while y f − 1 = (1 − s)(a − 1). So the oscillation's margin is
(1 − s)·δ(k(1 − s)) (``oscillation_margin(k, weak_share=s)``), and the fit becomes
stable, ending the oscillation and the growth, at s = 1 − 1/k.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

PATCHES = ("strong", "weak", "noise")


def features(d: int, strong_norm: float, weak_norm: float,
             dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """u = ‖u‖·e1 and v = ‖v‖·e2."""
    u, v = torch.zeros(d, dtype=dtype), torch.zeros(d, dtype=dtype)
    u[0], v[1] = strong_norm, weak_norm
    return u, v


def sample(n: int, d: int, strong_norm: float, weak_norm: float, noise_std: float,
           n_weak_only: int, seed: int, dtype=torch.float64) -> dict[str, torch.Tensor]:
    """``x`` (n × 3 × d: strong, weak, noise patches), labels ``y`` (±1 floats), and the
    mask ``strong`` (False for the ``n_weak_only`` weak-only examples, the last ones)."""
    if not 0 <= n_weak_only <= n:
        raise ValueError(f"need 0 <= n_weak_only <= n, got {n_weak_only} of {n}")
    gen = torch.Generator().manual_seed(seed)
    u, v = features(d, strong_norm, weak_norm, dtype)
    y = torch.where(torch.rand(n, generator=gen) < 0.5, 1.0, -1.0).to(dtype)
    strong = torch.arange(n) < n - n_weak_only
    noise = noise_std * torch.randn(n, d, generator=gen, dtype=dtype)
    noise[:, :2] = 0.0  # orthogonal to u = ‖u‖e1 and v = ‖v‖e2
    x = torch.stack([strong[:, None].to(dtype) * y[:, None] * u, y[:, None] * v, noise],
                    dim=1)
    return {"x": x, "y": y, "strong": strong}


class ReLU2CNN(nn.Module):
    """f = F₊₁ − F₋₁, F_j = (1/m) Σ_r Σ_p max(⟨w_{j,r}, x⁽ᵖ⁾⟩, 0)²; the second layer
    (±1/m) is fixed. Weight shape (copies, 2, m, d), class index 0 for +1.

    ``copies`` independent networks (e.g. one per seed) in one module: inputs
    (n, copies, 3, d) give outputs (n, copies), network c seeing only x[:, c]. With
    one copy, inputs (n, 3, d) give outputs (n,).
    """

    def __init__(self, d: int, width: int, init_std: float, seed: int | tuple[int, ...] = 0,
                 dtype=torch.float64):
        super().__init__()
        seeds = (seed,) if isinstance(seed, int) else tuple(seed)
        self.width = width
        self.weight = nn.Parameter(torch.stack([
            init_std * torch.randn(2, width, d, generator=torch.Generator().manual_seed(s),
                                   dtype=dtype) for s in seeds]))

    def class_scores(self, x: torch.Tensor) -> torch.Tensor:
        """(n, copies, 2): F₊₁ and F₋₁ of every copy."""
        if x.ndim == 3:
            x = x[:, None]
        pre = torch.einsum("ncpd,cjrd->ncjrp", x, self.weight)
        return torch.relu(pre).pow(2).sum(dim=(3, 4)) / self.width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.class_scores(x)
        out = scores[..., 0] - scores[..., 1]
        return out[:, 0] if x.ndim == 3 else out


def lr_window(width: int, strong_norm: float) -> tuple[float, float]:
    """Lu et al.'s Assumption 3: η ∈ [m/(4‖u‖²), 2m/(5‖u‖²)]."""
    return width / (4 * strong_norm**2), 2 * width / (5 * strong_norm**2)


def map_constant(lr: float, width: int, norm: float) -> float:
    """k = 4η‖u‖²/m of the scalar map (use ‖v‖ for the weak feature's rate)."""
    return 4 * lr * norm**2 / width


def strong_map(c: np.ndarray | float, k: float):
    """One SGD step on a strong example in terms of C = √(y f): C·(1 − k(C² − 1))."""
    return c * (1 - k * (c * c - 1))


def period_two_orbit(k: float) -> tuple[float, float]:
    """(F₁, F₂) = the values of y·f on the attracting orbit of ``strong_map``, F₁ ≥ F₂;
    equal (= 1) for k <= 1. Raises beyond period doubling, k >= √5 − 1 ≈ 1.236.

    Closed form [derived]: with p = C₁ + C₂ and q = C₁C₂, adding and subtracting
    g(C₁) = C₂, g(C₂) = C₁ gives q = (p² − 1)/3 and p² − q = (2 + k)/k, so p² = (3 + k)/k,
    q = 1/k and C₁,₂ = (√(3 + k) ± √(k − 1))/(2√k). The cycle's multiplier
    g'(C₁)g'(C₂) = 9 − 2(1 + k)² lies in (−1, 1) iff 1 < k < √5 − 1.
    """
    if k <= 1.0:
        return 1.0, 1.0
    if k >= math.sqrt(5.0) - 1.0:
        raise ValueError(f"k = {k}: the strong-feature map has no attracting 2-cycle "
                         "(period doubling at k = √5 − 1)")
    c1 = (math.sqrt(3.0 + k) + math.sqrt(k - 1.0)) / (2.0 * math.sqrt(k))
    c2 = (math.sqrt(3.0 + k) - math.sqrt(k - 1.0)) / (2.0 * math.sqrt(k))
    return c1 * c1, c2 * c2


def oscillation_margin(k: float, weak_share: float = 0.0) -> float:
    """δ of Lu et al.'s Assumption 4 as the toy model predicts it: min |y f − 1| on the
    attracting orbit, when the weak patch supplies ``weak_share`` s of y·f:
    (1 − s)·δ(k(1 − s)); 0 once k(1 − s) <= 1 (a stable fit)."""
    if not 0.0 <= weak_share < 1.0:
        raise ValueError(f"weak_share must lie in [0, 1), got {weak_share}")
    k_eff = k * (1.0 - weak_share)
    if k_eff <= 1.0:
        return 0.0
    f1, f2 = period_two_orbit(k_eff)
    return (1.0 - weak_share) * min(abs(f1 - 1), abs(f2 - 1))


def weak_growth_per_visit(lr: float, width: int, weak_norm: float, k: float) -> float:
    """Mean log-growth of ⟨w, v⟩ per strong-example visit on the orbit:
    −(4η‖v‖²/m)·mean(y f − 1) (0 at a stable fit)."""
    f1, f2 = period_two_orbit(k)
    return -map_constant(lr, width, weak_norm) * ((f1 - 1) + (f2 - 1)) / 2


def signed_projection(weight: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
    """⟨w_{j,r}, j·feature⟩ for every filter (weight (..., 2, m, d) -> (..., 2, m)): the
    projection a class-j filter needs positive to fire on its own class's patch."""
    proj = weight @ feature
    return torch.stack([proj[..., 0, :], -proj[..., 1, :]], dim=-2)


def accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    return float(((outputs * labels) > 0).to(torch.float64).mean())
