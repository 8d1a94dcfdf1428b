"""What SGD's stability selects: smaller ℓ1 / path norm and lower test error than GD.

For a diagonal linear network f = ⟨u⊙v, x⟩ the Gauss–Newton trace is
Σ_j (u_j² + v_j²)·mean x_j² ≥ 2·Σ_j |β_j|·mean x_j², and for a bias-free two-layer ReLU
net it controls the path norm Σ_j ‖w_j‖·|a_j| (Wu & Su 2023; Wen, Li, Ma 2023). SGD at
B = 1 can only stay at minima with tr H ≤ 2/η, GD only at λ_max ≤ 2/η, so at the same
step size SGD should end at a smaller norm, more so as η grows, and generalise better.

Both models start from a large initialisation (the diagonal net at u = v = α·1; the
ReLU net at PyTorch's default scaled by ``relu_init_scale``), where GD alone stays
close to its starting point in parameter norm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from experiments import losses
from experiments.claims import Claim, is_true
from experiments.config import param
from experiments.train import evaluate, fit
from toy_models import sgd_stability as theory
from toy_models.networks import mlp, seeded

PAPER = ("Wu & Su 2023, The Implicit Regularization of Dynamical Stability in Stochastic "
         "Gradient Descent (ICML); Wen, Li, Ma 2023")
DESCRIPTION = ("SGD (B = 1) vs GD at the same η: ℓ1 norm of a diagonal linear net on sparse "
               "regression and path norm of a bias-free ReLU net on XOR-hypercube data")


@dataclass(frozen=True)
class Config:
    seed: int = param(0, lo=0, hi=2**31 - 1,
                      help="the first seed: the run uses seeds seed … seed + seeds − 1")
    seeds: int = param(3, lo=1, hi=100, help="independent problems and initialisations")
    lrs: tuple[float, ...] = param((0.005, 0.01, 0.02), lo=1e-5, hi=10.0)
    steps: int = param(5000, lo=100, hi=10**7)
    # diagonal linear network on sparse regression
    diag_n: int = param(30, lo=5, hi=10**5)
    diag_dim: int = param(60, lo=2, hi=10**5)
    diag_sparsity: int = param(3, lo=1, hi=10**5)
    diag_alpha: float = param(1.0, lo=1e-4, hi=10.0, help="initialisation u = v = α")
    # bias-free two-layer ReLU net on the XOR hypercube
    relu_n: int = param(100, lo=5, hi=10**5)
    relu_dim: int = param(30, lo=2, hi=10**4)
    relu_width: int = param(64, lo=2, hi=10**4)
    relu_init_scale: float = param(2.0, lo=0.01, hi=100.0)
    relu_lrs: tuple[float, ...] = param((0.005, 0.01, 0.02), lo=1e-5, hi=10.0)
    n_test: int = param(2000, lo=10, hi=10**6)


PRESETS = {
    "quick": Config(),
    "paper": Config(seeds=10, steps=50000, lrs=(0.0025, 0.005, 0.01, 0.02),
                    relu_lrs=(0.0025, 0.005, 0.01, 0.02)),
}

METHODS = {"GD": None, "SGD (B = 1)": 1}


def train(model, x, y, lr: float, batch_size: int | None, seed: int, cfg: Config, device: str,
          name: str):
    return fit(model, losses.half_sum_mse, x, y, lambda p: torch.optim.SGD(p, lr=lr),
               steps=cfg.steps, batch_size=batch_size, sampling="subset", seed=seed,
               eval_every=max(1, cfg.steps // 20), loss_goal=1e-12, device=device,
               checkpoint=name, progress=False)


def diagonal_runs(cfg: Config, device: str, bar) -> dict:
    out: dict = {}
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        x, y, beta_star = theory.sparse_regression(cfg.diag_n, cfg.diag_dim, cfg.diag_sparsity,
                                                   seed)
        for method, batch in METHODS.items():
            for lr in cfg.lrs:
                model = theory.DiagonalLinear(cfg.diag_dim, cfg.diag_alpha)
                history = train(model, x, y, lr, batch, seed, cfg, device,
                                f"diag-{method}-{lr}-{seed}")
                beta = model.beta.detach().cpu()
                ok = not history.diverged
                u, v = model.u.detach().cpu().numpy(), model.v.detach().cpu().numpy()
                # isotropic test inputs: expected squared error = ‖β − β*‖²
                values = {
                    "l1": float(beta.abs().sum()) if ok else np.nan,
                    "test": float(((beta - beta_star) ** 2).sum()) if ok else np.nan,
                    "trace": theory.diagonal_trace(u, v, x.numpy()) if ok else np.nan,
                    "train_loss": float(history["train_loss"][-1]),
                }
                for key, value in values.items():
                    out.setdefault(f"diag.{method}.{key}", []).append(value)
                bar.update(1)
    return {k: np.array(v).reshape(cfg.seeds, len(cfg.lrs)) for k, v in out.items()}


def relu_runs(cfg: Config, device: str, bar) -> dict:
    out: dict = {}
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        x, y = theory.xor_hypercube(cfg.relu_n, cfg.relu_dim, seed)
        x_test, y_test = theory.xor_hypercube(cfg.n_test, cfg.relu_dim, 10_000 + seed)
        for method, batch in METHODS.items():
            for lr in cfg.relu_lrs:
                model = seeded(seed, mlp, [cfg.relu_dim, cfg.relu_width, 1], "relu",
                               bias=False, dtype=torch.float64)
                with torch.no_grad():
                    for p in model.parameters():
                        p.mul_(cfg.relu_init_scale)
                history = train(model, x, y, lr, batch, seed, cfg, device,
                                f"relu-{method}-{lr}-{seed}")
                ok = not history.diverged
                w = model[0].weight.detach().cpu().numpy()
                a = model[2].weight.detach().cpu().numpy()[0]
                test_loss, _ = evaluate(model.cpu(), losses.half_sum_mse, x_test, y_test)
                values = {
                    "path_norm": theory.path_norm(w, a) if ok else np.nan,
                    "test": 2 * test_loss if ok else np.nan,  # mean squared error
                    "trace": theory.relu_trace(w, a, x.numpy()) if ok else np.nan,
                    "train_loss": float(history["train_loss"][-1]),
                }
                for key, value in values.items():
                    out.setdefault(f"relu.{method}.{key}", []).append(value)
                bar.update(1)
    return {k: np.array(v).reshape(cfg.seeds, len(cfg.relu_lrs)) for k, v in out.items()}


def run(cfg: Config, device: str) -> dict:
    total = cfg.seeds * len(METHODS) * (len(cfg.lrs) + len(cfg.relu_lrs))
    with tqdm(total=total, desc="norm selection", disable=None) as bar:
        result = diagonal_runs(cfg, device, bar)
        result.update(relu_runs(cfg, device, bar))
    result["lrs"], result["relu_lrs"] = np.array(cfg.lrs), np.array(cfg.relu_lrs)
    return result


def plot(result: dict, cfg: Config):
    from experiments import plotting

    fig, axes = plotting.subplots(1, 4, width=3.4, height=3.1)
    colors = dict(zip(METHODS, plotting.palette(2), strict=True))
    panels = [("diag", "l1", "lrs", "‖u ⊙ v‖₁", "Diagonal net: ℓ1 norm"),
              ("diag", "test", "lrs", "‖β − β*‖² (test error)", "Diagonal net: test error"),
              ("relu", "path_norm", "relu_lrs", "Σ‖w_j‖·|a_j|", "ReLU net: path norm"),
              ("relu", "test", "relu_lrs", "test MSE", "ReLU net: test error")]
    for ax, (model, key, lr_key, ylabel, title) in zip(axes[0], panels, strict=True):
        lrs = result[lr_key]
        for method in METHODS:
            values = result[f"{model}.{method}.{key}"]
            mean = np.nanmean(values, axis=0)
            ax.plot(lrs, mean, "o-", color=colors[method], label=method)
            ax.fill_between(lrs, np.nanmin(values, axis=0), np.nanmax(values, axis=0),
                            color=colors[method], alpha=0.2)
        ax.set(xscale="log", xlabel="learning rate η", ylabel=ylabel, title=title)
    if cfg.diag_sparsity:
        axes[0, 0].axhline(cfg.diag_sparsity, color="k", ls=":", lw=1, label="‖β*‖₁")
    axes[0, 0].legend(fontsize=7, title=f"mean, min–max over {cfg.seeds} seeds",
                      title_fontsize=7)
    return fig


def _compare(result: dict, model: str, key: str, lr_key: str, what: str) -> Claim:
    """SGD below GD for every seed at the largest η where every run of both converged
    (the theory's regularisation grows with η; at small η SGD and GD nearly coincide)."""
    sgd, gd = result[f"{model}.SGD (B = 1).{key}"], result[f"{model}.GD.{key}"]
    usable = np.flatnonzero(np.all(np.isfinite(sgd) & np.isfinite(gd), axis=0))
    ratio = np.nanmean(sgd / gd, axis=0)
    if len(usable) == 0:
        return is_true(f"{model}: SGD {what} below GD's", False, "a converged η", "none",
                       "Wu & Su 2023")
    col = usable[-1]
    lr = float(result[lr_key][col])
    wins = bool(np.all(sgd[:, col] < gd[:, col]))
    return is_true(f"{model}: SGD {what} below GD's at η = {lr:g}, every seed", wins,
                   "SGD < GD for every seed",
                   "SGD/GD per seed: " + ", ".join(f"{r:.2f}" for r in sgd[:, col] / gd[:, col])
                   + "; seed-mean per η: " + ", ".join(
                       f"{lr_:g}: {r:.2f}" for lr_, r in zip(result[lr_key], ratio, strict=True)),
                   "Wu & Su 2023: SGD's stability regularises more than GD's")


def _decreasing(result: dict, model: str, key: str, lr_key: str, what: str) -> Claim:
    mean = np.nanmean(result[f"{model}.SGD (B = 1).{key}"], axis=0)
    finite = mean[np.isfinite(mean)]
    return is_true(f"{model}: SGD {what} decreases as η grows (seed mean)",
                   bool(len(finite) >= 2 and np.all(np.diff(finite) < 0)), "decreasing",
                   ", ".join(f"{lr:g}: {m:.3g}" for lr, m in zip(result[lr_key], mean,
                                                                 strict=True)),
                   "Wu & Su 2023: larger η regularises more")


def claims(result: dict, cfg: Config) -> list[Claim]:
    return [
        _compare(result, "diag", "l1", "lrs", "ℓ1 norm"),
        _compare(result, "diag", "test", "lrs", "test error"),
        _decreasing(result, "diag", "l1", "lrs", "ℓ1 norm"),
        _compare(result, "relu", "path_norm", "relu_lrs", "path norm"),
        _compare(result, "relu", "test", "relu_lrs", "test error"),
        _decreasing(result, "relu", "path_norm", "relu_lrs", "path norm"),
    ]
