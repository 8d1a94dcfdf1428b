"""Shared by the prieto2025-* recipes: one grokking run with its probes.

A run is full-batch training (one epoch = one step, as in the official code) of a model
on a train/test split, with the loss (softmax or StableMax cross-entropy) computed in
its own dtype, and on a schedule: train and test accuracy and loss, the collapse fraction
(of the softmax or the StableMax sum, whichever the loss uses), the exact-zero-loss and
exact-zero-correct-class-gradient fractions of the training set in the loss dtype, the
weight norm,
the median top-2 logit gap, and optionally cos(W, −∇L) per parameter tensor.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from experiments.optim import orthograd
from experiments.probes import softmax_collapse as sc
from experiments.train import Probe, every, fit
from toy_models import grokking as g

PAPER = ("Prieto, Barsbey, Mediano, Birdal 2025, Grokking at the Edge of Numerical "
         "Stability (ICLR)")
LOSS_KINDS = ("softmax", "stablemax")
OPTIMIZERS = ("adamw", "ortho_adamw", "sgd", "ortho_sgd")


def loss_fn(kind: str, dtype: torch.dtype):
    """Per-example cross-entropy of ``kind`` computed in ``dtype`` (the softmax precision)."""
    base = g.softmax_cross_entropy if kind == "softmax" else g.stablemax_cross_entropy
    return lambda logits, labels: base(logits, labels, dtype)


def optimizer(name: str, lr: float, betas=(0.9, 0.99), eps: float = 1e-25,
              weight_decay: float = 0.0, momentum: float = 0.0, ortho_mode: str = "global"):
    """A factory ``params -> optimizer``; ``ortho_*`` wraps the base in ⊥Grad with every
    argument passed through (unlike the official wrapper, see the reference note)."""
    if name in ("adamw", "ortho_adamw"):
        base, kwargs = torch.optim.AdamW, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                           "weight_decay": weight_decay}
    elif name in ("sgd", "ortho_sgd"):
        base, kwargs = torch.optim.SGD, {"lr": lr, "momentum": momentum,
                                         "weight_decay": weight_decay}
    else:
        raise ValueError(f"unknown optimizer {name!r}; one of {OPTIMIZERS}")
    if name.startswith("ortho_"):
        return orthograd(base, ortho_mode, **kwargs)
    return lambda params: base(params, **kwargs)


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).double().mean())


def grokking_run(model, data: dict, loss_kind: str, loss_dtype: torch.dtype, make_optimizer,
                 steps: int, probe_every: int, device: str, *, model_dtype=torch.float32,
                 alignment: bool = False, checkpoint: str | None = None) -> dict:
    """Train ``model`` full batch for ``steps`` epochs; return the probe arrays."""
    criterion = loss_fn(loss_kind, loss_dtype)
    collapse = (sc.softmax_collapse_fraction if loss_kind == "softmax"
                else sc.stablemax_collapse_fraction)
    model = model.to(device=device, dtype=model_dtype)
    x_train, x_test = data["x_train"], data["x_test"]
    if isinstance(model, torch.nn.Sequential) and x_train.is_floating_point():
        try:
            pairs = g.one_hot_pair_indices(x_train), g.one_hot_pair_indices(x_test)
        except ValueError:
            pass    # binary codes or parity bits: the dense first layer
        else:
            model, (x_train, x_test) = g.pair_input(model), pairs
    x_test = x_test.to(device=device, dtype=model_dtype if x_test.is_floating_point()
                       else None)
    y_test = data["y_test"].to(device)

    def probe(state) -> dict:
        with torch.no_grad():
            logits = state.model(state.x)
            test_logits = state.model(x_test)
        out = {"test_acc": float((test_logits.argmax(1) == y_test).double().mean()),
               "test_loss": float(criterion(test_logits, y_test).double().mean()),
               "sc_fraction": collapse(logits, loss_dtype),
               "zero_loss": sc.zero_loss_fraction(criterion(logits, state.y)),
               "zero_grad": sc.zero_gradient_fraction(logits, state.y, criterion),
               "weight_norm": sc.weight_norm(state.model),
               "logit_gap": sc.logit_gap_stats(logits)["median"]}
        if alignment:
            out.update({f"cos.{name}": v for name, v in sc.layer_alignment(state.model).items()})
        return out

    history = fit(model, criterion, x_train, data["y_train"], make_optimizer,
                  steps=steps, device=device, probes=[Probe("p", probe, every(probe_every))],
                  checkpoint=checkpoint, progress=False)
    keep = np.isin(history["step"], history["p.step"])
    out = {"step": history["p.step"], "train_acc": history["train_accuracy"][keep],
           "train_loss": history["train_loss"][keep], "diverged": float(history.diverged)}
    for key, value in history.arrays.items():
        if key.startswith("p.") and key != "p.step":
            out[key[2:]] = value
    return out


def side_by_side(jobs: dict[str, Callable[[], dict]], device: str) -> dict[str, dict]:
    """Run independent grokking runs (``name -> job()``) and return their results by name.

    On CPU they run in threads, one more than the cores (capped at the number of jobs):
    torch releases the GIL in its kernels, and each run's products at one torch thread
    (the lab's policy for this work, see ``experiments.api``) are bit-identical whatever
    runs beside them, so the results do not depend on the number of workers. Measured on
    2 idle cores (three 113-class runs, 70% split, 150 epochs): 108–110 ms per epoch of all
    three side by side at one thread, 111–115 ms one after the other at two threads,
    193 ms one after the other at one thread. Side by side is no faster idle, but each
    run keeps one thread, which does not collapse when another job shares the cores (a
    grokking step at two threads on a loaded box: 244 ms against 29 ms at one, ``bench``).
    Models must be built before (their
    seeded construction touches torch's global RNG); each job runs in a copy of the
    caller's context, so its checkpoints go where the caller's would. On CUDA they run one
    after the other.
    """
    if device != "cpu" or len(jobs) < 2:
        return {name: job() for name, job in jobs.items()}
    workers = min(len(jobs), (os.cpu_count() or 1) + 1)
    with ThreadPoolExecutor(workers) as pool:
        futures = {name: pool.submit(contextvars.copy_context().run, job)
                   for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def first_step(steps, values, threshold: float) -> float:
    """The first probed step with value ≥ threshold; inf if never."""
    hits = [int(s) for s, v in zip(steps, values, strict=True) if v >= threshold]
    return float(hits[0]) if hits else float("inf")


def arrays_of(result: dict, prefix: str) -> dict:
    """The entries of ``result`` under ``prefix.`` with the prefix removed."""
    head = prefix + "."
    return {k[len(head):]: v for k, v in result.items() if k.startswith(head)}
