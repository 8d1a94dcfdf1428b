"""The lab's thread policy: one torch thread per run on CPU unless the recipe or the user
says otherwise, recorded in the provenance; side-by-side runs equal sequential ones."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

from experiments import api, recipes
from experiments.recipes import _prieto2025 as pr
from tests.conftest import files_under, run_cli
from toy_models import grokking as g

RECIPE = "xu2024-xor-grokking"   # a few seconds at these settings
SMALL = ("--set", "steps=30", "--set", "seeds=1")


def test_a_run_gets_one_thread_and_records_it(tmp_path):
    dirs = (tmp_path / "cache", tmp_path / "figures")
    proc = run_cli("run", RECIPE, *SMALL, "--set", "cpu_threads=0", env_dirs=dirs)
    assert proc.returncode in (0, 1), proc.stderr
    (meta,) = dirs[0].rglob("meta.json")
    provenance = json.loads(meta.read_text())["provenance"]
    assert provenance["torch_threads"] == 1
    assert "1 torch threads" in provenance["device"]
    assert provenance["cpu_seconds"] > 0


def test_the_user_can_choose_the_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPERIMENTS_THREADS", "2")
    dirs = (tmp_path / "cache", tmp_path / "figures")
    proc = run_cli("run", RECIPE, *SMALL, "--set", "cpu_threads=0", env_dirs=dirs)
    assert proc.returncode in (0, 1), proc.stderr
    (meta,) = dirs[0].rglob("meta.json")
    assert json.loads(meta.read_text())["provenance"]["torch_threads"] == 2


@pytest.mark.parametrize("value", ["0", "two", "-3", "1.5", "5000"])
def test_a_bad_thread_count_is_one_line_and_writes_nothing(tmp_path, monkeypatch, value):
    monkeypatch.setenv("EXPERIMENTS_THREADS", value)
    dirs = (tmp_path / "cache", tmp_path / "figures")
    proc = run_cli("run", RECIPE, *SMALL, env_dirs=dirs)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "EXPERIMENTS_THREADS" in lines[0], proc.stderr
    assert files_under(tmp_path) == []


def test_policy_reads_the_recipe_and_the_environment(monkeypatch):
    module = recipes.load(RECIPE)
    monkeypatch.delenv("EXPERIMENTS_THREADS", raising=False)
    assert api.torch_threads(module) == getattr(module, "THREADS", 1)
    monkeypatch.setenv("EXPERIMENTS_THREADS", "3")
    assert api.torch_threads(module) == 3


def test_runs_side_by_side_equal_runs_one_after_the_other():
    data = g.modular_arithmetic(11, "add", 0.5, seed=1)
    make_optimizer = pr.optimizer("adamw", 1e-2)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        def jobs():
            return {dtype: functools.partial(
                pr.grokking_run, g.grokking_mlp(22, 11, 16, seed=2), data, "softmax",
                getattr(torch, dtype), make_optimizer, 40, 10, "cpu")
                for dtype in ("float16", "float32", "float64")}
        together = pr.side_by_side(jobs(), "cpu")
        apart = {name: job() for name, job in jobs().items()}
    finally:
        torch.set_num_threads(before)
    assert together.keys() == apart.keys()
    for name in apart:
        assert together[name].keys() == apart[name].keys()
        for key, value in apart[name].items():
            assert np.array_equal(together[name][key], value), (name, key)
