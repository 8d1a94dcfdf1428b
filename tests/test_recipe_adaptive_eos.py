"""Recipe cohen2022-adaptive-eos end to end at quick scale, and its threshold formula."""

from __future__ import annotations

import json

import pytest
from conftest import quick_cli_run

from experiments.recipes import cohen2022_adaptive_eos as recipe

RECIPE = "cohen2022-adaptive-eos"


def test_thresholds_match_the_paper_formula():
    # (2 + 2β1)/((1 − β1)η): 38/η for Adam at β1 = 0.9, 2/η for RMSprop, 3.8/η for
    # heavy-ball with β = 0.9 (Cohen 2022 abstract; Cohen 2021 §1.5 of the reference note).
    cfg = recipe.Config(adam_lr=0.01, rmsprop_lr=0.01, momentum_lr=0.01)
    assert recipe.threshold("adam", cfg) == pytest.approx(3800.0, rel=1e-12)
    assert recipe.threshold("rmsprop", cfg) == pytest.approx(200.0, rel=1e-12)
    assert recipe.threshold("momentum", cfg) == pytest.approx(380.0, rel=1e-12)


@pytest.fixture(scope="module")
def quick_run(session_store):
    return quick_cli_run(RECIPE, session_store)


@pytest.mark.slow
def test_quick_run_adam_equilibrates_at_38_over_eta(quick_run):
    # Adam's claims are the paper's headline (38/η) and pass at quick scale. RMSprop
    # (Adam with β1 = 0) rises to 2/η and hovers 3–8% above it, but an early overshoot
    # leaves 87% of its samples within ±10% (the claim asks 90%), and momentum GD's
    # sawtooth spreads beyond ±10% of 3.8/η (both recorded as FAIL in the JSON), so the
    # run may exit 1; this test pins what is established.
    proc, dirs = quick_run
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    record = json.loads((dirs[1] / f"{RECIPE}.json").read_text())
    assert record["id"] == RECIPE and record["scale"] == "quick"
    assert len(record["claims"]) == 11
    adam = [c for c in record["claims"] if c["name"].startswith("Adam")]
    assert len(adam) == 4 and all(c["passed"] for c in adam), adam
    rmsprop = {c["name"].split(": ", 1)[1]: c["passed"] for c in record["claims"]
               if c["name"].startswith("RMSprop")}
    assert len(rmsprop) == 4
    assert [v for k, v in rmsprop.items() if "samples within" not in k] == [True] * 3
