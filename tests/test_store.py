from __future__ import annotations

import numpy as np
import pytest

from experiments import store


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a" / "out.json"
    store.atomic_write_json(path, {"x": 1})
    store.atomic_write_json(path, {"x": 2, "arr": np.arange(3)})
    assert path.read_text().strip().startswith("{")
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.json"
    store.atomic_write_json(path, {"x": 1})
    with pytest.raises(TypeError):
        store.atomic_write_json(path, {"x": object()})
    assert '"x": 1' in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_result_round_trip(tmp_path):
    result = {"curve": np.linspace(0, 1, 5), "scalar": 2.5, "count": 3, "flag": True}
    store.save_result(tmp_path / "r.npz", result)
    loaded = store.load_result(tmp_path / "r.npz")
    np.testing.assert_array_equal(loaded["curve"], result["curve"])
    assert loaded["scalar"] == 2.5 and loaded["count"] == 3 and loaded["flag"] is True


def test_run_key_depends_on_config_and_code():
    base = store.run_key("fig", {"lr": 0.1}, "code1")
    assert base == store.run_key("fig", {"lr": 0.1}, "code1")
    assert base != store.run_key("fig", {"lr": 0.2}, "code1")
    assert base != store.run_key("fig", {"lr": 0.1}, "code2")
    assert base != store.run_key("other", {"lr": 0.1}, "code1")


def test_checkpoint_path_only_inside_a_stored_run(tmp_path):
    assert store.checkpoint_path("gd") is None
    with store.checkpointing(tmp_path):
        assert store.checkpoint_path("gd lr=0.1") == tmp_path / "gd_lr=0.1.pt"
    assert store.checkpoint_path("gd") is None


def test_code_sources_follow_the_recipes_imports():
    recipe = store.PACKAGE_DIR / "recipes" / "cohen2021_stability_thresholds.py"
    names = {p.relative_to(store.PROJECT_ROOT).as_posix() for p in store.code_sources(recipe)}
    assert {"toy_models/stability.py", "experiments/train.py",
            "experiments/probes/curvature.py"} <= names
    assert "toy_models/sgd_stability.py" not in names
    assert "experiments/recipes/wu2023_stability_threshold.py" not in names


def test_code_hash_is_remembered_until_a_source_changes(monkeypatch):
    """The hash is memoised per recipe; an edit (a new mtime or size) recomputes it."""
    import os
    from pathlib import Path

    from experiments import recipes

    recipe = Path(recipes.load("lewkowycz2020-catapult").__file__)
    first = store.code_hash(recipe)
    stamps, value = store._CODE_HASHES[recipe.resolve()]
    assert value == first and any(p == recipe.resolve() for p, _, _ in stamps)
    calls = []
    real = store.code_sources
    monkeypatch.setattr(store, "code_sources", lambda f: calls.append(f) or real(f))
    assert store.code_hash(recipe) == first and calls == []       # served from memory
    # a source whose stamp no longer matches (as after an edit) forces a fresh hash
    path, mtime, size = stamps[0]
    store._CODE_HASHES[recipe.resolve()] = (((path, mtime - 1, size),) + stamps[1:], "stale")
    assert store.code_hash(recipe) == first and len(calls) == 1
    assert os.path.exists(path)


def test_a_recipe_figure_leaves_the_callers_rcparams_alone(isolated_store):
    """The lab's style applies inside plotting.style(), not to the global rcParams."""
    import matplotlib as mpl
    import matplotlib.pyplot as plt

    from experiments import api, plotting

    before = dict(mpl.rcParams)
    outcome = api.run("lewkowycz2020-catapult", overrides={"steps": 30}, figure=False)
    fig = outcome.figure()
    assert dict(mpl.rcParams) == before
    # the figure itself got the style: no top spine, the style's title size
    ax = fig.axes[0]
    assert not ax.spines["top"].get_visible()
    assert ax.title.get_fontsize() == plotting.STYLE["axes.titlesize"]
    plt.close(fig)
