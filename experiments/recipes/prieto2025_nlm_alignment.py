"""After 100% train accuracy the gradient aligns with the weights (Prieto et al. 2025, Fig. 5).

Naïve loss minimisation (NLM, paper Def. 5): once every training point is classified
correctly, a positively homogeneous net lowers its cross-entropy fastest by scaling its
logits, i.e. by growing θ along itself. The descent direction −∇L then points along the
weights: cos(W, −∇_W L) per parameter tensor rises sharply after the fit, towards ≈ 0.9
in the output layer. Panels (a) the MLP without bias (homogeneous: the direction is θ
itself) and (b) with bias (only the last, homogeneous layer is an NLM direction); paper
scale adds (c) the one-layer transformer. AdamW, softmax cross-entropy, addition mod 113,
40% split, full batch, no weight decay.

Theory against the optimizer: for the bias-free MLP of depth L, Euler's theorem gives
θᵀ∇_θ f = L·f for every logit, so on a fitted training set −θᵀ∇L equals L times the
logit-margin gain; the alignment is the measured counterpart of that identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from experiments.claims import Claim, fmt, is_true
from experiments.config import param
from experiments.recipes import _prieto2025 as pr
from toy_models import grokking as g

PAPER = pr.PAPER
DESCRIPTION = ("Per-layer cos(W, −∇L) rises after 100% train accuracy, towards ≈ 0.9 in the "
               "output layer (naïve loss minimisation)")
SOURCE = "Prieto et al. 2025 Fig. 5 and §5 (NLM)"
OUTPUT_GOAL = 0.8     # the paper's ≈ 0.9 in output layers, read off a figure: 0.1 slack


@dataclass(frozen=True)
class Config:
    p: int = param(113, lo=5, hi=1000, help="modulus")
    train_fraction: float = param(0.4, lo=0.05, hi=0.95)
    seed: int = param(42, lo=0, hi=2**31 - 1)
    width: int = param(200, lo=4, hi=10**4)
    epochs: int = param(1000, lo=10, hi=10**6)
    lr: float = param(0.005, lo=1e-6, hi=10.0, help="AdamW")
    beta2: float = param(0.99, lo=0.0, hi=0.999999)
    eps: float = param(1e-25, lo=0.0, hi=1.0)
    loss_dtype: str = param("float32", choices=("float32", "float64"),
                            help="softmax precision")
    transformer_epochs: int = param(0, lo=0, hi=10**6, help="panel (c) (0: skip)")
    transformer_lr: float = param(1e-3, lo=1e-6, hi=1.0)
    probe_every: int = param(10, lo=1, hi=10**5)


PRESETS = {
    # quick: 500 epochs; the output-layer cosine is ≈ 0.91 by then (0.92 at 1,000)
    "quick": Config(epochs=500),
    "paper": Config(epochs=5000, transformer_epochs=5000),
}

VARIANTS = {"no_bias": "MLP, no bias", "bias": "MLP with bias", "transformer": "Transformer"}


def run(cfg: Config, device: str) -> dict:
    dtype = getattr(torch, cfg.loss_dtype)
    make_optimizer = pr.optimizer("adamw", cfg.lr, (0.9, cfg.beta2), cfg.eps)
    data = g.modular_arithmetic(cfg.p, "add", cfg.train_fraction, cfg.seed)
    result = {}
    for variant, bias in (("no_bias", False), ("bias", True)):
        model = g.grokking_mlp(2 * cfg.p, cfg.p, cfg.width, bias=bias, seed=cfg.seed)
        arrays = pr.grokking_run(model, data, "softmax", dtype, make_optimizer, cfg.epochs,
                                 cfg.probe_every, device, alignment=True,
                                 checkpoint=f"mlp-{variant}")
        result.update({f"{variant}.{k}": v for k, v in arrays.items()})
    if cfg.transformer_epochs:
        tokens = g.modular_arithmetic(cfg.p, "add", cfg.train_fraction, cfg.seed,
                                      encoding="tokens", exclude_zero=True)
        model = g.transformer(cfg.p, seed=cfg.seed)
        arrays = pr.grokking_run(model, tokens, "softmax", dtype,
                                 pr.optimizer("adamw", cfg.transformer_lr, (0.9, cfg.beta2),
                                              cfg.eps),
                                 cfg.transformer_epochs, cfg.probe_every, device,
                                 alignment=True, checkpoint="transformer")
        result.update({f"transformer.{k}": v for k, v in arrays.items()})
    return result


def layers(result: dict, variant: str) -> list[str]:
    """The weight tensors probed for ``variant``, input side first (biases left out)."""
    prefix = f"{variant}.cos."
    names = [k[len(prefix):] for k in result if k.startswith(prefix)]
    return [n for n in names if not n.endswith("bias")]


def output_layer(result: dict, variant: str) -> str:
    names = layers(result, variant)
    return "unembed.weight" if "unembed.weight" in names else names[-1]


def fit_epoch(result: dict, variant: str) -> float:
    return pr.first_step(result[f"{variant}.step"], result[f"{variant}.train_acc"], 1.0)


def plot(result: dict, cfg: Config):
    from experiments import plotting

    variants = [v for v in VARIANTS if f"{v}.step" in result]
    fig, axes = plotting.subplots(1, len(variants), width=3.9, height=3.2)
    for ax, variant in zip(axes[0], variants, strict=True):
        steps = result[f"{variant}.step"]
        names = layers(result, variant)
        for name, color in zip(names, plotting.palette(len(names)), strict=True):
            ax.plot(steps, result[f"{variant}.cos.{name}"], color=color, label=name)
        ax.plot(steps, result[f"{variant}.train_acc"], color="k", ls="--", lw=1,
                label="train accuracy")
        ax.plot(steps, result[f"{variant}.test_acc"], color="gray", ls=":", lw=1,
                label="test accuracy")
        fitted = fit_epoch(result, variant)
        if np.isfinite(fitted):
            ax.axvline(fitted, color="k", lw=0.6)
        ax.set(xlabel="epoch", ylabel="cos(W, −∇L)", ylim=(-0.3, 1.02),
               title=f"({'abc'[variants.index(variant)]}) {VARIANTS[variant]}")
        ax.legend(loc="lower right", fontsize=6)
    return fig


def claims(result: dict, cfg: Config) -> list[Claim]:
    out = []
    for variant in (v for v in VARIANTS if f"{v}.step" in result):
        steps = result[f"{variant}.step"]
        fitted = fit_epoch(result, variant)
        name = output_layer(result, variant)
        cos = result[f"{variant}.cos.{name}"]
        if not np.isfinite(fitted):
            out.append(is_true(f"{VARIANTS[variant]}: reaches 100% train", False, "yes",
                               "never", SOURCE))
            continue
        before = float(cos[steps <= fitted][-1])
        after = float(cos[-1])
        out.append(is_true(f"{VARIANTS[variant]}: output-layer cos(W, −∇L) rises after 100% "
                           f"train, to ≥ {OUTPUT_GOAL}",
                           after >= OUTPUT_GOAL and after > before,
                           f"end ≥ {OUTPUT_GOAL} (paper ≈ 0.9) and above its value at the fit",
                           f"{name}: {fmt(before, 3)} at the fit (epoch {fmt(fitted)}) → "
                           f"{fmt(after, 3)} at epoch {int(steps[-1])}", SOURCE))
    return out
