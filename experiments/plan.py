"""``python -m experiments plan <id|all> --scale paper``: what a run will cost, before it runs.

A plan validates the preset (the same checks as ``run``, and the recipe's own
``check_inputs`` where it has one, e.g. data that must be on disk), builds its data and
models by calling the recipe's own ``run``, and times a few real steps of every phase
on the chosen device. It writes nothing: the recipe runs against a throw-away store.

How the estimate is made (printed with every plan):

- **every ``train.fit`` call is a phase.** While planning, ``fit`` trains for only
  ``min(steps, K_STEPS + 1)`` updates and returns that short history. The updates are
  timed by an optimizer step hook (the median of those without a probe in them), the
  probes and (minibatch) evaluations by wrappers, so the phase's estimate is
  ``setup + steps × (seconds per update) + Σ_probe calls × (seconds per call)
  + evaluations × (seconds per evaluation)``, with the call counts of the *whole* run
  computed from the probe schedules and ``eval_every``. Assumption: an update and a
  probe cost the same late in the run as in its first steps (a warm-started Lanczos
  probe is timed once cold and once warm). A phase that may stop early (an accuracy or
  loss goal, divergence) is counted to its full step budget, so its estimate is an
  upper bound.
- **everything else** the recipe does (data, gradient flows, kernels, analysis) runs
  for real and is timed as it is ("outside fit"). Recipes whose own loops outside
  ``fit`` are long at paper scale are listed in :data:`REDUCED`: they are planned twice
  at two small values of their loop fields and the total is extrapolated affinely in the
  work ``Π field^exponent`` to the preset's value (assumption: cost = fixed + work ×
  rate). Their memory is then a lower bound (measured at the small values).
- Fits that the recipe runs side by side in threads (``_prieto2025.side_by_side``) are
  timed under the same contention and their sum divided by the number of threads seen.
- **peak memory** is the plan's own peak: resident set (VmHWM, reset per recipe) on CPU,
  ``torch.cuda.max_memory_allocated`` on CUDA. The full run keeps the same models and
  data; only its histories are longer (their size is in the result estimate).
- **result size** is the plan's result with each fit's history arrays scaled to the
  whole run's record and probe counts (an upper bound: a recipe may keep less), or
  "unknown" when the plan did not reach the end of the recipe or its loops were reduced.

``plan <id> --start`` (:func:`start`) only checks that a preset starts: it builds the
preset's own data and models (no reduced loops) and stops at the end of its first
``fit`` call's timed steps, or after ``--time-limit`` seconds (default 10) of work
outside any fit, whichever comes first; both count as started if nothing failed. The
test suite starts every paper preset this way on CPU.

A recipe error after some fits ran is reported as "partial" (the histories are short,
and some recipes index them); the phases timed before it stand.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments import api, recipes, train
from experiments.config import ConfigError

K_STEPS = 6  # timed updates per fit, after the first (whose time counts as setup)
TIME_LIMIT = 600.0  # seconds a plan of one recipe may take before it is stopped

@dataclass(frozen=True)
class Reduced:
    """How to plan a recipe whose own loops (outside ``fit``) are long at paper scale: run
    it at two small settings (``small``, ``large``: field -> value, or ``fractions`` of
    the preset's values of ``fields``, all scaled together) and extrapolate the time
    affinely in ``work(cfg)`` (by default the common fraction itself)."""

    fields: tuple[str, ...] = ()
    fractions: tuple[float, float] = (0.01, 0.02)
    small: dict | None = None
    large: dict | None = None
    work: Any = None
    # why the estimate is only a lower bound (the cost per unit of work grows later in the
    # run than the small settings reach), or "" where the affine model holds
    lower_bound: str = ""

    def configs(self, cfg) -> list:
        if self.small is not None:
            return [dataclasses.replace(cfg, **values) for values in (self.small, self.large)]
        out = []
        for f in self.fractions:
            values = {}
            for name in self.fields:
                full = getattr(cfg, name)
                values[name] = max(1, round(full * f)) if isinstance(full, int) else full * f
            out.append(dataclasses.replace(cfg, **values))
        return out

    def amount(self, cfg, preset) -> float:
        if self.work is not None:
            return float(self.work(cfg))
        name = self.fields[0]
        return float(getattr(cfg, name)) / float(getattr(preset, name))


def _pixel_steps(cfg) -> float:  # the fractal planes: pixels × steps × planes
    planes = cfg.keyframes + (cfg.plane == "offset_vs_lr")
    return float(cfg.resolution) ** 2 * cfg.steps * planes


_FRACTAL = Reduced(small={"resolution": 16, "steps": 20, "keyframes": 2},
                   large={"resolution": 16, "steps": 40, "keyframes": 2}, work=_pixel_steps)

# The recipes whose work outside ``fit`` (flows, scalar nets, Monte Carlo, fractal planes)
# is long at paper scale; every other recipe is planned at its preset as is.
REDUCED: dict[str, Reduced] = {
    **{f"sohldickstein2024-{name}": _FRACTAL for name in
       ("linear", "minibatch", "offset", "relu", "single-datapoint", "tanh")},
    # the RK4 gradient flow, the GD run and their probes all run to flow time η·steps
    "cohen2021-gd-vs-gradient-flow": Reduced(
        ("flow_time",), (0.01, 0.02),
        lower_bound="the RK4 step is α/S and the flow's sharpness S keeps rising after the "
                    "first 2% of the flow time"),
    # central flow, RK4 flow and GD all run `steps`
    "cohen2025-central-flow": Reduced(
        ("steps",), (0.01, 0.02),
        lower_bound="the first 2% of the steps end before the central flow's onset; after it "
                    "a substep holding k eigenvalues costs k(k+1)/2 third-derivative "
                    "contractions (36 at k = 8)"),
    # the scalar nets' GD steps and the gradient-flow solves' time limit (flows from the
    # early, high-loss checkpoints run to the limit: at 1% of it a plan took minutes)
    "kreisler2023-gfs-sharpness": Reduced(("scalar_steps", "flow_max_time"), (0.0005, 0.001)),
    # the empirical NTKs (∝ parameters ∝ width²), once per initialisation: planned at a
    # smaller last width, extrapolated in inits × Σ width²
    "jacot2018-ntk-convergence": Reduced(small={"inits": 2, "widths": (500, 2000)},
                                         large={"inits": 2, "widths": (500, 4000)},
                                         work=lambda cfg: cfg.inits * sum(
                                             w * w for w in cfg.widths)),
    "jacot2018-principal-components": Reduced(
        small={"inits": (1, 1, 1), "widths": (100, 1000, 1500)},
        large={"inits": (1, 1, 1), "widths": (100, 1000, 2500)},
        work=lambda cfg: sum(k * w * w for k, w in zip(cfg.inits, cfg.widths, strict=True))),
    # the Monte-Carlo trajectories and the exact second-moment recursion (each of its steps
    # averages over all C(n, B) batches: 12,870 at n = 16, B = 8), both linear in their
    # field; the 1,800 SGD escape runs are fits, planned as usual
    "wu2023-stability-threshold": Reduced(("mc_trajectories", "moment_steps"), (0.005, 0.01)),
}


def method_text(reduced: bool) -> str:
    if reduced:
        return ("loops reduced: planned at two small values of "
                "the loop fields, extrapolated affinely in their work")
    return (f"each fit: median of {K_STEPS} timed updates after a warm-up one, probes and "
            "evaluations timed per call and counted over the whole run; the rest run as is")


# ---------------------------------------------------------------- one fit call

@dataclass
class Phase:
    """One ``fit`` call as planned."""

    label: str
    steps: int
    timed: int
    step_seconds: float
    probe_seconds: float  # the whole run's probes, estimated
    eval_seconds: float  # the whole run's minibatch evaluations, estimated
    setup_seconds: float
    estimate_seconds: float
    upper_bound: bool
    history_bytes: float  # the whole run's history, estimated
    plan_history_bytes: float
    thread: int
    note: str = ""


def _counts(steps: int, eval_every: int, schedule: train.Schedule | None) -> int:
    """How many steps of a ``steps``-step fit record (and, with ``schedule``, probe)."""
    s = np.arange(steps + 1)
    record = (s % max(eval_every, 1) == 0) | (s == steps)
    if schedule is None:
        return int(record.sum())
    due = (s == 0) | (s == steps)
    if schedule.every is not None:
        due |= s % schedule.every == 0
    elif schedule.log_points is not None:
        due |= np.isin(s, np.fromiter(train._log_steps(schedule.log_points, steps), int))
    return int((record & due).sum())


@dataclass(frozen=True)
class _AsInRun:
    """A probe schedule read against the whole run's step count."""

    schedule: Any
    total: int

    def due(self, step: int, total: int) -> bool:
        return self.schedule.due(step, self.total)


class _Fit:
    """The hook's answer for one fit call: its shortened arguments, then its estimate."""

    def __init__(self, session: _Session, args: dict[str, Any]):
        self.session, self.args = session, {**args, "probes": list(args["probes"])}
        self.steps = int(args["steps"])
        self.timed = min(self.steps, K_STEPS + 1)
        self.label = args["checkpoint"] or f"fit {len(session.phases) + 1}"
        self.events: list[tuple[str, float, float]] = []  # (what, start, end)
        self.ticks: list[float] = []
        self.handles: list[Any] = []
        self.started = time.perf_counter()

    def _timed(self, name: str, fn):
        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.events.append((name, t0, time.perf_counter()))
        return timed

    def _watch(self, opt):
        self.handles.append(opt.register_step_post_hook(
            lambda *_: self.ticks.append(time.perf_counter())))
        return opt

    def arguments(self):
        # each probe runs when it would in the whole run (not at the short run's last step)
        probes = [dataclasses.replace(p, fn=self._timed(f"probe:{p.name}", p.fn),
                                      schedule=_AsInRun(p.schedule, self.steps))
                  for p in self.args["probes"]]
        optimizer = self.args["optimizer"]
        if isinstance(optimizer, torch.optim.Optimizer):
            optimizer = self._watch(optimizer)
        else:
            factory = optimizer
            optimizer = lambda params: self._watch(factory(params))  # noqa: E731
        _CURRENT.set(self)
        return self.timed, probes, optimizer, None

    def _busy(self, lo: float, hi: float) -> float:
        return sum(e - s for _, s, e in self.events if lo <= s < hi)

    def finish(self, history: train.History) -> train.History:
        ended = time.perf_counter()
        _CURRENT.set(None)
        for handle in self.handles:
            handle.remove()
        args, ticks = self.args, self.ticks
        if len(ticks) >= 2:  # the median update without a probe in it: robust to load
            spans = [(b - a, self._busy(a, b)) for a, b in zip(ticks[:-1], ticks[1:], strict=True)]
            clean = [d for d, busy in spans if busy == 0]
            step = float(np.median(clean)) if clean else float(np.mean(
                [d - busy for d, busy in spans]))
        elif ticks:
            step = ticks[0] - self.started - self._busy(self.started, ticks[0])
        else:
            step = 0.0
        step = max(step, 0.0)
        setup = max(ticks[0] - self.started - self._busy(self.started, ticks[0]) - step, 0.0) \
            if ticks else 0.0
        probe_s = 0.0
        for probe in args["probes"]:
            calls = [e - s for name, s, e in self.events if name == f"probe:{probe.name}"]
            if calls:
                probe_s += float(np.mean(calls)) * _counts(self.steps, args["eval_every"],
                                                           probe.schedule)
        evals = [e - s for name, s, e in self.events if name == "evaluate"]
        eval_s = float(np.mean(evals)) * _counts(self.steps, args["eval_every"], None) \
            if evals else 0.0
        estimate = setup + self.steps * step + probe_s + eval_s
        note = ""
        if history.outcome != "budget":  # the short run already stopped: so will the real one
            estimate, note = ended - self.started, f"{history.outcome} at step {history.steps}"
        upper = (args["accuracy_goal"] is not None or args["loss_goal"] is not None) \
            and not note
        plan_bytes, full_bytes = self._history_bytes(history)
        phase = Phase(self.label, self.steps, self.timed, step, probe_s, eval_s, setup,
                      estimate, upper, full_bytes, plan_bytes, threading.get_ident(), note)
        self.session.add(phase, self.started, ended)
        if self.session.first_fit_only:
            raise _Started()
        return history

    def _history_bytes(self, history: train.History) -> tuple[float, float]:
        args = self.args
        records = _counts(self.steps, args["eval_every"], None)
        per_probe = {p.name: _counts(self.steps, args["eval_every"], p.schedule)
                     for p in args["probes"]}
        plan_total = full_total = 0.0
        for key, value in history.arrays.items():
            value = np.asarray(value)
            plan_total += value.nbytes
            if not len(value.shape) or not value.shape[0]:
                full_total += value.nbytes
                continue
            head = key.split(".", 1)[0]
            if key in ("batch_step", "batch_loss"):
                n = self.steps
            elif "." in key and head in per_probe:
                n = per_probe[head]
            else:
                n = records
            full_total += value.nbytes / value.shape[0] * n
        return plan_total, full_total


# ---------------------------------------------------------------- a plan session

class _Started(Exception):  # noqa: N818 (not an error: the start check is over)
    """Raised at the end of the first fit when only the start is checked."""


class _Session:
    def __init__(self, first_fit_only: bool = False):
        self.first_fit_only = first_fit_only
        self.phases: list[Phase] = []
        self.intervals: list[tuple[float, float]] = []
        self.lock = threading.Lock()

    def add(self, phase: Phase, start: float, end: float) -> None:
        with self.lock:
            self.phases.append(phase)
            self.intervals.append((start, end))

    def inside_fit_seconds(self) -> float:
        """Wall time spent inside fit calls (the union of their intervals)."""
        total, last = 0.0, -math.inf
        for start, end in sorted(self.intervals):
            start = max(start, last)
            if end > start:
                total += end - start
                last = end
        return total

    def fit_estimate(self) -> float:
        main = threading.main_thread().ident
        sequential = sum(p.estimate_seconds for p in self.phases if p.thread == main)
        side = [p for p in self.phases if p.thread != main]
        threads = len({p.thread for p in side})
        return sequential + (sum(p.estimate_seconds for p in side) / max(threads, 1))


_SESSION: contextvars.ContextVar[_Session | None] = contextvars.ContextVar(
    "plan_session", default=None)
_CURRENT: contextvars.ContextVar[_Fit | None] = contextvars.ContextVar(
    "plan_fit", default=None)


def _hook(args: dict[str, Any]) -> _Fit | None:
    session = _SESSION.get()
    return None if session is None else _Fit(session, args)


def _timed_evaluate(original):
    def evaluate(*a, **k):
        current = _CURRENT.get()
        if current is None:
            return original(*a, **k)
        return current._timed("evaluate", original)(*a, **k)
    return evaluate


@contextlib.contextmanager
def planning(first_fit_only: bool = False):
    """Within this block every ``train.fit`` call runs a few timed steps; yields the
    session that collects their phases (with ``first_fit_only``, the first fit ends the
    recipe's run by raising ``_Started``)."""
    session = _Session(first_fit_only)
    old_hook, old_eval = train.plan_hook, train.evaluate
    token = _SESSION.set(session)
    train.plan_hook, train.evaluate = _hook, _timed_evaluate(old_eval)
    try:
        yield session
    finally:
        train.plan_hook, train.evaluate = old_hook, old_eval
        _SESSION.reset(token)


class _PlanTimeout(Exception):
    pass


# ---------------------------------------------------------------- measuring one recipe

@dataclass
class _Measured:
    phases: list[Phase]
    seconds: float  # estimated, whole run
    outside_fit: float
    wall: float  # the plan's own time
    peak_mb: float | None
    result_bytes: float | None
    error: str | None = None
    timed_out: bool = False
    started: bool = False  # a start check reached the end of the first fit


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux)
    except OSError:
        pass


def _peak_mb(device: str) -> float | None:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # since start


def _bytes(result: Any) -> float:
    if not isinstance(result, dict):
        return 0.0
    total = 0.0
    for value in result.values():
        try:
            total += np.asarray(value).nbytes
        except (TypeError, ValueError):
            pass
    return total


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:160]


def _measure(module, cfg, device: str, time_limit: float,
             first_fit_only: bool = False) -> _Measured:
    threads, before = api.torch_threads(module), torch.get_num_threads()
    old_cache = os.environ.get("EXPERIMENTS_CACHE")
    alarm = threading.current_thread() is threading.main_thread() and time_limit > 0

    def expire(*_):
        raise _PlanTimeout()

    result, error, timed_out, started_ok = None, None, False, False
    with tempfile.TemporaryDirectory(prefix="experiments-plan-") as scratch, \
            planning(first_fit_only) as session:
        os.environ["EXPERIMENTS_CACHE"] = scratch  # a plan writes nothing to the store
        if device == "cpu":
            torch.set_num_threads(threads)
        previous = signal.signal(signal.SIGALRM, expire) if alarm else None
        _reset_peak(device)
        started = time.perf_counter()
        try:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, time_limit)
            result = module.run(cfg, device)
        except _Started:
            started_ok = True
        except _PlanTimeout:
            timed_out, error = True, f"the plan ran past {time_limit:.0f} s"
        except Exception as err:  # noqa: BLE001 (reported as the plan's status)
            error = _one_line(err)
        finally:
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
            wall = time.perf_counter() - started
            torch.set_num_threads(before)
            if old_cache is None:
                os.environ.pop("EXPERIMENTS_CACHE", None)
            else:
                os.environ["EXPERIMENTS_CACHE"] = old_cache
    peak = _peak_mb(device)
    outside = max(wall - session.inside_fit_seconds(), 0.0)
    size = None
    if error is None:
        size = _bytes(result) + sum(p.history_bytes - p.plan_history_bytes
                                    for p in session.phases)
    return _Measured(session.phases, outside + session.fit_estimate(), outside, wall, peak,
                     size, error, timed_out, started_ok)


# ---------------------------------------------------------------- the plan of a recipe

@dataclass
class Plan:
    recipe_id: str
    scale: str
    device: str
    threads: int
    status: str
    phases: list[Phase] = field(default_factory=list)
    seconds: float | None = None
    outside_fit: float | None = None
    peak_mb: float | None = None
    result_bytes: float | None = None
    plan_seconds: float = 0.0
    reduced: bool = False
    upper_bound: bool = False
    lower_bound: str = ""  # why the estimate is only a lower bound (reduced recipes)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def failed(self) -> bool:
        return self.status.startswith("failed")

    @property
    def started(self) -> bool:
        return self.status.startswith("started")


def _work(values: dict, exponents: dict) -> float:
    return float(np.prod([float(values[k]) ** e for k, e in exponents.items()]))


def _prepare(recipe_id, scale, device, overrides, seed):
    """(module, config, the Plan to fill): bad input raises ConfigError; a recipe whose
    ``check_inputs`` refuses gets its status here ("needs data_dir: ..."/"refused: ...")."""
    module, cfg = api.resolve(recipe_id, scale, overrides, seed)
    device = api.pick_device(device)
    threads = api.torch_threads(module) if device == "cpu" else torch.get_num_threads()
    out = Plan(recipe_id, scale, device, threads, "ok")
    check = getattr(module, "check_inputs", None)
    if check is not None:
        try:
            check(cfg)
        except ConfigError as err:
            kind = "needs data_dir" if "data_dir" in str(err) else "refused"
            out.status = f"{kind}: {err}"
    return module, cfg, out


def plan(recipe_id: str, scale: str = "paper", device: str | None = None,
         overrides: list[str] | dict | None = None, seed: int | None = None,
         time_limit: float = TIME_LIMIT) -> Plan:
    """Plan one recipe's run (see the module docstring for the method).

    Bad input (unknown id, key or value) raises ConfigError, as ``run`` does; a recipe
    whose ``check_inputs`` refuses (data not on this machine) gets the status
    "needs data_dir: ..." (or "refused: ..."), a recipe that fails "failed: <one line>".
    """
    module, cfg, out = _prepare(recipe_id, scale, device, overrides, seed)
    if out.status != "ok":
        return out
    device = out.device
    spec = REDUCED.get(recipe_id)
    started = time.perf_counter()
    if spec is None:
        measured = _measure(module, cfg, device, time_limit)
        out.seconds, out.result_bytes = measured.seconds, measured.result_bytes
        runs = [measured]
    else:
        runs = []
        for reduced in spec.configs(cfg):
            runs.append(_measure(module, reduced, device, time_limit))
            if runs[-1].error:
                break
        if not runs[-1].error:
            w1, w2 = (spec.amount(c, cfg) for c in spec.configs(cfg))
            t1, t2 = runs[0].seconds, runs[1].seconds
            rate = (t2 - t1) / (w2 - w1) if w2 > w1 else 0.0
            if rate <= 0:  # timing noise: fall back to proportional (an upper bound)
                rate, fixed = t2 / w2, 0.0
            else:
                fixed = max(t1 - rate * w1, 0.0)
            out.seconds = fixed + rate * spec.amount(cfg, cfg)
        out.reduced, out.lower_bound = True, spec.lower_bound
    last = runs[-1]
    out.phases, out.peak_mb = last.phases, max((r.peak_mb or 0) for r in runs) or None
    out.outside_fit = last.outside_fit
    out.plan_seconds = time.perf_counter() - started
    out.upper_bound = any(p.upper_bound for p in out.phases)
    if last.error:
        if last.timed_out or not last.phases:
            out.status, out.seconds = f"failed: {last.error}", None
        else:
            out.status = f"partial: stopped after {len(last.phases)} fits: {last.error}"
            out.seconds = last.seconds if spec is None else None
    return out


START_LIMIT = 10.0  # seconds of work before the first fit that a start check allows


def start(recipe_id: str, scale: str = "paper", device: str | None = None,
          overrides: list[str] | dict | None = None, seed: int | None = None,
          time_limit: float = START_LIMIT) -> Plan:
    """Check that a preset starts: its own data and models are built and its first fit
    runs its first timed steps (or ``time_limit`` seconds pass without an error before
    one does). The status is "started: ..." then; "failed: ..." (with the one-line error),
    "needs data_dir: ..." or "refused: ..." otherwise. Writes nothing."""
    module, cfg, out = _prepare(recipe_id, scale, device, overrides, seed)
    if out.status != "ok":
        return out
    device = out.device
    measured = _measure(module, cfg, device, time_limit, first_fit_only=True)
    out.phases, out.peak_mb, out.plan_seconds = measured.phases, measured.peak_mb, measured.wall
    if measured.started:
        first = measured.phases[0]
        out.status = (f"started: {first.label}: {first.timed} updates at "
                      f"{first.step_seconds:.3g} s each, after {measured.wall:.1f} s")
    elif measured.timed_out:
        out.status = (f"started: {time_limit:.0f} s of work without an error, no fit "
                      "finished yet")
    elif measured.error:
        out.status = f"failed: {measured.error}"
    else:
        out.status = f"started: ran to the end in {measured.wall:.1f} s"
    return out


# ---------------------------------------------------------------- printing

def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def size(n: float | None) -> str:
    if n is None:
        return "unknown"
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def phase_table(p: Plan) -> str:
    rows = [("phase", "steps", "timed", "s/update", "probes", "evals", "estimate", "note")]
    for ph in p.phases:
        rows.append((ph.label, str(ph.steps), str(ph.timed), f"{ph.step_seconds:.3g}",
                     duration(ph.probe_seconds), duration(ph.eval_seconds),
                     ("≤ " if ph.upper_bound else "") + duration(ph.estimate_seconds),
                     ph.note))
    rows.append(("outside fit", "", "", "", "", "", duration(p.outside_fit), "run as is"))
    return _format(rows)


def summary_table(plans: list[Plan]) -> str:
    rows = [("recipe", "scale", "device", "phases", "est. wall time", "est. peak memory",
             "est. result size", "status")]
    for p in plans:
        wall = duration(p.seconds)
        if p.seconds is not None and p.lower_bound:
            wall = "≥ " + wall
        elif p.seconds is not None and p.upper_bound:
            wall = "≤ " + wall
        mem = "unknown" if p.peak_mb is None else (
            ("≥ " if p.reduced else "") + size(p.peak_mb * 2**20))
        result = "unknown" if p.reduced or p.result_bytes is None else \
            "≤ " + size(p.result_bytes)
        phases = str(len(p.phases)) + (" (reduced)" if p.reduced else "")
        status = p.status if len(p.status) < 90 else p.status[:87] + "..."
        rows.append((p.recipe_id, p.scale, p.device, phases if p.phases or p.ok else "-",
                     wall, mem, result, status))
    return _format(rows)


def _format(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(args) -> int:
    """The ``plan`` subcommand. Exit 0: every plan ran (or needs data this machine does
    not have, in ``plan all``); 1: a plan failed; 2: bad input, or the one recipe asked
    for needs data_dir (one line naming it)."""
    ids = recipes.recipe_ids() if args.id == "all" else [args.id]
    if args.id != "all":
        api.resolve(args.id, args.scale, args.set, args.seed)  # bad input: exit 2 first
    if args.start:
        return _main_start(args, ids)
    limit = TIME_LIMIT if args.time_limit is None else args.time_limit
    plans = []
    for recipe_id in ids:
        p = plan(recipe_id, args.scale, args.device, args.set if args.id != "all" else None,
                 args.seed if args.id != "all" else None, limit)
        if args.id != "all" and not (p.ok or p.failed or p.status.startswith("partial")):
            print(f"error: {recipe_id}: {p.status}", file=__import__("sys").stderr)
            return 2
        plans.append(p)
        if args.id == "all":
            print(f"planned {recipe_id}: {duration(p.seconds)} ({p.status[:60]}; "
                  f"plan took {p.plan_seconds:.1f} s)", flush=True)
    if len(plans) == 1:
        print(f"{plans[0].recipe_id} ({plans[0].scale}), phase by phase:")
        print(phase_table(plans[0]))
        print()
    print(summary_table(plans))
    for p in plans:
        if p.lower_bound:
            print(f"≥ {p.recipe_id}: {p.lower_bound}")
    threads = sorted({p.threads for p in plans})
    print(f"\ntorch threads: {', '.join(map(str, threads))} (the lab's policy, "
          f"api.torch_threads); device: {plans[0].device}")
    print("method: " + method_text(False) + "; recipes marked (reduced): " + method_text(True)
          + ". '≤': a goal may stop a phase early; '≥': measured at the reduced size (on a "
          "time: the cost per step grows later in the run than the plan reaches, for the "
          "reason printed with the recipe above). "
          "See experiments/plan.py.")
    return 1 if any(p.failed for p in plans) else 0


def _main_start(args, ids: list[str]) -> int:
    """``plan <id|all> --start``: one line per recipe; exit 1 if one failed to start, 2 if
    the one recipe asked for needs data this machine does not have."""
    import sys

    limit = START_LIMIT if args.time_limit is None else args.time_limit
    failed = False
    for recipe_id in ids:
        p = start(recipe_id, args.scale, args.device, args.set if args.id != "all" else None,
                  args.seed if args.id != "all" else None, limit)
        if args.id != "all" and not (p.started or p.failed):
            print(f"error: {recipe_id}: {p.status}", file=sys.stderr)
            return 2
        failed |= p.failed
        peak = "" if p.peak_mb is None else f"; peak {size(p.peak_mb * 2**20)}"
        print(f"{recipe_id} ({p.scale}, {p.device}): {p.status}{peak}", flush=True)
    return 1 if failed else 0


def add_arguments(parser) -> None:
    parser.add_argument("id", help="figure id, or 'all'")
    parser.add_argument("--scale", default="paper", help="paper (default) or quick")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field (repeatable; not with 'all')")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--time-limit", type=float, default=None,
                        help=f"seconds one recipe's plan may take before it is stopped "
                             f"(default {TIME_LIMIT:.0f}; with --start {START_LIMIT:.0f})")
    parser.add_argument("--start", action="store_true",
                        help="only check that the preset starts: build its data and models "
                             "and run its first fit's first steps (or --time-limit seconds)")
