"""XOR-cluster data and the two-layer ReLU net of Xu, Wang, Frei, Vardi, Hu (ICLR 2024).

Data: x = μ + ξ with μ uniform on {+μ1, −μ1, +μ2, −μ2}, μ1 ⊥ μ2, ‖μ1‖ = ‖μ2‖ and
ξ ~ N(0, I_p). The clean label is +1 on ±μ1 and −1 on ±μ2 (an XOR of two signs, so no
linear classifier beats chance); each *training* label is flipped with probability η
(the noise rate; in this paper η is the noise rate and α the GD step size).

Network: f(x) = Σ_j a_j ReLU(⟨w_j, x⟩) with the second layer fixed, a_j = +1/√m for the
first half of the neurons and −1/√m for the second, w_j⁽⁰⁾ ~ N(0, ω² I_p) tiny.

Theory (the paper's picture, derived here in the limit ω → 0):

* one GD step on the mean logistic loss from f ≈ 0 (so ℓ'(0) = −½ for every example)
  gives w_j⁽¹⁾ = (α a_j / 2n) Σ_i y_i 1[⟨w_j⁽⁰⁾, x_i⟩ > 0] x_i, and averaging over the
  random activation pattern (each 1[·] is ½ on average) the network is nearly the
  *linear* classifier f⁽¹⁾(x) ≈ ⟨(α/8n) Σ_i y_i x_i, x⟩. When p ≫ n‖μ‖², ⟨x_k, x_k⟩ ≈ p
  dominates every cross term, so it fits every training label, flipped ones included;
  being linear, it is near 50% on XOR test data;
* the Bayes-optimal classifier predicts the clean label of the nearer axis,
  sign(|⟨x, μ1⟩| − |⟨x, μ2⟩|), and its accuracy on noisy labels is 1 − η up to the
  (here negligible) chance of picking the wrong axis;
* later, neurons with a_j > 0 grow along ±μ1 and neurons with a_j < 0 along ±μ2: the
  alignment splits by the sign of the output weight.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import integrate, stats
from torch import nn


def cluster_means(p: int, mu_norm: float, dtype=torch.float64) -> tuple[torch.Tensor,
                                                                        torch.Tensor]:
    """μ1 = ‖μ‖·e1 and μ2 = ‖μ‖·e2 (any orthonormal pair is equivalent: ξ is isotropic)."""
    if p < 2:
        raise ValueError(f"need p >= 2 for two orthogonal means, got {p}")
    mu1, mu2 = torch.zeros(p, dtype=dtype), torch.zeros(p, dtype=dtype)
    mu1[0], mu2[1] = mu_norm, mu_norm
    return mu1, mu2


def sample(n: int, p: int, mu_norm: float, noise_rate: float, seed: int,
           dtype=torch.float64) -> dict[str, torch.Tensor]:
    """n examples: inputs ``x`` (n × p), noisy labels ``y``, clean labels ``y_clean``
    (both ±1 floats), the cluster index ``cluster`` (0: +μ1, 1: −μ1, 2: +μ2, 3: −μ2) and
    the boolean mask ``flipped``."""
    if not 0.0 <= noise_rate < 0.5:
        raise ValueError(f"noise rate must be in [0, 0.5), got {noise_rate}")
    gen = torch.Generator().manual_seed(seed)
    mu1, mu2 = cluster_means(p, mu_norm, dtype)
    means = torch.stack([mu1, -mu1, mu2, -mu2])
    cluster = torch.randint(4, (n,), generator=gen)
    x = means[cluster] + torch.randn(n, p, generator=gen, dtype=dtype)
    y_clean = torch.where(cluster < 2, 1.0, -1.0).to(dtype)
    flipped = torch.rand(n, generator=gen) < noise_rate
    y = torch.where(flipped, -y_clean, y_clean)
    return {"x": x, "y": y, "y_clean": y_clean, "cluster": cluster, "flipped": flipped}


class TwoLayerReLU(nn.Module):
    """f(x) = Σ_j a_j ReLU(⟨w_j, x⟩), a_j = ±1/√m (first half +), w_j⁽⁰⁾ ~ N(0, ω² I).

    ``train_output=False`` (the paper's setting) keeps ``a`` as a buffer; True makes it a
    parameter (the cross-check with a trainable second layer).
    """

    def __init__(self, p: int, width: int, init_std: float, seed: int = 0,
                 train_output: bool = False, dtype=torch.float64):
        super().__init__()
        if width < 2 or width % 2:
            raise ValueError(f"width must be even and >= 2, got {width}")
        gen = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(init_std * torch.randn(width, p, generator=gen,
                                                          dtype=dtype))
        signs = torch.cat([torch.ones(width // 2), -torch.ones(width // 2)]).to(dtype)
        if train_output:
            self.a = nn.Parameter(signs / math.sqrt(width))
        else:
            self.register_buffer("a", signs / math.sqrt(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.weight.T) @ self.a


def logistic_derivative(margin: torch.Tensor) -> torch.Tensor:
    """ℓ'(z) for ℓ(z) = log(1 + e^(−z)): −1/(1 + e^z)."""
    return -torch.sigmoid(-margin)


def gd_step(weight: torch.Tensor, a: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
            step: float) -> torch.Tensor:
    """The exact GD map on the mean logistic loss, in closed form:
    w_j ← w_j − (α/n) Σ_i ℓ'(y_i f(x_i)) y_i a_j 1[⟨w_j, x_i⟩ > 0] x_i."""
    pre = x @ weight.T                                     # n × m
    f = torch.relu(pre) @ a
    coef = logistic_derivative(y * f) * y                  # n
    active = (pre > 0).to(x.dtype)
    grad = (a[:, None] * ((coef[:, None] * active).T @ x)) / len(x)
    return weight - step * grad


def one_step_direction(x: torch.Tensor, y: torch.Tensor, step: float) -> torch.Tensor:
    """The nearly linear classifier after one step from ω → 0 (wide limit):
    f⁽¹⁾(x) ≈ ⟨(α/8n) Σ_i y_i x_i, x⟩."""
    return step / (8 * len(x)) * (y[:, None] * x).sum(dim=0)


def bayes_axis_accuracy(mu_norm: float) -> float:
    """P(the Bayes rule sign(|⟨x, μ1⟩| − |⟨x, μ2⟩|) picks the right axis).

    With u = ⟨ξ, μ1⟩/‖μ‖ and v = ⟨ξ, μ2⟩/‖μ‖ independent N(0, 1), a point of +μ1 is
    classified right iff |‖μ‖ + u| > |v|: q = E_u[2Φ(|‖μ‖ + u|) − 1].
    """
    def integrand(t: float) -> float:  # t = ‖μ‖ + u; the kink of |t| is at 0
        return (2 * stats.norm.cdf(abs(t)) - 1) * stats.norm.pdf(t - mu_norm)

    below, _ = integrate.quad(integrand, -np.inf, 0.0, limit=200)
    above, _ = integrate.quad(integrand, 0.0, np.inf, limit=200)
    return float(below + above)


def bayes_accuracy(mu_norm: float, noise_rate: float, clean: bool = False) -> float:
    """Accuracy of the Bayes-optimal classifier on test data with noisy labels
    (1 − η when the axes are well separated) or, with ``clean=True``, clean labels."""
    q = bayes_axis_accuracy(mu_norm)
    if clean:
        return q
    return (1 - noise_rate) * q + noise_rate * (1 - q)


def bayes_predict(x: torch.Tensor, mu1: torch.Tensor, mu2: torch.Tensor) -> torch.Tensor:
    """The Bayes-optimal prediction: +1 if x is nearer the μ1 axis, else −1."""
    return torch.where((x @ mu1).abs() > (x @ mu2).abs(), 1.0, -1.0).to(x.dtype)


def alignment(weight: torch.Tensor, a: torch.Tensor, mu1: torch.Tensor,
              mu2: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean |⟨w_j, μ_k⟩|/‖μ_k‖ over neurons with a_j > 0 ("pos") and a_j < 0 ("neg").

    The theory predicts pos neurons align with μ1 (the +1 axis) and neg with μ2.
    """
    proj1 = (weight @ mu1).abs() / mu1.norm()
    proj2 = (weight @ mu2).abs() / mu2.norm()
    pos, neg = a > 0, a < 0
    return {"pos_mu1": proj1[pos].mean(), "pos_mu2": proj2[pos].mean(),
            "neg_mu1": proj1[neg].mean(), "neg_mu2": proj2[neg].mean()}


def accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of sign(f) equal to the ±1 label (f = 0 counts as wrong)."""
    return float(((outputs * labels) > 0).to(torch.float64).mean())
