"""Jacot et al. 2018, Fig. 1: the NTK at init converges to Θ∞ and stays put as width grows.

Depth-4 ReLU networks (3 hidden layers of width n) in the NTK parameterisation
(β = 0.1, σ_w = 1) on 2-D inputs; Θ(x₀, x) with x₀ = (1, 0) and x = (cos γ, sin γ),
at initialisation and after 200 full-batch GD steps at lr 1.0 on f*(x) = x₁x₂
(½-MSE on random N(0, I) inputs), 10 initialisations per width, beside the analytic
Θ∞ of ``toy_models.ntk``. The network trained by ``torch.optim.SGD`` is also compared
with its linearisation around the initialisation (the kernel-regression dynamics
f_t = y + (I − ηΘ₀/n)^t (f₀ − y) extended to the circle).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from experiments import losses
from experiments.claims import Claim, in_range, is_true
from experiments.config import param
from experiments.probes.ntk import empirical_ntk
from experiments.train import fit
from toy_models import ntk

PAPER = ("Jacot, Gabriel, Hongler 2018, Neural Tangent Kernel: Convergence and "
         "Generalization in Neural Networks (NeurIPS)")
DESCRIPTION = ("Fig. 1: empirical NTK of depth-4 ReLU nets at init and after 200 GD steps "
               "against the analytic Θ∞; spread ∝ n^-1/2; linearised vs real training")


@dataclass(frozen=True)
class Config:
    seed: int = param(0, lo=0, hi=2**31 - 1)
    widths: tuple[int, ...] = param((128, 1024), lo=2, hi=100_000)
    inits: int = param(10, lo=2, hi=1000, help="independent initialisations per width")
    steps: int = param(200, lo=0, hi=10**6)
    lr: float = param(1.0, lo=1e-6, hi=100.0)
    beta: float = param(0.1, lo=0.0, hi=10.0)
    n_train: int = param(16, lo=1, hi=10**5, help="random N(0, I) training inputs")
    n_angles: int = param(49, lo=5, hi=2001, help="points on the circle, γ ∈ [−π, π]")


PRESETS = {
    "quick": Config(),
    "paper": Config(widths=(500, 10000)),
}

DEPTH = 4  # weight matrices: 3 hidden layers, as Jacot's "L = 4"


def run(cfg: Config, device: str) -> dict:
    gen = torch.Generator().manual_seed(cfg.seed)
    x_train = torch.randn(cfg.n_train, 2, generator=gen, dtype=torch.float64)
    y_train = (x_train[:, 0] * x_train[:, 1]).unsqueeze(1)
    gammas = np.linspace(-np.pi, np.pi, cfg.n_angles)
    x_circle = torch.tensor(ntk.circle(gammas))
    x0 = torch.tensor(ntk.circle([0.0]))
    result: dict = {"gamma": gammas, "widths": np.array(cfg.widths),
                    "analytic": ntk.ntk(ntk.circle([0.0]), ntk.circle(gammas), DEPTH,
                                        beta=cfg.beta)[0]}
    bar = tqdm(total=len(cfg.widths) * cfg.inits, desc="widths × inits", disable=None)
    for width in cfg.widths:
        before, after, outputs, linear = [], [], [], []
        for init in range(cfg.inits):
            torch.manual_seed(cfg.seed * 10_000 + init)
            net = ntk.ntk_mlp([2, width, width, width, 1], beta=cfg.beta).to(device)
            xt, yt, xc = x_train.to(device), y_train.to(device), x_circle.to(device)
            before.append(empirical_ntk(net, x0.to(device), xc, mode="trace")[0].cpu())
            theta_train = empirical_ntk(net, xt, mode="trace").cpu().numpy()
            theta_circle = empirical_ntk(net, xc, xt, mode="trace").cpu().numpy()
            with torch.no_grad():
                f0_train, f0_circle = net(xt)[:, 0].cpu().numpy(), net(xc)[:, 0].cpu().numpy()
            linear.append(ntk.linearised_test_outputs(
                theta_circle, theta_train, f0_circle, f0_train, y_train[:, 0].numpy(), cfg.lr,
                np.array([cfg.steps]))[0])
            fit(net, losses.half_sum_mse, xt, yt, lambda p: torch.optim.SGD(p, lr=cfg.lr),
                steps=cfg.steps, eval_every=max(cfg.steps, 1), progress=False)
            after.append(empirical_ntk(net, x0.to(device), xc, mode="trace")[0].cpu())
            with torch.no_grad():
                outputs.append(net(xc)[:, 0].cpu().numpy())
            bar.update(1)
        result[f"w{width}.before"] = torch.stack(before).numpy()
        result[f"w{width}.after"] = torch.stack(after).numpy()
        result[f"w{width}.outputs"] = np.array(outputs)
        result[f"w{width}.linearised"] = np.array(linear)
    bar.close()
    return result


def plot(result: dict, cfg: Config):
    from experiments import plotting

    widths = [int(w) for w in result["widths"]]
    fig, axes = plotting.subplots(1, len(widths) + 1, width=3.8, height=3.2)
    gamma = result["gamma"]
    for ax, width in zip(axes[0], widths, strict=False):
        for i, (b, a) in enumerate(zip(result[f"w{width}.before"], result[f"w{width}.after"],
                                       strict=True)):
            ax.plot(gamma, b, color="tab:blue", lw=0.8, alpha=0.6,
                    label="t = 0" if i == 0 else None)
            ax.plot(gamma, a, color="tab:red", lw=0.8, alpha=0.6,
                    label=f"t = {cfg.steps}" if i == 0 else None)
        ax.plot(gamma, result["analytic"], "k--", lw=1.5, label="Θ∞ (analytic)")
        top = max(result[f"w{w}.after"].max() for w in widths)
        ax.set(xlabel="γ", ylabel="Θ(x₀, x(γ))", title=f"width n = {width}",
               ylim=(0, 1.05 * max(top, 1.4 * result["analytic"].max())))
        ax.legend(fontsize=7)
    ax = axes[0, -1]
    colors = plotting.palette(len(widths))
    for color, width in zip(colors, widths, strict=True):
        ax.plot(gamma, result[f"w{width}.outputs"].mean(0), color=color,
                label=f"n = {width}: SGD")
        ax.plot(gamma, result[f"w{width}.linearised"].mean(0), "--", color=color,
                label=f"n = {width}: linearised")
    ax.plot(gamma, np.cos(gamma) * np.sin(gamma), "k:", label="f* = x₁x₂")
    ax.set(xlabel="γ", ylabel="f(x(γ)), mean over inits",
           title=f"Function after {cfg.steps} steps")
    ax.legend(fontsize=7)
    return fig


def _kernel_change(result, width):
    before, after = result[f"w{width}.before"], result[f"w{width}.after"]
    return float(np.mean(np.linalg.norm(after - before, axis=1) /
                         np.linalg.norm(before, axis=1)))


def claims(result: dict, cfg: Config) -> list[Claim]:
    widths = [int(w) for w in result["widths"]]
    analytic = result["analytic"]
    out = []
    for width in widths:
        before = result[f"w{width}.before"]
        mean = before.mean(0)
        stderr = before.std(0, ddof=1) / np.sqrt(len(before))
        z = float(np.max(np.abs(mean - analytic) / stderr))
        out.append(in_range(f"n = {width}: mean NTK at init vs Θ∞, worst γ", z, 0.0, 3.0,
                            "Jacot 2018 Thm 1, Fig. 1", what="|z| (standard errors)"))
    small, large = widths[0], widths[-1]
    spread = {w: float(np.mean(result[f"w{w}.before"].std(0, ddof=1))) for w in (small, large)}
    exponent = float(np.log(spread[small] / spread[large]) / np.log(large / small))
    out.append(in_range(f"spread of the init NTK ∝ n^-a between n = {small} and {large}",
                        exponent, 0.3, 0.7, "Jacot 2018 Fig. 1; CLT rate a = 1/2", what="a"))
    change = {w: _kernel_change(result, w) for w in (small, large)}
    out.append(is_true("the kernel moves more during training at the smaller width",
                       change[small] > change[large], f"‖ΔΘ‖/‖Θ‖ at n = {small} > at n = {large}",
                       f"{change[small]:.3g} vs {change[large]:.3g}", "Jacot 2018 Fig. 1"))
    gap = {w: float(np.sqrt(np.mean((result[f"w{w}.outputs"] - result[f"w{w}.linearised"])
                                    ** 2))) for w in (small, large)}
    out.append(is_true("SGD vs linearised model: function gap shrinks with width",
                       gap[large] < gap[small], f"RMS gap at n = {large} < at n = {small}",
                       f"{gap[large]:.3g} vs {gap[small]:.3g}",
                       "Jacot 2018 Thm 2 (training in the NTK regime)"))
    return out
