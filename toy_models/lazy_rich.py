"""The polynomial-regression toy of Kumar, Bordelon, Gershman & Pehlevan (ICLR 2024).

Data: x ~ N(0, I_D) and a single-index target y = Σ_k c_k He_k(βᵀx), ‖β‖ = 1, with
the probabilists' Hermite polynomials He_k (orthogonal under N(0, 1),
E[He_j He_k] = k!·δ_jk). The paper's target is (βᵀx)² = He₂ + He₀, coefficients
``PAPER_TARGET = (1, 0, 1)``.

Network (the authors' supplementary code): a two-layer net without trained readouts,
g_W(x) = α·mean_i φ(w_iᵀx/√D), φ(h) = h + ε·h²/2, W ~ N(0, 1), trained through its
*centred* output f(x) = g_W(x) − g_W₀(x) so that f = 0 at initialisation. α is the
output scale: with the learning rate η = η₀·N/α² the function-space dynamics of the
linearised net do not depend on α, while the weights need to move by O(1/α) to fit
the data, so a larger α is lazier. ε sets how much of the initial NTK lies along
quadratic functions, i.e. its alignment with the target.

Theory used by the recipe and the page:

* f is a quadratic form, f(x) = bᵀx + xᵀAx with b = α(w̄ − w̄₀)/√D and
  A = αε(M − M₀)/(2D), M = WᵀW/N; for Gaussian x the population MSE then has the
  closed form ``population_mse`` (these (b, A) are the "sufficient statistics" of
  the test loss);
* the empirical NTK is Θ(x, x') = (α²/(N²D))·(xᵀx')·Σ_i φ'(h_i(x))·φ'(h_i(x')); its
  infinite-width limit is (α²/N)·(xᵀx'/D)·(1 + ε²·xᵀx'/D) (``infinite_width_ntk``):
  the linear part dominates for small ε, so the top eigenvectors are linear functions
  and are misaligned with a quadratic target;
* the linearised net trained by GD from f = 0 on the mean squared error is kernel
  gradient descent; it ends at the ridgeless kernel-regression interpolant
  Θ(x, X)Θ(X, X)⁻¹y (``kernel_regression``, ``lazy_coefficients``), itself a quadratic
  form (``kernel_predictor_form``), so its population test loss is exact too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

PAPER_TARGET = (1.0, 0.0, 1.0)  # (βᵀx)² = He₀ + He₂


# ---------------------------------------------------------------- Hermite targets

def hermite_e(k: int, z):
    """Probabilists' Hermite polynomial He_k(z) by He_{k+1} = z·He_k − k·He_{k−1}."""
    if k < 0:
        raise ValueError(f"Hermite degree must be >= 0, got {k}")
    previous, current = z * 0 + 1, z
    if k == 0:
        return previous
    for j in range(1, k):
        previous, current = current, z * current - j * previous
    return current


def target(z, coeffs: Sequence[float]):
    """y = Σ_k c_k He_k(z) for the single index z = βᵀx."""
    return sum(c * hermite_e(k, z) for k, c in enumerate(coeffs) if c != 0) + z * 0


def target_second_moment(coeffs: Sequence[float]) -> float:
    """E[y²] = Σ_k c_k²·k! for z ~ N(0, 1): the test loss of the centred net at init."""
    return float(sum(c * c * math.factorial(k) for k, c in enumerate(coeffs)))


def direction(dim: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    """A seeded unit vector β ∈ R^D."""
    gen = torch.Generator().manual_seed(seed)
    beta = torch.randn(dim, generator=gen, dtype=dtype)
    return beta / beta.norm()


def sample(n: int, beta: torch.Tensor, coeffs: Sequence[float], seed: int
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y): n inputs x ~ N(0, I_D) and targets Σ c_k He_k(βᵀx)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, len(beta), generator=gen, dtype=beta.dtype)
    return x, target(x @ beta, coeffs)


# ---------------------------------------------------------------- the network

class QuadraticActivation(nn.Module):
    """φ(h) = h + ε·h²/2 (the paper's activation; φ'(h) = 1 + ε·h)."""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = float(eps)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + 0.5 * self.eps * h * h


class ScaledLinear(nn.Module):
    """h = W x/√D with W ~ N(0, 1), no bias (``weight_scale`` lets the structured NTK
    of ``experiments.probes.ntk`` treat it like a linear layer)."""

    def __init__(self, dim: int, width: int, seed: int, dtype=torch.float64):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(width, dim, generator=gen, dtype=dtype))
        self.weight_scale = 1.0 / math.sqrt(dim)
        self.bias_scale = 0.0
        self.bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight_scale * x @ self.weight.T


class MeanReadout(nn.Module):
    """α·mean over the hidden units (fixed readouts, as in the authors' code)."""

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.alpha * h.mean(dim=-1)


class LazyRichNet(nn.Module):
    """f(x) = g_W(x) − g_W₀(x), g_W(x) = α·mean_i φ(w_iᵀx/√D); output shape (n,).

    ``body`` is g_W (an ``nn.Sequential`` for the structured empirical NTK); the centring
    term does not depend on the parameters, so the NTK of f is that of ``body``.
    """

    def __init__(self, dim: int, width: int, alpha: float, eps: float, seed: int = 0,
                 dtype=torch.float64):
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"the output scale α must be > 0, got {alpha}")
        self.dim, self.width, self.alpha, self.eps = dim, width, float(alpha), float(eps)
        self.body = nn.Sequential(ScaledLinear(dim, width, seed, dtype),
                                  QuadraticActivation(eps), MeanReadout(alpha))
        self.register_buffer("weight0", self.body[0].weight.detach().clone())

    @property
    def weight(self) -> torch.Tensor:
        return self.body[0].weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = x @ self.weight0.T / math.sqrt(self.dim)
        return self.body(x) - self.alpha * (h0 + 0.5 * self.eps * h0 * h0).mean(dim=-1)

    @torch.no_grad()
    def quadratic_form(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, A) with f(x) = bᵀx + xᵀAx exactly: b = α(w̄ − w̄₀)/√D, A = αε(M − M₀)/2D."""
        w, w0 = self.weight.detach(), self.weight0
        b = self.alpha * (w.mean(0) - w0.mean(0)) / math.sqrt(self.dim)
        a = self.alpha * self.eps * (w.T @ w - w0.T @ w0) / (2 * self.dim * self.width)
        return b, a


def learning_rate(eta0: float, width: int, alpha: float) -> float:
    """η = η₀·N/α² (the paper's scaling; the α² keeps the lazy dynamics α-free)."""
    return eta0 * width / alpha**2


# ---------------------------------------------------------------- theory

def population_mse(b: torch.Tensor, a: torch.Tensor, beta: torch.Tensor,
                   coeffs: Sequence[float]) -> float:
    """E_x[(bᵀx + xᵀAx − y)²] for x ~ N(0, I), y = Σ c_k He_k(βᵀx), ‖β‖ = 1.

    The degree ≤ 2 part of y is (c₀ − c₂) + c₁βᵀx + c₂·xᵀββᵀx; with Q = A_sym − c₂ββᵀ and
    d = c₀ − c₂, E[(xᵀQx − d)²] = 2‖Q‖²_F + (tr Q − d)² and the linear and quadratic parts
    are uncorrelated; the He_k with k ≥ 3 are orthogonal to every quadratic and add
    Σ_{k≥3} c_k²·k!.
    """
    c = list(coeffs) + [0.0] * max(0, 3 - len(coeffs))
    q = 0.5 * (a + a.T) - c[2] * torch.outer(beta, beta)
    d = c[0] - c[2]
    linear = torch.sum((b - c[1] * beta) ** 2)
    quadratic = 2 * torch.sum(q * q) + (torch.trace(q) - d) ** 2
    higher = sum(ck * ck * math.factorial(k) for k, ck in enumerate(c) if k >= 3)
    return float(linear + quadratic) + higher


def infinite_width_ntk(x1: torch.Tensor, x2: torch.Tensor, alpha: float, eps: float,
                       width: int) -> torch.Tensor:
    """lim Θ as N → ∞ at fixed α²/N: (α²/N)·(x·x'/D)·(1 + ε²·x·x'/D), since for
    w ~ N(0, I) E[(1 + εh)(1 + εh')] = 1 + ε²·E[hh'] = 1 + ε²·x·x'/D."""
    gram = x1 @ x2.T / x1.shape[1]
    return alpha**2 / width * gram * (1 + eps**2 * gram)


def kernel_regression(k_train: torch.Tensor, k_test_train: torch.Tensor, y: torch.Tensor,
                      ridge: float = 0.0) -> torch.Tensor:
    """Predictions K(x, X)(K(X, X) + ridge·I)⁻¹y (ridge 0: the interpolant that GD on the
    linearised net reaches from f = 0)."""
    system = k_train + ridge * torch.eye(len(y), dtype=k_train.dtype, device=k_train.device)
    return k_test_train @ torch.linalg.solve(system, y)


def lazy_coefficients(k_train: torch.Tensor, y: torch.Tensor, lr: float,
                      steps: Sequence[int] | np.ndarray | None = None) -> torch.Tensor:
    """Dual coefficients a_t with f_t(x) = Σ_μ a_t,μ Θ(x, x_μ) for GD on the linearised
    net, loss (1/n)Σ(f − y)², from f₀ = 0: a_t = Θ⁻¹(I − (I − 2ηΘ/n)^t)y, eigenbasis of Θ.
    ``steps=None``: t = ∞ (the kernel-regression interpolant). Shape (len(steps), n)."""
    n = len(y)
    eigenvalues, vectors = torch.linalg.eigh(k_train)
    projected = vectors.T @ y
    if steps is None:
        return (vectors @ (projected / eigenvalues))[None]
    t = torch.as_tensor(np.asarray(steps, dtype=float), dtype=k_train.dtype)[:, None]
    shrink = (1 - (1 - 2 * lr * eigenvalues[None] / n) ** t) / eigenvalues[None]
    return (shrink * projected[None]) @ vectors.T


def kernel_predictor_form(coef: torch.Tensor, x_train: torch.Tensor, weight0: torch.Tensor,
                          alpha: float, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, A) of x ↦ Σ_μ a_μ Θ₀(x, x_μ) for the empirical NTK at W₀.

    Θ₀(x, x_μ) = (α²/ND)(xᵀx_μ)[(1 + ε·h̄_μ) + (ε·v + ε²·u_μ)ᵀx] with h_iμ = w_iᵀx_μ/√D,
    h̄_μ = mean_i h_iμ, v = w̄/√D and u_μ = Σ_i h_iμ w_i/(N√D): linear times affine in x.
    """
    width, dim = weight0.shape
    root = math.sqrt(dim)
    h = x_train @ weight0.T / root
    scale = alpha**2 / (width * dim)
    v = weight0.mean(0) / root
    u = h @ weight0 / (width * root)
    b = scale * x_train.T @ (coef * (1 + eps * h.mean(1)))
    raw = scale * x_train.T @ (coef[:, None] * (eps * v[None, :] + eps**2 * u))
    return b, 0.5 * (raw + raw.T)


def centred_alignment(kernel: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor,
                                                                       torch.Tensor]:
    """(H K H, H y) with H = I − 11ᵀ/n: pass to ``kernel_target_alignment`` for the
    centred (CKA-style) NTK–target alignment the authors track."""
    kc = kernel - kernel.mean(0, keepdim=True)
    kc = kc - kc.mean(1, keepdim=True)
    return kc, y - y.mean()
