"""``python -m experiments paper --budget SECONDS [--device cuda] [--order id,id,...]``.

Runs the paper presets within a wall-time budget, each exactly as
``python -m experiments run <id> --scale paper`` does (``api.run(..., write=True)``,
so each writes its reference ``figures/paper/<id>.{png,json}``).

Order: cheapest estimated first. Every preset that needs running is first planned
(``experiments.plan``, a few timed steps per phase; that time counts against the
budget), so the budget buys as many finished references as it can, and a short budget
finishes the small ones rather than a part of a large one. ``--order`` gives an
explicit order instead (still planned, unless ``--no-plan``).

Resumable: a preset whose reference is current (it exists, it is the preset's config
and the recipe's code has not changed since; ``api.reference_flags`` says neither
"stale" nor "not a preset") is skipped, and a run cut off at the deadline keeps its
checkpoints in the store (``train.fit`` saves every 30 s), so the same command later
resumes it where it stopped.

Within the budget: a preset starts only if its estimate fits in the time left (without
an estimate, ``--no-plan``, if any time is left); at the deadline a running preset is
interrupted (SIGALRM; fits that a recipe runs in threads stop when their threads do).
At the end it prints which presets it ran, which it skipped and which it left, and why.
Exit code: 0 when every preset it ran passes its claims, 1 otherwise (a claim failed,
a run crashed); 2 bad input.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from experiments import api, recipes
from experiments import plan as plan_mod
from experiments.config import ConfigError


class BudgetSpent(Exception):
    """Raised in the main thread when the budget's deadline passes during a run."""


@dataclass
class Report:
    ran: list[tuple[str, str]] = field(default_factory=list)  # (id, what happened)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    left: list[tuple[str, str]] = field(default_factory=list)
    failed: bool = False

    def text(self) -> str:
        lines = []
        for title, rows in (("ran", self.ran), ("skipped", self.skipped), ("left", self.left)):
            lines.append(f"{title} ({len(rows)}):" + ("" if rows else " none"))
            lines += [f"  {rid}: {why}" for rid, why in rows]
        return "\n".join(lines)


def paper_ids() -> list[str]:
    return [rid for rid in recipes.recipe_ids() if "paper" in recipes.load(rid).PRESETS]


def is_current(recipe_id: str) -> bool:
    """The paper reference exists, is of the preset, and the recipe's code is unchanged."""
    ref = api.reference(recipe_id, "paper")
    if ref is None:
        return False
    flags = api.reference_flags(recipe_id, ref)
    return "stale" not in flags and "not a preset" not in flags


def _run_preset(recipe_id: str, device: str) -> tuple[str, bool]:
    outcome = api.run(recipe_id, "paper", device=device, write=True)
    n_pass = sum(c.passed for c in outcome.claims)
    source = "cached" if outcome.from_cache else (
        f"{outcome.meta['provenance']['seconds']:.0f} s")
    return (f"{source}; {n_pass}/{len(outcome.claims)} claims pass; wrote "
            f"{outcome.json_path}"), outcome.passed


def _estimate(recipe_id: str, device: str, time_left: float) -> tuple[float | None, str]:
    """(estimated seconds or None, a reason when it cannot run here)."""
    p = plan_mod.plan(recipe_id, "paper", device, time_limit=max(time_left, 1.0))
    if p.status.startswith(("needs data_dir", "refused")):
        return None, p.status
    if p.seconds is None:
        return None, f"plan {p.status}"
    return p.seconds, ""


def drive(ids: list[str], budget: float, device: str, *, sort: bool = True,
          planned: bool = True,
          estimate: Callable[[str, str, float], tuple[float | None, str]] = _estimate,
          run_one: Callable[[str, str], tuple[str, bool]] = _run_preset,
          current: Callable[[str], bool] = is_current,
          say: Callable[[str], None] = print) -> Report:
    """Run ``ids`` (in this order, or cheapest estimated first with ``sort``) within
    ``budget`` seconds; see the module docstring."""
    report = Report()
    deadline = time.monotonic() + budget

    def left() -> float:
        return deadline - time.monotonic()

    todo: list[tuple[str, float | None]] = []
    for recipe_id in ids:
        if current(recipe_id):
            report.skipped.append((recipe_id, "its reference figures/paper/"
                                   f"{recipe_id}.json is current"))
            continue
        if not planned:
            todo.append((recipe_id, None))
            continue
        if left() <= 0:
            report.left.append((recipe_id, "not planned: the budget was spent"))
            continue
        seconds, reason = estimate(recipe_id, device, left())
        if reason:
            report.left.append((recipe_id, reason))
            continue
        say(f"planned {recipe_id}: about {plan_mod.duration(seconds)}")
        todo.append((recipe_id, seconds))
    if sort and planned:
        todo.sort(key=lambda item: item[1] if item[1] is not None else math.inf)

    alarm = threading.current_thread() is threading.main_thread()

    def expire(*_):
        raise BudgetSpent()

    previous = signal.signal(signal.SIGALRM, expire) if alarm else None
    try:
        for recipe_id, seconds in todo:
            remaining = left()
            if remaining <= 0:
                report.left.append((recipe_id, "the budget was spent"))
                continue
            if seconds is not None and seconds > remaining:
                report.left.append((recipe_id, f"estimated {plan_mod.duration(seconds)}, "
                                    f"{plan_mod.duration(remaining)} of the budget left"))
                continue
            say(f"running {recipe_id} (estimated {plan_mod.duration(seconds)}, "
                f"{plan_mod.duration(remaining)} left)")
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, remaining)
            try:
                what, passed = run_one(recipe_id, device)
            except BudgetSpent:
                report.left.append((recipe_id, "interrupted at the deadline; its checkpoints "
                                    "are kept: rerun the command to resume it"))
                continue
            except ConfigError as err:
                report.left.append((recipe_id, f"refused: {err}"))
                continue
            except Exception:  # one broken recipe must not stop the others
                traceback.print_exc()
                report.ran.append((recipe_id, "crashed (traceback above)"))
                report.failed = True
                continue
            finally:
                if alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            report.ran.append((recipe_id, what))
            report.failed |= not passed
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    return report


def main(args) -> int:
    device = api.pick_device(args.device)
    if args.budget <= 0:
        raise ConfigError(f"--budget: got {args.budget:g}; need seconds > 0")
    known = paper_ids()
    if args.order:
        ids = [rid.strip() for rid in args.order.split(",") if rid.strip()]
        unknown = [rid for rid in ids if rid not in known]
        if unknown:
            raise ConfigError(f"--order: {', '.join(unknown)} is not a recipe with a paper "
                              "preset; see python -m experiments list")
    else:
        ids = known
    for rid in ids:  # bad presets and an unusable store refuse before anything runs
        module, cfg = api.resolve(rid, "paper")
        api.preflight(rid, module, cfg)
    report = drive(ids, args.budget, device, sort=not args.order, planned=not args.no_plan,
                   say=lambda line: print(line, flush=True))
    print(report.text())
    sys.stdout.flush()
    return 1 if report.failed else 0


def add_arguments(parser) -> None:
    parser.add_argument("--budget", type=float, default=3600.0,
                        help="wall-time budget in seconds, planning included (default 3600)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--order", default="",
                        help="comma-separated ids to run in this order (default: every paper "
                             "preset, cheapest estimated first)")
    parser.add_argument("--no-plan", action="store_true",
                        help="do not plan first: start each preset while time is left")
