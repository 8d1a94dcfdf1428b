from __future__ import annotations

import json

import pytest
from conftest import files_under, run_cli

RECIPE = "cohen2021-stability-thresholds"


@pytest.mark.parametrize("args, fragment", [
    (("run", "no-such-figure"), "unknown figure id"),
    (("run", "cohen2021-stabilty-thresholds"), "did you mean cohen2021-stability-thresholds"),
    (("run", RECIPE, "--set", "stepz=10"), "did you mean steps"),
    (("run", RECIPE, "--set", "steps=ten"), "expected an integer"),
    (("run", RECIPE, "--set", "steps=10"), "out of range"),
    (("run", RECIPE, "--set", "momentum=nan"), "finite"),
    (("run", RECIPE, "--set", "dtype=float8"), "one of float32, float64"),
    (("run", RECIPE, "--scale", "huge"), "--scale"),
    (("run", RECIPE, "--device", "tpu"), "--device"),
    (("run", RECIPE, "--seed", "x"), "--seed"),
    (("run", RECIPE, "--seed", "99999999999999999999"), "seed"),
    (("run", RECIPE, "--set", "steps=300", "--set", "steps=400"), "given twice"),
    (("run", "all", "--set", "nonsense=1"), "unknown config key"),
    (("frobnicate",), "invalid choice"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, fragment):
    dirs = (tmp_path / "cache", tmp_path / "figures")
    proc = run_cli(*args, env_dirs=dirs, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr
    assert files_under(tmp_path) == []


def test_list_names_every_recipe(tmp_path):
    proc = run_cli("list", env_dirs=(tmp_path / "c", tmp_path / "f"))
    assert proc.returncode == 0
    assert RECIPE in proc.stdout and "Cohen" in proc.stdout and "not run" in proc.stdout


def test_params_shows_allowed_values(tmp_path):
    proc = run_cli("params", RECIPE, env_dirs=(tmp_path / "c", tmp_path / "f"))
    assert proc.returncode == 0 and "momentum = 0.9" in proc.stdout and "[0.0, 0.99]" in proc.stdout


def test_a_failing_claim_exits_1_and_writes_its_record_beside_the_cache(tmp_path):
    # A coarse search (no bisection, ±50% bracket) cannot locate the boundary within 1%.
    # Not the preset, so its figure and JSON go beside its cached arrays, not figures/.
    dirs = (tmp_path / "cache", tmp_path / "figures")
    proc = run_cli("run", RECIPE, "--set", "bracket=0.5", "--set", "scan_points=3",
                   "--set", "bisection_iters=0", "--set", "steps=200", env_dirs=dirs)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stdout
    assert files_under(dirs[1]) == []
    [js] = list((dirs[0] / RECIPE).glob(f"*/{RECIPE}.json"))
    record = json.loads(js.read_text())
    assert record["passed"] is False and record["config"]["bracket"] == 0.5
    assert record["reference"] is False and str(js) in proc.stdout
    assert js.with_suffix(".png").stat().st_size > 10_000
    # check reads only the references (none here) and verifies the entry
    check = run_cli("check", env_dirs=dirs)
    assert check.returncode == 0 and "1 cache entries, 0 damaged" in check.stdout


@pytest.mark.parametrize("jobs", ["0", "-1", "65"])
def test_run_all_refuses_a_bad_jobs_count(tmp_path, jobs):
    proc = run_cli("run", "all", "--jobs", jobs, env_dirs=(tmp_path / "c", tmp_path / "f"))
    assert proc.returncode == 2 and "--jobs" in proc.stderr
    assert not (tmp_path / "c").exists() and not (tmp_path / "f").exists()
