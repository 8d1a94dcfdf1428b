"""One module per reproduced figure; see ``experiments.recipes.base`` for the contract.

A recipe's id is its module name with ``_`` written as ``-``
(``cohen2021_stability_thresholds.py`` is ``cohen2021-stability-thresholds``), so
modules stay importable (and picklable for process pools) while ids read as in
the papers.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import pkgutil
from types import ModuleType

from experiments.config import ConfigError

REQUIRED = ("Config", "PRESETS", "run", "plot", "claims", "PAPER", "DESCRIPTION")


def recipe_ids() -> list[str]:
    return list(_recipe_ids())


@functools.cache
def _recipe_ids() -> tuple[str, ...]:  # the folder is read once per process
    return tuple(sorted(
        info.name.replace("_", "-")
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_") and info.name != "base"
    ))


def load(recipe_id: str) -> ModuleType:
    """Import a recipe by id; an unknown id raises ConfigError naming the nearest ids."""
    ids = recipe_ids()
    if recipe_id not in ids:
        near = difflib.get_close_matches(recipe_id, ids, n=3, cutoff=0.3)
        hint = f"; did you mean {', '.join(near)}?" if near else f"; known: {', '.join(ids)}"
        raise ConfigError(f"unknown figure id {recipe_id!r}{hint}")
    module = importlib.import_module(f"{__name__}.{recipe_id.replace('-', '_')}")
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        raise TypeError(f"recipe {recipe_id} lacks {', '.join(missing)}")
    return module
