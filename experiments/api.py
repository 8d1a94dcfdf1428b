"""Run a recipe through the store: validate, reuse or compute, plot, check claims, write.

The CLI and the paper pages both call :func:`run`, so a figure made in Jupyter and one
made by ``python -m experiments run`` come from the same cached result.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from experiments import config as config_mod
from experiments import recipes, store
from experiments.claims import Claim, ClaimList
from experiments.config import ConfigError

SCALES = ("quick", "paper")


@dataclass
class RunOutcome:
    recipe_id: str
    scale: str
    config: Any
    result: dict[str, Any]
    claims: list[Claim]
    meta: dict[str, Any]
    figure_path: Path | None
    json_path: Path | None
    from_cache: bool
    reference: bool = False  # the figure and JSON are the committed reference

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.claims)

    def figure(self):
        """The recipe's figure, re-drawn from the result (for notebooks)."""
        from experiments import plotting

        return plotting.styled(recipes.load(self.recipe_id).plot)(self.result, self.config)


def pick_device(device: str | None) -> str:
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"--device: got {device!r}; allowed: cpu, cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: CUDA is not available on this machine; use cpu")
    return device


THREADS_VARIABLE = "EXPERIMENTS_THREADS"


def torch_threads(module: ModuleType) -> int:
    """How many torch threads a recipe's run gets on CPU: the lab's thread policy.

    One, unless the recipe declares ``THREADS`` (for work dominated by large products) or
    the user sets ``EXPERIMENTS_THREADS``. Most of this lab's work is small ops, where
    torch's default of one thread per core loses badly once the cores are shared; on
    2 cores, with another job beside it, measured: the structured NTK 173 ms at two
    threads against 2.85 ms at one, an AdamW step 240 against 0.76 ms, a grokking step 608
    against 108 ms. Work that is independent (the prieto2025 precisions, the fractal
    chunks) runs side by side at one thread each instead. The count is recorded in the
    provenance; results at one thread do not depend on the machine's load.
    """
    raw = os.environ.get(THREADS_VARIABLE)
    if raw is not None and raw.strip():
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if not 1 <= value <= 1024:
            raise ConfigError(f"{THREADS_VARIABLE}: got {raw!r}; need a whole number of "
                              "threads from 1 to 1024")
        return value
    return int(getattr(module, "THREADS", 1))


def resolve(recipe_id: str, scale: str = "quick", overrides: list[str] | dict | Any = None,
            seed: int | None = None) -> tuple[ModuleType, Any]:
    """The recipe module and its validated config; raises ConfigError on bad input.

    ``overrides`` are ``key=value`` strings (the CLI's ``--set``) or a dict of typed values
    (Python), or a whole ``Config`` of the recipe (``dataclasses.replace(preset, ...)``); all
    go through :func:`experiments.config.apply_overrides`, so a float for an
    int field, ``None`` for a required one or a seed out of range is refused the same way.
    """
    module = recipes.load(recipe_id)
    if dataclasses.is_dataclass(overrides) and not isinstance(overrides, type):
        if not isinstance(overrides, module.Config):
            raise ConfigError(f"{recipe_id}: got a {type(overrides).__module__}."
                              f"{type(overrides).__qualname__}; pass {recipe_id}'s Config")
        overrides = config_mod.to_dict(overrides)
    if scale not in SCALES:
        raise ConfigError(f"--scale: got {scale!r}; allowed: {', '.join(SCALES)}")
    if scale not in module.PRESETS:
        raise ConfigError(f"{recipe_id} has no {scale!r} preset; has {', '.join(module.PRESETS)}")
    cfg = module.PRESETS[scale]
    try:
        if overrides:
            cfg = config_mod.apply_overrides(cfg, overrides)
        if seed is not None:
            if not any(f.name == "seed" for f in dataclasses.fields(cfg)):
                raise ConfigError(f"--seed: {recipe_id} has no seed")
            cfg = config_mod.apply_overrides(cfg, {"seed": seed})
        config_mod.validate(cfg)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:  # a Config's own cross-field check
        raise ConfigError(f"{recipe_id}: {err}") from None
    return module, cfg


def is_preset(module: ModuleType, cfg: Any, scale: str) -> bool:
    """True when ``cfg`` is exactly the ``scale`` preset: only such a run writes a reference."""
    preset = module.PRESETS.get(scale)
    return preset is not None and config_mod.to_dict(preset) == config_mod.to_dict(cfg)


def evaluate_claims(module: ModuleType, result: dict[str, Any], cfg: Any) -> ClaimList:
    return ClaimList(module.claims(result, cfg))


def _provenance(device: str, cfg: Any, seconds: float, cpu_seconds: float,
                threads: int) -> dict[str, Any]:
    commit, clean = store.tree_state()
    return {
        "git_commit": commit + ("+dirty" if clean is False else ""),
        "tree_clean": clean,
        "packages": store.package_versions(),
        "device": store.device_description(device, threads),
        "dtype": getattr(cfg, "dtype", "float32"),
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        **store.peak_memory_mb(device),
        "torch_threads": threads,
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "finished_at_unix": time.time(),
    }


def run_directory(recipe_id: str, module: ModuleType, cfg: Any) -> Path:
    """Where the store keeps this config's result (its name is the config hash)."""
    code = store.code_hash(Path(module.__file__))
    return store.run_dir(recipe_id, store.run_key(recipe_id, config_mod.to_dict(cfg), code))


def _serve(directory: Path, recipe_id: str, resolved: dict[str, Any]):
    """The verified entry in ``directory``, or None (absent, or moved aside as damaged)."""
    if not (directory / "meta.json").exists() and not (directory / "result.npz").exists():
        return None
    try:
        return store.read_entry(directory, recipe_id, resolved)
    except store.DamagedEntry as err:
        try:
            with store.hold(directory):
                try:  # another process may have recomputed it meanwhile
                    return store.read_entry(directory, recipe_id, resolved)
                except store.DamagedEntry:
                    store.quarantine(directory, f"{err}; recomputing it")
        except OSError as os_err:
            raise store.StoreError(f"cache entry {directory}: {err}, and it cannot be moved "
                                   f"aside to be recomputed ({os_err.strerror})") from None
        return None


def preflight(recipe_id: str, module: ModuleType, cfg: Any) -> None:
    """Refuse (StoreError, exit 2) before any compute when this run could not be stored:
    a store folder is a file, or the store is read-only for a config it does not hold, or
    the run's lock path is a symlink or a folder."""
    store.check_environment()
    torch_threads(module)
    directory = run_directory(recipe_id, module, cfg)
    if not store.is_complete(directory):
        store.require_writable(directory, "EXPERIMENTS_CACHE (this config must be computed)")
        lock = directory / ".lock"
        if lock.is_symlink() or lock.is_dir():
            kind = "symlink" if lock.is_symlink() else "folder"
            raise store.StoreError(f"lock {lock} is a {kind}; remove it")


def compute(recipe_id: str, module: ModuleType, cfg: Any, scale: str, device: str,
            use_cache: bool = True) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """(result, meta, from_cache): the stored result for this config and code, or a new run.

    An entry is served only after :func:`store.read_entry` checks its key, recipe, config
    and array digest; a damaged or mismatched one is moved aside with one warning line
    and recomputed. A run killed part-way leaves its checkpoints in the run directory;
    rerunning the same command resumes from them. The run directory's lock is held while
    computing, so a second process asked for the same config (a page and a claim test on
    two test workers, two sweep submissions) waits for the first and reuses its result.
    """
    resolved = config_mod.to_dict(cfg)
    code = store.code_hash(Path(module.__file__))
    key = store.run_key(recipe_id, resolved, code)
    directory = store.run_dir(recipe_id, key)
    if use_cache:
        served = _serve(directory, recipe_id, resolved)
        if served is not None:
            return (*served, True)
    # one process computes a config at a time; another asked for it waits, then reads it
    with store.hold(directory, on_wait=lambda: print(
            f"waiting for another process computing {recipe_id} ({directory.name})",
            file=sys.stderr, flush=True)):
        if use_cache:
            served = _serve(directory, recipe_id, resolved)
            if served is not None:
                return (*served, True)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        threads, before = torch_threads(module), torch.get_num_threads()
        if device == "cpu":
            torch.set_num_threads(threads)
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            with store.checkpointing(directory / "checkpoints"):
                result = module.run(cfg, device)
        finally:
            torch.set_num_threads(before)
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
        digest = store.save_result(directory / "result.npz", result)
        provenance = _provenance(device, cfg, seconds, cpu_seconds,
                                 threads if device == "cpu" else before)
        meta = {
            "id": recipe_id, "scale": scale, "config": resolved, "code_hash": code,
            "key": key, "digest": digest, "provenance": provenance,
            "finished_at": time.time(),
        }
        store.atomic_write_json(directory / "meta.json", meta)
        shutil.rmtree(directory / "checkpoints", ignore_errors=True)
        result, meta = store.read_entry(directory, recipe_id, resolved)
    return result, meta, False


def output_paths(recipe_id: str, scale: str, reference: bool,
                 meta: dict[str, Any]) -> tuple[Path, Path]:
    """(png, json) of a run: the reference under ``figures/`` (quick) or ``figures/paper/``,
    or, for any other run, beside its cached arrays in the store."""
    if reference:
        out = store.reference_dir(scale)
    else:
        out = store.run_dir(recipe_id, meta["key"])
    return out / f"{recipe_id}.png", out / f"{recipe_id}.json"


def result_scalars(result: dict[str, Any]) -> list[str]:
    """Names of the result's scalar (0-d) entries: what a sweep can plot."""
    return sorted(k for k, v in result.items() if np.ndim(v) == 0)


def write_outputs(recipe_id: str, module: ModuleType, cfg: Any, result: dict[str, Any],
                  claims: list[Claim], meta: dict[str, Any], reference: bool = False
                  ) -> tuple[Path, Path]:
    """Write the figure (PNG) and its JSON atomically; see :func:`output_paths` for where."""
    import matplotlib.pyplot as plt

    from experiments import plotting

    png, js = output_paths(recipe_id, meta["scale"], reference, meta)
    fig = plotting.styled(module.plot)(result, cfg)
    plotting.save(fig, png)
    plt.close(fig)
    store.atomic_write_json(js, {
        "id": recipe_id,
        "paper": module.PAPER,
        "scale": meta["scale"],
        "reference": reference,
        "config": meta["config"],
        "claims": [c.to_dict() for c in claims],
        "passed": all(c.passed for c in claims),
        "result_scalars": result_scalars(result),
        "provenance": {**meta["provenance"], "code_hash": meta["code_hash"],
                       "cache_key": meta["key"], "digest": meta.get("digest")},
    })
    return png, js


def run(recipe_id: str, scale: str = "quick", overrides: list[str] | dict | Any = None,
        seed: int | None = None, device: str | None = None, write: bool = False,
        use_cache: bool = True, figure: bool = True) -> RunOutcome:
    """Validate, compute (or reuse), check claims, and write the figure and its JSON.

    Where they go: with ``write=True`` (what the CLI does), a run of a preset exactly as
    defined writes the reference ``figures/<id>.{png,json}`` (``figures/paper/`` for the
    paper preset); every other run -- overrides, another seed, or ``write=False`` (the
    default from Python) -- writes them beside its cached arrays in the store, never over
    a reference. ``figure=False`` writes neither (sweep points). ``overrides``: ``--set``
    strings, a dict, or a whole ``Config`` of the recipe.
    """
    module, cfg = resolve(recipe_id, scale, overrides, seed)
    device = pick_device(device)
    reference = write and is_preset(module, cfg, scale)
    preflight(recipe_id, module, cfg)
    if figure and reference:
        store.require_writable(store.reference_dir(scale), "EXPERIMENTS_FIGURES")
    result, meta, from_cache = compute(recipe_id, module, cfg, scale, device, use_cache)
    claims = evaluate_claims(module, result, cfg)
    png = js = None
    if figure and (reference or store.writable(store.run_dir(recipe_id, meta["key"]))):
        png, js = write_outputs(recipe_id, module, cfg, result, claims, meta, reference)
    return RunOutcome(recipe_id, scale, cfg, result, claims, meta, png, js, from_cache,
                      reference)


def catalogue() -> list[dict[str, Any]]:
    """Every recipe: id, paper, description, scales, and its quick reference's verdict
    (``passed``: True/False, None where no reference is committed). ``experiments.list()``."""
    out = []
    for recipe_id in recipes.recipe_ids():
        module = recipes.load(recipe_id)
        ref = reference(recipe_id, "quick")
        out.append({"id": recipe_id, "paper": module.PAPER, "description": module.DESCRIPTION,
                    "scales": sorted(module.PRESETS),
                    "passed": None if ref is None else bool(ref.get("passed"))})
    return out


def reference(recipe_id: str, scale: str = "quick") -> dict[str, Any] | None:
    """The committed reference JSON of a recipe's preset at ``scale``, or None."""
    path = store.reference_dir(scale) / f"{recipe_id}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("claims"), list) else None


def reference_flags(recipe_id: str, data: dict[str, Any]) -> list[str]:
    """What a reader must know about a reference: "stale" (the recipe's code has changed
    since it was written), "dirty" (written from a tree with uncommitted changes), "not a
    preset" (its config is not the preset's)."""
    module = recipes.load(recipe_id)
    flags = []
    provenance = data.get("provenance", {})
    if provenance.get("code_hash") != store.code_hash(Path(module.__file__)):
        flags.append("stale")
    clean = provenance.get("tree_clean")
    if clean is None:
        clean = not str(provenance.get("git_commit", "+dirty")).endswith("+dirty")
    if not clean:
        flags.append("dirty")
    preset = module.PRESETS.get(data.get("scale"))
    if preset is None or config_mod.to_dict(preset) != data.get("config"):
        flags.append("not a preset")
    return flags
