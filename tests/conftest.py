from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def session_store(tmp_path_factory) -> tuple[Path, Path]:
    """One results cache for the whole test session, so a recipe computed for its claim
    test is reused by its paper page (same config and code, same cache key). Under
    pytest-xdist (``make test`` runs 2 workers) every worker gets the same folder, so a
    result stored by one worker is read by the other; the store's writes are atomic. A
    page and its claim test that ask for the same recipe at the same time on the two
    workers compute it once: ``api.compute`` holds the run directory's lock, so the second
    waits and reads the first one's result (pytest-xdist 3.8's ``loadgroup`` marks did not
    take effect under pytest 9 here, so tests are not grouped).
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = tmp_path_factory.getbasetemp().parent / "session-store"
        root.mkdir(exist_ok=True)
    else:
        root = tmp_path_factory.mktemp("session-store")
    return root / "cache", root / "figures"


@pytest.fixture
def isolated_store(tmp_path, monkeypatch):
    """Point the results cache and the figures folder at a temporary directory."""
    cache, figures = tmp_path / "cache", tmp_path / "figures"
    monkeypatch.setenv("EXPERIMENTS_CACHE", str(cache))
    monkeypatch.setenv("EXPERIMENTS_FIGURES", str(figures))
    return cache, figures


def run_cli(*args: str, env_dirs: tuple[Path, Path] | None = None, timeout: float = 900):
    """Run ``python -m experiments ...`` in a subprocess; return the CompletedProcess.

    The default limit is a guard against a hung process, not a speed test: the slowest
    quick recipe run through it (cohen2021-progressive-sharpening, ~90 s on 2 idle cores)
    gets 10× that. Speed targets live in ``python -m experiments bench``.
    """
    env = dict(os.environ)
    if env_dirs is not None:
        env["EXPERIMENTS_CACHE"], env["EXPERIMENTS_FIGURES"] = map(str, env_dirs)
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def quick_cli_run(recipe: str, dirs: tuple[Path, Path], timeout: float = 900):
    """``python -m experiments run <recipe> --scale quick`` into the store ``dirs``;
    returns (CompletedProcess, dirs) — the recipe tests' module fixture."""
    return run_cli("run", recipe, "--scale", "quick", env_dirs=dirs, timeout=timeout), dirs


def stored_outcome(recipe: str, dirs: tuple[Path, Path], overrides=None):
    """The quick run's outcome read back from the store ``dirs`` (it must be there)."""
    from experiments import api

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EXPERIMENTS_CACHE", str(dirs[0]))
        patch.setenv("EXPERIMENTS_FIGURES", str(dirs[1]))
        outcome = api.run(recipe, overrides=overrides, figure=False)
    assert outcome.from_cache, f"{recipe}: the quick run was not in the store"
    return outcome


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


# ---------------------------------------------------------------- the suite's order

_RUN_CALL = re.compile(r"""experiments\.run\(\s*["']([a-z0-9-]+)["']""")


def _quick_cost(recipe_id: str) -> float:
    """CPU seconds of the committed quick reference's run (0 where there is none)."""
    try:
        record = json.loads((ROOT / "figures" / f"{recipe_id}.json").read_text())
        return float(record["provenance"]["cpu_seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def _recipes_read(item) -> tuple[str, ...]:
    """The quick recipe runs a test reads from the session store (and computes there, if
    it is the first to ask): its ``uses`` mark, its ``recipe``/``recipe_id`` parameter,
    its module's ``RECIPE``, or, for a paper page, every ``experiments.run("<id>", ...)``
    on the page."""
    if "session_store" not in item.fixturenames:
        return ()
    mark = item.get_closest_marker("uses")
    if mark:
        return tuple(mark.args)
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "page" in params:
        return tuple(dict.fromkeys(_RUN_CALL.findall(Path(params["page"]).read_text())))
    for name in ("recipe_id", "recipe"):
        if isinstance(params.get(name), str):
            return (params[name],)
    recipe = getattr(getattr(item, "module", None), "RECIPE", None)
    return (recipe,) if isinstance(recipe, str) else ()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Order the suite for two pytest-xdist workers (``make test``: ``-n 2 --maxschedchunk
    1``, so each worker takes the next test when it is free). Every quick recipe is
    computed once into the session store, and a test that needs one that the other worker
    is computing waits on its lock, so the order decides how long the suite takes:

    1. one test per quick recipe (a claim test rather than a page, which would compute
       several in a row), longest first, by the CPU seconds its committed reference
       recorded, so the two workers share the recipes evenly;
    2. the paper pages, which then mostly read the store;
    3. everything else, the browser test first (one long test).
    """
    owner: dict[str, object] = {}
    for item in sorted(items, key=lambda i: "test_papers.py" in i.nodeid):
        for recipe in _recipes_read(item):
            owner.setdefault(recipe, item)
    owned: dict[object, float] = {}
    for recipe, item in owner.items():
        owned[item] = owned.get(item, 0.0) + _quick_cost(recipe)
    first = sorted(owned, key=lambda i: -owned[i])
    chosen = set(map(id, first))
    pages = [i for i in items if "test_papers.py" in i.nodeid and id(i) not in chosen]
    chosen |= set(map(id, pages))
    rest = [i for i in items if id(i) not in chosen]
    rest.sort(key=lambda i: "test_book.py" not in i.nodeid)  # stable: otherwise as collected
    items[:] = first + pages + rest
