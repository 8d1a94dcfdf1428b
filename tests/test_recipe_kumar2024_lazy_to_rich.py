"""kumar2024-lazy-to-rich at quick scale: every claim passes; numbers against independent ones."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import quick_cli_run, run_cli, stored_outcome

from experiments.recipes import kumar2024_lazy_to_rich as recipe
from toy_models import lazy_rich as lr

RECIPE = "kumar2024-lazy-to-rich"


@pytest.fixture(scope="module")
def quick_run(session_store):
    return quick_cli_run(RECIPE, session_store)


@pytest.fixture(scope="module")
def result(quick_run):
    return stored_outcome(RECIPE, quick_run[1]).result


def test_quick_run_passes_every_claim(quick_run):
    proc, dirs = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((dirs[1] / f"{RECIPE}.json").read_text())
    assert record["passed"] and len(record["claims"]) == 3
    assert record["config"]["alphas"] == [2.0, 3.0, 4.0]
    assert record["config"]["target"] == [1.0, 0.0, 1.0]


def test_bad_alphas_exit_2_with_one_line():
    proc = run_cli("run", RECIPE, "--set", "alphas=4,2,8")
    assert proc.returncode == 2
    assert "alphas" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_kernel_level_against_an_independent_numpy_computation(result):
    """Seed 0: Θ₀ from its closed form in numpy, a numpy solve, a fresh Monte Carlo test
    set; the recipe's level is a population value through another route."""
    cfg = recipe.PRESETS["quick"]
    data = recipe.problem(cfg, 0)
    weight0 = lr.LazyRichNet(cfg.dim, cfg.width, 1.0, cfg.eps, data["init_seed"]).weight0
    x, y, w0 = data["x"].numpy(), data["y"].numpy(), weight0.numpy()
    beta = data["beta"].numpy()
    rng = np.random.default_rng(123)
    x_test = rng.normal(size=(40_000, cfg.dim))
    y_test = (x_test @ beta) ** 2

    def theta(a, b):
        fa = 1 + cfg.eps * a @ w0.T / math.sqrt(cfg.dim)
        fb = 1 + cfg.eps * b @ w0.T / math.sqrt(cfg.dim)
        return (a @ b.T) * (fa @ fb.T)  # α²/(N²D) cancels in Θ(x, X)Θ(X, X)⁻¹

    prediction = theta(x_test, x) @ np.linalg.solve(theta(x, x), y)
    errors = (prediction - y_test) ** 2
    se = errors.std() / math.sqrt(len(errors))
    assert result["lazy.kernel_level"][0] == pytest.approx(errors.mean(), abs=4 * se)
    # the recipe's own finite-test-set estimate agrees with its population value
    for s in range(cfg.seeds):
        assert result["lazy.kernel_level"][s] == pytest.approx(
            result["lazy.kernel_level_mc"][s], abs=4 * result["lazy.kernel_level_mc_se"][s])


def test_recorded_arrays_against_closed_forms(result):
    cfg = recipe.PRESETS["quick"]
    steps = result["step"]
    assert steps[0] == 0 and steps[-1] == cfg.steps
    for s in range(cfg.seeds):
        data = recipe.problem(cfg, s)
        y = data["y"].numpy()
        w0 = lr.LazyRichNet(cfg.dim, cfg.width, 1.0, cfg.eps, data["init_seed"]).weight0
        for alpha in cfg.alphas:
            k = recipe.key(alpha)
            # f = 0 at init: train loss mean(y²), population test loss E[z⁴] = 3
            assert result[f"{k}.train_loss"][s][0] == pytest.approx(np.mean(y**2), rel=1e-12)
            assert result[f"{k}.test_loss"][s][0] == pytest.approx(3.0, abs=1e-12)
            assert result[f"{k}.weight_norm"][s][0] == pytest.approx(float(w0.norm()),
                                                                     rel=1e-12)
            assert result[f"{k}.distance"][s][0] == 0.0
            assert result[f"{k}.diverged"][s] == 0.0
            # the end of training: population loss against the Monte Carlo test set
            assert result[f"{k}.test_loss"][s][-1] == pytest.approx(
                result[f"{k}.test_loss_mc_end"][s], abs=4 * result[f"{k}.test_loss_mc_end_se"][s])
        # the linearised net starts at E[y²] and ends near the kernel-regression level
        lazy = result["lazy.lazy_test"][s]
        assert lazy[0] == pytest.approx(3.0, abs=1e-9)
        level = result["lazy.kernel_level"][s]
        assert abs(lazy[-1] / level - 1) < 0.2
        assert abs(result["lazy.lazy_train"][s][0] - np.mean(y**2)) < 1e-9


def test_feature_learning_beats_the_kernel(result):
    """Every α ends far below the kernel level, and the lazier the run the less so."""
    cfg = recipe.PRESETS["quick"]
    finals = np.array([result[f"{recipe.key(a)}.test_loss"][:, -1] for a in cfg.alphas])
    levels = result["lazy.kernel_level"]
    assert np.all(finals < recipe.GROK * levels)
    assert np.all(np.diff(finals, axis=0) > 0)
    assert np.all(result[f"{recipe.key(cfg.alphas[0])}.overlap"][:, -1] > 0.5)
