"""``python -m experiments list | params | run | check | bench | sweep``.

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


def markdown_claim_table() -> str:
    """The README's claim table, from the recorded ``figures/<id>.json`` files."""
    lines = ["| figure | scale | claim | expected | measured | ok |", "|---|---|---|---|---|---|"]
    for recipe_id in recipes.recipe_ids():
        last = api.last_recorded(recipe_id)
        if last is None:
            lines.append(f"| `{recipe_id}` | not run | | | | |")
            continue
        for c in last["claims"]:
            ok = "pass" if c["passed"] else "**FAIL**"
            cells = [str(c[k]).replace("|", "\\|") for k in ("name", "expected", "measured")]
            lines.append(f"| `{recipe_id}` | {last['scale']} | " + " | ".join(cells) +
                         f" | {ok} |")
    return "\n".join(lines)


def cmd_list(args) -> int:
    if args.markdown:
        print(markdown_claim_table())
        return 0
    rows = []
    for recipe_id in recipes.recipe_ids():
        module = recipes.load(recipe_id)
        last = api.last_recorded(recipe_id)
        if last is None:
            status = "not run"
        else:
            n_pass = sum(c["passed"] for c in last["claims"])
            status = f"{last['scale']}: {n_pass}/{len(last['claims'])} pass"
        rows.append((recipe_id, module.PAPER, module.DESCRIPTION, status))
    for recipe_id, paper, description, status in rows:
        print(f"{recipe_id}  [{status}]\n    {paper}\n    {description}")
    return 0


def cmd_params(args) -> int:
    module, cfg = api.resolve(args.id, args.scale)
    print(f"{args.id} ({args.scale}):")
    for name, value, allowed in config_mod.describe(cfg):
        print(f"  {name} = {value!r}    ({allowed})")
    return 0


def cmd_run(args) -> int:
    ids = recipes.recipe_ids() if args.id == "all" else [args.id]
    device = api.pick_device(args.device)
    # Validate every requested run before computing any, so bad input writes nothing.
    for recipe_id in ids:
        api.resolve(recipe_id, args.scale, args.set, args.seed)
    rows, crashed = [], []
    for recipe_id in ids:
        try:
            outcome = api.run(recipe_id, args.scale, args.set, args.seed, device,
                              use_cache=not args.no_cache)
        except ConfigError:
            raise
        except Exception:  # one broken recipe must not hide the others' results
            traceback.print_exc()
            crashed.append(recipe_id)
            continue
        source = "cached" if outcome.from_cache else (
            f"{outcome.meta['provenance']['seconds']:.1f} s")
        print(f"{recipe_id}: {source}; wrote {outcome.figure_path} and {outcome.json_path}",
              flush=True)
        rows += [(recipe_id, claim) for claim in outcome.claims]
    print(table(rows))
    if crashed:
        print(f"crashed (see the tracebacks above): {', '.join(crashed)}")
    return 0 if all(claim.passed for _, claim in rows) and not crashed else 1


def cmd_check(args) -> int:
    rows, stale = [], []
    for recipe_id in recipes.recipe_ids():
        module = recipes.load(recipe_id)
        runs = store.cached_runs(recipe_id)
        if not runs:
            print(f"{recipe_id}: no cached result (run it first)")
            continue
        seen_scales = set()
        current_code = store.code_hash(module.__file__)
        for directory, meta in runs:
            if meta["scale"] in seen_scales:
                continue
            seen_scales.add(meta["scale"])
            try:
                cfg = module.Config(**{
                    k: tuple(v) if isinstance(v, list) else v for k, v in meta["config"].items()})
            except TypeError:
                print(f"{recipe_id} ({meta['scale']}): cached with an outdated config; rerun it")
                continue
            result = store.load_result(directory / "result.npz")
            label = f"{recipe_id} ({meta['scale']})"
            if meta["code_hash"] != current_code:
                stale.append(label)
            rows += [(label, claim) for claim in api.evaluate_claims(module, result, cfg)]
    if not rows:
        print("nothing to check")
        return 0
    print(table(rows))
    if stale:
        print("computed with older code: " + ", ".join(stale))
    return 0 if all(claim.passed for _, claim in rows) else 1


def cmd_bench(args) -> int:
    from experiments import bench

    return bench.main(quick=args.quick)


def cmd_sweep(args) -> int:
    from experiments import sweep

    return sweep.main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m experiments",
                     description="Rerun the papers' figures and check their claims.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    listing = sub.add_parser("list", help="every figure id, its paper, and its last claim status")
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

    sub.add_parser("check", help="re-evaluate claims on the cached results")

    bench = sub.add_parser("bench", help="speed and memory benchmark table")
    bench.add_argument("--quick", action="store_true", help="fewer repeats")

    from experiments import sweep as sweep_mod

    sweep = sub.add_parser("sweep", help="a grid of runs (local processes or Slurm), one store, "
                                         "one summary figure")
    sweep_mod.add_arguments(sweep)
    return parser


COMMANDS = {"list": cmd_list, "params": cmd_params, "run": cmd_run, "check": cmd_check,
            "bench": cmd_bench, "sweep": cmd_sweep}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as err:
        return _bad_input(str(err))


if __name__ == "__main__":
    sys.exit(main())
