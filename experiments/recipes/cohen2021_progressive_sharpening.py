"""Progressive sharpening and the edge of stability of full-batch GD (Cohen et al. 2021, Fig. 1).

fc-tanh (two hidden layers of 200, PyTorch default init) trained by full-batch
``torch.optim.SGD`` (no momentum) on Cohen's MSE (½·Σ over outputs, mean over examples,
0/1 one-hot targets) at several step sizes η. The sharpness S = λ_max(H) of the full
training objective is measured on a fixed cadence by Lanczos, warm-started from the
previous eigenvector (``experiments.probes.tracking``). On a quadratic GD is stable iff
ηS < 2 (``toy_models.stability``); on the network S rises while below 2/η, crosses it,
and then hovers at 2/η while the loss keeps falling non-monotonically.

The cadence is an odd number of steps so the samples alternate between the two phases
of GD's period-two oscillation at the edge (an even cadence can alias it). The run
length is set in gradient-flow time η·steps, the same for every η, so that each step
size gets comparable progress.

``--set arch=cnn-relu`` (or ``cnn-tanh``) trains Cohen's small CNN instead and
``--set loss=cross_entropy`` uses the cross-entropy loss; both are meant for the paper
preset (CIFAR-10 first 5,000 from ``data_dir``), and the page records what they give on
MNIST-1D at quick scale.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from experiments import datasets, losses
from experiments.claims import Claim, in_range, is_true
from experiments.config import ConfigError, param
from experiments.probes.tracking import eos_summary, loss_after_crossing, sharpness_probe
from experiments.train import every, fit
from toy_models import stability
from toy_models.networks import cnn, mlp, seeded

PAPER = ("Cohen, Kaur, Li, Kolter, Talwalkar 2021, Gradient Descent on Neural Networks "
         "Typically Occurs at the Edge of Stability (ICLR)")
DESCRIPTION = ("full-batch GD on fc-tanh with MSE: the sharpness rises to 2/η "
               "(progressive sharpening) and then hovers there (edge of stability)")

SOURCE = "Cohen 2021 Fig. 1 and §3; tolerances fixed before the first run"
MEAN_RATIO = (0.97, 1.10)  # time-averaged S/(2/η) after the first crossing
BAND, BAND_SHARE = 0.10, 0.90  # ≥ 90% of post-crossing samples within ±10% of 2/η
RISE_SPEARMAN = 0.9  # rank correlation of S with the step before the crossing


ARCHS = ("fc-tanh", "cnn-relu", "cnn-tanh")


@dataclass(frozen=True)
class Config:
    seed: int = param(0, lo=0, hi=2**31 - 1, help="initialisation seed (the same init for every η)")
    dataset: str = param("mnist1d", choices=("mnist1d", "cifar10"),
                         help="cifar10 needs data_dir (refused without it); mnist1d: "
                              "MNIST-1D, at most its 4000 training examples")
    data_dir: str = param("", help="folder holding cifar-10-batches-py (dataset=cifar10)")
    n_train: int = param(1000, lo=50, hi=50000, help="first N training examples")
    arch: str = param("fc-tanh", choices=ARCHS,
                      help="fc-tanh: two hidden layers of `width`; cnn-relu/cnn-tanh: Cohen's "
                           "small CNN, [conv 3×3 → act → max-pool 2] × 2 with 32 channels, "
                           "then linear (1-D convolutions on MNIST-1D)")
    width: int = param(200, lo=4, hi=4096, help="width of both hidden layers (fc-tanh)")
    loss: str = param("half_sum_mse", choices=("half_sum_mse", "cross_entropy"))
    lrs: tuple[float, ...] = param((0.1, 2 / 15), lo=1e-5, hi=10.0,
                                   help="GD step sizes η")
    flow_time: float = param(250.0, lo=1.0, hi=1e6,
                             help="run length η·steps (the same for every η)")
    accuracy_goal: float | None = param(None, lo=0.1, hi=1.0,
                                        help="stop a run at this train accuracy (paper: 0.99)")
    # 25 (odd, see the module docstring): 100 probes over the 2,500 steps at η = 0.1. At the
    # edge a warm-started probe takes ~13 products (≈ 13 gradients); at 21 steps the probes
    # cost 0.89× the training on 2 idle cores, at 25 about 0.75× (``experiments bench``).
    # Cohen et al.'s own runs sampled every 50-100 steps.
    sharpness_every: int = param(25, lo=1, hi=10**5, help="steps between sharpness probes")
    lanczos_ncv: int = param(8, lo=3, hi=100, help="Lanczos vectors per ARPACK restart "
                             "(only when the residual-stopped Lanczos falls back to ARPACK)")
    # 1e-3: ARPACK's tolerance bounds the residual, the eigenvalue error goes with its
    # square; on this workload no probed value moved by 1e-5 relative against 1e-5, with
    # ~40% fewer products (measured for cohen2022-adaptive-eos); quick: 88 s instead of ~120
    lanczos_tol: float = param(1e-3, lo=1e-12, hi=1e-2, help="ARPACK relative tolerance")
    dtype: str = param("float32", choices=("float32", "float64"))


PRESETS = {
    "quick": Config(),
    # Cohen's Fig. 1: cifar10-5k, fc-tanh, η = 2/30 ... 2/90, stopped at 99% accuracy.
    "paper": Config(dataset="cifar10", n_train=5000, lrs=(2 / 30, 2 / 50, 2 / 70, 2 / 90),
                    flow_time=2000.0, accuracy_goal=0.99, sharpness_every=5),
}


# ---------------------------------------------------------------- data and model

def check_inputs(cfg: Config) -> None:
    """ConfigError (exit 2, before any compute) when dataset=cifar10 and ``data_dir`` does
    not hold CIFAR-10; ``--set dataset=mnist1d`` runs the substitute as a recorded choice."""
    if cfg.dataset == "cifar10":
        try:
            datasets.cifar10_folder(cfg.data_dir)
        except ConfigError as err:
            raise ConfigError(f"{err}; or --set dataset=mnist1d for the MNIST-1D "
                              "substitute") from None


def load_data(cfg: Config) -> tuple[str, torch.Tensor, torch.Tensor]:
    """(name, inputs, targets): one-hot 0/1 targets for MSE, labels for cross-entropy."""
    check_inputs(cfg)
    if cfg.dataset == "cifar10":
        name, data = f"CIFAR-10 first {cfg.n_train}", datasets.cifar10(cfg.data_dir, cfg.n_train)
    else:
        data = datasets.mnist1d(cfg.n_train)
        name = f"MNIST-1D first {len(data.y)}"
    y = data.y if cfg.loss == "cross_entropy" else losses.one_hot(data.y, 10, torch.float64)
    return name, data.x, y


def steps_for(lr: float, cfg: Config) -> int:
    return int(round(cfg.flow_time / lr))


def threshold(lr: float) -> float:
    """2/η: where GD on a quadratic with curvature S turns unstable (a* = 2)."""
    return stability.critical_step("gd") / lr


def build_model(cfg: Config, n_inputs: int) -> torch.nn.Module:
    """fc-tanh, or the small CNN on inputs reshaped to CIFAR-10's (3, 32, 32) or, for a
    1-D signal such as MNIST-1D, (1, length)."""
    if cfg.arch == "fc-tanh":
        return seeded(cfg.seed, mlp, [n_inputs, cfg.width, cfg.width, 10], "tanh")
    shape = (3, 32, 32) if n_inputs == 3 * 32 * 32 else (1, n_inputs)
    return seeded(cfg.seed, cnn, shape, 10, (32, 32), cfg.arch.removeprefix("cnn-"))


def train(cfg: Config, x: torch.Tensor, y: torch.Tensor, lr: float, device: str) -> dict:
    model = build_model(cfg, x.shape[1])
    probe = sharpness_probe(every(cfg.sharpness_every), tol=cfg.lanczos_tol,
                            ncv=cfg.lanczos_ncv)
    started = time.perf_counter()
    history = fit(model, losses.LOSSES[cfg.loss], x, y,
                  lambda params: torch.optim.SGD(params, lr=lr), steps=steps_for(lr, cfg),
                  dtype=cfg.dtype, device=device, probes=[probe],
                  accuracy_goal=cfg.accuracy_goal, checkpoint=f"gd-lr={lr:.6g}",
                  progress=f"GD η={lr:.4g}")
    seconds = time.perf_counter() - started
    out = history.as_result(f"lr={lr:.6g}.")
    probe_seconds = float(np.sum(history["sharpness.seconds"]))
    out[f"lr={lr:.6g}.probe_seconds"] = probe_seconds
    out[f"lr={lr:.6g}.train_seconds"] = seconds - probe_seconds
    return out


def run(cfg: Config, device: str) -> dict:
    name, x, y = load_data(cfg)
    result: dict = {"dataset": name}
    for lr in cfg.lrs:
        result.update(train(cfg, x, y, lr, device))
    probe_s = sum(result[f"lr={lr:.6g}.probe_seconds"] for lr in cfg.lrs)
    train_s = sum(result[f"lr={lr:.6g}.train_seconds"] for lr in cfg.lrs)
    result["tracking_overhead"] = probe_s / train_s
    return result


# ---------------------------------------------------------------- figure and claims

def summaries(result: dict, cfg: Config) -> dict[float, dict[str, float]]:
    """Per η: the EoS statistics of the sharpness trace and the loss after the crossing."""
    out = {}
    for lr in cfg.lrs:
        key = f"lr={lr:.6g}."
        summary = eos_summary(result[key + "sharpness.step"], result[key + "sharpness.value"],
                              threshold(lr), band=BAND)
        loss = loss_after_crossing(result[key + "step"], result[key + "train_loss"],
                                   summary["crossing_step"])
        out[lr] = {**summary, **{f"loss_{k}": v for k, v in loss.items()}}
    return out


def plot(result: dict, cfg: Config):
    from experiments import plotting

    fig, axes = plotting.subplots(1, 2, width=4.6, height=3.4)
    loss_ax, sharp_ax = axes[0]
    for lr, color in zip(cfg.lrs, plotting.palette(len(cfg.lrs)), strict=True):
        key = f"lr={lr:.6g}."
        loss_ax.plot(result[key + "step"], result[key + "train_loss"], color=color, lw=1,
                     label=f"η = {lr:.4g}")
        sharp_ax.plot(result[key + "sharpness.step"], result[key + "sharpness.value"],
                      color=color, lw=1)
        sharp_ax.axhline(threshold(lr), color=color, ls="--", lw=1)
    loss_ax.set(xlabel="GD step", ylabel="train loss", yscale="log",
                title=f"Full-batch GD, {cfg.arch}, {result['dataset']}")
    loss_ax.legend()
    sharp_ax.set(xlabel="GD step", ylabel="sharpness λ_max(H)  (Lanczos)",
                 title="Sharpness; dashed: 2/η")
    top = max(threshold(lr) for lr in cfg.lrs)
    sharp_ax.set_ylim(0, 1.3 * top)
    return fig


def claims(result: dict, cfg: Config) -> list[Claim]:
    out = []
    for lr, s in summaries(result, cfg).items():
        tag = f"η = {lr:.4g} (2/η = {threshold(lr):.4g})"
        crossed = math.isfinite(s["crossing_step"])
        rising = crossed and s["rise_spearman"] >= RISE_SPEARMAN and s["rise"] > 1
        out.append(is_true(
            f"{tag}: sharpness rises while below 2/η", rising,
            f"reaches 2/η; rank corr(step, S) ≥ {RISE_SPEARMAN} before",
            (f"crosses at step {s['crossing_step']:.0f}; S×{s['rise']:.3g} from step 0; "
             f"rank corr {s['rise_spearman']:.3f}") if crossed else "never reaches 2/η",
            SOURCE))
        out.append(in_range(f"{tag}: time-averaged S/(2/η) after the crossing",
                            s["mean_ratio"], *MEAN_RATIO, SOURCE, what="mean S/(2/η)"))
        within = s["within_band"]
        out.append(is_true(
            f"{tag}: samples within ±{BAND:.0%} of 2/η after the crossing",
            crossed and within >= BAND_SHARE, f"≥ {BAND_SHARE:.0%}",
            (f"{within:.1%} of {s['samples_after']:.0f} (S/(2/η) in "
             f"[{s['min_ratio']:.3f}, {s['max_ratio']:.3f}])") if crossed else "n/a",
            SOURCE))
        nonmonotone = crossed and s["loss_increases"] > 0 and \
            s["loss_at_end"] < s["loss_at_crossing"]
        out.append(is_true(
            f"{tag}: loss non-monotone after the crossing, lower at the end",
            nonmonotone, "≥ 1 step-to-step increase; L(end) < L(crossing)",
            (f"{s['loss_increases']:.0f} increases; L {s['loss_at_crossing']:.4g} → "
             f"{s['loss_at_end']:.4g}") if crossed else "n/a", SOURCE))
    return out
