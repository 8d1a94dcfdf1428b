"""``python -m experiments sweep``: :func:`main` and its arguments (:func:`add_arguments`,
which ``experiments.cli`` adds to its ``sweep`` subcommand)."""

from __future__ import annotations

import time

from experiments import api
from experiments.config import ConfigError
from experiments.sweep.driver import preflight
from experiments.sweep.executors import (
    EXECUTORS,
    execute,
    slurm_parameters,
    worker_threads,
)
from experiments.sweep.plan import MAX_POINTS, make_plan, point_status, sweep_folder
from experiments.sweep.summary import (
    CLAIMS_PASSED,
    REFERENCE,
    collect,
    status_table,
    summary_paths,
)


def main(args) -> int:
    """``python -m experiments sweep`` (arguments parsed in ``experiments.cli``)."""
    if args.executor not in EXECUTORS:
        raise ConfigError(f"--executor: got {args.executor!r}; allowed: {', '.join(EXECUTORS)}")
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs: expected a positive number, got {args.jobs}")
    plan = make_plan(args.id, args.scale, args.grid, args.set, args.tiles, args.max_points)
    if not args.status:
        preflight(plan, args.scalar, running=not args.collect)
    if args.executor != "slurm" and not (args.status or args.collect):
        api.pick_device(args.device)
    slurm = {}
    if args.executor != "local" or args.slurm or args.slurm_config:
        slurm = slurm_parameters(args.slurm, args.slurm_config)
    if args.status:
        print(status_table(plan))
        return 0
    if not args.collect:
        threads, _ = worker_threads(args.jobs or 1)
        if args.executor == "slurm" and args.jobs and "slurm_array_parallelism" not in slurm:
            slurm["slurm_array_parallelism"] = args.jobs
        todo = sum(point_status(p) != "done" for p in plan.points)
        print(f"{plan.recipe_id} ({plan.scale}): {len(plan.points)} points, {todo} to run "
              f"({args.executor}" + (f", {args.jobs or 1} workers × {threads} threads)"
                                     if args.executor != "slurm" else ")"), flush=True)
        wait_for = args.executor != "slurm" or args.wait
        started = time.perf_counter()
        tracker = execute(plan, args.executor, args.jobs, args.device, slurm,
                          progress=not args.no_progress, wait_for=wait_for)
        if not wait_for:
            print(f"submitted {len(tracker.records) or todo} points to Slurm "
                  f"(submitit folder {sweep_folder(plan)}); follow with the same command and "
                  "--status, then --collect")
            return 0
        counts = ", ".join(f"{v} {k}" for k, v in tracker.counts.items()) or "nothing to run"
        print(f"{counts} in {time.perf_counter() - started:.1f} s", flush=True)
    write = REFERENCE if args.reference else True
    summary, _ = collect(plan, args.scalar, write=write)
    for png, js in summary_paths(plan, write):
        print(f"wrote {js} and {png}")
    c = summary["counts"]
    print(f"{c['done']} done, {c['failed']} failed, {c['running']} running, "
          f"{c['missing']} missing; scalar {summary['scalar']}")
    for row in summary["points"]:
        label = ", ".join(f"{k}={v}" for k, v in row["grid"].items())
        if row["status"] == "done":
            n_pass = sum(cl["passed"] for cl in row["claims"])
            print(f"  {row['config_hash']}  {label}: {summary['scalar']} = {row['value']}, "
                  f"claims {n_pass}/{len(row['claims'])}")
        else:
            print(f"  {row['config_hash']}  {label}: {row['status']}"
                  + (f" ({row['error']})" if row.get("error") else ""))
    for group in summary.get("stitched", []):
        label = ", ".join(f"{k}={v}" for k, v in group["grid"].items()) or "plane"
        if not group["complete"]:
            print(f"  {label}: not all {group['tiles']} tiles done yet")
            continue
        print(f"  {label}: {group['tiles']} tiles stitched; converged fraction "
              f"{group['converged_fraction']:.4f}, edge fraction {group['edge_fraction']:.4f}, "
              f"D = {group['dimension']:.3f}; keyframe cache: {group['keyframe_cache']}")
    return 0 if summary["passed"] else 1


def add_arguments(parser) -> None:
    parser.add_argument("id", help="figure id")
    parser.add_argument("--scale", default="quick", help="quick or paper")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2|A:B",
                        help="a grid axis (repeatable): values, or an integer range a:b")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field at every point (repeatable)")
    parser.add_argument("--tiles", type=int, default=None,
                        help="split each plane into N tiles run as points (fractal recipes)")
    parser.add_argument("--executor", default="local", help=", ".join(EXECUTORS))
    parser.add_argument("--jobs", type=int, default=None,
                        help="parallel workers (local: default 1; slurm: array parallelism)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                        help="Slurm/submitit parameter: partition, time, gpus, mem, cpus, "
                             "array_parallelism, account, ... (repeatable)")
    parser.add_argument("--slurm-config", default=None, metavar="FILE.toml",
                        help="the same keys in a TOML file (--slurm wins)")
    parser.add_argument("--wait", action="store_true",
                        help="slurm: wait for the jobs and write the summary")
    parser.add_argument("--status", action="store_true",
                        help="report done/running/failed/missing points; run nothing")
    parser.add_argument("--collect", action="store_true",
                        help="write the summary from the store; run nothing")
    parser.add_argument("--scalar", default=None,
                        help="what the figure shows: a result scalar or claim:<part of a "
                             f"claim name> (default: {CLAIMS_PASSED})")
    parser.add_argument("--reference", action="store_true",
                        help="also write the committed reference figures/<id>-sweep.json and "
                             ".png (default: only the sweep's folder in the store)")
    parser.add_argument("--max-points", type=int, default=MAX_POINTS, metavar="N",
                        help=f"refuse a grid of more than N points (default {MAX_POINTS:,})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
