"""Sweeps: a grid of runs of one recipe, on local processes or a Slurm cluster, one store.

``python -m experiments sweep <id> --grid lr=0.05,0.1 --grid seed=0:3`` runs the
Cartesian product of the grids; every point is one :func:`experiments.api.run` of the
recipe, validated the same way as ``run`` and stored under its config hash in the same
results store, so

* the whole grid is validated before anything runs (a bad key or value, a grid of more
  than ``--max-points`` points (default 10,000; sized from the axes' lengths, never
  enumerated), a ``data_dir`` that is not a folder, a ``--scalar`` that names nothing:
  one line, exit 2, nothing written or submitted);
* a point whose result is in the store is not run again: an interrupted sweep resumes
  by running the same command, and a single ``run`` of the same config reuses it;
* a point is "done" only once its result is in the store. A point that crashes is
  recorded with its error (``<run dir>/error.json``) and the sweep goes on; a point
  whose worker was killed has no result and runs again next time;
* the process computing a point holds the run directory's lock (``store.run_lock``),
  so two sweeps over the same store never compute one point at the same time, and
  every file is written atomically under a content-addressed name.

Executors: ``local`` (a process pool of ``--jobs`` workers, each pinned to its share
of the cores), ``slurm`` (a Slurm job array through ``submitit``; the command submits
and returns, ``--status`` follows it, ``--collect`` writes the summary) and
``submitit-local`` (the same pickled submitit jobs, run as local subprocesses).

The summary goes into the sweep's own folder in the store, :func:`sweep_folder`
(``$EXPERIMENTS_CACHE/sweeps/<id>/<sweep name>/summary.json`` with every point's config
hash, status, claims and scalar results, and ``summary.png``, a chosen scalar over the
grid, mean and ±1 std over seeds). Only ``--reference`` (Python: ``write="reference"``)
also writes the committed ``figures/<id>-sweep.json`` and ``.png``, recording
``tree_clean``. With ``--tiles N`` (the fractal recipes) every grid point is split into
N tiles of its plane, each its own run, and the summary stitches them back.

The parts: :mod:`.grid` (``--grid`` parsing, sizes), :mod:`.plan` (points, run
directories, statuses, the sweep folder), :mod:`.executors` (a point in a worker, the
local pool, submitit), :mod:`.summary` (rows, figures, tiles, the status table, the
``--scalar`` check), :mod:`.driver` (:func:`sweep` from Python) and :mod:`.cli`
(:func:`main`, :func:`add_arguments`). Every name is re-exported here; a test that
monkeypatches a function must patch it in the submodule that calls it.
"""

from experiments.sweep.cli import add_arguments, main
from experiments.sweep.driver import SweepResult, preflight, sweep
from experiments.sweep.executors import (
    EXECUTORS,
    FAULT_ENV,
    LOG_FILE,
    Progress,
    Task,
    core_share,
    execute,
    run_local,
    run_point,
    run_submitit,
    scheduler_states,
    slurm_parameters,
    submitit_executor,
    worker_threads,
    write_manifest,
)
from experiments.sweep.grid import IntRange, axis_values, grid_size, grid_values, parse_grid
from experiments.sweep.plan import (
    ERROR_FILE,
    MAX_POINTS,
    STATUSES,
    Plan,
    Point,
    check_data_dirs,
    check_size,
    make_plan,
    point_status,
    read_error,
    sweep_folder,
    sweep_name,
)
from experiments.sweep.summary import (
    CLAIMS_PASSED,
    REFERENCE,
    check_scalar,
    claim_value,
    collect,
    pick,
    plot_summary,
    plot_tiles,
    point_summary,
    reference_names,
    reference_path,
    scalars,
    status_table,
    stitch_groups,
    summarize,
    summary_paths,
    tree_clean,
)

__all__ = [
    "CLAIMS_PASSED", "ERROR_FILE", "EXECUTORS", "FAULT_ENV", "LOG_FILE", "MAX_POINTS",
    "REFERENCE", "STATUSES", "IntRange", "Plan", "Point", "Progress", "SweepResult", "Task",
    "add_arguments", "axis_values", "check_data_dirs", "check_scalar", "check_size",
    "claim_value", "collect", "core_share", "execute", "grid_size", "grid_values", "main",
    "make_plan", "parse_grid", "pick", "plot_summary", "plot_tiles", "point_status",
    "point_summary", "preflight", "read_error", "reference_names", "reference_path",
    "run_local", "run_point", "run_submitit", "scalars", "scheduler_states",
    "slurm_parameters", "status_table", "stitch_groups", "submitit_executor", "summarize",
    "summary_paths", "sweep", "sweep_folder", "sweep_name", "tree_clean", "worker_threads",
    "write_manifest",
]
