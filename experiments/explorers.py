"""Live explorers for Jupyter: a slider moves a toy model's mechanism, the picture follows.

Each explorer is three layers, so that the numbers can be tested without a browser:

* a **compute** function of the slider values that returns plain numbers (numpy arrays,
  floats, booleans), built on the closed forms of ``toy_models`` and the probes;
* a **draw** function that turns those numbers into a matplotlib figure;
* the **explorer** itself, e.g. ``quadratic_stability()``: sliders (ipywidgets, imported
  only here) whose every move recomputes and redraws. With ``static=True``, or where
  ipywidgets is not installed, it returns the figure of the default slider values
  instead, and the live widget also carries that picture as a PNG, so a page rendered
  without a kernel (a static site, GitHub) still shows the default state.

| explorer | page | what moves |
|---|---|---|
| :func:`quadratic_stability` | cohen2021 | η·λ and β of GD, heavy-ball and Nesterov on ½λx² |
| :func:`ntk_concentration` | jacot2018 | the width of sampled networks against the analytic Θ∞ |
| :func:`softmax_collapse` | prieto2025 | dtype, classes and the logit gap of Σ_k e^{z_k − max z} |
| :func:`xor_one_step` | xu2024 | the label-flip rate under the one-step classifier |
| :func:`fractal_zoom` | sohldickstein2024 | the window of a trainability plane |

Every update is meant to take well under a second on one laptop core;
``python -m experiments bench`` times the slowest setting of each (``bench/explorers.py``).
Figures are built as ``matplotlib.figure.Figure`` objects, not through pyplot, so that
an inline backend does not show each redraw a second time below the widget.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
import torch

from toy_models import fractal, ntk, stability
from toy_models import grokking as g
from toy_models import xor_clusters as xc

# ---------------------------------------------------------------- shared plumbing


def _figure(ncols: int, width: float = 4.0, height: float = 3.2):
    """A figure of ``ncols`` panels in the lab's style, outside pyplot's figure manager."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    return fig, list(np.atleast_1d(fig.subplots(1, ncols)))


def _png(fig) -> bytes:
    from experiments import plotting

    buffer = io.BytesIO()
    with plotting.style():
        fig.savefig(buffer, format="png", dpi=plotting.STYLE["figure.dpi"])
    return buffer.getvalue()


@dataclass(frozen=True)
class Explorer:
    """One explorer: its compute and draw functions, slider defaults, and the setting whose
    update is the slowest (what the bench times)."""

    name: str
    compute: Callable[..., dict]
    draw: Callable[[dict], object]
    defaults: dict
    slowest: dict = field(default_factory=dict)
    clear_caches: Callable[[], None] = lambda: None

    def figure(self, **values):
        """The figure of the given slider values (defaults for the rest)."""
        from experiments import plotting

        with plotting.style(), _one_torch_thread():
            return self.draw(self.compute(**{**self.defaults, **values}))


@contextlib.contextmanager
def _one_torch_thread():
    """Compute at one torch thread, then restore the caller's count: these are small
    products, where more threads only wait on each other once the cores are shared (the
    lab's thread policy, ``experiments.api.torch_threads``; on 2 busy cores the default
    two threads made one 64² fractal update 26 s instead of 0.5 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError:
        return None
    return ipywidgets


def _live(explorer: Explorer, make_controls: Callable[..., dict], static: bool):
    """The widget: the controls that ``make_controls(ipywidgets, explorer.defaults)``
    returns (name → ipywidget with a ``value``), above the picture.

    Returns the default state's figure instead when ``static`` or without ipywidgets.
    """
    widgets = _ipywidgets()
    if static or widgets is None:
        return explorer.figure()
    controls = make_controls(widgets, explorer.defaults)

    class ExplorerBox(widgets.VBox):
        """A VBox whose display also offers a PNG of its first state (for static pages)."""

        def _repr_mimebundle_(self, **kwargs):
            bundle = super()._repr_mimebundle_(**kwargs)
            if bundle is not None and getattr(self, "static_png", None):
                bundle["image/png"] = base64.b64encode(self.static_png).decode("ascii")
            return bundle

    image = widgets.Image(format="png")
    status = widgets.HTML()

    def refresh(_change=None):
        start = time.perf_counter()
        values = {name: control.value for name, control in controls.items()}
        image.value = _png(explorer.figure(**values))
        status.value = f"<small>updated in {time.perf_counter() - start:.2f} s</small>"

    for control in controls.values():
        control.observe(refresh, names="value")
    refresh()
    box = ExplorerBox([widgets.HBox(list(controls.values()),
                                    layout=widgets.Layout(flex_flow="row wrap")),
                       image, status])
    box.static_png = bytes(image.value)
    box.explorer = explorer
    box.controls = controls
    box.refresh = refresh
    return box


def _slider_style(widgets, description: str) -> dict:
    return dict(description=description, style={"description_width": "initial"},
                layout=widgets.Layout(width="320px"))


# ---------------------------------------------------------------- (a) quadratic stability
#
# GD, heavy-ball and Nesterov (torch.optim.SGD, dampening 0) on ½λx² are linear maps of
# (x_t, η·b_{t−1}) that depend on a = η·λ and β only (toy_models.stability, derived with
# sympy there); the iterates are powers of that matrix from (1, 0), which is what
# torch.optim.SGD produces from x₀ = 1 (its buffer starts at the first gradient).

METHOD_LABELS = {"gd": "GD", "heavy_ball": "heavy-ball", "nesterov": "Nesterov"}
METHOD_COLOURS = {"gd": "tab:blue", "heavy_ball": "tab:orange", "nesterov": "tab:green"}


@functools.cache
def _update_map(method: str):
    return sp.lambdify((stability.a, stability.mu, stability.tau),
                       stability.update_matrix(method), "numpy")


@functools.cache
def _threshold_curve(method: str):
    """a*(β) at dampening 0, vectorised."""
    expr = stability.threshold_expression(method).subs(stability.tau, 0)
    return sp.lambdify(stability.mu, expr, "numpy")


def quadratic_stability_state(step: float = 1.8, momentum: float = 0.5,
                              steps: int = 60) -> dict:
    """Iterates, spectral radius, verdict and threshold of each method at a = ηλ = ``step``.

    Returns per method (keys ``gd``, ``heavy_ball``, ``nesterov``): ``x`` (steps + 1
    iterates from x₀ = 1), ``radius`` (ρ of the update map), ``stable`` (ρ < 1) and
    ``threshold`` (a* at this β); and ``beta_grid`` with ``curves`` (a*(β) over it).
    """
    out: dict = {"step": float(step), "momentum": float(momentum), "steps": int(steps)}
    for method in stability.METHODS:
        matrix = np.array(_update_map(method)(step, momentum, 0.0), dtype=float)
        state = np.array([1.0, 0.0])
        xs = [state[0]]
        for _ in range(steps):
            state = matrix @ state
            xs.append(state[0])
        radius = float(np.max(np.abs(np.linalg.eigvals(matrix))))
        out[method] = {"x": np.array(xs), "radius": radius, "stable": radius < 1.0,
                       "threshold": float(_threshold_curve(method)(momentum))}
    grid = np.linspace(0.0, 0.99, 100)
    out["beta_grid"] = grid
    out["curves"] = {m: np.broadcast_to(_threshold_curve(m)(grid), grid.shape).astype(float)
                     for m in stability.METHODS}
    return out


def draw_quadratic_stability(state: dict):
    fig, (ax_x, ax_region) = _figure(2, 4.3, 3.3)
    t = np.arange(state["steps"] + 1)
    for method in stability.METHODS:
        m = state[method]
        verdict = "stable" if m["stable"] else "unstable"
        ax_x.semilogy(t, np.maximum(np.abs(m["x"]), 1e-300), color=METHOD_COLOURS[method],
                      label=f"{METHOD_LABELS[method]}: ρ = {m['radius']:.3f}, {verdict}")
    ax_x.set(xlabel="step t", ylabel="|x_t|  (x₀ = 1)", ylim=(1e-12, 1e6),
             title=f"½λx², ηλ = {state['step']:.2f}, β = {state['momentum']:.2f}")
    ax_x.legend(fontsize=7, loc="lower left")
    grid = state["beta_grid"]
    for method in stability.METHODS:
        curve = state["curves"][method]
        ax_region.plot(curve, grid, color=METHOD_COLOURS[method],
                       label=f"{METHOD_LABELS[method]}: a* = {state[method]['threshold']:.3f}")
        ax_region.fill_betweenx(grid, 0, curve, color=METHOD_COLOURS[method], alpha=0.08)
    ax_region.plot([state["step"]], [state["momentum"]], "k*", ms=10)
    ax_region.set(xlabel="ηλ", ylabel="momentum β", xlim=(0, 4.2), ylim=(0, 1),
                  title="stable left of each method's curve a*(β)")
    ax_region.legend(fontsize=7, loc="upper right")
    return fig


QUADRATIC = Explorer("quadratic_stability", quadratic_stability_state,
                     draw_quadratic_stability, dict(step=1.8, momentum=0.5, steps=60),
                     slowest=dict(step=3.9, momentum=0.95, steps=200))


def quadratic_stability(static: bool = False):
    """Move η·λ and β; watch which method's iterates shrink and where the star sits in
    the stability regions."""
    def controls(widgets, d):
        return {
            "step": widgets.FloatSlider(d["step"], min=0.05, max=4.2, step=0.01,
                                        **_slider_style(widgets, "η·λ")),
            "momentum": widgets.FloatSlider(d["momentum"], min=0.0, max=0.99, step=0.01,
                                            **_slider_style(widgets, "momentum β")),
            "steps": widgets.IntSlider(d["steps"], min=10, max=200, step=10,
                                       **_slider_style(widgets, "steps")),
        }

    return _live(QUADRATIC, controls, static)


# ---------------------------------------------------------------- (b) NTK concentration
#
# Θ(x₀, x(γ)) on the unit circle (Jacot et al. 2018, Fig. 1) of freshly initialised
# NTK-parameterised ReLU nets, against the analytic Θ∞ of toy_models.ntk. Nets of every
# power-of-two width up to the chosen one are sampled, so the second panel shows the
# relative deviation ‖Θ − Θ∞‖/‖Θ∞‖ falling like n^(−1/2).

NTK_WIDTHS = tuple(2**k for k in range(4, 11))  # 16 … 1024


def _sampled_ntk(width: int, depth: int, beta: float, seed: int, x0: torch.Tensor,
                 x: torch.Tensor) -> np.ndarray:
    from experiments.probes.ntk import empirical_ntk

    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG alone
        torch.manual_seed(seed)
        net = ntk.ntk_mlp([2] + [width] * (depth - 1) + [1], beta=beta, dtype=torch.float32)
    return empirical_ntk(net, x0, x, mode="trace")[0].double().numpy()


def ntk_concentration_state(width: int = 128, nets: int = 5, depth: int = 4,
                            beta: float = 0.1, n_angles: int = 49, seed: int = 0) -> dict:
    """Θ(x₀, x(γ)) of ``nets`` random nets at every width 16, 32, …, ``width``.

    Returns ``gamma``, ``analytic`` (Θ∞), ``samples`` (nets × angles at ``width``),
    ``widths`` and ``deviation`` (nets per width: ‖Θ − Θ∞‖/‖Θ∞‖ over the angles).
    Net i has seed ``seed·1000 + i`` at every width.
    """
    if width not in NTK_WIDTHS:
        raise ValueError(f"width must be one of {NTK_WIDTHS}, got {width}")
    gammas = np.linspace(-np.pi, np.pi, n_angles)
    analytic = ntk.ntk(ntk.circle([0.0]), ntk.circle(gammas), depth, beta=beta)[0]
    x0 = torch.tensor(ntk.circle([0.0]), dtype=torch.float32)
    x = torch.tensor(ntk.circle(gammas), dtype=torch.float32)
    widths = [w for w in NTK_WIDTHS if w <= width]
    deviation, samples = [], None
    for w in widths:
        curves = np.stack([_sampled_ntk(w, depth, beta, seed * 1000 + i, x0, x)
                           for i in range(nets)])
        deviation.append(np.linalg.norm(curves - analytic, axis=1) / np.linalg.norm(analytic))
        samples = curves
    return {"gamma": gammas, "analytic": analytic, "samples": samples, "width": width,
            "depth": depth, "beta": beta, "widths": np.array(widths),
            "deviation": np.array(deviation)}


def deviation_slope(state: dict) -> float:
    """Least-squares slope of log(mean deviation) against log(width) (theory: −½)."""
    if len(state["widths"]) < 2:
        return float("nan")
    mean = state["deviation"].mean(1)
    return float(np.polyfit(np.log(state["widths"]), np.log(mean), 1)[0])


def draw_ntk_concentration(state: dict):
    fig, (ax_k, ax_d) = _figure(2, 4.3, 3.3)
    gamma = state["gamma"]
    for i, curve in enumerate(state["samples"]):
        ax_k.plot(gamma, curve, color="tab:blue", lw=0.8, alpha=0.6,
                  label="sampled nets at init" if i == 0 else None)
    ax_k.plot(gamma, state["analytic"], "k--", lw=1.5, label="Θ∞ (analytic)")
    dev = state["deviation"][-1]
    ax_k.set(xlabel="γ", ylabel="Θ(x₀, x(γ))",
             title=f"width {state['width']}, depth {state['depth']}: "
                   f"‖Θ − Θ∞‖/‖Θ∞‖ = {dev.mean():.3f}")
    ax_k.legend(fontsize=7)
    widths, mean = state["widths"], state["deviation"].mean(1)
    for w, d in zip(widths, state["deviation"], strict=True):
        ax_d.loglog(np.full(len(d), w), d, ".", color="tab:blue", alpha=0.4)
    ax_d.loglog(widths, mean, "o-", color="tab:blue", label="mean over nets")
    c = np.exp(np.mean(np.log(mean) + 0.5 * np.log(widths)))
    line = np.array([NTK_WIDTHS[0], NTK_WIDTHS[-1]], dtype=float)
    ax_d.loglog(line, c / np.sqrt(line), "k:", label="∝ n^(−1/2)")
    slope = deviation_slope(state)
    ax_d.set(xlabel="width n", ylabel="‖Θ − Θ∞‖/‖Θ∞‖", xlim=(10, 3000),
             title="fitted slope " + ("–" if math.isnan(slope) else f"{slope:.2f}"))
    ax_d.legend(fontsize=7)
    return fig


NTK_EXPLORER = Explorer("ntk_concentration", ntk_concentration_state, draw_ntk_concentration,
                        dict(width=256, nets=5, depth=4, beta=0.1),
                        slowest=dict(width=1024, nets=6, depth=5, beta=0.1))


def ntk_concentration(static: bool = False):
    """Move the width; watch the sampled kernels close in on Θ∞ and the deviation fall
    like n^(−1/2)."""
    def controls(widgets, d):
        return {
            "width": widgets.SelectionSlider(options=list(NTK_WIDTHS), value=d["width"],
                                             continuous_update=False,
                                             **_slider_style(widgets, "width n")),
            "nets": widgets.IntSlider(d["nets"], min=2, max=6, continuous_update=False,
                                      **_slider_style(widgets, "nets per width")),
            "depth": widgets.IntSlider(d["depth"], min=2, max=5, continuous_update=False,
                                       **_slider_style(widgets, "depth (weight matrices)")),
            "beta": widgets.FloatSlider(d["beta"], min=0.0, max=1.0, step=0.05,
                                        continuous_update=False,
                                        **_slider_style(widgets, "bias scale β")),
        }

    return _live(NTK_EXPLORER, controls, static)


# ---------------------------------------------------------------- (c) Softmax Collapse
#
# Prieto et al. 2025, Def. 3: an example collapses once Σ_k e^{z_k − max z} evaluates to
# exactly 1. With the C − 1 other logits all at a gap Δ below the top one, that happens
# between p·ln 2 and p·ln 2 + ln(C − 1) (toy_models.grokking.absorption_gap), where the
# order of the summation decides.

SOFTMAX_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16,
                  "float32": torch.float32, "float64": torch.float64}
GAPS = np.round(np.arange(0.0, 60.0 + 1e-9, 0.05), 10)


def collapsed_sum(gaps: np.ndarray, classes: int, dtype: torch.dtype) -> np.ndarray:
    """Σ_k e^{z_k − max z} in ``dtype`` for logits (0, −Δ, …, −Δ), one row per Δ, summed by
    ``torch.sum`` as the SC probe does (returned as float64)."""
    z = torch.zeros(len(gaps), classes, dtype=torch.float64)
    z[:, 1:] = -torch.as_tensor(np.asarray(gaps, dtype=float))[:, None]
    z = z.to(dtype)
    return torch.exp(z - z.max(dim=1, keepdim=True).values).sum(dim=1).double().numpy()


def logit_population(classes: int, examples: int = 200, seed: int = 0) -> np.ndarray:
    """Random logit rows (N(0, 1) per class) scaled so that the median top-2 gap is 1:
    multiplied by Δ, they are a population of examples whose median gap is Δ."""
    u = np.random.default_rng(seed).standard_normal((examples, classes))
    top2 = np.sort(u, axis=1)[:, -2:]
    return u / np.median(top2[:, 1] - top2[:, 0])


@functools.lru_cache(maxsize=8)
def _population_fractions(classes: int, examples: int, seed: int):
    """SC fraction of :func:`logit_population` against its median gap, in every dtype (it
    does not depend on the chosen dtype or gap, so it is kept per number of classes)."""
    from experiments.probes.softmax_collapse import softmax_collapse_fraction

    population = torch.as_tensor(logit_population(classes, examples, seed))
    pop_gaps = np.arange(0.0, 60.0 + 1e-9, 1.0)
    return pop_gaps, {name: np.array([softmax_collapse_fraction(population * d, t)
                                      for d in pop_gaps])
                      for name, t in SOFTMAX_DTYPES.items()}


def softmax_collapse_state(dtype: str = "float32", classes: int = 113, gap: float = 20.0,
                           examples: int = 200, seed: int = 0) -> dict:
    """The sum against the gap Δ in ``dtype``, and the SC fraction of a logit population.

    Returns ``gaps``, ``total`` (the sum at each gap), ``collapsed`` (total == 1),
    ``exact_excess`` ((C − 1)e^{−Δ}), ``first_collapsed`` (the smallest collapsed gap on
    the grid), the two absorption gaps ``single`` (p·ln 2) and ``guaranteed``
    (p·ln 2 + ln(C − 1)); at the chosen ``gap``: ``total_at_gap``; and ``fraction``
    (dtype name → SC fraction of the population against its median gap ``pop_gaps``).
    """
    from experiments.probes.softmax_collapse import softmax_collapse_fraction

    torch_dtype = SOFTMAX_DTYPES[dtype]
    total = collapsed_sum(GAPS, classes, torch_dtype)
    collapsed = total == 1.0
    first = float(GAPS[np.argmax(collapsed)]) if collapsed.any() else float("nan")
    population = torch.as_tensor(logit_population(classes, examples, seed))
    pop_gaps, fraction = _population_fractions(classes, examples, seed)
    return {"dtype": dtype, "classes": classes, "gap": float(gap), "gaps": GAPS,
            "total": total, "collapsed": collapsed,
            "exact_excess": (classes - 1) * np.exp(-GAPS), "first_collapsed": first,
            "single": g.absorption_gap(torch_dtype),
            "guaranteed": g.absorption_gap(torch_dtype, classes),
            "total_at_gap": float(collapsed_sum(np.array([gap]), classes, torch_dtype)[0]),
            "pop_gaps": pop_gaps, "fraction": fraction,
            "fraction_at_gap": softmax_collapse_fraction(population * gap, torch_dtype)}


def draw_softmax_collapse(state: dict):
    fig, (ax_sum, ax_frac) = _figure(2, 4.3, 3.3)
    gaps, excess = state["gaps"], state["total"] - 1.0
    ax_sum.semilogy(gaps, state["exact_excess"], "k-", lw=1, label="exact (C − 1)·exp(−Δ)")
    shown = excess > 0
    ax_sum.semilogy(gaps[shown], excess[shown], ".", ms=2, color="tab:blue",
                    label=f"computed in {state['dtype']}, minus 1")
    if state["collapsed"].any():
        ax_sum.fill_between(gaps, 1e-30, 1e3, where=state["collapsed"], color="tab:red",
                            alpha=0.12, lw=0, label="sum == 1 exactly (collapse)")
    for x, style, name in ((state["single"], "--", "p·ln 2"),
                           (state["guaranteed"], ":", "p·ln 2 + ln(C − 1)")):
        ax_sum.axvline(x, color="k", ls=style, lw=1, label=f"{name} = {x:.2f}")
    ax_sum.axvline(state["gap"], color="tab:purple", lw=1.5)
    first = state["first_collapsed"]
    ax_sum.set(xlabel="logit gap Δ (all C − 1 others)", ylabel="Σ_k exp(z_k − max z) − 1",
               ylim=(1e-20, 1e3),
               title=f"C = {state['classes']}, {state['dtype']}: at Δ = {state['gap']:.2f} "
                     f"sum − 1 = {state['total_at_gap'] - 1:.3g}\n"
                     + ("no collapse up to Δ = 60" if math.isnan(first)
                        else f"sum == 1 first at Δ = {first:.2f}"))
    ax_sum.legend(fontsize=6, loc="upper right")
    for name, frac in state["fraction"].items():
        chosen = name == state["dtype"]
        ax_frac.plot(state["pop_gaps"], frac, lw=2.2 if chosen else 1,
                     alpha=1 if chosen else 0.6, label=name)
    ax_frac.axvline(state["gap"], color="tab:purple", lw=1.5)
    ax_frac.set(xlabel="median top-2 logit gap of the population", ylabel="SC fraction",
                ylim=(-0.03, 1.03),
                title=f"random logits × scale\nSC fraction {state['fraction_at_gap']:.2f} "
                      f"({state['dtype']}) at median gap {state['gap']:.2f}")
    ax_frac.legend(fontsize=7, loc="lower right")
    return fig


SOFTMAX = Explorer("softmax_collapse", softmax_collapse_state, draw_softmax_collapse,
                   dict(dtype="float32", classes=113, gap=20.0),
                   slowest=dict(dtype="float64", classes=1000, gap=40.0),
                   clear_caches=_population_fractions.cache_clear)


def softmax_collapse(static: bool = False):
    """Move the dtype, the number of classes and the gap; watch where the computed sum
    stops differing from 1 and when a population of examples collapses."""
    def controls(widgets, d):
        return {
            "dtype": widgets.Dropdown(options=list(SOFTMAX_DTYPES), value=d["dtype"],
                                      **_slider_style(widgets, "dtype")),
            "classes": widgets.IntSlider(d["classes"], min=2, max=1000, continuous_update=False,
                                         **_slider_style(widgets, "classes C")),
            "gap": widgets.FloatSlider(d["gap"], min=0.0, max=60.0, step=0.05,
                                       continuous_update=False,
                                       **_slider_style(widgets, "logit gap Δ")),
        }

    return _live(SOFTMAX, controls, static)


# ---------------------------------------------------------------- (d) XOR one-step classifier
#
# Xu et al. 2024: one GD step from a tiny initialisation turns the two-layer ReLU net into
# a nearly linear classifier that fits every training label, flipped ones included. The
# step's effect on the pre-activations is linear in the labels for a fixed activation
# pattern at init: ⟨w_j⁽¹⁾, x⟩ = ⟨w_j⁽⁰⁾, x⟩ − (α a_j/n) Σ_i c_i 1_ij ⟨x_i, x⟩ with
# c_i = ℓ'(y_i f₀(x_i)) y_i (toy_models.xor_clusters.gd_step). So the Gram matrices of the
# data and the pre-activations at init are kept per draw, and a new flip rate costs a few
# small products instead of a pass over the p-dimensional test set.

XOR_RATES = np.round(np.arange(0.0, 0.451, 0.05), 4)


@functools.lru_cache(maxsize=2)
def _xor_draw(n: int, p: int, mu_norm: float, width: int, init_std: float, n_test: int,
              seed: int) -> dict:
    """The p-dimensional part of one draw, reduced to what one step needs."""
    clean = xc.sample(n, p, mu_norm, 0.0, seed)
    test = xc.sample(n_test, p, mu_norm, 0.0, seed + 1)
    net = xc.TwoLayerReLU(p, width, init_std, seed=seed)
    w0, a = net.weight.detach(), net.a
    return {"gram_train": clean["x"] @ clean["x"].T, "gram_test": test["x"] @ clean["x"].T,
            "pre_train": clean["x"] @ w0.T, "pre_test": test["x"] @ w0.T, "a": a,
            "y_test": test["y_clean"], "labels": {}}


def _flipped_labels(draw: dict, n: int, p: int, mu_norm: float, noise_rate: float,
                    seed: int):
    """The training labels of :func:`toy_models.xor_clusters.sample` at this flip rate,
    kept per draw (the inputs do not depend on the rate: the flips are drawn last)."""
    key = round(float(noise_rate), 10)
    if key not in draw["labels"]:
        data = xc.sample(n, p, mu_norm, noise_rate, seed)
        draw["labels"][key] = (data["y"], data["flipped"])
    return draw["labels"][key]


def _one_step_outputs(draw: dict, y: torch.Tensor, step: float):
    n = len(y)
    a = draw["a"]
    f0 = torch.relu(draw["pre_train"]) @ a
    coef = xc.logistic_derivative(y * f0) * y
    pattern = coef[:, None] * (draw["pre_train"] > 0).to(y.dtype)      # n × m
    shift = -(step / n) * a[None, :]                                    # the step's scale
    pre_train = draw["pre_train"] + shift * (draw["gram_train"] @ pattern)
    pre_test = draw["pre_test"] + shift * (draw["gram_test"] @ pattern)
    # the linear one-step classifier ⟨(α/8n) Σ_i y_i x_i, x⟩ through the same Gram matrices
    linear_test = step / (8 * n) * (draw["gram_test"] @ y)
    return torch.relu(pre_train) @ a, torch.relu(pre_test) @ a, linear_test


def xor_one_step_state(noise_rate: float = 0.15, p: int = 5000, mu_norm: float = 20.0,
                       n: int = 50, width: int = 100, init_std: float = 1e-6,
                       step: float = 0.02, n_test: int = 500, seed: int = 0) -> dict:
    """The net after one GD step at this flip rate, and the same over ``XOR_RATES``.

    Returns ``margins`` (y_i·f⁽¹⁾(x_i) on the noisy training labels), ``flipped``,
    ``train_accuracy`` (noisy labels), ``flipped_fitted`` (share of flipped labels fitted),
    ``test_clean`` (clean test accuracy), ``linear_test_clean`` (the linear classifier's),
    the Bayes accuracies ``bayes_noisy``/``bayes_clean``, and ``curve`` (the same numbers
    against ``rates``).
    """
    draw = _xor_draw(n, p, float(mu_norm), width, float(init_std), n_test, seed)

    def at(rate):
        y, flipped = _flipped_labels(draw, n, p, mu_norm, rate, seed)
        f_train, f_test, linear = _one_step_outputs(draw, y, step)
        return {"margins": (y * f_train).numpy(), "flipped": flipped.numpy(),
                "train_accuracy": xc.accuracy(f_train, y),
                "flipped_fitted": (float(((y * f_train)[flipped] > 0).double().mean())
                                   if bool(flipped.any()) else float("nan")),
                "test_clean": xc.accuracy(f_test, draw["y_test"]),
                "linear_test_clean": xc.accuracy(linear, draw["y_test"])}

    state = at(noise_rate)
    curve = [at(rate) for rate in XOR_RATES]
    state["curve"] = {key: np.array([c[key] for c in curve])
                      for key in ("train_accuracy", "flipped_fitted", "test_clean")}
    state["rates"] = XOR_RATES
    state["bayes_clean"] = xc.bayes_accuracy(mu_norm, noise_rate, clean=True)
    state["bayes_noisy"] = xc.bayes_accuracy(mu_norm, noise_rate)
    state.update(noise_rate=float(noise_rate), p=p, mu_norm=float(mu_norm), n=n, step=step)
    return state


def draw_xor_one_step(state: dict):
    fig, (ax_m, ax_c) = _figure(2, 4.3, 3.3)
    margins, flipped = state["margins"], state["flipped"]
    index = np.arange(len(margins))
    ax_m.bar(index[~flipped], margins[~flipped], color="tab:blue", label="clean label")
    ax_m.bar(index[flipped], margins[flipped], color="tab:red", label="flipped label")
    ax_m.axhline(0, color="k", lw=0.8)
    ax_m.set(xlabel="training example", ylabel="y_i · f⁽¹⁾(x_i)",
             title=f"after one step: train {state['train_accuracy']:.0%}, "
                   f"clean test {state['test_clean']:.0%}")
    ax_m.legend(fontsize=7)
    rates, curve = state["rates"], state["curve"]
    ax_c.plot(rates, curve["train_accuracy"], "o-", ms=3, label="train (noisy labels)")
    ax_c.plot(rates, curve["flipped_fitted"], "s--", ms=3, label="flipped labels fitted")
    ax_c.plot(rates, curve["test_clean"], "^-", ms=3, label="clean test")
    ax_c.plot(rates, 1 - rates, "k:", label="Bayes on noisy labels ≈ 1 − η")
    ax_c.axvline(state["noise_rate"], color="tab:purple", lw=1.5)
    ax_c.set(xlabel="label-flip rate η", ylabel="accuracy after one step", ylim=(0, 1.05),
             title=f"p = {state['p']}, n = {state['n']}, ‖μ‖ = {state['mu_norm']:g}")
    ax_c.legend(fontsize=7, loc="lower left")
    return fig


XOR = Explorer("xor_one_step", xor_one_step_state, draw_xor_one_step,
               dict(noise_rate=0.15, p=5000, mu_norm=20.0, n=50),
               slowest=dict(noise_rate=0.3, p=8000, mu_norm=20.0, n=100),
               clear_caches=_xor_draw.cache_clear)


def xor_one_step(static: bool = False):
    """Move the flip rate (and p, ‖μ‖, n); watch whether one step still fits every label
    and where the clean test accuracy sits."""
    def controls(widgets, d):
        return {
            "noise_rate": widgets.FloatSlider(d["noise_rate"], min=0.0, max=0.45, step=0.01,
                                              continuous_update=False,
                                              **_slider_style(widgets, "flip rate η")),
            "p": widgets.IntSlider(d["p"], min=500, max=8000, step=500, continuous_update=False,
                                   **_slider_style(widgets, "dimension p")),
            "mu_norm": widgets.FloatSlider(d["mu_norm"], min=2.0, max=40.0, step=1.0,
                                           continuous_update=False,
                                           **_slider_style(widgets, "‖μ‖")),
            "n": widgets.IntSlider(d["n"], min=10, max=100, step=10, continuous_update=False,
                                   **_slider_style(widgets, "training points n")),
        }

    return _live(XOR, controls, static)


# ---------------------------------------------------------------- (e) fractal zoom
#
# Sohl-Dickstein 2024: the linear (identity) width-16 net on N = 16 points, one network
# per pixel of the (η₀, η₁) plane (toy_models.fractal.train_plane), first window
# 10^0.8…10^2.8 × 10^1…10^3 as in `sohldickstein2024-linear`. A 64² plane of 50 steps
# is ≈ 2×10⁵ pixel-steps of a 16 × 16 × 16 product each: a few tenths of a second.

FRACTAL_WINDOW = (0.8, 2.8, 1.0, 3.0)
FRACTAL_PROBLEM = dict(activation="identity", n_data=16, seed=0)


@functools.lru_cache(maxsize=1)
def _fractal_problem():
    return fractal.make_problem(**FRACTAL_PROBLEM)


def fractal_window(centre_x: float, centre_y: float, zoom: int) -> tuple[float, ...]:
    """The first window 2^zoom× narrower on both axes, centred at (centre_x, centre_y)
    (log10 η₀, log10 η₁)."""
    half_x = (FRACTAL_WINDOW[1] - FRACTAL_WINDOW[0]) / 2 ** (zoom + 1)
    half_y = (FRACTAL_WINDOW[3] - FRACTAL_WINDOW[2]) / 2 ** (zoom + 1)
    return (centre_x - half_x, centre_x + half_x, centre_y - half_y, centre_y + half_y)


def fractal_plane(window, resolution: int, steps: int) -> np.ndarray:
    """Scores (rows: η₁, columns: η₀) of the window's pixels; negative = converged."""
    from experiments import fractal_analysis as fa

    gx, gy = np.meshgrid(fa.axis_values(window[0], window[1], resolution),
                         fa.axis_values(window[2], window[3], resolution))
    return fractal.train_plane(_fractal_problem(), gx, gy, steps, workers=1).numpy()


@functools.lru_cache(maxsize=4)
def _overview(steps: int, resolution: int = 32) -> np.ndarray:
    return fractal_plane(FRACTAL_WINDOW, resolution, steps)


def fractal_zoom_state(centre_x: float = 1.387, centre_y: float = 1.397, zoom: int = 2,
                       steps: int = 50, resolution: int = 64) -> dict:
    """The zoomed window's plane, its phase statistics, and a coarse overview.

    Returns ``window``, ``score`` (resolution²), ``converged_fraction``, ``edge_fraction``
    (pixels with both phases in their 2×2 neighbourhood), ``overview`` (32² of the first
    window, same steps) and the inputs.
    """
    from experiments import fractal_analysis as fa

    window = fractal_window(centre_x, centre_y, zoom)
    score = fractal_plane(window, resolution, steps)
    return {"window": window, "score": score, "zoom": zoom, "steps": steps,
            "converged_fraction": float(np.mean(score < 0)),
            "edge_fraction": float(fa.boundary_pixels(score).mean()),
            "overview": _overview(steps)}


def draw_fractal_zoom(state: dict):
    from matplotlib.patches import Rectangle

    from experiments.recipes._sohldickstein2024 import paper_colours

    fig, (ax_all, ax_zoom) = _figure(2, 3.6, 3.4)
    w = state["window"]
    for ax, score, extent in ((ax_all, state["overview"], FRACTAL_WINDOW),
                              (ax_zoom, state["score"], w)):
        ax.imshow(paper_colours(score), origin="lower", cmap="Spectral", vmin=-1, vmax=1,
                  extent=list(extent), aspect="auto", interpolation="nearest")
        ax.set(xlabel="log10 η₀ (input layer)", ylabel="log10 η₁ (output layer)")
        ax.grid(False)
    ax_all.add_patch(Rectangle((w[0], w[2]), w[1] - w[0], w[3] - w[2], fill=False,
                               color="k", lw=1.2))
    ax_all.set(title=f"first window, {state['steps']} GD steps\nblue: trains, red: diverges")
    ax_zoom.set(title=f"zoom 2^{state['zoom']}: {w[1] - w[0]:.3g} decades wide\nconverged "
                      f"{state['converged_fraction']:.0%}, edge pixels "
                      f"{state['edge_fraction']:.1%}")
    return fig


FRACTAL = Explorer("fractal_zoom", fractal_zoom_state, draw_fractal_zoom,
                   dict(centre_x=1.387, centre_y=1.397, zoom=2, steps=50),
                   slowest=dict(centre_x=1.3795, centre_y=1.391, zoom=6, steps=60),
                   clear_caches=_overview.cache_clear)


def fractal_zoom(static: bool = False):
    """Move the zoom and the centre; watch the boundary between the blue (trains) and
    red (diverges) phases keep its structure as the window narrows."""
    def controls(widgets, d):
        return {
            "zoom": widgets.IntSlider(d["zoom"], min=0, max=12, continuous_update=False,
                                      **_slider_style(widgets, "zoom (2^k)")),
            "centre_x": widgets.FloatSlider(d["centre_x"], min=FRACTAL_WINDOW[0],
                                            max=FRACTAL_WINDOW[1], step=1e-4,
                                            readout_format=".4f", continuous_update=False,
                                            **_slider_style(widgets, "centre log10 η₀")),
            "centre_y": widgets.FloatSlider(d["centre_y"], min=FRACTAL_WINDOW[2],
                                            max=FRACTAL_WINDOW[3], step=1e-4,
                                            readout_format=".4f", continuous_update=False,
                                            **_slider_style(widgets, "centre log10 η₁")),
            "steps": widgets.IntSlider(d["steps"], min=20, max=60, step=10,
                                       continuous_update=False,
                                       **_slider_style(widgets, "GD steps")),
        }

    return _live(FRACTAL, controls, static)


EXPLORERS = {e.name: e for e in (QUADRATIC, NTK_EXPLORER, SOFTMAX, XOR, FRACTAL)}
WIDGETS = {"quadratic_stability": quadratic_stability, "ntk_concentration": ntk_concentration,
           "softmax_collapse": softmax_collapse, "xor_one_step": xor_one_step,
           "fractal_zoom": fractal_zoom}


def update_seconds(name: str, values: dict | None = None, repeats: int = 3) -> float:
    """Median wall time of one slider update (compute, draw, PNG) with cold caches."""
    explorer = EXPLORERS[name]
    values = explorer.slowest if values is None else values
    times = []
    for _ in range(repeats):
        explorer.clear_caches()
        start = time.perf_counter()
        _png(explorer.figure(**values))
        times.append(time.perf_counter() - start)
    return float(np.median(times))
