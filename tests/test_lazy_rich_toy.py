"""toy_models.lazy_rich against closed forms, numpy and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.polynomial import hermite_e

from experiments.probes.ntk import empirical_ntk
from toy_models import lazy_rich as lr
from toy_models import ntk as ntk_theory


@pytest.mark.parametrize("k", range(7))
def test_hermite_matches_numpy(k):
    z = np.random.default_rng(k).normal(size=50) * 2
    basis = np.zeros(k + 1)
    basis[k] = 1.0
    np.testing.assert_allclose(lr.hermite_e(k, z), hermite_e.hermeval(z, basis),
                               rtol=1e-12, atol=1e-12)


def test_hermite_orthogonality_by_monte_carlo():
    z = np.random.default_rng(0).normal(size=400_000)
    for j, k in ((3, 1), (2, 0), (3, 2), (4, 2)):
        product = lr.hermite_e(j, z) * lr.hermite_e(k, z)
        se = product.std() / math.sqrt(len(z))
        assert abs(product.mean()) < 5 * se, (j, k, product.mean(), se)
    for k in range(4):  # E[He_k²] = k!
        square = lr.hermite_e(k, z) ** 2
        se = square.std() / math.sqrt(len(z))
        assert abs(square.mean() - math.factorial(k)) <= 5 * se + 1e-12


def test_target_second_moment_and_paper_target():
    beta = lr.direction(7, 3)
    x, y = lr.sample(200_000, beta, lr.PAPER_TARGET, 4)
    assert float(beta.norm()) == pytest.approx(1.0, abs=1e-14)
    torch.testing.assert_close(y, (x @ beta) ** 2)  # He₀ + He₂ = z²
    coeffs = (0.5, -0.3, 0.8, 0.4)
    y = lr.target(x @ beta, coeffs)
    se = float((y**2).std()) / math.sqrt(len(y))
    assert float((y**2).mean()) == pytest.approx(lr.target_second_moment(coeffs), abs=5 * se)
    assert lr.target_second_moment(lr.PAPER_TARGET) == 3.0


def test_centred_output_is_zero_at_init_and_quadratic_form_is_exact():
    net = lr.LazyRichNet(9, 25, alpha=3.0, eps=0.4, seed=1)
    x = torch.randn(40, 9, dtype=torch.float64)
    with torch.no_grad():
        assert float(net(x).abs().max()) < 1e-13
        net.weight.add_(0.2 * torch.randn_like(net.weight))
    b, a = net.quadratic_form()
    with torch.no_grad():
        torch.testing.assert_close(net(x), x @ b + ((x @ a) * x).sum(1), rtol=1e-12,
                                   atol=1e-12)


def test_kernel_regression_matches_numpy_solve():
    rng = np.random.default_rng(5)
    features = rng.normal(size=(30, 50))
    k_all = features @ features.T
    y = rng.normal(size=20)
    expected = k_all[20:, :20] @ np.linalg.solve(k_all[:20, :20], y)
    got = lr.kernel_regression(torch.tensor(k_all[:20, :20]), torch.tensor(k_all[20:, :20]),
                               torch.tensor(y))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9, atol=1e-9)
    ridge = lr.kernel_regression(torch.tensor(k_all[:20, :20]), torch.tensor(k_all[20:, :20]),
                                 torch.tensor(y), ridge=0.7)
    np.testing.assert_allclose(ridge.numpy(), k_all[20:, :20] @ np.linalg.solve(
        k_all[:20, :20] + 0.7 * np.eye(20), y), rtol=1e-9, atol=1e-9)


def numpy_ntk(x1, x2, weight, alpha, eps):
    """Θ = J Jᵀ with J_i(x) = (α/N)(1 + ε w_iᵀx/√D) x/√D, in numpy."""
    width, dim = weight.shape
    a1 = 1 + eps * x1 @ weight.T / np.sqrt(dim)
    a2 = 1 + eps * x2 @ weight.T / np.sqrt(dim)
    return alpha**2 / (width**2 * dim) * (x1 @ x2.T) * (a1 @ a2.T)


def test_empirical_ntk_matches_numpy_and_the_infinite_width_limit():
    alpha, eps = 2.0, 0.6
    net = lr.LazyRichNet(6, 20, alpha, eps, seed=2)
    x = torch.randn(15, 6, dtype=torch.float64)
    got = empirical_ntk(net.body, x, mode="trace").numpy()
    np.testing.assert_allclose(got, numpy_ntk(x.numpy(), x.numpy(), net.weight0.numpy(), alpha,
                                              eps), rtol=1e-10, atol=1e-12)
    exact = empirical_ntk(net.body, x, method="jacobian", mode="trace").numpy()
    np.testing.assert_allclose(got, exact, rtol=1e-10, atol=1e-12)
    # N·Θ/α² → (xᵀx'/D)(1 + ε² xᵀx'/D): relative error ~ 1/√N
    errors = []
    for width in (100, 10_000):
        wide = lr.LazyRichNet(6, width, alpha, eps, seed=3)
        theta = empirical_ntk(wide.body, x, mode="trace")
        limit = lr.infinite_width_ntk(x, x, alpha, eps, width)
        errors.append(float((theta - limit).norm() / limit.norm()))
    assert errors[1] < errors[0] / 4 and errors[1] < 0.03, errors


def test_population_mse_matches_monte_carlo():
    beta = lr.direction(8, 11)
    net = lr.LazyRichNet(8, 30, alpha=1.5, eps=0.5, seed=12)
    with torch.no_grad():
        net.weight.add_(0.4 * torch.randn(30, 8, generator=torch.Generator().manual_seed(1),
                                          dtype=torch.float64))
    b, a = net.quadratic_form()
    x = torch.randn(400_000, 8, generator=torch.Generator().manual_seed(2),
                    dtype=torch.float64)
    with torch.no_grad():
        f = net(x)
    for coeffs in (lr.PAPER_TARGET, (0.3, -0.7, 1.2, 0.5)):
        errors = (f - lr.target(x @ beta, coeffs)) ** 2
        se = float(errors.std()) / math.sqrt(len(errors))
        assert lr.population_mse(b, a, beta, coeffs) == pytest.approx(float(errors.mean()),
                                                                      abs=5 * se)
    zero = torch.zeros(8, dtype=torch.float64)
    assert lr.population_mse(zero, torch.zeros(8, 8, dtype=torch.float64), beta,
                             lr.PAPER_TARGET) == pytest.approx(3.0, abs=1e-12)


def test_lazy_path_against_the_ntk_module_and_the_kernel_predictor_form():
    alpha, eps, lr_step = 2.0, 0.5, 0.3
    beta = lr.direction(5, 0)
    x, y = lr.sample(12, beta, lr.PAPER_TARGET, 1)
    x_test, _ = lr.sample(9, beta, lr.PAPER_TARGET, 2)
    net = lr.LazyRichNet(5, 40, alpha, eps, seed=3)
    k_train = empirical_ntk(net.body, x, mode="trace")
    k_test = empirical_ntk(net.body, x_test, x, mode="trace")
    steps = np.array([0, 1, 5, 40])
    coef = lr.lazy_coefficients(k_train, y, lr_step, steps)
    # toy_models.ntk uses L = (1/2n)Σ(f − y)², so its step 2η is our step η on (1/n)Σ(f − y)²
    reference = ntk_theory.linearised_test_outputs(
        k_test.numpy(), k_train.numpy(), np.zeros(9), np.zeros(12), y.numpy(), 2 * lr_step,
        steps)
    np.testing.assert_allclose((coef @ k_test.T).numpy(), reference, rtol=1e-8, atol=1e-10)
    limit = lr.lazy_coefficients(k_train, y, lr_step)[0]
    torch.testing.assert_close(k_test @ limit, lr.kernel_regression(k_train, k_test, y))
    b, a = lr.kernel_predictor_form(limit, x, net.weight0, alpha, eps)
    torch.testing.assert_close(x_test @ b + ((x_test @ a) * x_test).sum(1), k_test @ limit)


def test_linearised_step_is_alpha_free_and_the_net_becomes_lazy():
    """One SGD step with η = η₀N/α² moves the outputs by (2η/P)Θy, independent of α, and
    the real net approaches that as α grows (deviation ∝ 1/α)."""
    beta = lr.direction(6, 4)
    x, y = lr.sample(20, beta, lr.PAPER_TARGET, 5)
    gaps = []
    for alpha in (4.0, 40.0):
        net = lr.LazyRichNet(6, 50, alpha, 0.5, seed=6)
        step = lr.learning_rate(0.5, 50, alpha)
        theta = empirical_ntk(net.body, x, mode="trace")
        predicted = 2 * step / len(y) * theta @ y
        optimizer = torch.optim.SGD(net.parameters(), lr=step)
        loss = torch.mean((net(x) - y) ** 2)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            gaps.append(float((net(x) - predicted).norm() / predicted.norm()))
    assert gaps[1] < gaps[0] / 5 and gaps[1] < 0.01, gaps
