"""wu2023-stability-threshold at quick scale: every claim passes, measured numbers sane."""

from __future__ import annotations

import json

import numpy as np
from conftest import run_cli

RECIPE = "wu2023-stability-threshold"


def test_quick_run_passes_and_records(session_store):
    dirs = session_store
    proc = run_cli("run", RECIPE, "--scale", "quick", env_dirs=dirs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((dirs[1] / f"{RECIPE}.json").read_text())
    assert record["passed"] and len(record["claims"]) == 11
    arrays = np.load(next((dirs[0] / RECIPE).glob("*/result.npz")))
    # the minimum really interpolates, and the threshold rises with the batch size
    assert float(arrays["final_train_loss"]) < 1e-12
    etas = [float(arrays[f"B{b}.eta_star"]) for b in (1, 2, 3, 4, 6, 12)]
    assert etas == sorted(etas)
