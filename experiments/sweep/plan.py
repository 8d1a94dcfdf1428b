"""The plan: every grid point validated, with its config and its run directory.

The code hash is computed once per plan (it reads and parses the recipe's sources, about
0.1 s), and each point's run directory is built from it exactly as
:func:`experiments.api.run_directory` builds a single run's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from experiments import api, store
from experiments import config as config_mod
from experiments.config import ConfigError
from experiments.sweep.grid import IntRange, axis_size, grid_size, parse_grid

STATUSES = ("done", "running", "failed", "missing")
ERROR_FILE = "error.json"
MAX_POINTS = 10_000  # the largest grid planned without --max-points


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


def check_size(axes: Sequence[tuple[str, Sequence[str]]], max_points: int) -> int:
    """The grid's number of points (from the axes' lengths); ConfigError above the limit."""
    if max_points < 1:
        raise ConfigError(f"--max-points: expected a positive number, got {max_points}")
    size = grid_size(axes)
    if size > max_points:
        shape = " × ".join(f"{k}: {axis_size(v):,}" for k, v in axes)
        raise ConfigError(f"grid: {size:,} points ({shape}) is more than --max-points "
                          f"{max_points:,}; raise the limit with --max-points N")
    return size


def make_plan(recipe_id: str, scale: str = "quick", grid: Iterable[str] = (),
              overrides: Iterable[str] = (), tiles: int | None = None,
              max_points: int = MAX_POINTS) -> Plan:
    """Validate every point of the grid (ConfigError on the first bad one).

    A grid of more than ``max_points`` points is refused before any point is made.
    """
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
        axes.append(("tile", IntRange(0, tiles)))
    set_keys = [item.split("=", 1)[0].strip() for item in fixed]
    for key in set_keys:
        if set_keys.count(key) > 1:
            raise ConfigError(f"--set {key}: given twice")
        if key in dict(axes) and not (key == "tile" and tiles is not None):
            raise ConfigError(f"{key}: set both by --set and by --grid (or --tiles)")
    check_size(axes, max_points)
    axes_lists = [(k, list(vals)) for k, vals in axes]  # at most max_points values each
    code = store.code_hash(Path(module.__file__))  # once per plan, not once per point
    points = []
    for values in itertools.product(*(vals for _, vals in axes_lists)):
        assigned = tuple(zip((k for k, _ in axes_lists), values, strict=True))
        overrides_ = (*fixed, *(f"{k}={v}" for k, v in assigned))
        try:
            _, cfg = api.resolve(recipe_id, scale, list(overrides_))
        except ConfigError as err:
            where = ", ".join(f"{k}={v}" for k, v in assigned)
            raise ConfigError(f"grid point {where}: {err}") from None
        key = store.run_key(recipe_id, config_mod.to_dict(cfg), code)
        points.append(Point(assigned, overrides_, cfg, store.run_dir(recipe_id, key)))
    keys = [p.key for p in points]
    if len(set(keys)) != len(keys):
        raise ConfigError("two grid points resolve to the same config; drop the repeat")
    return Plan(recipe_id, scale, module, axes_lists, fixed, points, tiles)


def check_data_dirs(plan: Plan) -> None:
    """ConfigError when a ``data_dir`` (of any point) names a folder that does not exist.

    Every distinct value is checked, before anything runs; an empty ``data_dir`` means
    "none" (the recipe then uses its built-in data).
    """
    seen: dict[str, Point] = {}
    for point in plan.points:
        value = getattr(point.config, "data_dir", None)
        if isinstance(value, str | Path) and str(value) and str(value) not in seen:
            seen[str(value)] = point
    for value, point in seen.items():
        if not Path(value).expanduser().is_dir():
            where = f" (grid point {point.label})" if point.grid else ""
            raise ConfigError(f"data_dir: {value} is not a folder{where}; nothing was run")


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


def sweep_folder(plan: Plan) -> Path:
    """A sweep's own folder in the store: its summary (``summary.json``, ``summary.png``)
    and, for the submitit executors, the pickled jobs, their logs and the manifest."""
    return store.cache_root() / "sweeps" / plan.recipe_id / sweep_name(plan)


def sweep_name(plan: Plan) -> str:
    digest = hashlib.sha256("".join(sorted(p.key for p in plan.points)).encode())
    return f"{plan.scale}-{len(plan.points)}pts-{digest.hexdigest()[:10]}"
