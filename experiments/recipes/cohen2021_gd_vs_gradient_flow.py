"""GD tracks gradient flow until the sharpness reaches 2/η, then leaves it (Cohen et al. 2021).

From one initialisation of fc-tanh on MNIST-1D (Cohen's MSE), full-batch GD at step η
and gradient flow dw/dt = −∇L (RK4, step ≤ α/S with S the current sharpness,
``experiments.flows``) are compared at equal times t = η·steps. While S < 2/η, GD is a
stable discretisation of the flow and the two stay together (their distance is O(η));
once GD's sharpness reaches 2/η it starts oscillating along the top eigenvector and
departs, while the flow's sharpness keeps rising past 2/η.

Quick setting: η = 2/15, the larger of ``cohen2021-progressive-sharpening``'s two step
sizes, to t = 110. The flow is the same ODE whatever η is; only where GD meets 2/η moves.
Its cost is the number of RK4 steps, ∫S dt over [0, t_end] with S the flow's sharpness
(1,801 to t = 110, 3,199 to t = 160), four gradients each. Measured from one flow to
t = 160 against GD at four step sizes: η = 0.1 crosses at t = 65 and its distance
wanders (0.146, 0.123, 0.116 at t = 80, 90, 100) before it passes 20× the crossing
distance after t ≈ 130 (share 4.5% at 130, 2.7% at 160); η = 2/15 crosses at t = 50 and
its distance grows steadily (share 4.2%, 3.7%, 3.3%, 1.9% at t = 90, 110, 120, 160).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from experiments import datasets, losses
from experiments.claims import Claim, is_true
from experiments.config import param
from experiments.flows import GradientFlow
from experiments.probes.curvature import flatten, functional_params
from experiments.probes.tracking import first_crossing, sharpness_probe
from experiments.train import DTYPES, Probe, every, fit
from toy_models import stability
from toy_models.networks import mlp, seeded

PAPER = ("Cohen, Kaur, Li, Kolter, Talwalkar 2021, Gradient Descent on Neural Networks "
         "Typically Occurs at the Edge of Stability (ICLR)")
DESCRIPTION = ("GD and gradient flow (RK4) from one init: together until GD's sharpness "
               "reaches 2/η, apart afterwards")

SOURCE = "Cohen 2021 §3 / official code README (GD vs flow); tolerance fixed before the first run"
DISTANCE_SHARE = 0.05  # distance at the first crossing < 5% of the distance at the end


@dataclass(frozen=True)
class Config:
    seed: int = param(0, lo=0, hi=2**31 - 1)
    n_train: int = param(1000, lo=50, hi=4000, help="first N MNIST-1D training examples")
    width: int = param(200, lo=4, hi=4096)
    lr: float = param(2 / 15, lo=1e-4, hi=10.0, help="GD step size η")
    flow_time: float = param(110.0, lo=1.0, hi=1e5, help="end time η·steps")
    compare_every: int = param(25, lo=1, hi=10**5, help="GD steps between comparisons")
    sharpness_every: int = param(21, lo=1, hi=10**5, help="GD steps between GD sharpness")
    rk4_alpha: float = param(1.0, lo=0.01, hi=2.0, help="RK4 step = α / sharpness")
    rk4_sharpness_every: int = param(20, lo=1, hi=1000, help="RK4 steps between sharpness")
    lanczos_tol: float = param(1e-3, lo=1e-12, hi=1e-2,
                               help="ARPACK tolerance of every sharpness (GD and flow): the "
                                    "eigenvalue error goes with its square")
    dtype: str = param("float32", choices=("float32", "float64"))


PRESETS = {
    "quick": Config(),
    "paper": Config(n_train=4000, lr=0.05, flow_time=400.0, compare_every=10,
                    sharpness_every=5, rk4_alpha=0.5, rk4_sharpness_every=2,
                    dtype="float64"),
}


def threshold(cfg: Config) -> float:
    return stability.critical_step("gd") / cfg.lr


def run(cfg: Config, device: str) -> dict:
    data = datasets.mnist1d(cfg.n_train)
    torch_dtype = DTYPES[cfg.dtype]
    x = data.x.to(device=device, dtype=torch_dtype)
    y = losses.one_hot(data.y, 10, torch_dtype).to(device)
    steps = int(round(cfg.flow_time / cfg.lr))
    compare_steps = sorted(set(range(0, steps + 1, cfg.compare_every)) | {steps})

    def fresh_model():
        model = seeded(cfg.seed, mlp, [x.shape[1], cfg.width, cfg.width, 10], "tanh",
                       dtype=torch_dtype)
        return model.to(device)

    # Gradient flow first: its parameters at each comparison time t = η·step.
    flow = GradientFlow(fresh_model(), losses.half_sum_mse, x, y, alpha=cfg.rk4_alpha,
                        sharpness_every=cfg.rk4_sharpness_every, lanczos_tol=cfg.lanczos_tol)
    snapshots, flow_sharpness, flow_loss = {}, [], []
    for step in compare_steps:
        flow.advance_to(step * cfg.lr)
        snapshots[step] = flow.w.clone()
        flow_sharpness.append(flow.refresh_sharpness())
        flow_loss.append(flow.loss())

    def distance(state) -> float:
        w = flatten(functional_params(state.model))
        return float(torch.linalg.vector_norm(w - snapshots[state.step]))

    history = fit(fresh_model(), losses.half_sum_mse, x, y,
                  lambda params: torch.optim.SGD(params, lr=cfg.lr), steps=steps,
                  probes=[Probe("distance", distance, every(cfg.compare_every)),
                          sharpness_probe(every(cfg.sharpness_every), tol=cfg.lanczos_tol)],
                  checkpoint="gd", progress="GD")
    result = history.as_result("gd.")
    result["flow.step"] = np.asarray(compare_steps)
    result["flow.sharpness"] = np.asarray(flow_sharpness)
    result["flow.loss"] = np.asarray(flow_loss)
    result["flow.rk4_steps"] = flow.rk4_steps
    return result


def crossing_time(result: dict, cfg: Config) -> float:
    """GD time η·step of the first sharpness sample at or above 2/η (NaN if none)."""
    index = first_crossing(result["gd.sharpness.value"], threshold(cfg))
    return math.nan if index is None else float(result["gd.sharpness.step"][index] * cfg.lr)


def distance_at(result: dict, cfg: Config, time: float) -> float:
    times = result["gd.distance.step"] * cfg.lr
    return float(np.interp(time, times, result["gd.distance.value"]))


def plot(result: dict, cfg: Config):
    from experiments import plotting

    fig, axes = plotting.subplots(1, 3, width=4.0, height=3.3)
    gd_color, flow_color = plotting.palette(2)
    t_cross = crossing_time(result, cfg)
    ax = axes[0, 0]
    ax.plot(result["gd.step"] * cfg.lr, result["gd.train_loss"], color=gd_color, lw=1,
            label=f"GD η = {cfg.lr:g}")
    ax.plot(result["flow.step"] * cfg.lr, result["flow.loss"], color=flow_color, ls="--",
            label="gradient flow (RK4)")
    ax.set(xlabel="time η·steps", ylabel="train loss", yscale="log", title="Loss")
    ax.legend()
    ax = axes[0, 1]
    ax.plot(result["gd.sharpness.step"] * cfg.lr, result["gd.sharpness.value"], color=gd_color,
            label="GD")
    ax.plot(result["flow.step"] * cfg.lr, result["flow.sharpness"], color=flow_color, ls="--",
            label="gradient flow")
    ax.axhline(threshold(cfg), color="k", ls=":", lw=1, label="2/η")
    ax.set(xlabel="time η·steps", ylabel="sharpness λ_max(H)", title="Sharpness")
    ax.legend()
    ax = axes[0, 2]
    ax.plot(result["gd.distance.step"] * cfg.lr, result["gd.distance.value"], color="k")
    if math.isfinite(t_cross):
        for a in axes[0]:
            a.axvline(t_cross, color="gray", ls="--", lw=0.8)
    ax.set(xlabel="time η·steps", ylabel="‖w_GD − w_flow‖",
           title="Distance (dashed: GD's first 2/η crossing)")
    return fig


def claims(result: dict, cfg: Config) -> list[Claim]:
    t_cross = crossing_time(result, cfg)
    end = float(result["gd.distance.value"][-1])
    at_cross = distance_at(result, cfg, t_cross) if math.isfinite(t_cross) else math.nan
    share = at_cross / end if math.isfinite(at_cross) else math.nan
    return [is_true(
        "distance GD–flow at the first 2/η crossing < 5% of the distance at the end",
        math.isfinite(share) and share < DISTANCE_SHARE, f"< {DISTANCE_SHARE:.0%}",
        (f"{share:.2%} ({at_cross:.3g} at t = {t_cross:.4g} vs {end:.3g} at "
         f"t = {cfg.flow_time:g})") if math.isfinite(share) else "GD never reaches 2/η",
        SOURCE)]
