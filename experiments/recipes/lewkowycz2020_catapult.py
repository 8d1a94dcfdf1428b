"""Lewkowycz et al. 2020: the lazy, catapult and divergent phases of large-step GD.

A wide two-layer ReLU network in the NTK parameterisation, scalar output, ½-MSE on a
±1 "even digit" target. λ₀ is the top eigenvalue of Θ/n at initialisation, so the
linearised model is stable iff η < 2/λ₀. Full-batch GD (``torch.optim.SGD``) runs at
step sizes from below 2/λ₀ to beyond the divergence edge, with the top NTK eigenvalue
tracked during training. Predictions: below 2/λ₀ the loss falls monotonically and λ
stays put (lazy); above it the loss first grows, λ falls until it is below 2/η, and
the run converges (catapult); beyond η_max it diverges (η_max = 4/λ₀ in the solvable
uv model, larger for ReLU nets).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from experiments import datasets, losses
from experiments.claims import Claim, in_range, is_true
from experiments.config import param
from experiments.probes.ntk import empirical_ntk
from experiments.train import Probe, every, fit
from toy_models import ntk

PAPER = ("Lewkowycz, Bahri, Dyer, Sohl-Dickstein, Gur-Ari 2020, The large learning rate "
         "phase of deep learning: the catapult mechanism")
DESCRIPTION = ("wide two-layer ReLU net, GD at η·λ₀/2 from 0.5 to beyond divergence: lazy "
               "below 2/λ₀, loss spike and λ_final < 2/η above, divergence edge vs 4/λ₀")


@dataclass(frozen=True)
class Config:
    seed: int = param(0, lo=0, hi=2**31 - 1)
    n_train: int = param(128, lo=8, hi=1797)
    width: int = param(2048, lo=16, hi=10**6)
    steps: int = param(300, lo=10, hi=10**6)
    probe_every: int = param(5, lo=1, hi=10**6, help="steps between NTK eigenvalue probes")
    lr_multiples: tuple[float, ...] = param((0.5, 0.9, 1.2, 1.5, 1.75, 2.0, 2.5, 3.5),
                                            lo=0.01, hi=1000.0,
                                            help="η in units of 2/λ₀")


PRESETS = {
    "quick": Config(),
    "paper": Config(n_train=512, width=8192, steps=2000,
                    lr_multiples=(0.5, 0.9, 1.1, 1.2, 1.35, 1.5, 1.65, 1.8, 1.9, 2.0, 2.1, 2.25,
                                  2.5, 3.0, 4.0, 6.0)),
}


def workload(cfg: Config):
    data = datasets.digits().first(cfg.n_train)
    x = data.x  # standardised: xᵀx/n₀ ≈ 1, the scale the NTK parameterisation expects
    y = torch.where(data.y % 2 == 0, 1.0, -1.0).double().unsqueeze(1)
    return x, y


def top_ntk_eigenvalue(model, x) -> float:
    """λ_max(Θ)/n: the curvature of the linearised model's ½-MSE in function space."""
    theta = empirical_ntk(model, x, mode="trace")
    return float(torch.linalg.eigvalsh(theta.double())[-1] / len(x))


def fresh_model(cfg: Config, device: str):
    torch.manual_seed(cfg.seed)
    return ntk.ntk_mlp([64, cfg.width, 1], beta=0.0).to(device)


def run(cfg: Config, device: str) -> dict:
    x, y = workload(cfg)
    lam0 = top_ntk_eigenvalue(fresh_model(cfg, device), x.to(device))
    result: dict = {"lambda0": lam0, "lr_multiples": np.array(cfg.lr_multiples)}
    for multiple in tqdm(cfg.lr_multiples, desc="step sizes", disable=None):
        lr = multiple * 2 / lam0
        net = fresh_model(cfg, device)
        probe = Probe("ntk", lambda s: top_ntk_eigenvalue(s.model, s.x), every(cfg.probe_every))
        history = fit(net, losses.half_sum_mse, x, y, lambda p, lr=lr: torch.optim.SGD(p, lr=lr),
                      steps=cfg.steps, probes=[probe], device=device, divergence_factor=1e8,
                      checkpoint=f"catapult-{multiple}", progress=False)
        key = f"m{multiple:g}"
        result[f"{key}.loss"] = history["train_loss"]
        result[f"{key}.lambda"] = history["ntk.value"]
        result[f"{key}.lambda_step"] = history["ntk.step"]
        result[f"{key}.diverged"] = history.diverged
    return result


def phases(result: dict) -> dict[str, list[float]]:
    lazy, catapult, divergent = [], [], []
    for m in result["lr_multiples"]:
        key = f"m{m:g}"
        if result[f"{key}.diverged"]:
            divergent.append(float(m))
        elif m < 1:
            lazy.append(float(m))
        else:
            catapult.append(float(m))
    return {"lazy": lazy, "catapult": catapult, "divergent": divergent}


def plot(result: dict, cfg: Config):
    from experiments import plotting

    fig, axes = plotting.subplots(1, 3, width=3.9, height=3.2)
    multiples = list(result["lr_multiples"])
    colors = dict(zip(multiples, plotting.palette(len(multiples)), strict=True))
    lam0 = result["lambda0"]
    for m in multiples:
        key = f"m{m:g}"
        style = ":" if result[f"{key}.diverged"] else "-"
        loss = result[f"{key}.loss"]
        axes[0, 0].plot(np.arange(len(loss)), loss, style, color=colors[m], label=f"{m:g}")
        axes[0, 1].plot(result[f"{key}.lambda_step"], result[f"{key}.lambda"] / lam0, style,
                        color=colors[m])
    axes[0, 0].set(yscale="log", xlabel="GD step", ylabel="train loss (½-MSE)",
                   title="Loss", ylim=(1e-4, 1e4))
    axes[0, 0].legend(fontsize=6, title="η / (2/λ₀)", title_fontsize=7, ncol=2)
    axes[0, 1].set(xlabel="GD step", ylabel="λ_t / λ₀ (top NTK eigenvalue)",
                   title="Top NTK eigenvalue", yscale="log")
    ax = axes[0, 2]
    finals = [result[f"m{m:g}.lambda"][-1] / lam0 for m in multiples]
    converged = [not result[f"m{m:g}.diverged"] for m in multiples]
    ax.plot(np.array(multiples)[converged], np.array(finals)[converged], "ko-",
            label="λ_final / λ₀ (converged runs)")
    grid = np.geomspace(min(multiples), max(multiples), 100)
    ax.plot(grid, 1 / grid, "r--", label="2/η (in units of λ₀)")
    ax.axvline(1.0, color="gray", lw=1, label="η = 2/λ₀")
    ax.axvline(2.0, color="gray", ls=":", lw=1, label="η = 4/λ₀ (uv model η_max)")
    diverged = [m for m, ok in zip(multiples, converged, strict=True) if not ok]
    if diverged:
        ax.axvspan(min(diverged), max(multiples), color="tab:red", alpha=0.1, label="diverged")
    ax.set(xscale="log", yscale="log", xlabel="η / (2/λ₀)", ylabel="λ / λ₀",
           title="Final curvature vs step size")
    ax.legend(fontsize=6)
    return fig


def claims(result: dict, cfg: Config) -> list[Claim]:
    ph = phases(result)
    lam0 = result["lambda0"]
    out = []
    lazy_ok, lazy_detail = True, []
    for m in ph["lazy"]:
        loss, lam = result[f"m{m:g}.loss"], result[f"m{m:g}.lambda"]
        # monotone down to the float64 noise floor of the loss
        floor = 1e-12 * loss[0]
        monotone = bool(np.all((np.diff(loss) <= 0) | (loss[1:] < floor)))
        moved = float(np.max(np.abs(lam / lam0 - 1)))
        lazy_ok &= monotone and moved < 0.1
        lazy_detail.append(f"η={m:g}·2/λ₀: monotone={monotone}, max|λ/λ₀−1|={moved:.3f}")
    out.append(is_true("below 2/λ₀: loss falls monotonically and λ stays within 10%",
                       bool(ph["lazy"]) and lazy_ok, "every lazy run",
                       "; ".join(lazy_detail) or "no lazy run", "Lewkowycz 2020, lazy phase"))
    spike_ok, below_ok, detail = True, True, []
    for m in ph["catapult"]:
        loss, lam = result[f"m{m:g}.loss"], result[f"m{m:g}.lambda"]
        spike = float(loss.max() / loss[0])
        final = float(lam[-1] * m / lam0)  # λ_final·η/2 with η = m·2/λ₀
        spike_ok &= spike > 1.0
        below_ok &= final < 1.0
        detail.append(f"{m:g}: spike×{spike:.3g}, λη/2={final:.3f}")
    out.append(is_true("2/λ₀ < η < edge: the loss first rises above its initial value",
                       bool(ph["catapult"]) and spike_ok, "max loss / initial > 1, every run",
                       "; ".join(detail) or "no catapult run", "Lewkowycz 2020, catapult phase"))
    out.append(is_true("2/λ₀ < η < edge: the final λ is below 2/η",
                       bool(ph["catapult"]) and below_ok, "λ_final·η/2 < 1, every run",
                       "; ".join(detail) or "no catapult run", "Lewkowycz 2020, catapult phase"))
    edge_lo = max(ph["catapult"], default=np.nan)
    edge_hi = min(ph["divergent"], default=np.nan)
    out.append(in_range(f"a catapult phase exists: largest converging η·λ₀ (first diverging: "
                        f"{2 * edge_hi:g}; uv model η_max·λ₀ = 4)", 2 * edge_lo, 2.0, np.inf,
                        "Lewkowycz 2020: 2/λ₀ < η < η_max", what="η·λ₀"))
    return out
