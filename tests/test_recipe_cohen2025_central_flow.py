"""Recipe cohen2025-central-flow at quick scale: the claims as measured."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

RECIPE = "cohen2025-central-flow"


@pytest.fixture(scope="module")
def quick_run(session_store):
    proc = run_cli("run", RECIPE, "--scale", "quick", env_dirs=session_store)
    return proc, session_store


@pytest.mark.slow
def test_quick_run_records_its_claims(quick_run):
    proc, dirs = quick_run
    record = json.loads((dirs[1] / f"{RECIPE}.json").read_text())
    passed = {c["name"].split(":")[0]: c["passed"] for c in record["claims"]}
    assert len(record["claims"]) == 5
    # GD leaves the gradient flow, and its averaged loss is L(w_CF) + tr Σ/η
    assert passed["‖w_GD − w_GF‖ grows"]
    assert passed["time-averaged GD loss tracks L(w_CF) + tr Σ/η over the window"]
    # the general flow holds every eigenvalue that reaches 2/η (several on ten classes)
    assert passed["the held eigenvalues stay at 2/η after the onset (Lanczos λ_max of w_CF)"]
    assert proc.returncode == (0 if record["passed"] else 1), proc.stdout + proc.stderr


def test_bad_config_is_rejected_before_running(isolated_store):
    proc = run_cli("run", RECIPE, "--set", "sharpness_every=7")
    assert proc.returncode == 2
    assert "multiple of compare_every" in proc.stdout + proc.stderr
