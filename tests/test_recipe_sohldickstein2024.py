"""The six sohldickstein2024 recipes: contract and presets for all; quick runs for a subset.

CI runs the two cheap configurations end to end (the linear net, N = 16, and the
single-data-point net, N = 1); the four N = 272 planes (tanh, ReLU, minibatch, offset)
cost minutes on a shared 2-core CPU and are covered by ``make figures``.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from experiments import api, config, recipes

CONFIGS = ("tanh", "relu", "linear", "minibatch", "single-datapoint", "offset")
IDS = [f"sohldickstein2024-{c}" for c in CONFIGS]
CI_SUBSET = ("sohldickstein2024-linear", "sohldickstein2024-single-datapoint")


def test_all_six_recipes_are_listed_and_their_presets_validate():
    assert set(IDS) <= set(recipes.recipe_ids())
    for recipe_id in IDS:
        module = recipes.load(recipe_id)
        for scale in ("quick", "paper"):
            _, cfg = api.resolve(recipe_id, scale)
            config.validate(cfg)
        paper = module.PRESETS["paper"]
        # the paper scale: ≥ 1024² pixels, 1000 steps, ≥ 20 keyframes, float64
        assert paper.resolution >= 1024 and paper.steps == 1000 and paper.keyframes >= 20
        assert paper.dtype == "float64"
        quick = module.PRESETS["quick"]
        assert 64 <= quick.resolution <= 128 and 3 <= quick.keyframes <= 4


def test_configurations_differ_as_in_the_paper():
    cfgs = {c: recipes.load(f"sohldickstein2024-{c}").PRESETS["paper"] for c in CONFIGS}
    assert cfgs["relu"].activation == "relu" and cfgs["linear"].activation == "identity"
    assert cfgs["linear"].n_data == 16 and cfgs["single-datapoint"].n_data == 1
    assert cfgs["minibatch"].batch_size == 16 and cfgs["tanh"].batch_size == 0
    assert cfgs["offset"].plane == "offset_vs_lr"
    assert cfgs["offset"].offset_mode == "every_step"  # as the released notebook


def test_bad_window_is_rejected_with_exit_2(isolated_store):
    proc = run_cli("run", "sohldickstein2024-linear", "--set", "x_range=2,1",
                   env_dirs=isolated_store)
    assert proc.returncode == 2 and "x_range" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("recipe_id", CI_SUBSET)
def test_quick_run_passes_every_claim(recipe_id, session_store):
    proc = run_cli("run", recipe_id, "--scale", "quick", env_dirs=session_store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((session_store[1] / f"{recipe_id}.json").read_text())
    assert record["passed"] and len(record["claims"]) == 3
    assert record["provenance"]["dtype"] == "float64"
