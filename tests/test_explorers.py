"""The live explorers' numbers against closed forms and independent computations, and their
widgets built without a browser (``experiments.explorers``).

No test here times anything: the interactive-speed budget is a bench row
(``python -m experiments bench``, ``experiments/bench/explorers.py``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from experiments import explorers as ex
from toy_models import fractal, ntk
from toy_models import xor_clusters as xc

# ---------------------------------------------------------------- (a) quadratic stability


@pytest.mark.parametrize("momentum", [0.0, 0.3, 0.6, 0.9])
def test_quadratic_verdicts_are_the_closed_form_stability_regions(momentum):
    # grid points chosen off the three boundaries 2, 2 + 2β, (2 + 2β)/(1 + 2β)
    for a in np.arange(0.07, 4.2, 0.1):
        state = ex.quadratic_stability_state(step=a, momentum=momentum, steps=5)
        assert state["gd"]["stable"] == (abs(1 - a) < 1)
        assert state["heavy_ball"]["stable"] == (0 < a < 2 * (1 + momentum))
        assert state["nesterov"]["stable"] == (0 < a < (2 + 2 * momentum) / (1 + 2 * momentum))
        assert state["heavy_ball"]["threshold"] == pytest.approx(2 + 2 * momentum)
        assert state["nesterov"]["threshold"] == pytest.approx(
            (2 + 2 * momentum) / (1 + 2 * momentum))


@pytest.mark.parametrize("method", ["gd", "heavy_ball", "nesterov"])
def test_quadratic_iterates_are_torch_sgd_on_half_lambda_x_squared(method):
    lam, a, beta, steps = 4.0, 1.7, 0.6, 30
    state = ex.quadratic_stability_state(step=a, momentum=beta, steps=steps)
    x = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = torch.optim.SGD([x], lr=a / lam, momentum=0.0 if method == "gd" else beta,
                          nesterov=method == "nesterov")
    path = [1.0]
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * lam * x**2).sum().backward()
        opt.step()
        path.append(x.item())
    np.testing.assert_allclose(state[method]["x"], path, rtol=1e-10, atol=1e-14)


def test_quadratic_spectral_radius_is_the_decay_rate_of_the_iterates():
    state = ex.quadratic_stability_state(step=0.5, momentum=0.0, steps=20)
    assert state["gd"]["radius"] == pytest.approx(0.5)  # |1 − a|
    np.testing.assert_allclose(state["gd"]["x"], 0.5 ** np.arange(21))


# ---------------------------------------------------------------- (b) NTK concentration


def _ntk_by_autograd(width, depth, beta, seed, x0, x):
    """Θ(x₀, x) = Σ_p ∂_p f(x₀)·∂_p f(x), one gradient per input (no probe code)."""
    torch.manual_seed(seed)
    net = ntk.ntk_mlp([2] + [width] * (depth - 1) + [1], beta=beta, dtype=torch.float32)

    def gradient(point):
        out = net(point[None])[0, 0]
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(out, net.parameters())])

    g0 = gradient(x0).double()
    return np.array([float(g0 @ gradient(xi).double()) for xi in x])


def test_sampled_kernels_are_the_gradient_inner_products_of_the_same_nets():
    state = ex.ntk_concentration_state(width=32, nets=2, depth=3, beta=0.2, n_angles=7)
    x0 = torch.tensor(ntk.circle([0.0]), dtype=torch.float32)[0]
    x = torch.tensor(ntk.circle(state["gamma"]), dtype=torch.float32)
    for i, curve in enumerate(state["samples"]):
        np.testing.assert_allclose(curve, _ntk_by_autograd(32, 3, 0.2, i, x0, x), rtol=1e-4)


def test_analytic_kernel_and_the_n_to_the_minus_half_law():
    before = torch.random.get_rng_state()
    state = ex.ntk_concentration_state(width=1024, nets=5, depth=4, beta=0.1, n_angles=25)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global RNG is untouched
    # Jacot's depth-4 ReLU kernel at γ = 0 (β = 0.1): 0.2825, as in tests/test_ntk.py
    assert state["analytic"][12] == pytest.approx(0.2825, abs=1e-4)
    assert list(state["widths"]) == [16, 32, 64, 128, 256, 512, 1024]
    # the spread of a finite-width kernel around Θ∞ shrinks like n^(−1/2) (Jacot 2018, Thm 1)
    assert -0.8 < ex.deviation_slope(state) < -0.3
    assert state["deviation"][-1].mean() < state["deviation"][0].mean() / 4
    with pytest.raises(ValueError, match="width"):
        ex.ntk_concentration_state(width=100)


# ---------------------------------------------------------------- (c) Softmax Collapse


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("classes", [2, 12, 113])
def test_collapse_happens_between_the_two_absorption_gaps(dtype, classes):
    state = ex.softmax_collapse_state(dtype=dtype, classes=classes)
    p = -math.log2(torch.finfo(ex.SOFTMAX_DTYPES[dtype]).eps) + 1
    single, guaranteed = p * math.log(2), p * math.log(2) + math.log(classes - 1)
    assert state["single"] == pytest.approx(single)
    assert state["guaranteed"] == pytest.approx(guaranteed)
    # the logits themselves are rounded to the dtype, so a gap moves by up to its spacing;
    # the grid of gaps adds one step (0.05)
    slack = 0.05 + guaranteed * torch.finfo(ex.SOFTMAX_DTYPES[dtype]).eps
    gaps, collapsed = state["gaps"], state["collapsed"]
    assert not collapsed[gaps < single - slack].any()
    assert collapsed[gaps > guaranteed + slack].all()
    assert single - slack <= state["first_collapsed"] <= guaranteed + slack


@pytest.mark.parametrize("dtype, np_dtype", [("float16", np.float16), ("float32", np.float32)])
def test_collapsed_sum_against_a_direct_sum_of_the_rounded_terms(dtype, np_dtype):
    classes = 113
    p = {"float16": 11, "float32": 24}[dtype]
    half_ulp = 2.0**-p
    gaps = np.arange(0.0, 40.0, 0.25)
    total = ex.collapsed_sum(gaps, classes, ex.SOFTMAX_DTYPES[dtype])
    for gap, value in zip(gaps, total, strict=True):
        terms = np.exp(np.array([0.0] + [-gap] * (classes - 1), dtype=np_dtype))
        exact = math.fsum(float(t) for t in terms)  # the rounded terms, summed exactly
        assert value == pytest.approx(exact, rel=classes * float(np.finfo(np_dtype).eps))
        if exact - 1 < 0.5 * half_ulp:  # the small terms together cannot move the 1
            assert value == 1.0
        elif float(terms[1]) > 2 * half_ulp:  # one of them alone moves it, in any order
            assert value > 1.0
        # in between (Σ small > half-ulp, each one below it) the order of the sum decides


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_population_collapse_fraction_is_bracketed_by_per_row_conditions(dtype):
    state = ex.softmax_collapse_state(dtype=dtype, classes=113)
    rows = ex.logit_population(113)
    p = -math.log2(torch.finfo(ex.SOFTMAX_DTYPES[dtype]).eps) + 1
    for gap, fraction in zip(state["pop_gaps"], state["fraction"][dtype], strict=True):
        z = rows * gap
        small = np.sort(z.max(1, keepdims=True) - z, axis=1)[:, 1:]  # gaps to the top logit
        runners = np.exp(-small)
        must = np.mean(runners.sum(1) < 0.5 * 2.0**-p)  # the others cannot move the 1
        can = np.mean(runners[:, 0] <= 2 * 2.0**-p)  # the runner-up alone is absorbed
        assert must - 1e-12 <= fraction <= can + 1e-12
    assert state["fraction"][dtype][0] == 0.0


# ---------------------------------------------------------------- (d) XOR one-step classifier


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4])
def test_one_step_outputs_equal_the_exact_gd_map(rate):
    n, p, mu, width, n_test, seed = 20, 300, 3.0, 10, 40, 5
    state = ex.xor_one_step_state(noise_rate=rate, p=p, mu_norm=mu, n=n, width=width,
                                  init_std=1e-3, step=0.5, n_test=n_test, seed=seed)
    train = xc.sample(n, p, mu, rate, seed)
    test = xc.sample(n_test, p, mu, 0.0, seed + 1)
    net = xc.TwoLayerReLU(p, width, 1e-3, seed=seed)
    w1 = xc.gd_step(net.weight.detach(), net.a, train["x"], train["y"], 0.5)
    f_train = torch.relu(train["x"] @ w1.T) @ net.a
    f_test = torch.relu(test["x"] @ w1.T) @ net.a
    np.testing.assert_allclose(state["margins"], (train["y"] * f_train).numpy(), rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_array_equal(state["flipped"], train["flipped"].numpy())
    assert state["test_clean"] == xc.accuracy(f_test, test["y_clean"])
    direction = xc.one_step_direction(train["x"], train["y"], 0.5)
    assert state["linear_test_clean"] == xc.accuracy(test["x"] @ direction, test["y_clean"])


def test_one_step_fits_every_label_and_stays_at_chance_in_high_dimension():
    # p ≫ n‖μ‖²-ish (p = 5,000, n = 50, ‖μ‖ = 20): the self term of each training point
    # wins, so one step fits every label, flipped or not; the step is nearly linear, and
    # a linear classifier is at chance on XOR clusters (Xu et al. 2024, §1 of the page)
    state = ex.xor_one_step_state()
    assert state["train_accuracy"] == 1.0 and state["flipped_fitted"] == 1.0
    assert 0.4 < state["test_clean"] < 0.6  # 500 test points: 4.5 standard deviations
    assert state["bayes_noisy"] == pytest.approx(0.85) and state["bayes_clean"] == 1.0
    flipped = [ex._flipped_labels(ex._xor_draw(50, 5000, 20.0, 100, 1e-6, 500, 0), 50, 5000,
                                  20.0, r, 0)[1] for r in state["rates"]]
    for smaller, larger in zip(flipped, flipped[1:], strict=False):  # nested flipped sets
        assert bool((larger | ~smaller).all())
    assert state["curve"]["train_accuracy"].shape == state["rates"].shape


# ---------------------------------------------------------------- (e) fractal zoom


def _score_by_sgd(lr0: float, lr1: float, steps: int) -> float:
    """One pixel: the identity net trained by torch.optim.SGD with a learning rate per
    layer, scored from the definition (Sohl-Dickstein 2024, §4)."""
    problem = fractal.make_problem(**ex.FRACTAL_PROBLEM)
    w0 = torch.nn.Parameter(problem.w0.clone())
    w1 = torch.nn.Parameter(problem.w1.clone())
    opt = torch.optim.SGD([{"params": [w0], "lr": lr0}, {"params": [w1], "lr": lr1}])
    losses = []
    for _ in range(steps):
        loss = ((0.25 * problem.x @ w0) @ w1 / 16 - problem.y).pow(2).mean()  # α₀ = √(1/16)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    v = np.nan_to_num(np.array(losses), nan=1e6, posinf=1e6) / losses[0]
    v = np.minimum(v, 1e6)
    return -v.sum() if v[-20:].mean() < 1 else (1 / v).sum()


def test_fractal_pixels_are_torch_sgd_runs_of_their_learning_rates():
    state = ex.fractal_zoom_state(centre_x=1.8, centre_y=2.0, zoom=0, steps=30,
                                  resolution=16)
    assert state["window"] == pytest.approx(ex.FRACTAL_WINDOW)
    xs = 10.0 ** np.linspace(0.8, 2.8, 16)
    ys = 10.0 ** np.linspace(1.0, 3.0, 16)
    for row, col in [(0, 0), (2, 3), (15, 15), (8, 4)]:
        expected = _score_by_sgd(xs[col], ys[row], 30)
        assert state["score"][row, col] == pytest.approx(expected, rel=1e-6)
    assert (state["score"] < 0).any() and (state["score"] >= 0).any()  # both phases
    assert state["converged_fraction"] == np.mean(state["score"] < 0)


def test_fractal_window_narrows_by_two_per_zoom_level():
    for k in range(6):
        lo_x, hi_x, lo_y, hi_y = ex.fractal_window(1.5, 2.5, k)
        assert hi_x - lo_x == pytest.approx(2.0 / 2**k)
        assert hi_y - lo_y == pytest.approx(2.0 / 2**k)
        assert (lo_x + hi_x) / 2 == pytest.approx(1.5) and (lo_y + hi_y) / 2 == pytest.approx(2.5)


# ---------------------------------------------------------------- widgets and static figures


@pytest.mark.parametrize("name", sorted(ex.WIDGETS))
def test_static_fallback_draws_the_default_state(name, monkeypatch):
    from matplotlib.figure import Figure

    figure = ex.WIDGETS[name](static=True)
    assert isinstance(figure, Figure) and len(figure.axes) == 2
    assert ex._png(figure).startswith(b"\x89PNG")
    monkeypatch.setattr(ex, "_ipywidgets", lambda: None)  # as where ipywidgets is missing
    assert isinstance(ex.WIDGETS[name](), Figure)


@pytest.mark.parametrize("name", sorted(ex.WIDGETS))
def test_widget_builds_and_redraws_without_a_display(name):
    pytest.importorskip("ipywidgets")
    box = ex.WIDGETS[name]()
    bundle = box._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "image/png" in bundle  # the default state for pages rendered without a kernel
    assert box.static_png.startswith(b"\x89PNG")
    assert set(box.controls) <= set(ex.EXPLORERS[name].defaults)
    image = box.children[1]
    control = next(iter(box.controls.values()))
    before = bytes(image.value)
    control.value = control.options[0] if hasattr(control, "options") else control.min
    assert bytes(image.value) != before and bytes(image.value).startswith(b"\x89PNG")
    assert "updated in" in box.children[2].value


def test_bench_rows_give_one_verdict_per_explorer():
    from experiments.bench import explorers as bench_explorers

    rows = bench_explorers.rows(quick=True)
    assert [r.what.split(":")[0] for r in rows] == [f"explorer {n}" for n in ex.EXPLORERS]
    for row in rows:
        assert row.target == "<= 1 s" and isinstance(row.met, bool)
        assert float(row.measured.split()[0]) > 0
