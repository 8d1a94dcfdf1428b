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

What the paper says (§6.2): "The distributions of the network functions are very similar
for both widths: their mean and variance appear to be close to those of the limiting
distribution t → ∞. Even for relatively small widths (n = 50), the NTK gives a good
indication of the distribution of f_θ(t) as t → ∞." That is a statement about its 10
nets per width, so both widths get the same claim at the paper's sample size: with 10
nets the percentiles cannot be told from the limit's.

Both presets use the paper's 10 initialisations per width for the claims. The narrowest
width is also trained with ``resolve`` nets (100; its first 10 are the claim's nets): with
them the order-statistic errors shrink √10-fold and the finite-width deviation from the
limit becomes measurable. Its size is reported (in the n = 50 claim's measured text and
the figure's last panel) as the largest |empirical − limit| percentile in units of the
limit's 10–90 band width at that angle, the median ratio of the band widths, and how many
of the disjoint groups of 10 among the 100 nets fail the claim's check (how often the
paper's sample size would see the deviation). It is information, not a pass/fail claim:
the paper does not claim that n = 50 deviates.

Both presets are the paper's setting (1000 steps; the limit is evaluated at the same t).
Training runs in float32 (``dtype``; kernels, linearisation and limit in float64): the
claim statistics agree with float64 training to the 4 digits printed, and it halves the
time of the width-1000 nets, which dominate the quick run.
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
from experiments.recipes import jacot2018_ntk_convergence as fig1
from experiments.train import fit
from toy_models import ntk

PAPER = fig1.PAPER
DESCRIPTION = ("Fig. 2: trained outputs of n = 50 / 1000 ReLU nets on 4 circle points: "
               "10/50/90 percentiles vs the infinite-width Gaussian; SGD vs linearised")


ENSEMBLE_MAX_WIDTH = 256


@dataclass(frozen=True)
class Config:
    seed: int = param(0, lo=0, hi=2**31 - 1)
    widths: tuple[int, ...] = param((50, 1000), lo=2, hi=100_000)
    inits: tuple[int, ...] = param((10, 10), lo=2, hi=100_000,
                                   help="initialisations per width for the claims (the "
                                        "paper: 10)")
    resolve: int = param(100, lo=0, hi=100_000,
                         help="nets at the narrowest width for the finite-width effect size "
                              "(reported, not a claim; 0: none)")
    steps: int = param(1000, lo=0, hi=10**6)
    lr: float = param(1.0, lo=1e-6, hi=100.0)
    beta: float = param(0.1, lo=0.0, hi=10.0)
    n_angles: int = param(73, lo=5, hi=2001, help="points on the circle, γ ∈ [−π, π]")
    batch: int = param(100, lo=1, hi=10_000,
                       help="networks trained together in one ensemble (widths up to "
                            f"{ENSEMBLE_MAX_WIDTH}; wider nets train one at a time)")
    dtype: str = param("float32", choices=("float32", "float64"),
                       help="training precision (kernels and linearisation: float64)")


PRESETS = {
    "quick": Config(),
    "paper": Config(),
}

DEPTH = 4  # weight matrices: 3 hidden layers, as Jacot's "L = 4"
TRAIN_ANGLES = np.array([-3, -1, 1, 3]) * np.pi / 4
PERCENTILES = (10, 50, 90)
PINNED = 0.2  # angles with limit σ below this fraction of its maximum are not compared
GROUP = 10  # the paper's nets per width: the group size of the replication count


def _train_width(width, count, x_train, y_train, x_circle, cfg, device, bar):
    """Outputs on the circle after training (SGD) and of the linearised networks."""
    outputs, linear, diverged = [], [], 0
    # narrow nets train together (batched matmuls: one step for all of them); wide ones
    # one at a time, where nn.Linear's backward is about 2× faster than the batched one
    batch = cfg.batch if width <= ENSEMBLE_MAX_WIDTH else 1
    for start in range(0, count, batch):
        nets = []
        for init in range(start, min(count, start + batch)):
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
        model = ntk.NTKEnsemble(nets).to(device) if len(nets) > 1 else nets[0]
        targets = y_train[:, None].expand(-1, len(nets))
        history = fit(model, losses.half_sum_mse, x_train, targets,
                      lambda p: torch.optim.SGD(p, lr=cfg.lr), steps=cfg.steps,
                      dtype=cfg.dtype, eval_every=max(cfg.steps, 1), progress=False)
        with torch.no_grad():
            param = next(model.parameters())
            out = model(x_circle.to(param.dtype)).T.double().cpu().numpy()
        if history.diverged:
            diverged += len(nets)
            out = np.full_like(out, np.nan)
        outputs.extend(out)
        bar.update(len(nets))
    return np.array(outputs), np.array(linear), diverged


def trained_counts(cfg: Config) -> list[int]:
    """Nets trained per width: the claim's count, and ``resolve`` at the narrowest width
    (the claim uses the first ``inits`` of them: the same seeds)."""
    return [max(count, cfg.resolve) if k == 0 else count
            for k, count in enumerate(cfg.inits)]


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
    counts = trained_counts(cfg)
    bar = tqdm(total=sum(counts), desc="networks", disable=None)
    for width, count in zip(cfg.widths, counts, strict=True):
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


def compared_angles(result: dict) -> np.ndarray:
    std = result["limit.std"]
    return std >= PINNED * std.max()


def percentile_z(result: dict, width: int, count: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """z-scores (percentile × compared angle) of the empirical percentiles of the first
    ``count`` nets (None: all) against the limit's, in order-statistic standard errors;
    and the mask of compared angles."""
    outputs = result[f"w{width}.outputs"][:count]
    compared = compared_angles(result)
    p = np.array(PERCENTILES)[:, None] / 100
    std = result["limit.std"][compared]
    se = std[None] * np.sqrt(p * (1 - p) / len(outputs)) / stats.norm.pdf(stats.norm.ppf(p))
    empirical = np.percentile(outputs[:, compared], PERCENTILES, axis=0)
    return (empirical - limit_percentiles(result)[:, compared]) / se, compared


def band_deviation(result: dict, width: int, count: int | None = None) -> np.ndarray:
    """Empirical minus limit percentiles of the first ``count`` nets in units of the
    limit's 10–90 band width at each compared angle: (percentile × compared angle)."""
    compared = compared_angles(result)
    limit = limit_percentiles(result)[:, compared]
    outputs = result[f"w{width}.outputs"][:count, compared]
    return (np.percentile(outputs, PERCENTILES, axis=0) - limit) / (limit[-1] - limit[0])


def z_bound(cells: int) -> float:
    """Bonferroni bound on max |z| over ``cells`` (percentile, γ) cells at 5% in all."""
    return float(stats.norm.isf(0.05 / (2 * cells)))


def effect_size(result: dict, width: int) -> dict[str, float]:
    """With every net trained at ``width``: the worst |z| and its Bonferroni bound; the
    median ratio of the empirical to the limit's 10–90 band width; the mean shift of the
    10th and 90th percentiles and the largest |shift| of any percentile (this one
    includes the sampling noise), all as fractions of the limit's band width."""
    z, compared = percentile_z(result, width)
    dev = band_deviation(result, width)
    outputs = result[f"w{width}.outputs"][:, compared]
    limit = limit_percentiles(result)[:, compared]
    spread = np.percentile(outputs, 90, axis=0) - np.percentile(outputs, 10, axis=0)
    groups = group_max_z(result, width, GROUP)
    bound = z_bound(z.size)
    return {"nets": len(outputs), "max_z": float(np.max(np.abs(z))), "bound": bound,
            "band_ratio": float(np.median(spread / (limit[-1] - limit[0]))),
            "p10_shift": float(np.mean(dev[0])), "p90_shift": float(np.mean(dev[-1])),
            "largest_shift": float(np.max(np.abs(dev))),
            "groups": len(groups),
            "groups_failing": int(np.sum(groups > bound))}


def group_max_z(result: dict, width: int, size: int) -> np.ndarray:
    """The claim's statistic (max |z|) for each disjoint group of ``size`` nets in order
    (nets 0..size−1 are the claim's own): how often the paper's sample size would see
    the finite-width deviation."""
    outputs = result[f"w{width}.outputs"]
    return np.array([np.max(np.abs(percentile_z({**result, f"w{width}.outputs":
                                                  outputs[k:k + size]}, width)[0]))
                     for k in range(0, len(outputs) - size + 1, size)])


def plot(result: dict, cfg: Config):
    from experiments import plotting

    widths = [int(w) for w in result["widths"]]
    resolved = len(result[f"w{widths[0]}.outputs"]) > cfg.inits[0]
    fig, axes = plotting.subplots(1, len(widths) + resolved, width=4.4, height=3.4)
    gamma = result["gamma"]
    limit = limit_percentiles(result)
    for ax, width, count in zip(axes[0], widths, cfg.inits, strict=False):
        outputs = result[f"w{width}.outputs"][:count]
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
    if resolved:
        _plot_effect_size(axes[0][-1], result, widths[0])
    return fig


def _plot_effect_size(ax, result: dict, width: int) -> None:
    """(empirical − limit) percentiles of all nets at ``width`` in units of the limit's
    band width, with the claim's tolerance (Bonferroni bound × order-statistic s.e.) for
    that many nets and for the claim's count."""
    compared = compared_angles(result)
    gamma = np.where(compared, result["gamma"], np.nan)
    dev = np.full((len(PERCENTILES), len(gamma)), np.nan)
    dev[:, compared] = band_deviation(result, width)
    size = effect_size(result, width)
    colors = ("tab:purple", "tab:red", "tab:orange")
    for k, pct in enumerate(PERCENTILES):
        p = pct / 100
        # s.e. over the band width 2·z_0.9·σ: σ cancels, a constant per percentile
        se = np.sqrt(p * (1 - p) / size["nets"]) / stats.norm.pdf(stats.norm.ppf(p))
        tol = size["bound"] * se / (2 * stats.norm.ppf(0.9))
        ax.plot(gamma, dev[k], color=colors[k], lw=1.3, label=f"P{pct}")
        ax.axhspan(-tol, tol, color=colors[k], alpha=0.08)
    ax.axhline(0, color="k", lw=0.8)
    top = max(size["largest_shift"], tol)
    ax.set_ylim(-1.45 * top, 1.25 * top)  # room for the note below the curves
    ax.set(xlabel="γ", ylabel="(empirical − limit) / limit's 10–90 width",
           title=f"n = {width}, all {size['nets']} nets: max |z| {size['max_z']:.2f} "
                 f"(bound {size['bound']:.2f})")
    ax.text(0.02, 0.03, f"band ×{size['band_ratio']:.2f} (median over γ); mean shift P10 "
                        f"{size['p10_shift']:+.0%}, P90 {size['p90_shift']:+.0%};\n"
                        f"largest {size['largest_shift']:.0%}; groups of {GROUP} failing: "
                        f"{size['groups_failing']}/{size['groups']}; shaded: tolerance for "
                        f"{size['nets']} nets", transform=ax.transAxes, fontsize=7)
    ax.legend(fontsize=7, loc="upper right", ncol=3)


def _rms_gap(result: dict, width: int, count: int) -> float:
    return float(np.sqrt(np.mean((result[f"w{width}.outputs"][:count]
                                  - result[f"w{width}.linearised"][:count]) ** 2)))


def _percentile_claim(result: dict, width: int, count: int, source: str) -> Claim:
    z, _ = percentile_z(result, width, count)
    bound = z_bound(z.size)
    worst = float(np.max(np.abs(z))) if np.all(np.isfinite(z)) else float("nan")
    claim = in_range(f"n = {width} ({count} nets): 10/50/90 percentiles inside the limit's "
                     f"within sampling error, worst of {z.size} (percentile, γ)", worst, 0.0,
                     bound, source,
                     what="max |z| (order-statistic s.e.)")
    diverged = int(np.isnan(result[f"w{width}.outputs"][:count]).any(axis=1).sum())
    if diverged:
        claim = replace(claim, measured=f"{claim.measured}; {diverged} nets diverged")
    return claim


def claims(result: dict, cfg: Config) -> list[Claim]:
    widths = [int(w) for w in result["widths"]]
    counts = dict(zip(widths, cfg.inits, strict=True))
    small, large = widths[0], widths[-1]
    out = [_percentile_claim(result, large, counts[large],
                             "Jacot 2018 §6.2, Fig. 2 (Gaussian limit of §5)"),
           _percentile_claim(result, small, counts[small],
                             "Jacot 2018 §6.2, Fig. 2 ('even for relatively small widths "
                             "(n = 50), the NTK gives a good indication')")]
    if len(result[f"w{small}.outputs"]) > counts[small]:
        size = effect_size(result, small)
        out[1] = replace(out[1], measured=(
            f"{out[1].measured}; with {size['nets']} nets (information): max |z| "
            f"{fmt(size['max_z'], 3)} (bound {fmt(size['bound'], 3)}); in units of the "
            f"limit's 10–90 band width: band ×{fmt(size['band_ratio'], 3)}, mean shift P10 "
            f"{size['p10_shift']:+.0%}, P90 {size['p90_shift']:+.0%}, largest "
            f"{size['largest_shift']:.0%}; disjoint groups of {GROUP} failing the check: "
            f"{size['groups_failing']} of {size['groups']}"))
    gap = {w: _rms_gap(result, w, counts[w]) for w in (small, large)}
    out.append(is_true("SGD vs linearised model: function gap shrinks with width",
                       gap[large] < gap[small], f"RMS gap at n = {large} < at n = {small}",
                       f"{fmt(gap[large], 3)} vs {fmt(gap[small], 3)}",
                       "Jacot 2018 Thm 2 (training in the NTK regime)"))
    return out
