from __future__ import annotations

import os
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
