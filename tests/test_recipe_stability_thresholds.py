"""The first recipe end to end at quick scale: claims pass, JSON complete, cache reused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import quick_cli_run, run_cli

from experiments import api

RECIPE = "cohen2021-stability-thresholds"


@pytest.fixture(scope="module")
def quick_run(session_store):
    return quick_cli_run(RECIPE, session_store)


def test_quick_run_passes_every_claim(quick_run):
    proc, dirs = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((dirs[1] / f"{RECIPE}.json").read_text())
    assert record["id"] == RECIPE and record["scale"] == "quick" and record["passed"]
    assert len(record["claims"]) == 8
    for key in ("git_commit", "packages", "device", "dtype", "seconds", "peak_rss_mb"):
        assert key in record["provenance"]
    assert record["provenance"]["packages"]["torch"].startswith("2.13.0")


def test_second_run_reuses_the_cache_and_check_passes(quick_run):
    _, dirs = quick_run
    again = run_cli("run", RECIPE, env_dirs=dirs)
    assert again.returncode == 0 and "cached" in again.stdout
    check = run_cli("check", env_dirs=dirs)
    # other recipes share this session's store; judge this recipe's rows only
    own = [line for line in check.stdout.splitlines() if line.startswith(f"{RECIPE} (quick)")]
    assert len(own) == 8 and all("PASS" in line for line in own), check.stdout


def test_measured_boundaries_are_close_to_theory(quick_run, monkeypatch):
    _, dirs = quick_run
    monkeypatch.setenv("EXPERIMENTS_CACHE", str(dirs[0]))
    monkeypatch.setenv("EXPERIMENTS_FIGURES", str(dirs[1]))
    outcome = api.run(RECIPE, figure=False)
    assert outcome.from_cache
    # Independent reference: GD on a quadratic with λ_max = 1 diverges above η = 2.
    assert outcome.result["quadratic.lambda_max"] == pytest.approx(1.0, rel=1e-9)
    assert outcome.result["quadratic.gd.measured"] == pytest.approx(2.0, rel=0.01)
    # heavy-ball with β = 0.9: (2 + 2β) = 3.8 (Cohen 2021 reference note §1.5)
    assert outcome.result["quadratic.heavy_ball.measured"] == pytest.approx(3.8, rel=0.01)
    assert np.all(np.diff(outcome.result["theory.a"]) > 0)
