"""The one training loop.

``fit`` trains any ``torch.optim`` optimizer (or a wrapper around one) on tensors:
full batch with chunked gradient accumulation, or seeded minibatches with or
without replacement; probes on a schedule; stops on a step budget, a train
accuracy goal or a loss goal; divergence (a non-finite or exploding loss) is an
outcome, not an exception. Inside a stored run (see ``store.checkpointing``) it
checkpoints, and a killed run resumes to the same numbers bit for bit on CPU.

The objective is always the mean over examples of the loss's per-example vector
(see ``experiments.losses``), whatever the chunking or batch size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from experiments import store

DTYPES = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64}

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Set only while ``python -m experiments plan`` runs (see experiments/plan.py): given fit's
# arguments it returns None (train as asked) or the few timed steps to run instead.
plan_hook: Callable[[dict[str, Any]], Any] | None = None


# ---------------------------------------------------------------- schedules and probes

@dataclass(frozen=True)
class Schedule:
    """When a probe runs: every ``every`` steps, or at ``log_points`` log-spaced steps.

    Step 0 (before any update) and the final step are always included.
    """

    every: int | None = None
    log_points: int | None = None

    def due(self, step: int, total: int) -> bool:
        if step == 0 or step == total:
            return True
        if self.every is not None:
            return step % self.every == 0
        if self.log_points is not None:
            return step in _log_steps(self.log_points, total)
        return False


def every(k: int) -> Schedule:
    if k < 1:
        raise ValueError("a probe schedule needs k >= 1")
    return Schedule(every=k)


def log_spaced(n: int) -> Schedule:
    return Schedule(log_points=n)


_LOG_STEPS_CACHE: dict[tuple[int, int], frozenset[int]] = {}


def _log_steps(n: int, total: int) -> frozenset[int]:
    key = (n, total)
    if key not in _LOG_STEPS_CACHE:
        points = np.unique(np.round(np.geomspace(1, max(total, 1), n)).astype(int))
        _LOG_STEPS_CACHE[key] = frozenset(int(p) for p in points)
    return _LOG_STEPS_CACHE[key]


@dataclass
class TrainState:
    """What a probe sees: the live model and optimizer, the data, and its own memory.

    ``memory`` persists between calls and is checkpointed (e.g. a warm-start vector),
    so a resumed run probes exactly as an uninterrupted one.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: int
    x: torch.Tensor
    y: torch.Tensor
    loss_fn: LossFn
    chunk_size: int | None
    memory: dict[str, Any]


@dataclass(frozen=True)
class Probe:
    """A named measurement ``fn(state) -> float | dict[str, float | array]`` on a schedule."""

    name: str
    fn: Callable[[TrainState], Any]
    schedule: Schedule = field(default_factory=lambda: every(1))


# ---------------------------------------------------------------- history

@dataclass
class History:
    """What a run recorded: arrays keyed by name, and how it ended.

    ``outcome`` is one of "budget", "accuracy_goal", "loss_goal", "diverged".
    Probe values are stored as ``"<probe>.<key>"`` with their steps in ``"<probe>.step"``.
    """

    arrays: dict[str, np.ndarray]
    outcome: str
    steps: int

    @property
    def diverged(self) -> bool:
        return self.outcome == "diverged"

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def as_result(self, prefix: str) -> dict[str, Any]:
        """Flatten into a recipe result dict under ``prefix``."""
        out: dict[str, Any] = {f"{prefix}{k}": v for k, v in self.arrays.items()}
        out[f"{prefix}diverged"] = self.diverged
        out[f"{prefix}steps"] = self.steps
        return out


class _Recorder:
    def __init__(self, lists: dict[str, list] | None = None):
        self.lists: dict[str, list] = lists if lists is not None else {}

    def add(self, key: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        self.lists.setdefault(key, []).append(value)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.lists.items()}


# ---------------------------------------------------------------- evaluation

def default_accuracy(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """Per-example correctness for class labels or one-hot targets; None for regression."""
    if outputs.ndim != 2 or outputs.shape[1] < 2:
        return None
    if y.ndim == 1 and not y.is_floating_point():
        return outputs.argmax(dim=1) == y
    if y.shape == outputs.shape:
        return outputs.argmax(dim=1) == y.argmax(dim=1)
    return None


def _chunks(n: int, chunk_size: int | None) -> Iterable[slice]:
    size = n if chunk_size is None else max(1, chunk_size)
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def accumulate_gradient(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                        chunk_size: int | None = None,
                        accuracy_fn=default_accuracy) -> tuple[float, float | None]:
    """Set ``.grad`` to the gradient of the mean loss over (x, y); return (loss, accuracy).

    Chunks are weighted by their length / n, so any chunk size gives the full-batch
    gradient (up to float summation order).
    """
    n = x.shape[0]
    total_loss = 0.0
    correct = 0
    has_accuracy = True
    for part in _chunks(n, chunk_size):
        outputs = model(x[part])
        losses = loss_fn(outputs, y[part])
        (losses.sum() / n).backward()
        total_loss += float(losses.detach().double().sum())
        hits = accuracy_fn(outputs.detach(), y[part]) if accuracy_fn else None
        if hits is None:
            has_accuracy = False
        else:
            correct += int(hits.sum())
    return total_loss / n, (correct / n if has_accuracy else None)


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
             chunk_size: int | None = None,
             accuracy_fn=default_accuracy) -> tuple[float, float | None]:
    """Mean loss and accuracy (None for regression) without touching gradients."""
    n = x.shape[0]
    total_loss, correct, has_accuracy = 0.0, 0, True
    for part in _chunks(n, chunk_size):
        outputs = model(x[part])
        total_loss += float(loss_fn(outputs, y[part]).double().sum())
        hits = accuracy_fn(outputs, y[part]) if accuracy_fn else None
        if hits is None:
            has_accuracy = False
        else:
            correct += int(hits.sum())
    return total_loss / n, (correct / n if has_accuracy else None)


# ---------------------------------------------------------------- minibatches

SAMPLINGS = ("epoch", "with_replacement", "subset")


class _BatchSampler:
    """Seeded minibatch indices.

    ``epoch``: reshuffle, then consecutive batches (each example once per epoch);
    ``with_replacement``: B iid uniform indices per step;
    ``subset``: a fresh uniform set of B distinct examples per step, independent across
    steps (the sampling of Ma & Ying's SGD stability analysis).
    """

    def __init__(self, n: int, batch_size: int, sampling: str, seed: int):
        if not 1 <= batch_size <= n:
            raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        self.n, self.batch_size, self.sampling = n, batch_size, sampling
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.long)
        self.position = 0

    def next(self) -> torch.Tensor:
        if self.sampling == "with_replacement":
            return torch.randint(self.n, (self.batch_size,), generator=self.generator)
        if self.sampling == "subset":
            return torch.randperm(self.n, generator=self.generator)[: self.batch_size]
        if self.position + self.batch_size > len(self.order):
            self.order = torch.randperm(self.n, generator=self.generator)
            self.position = 0
        batch = self.order[self.position: self.position + self.batch_size]
        self.position += self.batch_size
        return batch

    def state(self) -> dict[str, Any]:
        return {"rng": self.generator.get_state(), "order": self.order,
                "position": self.position}

    def load(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["rng"])
        self.order, self.position = state["order"], state["position"]


# ---------------------------------------------------------------- the loop

def _is_exploded(loss: float, initial: float, factor: float) -> bool:
    return not math.isfinite(loss) or loss > factor * max(initial, 1e-30)


def _record_probes(probes, state: TrainState, total: int, recorder: _Recorder) -> None:
    for probe in probes:
        if not probe.schedule.due(state.step, total):
            continue
        value = probe.fn(state)
        recorder.add(f"{probe.name}.step", state.step)
        if isinstance(value, dict):
            for key, item in value.items():
                recorder.add(f"{probe.name}.{key}", item)
        else:
            recorder.add(f"{probe.name}.value", value)


def _resume(path, model: nn.Module, opt, sampler, device) -> dict[str, Any] | None:
    """Restore a checkpoint into the fresh model, optimizer, sampler and torch RNG; returns
    its blob, or None after moving a damaged or mismatched file aside (that fit restarts).

    The model and optimizer are loaded only once every part of the file has been read, so
    a file that fails half-way leaves them as freshly built.
    """
    try:
        saved = store.load_checkpoint(path, map_location=device)
        model_state, opt_state = saved["model"], saved["optimizer"]
        memory, history = saved["memory"], saved["history"]
        if not (isinstance(history, dict) and isinstance(memory, dict)):
            raise store.DamagedEntry("checkpoint history or memory is not a dict")
        for key in ("step", "initial_loss", "outcome", "sampler"):
            saved[key]  # noqa: B018 (a missing key is a damaged file)
        rng = saved["torch_rng"]
        fresh_model = {k: v.clone() for k, v in model.state_dict().items()}
        fresh_opt = opt.state_dict()
        try:
            model.load_state_dict(model_state)
            opt.load_state_dict(opt_state)
            if sampler is not None:
                sampler.load(saved["sampler"])
            torch.set_rng_state(rng)
        except Exception:
            model.load_state_dict(fresh_model)
            opt.load_state_dict(fresh_opt)
            raise
    except (store.DamagedEntry, KeyError, TypeError, ValueError, RuntimeError) as err:
        reason = str(err) if isinstance(err, store.DamagedEntry) else (
            f"checkpoint does not fit this run ({type(err).__name__})")
        store.quarantine(path, reason + "; this fit restarts")
        return None
    return saved


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer | Callable[[Iterable[nn.Parameter]], Any],
    *,
    steps: int,
    batch_size: int | None = None,
    replacement: bool = False,
    sampling: str | None = None,
    chunk_size: int | None = None,
    seed: int = 0,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    probes: Iterable[Probe] = (),
    eval_every: int = 1,
    accuracy_goal: float | None = None,
    loss_goal: float | None = None,
    divergence_factor: float = 1e6,
    accuracy_fn=default_accuracy,
    checkpoint: str | None = None,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float = 30.0,
    progress: str | bool = True,
) -> History:
    """Train ``model`` in place for up to ``steps`` optimizer steps and return its History.

    ``optimizer`` is a ``torch.optim`` optimizer over ``model.parameters()`` or a factory
    ``params -> optimizer`` (preferred: it is built after the model is cast to
    ``dtype``/``device``). Full batch when ``batch_size`` is None (gradients summed over
    chunks of ``chunk_size``); else minibatches drawn with ``seed``: reshuffled epochs
    by default, iid draws with ``replacement=True``, or any of ``SAMPLINGS`` by name.

    Recorded every ``eval_every`` steps: ``step``, ``train_loss`` and (for
    classification) ``train_accuracy`` of the full training set at the parameters
    *before* that step; with minibatches also ``batch_loss`` every step. Divergence:
    a non-finite loss or one above ``divergence_factor`` × the initial loss.
    ``progress``: a label for the progress bar, or False for none (e.g. inner runs of a
    sweep that shows its own bar).
    """
    if steps < 0:
        raise ValueError("steps must be >= 0")
    planned = plan_hook(locals()) if plan_hook is not None else None
    if planned is not None:
        steps, probes, optimizer, checkpoint = planned.arguments()
    torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    if torch_dtype is not None or device is not None:
        model.to(device=device, dtype=torch_dtype)
    param = next(model.parameters())
    x = x.to(device=param.device, dtype=param.dtype if x.is_floating_point() else None)
    y = y.to(device=param.device, dtype=param.dtype if y.is_floating_point() else None)
    opt = optimizer if isinstance(optimizer, torch.optim.Optimizer) else optimizer(
        model.parameters())
    probes = list(probes)
    n = x.shape[0]
    if sampling is None:
        sampling = "with_replacement" if replacement else "epoch"
    sampler = None if batch_size is None else _BatchSampler(n, batch_size, sampling, seed)

    recorder = _Recorder()
    memory: dict[str, Any] = {}
    start_step, initial_loss, outcome = 0, None, None
    path = store.checkpoint_path(checkpoint) if checkpoint else None
    if path is not None and path.exists():
        saved = _resume(path, model, opt, sampler, param.device)
        if saved is not None:
            recorder = _Recorder(saved["history"])
            memory = saved["memory"]
            start_step, initial_loss = saved["step"], saved["initial_loss"]
            outcome = saved["outcome"]
            if outcome is not None:
                return History(recorder.arrays(), outcome, start_step)

    def save(step: int, final_outcome: str | None) -> None:
        blob = {
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "history": recorder.lists, "memory": memory, "step": step,
            "initial_loss": initial_loss, "outcome": final_outcome,
            "sampler": sampler.state() if sampler is not None else None,
            "torch_rng": torch.get_rng_state(),
        }
        store.save_checkpoint(path, blob)

    state = TrainState(model, opt, start_step, x, y, loss_fn, chunk_size, memory)
    last_save = time.monotonic()
    # a bar only on a terminal (disable=None) and only if the caller wants one
    bar = tqdm(total=steps, initial=start_step, leave=False, dynamic_ncols=True,
               desc=progress if isinstance(progress, str) else None,
               disable=None if progress is not False else True)
    step = start_step
    try:
        while outcome is None:
            state.step = step
            full_batch = sampler is None
            record = step % eval_every == 0 or step == steps
            opt.zero_grad(set_to_none=True)
            if full_batch:
                loss, accuracy = accumulate_gradient(model, loss_fn, x, y, chunk_size,
                                                     accuracy_fn if record else None)
            else:
                if record:
                    loss, accuracy = evaluate(model, loss_fn, x, y, chunk_size, accuracy_fn)
                idx = sampler.next().to(x.device)
                batch_loss, _ = accumulate_gradient(model, loss_fn, x[idx], y[idx],
                                                    chunk_size, None)
                recorder.add("batch_step", step)
                recorder.add("batch_loss", batch_loss)
            loss_known = full_batch or record
            if initial_loss is None:
                initial_loss = loss
            exploded = loss_known and _is_exploded(loss, initial_loss, divergence_factor)
            if record or exploded:
                recorder.add("step", step)
                recorder.add("train_loss", loss)
                if accuracy is not None:
                    recorder.add("train_accuracy", accuracy)
            if exploded:
                outcome = "diverged"
                break
            if record:
                _record_probes(probes, state, steps, recorder)
                if accuracy_goal is not None and accuracy is not None and \
                        accuracy >= accuracy_goal:
                    outcome = "accuracy_goal"
                    break
                if loss_goal is not None and loss <= loss_goal:
                    outcome = "loss_goal"
                    break
            if not full_batch and not math.isfinite(batch_loss):
                outcome = "diverged"
                break
            if step == steps:
                outcome = "budget"
                break
            opt.step()
            step += 1
            bar.update(1)
            if path is not None:
                due = (step % checkpoint_every == 0) if checkpoint_every else (
                    time.monotonic() - last_save >= checkpoint_seconds)
                if due:
                    save(step, None)
                    last_save = time.monotonic()
    finally:
        bar.close()
    if path is not None:
        save(step, outcome)
    history = History(recorder.arrays(), outcome, step)
    return history if planned is None else planned.finish(history)
