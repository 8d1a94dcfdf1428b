"""Benign overfitting, then grokking: GD on XOR clusters with flipped labels (Xu et al. 2024).

A two-layer ReLU net with a fixed ±1/√m second layer, trained by full-batch GD on the
mean logistic loss from a tiny initialisation (ω = 1e-6 ≪ step α), on XOR-cluster data
(``toy_models.xor_clusters``) in dimension p ≫ n with 15% of the training labels
flipped. The paper's picture: after the first step the net is a nearly linear
classifier that fits every training label, flipped ones included, at chance test
accuracy; later steps learn the cluster directions (neurons with a_j > 0 along ±μ1,
a_j < 0 along ±μ2) and the clean test accuracy rises towards the Bayes-optimal one
while every training label, flipped ones included, stays fitted.

Theory against the optimizer: the net after one real GD step is compared with the
toy model's linear classifier ⟨(α/8n)Σ y_i x_i, x⟩. Cross-check: ``torch.optim.SGD``
with minibatches and ``Adam``, both with a trainable second layer and a larger
initialisation, on the same data (a panel; reported, not claimed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from experiments import losses
from experiments.claims import Claim, fmt, is_true
from experiments.config import param
from experiments.train import Probe, fit, log_spaced
from toy_models import xor_clusters as xc

PAPER = ("Xu, Wang, Frei, Vardi, Hu 2024, Benign Overfitting and Grokking in ReLU Networks "
         "for XOR Cluster Data (ICLR)")
DESCRIPTION = ("Full-batch GD from a tiny init on XOR clusters with 15% flipped labels: 100% "
               "train and chance test after one step, then near-optimal clean test accuracy "
               "while the flipped labels stay fitted")

SOURCE = "Xu et al. 2024, abstract and Fig. 3 (values calibrated here, see papers/xu2024.md)"
# The abstract's "near-random test accuracy" after the first step, read as a band of
# 10 points around 50% (the sampling error of 1,000 test points is ±3 points at 2σ), and
# its "near-optimal test accuracy" later, read as clean test accuracy >= 85% (the Bayes
# clean accuracy of the quick setting is ~1.0)
CHANCE_TOL = 0.10
TEST_GOAL = 0.85


@dataclass(frozen=True)
class Config:
    seed: int = param(0, lo=0, hi=2**31 - 1,
                      help="the first seed: the run uses seeds seed … seed + seeds − 1")
    seeds: int = param(3, lo=1, hi=100, help="independent data sets and initialisations")
    p: int = param(5000, lo=2, hi=10**6, help="input dimension")
    n: int = param(50, lo=4, hi=10**5, help="training examples")
    noise_rate: float = param(0.15, lo=0.0, hi=0.49, help="probability a train label flips")
    mu_norm: float = param(20.0, lo=0.0, hi=1e4, help="‖μ1‖ = ‖μ2‖")
    width: int = param(100, lo=2, hi=10**5, help="hidden neurons m (even)")
    init_std: float = param(1e-6, lo=0.0, hi=10.0, help="ω: w_j ~ N(0, ω² I)")
    step: float = param(0.02, lo=1e-6, hi=100.0, help="GD step size α")
    steps: int = param(300, lo=2, hi=10**7)
    n_test: int = param(1000, lo=10, hi=10**6)
    probe_points: int = param(40, lo=5, hi=10**4, help="log-spaced probe steps")
    # cross-check: full optimizers, trainable second layer, larger initialisation
    cross_steps: int = param(200, lo=2, hi=10**7)
    cross_batch: int = param(10, lo=1, hi=10**5, help="SGD minibatch size")
    cross_sgd_lr: float = param(0.1, lo=1e-6, hi=100.0)
    cross_adam_lr: float = param(0.001, lo=1e-7, hi=1.0)
    cross_init_std: float = param(0.02, lo=0.0, hi=10.0, help="ω of the cross-check nets")
    dtype: str = param("float32", choices=("float32", "float64"))
    cpu_threads: int = param(1, lo=0, hi=256, help="torch threads on CPU (0: leave as is); "
                             "one is fastest for these small matrices on a shared machine")

    def __post_init__(self):
        if self.width % 2:
            raise ValueError(f"width must be even (half +1/√m, half −1/√m), got {self.width}")
        if self.cross_batch > self.n:
            raise ValueError(f"cross_batch ({self.cross_batch}) exceeds n ({self.n})")


PRESETS = {
    "quick": Config(),
    "paper": Config(seeds=10, steps=5000, n_test=5000, cross_steps=5000, probe_points=120),
}

CROSS = ("SGD", "Adam")


def accuracy_fn(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example correctness of sign(f) against ±1 labels (for ``fit``)."""
    return (outputs * y) > 0


def data(cfg: Config, seed: int) -> tuple[dict, dict]:
    dtype = getattr(torch, cfg.dtype)
    train = xc.sample(cfg.n, cfg.p, cfg.mu_norm, cfg.noise_rate, seed, dtype)
    test = xc.sample(cfg.n_test, cfg.p, cfg.mu_norm, cfg.noise_rate, 10_000 + seed, dtype)
    return train, test


def measure(train: dict, test: dict, mu1: torch.Tensor, mu2: torch.Tensor):
    """Probe: clean test accuracy, accuracy on the flipped train labels, neuron alignment."""
    def fn(state) -> dict:
        model = state.model
        device = model.weight.device
        with torch.no_grad():
            f_test = model(test["x"].to(device))
            f_train = model(train["x"].to(device))
            out = {"test_clean": xc.accuracy(f_test, test["y_clean"].to(device)),
                   "test_noisy": xc.accuracy(f_test, test["y"].to(device))}
            flipped = train["flipped"].to(device)
            out["train_flipped"] = (xc.accuracy(f_train[flipped], train["y"].to(device)[flipped])
                                    if bool(flipped.any()) else float("nan"))
            for key, value in xc.alignment(model.weight, model.a, mu1.to(device),
                                           mu2.to(device)).items():
                out[key] = float(value)
        return out
    return fn


def gd_run(cfg: Config, seed: int, device: str) -> dict:
    """The paper's setting: fixed second layer, full-batch GD (``torch.optim.SGD``)."""
    train, test = data(cfg, seed)
    mu1, mu2 = xc.cluster_means(cfg.p, cfg.mu_norm, train["x"].dtype)
    model = xc.TwoLayerReLU(cfg.p, cfg.width, cfg.init_std, seed, dtype=train["x"].dtype)
    w0 = model.weight.detach().clone()
    history = fit(model, losses.logistic, train["x"], train["y"],
                  lambda params: torch.optim.SGD(params, lr=cfg.step), steps=cfg.steps,
                  device=device, accuracy_fn=accuracy_fn,
                  probes=[Probe("m", measure(train, test, mu1, mu2),
                                log_spaced(cfg.probe_points))],
                  checkpoint=f"gd-{seed}", progress=False)
    out = {"step": history["step"], "train_acc": history["train_accuracy"],
           "train_loss": history["train_loss"]}
    for key, value in history.arrays.items():
        if key.startswith("m."):
            out[key if key == "m.step" else key[2:]] = value
    if seed == cfg.seed:
        out.update(one_step_check(cfg, model.a.detach().cpu(), w0.cpu(), train, test))
    return out


def one_step_check(cfg: Config, a, w0, train: dict, test: dict) -> dict:
    """One real ``torch.optim.SGD`` step against the toy model's nearly linear classifier.

    Test outputs of the net after one step (f⁽¹⁾) and of ⟨(α/8n)Σ y_i x_i, x⟩ (linear).
    """
    model = xc.TwoLayerReLU(cfg.p, cfg.width, 0.0, dtype=w0.dtype)
    with torch.no_grad():
        model.weight.copy_(w0)
    fit(model, losses.logistic, train["x"], train["y"],
        lambda params: torch.optim.SGD(params, lr=cfg.step), steps=1, progress=False)
    direction = xc.one_step_direction(train["x"], train["y"], cfg.step)
    with torch.no_grad():
        f1_test, f1_train = model(test["x"]), model(train["x"])
    return {"one_step.net": f1_test.numpy(), "one_step.linear": (test["x"] @ direction).numpy(),
            "one_step.labels": test["y_clean"].numpy(),
            "one_step.linear_train_acc": xc.accuracy(train["x"] @ direction, train["y"]),
            "one_step.net_train_acc": xc.accuracy(f1_train, train["y"])}


def cross_run(cfg: Config, method: str, device: str) -> dict:
    """The first seed's data, trainable second layer, larger init, minibatch SGD or Adam."""
    train, test = data(cfg, cfg.seed)
    mu1, mu2 = xc.cluster_means(cfg.p, cfg.mu_norm, train["x"].dtype)
    model = xc.TwoLayerReLU(cfg.p, cfg.width, cfg.cross_init_std, seed=cfg.seed + 1,
                            train_output=True, dtype=train["x"].dtype)
    if method == "SGD":
        optimizer, batch = (lambda ps: torch.optim.SGD(ps, lr=cfg.cross_sgd_lr)), cfg.cross_batch
    else:
        optimizer, batch = (lambda ps: torch.optim.Adam(ps, lr=cfg.cross_adam_lr)), None
    history = fit(model, losses.logistic, train["x"], train["y"], optimizer,
                  steps=cfg.cross_steps, batch_size=batch, seed=cfg.seed, device=device,
                  accuracy_fn=accuracy_fn,
                  probes=[Probe("m", measure(train, test, mu1, mu2),
                                log_spaced(cfg.probe_points))],
                  checkpoint=f"cross-{method}", progress=False)
    return {"probe_step": history["m.step"], "test_clean": history["m.test_clean"],
            "train_flipped": history["m.train_flipped"],
            "train_acc": train_accuracy_at(history, history["m.step"])}


def train_accuracy_at(history, steps: np.ndarray) -> np.ndarray:
    index = {int(s): i for i, s in enumerate(history["step"])}
    return np.array([history["train_accuracy"][index[int(s)]] for s in steps])


def run(cfg: Config, device: str) -> dict:
    threads = torch.get_num_threads()
    if device == "cpu" and cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    try:
        return _run(cfg, device)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: Config, device: str) -> dict:
    result: dict = {}
    with tqdm(total=cfg.seeds + len(CROSS), desc="xor grokking", disable=None) as bar:
        runs = []
        for seed in range(cfg.seed, cfg.seed + cfg.seeds):
            runs.append(gd_run(cfg, seed, device))
            bar.update(1)
        for key in runs[0]:
            if key.startswith("one_step."):
                result[key] = runs[0][key]
            else:
                result[f"gd.{key}"] = np.stack([np.asarray(r[key], dtype=float) for r in runs])
        for method in CROSS:
            for key, value in cross_run(cfg, method, device).items():
                result[f"{method}.{key}"] = np.asarray(value, dtype=float)
            bar.update(1)
    result["bayes_clean"] = xc.bayes_accuracy(cfg.mu_norm, cfg.noise_rate, clean=True)
    result["bayes_noisy"] = xc.bayes_accuracy(cfg.mu_norm, cfg.noise_rate)
    return result


def sweep_point(cfg: Config, seed: int = 0) -> dict[str, float]:
    """Train / clean-test accuracy at step 1 and at ``cfg.steps`` for one setting, by the
    exact GD map of the toy model (equal to ``torch.optim.SGD``, see the unit tests);
    for the trade-off map on the paper page."""
    train, test = data(cfg, seed)
    model = xc.TwoLayerReLU(cfg.p, cfg.width, cfg.init_std, seed, dtype=train["x"].dtype)
    weight, a = model.weight.detach(), model.a
    out = {}
    for t in range(1, cfg.steps + 1):
        weight = xc.gd_step(weight, a, train["x"], train["y"], cfg.step)
        if t in (1, cfg.steps):
            f_train = torch.relu(train["x"] @ weight.T) @ a
            f_test = torch.relu(test["x"] @ weight.T) @ a
            out[f"train@{t}"] = xc.accuracy(f_train, train["y"])
            out[f"test@{t}"] = xc.accuracy(f_test, test["y_clean"])
    return out


# ---------------------------------------------------------------- figure and claims

def _band(ax, steps, values, color, label, ls="-", lw=None, first=1):
    keep = steps >= first
    ax.plot(steps[keep], values.mean(axis=0)[keep], color=color, ls=ls, label=label, lw=lw)
    if values.shape[0] > 1:
        ax.fill_between(steps[keep], values.min(axis=0)[keep], values.max(axis=0)[keep],
                        color=color, alpha=0.2, lw=0)


def _step_axis(ax):
    """Log step axis that still shows step 0 (linear between 0 and 1)."""
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)


def plot(result: dict, cfg: Config):
    from experiments import plotting

    fig, axes = plotting.subplots(1, 4, width=3.6, height=3.2)
    colors = plotting.palette(4)
    seeds = result["gd.train_acc"].shape[0]

    ax = axes[0, 0]
    _band(ax, result["gd.step"][0], result["gd.train_acc"], colors[0], "train (noisy labels)",
          lw=2.5, first=0)
    probe_steps = result["gd.m.step"][0]
    _band(ax, probe_steps, result["gd.train_flipped"], colors[1], "train, flipped only", "--",
          first=0)
    _band(ax, probe_steps, result["gd.test_clean"], colors[2], "test (clean labels)", first=0)
    ax.axhline(result["bayes_clean"], color="k", ls=":", lw=0.8, label="Bayes (clean)")
    ax.axhline(0.5, color="gray", lw=0.8)
    _step_axis(ax)
    ax.set(ylim=(0.3, 1.03), xlabel="GD step (log; 0 = init)", ylabel="accuracy",
           title=f"GD, fixed 2nd layer (α = {cfg.step:g}, ω = {cfg.init_std:g})")
    ax.legend(loc="lower right", title=f"mean, min–max over {seeds} seeds", title_fontsize=7)

    ax = axes[0, 1]
    names = {"pos_mu1": ("a_j > 0, |⟨w_j, μ1⟩|", colors[0], "-"),
             "pos_mu2": ("a_j > 0, |⟨w_j, μ2⟩|", colors[0], ":"),
             "neg_mu1": ("a_j < 0, |⟨w_j, μ1⟩|", colors[3], ":"),
             "neg_mu2": ("a_j < 0, |⟨w_j, μ2⟩|", colors[3], "-")}
    for key, (label, color, ls) in names.items():
        _band(ax, probe_steps, result[f"gd.{key}"], color, label, ls)
    ax.set(xscale="log", yscale="log", xlabel="GD step", ylabel="mean |⟨w_j, μ_k⟩| / ‖μ‖",
           title="Neurons split by the sign of a_j")
    ax.legend(loc="lower right")

    ax = axes[0, 2]
    net, linear, labels = (result["one_step.net"], result["one_step.linear"],
                           result["one_step.labels"])
    for label, color in ((1.0, colors[0]), (-1.0, colors[3])):
        pick = labels == label
        ax.scatter(linear[pick], net[pick], s=3, alpha=0.4, color=color,
                   label=f"clean label {label:+.0f}")
    lim = float(np.max(np.abs(linear)))
    ax.plot([-lim, lim], [-lim, lim], color="k", lw=0.8, label="y = x")
    ax.set(xlabel="⟨(α/8n) Σ y_i x_i, x⟩  (toy model)", ylabel="f⁽¹⁾(x) after one GD step",
           title="Step 1 = a linear classifier (test points)")
    ax.legend(loc="upper left", markerscale=3)

    ax = axes[0, 3]
    for method, color in zip(CROSS, (colors[1], colors[2]), strict=True):
        steps = result[f"{method}.probe_step"]
        ax.plot(steps, result[f"{method}.train_acc"], color=color, ls="--",
                label=f"{method}: train")
        ax.plot(steps, result[f"{method}.test_clean"], color=color,
                label=f"{method}: test (clean)")
    ax.axhline(0.5, color="gray", lw=0.8)
    _step_axis(ax)
    ax.set(ylim=(0.0, 1.03), xlabel="optimizer step (log; 0 = init)", ylabel="accuracy",
           title=f"Cross-check: trainable a, ω = {cfg.cross_init_std:g}")
    ax.legend(loc="lower right", title=f"SGD B = {cfg.cross_batch}, lr {cfg.cross_sgd_lr:g}; "
              f"Adam lr {cfg.cross_adam_lr:g}", title_fontsize=7)
    return fig


def _at(result: dict, key: str, step: int) -> np.ndarray:
    """Per-seed values of a probe ``key`` at ``step``."""
    steps = result["gd.m.step"][0] if key != "train_acc" else result["gd.step"][0]
    index = int(np.flatnonzero(steps == step)[0])
    return result[f"gd.{key}"][:, index]


def _rises_after_fit(result: dict) -> tuple[bool, str]:
    """Per seed: the first probe step with test >= 60% comes no earlier than the first
    step at which train accuracy is 100%, and train stays at 100% from then on."""
    steps, train = result["gd.step"][0], result["gd.train_acc"]
    probe_steps, test = result["gd.m.step"][0], result["gd.test_clean"]
    ok, parts = True, []
    for s in range(train.shape[0]):
        fitted = np.flatnonzero(train[s] >= 1.0)
        rose = np.flatnonzero(test[s] >= 0.5 + CHANCE_TOL)
        if len(fitted) == 0 or len(rose) == 0:
            ok = False
            parts.append("never")
            continue
        first_fit, first_rise = int(steps[fitted[0]]), int(probe_steps[rose[0]])
        stays = bool(np.all(train[s][steps >= first_fit] >= 1.0))
        ok &= first_rise >= first_fit and stays
        parts.append(f"fit at {first_fit}, test ≥ 60% at {first_rise}")
    return ok, "; ".join(parts)


def claims(result: dict, cfg: Config) -> list[Claim]:
    train1, test1 = _at(result, "train_acc", 1), _at(result, "test_clean", 1)
    end = int(result["gd.step"][0][-1])
    train_end, test_end = _at(result, "train_acc", end), _at(result, "test_clean", end)
    flipped_end = _at(result, "train_flipped", end)
    rises, rises_text = _rises_after_fit(result)

    def seeds(values) -> str:
        return ", ".join(fmt(float(v), 3) for v in values)

    corr = float(np.corrcoef(result["one_step.net"], result["one_step.linear"])[0, 1])
    pos = _at(result, "pos_mu1", end) > _at(result, "pos_mu2", end)
    neg = _at(result, "neg_mu2", end) > _at(result, "neg_mu1", end)
    return [
        is_true("step 1: 100% train accuracy (flipped labels included), every seed",
                bool(np.all(train1 >= 1.0)), "1.0", seeds(train1), SOURCE),
        is_true("step 1: clean test accuracy within 10 points of 50%, every seed",
                bool(np.all(np.abs(test1 - 0.5) <= CHANCE_TOL)), "in [0.4, 0.6]",
                seeds(test1), SOURCE),
        is_true(f"end (step {end}): clean test ≥ 85% while train stays 100%, every seed",
                bool(np.all(test_end >= TEST_GOAL) and np.all(train_end >= 1.0)),
                f"test ≥ {TEST_GOAL}, train = 1.0 (Bayes clean {fmt(result['bayes_clean'], 4)})",
                f"test {seeds(test_end)}; train {seeds(train_end)}; flipped-only "
                f"{seeds(flipped_end)}", SOURCE),
        is_true("test accuracy rises only after train accuracy is 100%, every seed", rises,
                "first test ≥ 60% no earlier than the 100% fit, which then holds", rises_text,
                SOURCE),
        is_true("one GD step = the toy model's linear classifier (test outputs; train fit)",
                corr >= 0.9 and result["one_step.linear_train_acc"] >= 1.0,
                "correlation ≥ 0.9 (finite-width deviation ~ 1/√m) and the linear "
                "classifier fits 100% of train labels",
                f"correlation {fmt(corr, 4)}; linear train acc "
                f"{fmt(float(result['one_step.linear_train_acc']), 3)}, net "
                f"{fmt(float(result['one_step.net_train_acc']), 3)}",
                "toy_models.xor_clusters: f⁽¹⁾(x) ≈ ⟨(α/8n)Σ y_i x_i, x⟩"),
        is_true("neurons split by output sign: a_j > 0 on μ1, a_j < 0 on μ2 (end, every seed)",
                bool(np.all(pos) and np.all(neg)), "mean |⟨w, μ1⟩| > |⟨w, μ2⟩| for a_j > 0 "
                "and the reverse for a_j < 0",
                f"a>0: μ1 {seeds(_at(result, 'pos_mu1', end))} vs μ2 "
                f"{seeds(_at(result, 'pos_mu2', end))}; a<0: μ2 "
                f"{seeds(_at(result, 'neg_mu2', end))} vs μ1 "
                f"{seeds(_at(result, 'neg_mu1', end))}",
                "Xu et al. 2024 (reviewer summary): positive neurons learn μ1, negative μ2"),
    ]
