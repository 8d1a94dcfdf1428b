"""xu2024-xor-grokking at quick scale: every claim passes; numbers against independent ones."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import quick_cli_run

from experiments import api

RECIPE = "xu2024-xor-grokking"


@pytest.fixture(scope="module")
def quick_run(session_store):
    return quick_cli_run(RECIPE, session_store)


def test_quick_run_passes_every_claim(quick_run):
    proc, dirs = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((dirs[1] / f"{RECIPE}.json").read_text())
    assert record["passed"] and len(record["claims"]) == 6
    assert record["config"]["p"] == 5000 and record["config"]["noise_rate"] == 0.15


def test_two_phases_in_the_recorded_arrays(quick_run, monkeypatch):
    _, dirs = quick_run
    monkeypatch.setenv("EXPERIMENTS_CACHE", str(dirs[0]))
    monkeypatch.setenv("EXPERIMENTS_FIGURES", str(dirs[1]))
    outcome = api.run(RECIPE, figure=False)
    assert outcome.from_cache
    r = outcome.result
    steps, probe_steps = r["gd.step"][0], r["gd.m.step"][0]
    # at initialisation a random net: about half the training labels right
    assert np.all(np.abs(r["gd.train_acc"][:, 0] - 0.5) < 0.3)
    # step 1: every label fitted (flipped ones included) while the test stays at chance
    assert np.all(r["gd.train_acc"][:, steps == 1] == 1.0)
    assert np.all(r["gd.train_flipped"][:, probe_steps == 1] == 1.0)
    assert np.all(np.abs(r["gd.test_clean"][:, probe_steps == 1] - 0.5) <= 0.1)
    # ‖μ‖ = 20 ≫ 1: the Bayes rule never picks the wrong axis, so its clean accuracy is 1
    assert r["bayes_clean"] == pytest.approx(1.0, abs=1e-12)
    assert r["bayes_noisy"] == pytest.approx(0.85, abs=1e-12)
