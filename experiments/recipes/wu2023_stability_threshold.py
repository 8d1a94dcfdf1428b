"""The exact mean-square stability threshold η*(B) of SGD, against linearised and real SGD.

At an interpolating minimum of a small tanh MLP (½-MSE, scalar output), the
per-example Hessians H_i = ∇f_i∇f_iᵀ give the exact threshold η*(B) = 2/λ_max(C†D)
(Mulayoff & Michaeli 2024, Thm 3, restating Ma & Ying 2021) for every batch size B.
It is checked three ways:

1. linearised SGD, exactly in expectation: the second moment E[θθᵀ] propagated through
   the average over *every* possible batch (no Kronecker algebra), whose growth rate
   changes sign at the measured boundary (bisection);
2. linearised SGD by Monte Carlo: many independent trajectories with random batches;
3. the full nonlinear ``torch.optim.SGD`` started next to the minimum, with a fresh
   uniform batch of B distinct examples per step: how many runs leave the minimum.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call, jacrev, vmap
from tqdm.auto import tqdm

from experiments import losses
from experiments.claims import Claim, in_range, is_true, within_relative
from experiments.config import param
from experiments.train import fit
from toy_models import sgd_stability as theory
from toy_models.networks import mlp, seeded

PAPER = ("Wu & Su 2023, The Implicit Regularization of Dynamical Stability in Stochastic "
         "Gradient Descent (ICML); Mulayoff & Michaeli 2024; Ma & Ying 2021")
DESCRIPTION = ("exact mean-square threshold η*(B) = 2/λmax(C†D) of SGD at a trained minimum, "
               "against linearised SGD (exact and Monte Carlo) and torch.optim.SGD")

REL_TOL = 0.05  # fixed before the first run: the measured boundary within 5%


@dataclass(frozen=True)
class Config:
    seed: int = param(0, lo=0, hi=2**31 - 1)
    n_train: int = param(12, lo=4, hi=16, help="examples (all C(n, B) batches are enumerated)")
    input_dim: int = param(3, lo=1, hi=64)
    width: int = param(16, lo=2, hi=512)
    batch_sizes: tuple[int, ...] = param((1, 2, 3, 4, 6, 12), lo=1, hi=16)
    train_steps: int = param(6000, lo=100, hi=10**6, help="GD+momentum steps to interpolation")
    moment_steps: int = param(300, lo=50, hi=10**5, help="steps of the second-moment recursion")
    bisection_iters: int = param(10, lo=1, hi=40)
    scan: tuple[float, ...] = param((0.8, 0.9, 0.95, 1.05, 1.1, 1.2, 1.3), lo=0.01, hi=10.0,
                                    help="η/η*(B) of the scans")
    mc_trajectories: int = param(1000, lo=10, hi=10**6, help="Monte Carlo linearised SGD runs")
    mc_steps: int = param(400, lo=10, hi=10**6)
    sgd_runs: int = param(6, lo=1, hi=1000, help="torch.optim.SGD runs per (B, η)")
    sgd_steps: int = param(400, lo=10, hi=10**6)
    perturbation: float = param(1e-4, lo=1e-10, hi=1.0, help="start distance from the minimum")
    escape_factor: float = param(10.0, lo=1.5, hi=1e6,
                                 help="'left the minimum': distance grew by this factor")


PRESETS = {
    "quick": Config(),
    "paper": Config(n_train=16, batch_sizes=(1, 2, 4, 8, 16), moment_steps=1000,
                    bisection_iters=16, mc_trajectories=20000, mc_steps=2000, sgd_runs=40,
                    sgd_steps=3000, scan=(0.8, 0.9, 0.95, 0.98, 1.02, 1.05, 1.1, 1.2, 1.3)),
}


# ---------------------------------------------------------------- the minimum

def train_to_interpolation(cfg: Config):
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(cfg.n_train, cfg.input_dim, generator=gen, dtype=torch.float64)
    y = torch.randn(cfg.n_train, 1, generator=gen, dtype=torch.float64)
    model = seeded(cfg.seed, mlp, [cfg.input_dim, cfg.width, 1], "tanh", dtype=torch.float64)
    history = fit(model, losses.half_sum_mse, x, y,
                  lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), steps=cfg.train_steps,
                  eval_every=100, loss_goal=1e-24, progress="train to interpolation")
    return model, x, y, float(history["train_loss"][-1])


def per_example_hessians(model, x) -> np.ndarray:
    """H_i = ∇f(x_i)∇f(x_i)ᵀ: the per-example Hessians of ½(f − y)² at interpolation."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def output(p, xi):
        return functional_call(model, p, (xi[None],)).squeeze()

    jac = vmap(jacrev(output), in_dims=(None, 0))(params, x)
    flat = torch.cat([jac[k].reshape(len(x), -1) for k in params], dim=1).numpy()
    return np.einsum("ia,ib->iab", flat, flat)


# ---------------------------------------------------------------- measurements

def linearised_boundary(hessians: np.ndarray, batch_size: int, eta_star: float,
                        cfg: Config) -> float:
    """Bisection on the sign of the exact second-moment growth rate."""
    lo, hi = 0.5 * eta_star, 1.5 * eta_star
    if theory.second_moment_growth(hessians, lo, batch_size, cfg.moment_steps) > 0 or \
            theory.second_moment_growth(hessians, hi, batch_size, cfg.moment_steps) < 0:
        return float("nan")
    for _ in range(cfg.bisection_iters):
        mid = 0.5 * (lo + hi)
        if theory.second_moment_growth(hessians, mid, batch_size, cfg.moment_steps) > 0:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def monte_carlo_second_moment(hessians: np.ndarray, lr: float, batch_size: int,
                              cfg: Config, rng: np.random.Generator) -> tuple[float, float]:
    """Linearised SGD θ ← (I − ηH_B)θ with random batches, many trajectories.

    Returns (mean over trajectories of ‖θ_T‖²/‖θ_0‖², median per-step log growth of
    ‖θ‖²). The mean is what mean-square stability controls; the median is the typical
    trajectory (its sign change is the almost-sure threshold, at or above η*).
    """
    n, r, _ = hessians.shape
    theta = rng.standard_normal((cfg.mc_trajectories, r))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    log_scale = np.zeros(cfg.mc_trajectories)
    for _ in range(cfg.mc_steps):
        batches = np.argsort(rng.random((cfg.mc_trajectories, n)), axis=1)[:, :batch_size]
        h_b = hessians[batches].mean(axis=1)
        theta = theta - lr * np.einsum("kab,kb->ka", h_b, theta)
        norms = np.linalg.norm(theta, axis=1, keepdims=True)
        log_scale += np.log(norms[:, 0])
        theta /= norms
    # mean of exp(2·log_scale), computed stably
    top = log_scale.max()
    mean_square = float(np.exp(2 * top) * np.mean(np.exp(2 * (log_scale - top))))
    return mean_square, float(np.median(2 * log_scale) / cfg.mc_steps)


def escape_fraction(model, x, y, basis: np.ndarray, lr: float, batch_size: int,
                    cfg: Config, device: str) -> float:
    """Fraction of torch.optim.SGD runs, started ``perturbation`` away from the minimum
    along range(H), whose distance to it grows by ``escape_factor``."""
    theta_star = torch.cat([p.detach().flatten() for p in model.parameters()])
    escaped = 0
    for run in range(cfg.sgd_runs):
        direction = basis @ np.random.default_rng(1000 + run).standard_normal(basis.shape[1])
        start = theta_star + cfg.perturbation * torch.as_tensor(
            direction / np.linalg.norm(direction))
        net = copy.deepcopy(model)
        torch.nn.utils.vector_to_parameters(start, net.parameters())
        history = fit(net, losses.half_sum_mse, x, y,
                      lambda p, lr=lr: torch.optim.SGD(p, lr=lr), steps=cfg.sgd_steps,
                      batch_size=batch_size, sampling="subset", seed=run,
                      eval_every=cfg.sgd_steps, device=device, progress=False)
        end = torch.cat([p.detach().cpu().flatten() for p in net.parameters()])
        distance = float((end - theta_star).norm())
        if history.diverged or not distance < cfg.escape_factor * cfg.perturbation:
            escaped += 1
    return escaped / cfg.sgd_runs


def run(cfg: Config, device: str) -> dict:
    if max(cfg.batch_sizes) > cfg.n_train:
        raise ValueError(f"batch_sizes must be <= n_train = {cfg.n_train}")
    model, x, y, final_loss = train_to_interpolation(cfg)
    hessians_full = per_example_hessians(model, x)
    hessians, basis = theory.restrict_to_range(hessians_full)
    result: dict = {"final_train_loss": final_loss, "rank": hessians.shape[1],
                    "n_params": hessians_full.shape[1],
                    "gd_threshold": theory.gd_threshold(hessians),
                    "batch_sizes": np.array(cfg.batch_sizes), "scan": np.array(cfg.scan)}
    rng = np.random.default_rng(cfg.seed)
    for b in tqdm(cfg.batch_sizes, desc="batch sizes", disable=None):
        eta_star = theory.mean_square_threshold(hessians, b)
        result[f"B{b}.eta_star"] = eta_star
        result[f"B{b}.frobenius_bound"] = theory.frobenius_bound(hessians, b)
        result[f"B{b}.linearised_boundary"] = linearised_boundary(hessians, b, eta_star, cfg)
        result[f"B{b}.growth"] = np.array([
            theory.second_moment_growth(hessians, s * eta_star, b, cfg.moment_steps)
            for s in cfg.scan])
        monte_carlo = np.array([monte_carlo_second_moment(hessians, s * eta_star, b, cfg, rng)
                                for s in cfg.scan])
        result[f"B{b}.mc_second_moment"] = monte_carlo[:, 0]
        result[f"B{b}.typical_growth"] = monte_carlo[:, 1]
        result[f"B{b}.escape_fraction"] = np.array([
            escape_fraction(model, x, y, basis, s * eta_star, b, cfg, device)
            for s in cfg.scan])
    return result


# ---------------------------------------------------------------- figure and claims

def plot(result: dict, cfg: Config):
    from experiments import plotting

    fig, axes = plotting.subplots(1, 4, width=3.6, height=3.1)
    sizes = [int(b) for b in result["batch_sizes"]]
    colors = dict(zip(sizes, plotting.palette(len(sizes)), strict=True))
    scan = result["scan"]

    ax = axes[0, 0]
    eta = [result[f"B{b}.eta_star"] for b in sizes]
    ax.plot(sizes, eta, "k-o", ms=4, label="η*(B) = 2/λmax(C†D)")
    ax.plot(sizes, [result[f"B{b}.linearised_boundary"] for b in sizes], "s", mfc="none",
            color="tab:orange", ms=8, label="linearised SGD, measured")
    ax.plot(sizes, [result[f"B{b}.frobenius_bound"] for b in sizes], "--", color="gray",
            label="Prop. 3 upper bound")
    ax.axhline(result["gd_threshold"], color="tab:blue", ls=":", label="GD: 2/λmax")
    ax.set(xscale="log", xlabel="batch size B", ylabel="learning rate",
           title=f"Threshold at a trained minimum (n = {cfg.n_train})")
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.legend(fontsize=7)

    panels = [("growth", "log growth of E‖θ‖² per step", "Linearised SGD, exact expectation"),
              ("mc_second_moment", f"mean ‖θ_T‖²/‖θ_0‖², T = {cfg.mc_steps}",
               f"Linearised SGD, {cfg.mc_trajectories} random runs"),
              ("escape_fraction", "fraction of runs leaving the minimum",
               f"torch.optim.SGD, {cfg.sgd_runs} runs × {cfg.sgd_steps} steps")]
    for ax, (key, ylabel, title) in zip(axes[0, 1:], panels, strict=True):
        for b in sizes:
            ax.plot(scan, result[f"B{b}.{key}"], "o-", ms=3, color=colors[b], label=f"B = {b}")
        ax.axvline(1.0, color="k", ls="--", lw=1)
        ax.set(xlabel="η / η*(B)", ylabel=ylabel, title=title)
        if key == "growth":
            ax.axhline(0.0, color="k", lw=0.8)
            for b in sizes:
                ax.plot(scan, result[f"B{b}.typical_growth"], ":", color=colors[b])
            from matplotlib.lines import Line2D

            ax.legend(handles=[Line2D([], [], color="k", label="mean square (exact)"),
                               Line2D([], [], color="k", ls=":",
                                      label="typical run (median, Monte Carlo)")],
                      fontsize=7, loc="upper left")
        if key == "mc_second_moment":
            ax.set_yscale("log")
            ax.axhline(1.0, color="k", lw=0.8)
    axes[0, 3].legend(fontsize=7)
    return fig


def claims(result: dict, cfg: Config) -> list[Claim]:
    sizes = [int(b) for b in result["batch_sizes"]]
    scan = np.asarray(result["scan"])
    out = [within_relative(f"B = {b}: linearised SGD boundary",
                           result[f"B{b}.linearised_boundary"], result[f"B{b}.eta_star"],
                           REL_TOL, "Mulayoff & Michaeli 2024 Thm 3; Ma & Ying 2021 Thm 1",
                           what="η")
           for b in sizes]
    eta = np.array([result[f"B{b}.eta_star"] for b in sizes])
    monotone = bool(np.all(np.diff(eta) >= -1e-12 * eta[1:]))
    out.append(is_true("η*(B) is non-decreasing in B", monotone, "non-decreasing",
                       ", ".join(f"{e:.4g}" for e in eta), "Mulayoff & Michaeli 2024 Prop 1"))
    if cfg.n_train in sizes:
        out.append(within_relative("B = n: η* equals GD's 2/λmax",
                                   result[f"B{cfg.n_train}.eta_star"], result["gd_threshold"],
                                   1e-6, "p = 0 in Thm 3", what="η"))
    below = scan < 1.0
    worst_below = max(float(result[f"B{b}.escape_fraction"][below].max()) for b in sizes)
    out.append(in_range("torch.optim.SGD below η*(B): runs leaving the minimum", worst_below,
                        0.0, 0.0, "mean-square stable ⇒ stays", what="fraction"))
    top = int(np.argmax(scan))
    weakest_above = min(float(result[f"B{b}.escape_fraction"][top]) for b in sizes)
    out.append(in_range(f"torch.optim.SGD at {scan[top]:g}·η*(B): some runs leave, every B",
                        weakest_above, 1.0 / cfg.sgd_runs, 1.0,
                        "Ma & Ying 2021: mean-square unstable minima are escaped",
                        what="fraction (worst B)"))
    n = cfg.n_train
    near = [i for i, s_ in enumerate(scan) if abs(s_ - 1.0) <= REL_TOL + 1e-12]
    if n in sizes and near:
        jump = [float(result[f"B{n}.escape_fraction"][i]) for i in near]
        sharp = all(f == (0.0 if scan[i] < 1 else 1.0) for f, i in zip(jump, near, strict=True))
        out.append(is_true("GD (B = n): boundary within 5% of 2/λmax",
                           sharp, "no run leaves below, every run leaves above",
                           ", ".join(f"{scan[i]:g}·η*: {f:.2f}" for f, i in
                                     zip(jump, near, strict=True)),
                           "linear stability of GD"))
    return out
