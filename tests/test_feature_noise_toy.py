"""toy_models.feature_noise against direct computation and a real SGD step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from experiments import losses
from toy_models import feature_noise as fn


def test_data_patches():
    data = fn.sample(12, 16, 2.0, 0.2, 0.5, n_weak_only=3, seed=0)
    u, v = fn.features(16, 2.0, 0.2)
    x, y = data["x"], data["y"]
    assert x.shape == (12, 3, 16) and data["strong"].tolist() == [True] * 9 + [False] * 3
    torch.testing.assert_close(x[:9, 0], y[:9, None] * u)          # strong patch y·u
    assert float(x[9:, 0].abs().max()) == 0.0                       # weak-only: no u
    torch.testing.assert_close(x[:, 1], y[:, None] * v)             # weak patch everywhere
    assert float((x[:, 2] @ u).abs().max()) == 0.0 == float((x[:, 2] @ v).abs().max())
    assert set(y.tolist()) <= {-1.0, 1.0}


def test_cnn_is_the_relu_squared_sum_over_filters_and_patches():
    net = fn.ReLU2CNN(8, 3, 0.7, seed=1)
    x = torch.randn(5, 3, 8, dtype=torch.float64)
    w = net.weight[0]
    manual = sum(torch.relu(x[:, p] @ w[j, r]) ** 2 * (1 if j == 0 else -1)
                 for j in range(2) for r in range(3) for p in range(3)) / 3
    torch.testing.assert_close(net(x), manual)


def test_copies_are_independent_networks():
    many = fn.ReLU2CNN(8, 3, 0.5, seed=(4, 5))
    one = fn.ReLU2CNN(8, 3, 0.5, seed=5)
    x = torch.randn(6, 2, 3, 8, dtype=torch.float64)
    torch.testing.assert_close(many(x)[:, 1], one(x[:, 1]))


def test_window_is_k_between_one_and_eight_fifths():
    lo, hi = fn.lr_window(8, 2.0)
    assert (lo, hi) == (0.5, 0.8)
    assert fn.map_constant(lo, 8, 2.0) == pytest.approx(1.0)
    assert fn.map_constant(hi, 8, 2.0) == pytest.approx(1.6)


@pytest.mark.parametrize("lr", [0.3, 0.6])
def test_one_sgd_step_on_a_strong_example_is_the_scalar_map(lr):
    """No weak feature, no noise: √(y f) after one torch SGD step = strong_map(√(y f))."""
    d, m, norm = 6, 4, 1.5
    data = fn.sample(1, d, norm, 0.0, 0.0, 0, seed=2)
    net = fn.ReLU2CNN(d, m, 0.3, seed=3)
    with torch.no_grad():   # all class-y filters fire on y·u, the others do not
        y = float(data["y"][0])
        idx = 0 if y > 0 else 1
        net.weight[0, idx, :, 0] = torch.tensor([0.2, 0.5, 0.4, 0.3]) * y
        net.weight[0, 1 - idx, :, 0] = -torch.tensor([0.2, 0.5, 0.4, 0.3]) * y
    c_before = math.sqrt(float(net(data["x"]).detach()[0]) * y)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    losses.mean_mse(net(data["x"]), data["y"]).mean().backward()
    optimizer.step()
    c_after = math.sqrt(float(net(data["x"]).detach()[0]) * y)
    k = fn.map_constant(lr, m, norm)
    assert c_after == pytest.approx(fn.strong_map(c_before, k), rel=1e-12)


def test_period_two_orbit_and_its_negative_bias():
    assert fn.period_two_orbit(0.5) == pytest.approx((1.0, 1.0))
    assert fn.oscillation_margin(0.5) == pytest.approx(0.0, abs=1e-9)
    for k in (1.05, 1.2):
        f1, f2 = fn.period_two_orbit(k)
        c1, c2 = math.sqrt(f1), math.sqrt(f2)
        assert fn.strong_map(c1, k) == pytest.approx(c2, rel=1e-9)
        assert fn.strong_map(c2, k) == pytest.approx(c1, rel=1e-9)
        assert f1 > 1 > f2 and (f1 - 1) + (f2 - 1) < 0          # the terms do not cancel
    assert 0.2 < fn.oscillation_margin(1.2) < 0.8               # inside Assumption 4's range
    with pytest.raises(ValueError):
        fn.period_two_orbit(1.5)                                # beyond period doubling


def test_signed_projection():
    weight = torch.zeros(2, 2, 3, dtype=torch.float64)
    weight[0, 0, 1], weight[1, 1, 1] = 2.0, -3.0
    v = torch.tensor([0.0, 0.5, 0.0], dtype=torch.float64)
    np.testing.assert_allclose(fn.signed_projection(weight, v).numpy(), [[1.0, 0.0], [0.0, 1.5]])


@pytest.mark.parametrize("k, share", [(1.2, 0.0), (1.2, 0.05), (1.2, 0.1), (1.1, 0.03)])
def test_margin_with_a_weak_share_is_the_orbit_of_the_shifted_fit(k, share):
    """Iterate the strong fit A ← A(1 − k(A + s − 1))² with a fixed weak share s directly
    (y f = A + s): min |y f − 1| on its attractor is (1 − s)·δ(k(1 − s))."""
    a = 0.3
    for _ in range(20_000):
        a = a * (1 - k * (a + share - 1)) ** 2
    deviations = []
    for _ in range(2):
        a = a * (1 - k * (a + share - 1)) ** 2
        deviations.append(abs(a + share - 1))
    assert fn.oscillation_margin(k, weak_share=share) == pytest.approx(min(deviations),
                                                                        rel=1e-7)


def test_the_fit_turns_stable_at_share_one_minus_one_over_k():
    assert fn.oscillation_margin(1.2, weak_share=1 - 1 / 1.2) == 0.0
    assert fn.oscillation_margin(1.2, weak_share=0.2) == 0.0
    assert fn.oscillation_margin(1.2, weak_share=0.16) > 0.0
    with pytest.raises(ValueError):
        fn.oscillation_margin(1.2, weak_share=1.0)
