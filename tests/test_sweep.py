"""Sweeps: grid parsing and validation, resume after a killed worker, crashed points,
tile stitching, locks, and the submitit local executor round-trip.

The points are tiny planes of the fractal recipe (16² pixels, 20 steps: well under a
second each), so the tests exercise the real process pool and submitit jobs quickly.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time

import numpy as np
import pytest
from conftest import files_under, run_cli

from experiments import api, cli, store, sweep
from experiments import fractal_analysis as fa
from experiments.config import ConfigError
from experiments.recipes import _sohldickstein2024 as fractal_recipe

RECIPE = "sohldickstein2024-tanh"
TINY = ("resolution=16", "steps=20", "keyframes=2", "n_data=16")
TINY_ARGS = [arg for item in TINY for arg in ("--set", item)]


def base_config():
    return api.resolve(RECIPE, "quick")[1]


# ---------------------------------------------------------------- grid parsing

def test_grid_values_lists_ranges_and_tuples():
    assert sweep.grid_values("seed", "0:5", int) == ["0", "1", "2", "3", "4"]
    assert sweep.grid_values("seed", "1:10:3", int) == ["1", "4", "7"]
    assert sweep.grid_values("lr", "0.01, 0.02,0.04", float) == ["0.01", "0.02", "0.04"]
    assert sweep.grid_values("x_range", "0,1;1,2", tuple[float, ...]) == ["0,1", "1,2"]
    with pytest.raises(ConfigError, match="integer"):
        sweep.grid_values("lr", "0.1:0.5", float)
    with pytest.raises(ConfigError, match="twice"):
        sweep.grid_values("seed", "1,1", int)
    with pytest.raises(ConfigError, match="no values"):
        sweep.grid_values("seed", "5:5", int)


def test_plan_is_the_cartesian_product_in_grid_order():
    plan = sweep.make_plan(RECIPE, "quick", ["steps=20,30", "seed=0:3"], list(TINY[:1]))
    assert [p.label for p in plan.points] == [
        f"steps={s}, seed={k}" for s in (20, 30) for k in range(3)]
    assert [(p.config.steps, p.config.seed) for p in plan.points] == [
        (s, k) for s in (20, 30) for k in range(3)]
    # every point's run directory is the one a single `run` of its config uses
    module, cfg = api.resolve(RECIPE, "quick", ["resolution=16", "steps=30", "seed=2"])
    assert plan.points[-1].directory == api.run_directory(RECIPE, module, cfg)
    assert len({p.key for p in plan.points}) == 6


@pytest.mark.parametrize("args, fragment", [
    (["--grid", "stepz=20,30"], "did you mean steps"),
    (["--grid", "steps=20,30,10"], "grid point steps=10: steps: 10 is out of range"),
    (["--grid", "seed=0:3", "--grid", "steps=20,forty"], "expected an integer"),
    (["--grid", "x_range=0,1;2,1"], "x_range: expected lo,hi with lo < hi"),
    (["--grid", "seed=0.5:2"], "ranges take integers"),
    (["--grid", "seed=0:2", "--set", "seed=1"], "set both"),
    (["--grid", "seed=0:2", "--grid", "seed=3"], "given twice"),
    (["--set", "steps=5"], "out of range"),
    (["--tiles", "10000"], "do not fit"),
    (["--executor", "cloud"], "--executor"),
    (["--slurm", "partitoin=gpu"], "unknown key 'partitoin'"),
    (["--slurm", "time=an hour"], "expected int"),
])
def test_bad_grid_exits_2_with_one_line_and_writes_nothing(isolated_store, capsys, args,
                                                           fragment):
    code = cli.main(["sweep", RECIPE, *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment in err[0], err
    assert files_under(isolated_store[0].parent) == []


def test_tiles_need_a_recipe_that_can_stitch(isolated_store, capsys):
    code = cli.main(["sweep", "cohen2021-stability-thresholds", "--tiles", "4"])
    assert code == 2 and "cannot be split into tiles" in capsys.readouterr().err
    assert files_under(isolated_store[0].parent) == []


def test_bad_grid_through_the_real_command_line(tmp_path):
    dirs = (tmp_path / "cache", tmp_path / "figures")
    proc = run_cli("sweep", RECIPE, "--grid", "seed=0:2", "--grid", "steps=20,3",
                   env_dirs=dirs, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert files_under(tmp_path) == []


def test_claim_value_reads_the_measured_number():
    assert sweep.claim_value("mean S/(2/η) = 1.028") == pytest.approx(1.028)
    assert sweep.claim_value("D = 0.963 (median of slopes); per keyframe 1.00") == 0.963
    assert sweep.claim_value("converged fractions 0.426, 0.5") == 0.426
    assert np.isnan(sweep.claim_value("never reaches 2/η"))


def test_slurm_parameters_map_to_submitit_names():
    params = sweep.slurm_parameters(["partition=gpu", "time=90", "gpus=1", "mem=16",
                                     "array_parallelism=8", "account=lab"])
    assert params == {"slurm_partition": "gpu", "timeout_min": 90, "gpus_per_node": 1,
                      "mem_gb": 16.0, "slurm_array_parallelism": 8, "slurm_account": "lab"}


def test_each_worker_gets_its_own_cores():
    assert sweep.core_share(0, 1, [0, 1]) == (0,) and sweep.core_share(1, 1, [0, 1]) == (1,)
    assert sweep.core_share(1, 2, [0, 1, 2, 3]) == (2, 3)
    assert sweep.core_share(3, 1, [0, 1]) == (1,)  # more workers than cores: shared


# ---------------------------------------------------------------- reliability

def _sweep_cli(dirs, *args, env=None, timeout=300):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    full = dict(os.environ, EXPERIMENTS_CACHE=str(dirs[0]), EXPERIMENTS_FIGURES=str(dirs[1]),
                **(env or {}))
    return subprocess.run([sys.executable, "-m", "experiments", "sweep", RECIPE, *TINY_ARGS,
                           *args], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=timeout)


def test_crashed_and_killed_points_do_not_stop_the_sweep_and_only_they_rerun(tmp_path,
                                                                             monkeypatch):
    dirs = (tmp_path / "cache", tmp_path / "figures")
    grid = ["--grid", "seed=0:2", "--grid", "dtype=float64,float32", "--jobs", "1"]
    faults = "crash:seed=0, dtype=float32|kill:seed=1, dtype=float64"
    first = _sweep_cli(dirs, *grid, "--scalar", "claim:both phases",
                       env={sweep.FAULT_ENV: faults})
    assert first.returncode == 1, first.stdout + first.stderr
    assert "seed=1, dtype=float64: killed" in first.stdout, first.stdout
    summary = json.loads((dirs[1] / f"{RECIPE}-sweep.json").read_text())
    status = {(p["grid"]["seed"], p["grid"]["dtype"]): p for p in summary["points"]}
    crashed = status[("0", "float32")]
    assert crashed["status"] == "failed" and "injected fault" in crashed["error"]
    assert status[("1", "float64")]["status"] == "missing"  # its worker died
    assert summary["counts"] == {"done": 2, "running": 0, "failed": 1, "missing": 1}
    record = json.loads((dirs[0] / RECIPE / crashed["config_hash"] / sweep.ERROR_FILE)
                        .read_text())
    assert "RuntimeError" in record["traceback"]
    # a claim's measured number is the plotted scalar
    point = status[("0", "float64")]
    assert point["value"] == point["claims"][0]["value"] is not None
    done = {k: dirs[0] / RECIPE / p["config_hash"] / "result.npz" for k, p in status.items()
            if p["status"] == "done"}
    stamps = {k: path.stat().st_mtime_ns for k, path in done.items()}
    monkeypatch.setenv("EXPERIMENTS_CACHE", str(dirs[0]))
    monkeypatch.setenv("EXPERIMENTS_FIGURES", str(dirs[1]))
    plan = sweep.make_plan(RECIPE, "quick", ["seed=0:2", "dtype=float64,float32"], list(TINY))
    report = sweep.status_table(plan)
    assert "2 done, 0 running, 1 failed, 1 missing" in report and "injected fault" in report

    second = _sweep_cli(dirs, *grid)  # the same command, no faults: only the two rerun
    assert "4 points, 2 to run" in second.stdout and "2 ran in" in second.stdout, second.stdout
    assert {k: path.stat().st_mtime_ns for k, path in done.items()} == stamps
    summary = json.loads((dirs[1] / f"{RECIPE}-sweep.json").read_text())
    assert [p["status"] for p in summary["points"]] == ["done"] * 4
    assert not (dirs[0] / RECIPE / crashed["config_hash"] / sweep.ERROR_FILE).exists()
    assert (dirs[1] / f"{RECIPE}-sweep.png").stat().st_size > 10_000
    # the stored points are the single runs' cache: `run` of one of them computes nothing
    single = api.run(RECIPE, "quick", [*TINY, "seed=1", "dtype=float32"], device="cpu",
                     write=False)
    assert single.from_cache


def test_a_point_locked_by_another_sweep_is_left_to_it(isolated_store):
    plan = sweep.make_plan(RECIPE, "quick", ["seed=0:2"], list(TINY))
    busy = plan.points[1]
    with store.run_lock(busy.directory) as mine:
        assert mine
        assert sweep.point_status(busy) == "running"
        with store.run_lock(busy.directory) as again:  # a second holder is refused
            assert not again
        records = sweep.execute(plan, "local", jobs=1, progress=False).records
    by_label = {r["label"]: r["status"] for r in records}
    assert by_label == {"seed=0": "ran", "seed=1": "busy"}
    assert sweep.point_status(plan.points[0]) == "done"
    assert sweep.point_status(busy) == "missing" and not store.is_complete(busy.directory)


def _compute_under_hold(directory, started, done):
    module, cfg = api.resolve(RECIPE, "quick", list(TINY))
    with store.hold(directory):
        started.set()
        time.sleep(1.0)  # the other process asks for the same config meanwhile
        with store.hold(directory):  # reentrant: a second hold in this process passes
            api.compute(RECIPE, module, cfg, "quick", "cpu")  # takes the held lock again
    done.set()


def test_a_second_process_waits_for_the_first_and_reuses_its_result(isolated_store, capfd):
    module, cfg = api.resolve(RECIPE, "quick", list(TINY))
    directory = api.run_directory(RECIPE, module, cfg)
    ctx = multiprocessing.get_context("fork")
    started, done = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_compute_under_hold, args=(directory, started, done))
    other.start()
    assert started.wait(60)
    assert store.lock_held(directory)
    result, meta, from_cache = api.compute(RECIPE, module, cfg, "quick", "cpu")
    other.join(60)
    assert done.is_set() and other.exitcode == 0
    assert from_cache  # computed once, by the other process
    assert "waiting for another process computing" in capfd.readouterr().err
    assert meta == json.loads((directory / "meta.json").read_text())
    assert not store.lock_held(directory)


# ---------------------------------------------------------------- tiles

@pytest.mark.parametrize("resolution, n_data, tiles", [(16, 16, 4), (19, 17, 6), (16, 5, 7)])
def test_stitched_tiles_equal_the_one_process_plane(resolution, n_data, tiles):
    cfg = api.resolve(RECIPE, "quick", [f"resolution={resolution}", "steps=20",
                                        f"n_data={n_data}", "chunk=5"])[1]
    window = (*cfg.x_range, *cfg.y_range)
    whole = fractal_recipe.plane_scores(cfg, window, resolution, "cpu")
    parts = [fractal_recipe.run_tile(dataclasses.replace(cfg, tiles=tiles, tile=t), "cpu")
             for t in range(tiles)]
    assert sum(p["tile.score"].size for p in parts) == resolution ** 2
    stitched = fa.stitch_tiles([(p["tile.bounds"], p["tile.score"]) for p in parts], resolution)
    assert np.array_equal(stitched, whole)
    assert 0 < np.mean(whole < 0) < 1  # both phases: the comparison sees the boundary


def test_tile_bounds_cover_the_plane_once():
    assert fa.tile_grid(4) == (2, 2) and fa.tile_grid(6) == (2, 3) and fa.tile_grid(7) == (1, 7)
    bounds = [fa.tile_bounds(10, 6, t) for t in range(6)]
    cover = np.zeros((10, 10), int)
    for r0, r1, c0, c1 in bounds:
        cover[r0:r1, c0:c1] += 1
    assert np.all(cover == 1)
    with pytest.raises(ValueError, match="cover"):
        fa.stitch_tiles([(bounds[0], np.zeros((5, 3)))], 10)


def test_submitit_local_round_trip_and_tile_sweep(isolated_store):
    # two points as pickled submitit jobs in subprocesses ...
    result = sweep.sweep(RECIPE, grid={"seed": [0, 1]}, overrides=dict(
        s.split("=") for s in TINY), executor="submitit-local", jobs=2, progress=False)
    assert [r["status"] for r in result.ran] == ["ran", "ran"]
    assert result.summary["counts"]["done"] == 2
    assert not (isolated_store[1] / f"{RECIPE}-sweep.json").exists()  # write=False
    for point, outcome in result.outcomes():
        # ... stored exactly what this process computes for the same config
        cfg = point.config
        here = fractal_recipe.plane_scores(cfg, (*cfg.x_range, *cfg.y_range), cfg.resolution,
                                           "cpu")
        assert np.array_equal(outcome.result["keyframe.0.score"], here.astype(np.float32))
    # the seed-0 plane is in the zoom cache now; its 4 tiles stitched back must equal it
    tiled = sweep.sweep(RECIPE, overrides=dict(s.split("=") for s in TINY), tiles=4,
                        progress=False)
    assert [g["keyframe_cache"] for g in tiled.summary["stitched"]] == ["equal"]
    assert tiled.summary["stitched"][0]["complete"]


def test_slurm_job_array_through_a_stand_in_scheduler(tmp_path, monkeypatch):
    """The Slurm path end to end, with ``sbatch``/``srun`` stand-ins: the sweep writes one
    job-array script with the requested resources, then each array task runs exactly as
    the script's command would on a node (Slurm's variables set), and the status and the
    summary read the results from the store."""
    import os
    import re
    import subprocess
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {tmp_path}/submitted.sh\n'
                                    'echo "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    path = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    dirs = (tmp_path / "cache", tmp_path / "figures")
    grid = ["--grid", "seed=0:2"]
    submit = _sweep_cli(dirs, *grid, "--executor", "slurm", "--slurm", "partition=gpu",
                        "--slurm", "time=10", "--slurm", "gpus=1", "--jobs", "2", env=path)
    assert submit.returncode == 0 and "submitted 2 points" in submit.stdout, submit.stderr
    script = (tmp_path / "submitted.sh").read_text()
    for line in ("--array=0-1%2", "--partition=gpu", "--time=10", "--gpus-per-node=1"):
        assert f"#SBATCH {line}" in script
    monkeypatch.setenv("EXPERIMENTS_CACHE", str(dirs[0]))
    monkeypatch.setenv("EXPERIMENTS_FIGURES", str(dirs[1]))
    plan = sweep.make_plan(RECIPE, "quick", ["seed=0:2"], list(TINY))
    assert [sweep.point_status(p) for p in plan.points] == ["missing", "missing"]
    folder = re.search(r"-m submitit\.core\._submit (\S+)", script).group(1)
    for task in (0, 1):
        slurm = {"SLURM_JOB_ID": str(4243 + task), "SLURM_ARRAY_JOB_ID": "4242",
                 "SLURM_ARRAY_TASK_ID": str(task), "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
                 "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0",
                 "SLURM_JOB_NODELIST": "node1", "SLURM_CPUS_PER_TASK": "1",
                 "SUBMITIT_EXECUTOR": "slurm"}
        node = subprocess.run([sys.executable, "-u", "-m", "submitit.core._submit", folder],
                              env=dict(os.environ, **path, **slurm), capture_output=True,
                              text=True, timeout=300)
        assert "Job completed successfully" in node.stdout + node.stderr, node.stderr
    assert [sweep.point_status(p) for p in plan.points] == ["done", "done"]
    sweep.collect(plan)
    summary = json.loads((dirs[1] / f"{RECIPE}-sweep.json").read_text())
    assert summary["counts"]["done"] == 2
