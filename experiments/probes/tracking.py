"""Sharpness tracked along a training run: ``train.Probe`` factories and EoS statistics.

The probes measure the top eigenvalue of the full-batch Hessian (or of the optimizer's
preconditioned Hessian P^{-1/2} H P^{-1/2}) by Lanczos, warm-started from the previous
call's eigenvector, which ``fit`` keeps (and checkpoints) in ``state.memory``, so a
resumed run measures exactly what an uninterrupted one would. By default
(``method="lanczos"``) that is ``curvature.lanczos_sharpness`` started from the previous
call's top two Ritz vectors, which stops at the first step whose residual meets ``tol``
(the same test as ARPACK's ``tol``), so a warm start that is nearly converged costs a few
products; ``method="arpack"`` is the previous
``top_eigenpairs`` with ``ncv`` vectors (never fewer than ncv + 1 products). Each call's
operator retains one gradient graph for its products and releases it before returning.
Each call also records its matvec count and wall seconds, the numbers behind the
sharpness-tracking overhead.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from experiments.probes.curvature import (
    CurvatureOperator,
    _scipy_operator,
    lanczos_sharpness,
    optimizer_preconditioner,
    top_eigenpairs,
)
from experiments.train import Probe, Schedule, TrainState

METHODS = ("lanczos", "arpack")


def _operator(state: TrainState) -> CurvatureOperator:
    return CurvatureOperator(state.model, state.loss_fn, state.x, state.y,
                             chunk_size=state.chunk_size)


def _top(op, memory: dict, key: str, tol: float, ncv: int, method: str) -> tuple[float, int]:
    """Top eigenvalue, warm-started from and updating ``memory[key]``: the previous top
    two Ritz vectors for Lanczos (a 1-D vector from an older checkpoint works too), the
    previous eigenvector for ARPACK."""
    if method == "lanczos":
        eig = lanczos_sharpness(op, v0=memory.get(key), tol=tol, ncv=ncv)
        memory[key] = eig.ritz_vectors
    else:
        v0 = memory.get(key)
        v0 = v0[:, 0] if v0 is not None and np.ndim(v0) == 2 else v0
        eig = top_eigenpairs(op, k=1, v0=v0, tol=tol, ncv=ncv)
        memory[key] = eig.eigenvectors[:, 0]
    return float(eig.eigenvalues[0]), eig.n_matvecs


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def sharpness_probe(schedule: Schedule, *, name: str = "sharpness", tol: float = 1e-6,
                    ncv: int = 8, method: str = "lanczos") -> Probe:
    """λ_max(H) of the full-batch objective, warm-started Lanczos to relative residual
    ``tol`` (``ncv``: ARPACK's Krylov vectors, for ``method="arpack"`` or the fallback)."""
    _check_method(method)

    def measure(state: TrainState) -> dict[str, float]:
        started = time.perf_counter()
        with _operator(state) as op:
            value, matvecs = _top(op, state.memory, name, tol, ncv, method)
        return {"value": value, "matvecs": matvecs,
                "seconds": time.perf_counter() - started}

    return Probe(name, measure, schedule)


class _Preconditioned:
    """P^{-1/2} H P^{-1/2} with the interface ``top_eigenpairs`` and ``lanczos_sharpness``
    use (so ``ncv`` applies)."""

    def __init__(self, op: CurvatureOperator, preconditioner: torch.Tensor):
        self.op = op
        self.scale = preconditioner.to(device=op.device, dtype=op.dtype).rsqrt()
        self.n_params, self.dtype, self.device = op.n_params, op.dtype, op.device

    @property
    def n_matvecs(self) -> int:
        return self.op.n_matvecs

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.scale * self.op.matvec(self.scale * v)

    def as_scipy(self):
        return _scipy_operator(self.matvec, self.n_params, self.dtype, self.device)


def preconditioned_sharpness_probe(schedule: Schedule, *, name: str = "preconditioned",
                                   tol: float = 1e-6, ncv: int = 8, raw: bool = True,
                                   method: str = "lanczos") -> Probe:
    """λ_max(P⁻¹H) with P the optimizer's diagonal (``optimizer_preconditioner``), and λ_max(H).

    Before the first step the optimizer has no preconditioner: the value is NaN there.
    ``raw=False`` skips λ_max(H) (e.g. to track it on a coarser schedule with
    ``sharpness_probe``). ``method`` as in ``sharpness_probe``; both eigenproblems share
    one operator, so one retained gradient graph.
    """
    _check_method(method)

    def measure(state: TrainState) -> dict[str, float]:
        started = time.perf_counter()
        out = {}
        value = math.nan
        with _operator(state) as op:
            if raw:
                out["raw"], _ = _top(op, state.memory, f"{name}.raw", tol, ncv, method)
            if state.step > 0:
                diagonal = optimizer_preconditioner(state.optimizer, state.model.parameters())
                value, _ = _top(_Preconditioned(op, diagonal), state.memory, name, tol, ncv,
                                method)
        return {"value": value, **out, "matvecs": op.n_matvecs,
                "seconds": time.perf_counter() - started}

    return Probe(name, measure, schedule)


# ---------------------------------------------------------------- edge-of-stability statistics

def first_crossing(values: np.ndarray, threshold: float) -> int | None:
    """Index of the first sample at or above ``threshold`` (None if it never gets there)."""
    above = np.flatnonzero(np.asarray(values) >= threshold)
    return int(above[0]) if len(above) else None


def eos_summary(steps: np.ndarray, sharpness: np.ndarray, threshold: float,
                band: float = 0.10) -> dict[str, float]:
    """How a sharpness trace meets its stability threshold.

    ``crossing_step``: first sampled step with S ≥ threshold (NaN if none);
    ``rise_spearman``: rank correlation of S with the step over the samples before the
    crossing (1 = strictly rising), and ``rise``: S at the crossing / S at the start;
    after the crossing: ``mean_ratio`` (time average of S/threshold), ``within_band``
    (fraction of samples with |S/threshold − 1| ≤ ``band``), ``min_ratio``/``max_ratio``.
    """
    steps, sharpness = np.asarray(steps), np.asarray(sharpness, dtype=np.float64)
    keep = np.isfinite(sharpness)
    steps, sharpness = steps[keep], sharpness[keep]
    nan = math.nan
    out = {"crossing_step": nan, "rise_spearman": nan, "rise": nan, "mean_ratio": nan,
           "within_band": nan, "min_ratio": nan, "max_ratio": nan, "samples_after": 0.0}
    index = first_crossing(sharpness, threshold)
    if index is None:
        return out
    out["crossing_step"] = float(steps[index])
    if index >= 2:
        out["rise_spearman"] = float(spearmanr(steps[: index + 1],
                                               sharpness[: index + 1]).statistic)
    out["rise"] = float(sharpness[index] / sharpness[0])
    ratio = sharpness[index:] / threshold
    out["mean_ratio"] = float(np.mean(ratio))
    out["within_band"] = float(np.mean(np.abs(ratio - 1) <= band))
    out["min_ratio"], out["max_ratio"] = float(ratio.min()), float(ratio.max())
    out["samples_after"] = float(len(ratio))
    return out


def loss_after_crossing(steps: np.ndarray, loss: np.ndarray, crossing_step: float
                        ) -> dict[str, float]:
    """Loss increases after the crossing (count), and the loss at the crossing and at the end."""
    steps, loss = np.asarray(steps), np.asarray(loss, dtype=np.float64)
    if not math.isfinite(crossing_step):
        return {"increases": math.nan, "at_crossing": math.nan, "at_end": float(loss[-1])}
    after = loss[steps >= crossing_step]
    return {"increases": float(np.sum(np.diff(after) > 0)), "at_crossing": float(after[0]),
            "at_end": float(after[-1])}
