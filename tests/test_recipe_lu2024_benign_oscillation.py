"""lu2024-benign-oscillation at quick scale.

All four claims pass over the training horizon (``steps``); the run then continues for
``after_steps`` steps (not checked), in which the grown weak feature ends the
oscillation: its share of y·f on the strong examples stops at 1 − 1/k, where the strong
fit turns stable (papers/lu2024.md, §1).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import quick_cli_run, stored_outcome

RECIPE = "lu2024-benign-oscillation"


@pytest.fixture(scope="module")
def quick_run(session_store):
    return quick_cli_run(RECIPE, session_store)


def test_quick_run_passes_every_claim(quick_run):
    proc, dirs = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((dirs[1] / f"{RECIPE}.json").read_text())
    assert len(record["claims"]) == 4
    for claim in record["claims"]:
        assert claim["passed"], claim
    assert record["passed"]


@pytest.fixture(scope="module")
def outcome(quick_run):
    return stored_outcome(RECIPE, quick_run[1])


def test_window_and_oscillation_against_independent_numbers(outcome):
    r, cfg = outcome.result, outcome.config
    # the paper's window m/(4‖u‖²), 2m/(5‖u‖²) with m = 8, ‖u‖ = 1
    np.testing.assert_allclose(r["window"], [2.0, 3.2])
    assert r["large.lr"] == pytest.approx(2.4) and r["small.lr"] == pytest.approx(1.0)
    # the traced strong example really oscillates at the large lr, not at the small one
    assert np.ptp(r["large.trace_yf_pos"][:, 0]) > 0.4
    assert np.ptp(r["small.trace_yf_pos"][:, 0]) < 0.1
    assert r["large.trace_step"][0] == int(cfg.burn_in * cfg.steps)


def test_weak_share_stops_where_the_strong_fit_turns_stable(outcome):
    """k = 1.2: the fit A = 1 − s is stable once kA < 1, i.e. s > 1 − 1/1.2 = 1/6."""
    r, cfg = outcome.result, outcome.config
    assert cfg.k_large == 1.2 and cfg.after_steps > 0
    share = r["large.weak_share"]                   # (probes, seeds, classes)
    assert share[-1].max() == pytest.approx(1 / 6, rel=0.05)
    assert share.max() < 1 / 6 * 1.05
    # the small lr never moves the weak feature: no weak-only train points, y f → 1
    assert r["small.weak_share"].max() < 1e-3


def test_a_diverging_large_lr_is_a_failed_claim_not_a_crash(tmp_path, monkeypatch):
    """k = 1.7 is above the window (no attracting 2-cycle past k ≈ 1.598): SGD on the CNN
    blows up within the first few dozen steps (measured: by step 14 at the quick size).
    The run records the divergence, draws its figure, and every claim that needs the
    horizon fails instead of raising."""
    import experiments

    monkeypatch.setenv("EXPERIMENTS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EXPERIMENTS_FIGURES", str(tmp_path / "figures"))
    outcome = experiments.run(RECIPE, overrides=dict(
        k_large=1.7, steps=200, after_steps=0, probe_every=10, trace_steps=10, seeds=1,
        n_test=50), figure=True)
    r = outcome.result
    assert bool(r["large.diverged"]) and not bool(r["small.diverged"])
    assert r["large.step"][-1] < 200 and r["small.step"][-1] == 200
    claims = {c.name: c for c in outcome.claims}
    assert len(claims) == 4
    accuracy = next(c for n, c in claims.items() if n.startswith("weak-only"))
    assert not accuracy.passed and "large lr diverged" in accuracy.measured
    assert not next(c for n, c in claims.items() if n.startswith("⟨w, v⟩")).passed
    assert not next(c for n, c in claims.items() if n.startswith("large lr: |y·f")).passed
    assert list((tmp_path / "figures").glob("*")) == []
