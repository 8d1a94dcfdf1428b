"""Jacot et al. 2018, Fig. 2: after training, a wide network's output is the Gaussian of
kernel regression with Θ∞.

Depth-4 ReLU networks (3 hidden layers of width n, NTK parameterisation, β = 0.1,
σ_w = 1) are trained by full-batch GD (``torch.optim.SGD``, lr 1.0) on ½-MSE at 4 points
of the unit circle, γ = ±π/4, ±3π/4, with targets f*(x) = x₁x₂ = ±½. Many independent
initialisations per width give the empirical 10/50/90 percentiles of the trained output
f(x(γ)) along the circle. In the infinite-width limit (``toy_models.ntk.
limit_output_distribution``) the output after t steps is Gaussian: mean A_t(x)·y and
variance Σ(x,x) − 2A_tΣ(X,x) + A_tΣ(X,X)A_tᵀ with A_t = Θ(x,X)Θ⁻¹(I − (I − ηΘ/4)^t),
from the NNGP Σ and the NTK Θ in closed form. The band's percentiles are μ + z_p·σ.

Tolerance (fixed before measuring). For M independent draws the sample p-quantile has
the asymptotic standard error se_p = σ(γ)·√(p(1−p)/M)/φ(z_p), with σ(γ) the limit's
standard deviation (so se is not estimated from the data under test). The claim compares
z = (empirical − limit)/se_p at the three percentiles and every circle angle where the
limit is not pinned by the data (σ(γ) ≥ 0.2·max σ; at the training points σ → 0), and
passes if max |z| ≤ the two-sided Bonferroni bound Φ⁻¹(1 − 0.05/(2K)) for the K
comparisons (a 5% family-wise false-alarm rate if the net were exactly the limit).

Cross-check with the full optimizer: every network's empirical NTK Θ₀ at init gives its
linearised trajectory (``toy_models.ntk.linearised_test_outputs``); the RMS gap between
the SGD-trained network and its linearisation on the circle should shrink as n grows
(Jacot 2018 Thm 2).

Divergence is an outcome: the networks of an ensemble whose summed loss diverges are
recorded as diverged (NaN outputs), and the claims on them fail.

Quick scale trains for 100 steps instead of 1000 (and 16 wide networks instead of 100):
the limit is evaluated at the same t, so the comparison is exact at any t; at t = 100 the
slowest mode of the training residual has decayed by (1 − 0.161/4)^100 ≈ 0.016.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm

from experiments import losses
from experiments.claims import Claim, fmt, in_range, is_true
from experiments.config import param
from experiments.probes.ntk import empirical_ntk
from experiments.train import fit
from toy_models import ntk

PAPER = ("Jacot, Gabriel, Hongler 2018, Neural Tangent Kernel: Convergence and "
         "Generalization in Neural Networks (NeurIPS)")
DESCRIPTION = ("Fig. 2: trained outputs of n = 50 / 1000 ReLU nets on 4 circle points: "
               "10/50/90 percentiles vs the infinite-width Gaussian; SGD vs linearised")


@dataclass(frozen=True)
class Config:
    seed: int = param(0, lo=0)
    widths: tuple[int, ...] = param((50, 1000), lo=2, hi=100_000)
    inits: tuple[int, ...] = param((100, 16), lo=2, hi=100_000,
                                   help="independent initialisations, one count per width")
    steps: int = param(100, lo=0, hi=10**6)
    lr: float = param(1.0, lo=1e-6, hi=100.0)
    beta: float = param(0.1, lo=0.0, hi=10.0)
    n_angles: int = param(73, lo=5, hi=2001, help="points on the circle, γ ∈ [−π, π]")
    batch: int = param(100, lo=1, hi=10_000, help="networks trained together in one ensemble")


PRESETS = {
    "quick": Config(),
    "paper": Config(inits=(100, 100), steps=1000),
}

DEPTH = 4  # weight matrices: 3 hidden layers, as Jacot's "L = 4"
TRAIN_ANGLES = np.array([-3, -1, 1, 3]) * np.pi / 4
PERCENTILES = (10, 50, 90)
PINNED = 0.2  # angles with limit σ below this fraction of its maximum are not compared


def _train_width(width, count, x_train, y_train, x_circle, cfg, device, bar):
    """Outputs on the circle after training (SGD) and of the linearised networks."""
    outputs, linear, diverged = [], [], 0
    for start in range(0, count, cfg.batch):
        nets = []
        for init in range(start, min(count, start + cfg.batch)):
            torch.manual_seed(cfg.seed * 1_000_003 + width * 1009 + init)
            net = ntk.ntk_mlp([2, width, width, width, 1], beta=cfg.beta).to(device)
            theta_train = empirical_ntk(net, x_train, mode="trace").cpu().numpy()
            theta_circle = empirical_ntk(net, x_circle, x_train, mode="trace").cpu().numpy()
            with torch.no_grad():
                f0_train, f0_circle = net(x_train)[:, 0].cpu().numpy(), \
                    net(x_circle)[:, 0].cpu().numpy()
            linear.append(ntk.linearised_test_outputs(
                theta_circle, theta_train, f0_circle, f0_train, y_train.cpu().numpy(),
                cfg.lr, np.array([cfg.steps]))[0])
            nets.append(net)
        ensemble = ntk.NTKEnsemble(nets).to(device)
        targets = y_train[:, None].expand(-1, len(nets))
        history = fit(ensemble, losses.half_sum_mse, x_train, targets,
                      lambda p: torch.optim.SGD(p, lr=cfg.lr), steps=cfg.steps,
                      eval_every=max(cfg.steps, 1), progress=False)
        with torch.no_grad():
            out = ensemble(x_circle).T.cpu().numpy()
        if history.diverged:
            diverged += len(nets)
            out = np.full_like(out, np.nan)
        outputs.extend(out)
        bar.update(len(nets))
    return np.array(outputs), np.array(linear), diverged


def run(cfg: Config, device: str) -> dict:
    if len(cfg.inits) != len(cfg.widths):
        raise ValueError("inits needs one count per width")
    x_train = torch.tensor(ntk.circle(TRAIN_ANGLES), device=device)
    y_train = x_train[:, 0] * x_train[:, 1]
    gammas = np.linspace(-np.pi, np.pi, cfg.n_angles)
    x_circle = torch.tensor(ntk.circle(gammas), device=device)
    mean, std = ntk.limit_output_distribution(ntk.circle(gammas), ntk.circle(TRAIN_ANGLES),
                                              y_train.cpu().numpy(), DEPTH, cfg.lr,
                                              cfg.steps, beta=cfg.beta)
    result: dict = {"gamma": gammas, "widths": np.array(cfg.widths),
                    "train_gamma": TRAIN_ANGLES, "y_train": y_train.cpu().numpy(),
                    "limit.mean": mean, "limit.std": std}
    bar = tqdm(total=sum(cfg.inits), desc="networks", disable=None)
    for width, count in zip(cfg.widths, cfg.inits, strict=True):
        outputs, linear, diverged = _train_width(width, count, x_train, y_train, x_circle,
                                                 cfg, device, bar)
        result[f"w{width}.outputs"] = outputs
        result[f"w{width}.linearised"] = linear
        result[f"w{width}.diverged"] = float(diverged)
    bar.close()
    return result


def limit_percentiles(result: dict) -> np.ndarray:
    z = stats.norm.ppf(np.array(PERCENTILES) / 100)
    return result["limit.mean"][None] + z[:, None] * result["limit.std"][None]


def percentile_z(result: dict, width: int) -> tuple[np.ndarray, np.ndarray]:
    """z-scores (percentile × compared angle) of the empirical percentiles against the
    limit's, in order-statistic standard errors; and the mask of compared angles."""
    outputs = result[f"w{width}.outputs"]
    p = np.array(PERCENTILES)[:, None] / 100
    std = result["limit.std"]
    se = std[None] * np.sqrt(p * (1 - p) / len(outputs)) / stats.norm.pdf(stats.norm.ppf(p))
    empirical = np.percentile(outputs, PERCENTILES, axis=0)
    compared = std >= PINNED * std.max()
    return ((empirical - limit_percentiles(result)) / se)[:, compared], compared


def plot(result: dict, cfg: Config):
    from experiments import plotting

    widths = [int(w) for w in result["widths"]]
    fig, axes = plotting.subplots(1, len(widths), width=4.4, height=3.4)
    gamma = result["gamma"]
    limit = limit_percentiles(result)
    for ax, width in zip(axes[0], widths, strict=True):
        outputs = result[f"w{width}.outputs"]
        for f in outputs[:10]:
            ax.plot(gamma, f, color="0.75", lw=0.6)
        ax.fill_between(gamma, limit[0], limit[2], color="tab:blue", alpha=0.2,
                        label="limit: 10–90%")
        ax.plot(gamma, limit[1], color="tab:blue", lw=1.5, label="limit: median")
        empirical = np.percentile(outputs, PERCENTILES, axis=0)
        for k, style in enumerate(("--", "-", "--")):
            ax.plot(gamma, empirical[k], style, color="tab:red", lw=1.2,
                    label="trained nets: 10/50/90%" if k == 0 else None)
        ax.plot(result["train_gamma"], result["y_train"], "ko", ms=5, label="training points")
        ax.set(xlabel="γ", ylabel="f(x(γ))",
               title=f"n = {width}: {len(outputs)} nets, t = {cfg.steps}")
        ax.set_ylim(-0.7, 0.95)
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    return fig


def _rms_gap(result: dict, width: int) -> float:
    return float(np.sqrt(np.mean((result[f"w{width}.outputs"]
                                  - result[f"w{width}.linearised"]) ** 2)))


def _percentile_claim(result: dict, width: int, source: str) -> Claim:
    z, compared = percentile_z(result, width)
    bound = float(stats.norm.isf(0.05 / (2 * z.size)))
    worst = float(np.max(np.abs(z))) if np.all(np.isfinite(z)) else float("nan")
    count = len(result[f"w{width}.outputs"])
    claim = in_range(f"n = {width} ({count} nets): 10/50/90 percentiles inside the limit's, "
                     f"worst of {z.size} (percentile, γ)", worst, 0.0, bound, source,
                     what="max |z| (order-statistic s.e.)")
    diverged = int(result[f"w{width}.diverged"])
    if diverged:
        claim = replace(claim, measured=f"{claim.measured}; {diverged} nets diverged")
    return claim


def claims(result: dict, cfg: Config) -> list[Claim]:
    widths = [int(w) for w in result["widths"]]
    small, large = widths[0], widths[-1]
    out = [_percentile_claim(result, large, "Jacot 2018 Fig. 2, §5 (Gaussian limit)"),
           _percentile_claim(result, small, "Jacot 2018 Fig. 2 ('even n = 50 is close')")]
    gap = {w: _rms_gap(result, w) for w in (small, large)}
    out.append(is_true("SGD vs linearised model: function gap shrinks with width",
                       gap[large] < gap[small], f"RMS gap at n = {large} < at n = {small}",
                       f"{fmt(gap[large], 3)} vs {fmt(gap[small], 3)}",
                       "Jacot 2018 Thm 2 (training in the NTK regime)"))
    return out
