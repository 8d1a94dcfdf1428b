"""Sweeps: a grid of runs of one recipe, on local processes or a Slurm cluster, one store.

``python -m experiments sweep <id> --grid lr=0.05,0.1 --grid seed=0:3`` runs the
Cartesian product of the grids; every point is one :func:`experiments.api.run` of the
recipe, validated the same way as ``run`` and stored under its config hash in the same
results store, so

* the whole grid is validated before anything runs (a bad key or value: one line,
  exit 2, nothing written or submitted);
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

The summary is ``figures/<id>-sweep.json`` (every point's config hash, status,
claims and scalar results) and ``figures/<id>-sweep.png`` (a chosen scalar over the
grid, mean and ±1 std over seeds). With ``--tiles N`` (the fractal recipes) every
grid point is split into N tiles of its plane, each its own run, and the summary
stitches them back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import multiprocessing as mp
import os
import re
import signal
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from experiments import api, store
from experiments import config as config_mod
from experiments.config import ConfigError

EXECUTORS = ("local", "slurm", "submitit-local")
STATUSES = ("done", "running", "failed", "missing")
ERROR_FILE = "error.json"
LOG_FILE = "sweep.log"
# Test hook: "crash:<label>" makes that point raise, "kill:<label>" kills its worker
# (several entries separated by "|").
FAULT_ENV = "EXPERIMENTS_SWEEP_FAULT"
CLAIMS_PASSED = "claims_passed"  # the default scalar: the fraction of a point's claims passing


# ---------------------------------------------------------------- grid

_RANGE = re.compile(r"^\s*(-?\d+)\s*:\s*(-?\d+)\s*(?::\s*(-?\d+)\s*)?$")


def grid_values(key: str, spec: str, typ: Any) -> list[str]:
    """The values of one ``--grid key=spec`` as strings for ``--set``.

    ``a,b,c`` lists values; ``a:b`` or ``a:b:step`` is an integer range (Python's, end
    excluded: ``seed=0:5`` is 0..4); ``;`` separates values that hold commas themselves
    (a tuple-valued field: ``x_range=0,1;1,2``).
    """
    base = config_mod._optional_inner(typ) or typ
    if ";" in spec:
        values = [v.strip() for v in spec.split(";")]
    elif ":" in spec and base is not str:
        match = _RANGE.match(spec)
        if base is not int or match is None:
            raise ConfigError(f"--grid {key}: a:b[:step] ranges take integers and an integer "
                              f"key; list the values instead ({key}=v1,v2,...)")
        start, stop, step = (int(g) if g is not None else 1 for g in match.groups())
        if step == 0:
            raise ConfigError(f"--grid {key}: range step must not be 0")
        values = [str(v) for v in range(start, stop, step)]
    else:
        values = [v.strip() for v in spec.split(",")]
    values = [v for v in values if v]
    if not values:
        raise ConfigError(f"--grid {key}: no values in {spec!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"--grid {key}: a value is listed twice in {spec!r}")
    return values


def parse_grid(items: Iterable[str], cfg: Any) -> list[tuple[str, list[str]]]:
    """[(key, values)] from ``--grid key=spec`` strings, keys checked against the config."""
    fields = {f.name for f in dataclasses.fields(cfg)}
    hints = config_mod.field_types(type(cfg))
    grid: list[tuple[str, list[str]]] = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid expects key=v1,v2,... or key=a:b, got {item!r}")
        key, spec = (part.strip() for part in item.split("=", 1))
        if key not in fields:
            near = config_mod.nearest_keys(key, fields)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise ConfigError(f"--grid: unknown config key {key!r}{hint} "
                              f"(keys: {', '.join(sorted(fields))})")
        if key in dict(grid):
            raise ConfigError(f"--grid {key}: given twice")
        grid.append((key, grid_values(key, spec, hints[key])))
    return grid


# ---------------------------------------------------------------- the plan

@dataclass(frozen=True)
class Point:
    grid: tuple[tuple[str, str], ...]  # (key, value) of every grid axis, in grid order
    overrides: tuple[str, ...]  # --set and grid values, as key=value
    config: Any
    directory: Path  # the run directory in the store: its name is the config hash

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.grid) or "(preset)"

    @property
    def key(self) -> str:
        return self.directory.name


@dataclass
class Plan:
    """A validated sweep: the recipe, the grid and every point's config and run directory."""

    recipe_id: str
    scale: str
    module: ModuleType
    grid: list[tuple[str, list[str]]]
    fixed: list[str]
    points: list[Point]
    tiles: int | None = None

    @property
    def axes(self) -> list[str]:
        """Grid keys the summary plots against (all but seed and tile)."""
        return [k for k, _ in self.grid if k not in ("seed", "tile")]


def make_plan(recipe_id: str, scale: str = "quick", grid: Iterable[str] = (),
              overrides: Iterable[str] = (), tiles: int | None = None) -> Plan:
    """Validate every point of the grid (ConfigError on the first bad one)."""
    module, base = api.resolve(recipe_id, scale)
    fixed = list(overrides)
    for item in fixed:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
    axes = parse_grid(grid, base)
    api.resolve(recipe_id, scale, fixed)  # a bad --set is named without a grid point
    if tiles is not None:
        if not (hasattr(module, "stitch") and {"tiles", "tile"} <= {
                f.name for f in dataclasses.fields(base)}):
            raise ConfigError(f"--tiles: {recipe_id} cannot be split into tiles "
                              "(the sohldickstein2024-* recipes can)")
        if tiles < 1:
            raise ConfigError(f"--tiles: expected a positive number, got {tiles}")
        if "tile" in dict(axes):
            raise ConfigError("tile: set both by --grid and by --tiles")
        fixed.append(f"tiles={tiles}")
        axes.append(("tile", [str(t) for t in range(tiles)]))
    set_keys = [item.split("=", 1)[0].strip() for item in fixed]
    for key in set_keys:
        if set_keys.count(key) > 1:
            raise ConfigError(f"--set {key}: given twice")
        if key in dict(axes) and not (key == "tile" and tiles is not None):
            raise ConfigError(f"{key}: set both by --set and by --grid (or --tiles)")
    points = []
    for values in itertools.product(*(vals for _, vals in axes)):
        assigned = tuple(zip((k for k, _ in axes), values, strict=True))
        overrides_ = (*fixed, *(f"{k}={v}" for k, v in assigned))
        try:
            _, cfg = api.resolve(recipe_id, scale, list(overrides_))
        except ConfigError as err:
            where = ", ".join(f"{k}={v}" for k, v in assigned)
            raise ConfigError(f"grid point {where}: {err}") from None
        points.append(Point(assigned, overrides_, cfg,
                            api.run_directory(recipe_id, module, cfg)))
    keys = [p.key for p in points]
    if len(set(keys)) != len(keys):
        raise ConfigError("two grid points resolve to the same config; drop the repeat")
    return Plan(recipe_id, scale, module, axes, fixed, points, tiles)


def point_status(point: Point) -> str:
    """done (result in the store), running (a process holds its lock), failed (crashed,
    error recorded) or missing (never run, or its worker was killed)."""
    if store.is_complete(point.directory):
        return "done"
    if store.lock_held(point.directory):
        return "running"
    if (point.directory / ERROR_FILE).exists():
        return "failed"
    return "missing"


def read_error(point: Point) -> str | None:
    path = point.directory / ERROR_FILE
    if not path.exists() or store.is_complete(point.directory):
        return None
    try:
        return json.loads(path.read_text())["error"]
    except (OSError, json.JSONDecodeError, KeyError):
        return "unreadable error record"


# ---------------------------------------------------------------- one point (in a worker)

@dataclass(frozen=True)
class Task:
    """Everything a worker needs to run one point; picklable (process pools, submitit)."""

    recipe_id: str
    scale: str
    overrides: tuple[str, ...]
    label: str
    cache: str
    device: str | None = None
    threads: int | None = None
    cpus: tuple[int, ...] | None = None


def _pin(threads: int | None, cpus: tuple[int, ...] | None) -> None:
    import torch

    if threads is None and os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        threads = int(os.environ["SLURM_CPUS_PER_TASK"])
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
    if threads:
        torch.set_num_threads(threads)


def _fault(label: str) -> None:
    for entry in os.environ.get(FAULT_ENV, "").split("|"):
        kind, _, target = entry.partition(":")
        if target != label:
            continue
        if kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "crash":
            raise RuntimeError(f"injected fault ({FAULT_ENV}) at {label}")


def run_point(task: Task) -> dict[str, Any]:
    """Run one point through :func:`api.run` under the run directory's lock.

    Returns {label, status, seconds, error}: status "ran", "cached" (its result was
    already stored), "busy" (another process holds its lock) or "failed" (the recipe
    raised; the error is recorded in the run directory and the sweep goes on).
    """
    os.environ["EXPERIMENTS_CACHE"] = task.cache
    _pin(task.threads, task.cpus)
    module, cfg = api.resolve(task.recipe_id, task.scale, list(task.overrides))
    directory = api.run_directory(task.recipe_id, module, cfg)
    out: dict[str, Any] = {"label": task.label, "key": directory.name, "seconds": 0.0,
                           "error": None}
    with store.run_lock(directory) as mine:
        if not mine:
            return {**out, "status": "busy"}
        if store.is_complete(directory):
            return {**out, "status": "cached"}
        started = time.perf_counter()
        # the recipe's own progress bars and prints go to the run's log, not the terminal
        with open(directory / LOG_FILE, "a") as log, contextlib.redirect_stdout(log), \
                contextlib.redirect_stderr(log):
            try:
                _fault(task.label)
                outcome = api.run(task.recipe_id, task.scale, list(task.overrides),
                                  device=task.device, write=False)
            except Exception as err:  # recorded, and the sweep goes on
                error = f"{type(err).__name__}: {err}"
                store.atomic_write_json(directory / ERROR_FILE, {
                    "label": task.label, "error": error, "traceback": traceback.format_exc(),
                    "overrides": list(task.overrides), "finished_at": time.time()})
                return {**out, "status": "failed", "error": error,
                        "seconds": time.perf_counter() - started}
        with contextlib.suppress(FileNotFoundError):
            (directory / ERROR_FILE).unlink()
        return {**out, "status": "ran", "seconds": time.perf_counter() - started,
                "passed": outcome.passed}


# ---------------------------------------------------------------- executors

def worker_threads(jobs: int) -> tuple[int, list[int]]:
    """(threads per worker, usable cores): the cores split evenly over the workers, capped
    by an OMP_NUM_THREADS set in the environment."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(
        range(os.cpu_count() or 1))
    threads = max(1, len(cores) // jobs)
    cap = os.environ.get("OMP_NUM_THREADS", "")
    if cap.isdigit() and int(cap) > 0:
        threads = min(threads, int(cap))
    return threads, cores


def core_share(slot: int, threads: int, cores: list[int]) -> tuple[int, ...]:
    """The cores of worker number ``slot``: ``threads`` consecutive ones, wrapping around."""
    return tuple(sorted({cores[(slot * threads + j) % len(cores)] for j in range(threads)}))


def _init_worker(counter, jobs: int, threads: int, cores: list[int]) -> None:
    with counter.get_lock():
        slot = counter.value % jobs
        counter.value += 1
    _pin(threads, core_share(slot, threads, cores))


@contextlib.contextmanager
def _thread_env(threads: int | None) -> Iterator[None]:
    """OMP/MKL thread counts for child processes (read before they import torch)."""
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {n: os.environ.get(n) for n in names}
    if threads is not None:
        os.environ.update({n: str(threads) for n in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_local(tasks: list[Task], jobs: int, report: Callable[[Task, dict], None]) -> None:
    """A pool of ``jobs`` spawned worker processes, each pinned to its share of the cores,
    with at most ``jobs`` points in flight. A worker that dies (killed, out of memory)
    takes its point with it: the point stays missing and runs again next invocation."""
    threads, cores = worker_threads(jobs)
    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    pending = list(tasks)
    with _thread_env(threads):
        while pending:
            pool = ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                                       initargs=(counter, jobs, threads, cores))
            inflight: dict[Any, Task] = {}
            broken = False
            try:
                while (pending and not broken) or inflight:
                    while pending and not broken and len(inflight) < jobs:
                        task = pending.pop(0)
                        inflight[pool.submit(run_point, task)] = task
                    done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for future in done:
                        task = inflight.pop(future)
                        try:
                            record = future.result()
                        except BrokenProcessPool:
                            broken = True
                            record = {"label": task.label, "status": "killed", "seconds": 0.0,
                                      "error": "worker process died; rerun the sweep"}
                        report(task, record)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)


def slurm_parameters(items: Iterable[str], config_file: str | None = None) -> dict[str, Any]:
    """submitit parameters from ``--slurm key=value`` (and a TOML file of the same keys).

    Short keys: partition, time (minutes), gpus (per node), mem (GB), cpus (per task),
    array_parallelism, nodes; submitit's own names (timeout_min, mem_gb, ...) work too, and
    any other key is passed to sbatch as ``slurm_<key>`` (account, qos, constraint, ...).
    """
    import tomllib

    raw: dict[str, Any] = {}
    if config_file:
        try:
            raw.update(tomllib.loads(Path(config_file).read_text()))
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"--slurm-config {config_file}: {err}") from None
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--slurm expects key=value, got {item!r}")
        key, value = (part.strip() for part in item.split("=", 1))
        raw[key] = value
    aliases = {"partition": "slurm_partition", "time": "timeout_min", "gpus": "gpus_per_node",
               "mem": "mem_gb", "cpus": "cpus_per_task",
               "array_parallelism": "slurm_array_parallelism"}
    import submitit

    generic = submitit.AutoExecutor._typed_parameters()
    slurm_valid = submitit.SlurmExecutor._valid_parameters()
    params: dict[str, Any] = {}
    for key, value in raw.items():
        name = aliases.get(key, key)
        if name not in generic and not name.startswith("slurm_"):
            name = f"slurm_{name}"
        if name in generic:
            typ = generic[name]
            try:
                params[name] = typ(value) if typ is not bool else str(value).lower() in (
                    "1", "true", "yes")
            except ValueError:
                raise ConfigError(f"--slurm {key}: expected {typ.__name__}, got {value!r}") \
                    from None
            continue
        if name[len("slurm_"):] not in slurm_valid:
            raise ConfigError(f"--slurm: unknown key {key!r}; known: "
                              f"{', '.join(sorted([*aliases, *slurm_valid]))}")
        params[name] = int(value) if str(value).isdigit() else value
    return params


def submitit_executor(kind: str, folder: Path, params: dict[str, Any]):
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster="slurm" if kind == "slurm"
                                     else "local")
    executor.update_parameters(**{"name": "experiments-sweep", **params})
    return executor


def run_submitit(tasks: list[Task], executor, jobs: int | None,
                 report: Callable[[Task, dict], None], wait_for: bool = True,
                 pin: Callable[[Task, int], Task] | None = None) -> list:
    """Submit ``run_point`` for every task through a submitit executor.

    ``jobs`` None: all at once as one job array (Slurm's array parallelism limits it);
    otherwise at most ``jobs`` in flight (submitit's local executor has no limit of its
    own), each in a free slot 0..jobs-1 that ``pin`` turns into its cores. With
    ``wait_for`` the results are collected as the jobs end.
    """
    submitted = []
    if jobs is None:
        with executor.batch():
            futures = [executor.submit(run_point, task) for task in tasks]
        submitted = list(zip(futures, tasks, strict=True))
        if not wait_for:
            return submitted
        pending: list = []
        inflight = dict(submitted)
    else:
        pending, inflight = list(tasks), {}
    slots: dict[Any, int] = {}
    while pending or inflight:
        while pending and len(inflight) < jobs:
            slot = min(set(range(jobs)) - set(slots.values()))
            task = pending.pop(0)
            task = pin(task, slot) if pin is not None else task
            job = executor.submit(run_point, task)
            inflight[job], slots[job] = task, slot
            submitted.append((job, task))
        finished = [job for job in inflight if job.done()]
        if not finished:
            time.sleep(0.2)
            continue
        for job in finished:
            task = inflight.pop(job)
            slots.pop(job, None)
            try:
                record = job.result()
            except Exception as err:  # the job itself died (killed, timed out, node lost)
                record = {"label": task.label, "status": "killed", "seconds": 0.0,
                          "error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
            report(task, record)
    return submitted


# ---------------------------------------------------------------- running a sweep

@dataclass
class Progress:
    total: int
    counts: dict[str, int] = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)
    bar: Any = None

    def __call__(self, task: Task, record: dict) -> None:
        self.records.append(record)
        self.counts[record["status"]] = self.counts.get(record["status"], 0) + 1
        line = f"{record['label']}: {record['status']}"
        if record["status"] == "ran":
            line += f" in {record['seconds']:.1f} s"
        if record.get("error"):
            line += f" ({record['error']})"
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: v for k, v in self.counts.items()})
            self.bar.write(line)
        else:
            print(line, flush=True)


def execute(plan: Plan, executor: str = "local", jobs: int | None = 1,
            device: str | None = None, slurm: dict[str, Any] | None = None,
            progress: bool = True, wait_for: bool = True) -> Progress:
    """Run every point of ``plan`` that is not in the store yet."""
    from tqdm.auto import tqdm

    todo = [p for p in plan.points if point_status(p) != "done"]
    cache = str(store.cache_root())
    tasks = [Task(plan.recipe_id, plan.scale, p.overrides, p.label, cache, device)
             for p in todo]
    tracker = Progress(len(tasks))
    if not tasks:
        return tracker
    if progress and wait_for:
        tracker.bar = tqdm(total=len(tasks), desc=f"{plan.recipe_id} sweep", unit="point",
                           dynamic_ncols=True, disable=None)
    try:
        if executor == "local":
            run_local(tasks, jobs or 1, tracker)
        else:
            folder = sweep_folder(plan)
            ex = submitit_executor(executor, folder, slurm or {})
            if executor == "submitit-local":
                threads, cores = worker_threads(jobs or 1)

                def pin(task: Task, slot: int) -> Task:
                    return dataclasses.replace(task, threads=threads,
                                               cpus=core_share(slot, threads, cores))

                with _thread_env(threads):
                    submitted = run_submitit(tasks, ex, jobs or 1, tracker, wait_for, pin)
            else:
                submitted = run_submitit(tasks, ex, None, tracker, wait_for)
            write_manifest(plan, executor, folder, submitted)
    finally:
        if tracker.bar is not None:
            tracker.bar.close()
    return tracker


def sweep_folder(plan: Plan) -> Path:
    """Where submitit keeps a sweep's pickled jobs and logs (in the shared store)."""
    return store.cache_root() / "sweeps" / plan.recipe_id / sweep_name(plan)


def sweep_name(plan: Plan) -> str:
    import hashlib

    digest = hashlib.sha256("".join(sorted(p.key for p in plan.points)).encode())
    return f"{plan.scale}-{len(plan.points)}pts-{digest.hexdigest()[:10]}"


def write_manifest(plan: Plan, executor: str, folder: Path, submitted: list) -> None:
    jobs = {task.label: str(job.job_id) for job, task in submitted}
    store.atomic_write_json(folder / "manifest.json", {
        "id": plan.recipe_id, "scale": plan.scale, "executor": executor,
        "submitted_at": time.time(), "jobs": jobs})


def scheduler_states(plan: Plan) -> dict[str, str]:
    """Slurm's view of a submitted sweep's jobs (label → state), where it can be had."""
    manifest = sweep_folder(plan) / "manifest.json"
    if not manifest.exists():
        return {}
    data = json.loads(manifest.read_text())
    if data.get("executor") != "slurm":
        return {}
    try:
        import submitit

        return {label: submitit.SlurmJob(sweep_folder(plan), job_id).state
                for label, job_id in data["jobs"].items()}
    except Exception:  # no sacct here (e.g. not on the cluster's login node)
        return {}


# ---------------------------------------------------------------- summary

def claim_value(measured: str) -> float:
    """The number a claim measured: the first number after '=' (else the first number),
    skipping parts of names and fractions such as ``B12`` or ``2/η``."""
    number = r"(?<![\w/.])(?:[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf|nan)(?![\w/])"
    tail = measured.split("=", 1)[1] if "=" in measured else measured
    match = re.search(number, tail)
    return float(match.group(0)) if match else math.nan


def scalars(result: dict[str, Any]) -> dict[str, float | int | bool]:
    """Every numeric 0-d entry of a result dict."""
    out = {}
    for key, value in result.items():
        if isinstance(value, np.ndarray):
            if value.ndim != 0:
                continue
            value = value.item()
        if isinstance(value, bool | np.bool_):
            out[key] = bool(value)
        elif isinstance(value, int | float | np.integer | np.floating):
            out[key] = value.item() if isinstance(value, np.generic) else value
    return out


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def point_summary(plan: Plan, point: Point) -> tuple[dict[str, Any], dict | None]:
    """(JSON-ready summary of a point, its result dict or None)."""
    status = point_status(point)
    row: dict[str, Any] = {"grid": dict(point.grid), "config_hash": point.key,
                           "status": status}
    if status != "done":
        row["error"] = read_error(point)
        return row, None
    result = store.load_result(point.directory / "result.npz")
    meta = json.loads((point.directory / "meta.json").read_text())
    row["seconds"] = meta["provenance"]["seconds"]
    values = scalars(result)
    try:
        claims = api.evaluate_claims(plan.module, result, point.config)
    except Exception as err:  # the result is stored; its claims code is what broke
        claims = []
        row["claims_error"] = f"{type(err).__name__}: {err}"
    row["claims"] = [{"name": c.name, "measured": c.measured, "value":
                      _finite_or_none(claim_value(c.measured)), "passed": c.passed}
                     for c in claims]
    row["passed"] = all(c.passed for c in claims) and "claims_error" not in row
    if claims:
        values[CLAIMS_PASSED] = sum(c.passed for c in claims) / len(claims)
    nonfinite = sorted(k for k, v in values.items()
                       if isinstance(v, float) and not math.isfinite(v))
    if nonfinite:  # divergence is a result, flagged here
        row["nonfinite"] = nonfinite
    row["scalars"] = {k: _finite_or_none(v) for k, v in values.items()}
    return row, result


def pick(row: dict[str, Any], scalar: str) -> float:
    """A point's value of ``scalar``: a result scalar, or ``claim:<part of a claim name>``."""
    if row.get("status") != "done":
        return math.nan
    if scalar.startswith("claim:"):
        wanted = scalar[len("claim:"):]
        for claim in row["claims"]:
            if wanted in claim["name"]:
                return math.nan if claim["value"] is None else float(claim["value"])
        return math.nan
    value = row["scalars"].get(scalar)
    return math.nan if value is None else float(value)


def summarize(plan: Plan, scalar: str | None = None) -> tuple[dict[str, Any], dict]:
    """(the sweep summary, {point key: result}) from what is in the store."""
    rows, results = [], {}
    for point in plan.points:
        row, result = point_summary(plan, point)
        rows.append(row)
        if result is not None:
            results[point.key] = result
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    done = [r for r in rows if r["status"] == "done"]
    if scalar is None:
        scalar = CLAIMS_PASSED if any(r["claims"] for r in done) else next(
            (k for r in done for k in r["scalars"]), CLAIMS_PASSED)
    if done and plan.tiles is None and all(math.isnan(pick(r, scalar)) for r in done):
        names = sorted({k for r in done for k in r["scalars"]})
        raise ConfigError(f"--scalar {scalar!r}: no done point has it; scalars: "
                          f"{', '.join(names[:25])}{' ...' if len(names) > 25 else ''}; "
                          "or claim:<part of a claim name>")
    summary = {
        "id": plan.recipe_id, "scale": plan.scale, "paper": plan.module.PAPER,
        "grid": {k: v for k, v in plan.grid}, "set": plan.fixed, "scalar": scalar,
        "counts": counts, "passed": counts["done"] == len(rows) and all(
            r["passed"] for r in done),
        "points": [{**r, "value": _finite_or_none(pick(r, scalar))} for r in rows],
        "provenance": {"git_commit": store.git_commit(), "packages": store.package_versions(),
                       "written_at_unix": time.time()},
    }
    return summary, results


def _number(text: str) -> float | None:
    try:
        return float(text.split(",")[0]) if text.count(",") == 0 else None
    except ValueError:
        return None


def _seed_stats(values: list[float]) -> tuple[float, float, int]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, 0
    return float(np.mean(finite)), float(np.std(finite)), len(finite)


def plot_summary(plan: Plan, summary: dict[str, Any]):
    """A line (one grid axis) or heatmap (two) of the chosen scalar: mean over seeds with a
    ±1 std band (heatmap: mean, ±std written in the cell). Seeds are the spread."""
    from experiments import plotting

    scalar = summary["scalar"]
    rows = summary["points"]
    axes_keys = plan.axes
    seeds = dict(plan.grid).get("seed", [None])
    title = (f"{plan.recipe_id} ({plan.scale}) sweep\n{summary['counts']['done']}/{len(rows)} "
             f"points done" + (f"; mean ± 1 std over {len(seeds)} seeds" if seeds != [None]
                               else ""))
    ylabel = scalar.removeprefix("claim:")

    def values_at(assign: dict[str, str]) -> list[float]:
        return [r["value"] if r["value"] is not None else math.nan for r in rows
                if all(r["grid"].get(k) == v for k, v in assign.items())]

    if len(axes_keys) == 2:
        (kx, xs), (ky, ys) = [(k, dict(plan.grid)[k]) for k in axes_keys]
        fig, axs = plotting.subplots(1, 1, width=1.0 + 1.1 * len(xs), height=1.2 + 0.8 * len(ys))
        ax = axs[0, 0]
        cells = [[_seed_stats(values_at({kx: x, ky: y})) for x in xs] for y in ys]
        mean = np.array([[m for m, _, _ in row] for row in cells])
        image = ax.imshow(mean, origin="lower", cmap="viridis", aspect="auto")
        for i, row in enumerate(cells):
            for j, (m, s, n) in enumerate(row):
                text = "n/a" if n == 0 else f"{m:.3g}" + (f"\n±{s:.2g}" if seeds != [None]
                                                          else "")
                dark = n > 0 and image.norm(m) < 0.5
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="w" if dark else "k")
        fig.colorbar(image, ax=ax, label=ylabel)
        ax.set(xticks=range(len(xs)), xticklabels=xs, yticks=range(len(ys)), yticklabels=ys,
               xlabel=kx, ylabel=ky)
        ax.grid(False)
    else:
        fig, axs = plotting.subplots(1, 1, width=5.2, height=3.6)
        ax = axs[0, 0]
        kx = axes_keys[0] if axes_keys else "seed"
        xs = dict(plan.grid).get(kx, ["(preset)"])
        numeric = [_number(x) for x in xs]
        use_numbers = all(v is not None for v in numeric) and len(xs) > 1
        positions = np.array(numeric if use_numbers else range(len(xs)), dtype=float)
        others = [k for k in axes_keys[1:]]
        combos = list(itertools.product(*(dict(plan.grid)[k] for k in others))) or [()]
        colors = plotting.palette(len(combos))
        for combo, color in zip(combos, colors, strict=True):
            fixed = dict(zip(others, combo, strict=True))
            label = ", ".join(f"{k}={v}" for k, v in fixed.items()) or None
            if kx == "seed":  # no other axis: every seed on its own, mean as a line
                vals = [values_at({**fixed, "seed": x})[0] for x in xs]
                ax.plot(positions, vals, "o", color=color, label=label or "one seed")
                m, s, _ = _seed_stats(vals)
                ax.axhline(m, color=color, lw=1.2, label=None if label else "mean")
                ax.axhspan(m - s, m + s, color=color, alpha=0.2,
                           label=None if label else "±1 std")
                continue
            stats = [_seed_stats(values_at({**fixed, kx: x})) for x in xs]
            mean = np.array([st[0] for st in stats])
            std = np.array([st[1] for st in stats])
            ax.plot(positions, mean, "o-", color=color, label=label or "mean over seeds")
            if seeds != [None]:
                ax.fill_between(positions, mean - std, mean + std, color=color, alpha=0.2,
                                lw=0, label=None if label else "±1 std")
                for i, (x, pos) in enumerate(zip(xs, positions, strict=True)):
                    vals = values_at({**fixed, kx: x})
                    ax.plot([pos] * len(vals), vals, ".", color=color, ms=4, alpha=0.7,
                            label=None if label or i else "one seed")
        if use_numbers and positions.min() > 0 and positions.max() / positions.min() >= 10:
            ax.set_xscale("log")
        if not use_numbers or kx == "seed":
            ax.set_xticks(positions, xs)
        ax.set(xlabel=kx, ylabel=ylabel)
        ax.legend()
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        title += f"; {len(failed)} failed"
    ax.set_title(title, fontsize=8)
    return fig


def stitch_groups(plan: Plan, results: dict) -> list[dict[str, Any]]:
    """Per combination of the non-tile grid values: the tiles stitched back into a plane."""
    groups: dict[tuple, list[Point]] = {}
    for point in plan.points:
        groups.setdefault(tuple((k, v) for k, v in point.grid if k != "tile"), []).append(point)
    out = []
    for assign, points in groups.items():
        entry: dict[str, Any] = {"grid": dict(assign), "tiles": len(points)}
        if not all(p.key in results for p in points):
            entry["complete"] = False
            out.append(entry)
            continue
        cfg = dataclasses.replace(points[0].config, tile=-1, tiles=1)
        stitched = plan.module.stitch([results[p.key] for p in points], cfg)
        entry.update({"complete": True, "config": cfg, "stitched": stitched,
                      **{k: v for k, v in stitched.items() if np.ndim(v) == 0}})
        out.append(entry)
    return out


def plot_tiles(plan: Plan, groups: list[dict[str, Any]]):
    from experiments import plotting

    complete = [g for g in groups if g["complete"]][:6]
    fig, axs = plotting.subplots(1, max(1, len(complete)), width=4.2, height=3.8)
    for ax, group in zip(axs[0], complete, strict=False):
        plan.module.draw_stitched(ax, group["stitched"], group["config"])
        label = ", ".join(f"{k}={v}" for k, v in group["grid"].items())
        ax.set_title(f"{plan.recipe_id}: {group['tiles']} tiles stitched"
                     + (f" ({label})" if label else "")
                     + f"\nconverged {group['converged_fraction']:.3f}, "
                     f"D = {group['dimension']:.2f}, keyframe cache: "
                     f"{group['keyframe_cache']}", fontsize=8)
    if not complete:
        axs[0, 0].text(0.5, 0.5, "no complete plane yet", ha="center")
    return fig


def collect(plan: Plan, scalar: str | None = None, write: bool = True
            ) -> tuple[dict[str, Any], Any]:
    """Summary dict and figure; with ``write``, ``figures/<id>-sweep.json`` and ``.png``."""
    import matplotlib.pyplot as plt

    from experiments import plotting

    summary, results = summarize(plan, scalar)
    if plan.tiles is not None:
        groups = stitch_groups(plan, results)
        summary["stitched"] = [{k: v for k, v in g.items() if k not in ("stitched", "config")}
                               for g in groups]
        summary["passed"] = summary["passed"] and all(g["complete"] for g in groups)
        fig = plot_tiles(plan, groups)
    else:
        fig = plot_summary(plan, summary)
    if write:
        out = store.figures_root()
        plotting.save(fig, out / f"{plan.recipe_id}-sweep.png")
        store.atomic_write_json(out / f"{plan.recipe_id}-sweep.json", summary)
    plt.close(fig)  # returned, not left open in pyplot (a notebook shows it when asked)
    return summary, fig


def status_table(plan: Plan) -> str:
    states = scheduler_states(plan)
    lines = []
    counts = dict.fromkeys(STATUSES, 0)
    for point in plan.points:
        status = point_status(point)
        counts[status] += 1
        extra = read_error(point) if status == "failed" else (
            "" if status == "done" else states.get(point.label, ""))
        lines.append(f"  {status:8s} {point.key}  {point.label}" + (f"  {extra}" if extra
                                                                    else ""))
    head = f"{plan.recipe_id} ({plan.scale}): " + ", ".join(f"{v} {k}" for k, v in
                                                            counts.items())
    return "\n".join([head, *lines])


# ---------------------------------------------------------------- Python API

@dataclass
class SweepResult:
    plan: Plan
    summary: dict[str, Any]
    figure: Any
    ran: list[dict]

    def outcomes(self) -> list[tuple[Point, api.RunOutcome]]:
        """Every done point as a RunOutcome (from the store; nothing is recomputed)."""
        out = []
        for point, row in zip(self.plan.points, self.summary["points"], strict=True):
            if row["status"] == "done":
                out.append((point, api.run(self.plan.recipe_id, self.plan.scale,
                                           list(point.overrides), device="cpu", write=False)))
        return out


def sweep(recipe_id: str, scale: str = "quick", grid: dict[str, Any] | None = None,
          overrides: dict[str, Any] | None = None, jobs: int = 1, executor: str = "local",
          scalar: str | None = None, write: bool = False, progress: bool = True,
          tiles: int | None = None) -> SweepResult:
    """Run a grid from Python (e.g. a paper page): ``grid={"seed": range(3)}``; values may be
    lists (or a spec string as on the command line). ``write=False`` keeps figures/ as is."""

    def text(value) -> str:
        return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)

    items = [f"{k}={v}" if isinstance(v, str) else f"{k}={';'.join(text(x) for x in v)}"
             for k, v in (grid or {}).items()]
    sets = [f"{k}={text(v)}" for k, v in (overrides or {}).items()]
    plan = make_plan(recipe_id, scale, items, sets, tiles)
    tracker = execute(plan, executor, jobs, progress=progress)
    summary, fig = collect(plan, scalar, write=write)
    return SweepResult(plan, summary, fig, tracker.records)


# ---------------------------------------------------------------- command line

def main(args) -> int:
    """``python -m experiments sweep`` (arguments parsed in ``experiments.cli``)."""
    if args.executor not in EXECUTORS:
        raise ConfigError(f"--executor: got {args.executor!r}; allowed: {', '.join(EXECUTORS)}")
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs: expected a positive number, got {args.jobs}")
    plan = make_plan(args.id, args.scale, args.grid, args.set, args.tiles)
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
    summary, _ = collect(plan, args.scalar, write=True)
    out = store.figures_root()
    print(f"wrote {out / (plan.recipe_id + '-sweep.json')} and "
          f"{out / (plan.recipe_id + '-sweep.png')}")
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
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
