from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


# Which paper page runs the recipes of each recipe-test module: the page and the module go
# to one pytest-xdist worker (``--dist loadgroup``), so the page's run fills the shared
# session store and the claim tests read it back instead of computing it again.
PAGE_OF_TEST_MODULE = {
    "test_recipe_adaptive_eos": "cohen2022",
    "test_recipe_cohen2025_central_flow": "cohen2025",
    "test_recipe_gd_vs_gradient_flow": "cohen2021",
    "test_recipe_progressive_sharpening": "cohen2021",
    "test_recipe_stability_thresholds": "cohen2021",
    "test_recipe_jacot2018_ntk_convergence": "jacot2018",
    "test_recipe_jacot2018_kernel_regression_limit": "jacot2018",
    "test_recipe_jacot2018_principal_components": "jacot2018",
    "test_recipe_kreisler2023_gfs_sharpness": "kreisler2023",
    "test_recipe_kumar2024_lazy_to_rich": "kumar2024",
    "test_recipe_lewkowycz2020_catapult": "lewkowycz2020",
    "test_recipe_lu2024_benign_oscillation": "lu2024",
    "test_recipe_prieto2025": "prieto2025",
    "test_recipe_sohldickstein2024": "sohldickstein2024",
    "test_recipe_wu2023_norm_selection": "wu2023",
    "test_recipe_wu2023_sgd_trace_bound": "wu2023",
    "test_recipe_wu2023_stability_threshold": "wu2023",
    "test_recipe_xu2024_xor_grokking": "xu2024",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        if module == "test_papers" and hasattr(item, "callspec"):
            group = item.callspec.id
        elif module.startswith("test_recipe_"):
            group = PAGE_OF_TEST_MODULE.get(module, module)
        else:
            continue
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def session_store(tmp_path_factory) -> tuple[Path, Path]:
    """One results cache for the whole test session, so a recipe computed for its claim
    test is reused by its paper page (same config and code, same cache key). Under
    pytest-xdist every worker gets the same folder (the store's writes are atomic)."""
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


def run_cli(*args: str, env_dirs: tuple[Path, Path] | None = None, timeout: float = 600):
    """Run ``python -m experiments ...`` in a subprocess; return the CompletedProcess."""
    env = dict(os.environ)
    if env_dirs is not None:
        env["EXPERIMENTS_CACHE"], env["EXPERIMENTS_FIGURES"] = map(str, env_dirs)
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []
