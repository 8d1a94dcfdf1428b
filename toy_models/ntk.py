"""Infinite-width kernels of fully connected networks in the NTK parameterisation.

Jacot, Gabriel & Hongler 2018: a layer computes α̃^(ℓ+1) = σ_w·W^(ℓ)α^(ℓ)/√n_ℓ + β·b^(ℓ)
with W, b ~ N(0, 1). As all hidden widths grow, the pre-activations are Gaussian with
covariance (the NNGP kernel)

    Σ^(1)(x, x') = σ_w²·xᵀx'/n₀ + β²,
    Σ^(ℓ+1)(x, x') = σ_w²·E_{f~N(0, Σ^(ℓ))}[φ(f(x))·φ(f(x'))] + β²,

and the neural tangent kernel is Θ^(1) = Σ^(1),
Θ^(ℓ+1) = Θ^(ℓ)·Σ̇^(ℓ+1) + Σ^(ℓ+1), Σ̇^(ℓ+1) = σ_w²·E[φ'(f(x))·φ'(f(x'))].
For ReLU the expectations are the arc-cosine kernels (Cho & Saul 2009); for erf they
are Williams' (1997) closed forms. ``depth`` counts weight matrices: Jacot's Fig. 1
network (3 hidden layers) has depth 4.

Everything is vectorised over all pairs of two input sets (numpy, float64).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

ACTIVATIONS = ("relu", "erf")


def _relu_expectations(k12, k11, k22):
    """E[ReLU(u)ReLU(v)] and E[1{u>0}1{v>0}] for (u, v) ~ N(0, [[k11, k12], [k12, k22]])."""
    norms = np.sqrt(k11 * k22)
    cos = np.clip(k12 / norms, -1.0, 1.0)
    theta = np.arccos(cos)
    value = norms * (np.sin(theta) + (np.pi - theta) * cos) / (2 * np.pi)
    derivative = (np.pi - theta) / (2 * np.pi)
    return value, derivative


def _erf_expectations(k12, k11, k22):
    """E[erf(u)erf(v)] and E[erf'(u)erf'(v)] (Williams 1997)."""
    a, b = 1 + 2 * k11, 1 + 2 * k22
    value = (2 / np.pi) * np.arcsin(np.clip(2 * k12 / np.sqrt(a * b), -1.0, 1.0))
    derivative = (4 / np.pi) / np.sqrt(a * b - 4 * k12**2)
    return value, derivative


EXPECTATIONS = {"relu": _relu_expectations, "erf": _erf_expectations}


def kernels(x1: np.ndarray, x2: np.ndarray, depth: int, activation: str = "relu",
            sigma_w: float = 1.0, beta: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(Σ, Θ) between every row of ``x1`` and every row of ``x2`` for a net with ``depth``
    weight matrices (depth − 1 hidden layers); scalar output."""
    if activation not in EXPECTATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if depth < 1:
        raise ValueError("depth counts weight matrices and must be >= 1")
    x1, x2 = np.atleast_2d(x1).astype(float), np.atleast_2d(x2).astype(float)
    n0 = x1.shape[1]
    cross = sigma_w**2 * x1 @ x2.T / n0 + beta**2
    diag1 = sigma_w**2 * np.sum(x1**2, axis=1) / n0 + beta**2
    diag2 = sigma_w**2 * np.sum(x2**2, axis=1) / n0 + beta**2
    ntk = cross.copy()
    expectation = EXPECTATIONS[activation]
    for _ in range(depth - 1):
        k11, k22 = diag1[:, None], diag2[None, :]
        value, derivative = expectation(cross, k11, k22)
        diag_value1, _ = expectation(diag1, diag1, diag1)
        diag_value2, _ = expectation(diag2, diag2, diag2)
        cross = sigma_w**2 * value + beta**2
        ntk = ntk * sigma_w**2 * derivative + cross
        diag1 = sigma_w**2 * diag_value1 + beta**2
        diag2 = sigma_w**2 * diag_value2 + beta**2
    return cross, ntk


def nngp(x1, x2, depth, activation="relu", sigma_w=1.0, beta=0.1) -> np.ndarray:
    return kernels(x1, x2, depth, activation, sigma_w, beta)[0]


def ntk(x1, x2, depth, activation="relu", sigma_w=1.0, beta=0.1) -> np.ndarray:
    return kernels(x1, x2, depth, activation, sigma_w, beta)[1]


def circle(angles: np.ndarray) -> np.ndarray:
    """Points (cos γ, sin γ) on the unit circle (Jacot's Fig. 1 inputs)."""
    angles = np.asarray(angles, dtype=float)
    return np.stack([np.cos(angles), np.sin(angles)], axis=-1)


# ---------------------------------------------------------------- linearised dynamics

def linearised_gd(theta_train: np.ndarray, f0_train: np.ndarray, y: np.ndarray, lr: float,
                  steps: np.ndarray) -> np.ndarray:
    """Outputs on the training points of the linearised network after t GD steps on
    L = (1/2n)·Σ(f − y)²: f_t = y + (I − ηΘ/n)^t (f_0 − y). Shape (len(steps), n, ...)."""
    n = len(y)
    eigenvalues, vectors = np.linalg.eigh(theta_train)
    residual = vectors.T @ (f0_train - y)
    factors = (1 - lr * eigenvalues / n)[None, :] ** np.asarray(steps)[:, None]
    return y[None] + np.einsum("ij,tj,j...->ti...", vectors, factors, residual)


def linearised_flow(theta_train: np.ndarray, f0_train: np.ndarray, y: np.ndarray, lr: float,
                    times: np.ndarray) -> np.ndarray:
    """Continuous time: f_t = y + e^{−ηΘt/n}(f_0 − y) (t in steps of size η)."""
    n = len(y)
    eigenvalues, vectors = np.linalg.eigh(theta_train)
    residual = vectors.T @ (f0_train - y)
    factors = np.exp(-lr * eigenvalues[None, :] * np.asarray(times)[:, None] / n)
    return y[None] + np.einsum("ij,tj,j...->ti...", vectors, factors, residual)


def linearised_test_outputs(theta_test_train: np.ndarray, theta_train: np.ndarray,
                            f0_test: np.ndarray, f0_train: np.ndarray, y: np.ndarray,
                            lr: float, steps: np.ndarray) -> np.ndarray:
    """Test outputs of the linearised network under discrete GD:
    f_t(x) = f_0(x) − Θ(x, X)·Θ⁻¹·(I − (I − ηΘ/n)^t)·(f_0(X) − y), via Θ's eigenbasis
    (zero eigenvalues contribute t·η/n, their limit)."""
    n = len(y)
    eigenvalues, vectors = np.linalg.eigh(theta_train)
    residual = vectors.T @ (f0_train - y)
    steps = np.asarray(steps)[:, None]
    safe = np.where(np.abs(eigenvalues) > 1e-12, eigenvalues, 1.0)
    shrink = np.where(np.abs(eigenvalues) > 1e-12,
                      (1 - (1 - lr * eigenvalues / n) ** steps) / safe,
                      steps * lr / n)
    coefficients = np.einsum("tj,j...->tj...", shrink, residual)
    return f0_test[None] - np.einsum("ai,ij,tj...->ta...", theta_test_train, vectors,
                                     coefficients)


# ---------------------------------------------------------------- finite networks

def ntk_mlp(widths, activation: str = "relu", sigma_w: float = 1.0, beta: float = 0.1,
            dtype=None):
    """A finite network in the NTK parameterisation (W, b ~ N(0, 1), W scaled by σ_w/√n_in,
    b by β); its kernel at init converges to :func:`ntk` as the widths grow."""
    act = {"relu": nn.ReLU, "erf": Erf}[activation]
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(NTKLinear(fan_in, fan_out, sigma_w, beta))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers).to(dtype if dtype is not None else torch.float64)


class NTKLinear(nn.Module):
    """y = σ_w·W x/√n_in + β·b with W, b ~ N(0, 1) (Jacot et al. 2018, Eq. 1)."""

    def __init__(self, fan_in: int, fan_out: int, sigma_w: float = 1.0, beta: float = 0.1):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fan_out, fan_in))
        self.bias = nn.Parameter(torch.randn(fan_out))
        self.weight_scale = sigma_w / fan_in**0.5
        self.bias_scale = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight_scale * x @ self.weight.T + self.bias_scale * self.bias


class Erf(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(x)


class NTKEnsemble(nn.Module):
    """``M`` independent copies of one :func:`ntk_mlp` architecture evaluated together
    (batched matmuls); the output is (N, M), one column per network. A loss summed over
    the columns gives each network its own gradient, so one optimizer trains all of them
    independently. Built from trained or freshly initialised networks."""

    def __init__(self, nets: list[nn.Sequential]):
        super().__init__()
        layers = [[m for m in net if isinstance(m, NTKLinear)] for net in nets]
        depth = len(layers[0])
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].weight.detach().clone() for ls in layers]))
            for i in range(depth))
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([ls[i].bias.detach().clone() for ls in layers]))
            for i in range(depth))
        self.weight_scales = [ls.weight_scale for ls in layers[0]]
        self.bias_scales = [ls.bias_scale for ls in layers[0]]
        self.activation = next(m for m in nets[0] if not isinstance(m, NTKLinear))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.expand(len(self.weights[0]), *x.shape)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = self.weight_scales[i] * h @ w.transpose(1, 2) + self.bias_scales[i] * b[:, None]
            if i < len(self.weights) - 1:
                h = self.activation(h)
        return h[..., 0].T


def limit_output_distribution(x_test: np.ndarray, x_train: np.ndarray, y: np.ndarray,
                              depth: int, lr: float, steps: int, activation: str = "relu",
                              sigma_w: float = 1.0, beta: float = 0.1
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the infinite-width network's output at ``x_test``
    after ``steps`` GD steps at ``lr`` on L = (1/2n)·Σ(f − y)² (Jacot et al. 2018, §5).

    In the limit f_t(x) = f_0(x) − A_t(x)·(f_0(X) − y) with the deterministic row
    A_t(x) = Θ(x, X)·Θ⁻¹·(I − (I − ηΘ/n)^t) (→ Θ(x, X)Θ⁻¹ as t → ∞) and f_0 the centred
    Gaussian process with kernel Σ, so f_t(x) is Gaussian with mean A_t(x)·y and variance
    Σ(x, x) − 2·A_t(x)Σ(X, x) + A_t(x)Σ(X, X)A_t(x)ᵀ."""
    sigma_tt, theta_tt = kernels(x_train, x_train, depth, activation, sigma_w, beta)
    sigma_st, theta_st = kernels(x_test, x_train, depth, activation, sigma_w, beta)
    sigma_ss = kernels(x_test, x_test, depth, activation, sigma_w, beta)[0]
    n = len(y)
    # A_t from the linearised test outputs with f_0 = 0 on the test points and f_0(X) = I
    # (one column per training point) and y = 0: the result is −A_t.
    a = -linearised_test_outputs(theta_st, theta_tt, np.zeros((len(x_test), n)),
                                 np.eye(n), np.zeros(n), lr, np.array([steps]))[0]
    mean = a @ y
    variance = (np.diag(sigma_ss) - 2 * np.sum(a * sigma_st, axis=1)
                + np.einsum("ai,ij,aj->a", a, sigma_tt, a))
    return mean, np.sqrt(np.clip(variance, 0.0, None))
