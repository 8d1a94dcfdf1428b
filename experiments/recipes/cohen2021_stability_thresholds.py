"""Step-size thresholds of GD, heavy-ball and Nesterov: derived with sympy, found by SGD.

On a quadratic, ``torch.optim.SGD`` is stable iff η·λ_max < a*, with a* = 2 (GD),
(2 + 2μ) (heavy-ball) and (2 + 2μ)/(1 + 2μ) (Nesterov), derived in
``toy_models.stability`` from the update rules as PyTorch implements them. These
are the thresholds that the sharpness equilibrates at in Cohen et al. 2021
(§1.5 of the reference note: "(2+2β)/η for Polyak and (2+2β)/((1+2β)η) for Nesterov").

Two quadratics: a synthetic least-squares problem whose Hessian is diag(λ) exactly,
and linear least squares on MNIST-1D (the ½-summed MSE of Cohen et al. on 0/1
one-hot targets), whose λ_max the Lanczos probe measures. For each method the
divergence boundary of the real optimizer is located by bisection on η.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from experiments import datasets, losses
from experiments.claims import Claim, within_relative
from experiments.config import param
from experiments.probes.curvature import CurvatureOperator, top_eigenpairs
from experiments.train import fit
from toy_models import stability

PAPER = ("Cohen, Kaur, Li, Kolter, Talwalkar 2021, Gradient Descent on Neural Networks "
         "Typically Occurs at the Edge of Stability (ICLR)")
DESCRIPTION = ("GD, heavy-ball and Nesterov step-size thresholds (2, 2+2β, (2+2β)/(1+2β) over "
               "λ_max), derived with sympy and located by torch.optim.SGD on two quadratics")

METHODS = stability.METHODS
PROBLEMS = ("quadratic", "mnist1d")
LABELS = {"gd": "GD", "heavy_ball": "heavy-ball", "nesterov": "Nesterov"}
REL_TOL = 0.01  # fixed before the first run: measured boundary within 1% of the derived one


@dataclass(frozen=True)
class Config:
    seed: int = param(0, lo=0, hi=2**31 - 1, help="initialisation and synthetic data seed")
    momentum: float = param(0.9, lo=0.0, hi=0.99, help="β of heavy-ball and Nesterov")
    steps: int = param(1000, lo=50, hi=10**6, help="SGD steps per run")
    bisection_iters: int = param(6, lo=0, hi=40, help="halvings of the scan's crossing interval")
    scan_points: int = param(7, lo=3, hi=201, help="step sizes in the scan, (1 ± bracket)·η*")
    bracket: float = param(0.1, lo=0.01, hi=0.9, help="search η in (1 ± bracket)·η*")
    quad_dim: int = param(20, lo=2, hi=2000, help="dimension of the synthetic quadratic")
    quad_condition: float = param(100.0, lo=1.0, hi=1e6, help="λ_max/λ_min of the synthetic H")
    n_train: int = param(1000, lo=50, hi=4000, help="MNIST-1D training examples")
    dtype: str = param("float64", choices=("float32", "float64"))


PRESETS = {
    "quick": Config(),
    "paper": Config(steps=5000, bisection_iters=12, scan_points=41, quad_dim=200,
                    n_train=4000),
}


# ---------------------------------------------------------------- the two quadratics

def synthetic_quadratic(cfg: Config) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Inputs X with XᵀX/n = diag(λ) exactly, so the ½-MSE Hessian is diag(λ), λ_max = 1."""
    gen = torch.Generator().manual_seed(cfg.seed)
    n, d = 4 * cfg.quad_dim, cfg.quad_dim
    q, _ = torch.linalg.qr(torch.randn(n, d, generator=gen, dtype=torch.float64))
    lam = np.geomspace(1.0 / cfg.quad_condition, 1.0, d)
    x = np.sqrt(n) * q * torch.as_tensor(np.sqrt(lam))
    w_true = torch.randn(d, 1, generator=gen, dtype=torch.float64)
    y = x @ w_true + 0.1 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    return x, y, lam


def problems(cfg: Config) -> dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    """(initial model, inputs, targets) for each quadratic."""
    x_q, y_q, _ = synthetic_quadratic(cfg)
    data = datasets.mnist1d(cfg.n_train)
    y_m = losses.one_hot(data.y, 10, torch.float64)
    torch.manual_seed(cfg.seed)
    return {
        "quadratic": (nn.Linear(cfg.quad_dim, 1, bias=False).double(), x_q, y_q),
        "mnist1d": (nn.Linear(40, 10).double(), data.x, y_m),
    }


def dense_lambda_max(x: torch.Tensor, bias: bool) -> float:
    """λ_max of the ½-MSE Hessian of a linear model: the top eigenvalue of [X, 1]ᵀ[X, 1]/n."""
    features = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1) if bias else x
    return float(torch.linalg.eigvalsh(features.T @ features / len(x))[-1])


# ---------------------------------------------------------------- running SGD

def optimizer_for(method: str, lr: float, momentum: float):
    if method == "gd":
        return lambda params: torch.optim.SGD(params, lr=lr)
    return lambda params: torch.optim.SGD(params, lr=lr, momentum=momentum,
                                          nesterov=method == "nesterov")


def final_loss_ratio(model0: nn.Module, x, y, method: str, lr: float, cfg: Config,
                     device: str) -> float:
    """Loss after ``cfg.steps`` of SGD over the initial loss (inf once it has exploded)."""
    model = copy.deepcopy(model0)
    history = fit(model, losses.half_sum_mse, x, y, optimizer_for(method, lr, cfg.momentum),
                  steps=cfg.steps, dtype=cfg.dtype, device=device, eval_every=cfg.steps,
                  progress=False)
    if history.diverged:
        return float("inf")
    return float(history["train_loss"][-1] / history["train_loss"][0])


def diverges(ratio: float) -> bool:
    """Divergence: the loss ends above where it started (or exploded on the way)."""
    return not ratio < 1.0


def divergence_boundary(model0, x, y, method, etas, ratios, cfg, device) -> float:
    """Bisect between the last converging and first diverging step size of the scan.

    NaN when the scan does not cross from converging to diverging exactly once.
    """
    diverged = np.array([diverges(r) for r in ratios])
    crossings = np.flatnonzero(diverged[1:] != diverged[:-1])
    if len(crossings) != 1 or diverged[0]:
        return float("nan")
    lo, hi = etas[crossings[0]], etas[crossings[0] + 1]
    for _ in range(cfg.bisection_iters):
        mid = 0.5 * (lo + hi)
        if diverges(final_loss_ratio(model0, x, y, method, mid, cfg, device)):
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def run(cfg: Config, device: str) -> dict:
    result: dict = {}
    grid = np.linspace(0.0, 4.2, 400)
    result["theory.a"] = grid
    for method in METHODS:
        result[f"theory.{method}.rho"] = stability.spectral_radius(method, grid, cfg.momentum)
        result[f"theory.{method}.a_star"] = stability.critical_step(method, cfg.momentum)

    bar = tqdm(total=len(PROBLEMS) * len(METHODS), desc="thresholds", disable=None)
    for name, (model0, x, y) in problems(cfg).items():
        bias = model0.bias is not None
        lam_dense = dense_lambda_max(x, bias)
        op = CurvatureOperator(model0, losses.half_sum_mse, x, y)
        eig = top_eigenpairs(op, k=1, tol=1e-10)
        lam = float(eig.eigenvalues[0])
        result[f"{name}.lambda_max"] = lam
        result[f"{name}.lambda_max_dense"] = lam_dense
        result[f"{name}.lanczos_matvecs"] = eig.n_matvecs
        for method in METHODS:
            eta_star = stability.critical_lr(method, lam, cfg.momentum)
            etas = eta_star * np.linspace(1 - cfg.bracket, 1 + cfg.bracket, cfg.scan_points)
            ratios = [final_loss_ratio(model0, x, y, method, e, cfg, device) for e in etas]
            result[f"{name}.{method}.derived"] = eta_star
            result[f"{name}.{method}.measured"] = divergence_boundary(
                model0, x, y, method, etas, ratios, cfg, device)
            result[f"{name}.{method}.scan_eta"] = etas
            result[f"{name}.{method}.scan_ratio"] = np.asarray(ratios)
            bar.update(1)
    bar.close()
    return result


# ---------------------------------------------------------------- figure and claims

def plot(result: dict, cfg: Config):
    from matplotlib.lines import Line2D

    from experiments import plotting

    fig, axes = plotting.subplots(1, 3, width=4.0, height=3.2)
    colors = dict(zip(METHODS, plotting.palette(3), strict=True))
    ax = axes[0, 0]
    for method in METHODS:
        ax.plot(result["theory.a"], result[f"theory.{method}.rho"], color=colors[method],
                label=f"{LABELS[method]}: a* = {result[f'theory.{method}.a_star']:.3f}")
        ax.axvline(result[f"theory.{method}.a_star"], color=colors[method], ls="--", lw=1)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set(xlabel="η·λ", ylabel="spectral radius of the update map", ylim=(0, 1.6),
           title=f"Derived with sympy (β = {cfg.momentum:g})")
    ax.legend(loc="upper left")

    # x in units of η·λ_max, so the derived thresholds sit where panel A puts them
    for ax, name in zip(axes[0, 1:], PROBLEMS, strict=True):
        lam = result[f"{name}.lambda_max"]
        for method in METHODS:
            ratio = np.minimum(result[f"{name}.{method}.scan_ratio"], 1e6)
            ax.plot(result[f"{name}.{method}.scan_eta"] * lam, ratio, "o-", ms=3,
                    color=colors[method])
            ax.axvline(result[f"{name}.{method}.derived"] * lam, color=colors[method], ls="--",
                       lw=1)
            measured = result[f"{name}.{method}.measured"]
            if np.isfinite(measured):
                ax.plot([measured * lam], [1.0], marker="v", ms=8, color=colors[method],
                        mec="k", ls="none")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set(yscale="log", xlabel="η·λ_max  (λ_max by Lanczos)",
               ylabel=f"loss after {cfg.steps} steps / initial loss",
               title=f"torch.optim.SGD on {name} (λ_max = {lam:.4g})")
        ax.legend(handles=[Line2D([], [], color="gray", ls="--", label="derived threshold"),
                           Line2D([], [], color="gray", marker="v", mec="k", ls="none",
                                  label="measured boundary")], loc="lower center")
    return fig


def claims(result: dict, cfg: Config) -> list[Claim]:
    out = []
    for name in PROBLEMS:
        for method in METHODS:
            out.append(within_relative(
                f"{name}: {LABELS[method]} divergence boundary",
                result[f"{name}.{method}.measured"], result[f"{name}.{method}.derived"],
                REL_TOL, "Cohen 2021 §1.5 thresholds; derived in toy_models.stability",
                what="η*"))
    for name in PROBLEMS:
        out.append(within_relative(
            f"{name}: Lanczos λ_max equals dense eigvalsh", result[f"{name}.lambda_max"],
            result[f"{name}.lambda_max_dense"], 1e-6,
            "exact eigendecomposition of the Gram matrix XᵀX/n"))
    return out
