"""Analytic and empirical NTKs: paper anchors, independent integrals, three methods agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from experiments import losses
from experiments.probes import curvature
from experiments.probes import ntk as probe
from toy_models import ntk
from toy_models.networks import mlp, seeded

GAMMAS = np.array([0, np.pi / 4, np.pi / 2, 3 * np.pi / 4, np.pi])


def test_jacot_figure1_anchor_values():
    """Θ∞ of 3 hidden ReLU layers, β = 0.1, σ_w = 1 on the unit circle (reference note §1.3,
    neural-tangents' analytic kernel)."""
    values = ntk.ntk(ntk.circle([0.0]), ntk.circle(GAMMAS), depth=4)[0]
    np.testing.assert_allclose(values, [0.2825, 0.170, 0.0927, 0.0660, 0.0644], rtol=2e-3,
                               atol=2e-4)


@pytest.mark.parametrize("activation, fn, dfn", [
    ("relu", lambda u: np.maximum(u, 0), lambda u: (u > 0).astype(float)),
    ("erf", lambda u: __import__("scipy.special").special.erf(u),
     lambda u: 2 / np.sqrt(np.pi) * np.exp(-u**2)),
])
def test_one_hidden_layer_kernels_match_monte_carlo_integrals(activation, fn, dfn):
    rng = np.random.default_rng(0)
    x = np.array([[1.0, 0.3, -0.5], [0.2, -1.0, 0.8]])
    sigma, theta = ntk.kernels(x, x, depth=2, activation=activation, sigma_w=1.3, beta=0.2)
    cov1 = 1.3**2 * x @ x.T / 3 + 0.2**2
    samples = rng.multivariate_normal(np.zeros(2), cov1, size=2_000_000)
    e_phi = np.mean(fn(samples[:, 0]) * fn(samples[:, 1]))
    e_dphi = np.mean(dfn(samples[:, 0]) * dfn(samples[:, 1]))
    assert sigma[0, 1] == pytest.approx(1.3**2 * e_phi + 0.2**2, rel=5e-3)
    assert theta[0, 1] == pytest.approx(cov1[0, 1] * 1.3**2 * e_dphi + sigma[0, 1], rel=5e-3)


def test_wide_network_kernel_at_init_approaches_the_analytic_one():
    x0, xs = torch.tensor(ntk.circle([0.0])), torch.tensor(ntk.circle(GAMMAS))
    analytic = ntk.ntk(ntk.circle([0.0]), ntk.circle(GAMMAS), depth=4)[0]
    samples = []
    for seed in range(4):
        torch.manual_seed(seed)
        net = ntk.ntk_mlp([2, 1024, 1024, 1024, 1])
        samples.append(probe.empirical_ntk(net, x0, xs, mode="trace")[0].numpy())
    mean, spread = np.mean(samples, 0), np.std(samples, 0, ddof=1) / 2
    assert np.all(np.abs(mean - analytic) < 4 * spread + 0.01 * analytic)


@pytest.mark.parametrize("build", ["torch_mlp", "ntk_mlp"])
def test_three_methods_agree_in_every_mode(build):
    torch.manual_seed(0)
    net = (seeded(0, mlp, [3, 7, 5, 2], "tanh", dtype=torch.float64) if build == "torch_mlp"
           else ntk.ntk_mlp([3, 7, 5, 2], activation="erf"))
    x1 = torch.randn(9, 3, dtype=torch.float64)
    x2 = torch.randn(5, 3, dtype=torch.float64)
    for mode, args in (("full", (x1, x2)), ("trace", (x1, x2)), ("diagonal", (x1,))):
        kernels = [probe.empirical_ntk(net, *args, method=m, mode=mode, chunk_size=4)
                   for m in probe.METHODS]
        for k in kernels[1:]:
            torch.testing.assert_close(k, kernels[0], rtol=1e-10, atol=1e-12)
    # the Jacobian method against a dense Jacobian built by torch.autograd.functional
    flat = torch.nn.utils.parameters_to_vector(net.parameters()).detach()
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]

    def outputs(theta, x):
        pieces = torch.split(theta, [s.numel() for s in shapes])
        params = {n: t.view(s) for n, t, s in zip(names, pieces, shapes, strict=True)}
        return torch.func.functional_call(net, params, (x,)).reshape(-1)

    j1 = torch.autograd.functional.jacobian(lambda t: outputs(t, x1), flat)
    j2 = torch.autograd.functional.jacobian(lambda t: outputs(t, x2), flat)
    dense = (j1 @ j2.T).reshape(9, 2, 5, 2).permute(0, 2, 1, 3)
    torch.testing.assert_close(probe.empirical_ntk(net, x1, x2, method="structured"), dense)


def test_jacobian_method_computes_the_jacobian_once_for_a_set_with_itself(monkeypatch):
    net = seeded(0, mlp, [3, 7, 5, 2], "tanh", dtype=torch.float64)
    x = torch.randn(9, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rows = []
    original = probe._jacobians
    monkeypatch.setattr(probe, "_jacobians", lambda m, p, xb: rows.append(len(xb))
                        or original(m, p, xb))
    same = probe.empirical_ntk(net, x, method="jacobian", chunk_size=4)
    assert sum(rows) == 9  # each example's Jacobian once, not once per side
    rows.clear()
    diagonal = probe.empirical_ntk(net, x, method="jacobian", mode="diagonal", chunk_size=4)
    assert sum(rows) == 9
    rows.clear()
    separate = probe.empirical_ntk(net, x, x.clone(), method="jacobian", chunk_size=4)
    assert sum(rows) == 18
    torch.testing.assert_close(same, separate, rtol=0, atol=0)
    torch.testing.assert_close(diagonal, torch.diagonal(same, dim1=0, dim2=1).permute(2, 0, 1))


def test_linearised_dynamics_equal_explicit_iteration():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 6))
    theta = a @ a.T
    cross = rng.standard_normal((3, 6))
    f0, y, f0_test = rng.standard_normal(6), rng.standard_normal(6), rng.standard_normal(3)
    lr, steps = 0.3, np.array([0, 1, 5, 40])
    f, g, expected, expected_test = f0.copy(), f0_test.copy(), [], []
    for t in range(41):
        if t in steps:
            expected.append(f.copy())
            expected_test.append(g.copy())
        g = g - lr / 6 * cross @ (f - y)
        f = f - lr / 6 * theta @ (f - y)
    np.testing.assert_allclose(ntk.linearised_gd(theta, f0, y, lr, steps), expected,
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        ntk.linearised_test_outputs(cross, theta, f0_test, f0, y, lr, steps), expected_test,
        rtol=1e-9, atol=1e-12)
    flow = ntk.linearised_flow(theta, f0, y, lr, np.array([1e6]))[0]
    np.testing.assert_allclose(flow, y, atol=1e-8)


def test_ntk_and_gauss_newton_share_trace_and_top_eigenvalue():
    """For ½-MSE: G = JᵀJ/n, Θ = JJᵀ, so tr G = tr Θ/n and λmax(G) = λmax(Θ)/n; at an
    interpolating minimum G is the Hessian."""
    torch.manual_seed(0)
    net = seeded(0, mlp, [3, 16, 1], "tanh", dtype=torch.float64)
    x = torch.randn(10, 3, dtype=torch.float64)
    with torch.no_grad():
        y = net(x)  # the net interpolates its own outputs: a minimum with zero loss
    theta = probe.empirical_ntk(net, x, mode="trace").numpy()
    trace_h = curvature.gauss_newton_trace(net, losses.half_sum_mse, x, y)
    op = curvature.CurvatureOperator(net, losses.half_sum_mse, x, y)
    lam_h = curvature.top_eigenpairs(op, k=1, tol=1e-12).eigenvalues[0]
    assert trace_h == pytest.approx(np.trace(theta) / 10, rel=1e-10)
    assert lam_h == pytest.approx(np.linalg.eigvalsh(theta)[-1] / 10, rel=1e-8)


def test_kernel_distance_and_alignment():
    k = np.array([[2.0, 1.0], [1.0, 3.0]])
    assert probe.kernel_distance(k, 5 * k) == pytest.approx(0.0, abs=1e-12)
    assert probe.kernel_distance(np.eye(2), np.array([[0, 1], [1, 0]])) == pytest.approx(1.0)
    y = np.array([1.0, -1.0])
    assert probe.kernel_target_alignment(np.outer(y, y), y) == pytest.approx(1.0)
