"""``python -m experiments list | params | run | plan | paper | check | bench | sweep | seeds``.

Exit codes: 0 every claim passes, 1 a claim fails, 2 bad input (one line on
stderr naming the problem; nothing written).
"""

from __future__ import annotations

import argparse
import sys
import traceback

import matplotlib

matplotlib.use("Agg")

from experiments import api, recipes, store  # noqa: E402
from experiments import config as config_mod  # noqa: E402
from experiments.claims import table  # noqa: E402
from experiments.config import ConfigError  # noqa: E402


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input in one line and exits 2."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"error: {message}\n")


def _bad_input(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _status(recipe_id: str, scale: str) -> str:
    ref = api.reference(recipe_id, scale)
    if ref is None:
        return f"{scale}: not run"
    n_pass = sum(bool(c.get("passed")) for c in ref["claims"])
    flags = api.reference_flags(recipe_id, ref)
    return f"{scale}: {n_pass}/{len(ref['claims'])} pass" + "".join(f", {f}" for f in flags)


def markdown_claim_table() -> str:
    """The README's claim table, from the reference JSONs (``figures/<id>.json``, and
    ``figures/paper/<id>.json`` where a paper-scale reference exists)."""
    lines = ["| figure | scale | claim | expected | measured | ok | seeds passing |",
             "|---|---|---|---|---|---|---|"]
    for recipe_id in recipes.recipe_ids():
        found = False
        for scale in api.SCALES:
            ref = api.reference(recipe_id, scale)
            if ref is None:
                continue
            found = True
            flags = api.reference_flags(recipe_id, ref)
            label = scale + (f" ({', '.join(flags)})" if flags else "")
            rates = _seed_rates(recipe_id, scale)
            for c in ref["claims"]:
                ok = "pass" if c.get("passed") else "**FAIL**"
                cells = [str(c.get(k, "")).replace("|", "\\|")
                         for k in ("name", "expected", "measured")]
                rate = rates.get(c.get("name"), "")
                lines.append(f"| `{recipe_id}` | {label} | " + " | ".join(cells) +
                             f" | {ok} | {rate} |")
        if not found:
            lines.append(f"| `{recipe_id}` | not run | | | | | |")
    return "\n".join(lines)


def _seed_rates(recipe_id: str, scale: str) -> dict[str, str]:
    """Claim name -> "k/n" from the committed ``seeds --reference`` file, if any (marked
    stale when the recipe's code changed since it was measured)."""
    import json

    from experiments import seeds

    path = seeds.reference_path(recipe_id, scale)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    module = recipes.load(recipe_id)
    stale = data.get("provenance", {}).get("code_hash") != store.code_hash(module.__file__)
    first, last = data["seeds"][0], data["seeds"][-1]
    return {c["name"]: f"{c['passed']}/{c['seeds']} (seeds {first}–{last})"
            + (" stale" if stale else "") for c in data.get("claims", [])}


def cmd_list(args) -> int:
    if args.markdown:
        print(markdown_claim_table())
        return 0
    for recipe_id in recipes.recipe_ids():
        module = recipes.load(recipe_id)
        status = "; ".join(_status(recipe_id, scale) for scale in api.SCALES
                           if scale in module.PRESETS)
        print(f"{recipe_id}  [{status}]\n    {module.PAPER}\n    {module.DESCRIPTION}")
    return 0


def cmd_params(args) -> int:
    """Each field: its value in the preset, what is allowed, its help text, and (for the
    quick preset) the paper preset's value where it differs."""
    import dataclasses

    module, cfg = api.resolve(args.id, args.scale)
    other = "paper" if args.scale == "quick" else "quick"
    other_cfg = module.PRESETS.get(other)
    helps = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cfg)}
    print(f"{args.id} ({args.scale} preset; --set key=value to change one):")
    for name, value, allowed in config_mod.describe(cfg):
        line = f"  {name} = {value!r}    ({allowed})"
        if other_cfg is not None and getattr(other_cfg, name) != value:
            line += f"    [{other}: {getattr(other_cfg, name)!r}]"
        print(line)
        if helps.get(name):
            print(f"      {helps[name]}")
    return 0


def cmd_run(args) -> int:
    ids = recipes.recipe_ids() if args.id == "all" else [args.id]
    if not 1 <= args.jobs <= 64:
        raise ConfigError(f"--jobs: got {args.jobs}; need 1 to 64 processes")
    device = api.pick_device(args.device)
    store.check_environment()
    # Validate every requested run, and that its result and figure can be stored, before
    # computing any, so bad input or an unusable store writes nothing.
    for recipe_id in ids:
        module, cfg = api.resolve(recipe_id, args.scale, args.set, args.seed)
        api.preflight(recipe_id, module, cfg)
        check_inputs = getattr(module, "check_inputs", None)  # data this machine must have
        if check_inputs is not None:
            check_inputs(cfg)
        if api.is_preset(module, cfg, args.scale):
            store.require_writable(store.reference_dir(args.scale), "EXPERIMENTS_FIGURES")
    rows, crashed = [], []
    if args.jobs > 1 and len(ids) > 1:
        done = _run_side_by_side(ids, args, device)
    else:
        done = (_run_one(recipe_id, args.scale, args.set, args.seed, device, not args.no_cache)
                for recipe_id in ids)
    by_id = {}
    for recipe_id, report, claims in done:
        print(report, file=sys.stdout if claims is not None else sys.stderr, flush=True)
        if claims is None:
            crashed.append(recipe_id)
        by_id[recipe_id] = claims or []
    for recipe_id in ids:
        rows += [(recipe_id, claim) for claim in by_id.get(recipe_id, [])]
    print(table(rows))
    if crashed:
        print(f"crashed (see the tracebacks above): {', '.join(crashed)}")
    return 0 if all(claim.passed for _, claim in rows) and not crashed else 1


def _run_one(recipe_id: str, scale: str, overrides, seed, device: str, use_cache: bool):
    """(id, the line to print, its claims or None if it crashed): one recipe of ``run``."""
    try:
        outcome = api.run(recipe_id, scale, overrides, seed, device, write=True,
                          use_cache=use_cache)
    except ConfigError:
        raise
    except Exception:  # one broken recipe must not hide the others' results
        return recipe_id, f"{recipe_id}: crashed\n{traceback.format_exc()}", None
    source = "cached" if outcome.from_cache else (
        f"{outcome.meta['provenance']['seconds']:.1f} s")
    if outcome.figure_path is None:
        report = f"{recipe_id}: {source}; figure not written (the store is read-only here)"
    else:
        where = ("the reference " if outcome.reference else
                 "(not the preset, so not the reference) ")
        report = (f"{recipe_id}: {source}; wrote {where}{outcome.figure_path} and "
                  f"{outcome.json_path}")
    return recipe_id, report, list(outcome.claims)


def _run_side_by_side(ids: list[str], args, device: str):
    """``run all --jobs N``: N worker processes (spawned, so no torch state is inherited),
    each running one recipe at a time at the thread policy's one thread; the recipes
    that took longest in their committed references start first. Yields as they finish."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    def recorded_seconds(recipe_id: str) -> float:
        ref = api.reference(recipe_id, args.scale) or {}
        value = ref.get("provenance", {}).get("seconds")
        return float(value) if isinstance(value, (int, float)) else 0.0

    order = sorted(ids, key=recorded_seconds, reverse=True)
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_run_one, recipe_id, args.scale, args.set, args.seed, device,
                               not args.no_cache) for recipe_id in order]
        for future in as_completed(futures):
            yield future.result()


def _config_from(module, data: dict):
    return module.Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def cmd_plan(args) -> int:
    from experiments import plan

    return plan.main(args)


def cmd_paper(args) -> int:
    from experiments import paper

    return paper.main(args)


def cmd_check(args) -> int:
    """Re-evaluate every reference's claims from its cached arrays, then verify every entry
    of the store; reports each problem on its own line and goes on."""
    store.check_environment()
    rows, notes, flagged, damaged, entries = [], [], [], 0, 0
    for recipe_id in recipes.recipe_ids():
        module = recipes.load(recipe_id)
        for scale in api.SCALES:
            ref = api.reference(recipe_id, scale)
            if ref is None:
                continue
            label = f"{recipe_id} ({scale})"
            flags = api.reference_flags(recipe_id, ref)
            if flags:
                flagged.append(f"{label}: {', '.join(flags)}")
            key = ref.get("provenance", {}).get("cache_key", "")
            directory = store.run_dir(recipe_id, key)
            try:
                result, _ = store.read_entry(directory, recipe_id, ref.get("config"))
                cfg = _config_from(module, ref["config"])
            except store.DamagedEntry as err:
                recorded = sum(bool(c.get("passed")) for c in ref["claims"])
                notes.append(f"{label}: cached arrays not usable ({err}); the reference "
                             f"records {recorded}/{len(ref['claims'])} claims passing")
                continue
            except (TypeError, ValueError) as err:
                notes.append(f"{label}: the reference's config no longer builds ({err})")
                continue
            claims = api.evaluate_claims(module, result, cfg)
            recorded = {c.get("name"): c.get("passed") for c in ref["claims"]}
            for claim in claims:
                if recorded.get(claim.name) is not None and recorded[claim.name] != claim.passed:
                    notes.append(f"{label}: '{claim.name}' recorded "
                                 f"{'pass' if recorded[claim.name] else 'fail'}, "
                                 f"now {'pass' if claim.passed else 'fail'}")
            rows += [(label, claim) for claim in claims]
        for directory in store.entries(recipe_id):
            entries += 1
            try:
                store.read_entry(directory, recipe_id)
            except store.DamagedEntry as err:
                damaged += 1
                print(f"damaged cache entry {directory}: {err}")
    if rows:
        print(table(rows))
    for line in notes:
        print(line)
    for line in flagged:
        print(f"reference {line}")
    print(f"{len(rows)} claims re-evaluated; {len(flagged)} references flagged; "
          f"{entries} cache entries, {damaged} damaged")
    return 0 if all(claim.passed for _, claim in rows) and not damaged else 1


def cmd_bench(args) -> int:
    from experiments import bench

    return bench.main(quick=args.quick)


def cmd_sweep(args) -> int:
    from experiments import sweep

    return sweep.main(args)


def cmd_seeds(args) -> int:
    from experiments import seeds

    return seeds.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m experiments",
                     description="Rerun the papers' figures and check their claims.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    listing = sub.add_parser("list", help="every figure id, its paper, and its references' "
                                          "claim status (stale, dirty flagged)")
    listing.add_argument("--markdown", action="store_true",
                         help="print the recorded claims as the README's Markdown table")

    params = sub.add_parser("params", help="a recipe's config fields and allowed values")
    params.add_argument("id")
    params.add_argument("--scale", default="quick")

    run = sub.add_parser("run", help="run a figure (or all) and check its claims")
    run.add_argument("id", help="figure id, or 'all'")
    run.add_argument("--scale", default="quick", help="quick (CPU, ~1 min) or paper")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config field (repeatable)")
    run.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    run.add_argument("--seed", type=int, default=None)
    run.add_argument("--no-cache", action="store_true", help="recompute even if cached")
    run.add_argument("--jobs", type=int, default=1,
                     help="with 'all': recipes run side by side in this many processes")

    from experiments import paper as paper_mod
    from experiments import plan as plan_mod

    planning = sub.add_parser("plan", help="time a few real steps of each phase of a preset "
                                           "and estimate the whole run's time, memory, size")
    plan_mod.add_arguments(planning)

    paper = sub.add_parser("paper", help="run the paper presets, cheapest first, within a "
                                         "time budget (resumable)")
    paper_mod.add_arguments(paper)

    sub.add_parser("check", help="re-evaluate the references' claims from the store and "
                                 "verify every cache entry")

    bench = sub.add_parser("bench", help="speed and memory benchmark table")
    bench.add_argument("--quick", action="store_true", help="fewer repeats")

    from experiments import sweep as sweep_mod

    sweep = sub.add_parser("sweep", help="a grid of runs (local processes or Slurm), one store, "
                                         "one summary figure")
    sweep_mod.add_arguments(sweep)

    from experiments import seeds as seeds_mod

    seeds = sub.add_parser("seeds", help="a recipe's claims at n seeds: how many pass, and "
                                         "the spread of each measured value")
    seeds_mod.add_arguments(seeds)
    return parser


COMMANDS = {"list": cmd_list, "params": cmd_params, "run": cmd_run, "check": cmd_check,
            "bench": cmd_bench, "sweep": cmd_sweep, "seeds": cmd_seeds, "plan": cmd_plan,
            "paper": cmd_paper}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as err:
        return _bad_input(str(err))
    except BrokenPipeError:  # `... | head` closed the pipe: stop quietly, as `ls | head` does
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
