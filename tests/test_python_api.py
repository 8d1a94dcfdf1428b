"""What a notebook user calls: experiments.list(), run() with a whole Config, claim tables."""

from __future__ import annotations

import dataclasses

import pytest

import experiments
from experiments import recipes
from experiments.config import ConfigError

RECIPE = "lewkowycz2020-catapult"


def test_list_names_every_recipe_with_its_paper_and_verdict():
    rows = experiments.list()
    assert [r["id"] for r in rows] == recipes.recipe_ids()
    for row in rows:
        assert row["paper"] and row["description"] and "quick" in row["scales"]
        assert row["passed"] in (True, False, None)


def test_run_takes_a_whole_config(isolated_store):
    preset = recipes.load(RECIPE).PRESETS["quick"]
    cfg = dataclasses.replace(preset, steps=20)
    outcome = experiments.run(RECIPE, overrides=cfg, figure=False)
    assert outcome.config == cfg
    same = experiments.run(RECIPE, overrides={"steps": 20}, figure=False)
    assert same.from_cache and same.meta["key"] == outcome.meta["key"]
    # the claims show as a table in text and in Jupyter
    assert repr(outcome.claims).startswith(f"{sum(c.passed for c in outcome.claims)} of ")
    html = outcome.claims._repr_html_()
    assert html.count("<tr>") == len(outcome.claims) + 1 and "<th>measured</th>" in html


def test_a_config_of_another_recipe_or_out_of_bounds_is_refused(isolated_store):
    other = recipes.load("xu2024-xor-grokking").PRESETS["quick"]
    with pytest.raises(ConfigError, match="Config"):
        experiments.run(RECIPE, overrides=other)
    bad = dataclasses.replace(recipes.load(RECIPE).PRESETS["quick"], steps=-5)
    with pytest.raises(ConfigError, match="steps"):
        experiments.run(RECIPE, overrides=bad)
