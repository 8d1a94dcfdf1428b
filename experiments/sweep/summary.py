"""A sweep's summary: per-point rows from the store, the summary figure, stitched tiles,
the status table, and the ``--scalar`` check.

A summary goes into the sweep's own folder in the store (``summary.json`` and
``summary.png`` in :func:`~experiments.sweep.plan.sweep_folder`); only
``write="reference"`` (the CLI's ``--reference``) also writes the committed reference
``figures/<id>-sweep.json`` and ``.png``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from experiments import api, store
from experiments import config as config_mod
from experiments.config import ConfigError
from experiments.sweep.executors import scheduler_states
from experiments.sweep.plan import (
    STATUSES,
    Plan,
    Point,
    point_status,
    read_error,
    sweep_folder,
)

CLAIMS_PASSED = "claims_passed"  # the default scalar: the fraction of a point's claims passing
REFERENCE = "reference"  # collect(write=REFERENCE): also the committed figures/<id>-sweep.*


def claim_value(measured: str) -> float:
    """The number a claim measured: the first number after '=' (else the first number),
    skipping parts of names and fractions such as ``B12``, ``2/η`` or ``4.weight``."""
    number = (r"(?<![\w/.])(?:[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf|nan)"
              r"(?![\w/]|\.[^\W\d])")
    tail = measured.split("=", 1)[1] if "=" in measured else measured
    match = re.search(number, tail)
    return float(match.group(0)) if match else math.nan


def scalars(result: dict[str, Any]) -> dict[str, float | int | bool]:
    """Every numeric 0-d entry of a result dict."""
    out = {}
    for key, value in result.items():
        if isinstance(value, np.ndarray):
            if value.ndim != 0:
                continue
            value = value.item()
        if isinstance(value, bool | np.bool_):
            out[key] = bool(value)
        elif isinstance(value, int | float | np.integer | np.floating):
            out[key] = value.item() if isinstance(value, np.generic) else value
    return out


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def point_summary(plan: Plan, point: Point) -> tuple[dict[str, Any], dict | None]:
    """(JSON-ready summary of a point, its result dict or None)."""
    status = point_status(point)
    row: dict[str, Any] = {"grid": dict(point.grid), "config_hash": point.key,
                           "status": status}
    if status != "done":
        row["error"] = read_error(point)
        return row, None
    try:
        result, meta = store.read_entry(point.directory, plan.recipe_id,
                                        config_mod.to_dict(point.config))
    except store.DamagedEntry as err:  # moved aside: the next run computes it again
        store.quarantine(point.directory, str(err))
        return {**row, "status": "missing", "error": str(err)}, None
    row["seconds"] = meta["provenance"]["seconds"]
    values = scalars(result)
    try:
        claims = api.evaluate_claims(plan.module, result, point.config)
    except Exception as err:  # the result is stored; its claims code is what broke
        claims = []
        row["claims_error"] = f"{type(err).__name__}: {err}"
    row["claims"] = [{"name": c.name, "measured": c.measured, "value":
                      _finite_or_none(claim_value(c.measured)), "passed": c.passed}
                     for c in claims]
    row["passed"] = all(c.passed for c in claims) and "claims_error" not in row
    if claims:
        values[CLAIMS_PASSED] = sum(c.passed for c in claims) / len(claims)
    nonfinite = sorted(k for k, v in values.items()
                       if isinstance(v, float) and not math.isfinite(v))
    if nonfinite:  # divergence is a result, flagged here
        row["nonfinite"] = nonfinite
    row["scalars"] = {k: _finite_or_none(v) for k, v in values.items()}
    return row, result


def pick(row: dict[str, Any], scalar: str) -> float:
    """A point's value of ``scalar``: a result scalar, or ``claim:<part of a claim name>``."""
    if row.get("status") != "done":
        return math.nan
    if scalar.startswith("claim:"):
        wanted = scalar[len("claim:"):]
        for claim in row["claims"]:
            if wanted in claim["name"]:
                return math.nan if claim["value"] is None else float(claim["value"])
        return math.nan
    value = row["scalars"].get(scalar)
    return math.nan if value is None else float(value)


def summarize(plan: Plan, scalar: str | None = None) -> tuple[dict[str, Any], dict]:
    """(the sweep summary, {point key: result}) from what is in the store."""
    rows, results = [], {}
    for point in plan.points:
        row, result = point_summary(plan, point)
        rows.append(row)
        if result is not None:
            results[point.key] = result
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    done = [r for r in rows if r["status"] == "done"]
    if scalar is None:
        scalar = CLAIMS_PASSED if any(r["claims"] for r in done) else next(
            (k for r in done for k in r["scalars"]), CLAIMS_PASSED)
    if done and plan.tiles is None and all(math.isnan(pick(r, scalar)) for r in done):
        names = sorted({k for r in done for k in r["scalars"]})
        raise ConfigError(f"--scalar {scalar!r}: no done point has it; scalars: "
                          f"{', '.join(names[:25])}{' ...' if len(names) > 25 else ''}; "
                          "or claim:<part of a claim name>")
    summary = {
        "id": plan.recipe_id, "scale": plan.scale, "paper": plan.module.PAPER,
        "grid": {k: v for k, v in plan.grid}, "set": plan.fixed, "scalar": scalar,
        "counts": counts, "passed": counts["done"] == len(rows) and all(
            r["passed"] for r in done),
        "points": [{**r, "value": _finite_or_none(pick(r, scalar))} for r in rows],
        "provenance": {"git_commit": store.git_commit(), "packages": store.package_versions(),
                       "written_at_unix": time.time()},
    }
    return summary, results


def _number(text: str) -> float | None:
    try:
        return float(text.split(",")[0]) if text.count(",") == 0 else None
    except ValueError:
        return None


def _seed_stats(values: list[float]) -> tuple[float, float, int]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, 0
    return float(np.mean(finite)), float(np.std(finite)), len(finite)


def plot_summary(plan: Plan, summary: dict[str, Any]):
    """A line (one grid axis) or heatmap (two) of the chosen scalar: mean over seeds with a
    ±1 std band (heatmap: mean, ±std written in the cell). Seeds are the spread."""
    from experiments import plotting

    scalar = summary["scalar"]
    rows = summary["points"]
    axes_keys = plan.axes
    seeds = dict(plan.grid).get("seed", [None])
    title = (f"{plan.recipe_id} ({plan.scale}) sweep\n{summary['counts']['done']}/{len(rows)} "
             f"points done" + (f"; mean ± 1 std over {len(seeds)} seeds" if seeds != [None]
                               else ""))
    ylabel = scalar.removeprefix("claim:")

    def values_at(assign: dict[str, str]) -> list[float]:
        return [r["value"] if r["value"] is not None else math.nan for r in rows
                if all(r["grid"].get(k) == v for k, v in assign.items())]

    if len(axes_keys) == 2:
        (kx, xs), (ky, ys) = [(k, dict(plan.grid)[k]) for k in axes_keys]
        fig, axs = plotting.subplots(1, 1, width=1.0 + 1.1 * len(xs), height=1.2 + 0.8 * len(ys))
        ax = axs[0, 0]
        cells = [[_seed_stats(values_at({kx: x, ky: y})) for x in xs] for y in ys]
        mean = np.array([[m for m, _, _ in row] for row in cells])
        image = ax.imshow(mean, origin="lower", cmap="viridis", aspect="auto")
        for i, row in enumerate(cells):
            for j, (m, s, n) in enumerate(row):
                text = "n/a" if n == 0 else f"{m:.3g}" + (f"\n±{s:.2g}" if seeds != [None]
                                                          else "")
                dark = n > 0 and image.norm(m) < 0.5
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="w" if dark else "k")
        fig.colorbar(image, ax=ax, label=ylabel)
        ax.set(xticks=range(len(xs)), xticklabels=xs, yticks=range(len(ys)), yticklabels=ys,
               xlabel=kx, ylabel=ky)
        ax.grid(False)
    else:
        fig, axs = plotting.subplots(1, 1, width=5.2, height=3.6)
        ax = axs[0, 0]
        kx = axes_keys[0] if axes_keys else "seed"
        xs = dict(plan.grid).get(kx, ["(preset)"])
        numeric = [_number(x) for x in xs]
        use_numbers = all(v is not None for v in numeric) and len(xs) > 1
        positions = np.array(numeric if use_numbers else range(len(xs)), dtype=float)
        others = [k for k in axes_keys[1:]]
        combos = list(itertools.product(*(dict(plan.grid)[k] for k in others))) or [()]
        colors = plotting.palette(len(combos))
        for combo, color in zip(combos, colors, strict=True):
            fixed = dict(zip(others, combo, strict=True))
            label = ", ".join(f"{k}={v}" for k, v in fixed.items()) or None
            if kx == "seed":  # no other axis: every seed on its own, mean as a line
                vals = [values_at({**fixed, "seed": x})[0] for x in xs]
                ax.plot(positions, vals, "o", color=color, label=label or "one seed")
                m, s, _ = _seed_stats(vals)
                ax.axhline(m, color=color, lw=1.2, label=None if label else "mean")
                ax.axhspan(m - s, m + s, color=color, alpha=0.2,
                           label=None if label else "±1 std")
                continue
            stats = [_seed_stats(values_at({**fixed, kx: x})) for x in xs]
            mean = np.array([st[0] for st in stats])
            std = np.array([st[1] for st in stats])
            ax.plot(positions, mean, "o-", color=color, label=label or "mean over seeds")
            if seeds != [None]:
                ax.fill_between(positions, mean - std, mean + std, color=color, alpha=0.2,
                                lw=0, label=None if label else "±1 std")
                for i, (x, pos) in enumerate(zip(xs, positions, strict=True)):
                    vals = values_at({**fixed, kx: x})
                    ax.plot([pos] * len(vals), vals, ".", color=color, ms=4, alpha=0.7,
                            label=None if label or i else "one seed")
        if use_numbers and positions.min() > 0 and positions.max() / positions.min() >= 10:
            ax.set_xscale("log")
        if not use_numbers or kx == "seed":
            ax.set_xticks(positions, xs)
        ax.set(xlabel=kx, ylabel=ylabel)
        ax.legend()
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        title += f"; {len(failed)} failed"
    ax.set_title(title, fontsize=8)
    return fig


def stitch_groups(plan: Plan, results: dict) -> list[dict[str, Any]]:
    """Per combination of the non-tile grid values: the tiles stitched back into a plane."""
    groups: dict[tuple, list[Point]] = {}
    for point in plan.points:
        groups.setdefault(tuple((k, v) for k, v in point.grid if k != "tile"), []).append(point)
    out = []
    for assign, points in groups.items():
        entry: dict[str, Any] = {"grid": dict(assign), "tiles": len(points)}
        if not all(p.key in results for p in points):
            entry["complete"] = False
            out.append(entry)
            continue
        cfg = dataclasses.replace(points[0].config, tile=-1, tiles=1)
        stitched = plan.module.stitch([results[p.key] for p in points], cfg)
        entry.update({"complete": True, "config": cfg, "stitched": stitched,
                      **{k: v for k, v in stitched.items() if np.ndim(v) == 0}})
        out.append(entry)
    return out


def plot_tiles(plan: Plan, groups: list[dict[str, Any]]):
    from experiments import plotting

    complete = [g for g in groups if g["complete"]][:6]
    fig, axs = plotting.subplots(1, max(1, len(complete)), width=4.2, height=3.8)
    for ax, group in zip(axs[0], complete, strict=False):
        plan.module.draw_stitched(ax, group["stitched"], group["config"])
        label = ", ".join(f"{k}={v}" for k, v in group["grid"].items())
        ax.set_title(f"{plan.recipe_id}: {group['tiles']} tiles stitched"
                     + (f" ({label})" if label else "")
                     + f"\nconverged {group['converged_fraction']:.3f}, "
                     f"D = {group['dimension']:.2f}, keyframe cache: "
                     f"{group['keyframe_cache']}", fontsize=8)
    if not complete:
        axs[0, 0].text(0.5, 0.5, "no complete plane yet", ha="center")
    return fig


def collect(plan: Plan, scalar: str | None = None, write: bool | str = True
            ) -> tuple[dict[str, Any], Any]:
    """Summary dict and figure from what is in the store.

    ``write=True``: ``summary.json`` and ``summary.png`` in the sweep's own folder
    (:func:`sweep_folder`); ``write="reference"``: those and the committed reference
    figure ``figures/<id>-sweep.json``/``.png``, the JSON recording ``tree_clean`` (whether
    the git tree had no uncommitted changes); ``write=False``: nothing.
    """
    import matplotlib.pyplot as plt

    from experiments import plotting

    if write not in (True, False, REFERENCE):
        raise ConfigError(f"collect: write must be True, False or {REFERENCE!r}, got {write!r}")
    summary, results = summarize(plan, scalar)
    if plan.tiles is not None:
        groups = stitch_groups(plan, results)
        summary["stitched"] = [{k: v for k, v in g.items() if k not in ("stitched", "config")}
                               for g in groups]
        summary["passed"] = summary["passed"] and all(g["complete"] for g in groups)
        fig = plotting.styled(plot_tiles)(plan, groups)
    else:
        fig = plotting.styled(plot_summary)(plan, summary)
    if write == REFERENCE:
        summary["tree_clean"] = tree_clean(summary["provenance"]["git_commit"])
    if write:
        for png, js in summary_paths(plan, write):
            plotting.save(fig, png)
            store.atomic_write_json(js, summary)
    plt.close(fig)  # returned, not left open in pyplot (a notebook shows it when asked)
    return summary, fig


def tree_clean(commit: str) -> bool:
    """Whether :func:`experiments.store.git_commit` saw a committed, unmodified tree."""
    return commit != "unknown" and not commit.endswith("+dirty")


def summary_paths(plan: Plan, write: bool | str = True) -> list[tuple[Path, Path]]:
    """(png, json) pairs that ``collect(plan, write=write)`` writes."""
    if not write:
        return []
    folder = sweep_folder(plan)
    paths = [(folder / "summary.png", folder / "summary.json")]
    if write == REFERENCE:
        out = store.figures_root()
        paths.append((out / f"{plan.recipe_id}-sweep.png", out / f"{plan.recipe_id}-sweep.json"))
    return paths


def status_table(plan: Plan) -> str:
    states = scheduler_states(plan)
    lines = []
    counts = dict.fromkeys(STATUSES, 0)
    for point in plan.points:
        status = point_status(point)
        counts[status] += 1
        extra = read_error(point) if status == "failed" else (
            "" if status == "done" else states.get(point.label, ""))
        lines.append(f"  {status:8s} {point.key}  {point.label}" + (f"  {extra}" if extra
                                                                    else ""))
    head = f"{plan.recipe_id} ({plan.scale}): " + ", ".join(f"{v} {k}" for k, v in
                                                            counts.items())
    return "\n".join([head, *lines])


# ---------------------------------------------------------------- the --scalar check

def reference_path(recipe_id: str, scale: str) -> Path:
    """The recipe's reference JSON for a scale: ``figures/<id>.json`` (quick) or
    ``figures/paper/<id>.json`` (paper)."""
    root = store.figures_root()
    return root / f"{recipe_id}.json" if scale == "quick" else root / scale / f"{recipe_id}.json"


def reference_names(recipe_id: str, scale: str) -> tuple[list[str] | None, list[str] | None]:
    """(result scalar names, claim names) from the reference JSON; None where it has none."""
    path = reference_path(recipe_id, scale)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None, None
    if not isinstance(data, dict) or data.get("scale", scale) != scale:
        return None, None
    names = data.get("result_scalars")
    names = [str(n) for n in names] if isinstance(names, list) else None
    claims = data.get("claims")
    claims = [str(c["name"]) for c in claims if isinstance(c, dict) and "name" in c] \
        if isinstance(claims, list) else None
    return names, claims


def _matches(scalar: str, names: list[str] | None, claims: list[str] | None) -> bool | None:
    """Whether ``scalar`` names one of these (None: these lists cannot tell)."""
    if scalar.startswith("claim:"):
        wanted = scalar[len("claim:"):]
        return None if claims is None else any(wanted in c for c in claims)
    return None if names is None else scalar in names


def _refusal(scalar: str, names: list[str], claims: list[str], where: str) -> ConfigError:
    if scalar.startswith("claim:"):
        shown = "; ".join(claims[:8]) + (" ..." if len(claims) > 8 else "")
        return ConfigError(f"--scalar {scalar!r}: no claim name contains "
                           f"{scalar[len('claim:'):]!r} ({where}); claims: {shown or 'none'}")
    shown = ", ".join(sorted(names)[:25]) + (" ..." if len(names) > 25 else "")
    return ConfigError(f"--scalar {scalar!r}: not a result scalar ({where}); scalars: "
                       f"{shown or 'none'}; or claim:<part of a claim name>, or {CLAIMS_PASSED}")


def check_scalar(plan: Plan, scalar: str | None) -> None:
    """ConfigError, before anything runs, when ``--scalar`` names nothing.

    Checked against the reference JSON's ``result_scalars`` and claim names; where the
    reference cannot tell (none, or no ``result_scalars``), against the done points'
    stored results; with neither, :func:`summarize` refuses at collect time. Tiled sweeps
    plot the stitched planes, not a scalar, and are not checked; ``claims_passed`` (the
    default) always passes. A scalar the reference lacks is still accepted when a done
    point of this grid has it (claim names hold config values such as η).
    """
    if scalar is None or scalar == CLAIMS_PASSED or plan.tiles is not None:
        return
    names, claims = reference_names(plan.recipe_id, plan.scale)
    known = _matches(scalar, names, claims)
    if known:
        return
    seen_scalars: set[str] = set()
    seen_claims: list[str] = []
    looked = False
    for point in plan.points:
        if point_status(point) != "done":
            continue
        try:
            result, _ = store.read_entry(point.directory, plan.recipe_id,
                                         config_mod.to_dict(point.config))
        except store.DamagedEntry:
            continue  # summarize moves it aside
        looked = True
        seen_scalars.update(scalars(result))
        try:
            seen_claims.extend(c.name for c in api.evaluate_claims(plan.module, result,
                                                                   point.config))
        except Exception:  # the claims code itself fails: summarize records it
            pass
        if _matches(scalar, sorted(seen_scalars), seen_claims):
            return
    if known is False:
        raise _refusal(scalar, names or [], claims or [],
                       f"reference {reference_path(plan.recipe_id, plan.scale)}")
    if looked:
        raise _refusal(scalar, sorted(seen_scalars), seen_claims, "the done points")
