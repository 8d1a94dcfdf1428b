"""Curvature probes against dense matrices built independently with torch.autograd.functional."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call

from experiments.losses import cross_entropy, half_sum_mse, mean_mse
from experiments.probes.curvature import (
    CurvatureOperator,
    flatten,
    frobenius_norm,
    functional_params,
    gauss_newton_trace,
    hutchinson_trace,
    hutchpp_trace,
    lanczos_sharpness,
    optimizer_preconditioner,
    power_iteration,
    preconditioned_sharpness,
    sharpness,
    spectral_density,
    squared_frobenius_norm,
    top_eigenpairs,
    unflatten,
)
from toy_models.networks import mlp, seeded

DTYPE = torch.float64
WIDTHS = [3, 8, 6, 3]  # 107 parameters
N_EXAMPLES = 20
AWKWARD_CHUNK = 7  # 20 = 7 + 7 + 6
LOSSES = {"half_sum_mse": half_sum_mse, "mean_mse": mean_mse, "cross_entropy": cross_entropy}


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    # These products are tiny: with intra-op threads on a shared 2-core machine, thread
    # synchronisation dominates and a test can take 10x longer. Restored after the module.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_data(n: int = N_EXAMPLES, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, WIDTHS[0], generator=generator, dtype=DTYPE)
    targets = torch.randn(n, WIDTHS[-1], generator=generator, dtype=DTYPE)
    labels = torch.randint(0, WIDTHS[-1], (n,), generator=generator)
    return x, targets, labels


def targets_for(loss_name: str, targets: Tensor, labels: Tensor) -> Tensor:
    return labels if loss_name == "cross_entropy" else targets


def objective_of_flat(model: nn.Module, loss_fn, x: Tensor, y: Tensor):
    like = functional_params(model)

    def objective(theta: Tensor) -> Tensor:
        return loss_fn(functional_call(model, unflatten(theta, like), (x,)), y).mean()

    return objective


def dense_hessian(model: nn.Module, loss_fn, x: Tensor, y: Tensor) -> Tensor:
    theta = flatten(functional_params(model))
    return torch.autograd.functional.hessian(objective_of_flat(model, loss_fn, x, y), theta)


def dense_gauss_newton(model: nn.Module, loss_fn, x: Tensor, y: Tensor) -> Tensor:
    like = functional_params(model)
    theta = flatten(like)
    outputs = functional_call(model, like, (x,))
    jacobian = torch.autograd.functional.jacobian(
        lambda t: functional_call(model, unflatten(t, like), (x,)), theta
    ).reshape(x.shape[0], -1, theta.numel())
    gauss_newton = torch.zeros(theta.numel(), theta.numel(), dtype=DTYPE)
    for i in range(x.shape[0]):
        output_hessian = torch.autograd.functional.hessian(
            lambda o, i=i: loss_fn(o.unsqueeze(0), y[i : i + 1]).sum(), outputs[i]
        ).reshape(jacobian.shape[1], jacobian.shape[1])
        gauss_newton += jacobian[i].T @ output_hessian @ jacobian[i]
    return gauss_newton / x.shape[0]


@dataclass(frozen=True)
class Problem:
    model: nn.Module
    loss_fn: object
    x: Tensor
    y: Tensor
    hessian: Tensor
    gauss_newton: Tensor

    def operator(self, kind: str = "hessian", chunk_size: int | None = None) -> CurvatureOperator:
        return CurvatureOperator(
            self.model, self.loss_fn, self.x, self.y, chunk_size=chunk_size, kind=kind
        )


@cache
def problem(loss_name: str) -> Problem:
    model = seeded(0, mlp, WIDTHS, "tanh", dtype=DTYPE)
    x, targets, labels = make_data()
    y = targets_for(loss_name, targets, labels)
    loss_fn = LOSSES[loss_name]
    return Problem(
        model,
        loss_fn,
        x,
        y,
        dense_hessian(model, loss_fn, x, y),
        dense_gauss_newton(model, loss_fn, x, y),
    )


def relative_error(estimate, reference) -> float:
    return abs(float(estimate) - float(reference)) / abs(float(reference))


# --------------------------------------------------------------------------------------------
# Products
# --------------------------------------------------------------------------------------------


def test_flatten_and_unflatten_follow_named_parameters():
    model = seeded(0, mlp, WIDTHS, "tanh", dtype=DTYPE)
    params = functional_params(model)
    flat = flatten(params)
    expected = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])
    assert torch.equal(flat, expected)
    restored = unflatten(flat, params)
    assert list(restored) == [name for name, _ in model.named_parameters()]
    assert all(torch.equal(restored[name], params[name]) for name in params)
    with pytest.raises(ValueError):
        unflatten(flat[:-1], params)


@pytest.mark.parametrize("chunk_size", [None, AWKWARD_CHUNK])
@pytest.mark.parametrize("loss_name", list(LOSSES))
@pytest.mark.parametrize("kind", ["hessian", "gauss_newton"])
def test_matvec_matches_dense(kind, loss_name, chunk_size):
    case = problem(loss_name)
    dense = case.hessian if kind == "hessian" else case.gauss_newton
    op = case.operator(kind, chunk_size)
    vectors = torch.randn(3, op.n_params, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    products = torch.stack([op.matvec(v) for v in vectors])
    torch.testing.assert_close(products, vectors @ dense, rtol=0, atol=1e-10)
    assert op.n_matvecs == 3
    torch.testing.assert_close(op.matvecs(vectors), vectors @ dense, rtol=0, atol=1e-10)
    assert op.n_matvecs == 6


@pytest.mark.parametrize("mode", ["fwd_rev", "rev_rev"])
@pytest.mark.parametrize("loss_name", list(LOSSES))
def test_both_hvp_modes_match_dense(loss_name, mode):
    case = problem(loss_name)
    op = CurvatureOperator(case.model, LOSSES[loss_name], case.x, case.y,
                           chunk_size=AWKWARD_CHUNK, hvp=mode)
    vectors = torch.randn(3, op.n_params, generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    products = torch.stack([op.matvec(v) for v in vectors])
    torch.testing.assert_close(products, vectors @ case.hessian, rtol=0, atol=1e-10)


@pytest.mark.parametrize("loss_name", list(LOSSES))
def test_retained_graph_hvp_equals_double_backward(loss_name):
    """One kept gradient graph, many products: each equals a double backward from scratch."""
    case = problem(loss_name)
    retained = CurvatureOperator(case.model, case.loss_fn, case.x, case.y)
    scratch = CurvatureOperator(case.model, case.loss_fn, case.x, case.y, hvp="rev_rev")
    assert retained.retains_graph and not scratch.retains_graph
    vectors = torch.randn(4, retained.n_params, generator=torch.Generator().manual_seed(3),
                          dtype=DTYPE)
    for v in vectors:
        reference = scratch.matvec(v)
        product = retained.matvec(v)
        assert float((product - reference).norm() / reference.norm()) <= 1e-6
        torch.testing.assert_close(product, v @ case.hessian, rtol=0, atol=1e-10)
    assert retained.n_matvecs == 4


def test_retained_graph_is_released_and_rebuilt_after_an_in_place_change():
    case = problem("half_sum_mse")
    model = copy.deepcopy(case.model)
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=DTYPE,
                    generator=torch.Generator().manual_seed(4))
    with CurvatureOperator(model, case.loss_fn, case.x, case.y) as op:
        op.matvec(v)
        assert op._graph is not None
    assert op._graph is None  # the with block released it
    op.matvec(v)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.1)  # the operator's params alias the model's, so it is now elsewhere
    moved = op.matvec(v)
    expected = v @ dense_hessian(model, case.loss_fn, case.x, case.y)
    torch.testing.assert_close(moved, expected, rtol=0, atol=1e-10)
    # chunks fall back to products from scratch: nothing retained
    chunked = CurvatureOperator(model, case.loss_fn, case.x, case.y, chunk_size=AWKWARD_CHUNK)
    torch.testing.assert_close(chunked.matvec(v), expected, rtol=0, atol=1e-10)
    assert not chunked.retains_graph and chunked._graph is None


def test_eigsh_without_start_vector_is_reproducible():
    case = problem("half_sum_mse")
    first = top_eigenpairs(case.operator("hessian", None), k=2, tol=1e-3)
    second = top_eigenpairs(case.operator("hessian", None), k=2, tol=1e-3)
    np.testing.assert_array_equal(first.eigenvalues, second.eigenvalues)


def test_gradient_loss_and_scipy_view_match_autograd():
    case = problem("cross_entropy")
    op = case.operator(chunk_size=AWKWARD_CHUNK)
    objective = objective_of_flat(case.model, case.loss_fn, case.x, case.y)
    theta = flatten(functional_params(case.model)).requires_grad_(True)
    value = objective(theta)
    (gradient,) = torch.autograd.grad(value, theta)
    torch.testing.assert_close(op.gradient(), gradient, rtol=0, atol=1e-12)
    assert op.loss() == pytest.approx(float(value.detach()), rel=1e-12)
    v = np.random.default_rng(0).standard_normal(op.n_params)
    product = op.as_scipy().matvec(v)
    assert product.dtype == np.float64
    np.testing.assert_allclose(product, case.hessian.numpy() @ v, atol=1e-10)


# --------------------------------------------------------------------------------------------
# Eigenvalues
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_name", ["half_sum_mse", "cross_entropy"])
def test_top_three_eigenpairs_match_dense(loss_name):
    case = problem(loss_name)
    result = top_eigenpairs(case.operator(), k=3)
    dense_top = torch.linalg.eigvalsh(case.hessian).flip(0)[:3].numpy()
    np.testing.assert_allclose(result.eigenvalues, dense_top, rtol=1e-6)
    vectors = result.eigenvectors
    residuals = case.hessian.numpy() @ vectors - vectors * result.eigenvalues
    assert np.linalg.norm(residuals, axis=0).max() < 1e-6 * dense_top[0]
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(3), atol=1e-8)
    assert result.n_matvecs > 0


def test_warm_start_from_top_eigenvector_saves_matvecs():
    case = problem("half_sum_mse")
    exact_values, exact_vectors = torch.linalg.eigh(case.hessian)
    # A small Krylov space forces restarts on a cold start; ARPACK builds ncv vectors anyway.
    cold_start = np.random.default_rng(0).standard_normal(exact_vectors.shape[0])
    cold = top_eigenpairs(case.operator(), v0=cold_start, ncv=6)
    warm = top_eigenpairs(case.operator(), v0=exact_vectors[:, -1], ncv=6)
    for result in (cold, warm):
        assert relative_error(result.eigenvalues[0], exact_values[-1]) < 1e-6
    assert warm.n_matvecs < cold.n_matvecs


def test_largest_algebraic_not_magnitude_at_a_saddle():
    # Large targets make the residual term dominate: |most negative| > largest eigenvalue.
    model = seeded(3, mlp, WIDTHS, "tanh", dtype=DTYPE)
    x, targets, _ = make_data()
    y = 20 * targets
    dense = torch.linalg.eigvalsh(dense_hessian(model, half_sum_mse, x, y))
    assert dense[0] < 0 and abs(dense[0]) > dense[-1] > 0
    op = CurvatureOperator(model, half_sum_mse, x, y)
    largest_algebraic = top_eigenpairs(op, k=1)
    assert relative_error(largest_algebraic.eigenvalues[0], dense[-1]) < 1e-6
    largest_magnitude = top_eigenpairs(op, k=1, which="LM")
    assert relative_error(largest_magnitude.eigenvalues[0], dense[0]) < 1e-6
    assert relative_error(sharpness(model, half_sum_mse, x, y).eigenvalues[0], dense[-1]) < 1e-6


class TwinNetwork(nn.Module):
    """Two identical copies on the same inputs: a Hessian with two identical diagonal blocks."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.first = net
        self.second = copy.deepcopy(net)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.first(x), self.second(x)], dim=1)


@cache
def twin_problem() -> tuple[TwinNetwork, Tensor, Tensor, Tensor]:
    twin = TwinNetwork(seeded(0, mlp, WIDTHS, "tanh", dtype=DTYPE))
    x, targets, _ = make_data()
    y = torch.cat([targets, targets], dim=1)
    return twin, x, y, dense_hessian(twin, half_sum_mse, x, y)


def test_repeated_top_eigenvalue_is_found_twice():
    twin, x, y, hessian = twin_problem()
    dense = torch.linalg.eigvalsh(hessian)
    assert relative_error(dense[-2], dense[-1]) < 1e-12
    result = top_eigenpairs(CurvatureOperator(twin, half_sum_mse, x, y), k=2)
    np.testing.assert_allclose(result.eigenvalues, dense[-2:].flip(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(result.eigenvectors.T @ result.eigenvectors, np.eye(2), atol=1e-8)


@pytest.mark.parametrize("loss_name", list(LOSSES))
def test_lanczos_sharpness_meets_its_residual_stop(loss_name):
    case = problem(loss_name)
    eigenvalues, eigenvectors = torch.linalg.eigh(case.hessian)
    top = float(eigenvalues[-1])
    cold = lanczos_sharpness(case.operator(), tol=1e-6,
                             generator=torch.Generator().manual_seed(0))
    u = torch.as_tensor(cold.eigenvectors[:, 0])
    residual = float((case.hessian @ u - cold.eigenvalues[0] * u).norm())
    assert residual <= 1e-6 * abs(cold.eigenvalues[0]) * (1 + 1e-6)
    assert abs(cold.eigenvalues[0] - top) <= 1e-6 * abs(top)
    assert cold.residual_norms[0] == pytest.approx(residual, rel=1e-4, abs=1e-12)
    # warm from the exact eigenvector: one product
    warm = lanczos_sharpness(case.operator(), v0=eigenvectors[:, -1], tol=1e-6)
    assert warm.n_matvecs == 1 and abs(warm.eigenvalues[0] - top) <= 1e-9 * abs(top)
    # a block start (the previous call's top Ritz vectors) gives the same pair
    block = lanczos_sharpness(case.operator(), v0=cold.ritz_vectors, tol=1e-6)
    assert block.ritz_vectors.shape == (case.hessian.shape[0], 2)
    assert abs(block.eigenvalues[0] - top) <= 1e-6 * abs(top)


def test_lanczos_sharpness_falls_back_to_arpack_and_sharpness_offers_both():
    case = problem("half_sum_mse")
    top = float(torch.linalg.eigvalsh(case.hessian)[-1])
    op = case.operator()
    capped = lanczos_sharpness(op, tol=1e-10, max_iter=3,
                               generator=torch.Generator().manual_seed(0))
    assert capped.n_matvecs > 3 and capped.n_matvecs == op.n_matvecs
    assert abs(capped.eigenvalues[0] - top) <= 1e-8 * abs(top)
    for method in ("arpack", "lanczos"):
        result = sharpness(case.model, case.loss_fn, case.x, case.y, tol=1e-8, method=method)
        assert abs(result.eigenvalues[0] - top) <= 1e-7 * abs(top)
    with pytest.raises(ValueError):
        sharpness(case.model, case.loss_fn, case.x, case.y, method="power")


def test_power_iteration_meets_its_residual_stop():
    case = problem("half_sum_mse")
    dense = torch.linalg.eigvalsh(case.hessian)
    assert dense[-1] > abs(dense[0])  # the top is also the largest in magnitude here
    tol = 1e-6
    generator = torch.Generator().manual_seed(0)
    result = power_iteration(case.operator(), tol=tol, generator=generator)
    eigenvalue, vector = result.eigenvalues[0], result.eigenvectors[:, 0]
    assert relative_error(eigenvalue, dense[-1]) <= tol
    residual = np.linalg.norm(case.hessian.numpy() @ vector - eigenvalue * vector)
    assert residual <= tol * abs(eigenvalue)
    assert result.residual_norms[0] == pytest.approx(residual, rel=1e-6, abs=1e-12)
    assert np.linalg.norm(vector) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# Preconditioned sharpness
# --------------------------------------------------------------------------------------------

OPTIMIZERS = {
    "adam": lambda params: torch.optim.Adam(params, lr=1e-2),
    "adam_amsgrad": lambda params: torch.optim.Adam(params, lr=1e-2, amsgrad=True),
    "adamw": lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1),
    "rmsprop": lambda params: torch.optim.RMSprop(params, lr=1e-3),
    "rmsprop_centered": lambda params: torch.optim.RMSprop(params, lr=1e-3, centered=True),
}


def full_batch_step(model: nn.Module, optimizer: torch.optim.Optimizer, x, y) -> Tensor:
    """One optimizer step on the mean ½-MSE; returns the flat gradient it used."""
    optimizer.zero_grad()
    half_sum_mse(model(x), y).mean().backward()
    optimizer.step()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def expected_update(name: str, optimizer, theta_before: Tensor, gradient: Tensor, p: Tensor):
    """What each optimizer's last update must have been, given its preconditioner P."""
    group = optimizer.param_groups[0]
    if name.startswith("rmsprop"):
        return -group["lr"] * gradient / p
    momentum = torch.cat([optimizer.state[q]["exp_avg"].reshape(-1) for q in group["params"]])
    update = -group["lr"] * momentum / p
    if name == "adamw":
        update = update - group["lr"] * group["weight_decay"] * theta_before
    return update


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_preconditioned_sharpness_matches_dense(name):
    model = seeded(0, mlp, WIDTHS, "tanh", dtype=DTYPE)
    x, targets, _ = make_data()
    optimizer = OPTIMIZERS[name](model.parameters())
    for _ in range(4):
        full_batch_step(model, optimizer, x, targets)
    theta_before = flatten(functional_params(model))
    gradient = full_batch_step(model, optimizer, x, targets)
    update = flatten(functional_params(model)) - theta_before

    p = optimizer_preconditioner(optimizer, model.parameters())
    expected = expected_update(name, optimizer, theta_before, gradient, p)
    torch.testing.assert_close(update, expected, rtol=1e-9, atol=1e-14)

    inverse_sqrt = p.rsqrt()
    hessian = dense_hessian(model, half_sum_mse, x, targets)
    dense = torch.linalg.eigvalsh(inverse_sqrt[:, None] * hessian * inverse_sqrt[None, :])
    op = CurvatureOperator(model, half_sum_mse, x, targets)
    result = preconditioned_sharpness(op, p, k=2)
    np.testing.assert_allclose(result.eigenvalues, dense.flip(0)[:2].numpy(), rtol=1e-6)


def test_preconditioner_rejects_unsupported_or_unstepped_optimizers():
    model = seeded(0, mlp, WIDTHS, "tanh", dtype=DTYPE)
    with pytest.raises(ValueError, match="SGD"):
        optimizer_preconditioner(torch.optim.SGD(model.parameters(), lr=0.1), model.parameters())
    with pytest.raises(ValueError, match="first step"):
        optimizer_preconditioner(torch.optim.Adam(model.parameters()), model.parameters())


# --------------------------------------------------------------------------------------------
# Traces and norms
# --------------------------------------------------------------------------------------------


def assert_within_stderrs(estimate, reference: float, n_stderrs: float = 4.0) -> None:
    assert abs(estimate.estimate - reference) <= n_stderrs * estimate.stderr


@pytest.mark.parametrize("kind", ["hessian", "gauss_newton"])
def test_hutchinson_and_hutchpp_traces_within_four_stderrs(kind):
    case = problem("half_sum_mse")
    dense = case.hessian if kind == "hessian" else case.gauss_newton
    exact = float(torch.trace(dense))
    op = case.operator(kind)
    hutchinson = hutchinson_trace(op, 150, torch.Generator().manual_seed(0))
    hutchpp = hutchpp_trace(op, 150, torch.Generator().manual_seed(0))
    for estimate in (hutchinson, hutchpp):
        assert estimate.n_matvecs == 150
        assert_within_stderrs(estimate, exact)
        assert estimate.stderr < 0.1 * abs(exact)


def test_hutchpp_beats_hutchinson_on_low_rank_curvature():
    # 8 examples × 3 outputs: the Gauss–Newton matrix has rank ≤ 24 of 107, sketch of 10.
    model = seeded(0, mlp, WIDTHS, "tanh", dtype=DTYPE)
    x, targets, _ = make_data(n=8)
    exact = float(torch.trace(dense_gauss_newton(model, half_sum_mse, x, targets)))
    op = CurvatureOperator(model, half_sum_mse, x, targets, kind="gauss_newton")
    errors = {"hutchinson": [], "hutchpp": []}
    for seed in range(5):
        hutchinson = hutchinson_trace(op, 30, torch.Generator().manual_seed(seed))
        hutchpp = hutchpp_trace(op, 30, torch.Generator().manual_seed(seed))
        assert hutchpp.stderr < hutchinson.stderr
        errors["hutchinson"].append(hutchinson.estimate - exact)
        errors["hutchpp"].append(hutchpp.estimate - exact)
    root_mean_square = {name: np.sqrt(np.mean(np.square(e))) for name, e in errors.items()}
    assert root_mean_square["hutchpp"] < root_mean_square["hutchinson"] / 3


def test_frobenius_norm_within_four_stderrs():
    case = problem("half_sum_mse")
    exact = float(torch.linalg.matrix_norm(case.hessian))
    estimate = frobenius_norm(case.operator(), 150, torch.Generator().manual_seed(0))
    assert_within_stderrs(estimate, exact)
    assert estimate.stderr < 0.1 * exact
    squared = squared_frobenius_norm(case.operator(), 150, torch.Generator().manual_seed(0))
    assert squared.estimate == pytest.approx(estimate.estimate**2)


@pytest.mark.parametrize("chunk_size", [None, AWKWARD_CHUNK])
@pytest.mark.parametrize("loss_name", list(LOSSES))
def test_gauss_newton_trace_is_exact(loss_name, chunk_size):
    case = problem(loss_name)
    trace = gauss_newton_trace(case.model, case.loss_fn, case.x, case.y, chunk_size=chunk_size)
    assert relative_error(trace, torch.trace(case.gauss_newton)) < 1e-10


def test_gauss_newton_trace_equals_hessian_trace_at_interpolation():
    model = seeded(0, mlp, [3, 8, 1], "tanh", dtype=DTYPE)
    x, _, _ = make_data()
    with torch.no_grad():
        y = model(x)  # the model interpolates its own outputs: zero residuals
    trace = gauss_newton_trace(model, half_sum_mse, x, y)
    assert relative_error(trace, torch.trace(dense_hessian(model, half_sum_mse, x, y))) < 1e-10
    squared_gradient_norms = [
        sum(g.pow(2).sum() for g in torch.autograd.grad(model(xi[None]).sum(), model.parameters()))
        for xi in x
    ]
    assert relative_error(trace, sum(squared_gradient_norms) / len(x)) < 1e-10


# --------------------------------------------------------------------------------------------
# Spectral density
# --------------------------------------------------------------------------------------------


def test_spectral_density_quadrature():
    case = problem("half_sum_mse")
    op = case.operator()
    dense = torch.linalg.eigvalsh(case.hessian).numpy()
    full = spectral_density(op, n_iter=op.n_params, n_probes=2, generator=torch.Generator())
    assert full.nodes.shape == full.weights.shape == (2, op.n_params)
    np.testing.assert_allclose(full.weights.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(full.nodes.max(axis=1), dense[-1], rtol=1e-6)
    np.testing.assert_allclose(full.nodes.min(axis=1), dense[0], rtol=1e-6)

    short = spectral_density(op, n_iter=15, n_probes=3, generator=torch.Generator())
    assert short.nodes.shape == (3, 15)
    np.testing.assert_allclose(short.weights.sum(axis=1), 1.0, atol=1e-12)
    grid = np.linspace(dense[0] - 1.0, dense[-1] + 1.0, 4001)
    assert np.trapezoid(short.density(grid, sigma=0.05), grid) == pytest.approx(1.0, abs=1e-6)


def test_spectral_density_survives_lanczos_breakdown():
    # Repeated eigenvalues make the Krylov space smaller than P, so Lanczos breaks down.
    twin, x, y, hessian = twin_problem()
    op = CurvatureOperator(twin, half_sum_mse, x, y)
    result = spectral_density(op, n_iter=op.n_params, n_probes=1, generator=torch.Generator())
    dense = torch.linalg.eigvalsh(hessian).numpy()
    np.testing.assert_allclose(result.weights.sum(), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.sort(result.nodes[0]), dense, atol=1e-8 * abs(dense).max())
