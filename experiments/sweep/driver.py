"""The Python entry point: :func:`sweep` validates, runs what is not stored, summarises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from experiments import api
from experiments.sweep.executors import execute
from experiments.sweep.plan import MAX_POINTS, Plan, Point, check_data_dirs, make_plan
from experiments.sweep.summary import check_scalar, collect


def preflight(plan: Plan, scalar: str | None, running: bool = True) -> None:
    """The refusals that come before anything runs (ConfigError): a ``--scalar`` that names
    nothing and, when points will run, a ``data_dir`` that is not a folder."""
    if running:
        check_data_dirs(plan)
    check_scalar(plan, scalar)


@dataclass
class SweepResult:
    plan: Plan
    summary: dict[str, Any]
    figure: Any
    ran: list[dict]

    def outcomes(self) -> list[tuple[Point, api.RunOutcome]]:
        """Every done point as a RunOutcome (from the store; nothing is recomputed)."""
        out = []
        for point, row in zip(self.plan.points, self.summary["points"], strict=True):
            if row["status"] == "done":
                out.append((point, api.run(self.plan.recipe_id, self.plan.scale,
                                           list(point.overrides), device="cpu", write=False,
                                           figure=False)))
        return out


def sweep(recipe_id: str, scale: str = "quick", grid: dict[str, Any] | None = None,
          overrides: dict[str, Any] | None = None, jobs: int = 1, executor: str = "local",
          scalar: str | None = None, write: bool | str = False, progress: bool = True,
          tiles: int | None = None, max_points: int = MAX_POINTS) -> SweepResult:
    """Run a grid from Python (e.g. a paper page): ``grid={"seed": range(3)}``; values may be
    lists (or a spec string as on the command line).

    ``write=False`` (the default) writes no summary; ``True`` writes ``summary.json`` and
    ``summary.png`` into the sweep's folder in the store (:func:`sweep_folder`);
    ``"reference"`` also writes the committed ``figures/<id>-sweep.json`` and ``.png``.
    """

    def text(value) -> str:
        return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)

    def axis(key: str, values) -> str:
        if isinstance(values, str):
            return f"{key}={values}"
        if isinstance(values, range) and len(values) > max_points:  # sized, never listed
            return f"{key}={values.start}:{values.stop}:{values.step}"
        return f"{key}={';'.join(text(x) for x in values)}"

    items = [axis(k, v) for k, v in (grid or {}).items()]
    sets = [f"{k}={text(v)}" for k, v in (overrides or {}).items()]
    plan = make_plan(recipe_id, scale, items, sets, tiles, max_points)
    preflight(plan, scalar)
    tracker = execute(plan, executor, jobs, progress=progress)
    summary, fig = collect(plan, scalar, write=write)
    return SweepResult(plan, summary, fig, tracker.records)
