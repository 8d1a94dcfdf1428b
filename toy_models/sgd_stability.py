"""Linear (mean-square) stability of SGD at an interpolating minimum.

Near a minimum θ* where every per-example gradient vanishes, SGD with batch size B
and step η is the random linear map θ ← (I − η·H_B)θ, H_B the mean of the batch's
per-example Hessians H_i (batches: B distinct examples drawn uniformly, independent
across steps). Ma & Ying (2021, Thm 1) show the second moment Σ_t = E[θ_t θ_tᵀ]
evolves by the linear map

    Q(η, B) = (I − ηH)⊗(I − ηH) + p·(η²/n)·Σ_i (H_i⊗H_i − H⊗H),
    p = (n − B)/(B(n − 1)),

and Mulayoff & Michaeli (2024, Thm 3) give the exact threshold: stable in mean
square iff η ≤ η* = 2/λ_max(C†D), with C = ½·(H⊗I + I⊗H) and
D = (1 − p)·H⊗H + (p/n)·Σ_i H_i⊗H_i. Their Prop 3 bounds it by
η* ≤ 2·tr H/((1 − p)‖H‖_F² + (p/n)Σ_i‖H_i‖_F²); for rank-one H_i (MSE with a scalar
output) this is the necessary condition p·tr H + (1 − p)·‖H‖_F²/tr H ≤ 2/η, which
at B = 1 reads tr H ≤ 2/η (Wu & Su 2023).

Matrices here are dense numpy arrays; the Kronecker forms need d² × d² memory, so
the exact threshold is for models with up to a few dozen parameters.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def restrict_to_range(per_example: np.ndarray, rel_tol: float = 1e-9) -> tuple[np.ndarray,
                                                                                 np.ndarray]:
    """Per-example Hessians expressed in an orthonormal basis U of range(H).

    At an interpolating minimum every H_i is PSD, so null(H) = ∩ null(H_i): SGD leaves
    those flat directions untouched (a neutral eigenvalue 1 of Q) and stability is
    decided in range(H), whose dimension is at most n. Returns (Uᵀ H_i U, U).
    """
    eigenvalues, vectors = np.linalg.eigh(mean_hessian(per_example))
    basis = vectors[:, eigenvalues > rel_tol * eigenvalues[-1]]
    return np.einsum("ar,iab,bs->irs", basis, per_example, basis), basis


def sampling_factor(n: int, batch_size: int) -> float:
    """p = (n − B)/(B(n − 1)): 1 at B = 1, 0 for full batch."""
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch size must be in [1, {n}], got {batch_size}")
    if n == 1:
        return 0.0
    return (n - batch_size) / (batch_size * (n - 1))


def mean_hessian(per_example: np.ndarray) -> np.ndarray:
    return per_example.mean(axis=0)


def second_moment_map(per_example: np.ndarray, lr: float, batch_size: int) -> np.ndarray:
    """Ma & Ying's Q(η, B) acting on vec(Σ) (row-major vec), shape d² × d²."""
    n, d, _ = per_example.shape
    h = mean_hessian(per_example)
    p = sampling_factor(n, batch_size)
    step = np.eye(d) - lr * h
    spread = np.einsum("iab,icd->acbd", per_example, per_example).reshape(d * d, d * d) / n
    return np.kron(step, step) + p * lr**2 * (spread - np.kron(h, h))


def mean_square_threshold(per_example: np.ndarray, batch_size: int) -> float:
    """η* = 2/λ_max(C†D) (Mulayoff & Michaeli, Thm 3)."""
    n, d, _ = per_example.shape
    h = mean_hessian(per_example)
    p = sampling_factor(n, batch_size)
    eye = np.eye(d)
    c = 0.5 * (np.kron(h, eye) + np.kron(eye, h))
    spread = np.einsum("iab,icd->acbd", per_example, per_example).reshape(d * d, d * d) / n
    dmat = (1 - p) * np.kron(h, h) + p * spread
    eigenvalues = np.linalg.eigvals(np.linalg.pinv(c, hermitian=True) @ dmat)
    return float(2.0 / np.max(eigenvalues.real))


def gd_threshold(per_example: np.ndarray) -> float:
    """2/λ_max(H): the full-batch (B = n) threshold."""
    return float(2.0 / np.linalg.eigvalsh(mean_hessian(per_example))[-1])


def frobenius_bound(per_example: np.ndarray, batch_size: int) -> float:
    """Mulayoff & Michaeli Prop 3: η* ≤ 2 tr H/((1 − p)‖H‖_F² + (p/n)Σ‖H_i‖_F²)."""
    n = per_example.shape[0]
    h = mean_hessian(per_example)
    p = sampling_factor(n, batch_size)
    per_fro = np.sum(per_example**2, axis=(1, 2))
    return float(2 * np.trace(h) / ((1 - p) * np.sum(h**2) + p * per_fro.mean()))


def trace_condition(trace: float, frobenius_sq: float, n: int, batch_size: int) -> float:
    """p·tr H + (1 − p)·‖H‖_F²/tr H: SGD at step η can be stable only if this is ≤ 2/η
    (MSE, scalar output, interpolating minimum)."""
    p = sampling_factor(n, batch_size)
    return p * trace + (1 - p) * frobenius_sq / trace


def one_dimensional_threshold(curvatures: np.ndarray, batch_size: int) -> float:
    """1-D case: stable iff (1 − ηa)² + p·η²·s² ≤ 1, a = mean, s² = variance of a_i,
    so η* = 2a/(a² + p·s²)."""
    a_i = np.asarray(curvatures, dtype=float)
    p = sampling_factor(len(a_i), batch_size)
    a, s2 = a_i.mean(), a_i.var()
    return float(2 * a / (a**2 + p * s2))


def all_batches(n: int, batch_size: int) -> np.ndarray:
    """Every B-subset of range(n), one per row (for exact expectations over batches)."""
    from itertools import combinations

    return np.array(list(combinations(range(n), batch_size)), dtype=np.int64)


def second_moment_growth(per_example: np.ndarray, lr: float, batch_size: int,
                         steps: int = 2000) -> float:
    """Per-step growth rate of E‖θ_t‖² for linearised SGD, measured by propagating the
    second moment through the exact average over every possible batch (no Kronecker
    algebra): Σ ← mean_b (I − ηH_b) Σ (I − ηH_b). Returns log of the growth per step
    averaged over the last half of the steps (> 0 means mean-square divergence)."""
    n, d, _ = per_example.shape
    batches = all_batches(n, batch_size)
    steps_b = np.eye(d) - lr * per_example[batches].mean(axis=1)
    sigma = np.eye(d) / d
    log_growth = []
    for _ in range(steps):
        sigma = (steps_b @ sigma @ steps_b.transpose(0, 2, 1)).mean(axis=0)
        norm = np.trace(sigma)
        log_growth.append(np.log(norm))
        sigma /= norm
    return float(np.mean(log_growth[steps // 2:]))


# ---------------------------------------------------------------- sharpness ↔ parameter norms

def sparse_regression(n: int, d: int, k: int, seed: int = 0):
    """x ~ N(0, I_d), y = ⟨β*, x⟩ with β* = 1 on k random coordinates (noiseless)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    beta = torch.zeros(d, dtype=torch.float64)
    beta[torch.randperm(d, generator=gen)[:k]] = 1.0
    return x, (x @ beta).unsqueeze(1), beta


def xor_hypercube(n: int, d: int, seed: int = 0):
    """x uniform on {±1}^d, y = x₁·x₂ (Wen, Li, Ma 2023's XOR-hypercube task)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (n, d), generator=gen).double() * 2 - 1
    return x, (x[:, 0] * x[:, 1]).unsqueeze(1)


class DiagonalLinear(nn.Module):
    """f(x) = ⟨u ⊙ v, x⟩, initialised at u = v = α·1 (β = u ⊙ v = α²·1)."""

    def __init__(self, dim: int, alpha: float):
        super().__init__()
        self.u = nn.Parameter(torch.full((dim,), float(alpha), dtype=torch.float64))
        self.v = nn.Parameter(torch.full((dim,), float(alpha), dtype=torch.float64))

    @property
    def beta(self) -> torch.Tensor:
        return self.u * self.v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ (self.u * self.v)).unsqueeze(-1)


def diagonal_trace(u: np.ndarray, v: np.ndarray, x: np.ndarray) -> float:
    """Gauss–Newton trace of ½-MSE for f = ⟨u⊙v, x⟩: Σ_j (u_j² + v_j²)·mean_i x_ij².

    Since u_j² + v_j² ≥ 2|u_j v_j|, it bounds 2·Σ_j |β_j|·mean_i x_ij² (≈ 2‖β‖₁ for
    standardised inputs): a small trace forces a small ℓ1 norm.
    """
    return float(np.sum((u**2 + v**2) * np.mean(x**2, axis=0)))


def relu_trace(w: np.ndarray, a: np.ndarray, x: np.ndarray) -> float:
    """Gauss–Newton trace of ½-MSE for f = Σ_j a_j ReLU(⟨w_j, x⟩) (no biases):
    mean_i Σ_j [a_j²·1{⟨w_j, x_i⟩ > 0}·‖x_i‖² + ReLU(⟨w_j, x_i⟩)²]."""
    pre = x @ w.T
    active = pre > 0
    sq_norms = np.sum(x**2, axis=1, keepdims=True)
    return float(np.mean(np.sum(a[None, :] ** 2 * active * sq_norms + np.maximum(pre, 0) ** 2,
                                axis=1)))


def path_norm(w: np.ndarray, a: np.ndarray) -> float:
    """Σ_j ‖w_j‖₂·|a_j|: the norm a small trace controls (Wen, Li, Ma 2023, Lemma 3.1)."""
    return float(np.sum(np.linalg.norm(w, axis=1) * np.abs(a)))
