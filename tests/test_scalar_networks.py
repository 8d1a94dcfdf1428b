"""toy_models.scalar_networks against autograd, integrated gradient flow and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from experiments.flows import rk4_step
from toy_models import scalar_networks as sn


def torch_loss(w: torch.Tensor, y: float) -> torch.Tensor:
    return 0.5 * (torch.prod(w) - y) ** 2


def dense_hessian(w: np.ndarray, y: float) -> np.ndarray:
    """The Hessian of ½(∏w − y)² by autograd (independent of the closed form)."""
    return torch.autograd.functional.hessian(lambda v: torch_loss(v, y),
                                             torch.tensor(w, dtype=torch.float64)).numpy()


def gradient_flow_field(y: float):
    """dw/dt = −∇L(w), written out independently: −(∏w − y)·∏_{j≠i} w_j."""
    def field(_t, w):
        return np.array([-(np.prod(w) - y) * np.prod(np.delete(w, i)) for i in range(len(w))])
    return field


def integrate_flow(w0: np.ndarray, y: float, t_end: float):
    """Gradient flow by scipy (DOP853, tight tolerances) to t_end, with dense output."""
    return solve_ivp(gradient_flow_field(y), (0.0, t_end), np.asarray(w0, dtype=np.float64),
                     method="DOP853", rtol=1e-12, atol=1e-14, dense_output=True)


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
@pytest.mark.parametrize("y", [1.0, -0.7, 2.5])
def test_gradient_and_gd_map_match_autograd(depth, y):
    rng = np.random.default_rng(depth)
    for w in rng.normal(size=(4, depth)):
        wt = torch.tensor(w, requires_grad=True)
        (grad,) = torch.autograd.grad(torch_loss(wt, y), wt)
        np.testing.assert_allclose(sn.gradient(w, y), grad.numpy(), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(sn.gd_step(w, 0.3, y), w - 0.3 * grad.numpy(), rtol=1e-13,
                                   atol=1e-15)
        assert sn.loss(w, y) == pytest.approx(float(torch_loss(wt.detach(), y)), rel=1e-14)


def test_batched_map_equals_row_by_row_and_handles_zeros():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 4))
    w[0, 2] = 0.0  # ∂f/∂w_i = ∏_{j≠i} w_j without division
    eta = rng.uniform(0.1, 0.5, size=(6, 1))
    rows = np.stack([sn.gd_step(w[i], eta[i, 0]) for i in range(6)])
    np.testing.assert_array_equal(sn.gd_step(w, eta), rows)
    np.testing.assert_allclose(sn.products_without_one(w[0]),
                               [np.prod(np.delete(w[0], i)) for i in range(4)])


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_hessian_closed_form_matches_autograd(depth):
    rng = np.random.default_rng(10 + depth)
    for w in rng.normal(size=(3, depth)):
        np.testing.assert_allclose(sn.hessian(w, 1.3), dense_hessian(w, 1.3), atol=1e-13)
        assert sn.sharpness(w, 1.3) == pytest.approx(np.linalg.eigvalsh(dense_hessian(w, 1.3))[-1],
                                                     rel=1e-12)


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_gfs_of_a_minimiser_is_its_sharpness(depth):
    rng = np.random.default_rng(20 + depth)
    y = 1.7
    w = np.exp(rng.normal(size=depth))
    w[-1] = y / np.prod(w[:-1])  # ∏w = y exactly (to rounding)
    top = np.linalg.eigvalsh(dense_hessian(w, y))[-1]
    assert sn.minimiser_sharpness(w) == pytest.approx(top, rel=1e-12)
    assert y ** 2 * np.sum(1 / w ** 2) == pytest.approx(top, rel=1e-12)
    assert sn.gfs_sharpness(w, y) == pytest.approx(top, rel=1e-12)
    np.testing.assert_allclose(sn.gfs_minimiser(w, y), w, rtol=1e-12)


def test_two_layer_closed_form_and_one_step_law():
    """D = 2: φ = √((w₁² − w₂²)² + 4y²), and one GD step multiplies w₁² − w₂² by 1 − η²r²."""
    rng = np.random.default_rng(3)
    y = 1.0
    for w in rng.normal(size=(20, 2)) * 1.5:
        delta = w[0] ** 2 - w[1] ** 2
        assert sn.gfs_sharpness(w, y) == pytest.approx(np.sqrt(delta ** 2 + 4 * y ** 2),
                                                       rel=1e-14)
        eta = rng.uniform(0.05, 1.5)
        r = w[0] * w[1] - y
        after = sn.gfs_sharpness(sn.gd_step(w, eta, y), y)
        expected = np.sqrt((delta * (1 - eta ** 2 * r ** 2)) ** 2 + 4 * y ** 2)
        assert after == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("w0, y", [
    ([0.3, 1.4, 0.9], 1.0),          # positive weights, below the target
    ([1.9, 0.7, 1.2, 0.8], 1.0),     # above the target
    ([-0.5, 1.2, 0.9], 1.0),         # wrong sign: the smallest |w_i| crosses zero
    ([0.0, 1.3, -0.8], -1.0),        # a zero weight takes the sign that fits y
    ([1.1, -0.6], 0.8),              # D = 2, wrong sign
])
def test_gfs_sharpness_matches_integrated_gradient_flow(w0, y):
    w0 = np.asarray(w0)
    flow = integrate_flow(w0, y, 400.0)
    end = flow.y[:, -1]
    assert sn.loss(end, y) < 1e-20  # the flow has reached a minimiser
    top = np.linalg.eigvalsh(dense_hessian(end, y))[-1]
    assert sn.gfs_sharpness(w0, y) == pytest.approx(top, rel=1e-8)
    np.testing.assert_allclose(sn.gfs_minimiser(w0, y), end, rtol=1e-8, atol=1e-10)
    # the differences w_i² − w_1² stay put along the flow
    times = np.linspace(0.0, 400.0, 200)
    along = sn.conserved(flow.sol(times).T)
    np.testing.assert_allclose(along, np.broadcast_to(sn.conserved(w0), along.shape),
                               atol=1e-9)


def test_gfs_sharpness_matches_the_projects_rk4():
    """The same check with experiments.flows.rk4_step (step h = 0.05/S) on numpy vectors.

    RK4's global error is O((hS)⁴): 1e-7 relative at hS = 0.1 here, 16× less at 0.05.
    """
    w = np.array([0.4, 1.6, 1.1, 0.7])
    phi = sn.gfs_sharpness(w)  # ≈ the largest sharpness met along this flow (it rises to it)
    h = 0.05 / phi

    def field(v):  # −(∏v − 1)·∏v/v_i: no zero weights on this path
        product = np.prod(v)
        return -(product - 1.0) * product / v

    for _ in range(20000):
        w = rk4_step(field, w, h)
        if abs(np.prod(w) - 1.0) < 1e-13:
            break
    assert sn.loss(w) < 1e-26
    assert sn.gfs_sharpness(np.array([0.4, 1.6, 1.1, 0.7])) == pytest.approx(
        np.linalg.eigvalsh(dense_hessian(w, 1.0))[-1], rel=1e-8)


def test_gfs_sharpness_by_an_independent_root_find():
    """brentq on ∏(w_i² + c) = y² (no logs, no Newton) gives the same φ, in a batch too."""
    from scipy.optimize import brentq

    rng = np.random.default_rng(5)
    w = rng.normal(size=(30, 4)) * rng.uniform(0.1, 3.0, size=(30, 1))
    y = 0.9
    phi = sn.gfs_sharpness(w, y)
    for row, value in zip(w, phi, strict=True):
        squares = row ** 2
        c = brentq(lambda c, s=squares: np.prod(s + c) - y ** 2, -squares.min() * (1 - 1e-15),
                   10.0 + abs(y), xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
        assert value == pytest.approx(y ** 2 * np.sum(1 / (squares + c)), rel=1e-9)
    # warm start changes nothing but speed
    _, root = sn.gfs_sharpness(w, y, with_root=True)
    np.testing.assert_allclose(sn.gfs_sharpness(w * 1.01, y, start=root),
                               sn.gfs_sharpness(w * 1.01, y), rtol=1e-14)


def test_conserved_quantities_are_exact_for_gradient_flow_not_for_gd():
    w = np.array([0.5, 1.5, 1.0])
    moved = sn.gd_step(w, 0.2)
    assert not np.allclose(sn.conserved(moved), sn.conserved(w), atol=1e-6)
    assert sn.conserved(w).shape == (2,)


def test_saddles_and_bad_targets():
    # the two smallest |w_i| tied with the wrong product sign: the flow stops at a saddle
    assert np.isnan(sn.gfs_sharpness([-0.5, 0.5, 2.0], 1.0))
    assert np.isnan(sn.gfs_sharpness([0.0, 0.0, 2.0], 1.0))
    assert np.all(np.isnan(sn.gfs_minimiser([0.7, -0.7], 1.0)))
    assert np.isnan(sn.gfs_sharpness([np.inf, 1.0], 1.0))
    with pytest.raises(ValueError, match="non-zero"):
        sn.gfs_sharpness([1.0, 2.0], 0.0)
