"""Recipe cohen2022-adaptive-eos end to end at quick scale, and its threshold formula."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import quick_cli_run, stored_outcome

from experiments.recipes import cohen2022_adaptive_eos as recipe
from toy_models import stability

RECIPE = "cohen2022-adaptive-eos"


def test_thresholds_match_the_paper_formula():
    # (2 + 2β1)/((1 − β1)η): 38/η for Adam at β1 = 0.9, 2/η for RMSprop, 3.8/η for
    # heavy-ball with β = 0.9 (Cohen 2022 abstract; Cohen 2021 §1.5 of the reference note).
    cfg = recipe.Config(adam_lr=0.01, rmsprop_lr=0.01, momentum_lr=0.01, momentum=0.9)
    assert recipe.threshold("adam", cfg) == pytest.approx(3800.0, rel=1e-12)
    assert recipe.threshold("rmsprop", cfg) == pytest.approx(200.0, rel=1e-12)
    assert recipe.threshold("momentum", cfg) == pytest.approx(380.0, rel=1e-12)
    # The quick setting, β = 0.5 at GD's η = 0.1: (2 + 1)/0.1 = 30.
    assert recipe.threshold("momentum", recipe.PRESETS["quick"]) == pytest.approx(30.0)


@pytest.mark.parametrize("beta", [0.5, 0.9])
def test_heavy_ball_has_no_marginal_mode_below_its_threshold(beta):
    # The mechanism the page gives for momentum GD's sawtooth. Closed form: the roots of
    # z² − (1 + β − a)z + β are complex with |z| = √β for a < (1 + √β)², and one root is
    # −1 at a = 2 + 2β; GD's single root 1 − a tends to −1 (|z| → 1) as a → 2.
    a_star = 2 + 2 * beta
    split = (1 + math.sqrt(beta)) ** 2
    below = np.linspace(0.5, 0.999 * split, 7)
    assert stability.spectral_radius("heavy_ball", below, beta) == pytest.approx(
        np.full(7, math.sqrt(beta)), rel=1e-9)
    assert stability.spectral_radius("heavy_ball", a_star, beta)[0] == pytest.approx(1.0)
    assert stability.spectral_radius("heavy_ball", 1.01 * a_star, beta)[0] > 1.0
    assert stability.spectral_radius("gd", 0.999 * 2.0)[0] == pytest.approx(0.998, rel=1e-9)


@pytest.fixture(scope="module")
def quick_run(session_store):
    return quick_cli_run(RECIPE, session_store)


@pytest.fixture(scope="module")
def outcome(quick_run):
    return stored_outcome(RECIPE, quick_run[1])


@pytest.mark.slow
def test_quick_run_record(quick_run):
    # Every claim passes at quick scale (Adam, RMSprop, and momentum GD at β = 0.5), so
    # the run exits 0.
    proc, dirs = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((dirs[1] / f"{RECIPE}.json").read_text())
    assert record["id"] == RECIPE and record["scale"] == "quick"
    assert len(record["claims"]) == 11
    by_optimizer = {label: [c for c in record["claims"] if c["name"].startswith(label)]
                    for label in ("Adam", "RMSprop", "momentum GD")}
    assert len(by_optimizer["Adam"]) == len(by_optimizer["RMSprop"]) == 4
    assert all(c["passed"] for c in by_optimizer["Adam"]), by_optimizer["Adam"]
    assert all(c["passed"] for c in by_optimizer["RMSprop"]), by_optimizer["RMSprop"]
    momentum = by_optimizer["momentum GD"]
    assert len(momentum) == 3 and all(c["passed"] for c in momentum), momentum


def _post_crossing_ratio(steps, values, threshold):
    """Samples from the first one at or above ``threshold`` on, divided by it."""
    values = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values)
    steps, values = np.asarray(steps)[keep], values[keep]
    first = int(np.flatnonzero(values >= threshold)[0])
    return steps[first:], values[first:] / threshold


@pytest.mark.slow
@pytest.mark.parametrize("name", recipe.OPTIMIZERS)
def test_equilibrium_claims_recomputed_from_the_trace(outcome, name):
    # The mean and band claims recomputed here from the stored sharpness trace, with the
    # threshold written out from the closed form (2 + 2β)/((1 − τ)η) and the issue's
    # tolerances, must agree with what the recipe reports.
    cfg = outcome.config
    threshold = {"adam": (2 + 2 * cfg.adam_beta1) / ((1 - cfg.adam_beta1) * cfg.adam_lr),
                 "rmsprop": 2 / cfg.rmsprop_lr,
                 "momentum": (2 + 2 * cfg.momentum) / cfg.momentum_lr}[name]
    steps, ratio = _post_crossing_ratio(outcome.result[f"{name}.tracked.step"],
                                        outcome.result[f"{name}.tracked.value"], threshold)
    assert len(ratio) >= 30, "too few samples after the crossing for a ±10% band share"
    mean_ok = 0.97 <= ratio.mean() <= 1.10
    band_ok = np.mean(np.abs(ratio - 1) <= 0.10) >= 0.90
    label = recipe.LABELS[name]
    reported = {c.name: c.passed for c in outcome.claims if c.name.startswith(label)}
    [mean_claim] = [v for k, v in reported.items() if "time-averaged" in k]
    [band_claim] = [v for k, v in reported.items() if "samples within" in k]
    assert (mean_claim, band_claim) == (mean_ok, band_ok)
    if name in ("adam", "rmsprop"):  # the raw sharpness keeps rising past the crossing
        raw_steps = np.asarray(outcome.result[f"{name}.raw.step"])
        raw = outcome.result[f"{name}.raw.value"]
        assert raw_steps[-1] == cfg.steps
        assert raw[-1] > raw[raw_steps <= steps[0]][-1]
