"""toy_models.stability against closed forms from the literature and direct simulation."""

from __future__ import annotations

import numpy as np
import pytest

from toy_models import stability


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9, 0.99])
def test_thresholds_match_the_known_closed_forms(beta):
    assert stability.critical_step("gd") == pytest.approx(2.0)
    assert stability.critical_step("heavy_ball", beta) == pytest.approx(2 + 2 * beta)
    assert stability.critical_step("nesterov", beta) == pytest.approx(
        (2 + 2 * beta) / (1 + 2 * beta))


def test_dampening_rescales_heavy_ball():
    assert stability.critical_step("heavy_ball", 0.9, dampening=0.9) == pytest.approx(38.0)


def simulate(method, a, beta, steps=3000):
    """Iterate torch.optim.SGD's update on f = ½x² (λ = 1, η = a) with plain floats."""
    x, buf = 1.0, None
    for _ in range(steps):
        g = x
        if method == "gd":
            d = g
        else:
            buf = g if buf is None else beta * buf + g
            d = g + beta * buf if method == "nesterov" else buf
        x -= a * d
        if abs(x) > 1e12:
            return np.inf
    return abs(x)


@pytest.mark.parametrize("method", stability.METHODS)
@pytest.mark.parametrize("beta", [0.5, 0.9])
def test_direct_simulation_diverges_exactly_past_the_threshold(method, beta):
    a_star = stability.critical_step(method, beta)
    assert simulate(method, 0.995 * a_star, beta) < 1e-3
    assert simulate(method, 1.005 * a_star, beta) > 1e3


@pytest.mark.parametrize("method", stability.METHODS)
def test_spectral_radius_crosses_one_at_the_threshold(method):
    a_star = stability.critical_step(method, 0.9)
    below, above = stability.spectral_radius(method, [0.999 * a_star, 1.001 * a_star], 0.9)
    assert below < 1 < above


@pytest.mark.parametrize("method", stability.METHODS)
def test_the_other_jury_conditions_hold_up_to_the_threshold(method):
    """p(−1) = 0 is the first condition to fail, so a* is the threshold, not a later root."""
    import sympy as sp

    for beta in (0.0, 0.3, 0.9):
        a_star = stability.critical_step(method, beta)
        for a_value in np.linspace(1e-3, a_star * 0.999, 50):
            values = [float(c.subs({stability.a: a_value, stability.mu: beta,
                                    stability.tau: 0}))
                      for c in stability.jury_conditions(method)]
            assert min(values) > 0, (method, beta, a_value, values)
    assert isinstance(stability.threshold_expression("nesterov"), sp.Expr)
