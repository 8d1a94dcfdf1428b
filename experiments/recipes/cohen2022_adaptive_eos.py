"""Adaptive edge of stability: Adam and RMSprop equilibrate λ_max(P⁻¹H), not λ_max(H).

Cohen et al. 2022: with a frozen diagonal preconditioner P, Adam's update
m ← β1·m + (1 − β1)·g, w ← w − η·m/P is heavy-ball with dampening β1 on P⁻¹H, which is
stable iff η·λ_max(P⁻¹H) < (2 + 2β1)/(1 − β1) (``toy_models.stability``: heavy-ball
with momentum μ = β1 and dampening τ = β1 has a* = (2 + 2μ)/(1 − τ)); that is 38/η at
β1 = 0.9 and 2/η for RMSprop (β1 = 0). During full-batch training the preconditioned
sharpness rises to this threshold and hovers there, while the raw sharpness λ_max(H)
keeps rising: the optimizer adapts P to the growing curvature.

RMSprop is Adam with β1 = 0 (bias-corrected, β2 = 0.999 as for Adam): the paper's β1 = 0
case of the threshold formula. ``--set rmsprop_impl=torch`` runs ``torch.optim.RMSprop``
instead, which has no bias correction: v starts at 0, its first steps are about ten times
larger and the preconditioned sharpness starts above 2/η. At lr 5e-4 and α = 0.99 (the
earlier quick setting) both forms sit above 2/η from the first probe on (torch's settled
13% above, the bias-corrected one 10–20%), so the rise cannot be seen. The quick lr is
1e-4: the preconditioned sharpness starts at 0.29–0.36 × 2/η and crosses at step 275–300
with seeds 0, 1 and 2 (every claim passes with each). At 2e-4 (the previous quick lr) it
starts at 0.8× and crosses at the second probe (step 50) for seeds 1 and 2, too early for
the rise to be measured, and its longer ringing left 87.2% and 89.4% of their samples
within ±10% (seed 0: 91.3%).

Also momentum GD (``SGD(momentum=β)``, P = I), whose threshold on λ_max(H) is (2 + 2β)/η,
at β = 0.5 and η = 0.1: the step size of GD in ``cohen2021-progressive-sharpening``, so
the momentum run differs from that GD run only in β, and its threshold (30) is GD's (20)
times 1 + β. At β = 0.9 and η = 0.1 (the earlier quick setting; effective step
η/(1 − β) = 1, ten times GD's) the sharpness does not hover: it runs a sawtooth (rise ~12%
past the threshold, catapult, fall to ~0.85×, slow rise again), the large catapults of
heavy-ball at large effective steps (Phunyaphibarn et al. 2023). Heavy-ball has no
marginal mode: on ½λx² its spectral radius is √β for every η·λ < (1 + √β)², so an
oscillation dies out once the sharpness is below the threshold and each crossing has to
regrow it, unlike GD, whose decay rate |1 − ηλ| tends to 1 at the threshold. At β = 0.5
(effective step 0.2) the crossing is gentle and the sharpness hovers (the page measures
both). Momentum GD runs ``momentum_steps`` = 1,600 steps, because it crosses at step
~800 (~725 with seed 1) and the band claim needs enough samples after the crossing.

Settings (measured with probes every 1–5 steps; see the page): 1,200 steps, because
RMSprop's first crossing overshoots (1.37× at lr 2e-4, 1.22–1.27× at 1e-4) and rings
for ~250 steps before it settles a few per cent above 2/η, and over 800 steps that
transient is a third of the averaging window;
probes every 25 steps (odd, so the samples alternate between the two phases of a period-2
oscillation; every-5 probes gave the same band fractions within one sample); Lanczos
tolerance 1e-3 (no probed eigenvalue moved by more than 1e-5 relative against 1e-5, at
40% fewer Hessian-vector products, which are ~80% of the run time); the raw λ_max(H) of
Adam and RMSprop, which only has to show the trend, every 75 steps.

Workload as ``cohen2021-progressive-sharpening``: fc-tanh on MNIST-1D with Cohen's MSE;
P is read from the optimizer's state (``optimizer_preconditioner``: Adam's
bias corrections folded in) and λ_max(P^{-1/2} H P^{-1/2}) found by warm-started Lanczos.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from experiments import datasets, losses
from experiments.claims import Claim, in_range, is_true
from experiments.config import param
from experiments.probes.tracking import (
    eos_summary,
    preconditioned_sharpness_probe,
    sharpness_probe,
)
from experiments.train import every, fit
from toy_models import stability
from toy_models.networks import mlp, seeded

PAPER = ("Cohen, Ghorbani, Krishnan, Agarwal, Medapati, Badura, Suo, Cardoze, Nado, Dahl, "
         "Gilmer 2022, Adaptive Gradient Methods at the Edge of Stability (arXiv 2207.14484)")
DESCRIPTION = ("full-batch Adam, RMSprop and momentum GD: the preconditioned sharpness "
               "equilibrates at (2+2β1)/((1−β1)η) while the raw sharpness keeps rising")

SOURCE = "Cohen 2022 §3 (AEoS); the tolerances of cohen2021-progressive-sharpening"
MEAN_RATIO = (0.97, 1.10)
BAND, BAND_SHARE = 0.10, 0.90
RISE_SPEARMAN = 0.9
OPTIMIZERS = ("adam", "rmsprop", "momentum")
LABELS = {"adam": "Adam", "rmsprop": "RMSprop", "momentum": "momentum GD"}


@dataclass(frozen=True)
class Config:
    seed: int = param(0, lo=0, hi=2**31 - 1,
                      help="initialisation seed (the same init for every optimizer)")
    n_train: int = param(1000, lo=50, hi=4000, help="first N MNIST-1D training examples")
    width: int = param(200, lo=4, hi=4096, help="width of both hidden layers")
    adam_lr: float = param(2e-3, lo=1e-6, hi=1.0)
    adam_beta1: float = param(0.9, lo=0.0, hi=0.99)
    adam_beta2: float = param(0.999, lo=0.5, hi=0.99999)
    rmsprop_lr: float = param(1e-4, lo=1e-6, hi=1.0)
    rmsprop_alpha: float = param(0.999, lo=0.5, hi=0.99999, help="RMSprop's β2")
    rmsprop_impl: str = param("adam", choices=("adam", "torch"),
                              help="adam: Adam with β1 = 0 (bias-corrected, the paper's β1 = 0 "
                                   "case); torch: torch.optim.RMSprop (no bias correction)")
    momentum_lr: float = param(0.1, lo=1e-5, hi=10.0)
    momentum: float = param(0.5, lo=0.0, hi=0.99, help="β of momentum GD")
    steps: int = param(1200, lo=10, hi=10**6, help="full-batch steps of Adam and RMSprop")
    momentum_steps: int = param(1600, lo=10, hi=10**6,
                                help="full-batch steps of momentum GD (it crosses later)")
    sharpness_every: int = param(25, lo=1, hi=10**5, help="steps between probes (odd)")
    raw_every: int = param(75, lo=1, hi=10**5,
                           help="steps between λ_max(H) probes of Adam and RMSprop")
    lanczos_ncv: int = param(8, lo=3, hi=100, help="Lanczos vectors per ARPACK restart "
                             "(only when the residual-stopped Lanczos falls back to ARPACK)")
    lanczos_tol: float = param(1e-3, lo=1e-12, hi=1e-2,
                               help="ARPACK relative residual tolerance (eigenvalue error "
                                    "≈ its square: 1e-3 moved no probed value by 1e-5)")
    dtype: str = param("float32", choices=("float32", "float64"))


PRESETS = {
    "quick": Config(),
    "paper": Config(n_train=4000, steps=5000, momentum_steps=5000, sharpness_every=5,
                    raw_every=25),
}


def lr_of(name: str, cfg: Config) -> float:
    return {"adam": cfg.adam_lr, "rmsprop": cfg.rmsprop_lr, "momentum": cfg.momentum_lr}[name]


def threshold(name: str, cfg: Config) -> float:
    """(2 + 2β)/((1 − τ)η): heavy-ball with momentum β and dampening τ (toy_models.stability).

    Adam: β = τ = β1 (an EMA of gradients); RMSprop: β = 0; momentum GD: τ = 0.
    """
    if name == "adam":
        a_star = stability.critical_step("heavy_ball", cfg.adam_beta1, cfg.adam_beta1)
    elif name == "rmsprop":
        a_star = stability.critical_step("gd")
    else:
        a_star = stability.critical_step("heavy_ball", cfg.momentum)
    return a_star / lr_of(name, cfg)


def optimizer_factory(name: str, cfg: Config):
    lr = lr_of(name, cfg)
    if name == "adam":
        return lambda p: torch.optim.Adam(p, lr=lr, betas=(cfg.adam_beta1, cfg.adam_beta2))
    if name == "rmsprop" and cfg.rmsprop_impl == "adam":
        return lambda p: torch.optim.Adam(p, lr=lr, betas=(0.0, cfg.rmsprop_alpha))
    if name == "rmsprop":
        return lambda p: torch.optim.RMSprop(p, lr=lr, alpha=cfg.rmsprop_alpha)
    return lambda p: torch.optim.SGD(p, lr=lr, momentum=cfg.momentum)


def run(cfg: Config, device: str) -> dict:
    data = datasets.mnist1d(cfg.n_train)
    y = losses.one_hot(data.y, 10, torch.float64)
    result: dict = {}
    for name in OPTIMIZERS:
        model = seeded(cfg.seed, mlp, [data.x.shape[1], cfg.width, cfg.width, 10], "tanh")
        lanczos = {"tol": cfg.lanczos_tol, "ncv": cfg.lanczos_ncv}
        schedule = every(cfg.sharpness_every)
        if name == "momentum":  # P = I: the tracked value is the raw sharpness
            probes = [sharpness_probe(schedule, name="tracked", **lanczos)]
        else:  # λ_max(H) only shows the trend, so it is probed on a coarser schedule
            probes = [preconditioned_sharpness_probe(schedule, name="tracked", raw=False,
                                                     **lanczos),
                      sharpness_probe(every(cfg.raw_every), name="raw", **lanczos)]
        history = fit(model, losses.half_sum_mse, data.x, y, optimizer_factory(name, cfg),
                      steps=cfg.momentum_steps if name == "momentum" else cfg.steps,
                      dtype=cfg.dtype, device=device, probes=probes,
                      checkpoint=name, progress=LABELS[name])
        result.update(history.as_result(f"{name}."))
        if name == "momentum":
            result[f"{name}.raw.step"] = result[f"{name}.tracked.step"]
            result[f"{name}.raw.value"] = result[f"{name}.tracked.value"]
    return result


def summaries(result: dict, cfg: Config) -> dict[str, dict[str, float]]:
    out = {}
    for name in OPTIMIZERS:
        steps = result[f"{name}.tracked.step"]
        summary = eos_summary(steps, result[f"{name}.tracked.value"], threshold(name, cfg), BAND)
        raw_steps, raw = result[f"{name}.raw.step"], result[f"{name}.raw.value"]
        crossing = summary["crossing_step"]
        if math.isfinite(crossing):  # the last λ_max(H) probe at or before the crossing
            summary["raw_at_crossing"] = float(raw[raw_steps <= crossing][-1])
        else:
            summary["raw_at_crossing"] = math.nan
        summary["raw_at_end"] = float(raw[-1])
        out[name] = summary
    return out


def plot(result: dict, cfg: Config):
    from experiments import plotting

    fig, axes = plotting.subplots(1, 3, width=4.0, height=3.3)
    colors = dict(zip(OPTIMIZERS, plotting.palette(len(OPTIMIZERS)), strict=True))
    for ax, name in zip(axes[0], OPTIMIZERS, strict=True):
        steps = result[f"{name}.tracked.step"]
        limit = threshold(name, cfg)
        ax.plot(steps, result[f"{name}.tracked.value"] / limit, color=colors[name],
                label="preconditioned λ_max(P⁻¹H)" if name != "momentum" else "λ_max(H)")
        if name != "momentum":
            raw = result[f"{name}.raw.value"]
            ax.plot(result[f"{name}.raw.step"], raw / raw[0], color="gray", lw=1,
                    label="raw λ_max(H) / its start")
        ax.set_yscale("log")
        ax.axhspan(1 - BAND, 1 + BAND, color="k", alpha=0.18, lw=0,
                   label=f"±{BAND:.0%} (the claim's band)")
        ax.axhline(1.0, color="k", ls="--", lw=1, label=f"threshold {limit:.4g}")
        loss_ax = ax.twinx()
        loss_ax.plot(result[f"{name}.step"], result[f"{name}.train_loss"], color=colors[name],
                     lw=0.6, alpha=0.35)
        loss_ax.set(yscale="log", ylabel="train loss (faint)")
        loss_ax.grid(False)
        lr = lr_of(name, cfg)
        formula = {"adam": f"(2+2β1)/((1−β1)η), β1 = {cfg.adam_beta1:g}",
                   "rmsprop": "2/η", "momentum": f"(2+2β)/η, β = {cfg.momentum:g}"}[name]
        ax.set(xlabel="step", ylabel="sharpness / threshold (log)",
               title=f"{LABELS[name]} η = {lr:g}: threshold {formula}", ylim=(0.1, 10.0))
        ax.legend(loc="upper left")
    return fig


def claims(result: dict, cfg: Config) -> list[Claim]:
    out = []
    for name, s in summaries(result, cfg).items():
        tag = f"{LABELS[name]} (threshold {threshold(name, cfg):.4g})"
        what = "λ_max(P⁻¹H)" if name != "momentum" else "λ_max(H)"
        crossed = math.isfinite(s["crossing_step"])
        out.append(is_true(
            f"{tag}: {what} rises to the threshold", crossed and
            s["rise_spearman"] >= RISE_SPEARMAN,
            f"reaches it; rank corr(step, value) ≥ {RISE_SPEARMAN} before",
            (f"crosses at step {s['crossing_step']:.0f}; rank corr "
             f"{s['rise_spearman']:.3f}") if crossed else "never reaches it", SOURCE))
        out.append(in_range(f"{tag}: time-averaged {what}/threshold after the crossing",
                            s["mean_ratio"], *MEAN_RATIO, SOURCE, what="mean ratio"))
        within = s["within_band"]
        out.append(is_true(
            f"{tag}: samples within ±{BAND:.0%} of the threshold after the crossing",
            crossed and within >= BAND_SHARE, f"≥ {BAND_SHARE:.0%}",
            (f"{within:.1%} of {s['samples_after']:.0f} (ratio in [{s['min_ratio']:.3f}, "
             f"{s['max_ratio']:.3f}])") if crossed else "n/a", SOURCE))
        if name != "momentum":
            grew = s["raw_at_end"] / s["raw_at_crossing"]
            out.append(is_true(
                f"{tag}: raw λ_max(H) keeps rising after the crossing",
                bool(crossed and grew > 1.0),
                "λ_max(H) at the end > at the crossing (last probe ≤ it)",
                f"×{grew:.3g} ({s['raw_at_crossing']:.4g} → {s['raw_at_end']:.4g})"
                if crossed else "n/a", SOURCE))
    return out
