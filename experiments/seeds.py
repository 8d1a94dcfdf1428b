"""``python -m experiments seeds <id> --n 10``: a recipe's claims at n seeds.

Runs the recipe (its quick or paper preset, with any ``--set``) at seeds
``first … first + n − 1`` as one sweep over ``seed``, so every run is an ordinary entry
of the results store: an interrupted call resumes, and a later ``run <id> --seed s``
is served from the store. Then reports, per claim, at how many seeds it passes and the
spread (min, median, max) of the number its ``measured`` text starts with.

The table is written to the sweep's folder in the store as ``seeds.json``; with
``--reference`` (the preset exactly, no ``--set``) also to ``figures/seeds/<id>.json``
(quick) or ``figures/paper/seeds/<id>.json`` (paper), the committed pass rates.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from typing import Any

from experiments import api, recipes, store
from experiments.config import ConfigError


def _plan(recipe_id: str, scale: str, n: int, first: int, overrides: list[str]):
    from experiments import sweep

    module, cfg = api.resolve(recipe_id, scale, overrides)
    if not any(f.name == "seed" for f in dataclasses.fields(cfg)):
        raise ConfigError(f"seeds: {recipe_id} has no seed field")
    if n < 1:
        raise ConfigError(f"--n: expected a positive number of seeds, got {n}")
    if first < 0:
        raise ConfigError(f"--first: expected a seed >= 0, got {first}")
    return sweep.make_plan(recipe_id, scale, [f"seed={first}:{first + n}"], overrides)


def pass_rates(plan) -> dict[str, Any]:
    """Per claim: passes, seeds that have a result, and the spread of its measured value."""
    from experiments import sweep

    rows = [sweep.point_summary(plan, point)[0] for point in plan.points]
    done = [row for row in rows if row["status"] == "done"]
    claims: dict[str, dict[str, Any]] = {}
    for row in done:
        seed = int(row["grid"]["seed"])
        for claim in row.get("claims", []):
            entry = claims.setdefault(claim["name"], {"name": claim["name"], "passed": 0,
                                                      "seeds": 0, "values": [],
                                                      "failing_seeds": []})
            entry["seeds"] += 1
            entry["passed"] += bool(claim["passed"])
            if not claim["passed"]:
                entry["failing_seeds"].append(seed)
            value = claim.get("value")
            if value is not None and math.isfinite(value):
                entry["values"].append(value)
    table = []
    for entry in claims.values():
        values = entry.pop("values")
        entry["spread"] = ([min(values), statistics.median(values), max(values)]
                           if values else None)
        table.append(entry)
    return {"id": plan.recipe_id, "scale": plan.scale, "set": plan.fixed,
            "seeds": [int(p.grid[0][1]) for p in plan.points],
            "done": len(done), "missing": [r["grid"]["seed"] for r in rows
                                           if r["status"] != "done"],
            "claims": table,
            "provenance": {"git_commit": store.git_commit(),
                           "code_hash": store.code_hash(plan.module.__file__),
                           "written_at_unix": time.time()}}


def format_table(summary: dict[str, Any]) -> str:
    lines = [f"{summary['id']} ({summary['scale']}): {summary['done']} of "
             f"{len(summary['seeds'])} seeds done"]
    for entry in summary["claims"]:
        spread = entry["spread"]
        numbers = "" if spread is None else (
            f"  measured min {spread[0]:.4g}, median {spread[1]:.4g}, max {spread[2]:.4g}")
        failing = (f"  fails at seeds {', '.join(map(str, entry['failing_seeds']))}"
                   if entry["failing_seeds"] else "")
        lines.append(f"  {entry['passed']:>3}/{entry['seeds']:<3} {entry['name']}{numbers}"
                     f"{failing}")
    if summary["missing"]:
        lines.append(f"  not done: seeds {', '.join(map(str, summary['missing']))}")
    return "\n".join(lines)


def reference_path(recipe_id: str, scale: str, figures=None):
    """The committed pass rates' file: under the figures folder in use, or ``figures``."""
    base = store.reference_dir(scale) if figures is None else (
        figures if scale == "quick" else figures / scale)
    return base / "seeds" / f"{recipe_id}.json"


def is_stale(summary: dict[str, Any], recipe_id: str) -> bool:
    """Whether the recipe's code changed since these pass rates were measured."""
    module = recipes.load(recipe_id)
    return summary.get("provenance", {}).get("code_hash") != store.code_hash(module.__file__)


def committed_table(recipe_ids, scale: str = "quick", figures=None) -> str:
    """The committed pass rates (``figures/seeds/<id>.json`` in the project, as written by
    ``seeds <id> --n 10 --reference``) of one or several recipes, one line per claim; a
    recipe without them, or whose code changed since they were measured, says so. For the
    paper pages. ``figures``: another folder of references than the project's."""
    import json

    if isinstance(recipe_ids, str):
        recipe_ids = [recipe_ids]
    figures = store.PROJECT_ROOT / "figures" if figures is None else figures
    blocks = []
    for recipe_id in recipe_ids:
        api.resolve(recipe_id, scale)  # an unknown id or scale: one ConfigError line
        try:
            summary = json.loads(reference_path(recipe_id, scale, figures).read_text())
        except (OSError, ValueError):
            blocks.append(f"{recipe_id} ({scale}): no pass rates over seeds measured yet")
            continue
        text = format_table(summary)
        if is_stale(summary, recipe_id):
            text = text.replace("\n", " (stale: the recipe changed since)\n", 1) \
                if "\n" in text else text + " (stale: the recipe changed since)"
        blocks.append(text)
    return "\n\n".join(blocks)


def main(args) -> int:
    from experiments import sweep

    store.check_environment()
    plan = _plan(args.id, args.scale, args.n, args.first, args.set)
    if args.reference and args.set:
        raise ConfigError("--reference: the committed pass rates are the preset's; drop --set")
    api.pick_device(args.device)
    sweep.check_data_dirs(plan)
    todo = sum(sweep.point_status(p) != "done" for p in plan.points)
    print(f"{plan.recipe_id} ({plan.scale}): seeds {args.first}…{args.first + args.n - 1}, "
          f"{todo} to run", flush=True)
    sweep.execute(plan, "local", args.jobs, args.device, progress=not args.no_progress)
    summary = pass_rates(plan)
    folder = sweep.sweep_folder(plan)
    store.atomic_write_json(folder / "seeds.json", summary)
    written = [folder / "seeds.json"]
    if args.reference:
        path = reference_path(plan.recipe_id, plan.scale)
        store.atomic_write_json(path, summary)
        written.append(path)
    print(format_table(summary))
    print("wrote " + " and ".join(map(str, written)))
    complete = summary["done"] == len(summary["seeds"])
    return 0 if complete and all(e["passed"] == e["seeds"] for e in summary["claims"]) else 1


def add_arguments(parser) -> None:
    parser.add_argument("id", help="figure id")
    parser.add_argument("--scale", default="quick", help="quick or paper")
    parser.add_argument("--n", type=int, default=10, help="how many seeds (default 10)")
    parser.add_argument("--first", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field at every seed (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="local worker processes")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--reference", action="store_true",
                        help="also write the committed pass rates (preset only)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
