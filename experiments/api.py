"""Run a recipe through the store: validate, reuse or compute, plot, check claims, write.

The CLI and the paper pages both call :func:`run`, so a figure made in Jupyter and one
made by ``python -m experiments run`` come from the same cached result.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from experiments import config as config_mod
from experiments import recipes, store
from experiments.claims import Claim
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

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.claims)

    def figure(self):
        """The recipe's figure, re-drawn from the result (for notebooks)."""
        return recipes.load(self.recipe_id).plot(self.result, self.config)


def pick_device(device: str | None) -> str:
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"--device: got {device!r}; allowed: cpu, cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: CUDA is not available on this machine; use cpu")
    return device


def resolve(recipe_id: str, scale: str = "quick", overrides: list[str] | dict | None = None,
            seed: int | None = None) -> tuple[ModuleType, Any]:
    """The recipe module and its validated config; raises ConfigError on bad input."""
    module = recipes.load(recipe_id)
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
            cfg = config_mod.apply_overrides(cfg, {"seed": int(seed)})
        config_mod.validate(cfg)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:  # a Config's own cross-field check
        raise ConfigError(f"{recipe_id}: {err}") from None
    return module, cfg


def evaluate_claims(module: ModuleType, result: dict[str, Any], cfg: Any) -> list[Claim]:
    return list(module.claims(result, cfg))


def _provenance(device: str, cfg: Any, seconds: float) -> dict[str, Any]:
    return {
        "git_commit": store.git_commit(),
        "packages": store.package_versions(),
        "device": store.device_description(device),
        "dtype": getattr(cfg, "dtype", "float32"),
        "seconds": round(seconds, 3),
        **store.peak_memory_mb(device),
        "torch_threads": torch.get_num_threads(),
        "finished_at_unix": time.time(),
    }


def run_directory(recipe_id: str, module: ModuleType, cfg: Any) -> Path:
    """Where the store keeps this config's result (its name is the config hash)."""
    code = store.code_hash(Path(module.__file__))
    return store.run_dir(recipe_id, store.run_key(recipe_id, config_mod.to_dict(cfg), code))


def compute(recipe_id: str, module: ModuleType, cfg: Any, scale: str, device: str,
            use_cache: bool = True) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """(result, meta, from_cache): the stored result for this config and code, or a new run.

    A run killed part-way leaves its checkpoints in the run directory; rerunning the
    same command resumes from them. The run directory's lock is held while computing,
    so a second process asked for the same config (a page and a claim test on two test
    workers, two sweep submissions) waits for the first and reuses its result.
    """
    resolved = config_mod.to_dict(cfg)
    code = store.code_hash(Path(module.__file__))
    key = store.run_key(recipe_id, resolved, code)
    directory = store.run_dir(recipe_id, key)
    result_path, meta_path = directory / "result.npz", directory / "meta.json"
    if use_cache and result_path.exists() and meta_path.exists():
        return store.load_result(result_path), json.loads(meta_path.read_text()), True
    # one process computes a config at a time; another asked for it waits, then reads it
    with store.hold(directory, on_wait=lambda: print(
            f"waiting for another process computing {recipe_id} ({directory.name})",
            file=sys.stderr, flush=True)):
        if use_cache and result_path.exists() and meta_path.exists():
            return store.load_result(result_path), json.loads(meta_path.read_text()), True
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        with store.checkpointing(directory / "checkpoints"):
            result = module.run(cfg, device)
        seconds = time.perf_counter() - started
        meta = {
            "id": recipe_id, "scale": scale, "config": resolved, "code_hash": code,
            "key": key, "provenance": _provenance(device, cfg, seconds),
            "finished_at": time.time(),
        }
        store.save_result(result_path, result)
        store.atomic_write_json(meta_path, meta)
        shutil.rmtree(directory / "checkpoints", ignore_errors=True)
    return store.load_result(result_path), meta, False


def write_outputs(recipe_id: str, module: ModuleType, cfg: Any, result: dict[str, Any],
                  claims: list[Claim], meta: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``figures/<id>.png`` and ``figures/<id>.json`` atomically."""
    import matplotlib.pyplot as plt

    from experiments import plotting

    out = store.figures_root()
    png, js = out / f"{recipe_id}.png", out / f"{recipe_id}.json"
    fig = module.plot(result, cfg)
    plotting.save(fig, png)
    plt.close(fig)
    store.atomic_write_json(js, {
        "id": recipe_id,
        "paper": module.PAPER,
        "scale": meta["scale"],
        "config": meta["config"],
        "claims": [c.to_dict() for c in claims],
        "passed": all(c.passed for c in claims),
        "provenance": {**meta["provenance"], "code_hash": meta["code_hash"],
                       "cache_key": meta["key"]},
    })
    return png, js


def run(recipe_id: str, scale: str = "quick", overrides: list[str] | dict | None = None,
        seed: int | None = None, device: str | None = None, write: bool = True,
        use_cache: bool = True) -> RunOutcome:
    """Validate, compute (or reuse), check claims, and write the figure and JSON."""
    module, cfg = resolve(recipe_id, scale, overrides, seed)
    device = pick_device(device)
    result, meta, from_cache = compute(recipe_id, module, cfg, scale, device, use_cache)
    claims = evaluate_claims(module, result, cfg)
    png = js = None
    if write:
        png, js = write_outputs(recipe_id, module, cfg, result, claims, meta)
    return RunOutcome(recipe_id, scale, cfg, result, claims, meta, png, js, from_cache)


def last_recorded(recipe_id: str) -> dict[str, Any] | None:
    path = store.figures_root() / f"{recipe_id}.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
