"""toy_models.sgd_stability against closed forms and direct computation."""

from __future__ import annotations

import numpy as np
import pytest

from toy_models import sgd_stability as st


def rank_one_hessians(n=6, d=4, seed=0):
    grads = np.random.default_rng(seed).standard_normal((n, d))
    return np.einsum("ia,ib->iab", grads, grads)


def test_sampling_factor():
    assert st.sampling_factor(10, 1) == 1.0
    assert st.sampling_factor(10, 10) == 0.0
    assert st.sampling_factor(10, 2) == pytest.approx(8 / 18)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5])
def test_one_dimensional_closed_form(batch_size):
    curvatures = np.array([0.5, 1.0, 2.0, 4.0, 0.1])
    hessians = curvatures[:, None, None]
    assert st.mean_square_threshold(hessians, batch_size) == pytest.approx(
        st.one_dimensional_threshold(curvatures, batch_size), rel=1e-10)


@pytest.mark.parametrize("batch_size", [1, 2, 4, 6])
def test_second_moment_map_has_spectral_radius_one_at_the_threshold(batch_size):
    hessians = rank_one_hessians()
    eta = st.mean_square_threshold(hessians, batch_size)
    radius = [np.max(np.abs(np.linalg.eigvals(st.second_moment_map(hessians, f * eta,
                                                                    batch_size))))
              for f in (0.99, 1.01)]
    assert radius[0] < 1 < radius[1]


def test_second_moment_map_matches_the_average_over_all_batches():
    """Q·vec(Σ) equals mean over every B-subset of (I − ηH_b)Σ(I − ηH_b)."""
    hessians, eta, batch_size = rank_one_hessians(n=5, d=3), 0.2, 2
    sigma = np.random.default_rng(1).standard_normal((3, 3))
    sigma = sigma @ sigma.T
    batches = st.all_batches(5, batch_size)
    steps = np.eye(3) - eta * hessians[batches].mean(axis=1)
    direct = (steps @ sigma @ steps.transpose(0, 2, 1)).mean(axis=0)
    via_q = (st.second_moment_map(hessians, eta, batch_size) @ sigma.reshape(-1)).reshape(3, 3)
    np.testing.assert_allclose(via_q, direct, rtol=1e-12, atol=1e-12)


def test_threshold_is_non_decreasing_in_batch_size_and_ends_at_gd():
    hessians = rank_one_hessians(n=6)
    etas = [st.mean_square_threshold(hessians, b) for b in range(1, 7)]
    assert np.all(np.diff(etas) >= -1e-12)
    assert etas[-1] == pytest.approx(st.gd_threshold(hessians), rel=1e-10)


def test_trace_bound_at_batch_size_one_for_rank_one_hessians():
    """Necessary condition (Wu & Su 2023): stable at B = 1 only if tr H <= 2/η."""
    hessians = rank_one_hessians(n=8, d=5, seed=3)
    eta = st.mean_square_threshold(hessians, 1)
    trace = np.trace(st.mean_hessian(hessians))
    assert trace <= 2 / eta * (1 + 1e-10)
    assert eta <= st.frobenius_bound(hessians, 1) * (1 + 1e-10)
    fro_sq = np.sum(st.mean_hessian(hessians) ** 2)
    for b in (1, 2, 4, 8):
        eta_b = st.mean_square_threshold(hessians, b)
        assert st.trace_condition(trace, fro_sq, 8, b) <= 2 / eta_b * (1 + 1e-10)


def test_restriction_to_the_range_keeps_the_threshold():
    grads = np.random.default_rng(0).standard_normal((4, 7))  # rank 4 in 7 dimensions
    hessians = np.einsum("ia,ib->iab", grads, grads)
    restricted, basis = st.restrict_to_range(hessians)
    assert restricted.shape == (4, 4, 4) and basis.shape == (7, 4)
    for b in (1, 2, 4):
        assert st.mean_square_threshold(restricted, b) == pytest.approx(
            st.mean_square_threshold(hessians, b), rel=1e-8)


def test_exact_second_moment_growth_changes_sign_at_the_threshold():
    hessians = rank_one_hessians()
    eta = st.mean_square_threshold(hessians, 2)
    assert st.second_moment_growth(hessians, 0.97 * eta, 2, 400) < 0
    assert st.second_moment_growth(hessians, 1.03 * eta, 2, 400) > 0
