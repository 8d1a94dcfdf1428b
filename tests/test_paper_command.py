"""``python -m experiments paper --budget``: cheapest first, current references skipped,
a preset left when its estimate does not fit, a run interrupted at the deadline, and the
report of what ran, what was skipped and what was left."""

from __future__ import annotations

import json
import time

from conftest import run_cli

from experiments import config, paper, recipes, store


def _drive(budget, estimates, current=(), run_seconds=None, **kw):
    ran = []

    def run_one(recipe_id, device):
        ran.append(recipe_id)
        time.sleep((run_seconds or {}).get(recipe_id, 0.0))
        return "done", True

    report = paper.drive(list(estimates), budget, "cpu",
                         estimate=lambda rid, dev, left: (estimates[rid], ""),
                         run_one=run_one, current=lambda rid: rid in current,
                         say=lambda line: None, **kw)
    return report, ran


def test_cheapest_first_skipping_current_and_leaving_what_does_not_fit():
    report, ran = _drive(100.0, {"a": 50.0, "b": 1.0, "c": 500.0, "d": 2.0}, current={"d"})
    assert ran == ["b", "a"]
    assert [r for r, _ in report.skipped] == ["d"]
    (left, why), = report.left
    assert left == "c" and "estimated" in why
    assert not report.failed


def test_an_explicit_order_is_kept():
    _, ran = _drive(100.0, {"a": 50.0, "b": 1.0}, sort=False)
    assert ran == ["a", "b"]


def test_a_run_past_the_deadline_is_interrupted_and_the_rest_left():
    started = time.monotonic()
    report, ran = _drive(1.0, {"slow": 0.1, "later": 0.5}, run_seconds={"slow": 30.0})
    assert time.monotonic() - started < 10  # stopped at the deadline, not after 30 s
    assert ran == ["slow"]
    reasons = dict(report.left)
    assert "interrupted" in reasons["slow"] and "resume" in reasons["slow"]
    assert "budget" in reasons["later"]
    assert report.ran == []


def _current_reference(figures, recipe_id):
    module = recipes.load(recipe_id)
    folder = figures / "paper"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{recipe_id}.json").write_text(json.dumps({
        "id": recipe_id, "scale": "paper", "claims": [],
        "config": config.to_dict(module.PRESETS["paper"]),
        "provenance": {"code_hash": store.code_hash(module.__file__), "tree_clean": True}}))


def test_the_command_stops_within_a_tiny_budget_and_says_what_it_did(isolated_store):
    cache, figures = isolated_store
    _current_reference(figures, "xu2024-xor-grokking")
    started = time.monotonic()
    out = run_cli("paper", "--budget", "3", "--device", "cpu", "--order",
                  "xu2024-xor-grokking,lewkowycz2020-catapult,jacot2018-ntk-convergence",
                  env_dirs=isolated_store, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert time.monotonic() - started < 120
    text = out.stdout
    assert "ran (0): none" in text
    assert "skipped (1):\n  xu2024-xor-grokking: its reference" in text
    assert "left (2):" in text
    assert "lewkowycz2020-catapult:" in text and "jacot2018-ntk-convergence:" in text
    assert not (figures / "paper" / "lewkowycz2020-catapult.json").exists()


def test_bad_input_is_one_line_and_exit_2(isolated_store):
    out = run_cli("paper", "--budget", "10", "--order", "no-such-recipe",
                  env_dirs=isolated_store, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: --order: no-such-recipe")
