"""Sweeps: grid parsing and validation, the up-front refusals (grid size, data_dir,
--scalar), one code hash per plan, where summaries go, resume after a killed worker,
crashed points, damaged entries, tile stitching, locks, and the submitit local executor
round-trip.

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
    assert [p.directory for p in plan.points] == [
        api.run_directory(RECIPE, plan.module, p.config) for p in plan.points]
    assert len({p.key for p in plan.points}) == 6


def test_a_plan_hashes_the_code_once(monkeypatch):
    calls = []
    real = store.code_hash

    def counted(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(store, "code_hash", counted)
    plan = sweep.make_plan(RECIPE, "quick", ["seed=0:40", "steps=20,30"], list(TINY[:1]))
    assert len(plan.points) == 80 and len(calls) == 1
    sweep.make_plan(RECIPE, "quick", [], list(TINY), tiles=4)
    assert len(calls) == 2


def test_grid_size_comes_from_the_axes_lengths():
    huge = sweep.axis_values("seed", "0:100000000000000000000000", int)
    assert isinstance(huge, sweep.IntRange) and huge.size == 10**23
    assert sweep.grid_size([("seed", huge), ("lr", ["0.1", "0.2"])]) == 2 * 10**23
    assert sweep.axis_values("seed", "10:0:-3", int) == ["10", "7", "4", "1"]
    assert sweep.IntRange(0, 7, 2).size == len(range(0, 7, 2)) == 4
    assert sweep.IntRange(5, 5).size == 0 and sweep.IntRange(5, 0).size == 0


def test_the_point_limit_is_checked_before_enumerating(isolated_store, capsys, monkeypatch):
    def boom(*_):
        raise AssertionError("the range was enumerated before its size was checked")

    resolved = []
    real = api.resolve
    with monkeypatch.context() as patch:
        patch.setattr(sweep.IntRange, "__iter__", boom)
        patch.setattr(sweep.IntRange, "__getitem__", boom)
        patch.setattr(api, "resolve", lambda *a, **k: resolved.append(a) or real(*a, **k))
        code = cli.main(["sweep", RECIPE, "--grid", "seed=0:100000000"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert "100,000,000 points" in err[0] and "--max-points 10,000" in err[0], err
        assert len(resolved) <= 2  # the preset and the --set values: no grid point
        code = cli.main(["sweep", RECIPE, "--tiles", "4", "--grid", "seed=0:3",
                         "--max-points", "11"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "12 points (seed: 3 × tile: 4)" in err[0], err
    assert files_under(isolated_store[0].parent) == []
    assert len(sweep.make_plan(RECIPE, "quick", ["seed=0:3"], list(TINY), tiles=4,
                               max_points=12).points) == 12
    with pytest.raises(ConfigError, match="--max-points: expected a positive"):
        sweep.make_plan(RECIPE, "quick", ["seed=0:3"], max_points=0)


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


def _refused(capsys, *args) -> str:
    """cli.main(["sweep", *args]) must exit 2 with one line on stderr; returns the line."""
    code = cli.main(["sweep", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    return err[0].removeprefix("error: ")


def _write_reference(figures, **fields):
    figures.mkdir(parents=True, exist_ok=True)
    path = figures / f"{RECIPE}.json"
    path.write_text(json.dumps({"id": RECIPE, "scale": "quick", **fields}))
    return path


def test_a_scalar_that_names_nothing_is_refused_before_running(isolated_store, capsys):
    cache, figures = isolated_store
    ref = _write_reference(figures, result_scalars=["converged_fraction", "dimension"],
                           claims=[{"name": "both phases present at every keyframe"},
                                   {"name": "box-counting dimension strictly between 1 and 2"}])
    grid = [RECIPE, *TINY_ARGS, "--grid", "seed=0:2"]
    line = _refused(capsys, *grid, "--scalar", "dimensoin")
    assert "--scalar 'dimensoin': not a result scalar" in line and "dimension" in line, line
    line = _refused(capsys, *grid, "--scalar", "claim:no such claim")
    assert "no claim name contains 'no such claim'" in line and "both phases" in line, line
    assert files_under(cache.parent) == [ref]  # nothing run, written or submitted
    plan = sweep.make_plan(RECIPE, "quick", ["seed=0:2"], list(TINY))
    for ok in ("dimension", "claim:box-counting", "claims_passed", None):
        sweep.check_scalar(plan, ok)
    # the paper scale reads figures/paper/<id>.json: none here, and no point is done
    paper = sweep.make_plan(RECIPE, "paper", [], ["resolution=16", "steps=20"])
    assert sweep.reference_path(RECIPE, "paper") == figures / "paper" / f"{RECIPE}.json"
    sweep.check_scalar(paper, "dimensoin")  # cannot tell yet: collect refuses it later


def test_without_a_reference_the_scalar_is_checked_against_the_store(isolated_store, capsys):
    cache, figures = isolated_store
    # a reference from before `result_scalars` existed: it knows the claims only
    ref = _write_reference(figures, claims=[{"name": "both phases present at every keyframe"}])
    plan = sweep.make_plan(RECIPE, "quick", ["seed=0:2"], list(TINY))
    sweep.check_scalar(plan, "dimensoin")  # nothing done: nothing to check against yet
    api.run(RECIPE, "quick", [*TINY, "seed=0"], device="cpu", figure=False)  # seed 0 done
    before = files_under(cache.parent)
    line = _refused(capsys, RECIPE, *TINY_ARGS, "--grid", "seed=0:2", "--scalar", "dimensoin")
    assert "not a result scalar (the done points)" in line and "dimension" in line, line
    assert files_under(cache.parent) == before  # seed 1 was not run
    assert sweep.point_status(plan.points[1]) == "missing"
    sweep.check_scalar(plan, "dimension")  # a scalar of the stored result
    ref.unlink()
    # no reference, nothing done: the points run, then collect refuses in one line
    line = _refused(capsys, RECIPE, *TINY_ARGS, "--grid", "seed=2", "--scalar", "dimensoin",
                    "--no-progress")
    assert "no done point has it" in line, line
    assert not (figures / f"{RECIPE}-sweep.json").exists()
    assert not list((cache / "sweeps").rglob("summary.*"))


def test_a_data_dir_that_is_not_a_folder_is_refused_before_running(isolated_store, capsys,
                                                                   tmp_path):
    there = tmp_path / "cifar"
    there.mkdir()
    missing = tmp_path / "no-such-folder"
    line = _refused(capsys, "cohen2021-progressive-sharpening", "--set", "dataset=cifar10",
                    "--grid", f"data_dir={there},{missing}", "--grid", "seed=0:2")
    assert line.startswith(f"data_dir: {missing} is not a folder (grid point data_dir="), line
    line = _refused(capsys, "cohen2021-progressive-sharpening", "--set", f"data_dir={missing}")
    assert line == f"data_dir: {missing} is not a folder; nothing was run", line
    assert files_under(isolated_store[0].parent) == []
    with pytest.raises(ConfigError, match="is not a folder"):
        sweep.sweep("cohen2021-progressive-sharpening", grid={"data_dir": [str(missing)]})
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
    # a parameter's name is not the number (prieto2025's layer "4.weight")
    assert sweep.claim_value("4.weight: 0.566 at the fit (epoch 80) → 0.909") == 0.566
    assert sweep.claim_value("ends at 0.5.") == 0.5


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


def _written(stdout: str):
    """The summary JSON a sweep command says it wrote (its first "wrote" line)."""
    from pathlib import Path

    line = next(line for line in stdout.splitlines() if line.startswith("wrote "))
    return Path(line.removeprefix("wrote ").split(" and ")[0])


def test_crashed_and_killed_points_do_not_stop_the_sweep_and_only_they_rerun(tmp_path,
                                                                             monkeypatch):
    dirs = (tmp_path / "cache", tmp_path / "figures")
    grid = ["--grid", "seed=0:2", "--grid", "dtype=float64,float32", "--jobs", "1"]
    faults = "crash:seed=0, dtype=float32|kill:seed=1, dtype=float64"
    first = _sweep_cli(dirs, *grid, "--scalar", "claim:both phases",
                       env={sweep.FAULT_ENV: faults})
    assert first.returncode == 1, first.stdout + first.stderr
    assert "seed=1, dtype=float64: killed" in first.stdout, first.stdout
    written = _written(first.stdout)
    assert written.parent.parent == dirs[0] / "sweeps" / RECIPE  # the sweep's own folder
    assert files_under(dirs[1]) == []  # nothing in the figures folder without --reference
    summary = json.loads(written.read_text())
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
    assert _written(second.stdout) == written == sweep.sweep_folder(plan) / "summary.json"
    summary = json.loads(written.read_text())
    assert [p["status"] for p in summary["points"]] == ["done"] * 4
    assert not (dirs[0] / RECIPE / crashed["config_hash"] / sweep.ERROR_FILE).exists()
    assert (written.parent / "summary.png").stat().st_size > 10_000
    assert "tree_clean" not in summary and files_under(dirs[1]) == []
    # the stored points are the single runs' cache: `run` of one of them computes nothing
    single = api.run(RECIPE, "quick", [*TINY, "seed=1", "dtype=float32"], device="cpu",
                     write=False)
    assert single.from_cache


def test_a_summary_goes_to_the_sweep_folder_and_only_reference_writes_figures(
        isolated_store, capsys):
    cache, figures = isolated_store
    args = ["sweep", RECIPE, *TINY_ARGS, "--grid", "seed=0:2", "--no-progress"]
    plan = sweep.make_plan(RECIPE, "quick", ["seed=0:2"], list(TINY))
    folder = sweep.sweep_folder(plan)
    assert folder == cache / "sweeps" / RECIPE / sweep.sweep_name(plan)
    code = cli.main(args)
    out = capsys.readouterr().out
    assert f"wrote {folder / 'summary.json'} and {folder / 'summary.png'}" in out, out
    assert files_under(figures) == []
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["counts"]["done"] == 2 and "tree_clean" not in summary
    assert code == (0 if summary["passed"] else 1)  # 1: a tiny plane fails a claim
    assert cli.main([*args, "--collect", "--reference"]) == code
    out = capsys.readouterr().out
    reference = figures / f"{RECIPE}-sweep.json"
    assert f"wrote {reference} and {figures / f'{RECIPE}-sweep.png'}" in out, out
    assert files_under(figures) == [reference, figures / f"{RECIPE}-sweep.png"]
    recorded = json.loads(reference.read_text())
    assert recorded["tree_clean"] is sweep.tree_clean(recorded["provenance"]["git_commit"])
    assert [sweep.tree_clean(c) for c in ("abc1", "abc1+dirty", "unknown")] == [
        True, False, False]
    assert json.loads((folder / "summary.json").read_text()) == recorded
    # from Python: write=False nothing, True the folder, "reference" the figures too
    assert sweep.summary_paths(plan, False) == []
    assert sweep.summary_paths(plan, True) == [(folder / "summary.png", folder / "summary.json")]
    with pytest.raises(ConfigError, match="write must be"):
        sweep.collect(plan, write="figures")


def test_a_damaged_point_counts_as_missing_and_is_moved_aside(isolated_store, capsys):
    plan = sweep.make_plan(RECIPE, "quick", ["seed=0:2"], list(TINY))
    for point in plan.points:
        api.run(RECIPE, "quick", list(point.overrides), device="cpu", figure=False)
    damaged = plan.points[1].directory / "result.npz"
    damaged.write_bytes(damaged.read_bytes()[:100])  # truncated
    summary, _ = sweep.collect(plan, write=False)
    rows = summary["points"]
    assert [r["status"] for r in rows] == ["done", "missing"]
    assert "result.npz" in rows[1]["error"], rows[1]
    assert summary["counts"] == {"done": 1, "running": 0, "failed": 0, "missing": 1}
    assert sweep.point_status(plan.points[1]) == "missing"  # the next run computes it
    assert "moved aside" in capsys.readouterr().err
    records = sweep.execute(plan, "local", jobs=1, progress=False).records
    assert [r["status"] for r in records] == ["ran"]


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
    assert not list(isolated_store[0].rglob("summary.*"))
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
    summary = json.loads((sweep.sweep_folder(plan) / "summary.json").read_text())
    assert summary["counts"]["done"] == 2
    assert (sweep.sweep_folder(plan) / "manifest.json").exists()  # beside submitit's files
    assert files_under(dirs[1]) == []
