"""Running a plan's points: one point in a worker, and the executors that run them.

``local`` is a pool of spawned worker processes, each pinned to its share of the cores;
``slurm`` submits a job array through submitit; ``submitit-local`` runs the same pickled
submitit jobs as local subprocesses (the Slurm path's code, testable without a cluster).
Every worker calls :func:`run_point`, which holds the run directory's lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
import signal
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments import api, store
from experiments.config import ConfigError
from experiments.sweep.plan import ERROR_FILE, Plan, point_status, sweep_folder

EXECUTORS = ("local", "slurm", "submitit-local")
LOG_FILE = "sweep.log"
# Test hook: "crash:<label>" makes that point raise, "kill:<label>" kills its worker
# (several entries separated by "|").
FAULT_ENV = "EXPERIMENTS_SWEEP_FAULT"


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
                                  device=task.device, write=False, figure=False)
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
