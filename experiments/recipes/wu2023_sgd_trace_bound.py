"""SGD-trained minima obey tr H ≤ 2/η at B = 1; GD-trained ones only λ_max ≤ 2/η.

A tanh MLP with a scalar output (½-MSE on a 0/1 "even digit" target) is trained towards
interpolation by ``torch.optim.SGD`` over a grid of step sizes η and batch sizes B (a
fresh uniform batch of B distinct examples per step) and by full-batch GD. At the end,
the Gauss–Newton matrix G = JᵀJ/n, which equals the Hessian at an interpolating
minimum, is measured exactly through the n × n Gram matrix K = JJᵀ/n of per-example
gradients: tr H = tr K, ‖H‖_F = ‖K‖_F, λ_max(H) = λ_max(K).

Checked against Mulayoff & Michaeli's necessary condition for mean-square stability
with rank-one H_i, p·tr H + (1 − p)·‖H‖_F²/tr H ≤ 2/η with p = (n − B)/(B(n − 1)),
which at B = 1 is Wu & Su's tr H ≤ 2/η, and against GD's λ_max ≤ 2/η.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call, jacrev, vmap
from tqdm.auto import tqdm

from experiments import datasets, losses
from experiments.claims import Claim, in_range, is_true
from experiments.config import param
from experiments.train import fit
from toy_models import sgd_stability as theory
from toy_models.networks import mlp, seeded

PAPER = ("Wu & Su 2023, The Implicit Regularization of Dynamical Stability in Stochastic "
         "Gradient Descent (ICML); Mulayoff & Michaeli 2024")
DESCRIPTION = ("tr H of SGD-trained MLPs against the bound 2/η (B = 1) and p·tr H + "
               "(1−p)‖H‖²_F/tr H ≤ 2/η (any B); GD only keeps λmax ≤ 2/η")

FULL_BATCH = 0  # batch size 0 in the config means full-batch GD


@dataclass(frozen=True)
class Config:
    seed: int = param(0, lo=0, hi=2**31 - 1)
    dataset: str = param("digits", choices=("digits", "mnist1d"))
    n_train: int = param(200, lo=20, hi=4000)
    width: int = param(64, lo=2, hi=4096)
    lrs: tuple[float, ...] = param((0.02, 0.05, 0.1, 0.2), lo=1e-5, hi=10.0)
    batch_sizes: tuple[int, ...] = param((1, 8, 0), lo=0, hi=4000,
                                         help="0 means full batch (GD)")
    steps: int = param(12000, lo=100, hi=10**7)
    loss_goal: float = param(1e-6, lo=0.0, hi=1.0, help="stop once the train loss is below")
    converged_loss: float = param(2e-3, lo=0.0, hi=1.0,
                                  help="a run counts as converged if its final loss is below")
    slack: float = param(0.05, lo=0.0, hi=1.0,
                         help="allowed excess over a necessary condition (runs end near, "
                              "not at, a minimum)")


PRESETS = {
    "quick": Config(),
    "paper": Config(n_train=1000, dataset="mnist1d", width=128,
                    lrs=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5), batch_sizes=(1, 2, 8, 32, 0),
                    steps=400_000, loss_goal=1e-7),
}


def workload(cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    data = datasets.digits() if cfg.dataset == "digits" else datasets.mnist1d()
    data = data.first(cfg.n_train)
    return data.x, (data.y % 2 == 0).double().unsqueeze(1)


def gram_spectrum(model, x: torch.Tensor) -> tuple[float, float, float]:
    """(tr, ‖·‖_F, λ_max) of K = JJᵀ/n, which share these with G = JᵀJ/n."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def output(p, xi):
        return functional_call(model, p, (xi[None],)).squeeze()

    jac = vmap(jacrev(output), in_dims=(None, 0))(params, x)
    flat = torch.cat([jac[k].reshape(len(x), -1) for k in params], dim=1)
    gram = flat @ flat.T / len(x)
    return (float(gram.trace()), float(gram.norm()),
            float(torch.linalg.eigvalsh(gram)[-1]))


def run(cfg: Config, device: str) -> dict:
    x, y = workload(cfg)
    n = len(x)
    if max(cfg.batch_sizes) > n:
        raise ValueError(f"batch sizes must be <= n_train = {n}")
    grid = [(b, lr) for b in cfg.batch_sizes for lr in cfg.lrs]
    rows = []
    for b, lr in tqdm(grid, desc="η × B grid", disable=None):
        model = seeded(cfg.seed, mlp, [x.shape[1], cfg.width, 1], "tanh", dtype=torch.float64)
        history = fit(model, losses.half_sum_mse, x, y,
                      lambda p, lr=lr: torch.optim.SGD(p, lr=lr), steps=cfg.steps,
                      batch_size=None if b == FULL_BATCH else b, sampling="subset",
                      seed=cfg.seed, eval_every=500, loss_goal=cfg.loss_goal, device=device,
                      checkpoint=f"B{b}-lr{lr}", progress=False)
        final = float(history["train_loss"][-1])
        converged = (not history.diverged) and final < cfg.converged_loss
        trace, fro, lam = gram_spectrum(model.cpu(), x) if not history.diverged else (
            np.nan, np.nan, np.nan)
        rows.append((b, lr, float(converged), final, trace, fro, lam, history.steps))
    table = np.array(rows, dtype=float)
    keys = ("batch_size", "lr", "converged", "final_loss", "trace", "frobenius", "lambda_max",
            "steps")
    result = {k: table[:, i] for i, k in enumerate(keys)}
    result["n_train"] = n
    p = np.array([theory.sampling_factor(n, int(b) if b else n) for b in result["batch_size"]])
    result["p"] = p
    with np.errstate(invalid="ignore"):
        result["condition"] = p * result["trace"] + (1 - p) * result["frobenius"] ** 2 / \
            result["trace"]
    return result


def label(b: float) -> str:
    return "GD" if b == FULL_BATCH else f"B = {int(b)}"


def plot(result: dict, cfg: Config):
    from experiments import plotting

    fig, axes = plotting.subplots(1, 3, width=3.8, height=3.2)
    sizes = list(dict.fromkeys(result["batch_size"]))
    colors = dict(zip(sizes, plotting.palette(len(sizes)), strict=True))
    two_over_eta = 2 / result["lr"]
    ok = result["converged"] > 0
    span = np.array([two_over_eta.min() * 0.7, two_over_eta.max() * 1.4])
    panels = [("trace", "tr H", "tr H against the B = 1 bound"),
              ("condition", "p·tr H + (1−p)‖H‖²_F / tr H", "Necessary condition, own p"),
              ("lambda_max", "λ_max(H)", "Sharpness against GD's bound")]
    for ax, (key, ylabel, title) in zip(axes[0], panels, strict=True):
        for b in sizes:
            mine = result["batch_size"] == b
            ax.plot(two_over_eta[mine & ok], result[key][mine & ok], "o-", ms=4,
                    color=colors[b], label=label(b))
            ax.plot(two_over_eta[mine & ~ok], np.full((mine & ~ok).sum(), span[0]), "x",
                    color=colors[b], ms=6)
        ax.plot(span, span, "k--", lw=1, label="= 2/η")
        ax.set(xscale="log", yscale="log", xlabel="2/η", ylabel=ylabel, title=title)
    axes[0, 0].legend(fontsize=7, title="× = not converged", title_fontsize=7)
    return fig


def _over(claim: Claim, runs: int) -> Claim:
    """The claim with its number of runs in the measured text (the name stays the same at
    every seed, so pass rates over seeds count one claim)."""
    return dataclasses.replace(claim, measured=f"{claim.measured} over {runs} converged runs")


def claims(result: dict, cfg: Config) -> list[Claim]:
    ok = result["converged"] > 0
    two_over_eta = 2 / result["lr"]
    sgd = ok & (result["batch_size"] != FULL_BATCH)
    gd = ok & (result["batch_size"] == FULL_BATCH)
    b1 = ok & (result["batch_size"] == 1)
    out = []
    worst = float(np.max(result["condition"][sgd] / two_over_eta[sgd])) if sgd.any() else np.nan
    out.append(_over(in_range("converged SGD runs: necessary condition / (2/η)", worst, 0.0,
                              1.0 + cfg.slack, "Mulayoff & Michaeli 2024 Prop 3", what="max"),
                     int(sgd.sum())))
    worst_b1 = float(np.max(result["trace"][b1] / two_over_eta[b1])) if b1.any() else np.nan
    out.append(_over(in_range("converged B = 1 runs: tr H / (2/η)", worst_b1, 0.0,
                              1.0 + cfg.slack, "Wu & Su 2023: tr H ≤ 2/η", what="max"),
                     int(b1.sum())))
    worst_gd = float(np.max(result["lambda_max"][gd] / two_over_eta[gd])) if gd.any() else np.nan
    out.append(_over(in_range("converged GD runs: λ_max / (2/η)", worst_gd, 0.0, 1.1,
                              "Cohen 2021; GD linear stability", what="max"), int(gd.sum())))
    above = result["trace"][gd] / two_over_eta[gd]
    out.append(is_true("some GD run exceeds the B = 1 trace bound (GD regularises less)",
                       bool(gd.any() and np.max(above) > 1.0), "tr H / (2/η) > 1 for some run",
                       f"max tr H/(2/η) = {np.max(above):.3g}" if gd.any() else "no GD run",
                       "Wu & Su 2023"))
    # every SGD batch size of the config gets its claim, whether or not its runs converged
    # (fewer than two converged runs cannot show a decrease: the claim fails, saying so)
    for b in cfg.batch_sizes:
        if b == FULL_BATCH:
            continue
        mine = sgd & (result["batch_size"] == b)
        order = np.argsort(result["lr"][mine])
        traces = result["trace"][mine][order]
        measured = ", ".join(f"η={lr:g}: {t:.3g}" for lr, t in zip(
            result["lr"][mine][order], traces, strict=True)) if len(traces) >= 2 else (
            f"only {len(traces)} converged run{'s' * (len(traces) != 1)}")
        out.append(is_true(f"{label(b)}: tr H decreases as η grows", bool(
            len(traces) >= 2 and np.all(np.diff(traces) < 0)), "strictly decreasing",
            measured, "Wu & Su 2023: larger η regularises more"))
    return out
