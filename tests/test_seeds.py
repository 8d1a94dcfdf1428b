"""``python -m experiments seeds``: pass counts over seeds, from runs in the store."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ROOT, files_under, run_cli

from experiments import api, store

RECIPE = "cohen2021-stability-thresholds"
# a coarse, fast variant (~6 s a seed) whose claims partly fail: the counts are not all n/n
COARSE = ["bracket=0.5", "scan_points=3", "bisection_iters=0", "steps=200"]
COARSE_ARGS = [a for item in COARSE for a in ("--set", item)]


def test_seeds_counts_each_claim_over_the_seeds_as_single_runs_do(tmp_path, monkeypatch):
    dirs = (tmp_path / "cache", tmp_path / "figures")
    proc = run_cli("seeds", RECIPE, "--n", "2", "--first", "3", *COARSE_ARGS,
                   "--no-progress", env_dirs=dirs)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # some claims fail by design
    assert "2 of 2 seeds done" in proc.stdout
    assert files_under(dirs[1]) == []  # pass rates of a variant are not a reference
    [summary_path] = list((dirs[0] / "sweeps" / RECIPE).glob("*/seeds.json"))
    summary = json.loads(summary_path.read_text())
    assert summary["seeds"] == [3, 4] and summary["done"] == 2
    # independent: each seed's run read back through the ordinary API, its claims counted
    monkeypatch.setenv("EXPERIMENTS_CACHE", str(dirs[0]))
    monkeypatch.setenv("EXPERIMENTS_FIGURES", str(dirs[1]))
    expected: dict[str, int] = {}
    for seed in (3, 4):
        outcome = api.run(RECIPE, overrides=COARSE, seed=seed, figure=False)
        assert outcome.from_cache
        for claim in outcome.claims:
            expected[claim.name] = expected.get(claim.name, 0) + claim.passed
    assert {c["name"]: c["passed"] for c in summary["claims"]} == expected
    assert all(c["seeds"] == 2 for c in summary["claims"])
    assert any(c["passed"] < 2 for c in summary["claims"])
    for claim in summary["claims"]:
        low, mid, high = claim["spread"]
        assert low <= mid <= high
        assert len(claim["failing_seeds"]) == 2 - claim["passed"]
    # a second call finds every seed in the store
    again = run_cli("seeds", RECIPE, "--n", "2", "--first", "3", *COARSE_ARGS,
                    "--no-progress", env_dirs=dirs)
    def table(out: str) -> str:
        return out[out.index("2 of 2 seeds done"):]

    assert "0 to run" in again.stdout and table(again.stdout) == table(proc.stdout)


def test_seeds_refuses_bad_requests_with_one_line(tmp_path):
    dirs = (tmp_path / "cache", tmp_path / "figures")
    for args, fragment in [
        (("seeds", RECIPE, "--n", "0"), "--n"),
        (("seeds", RECIPE, "--first", "-1"), "--first"),
        (("seeds", RECIPE, "--reference", "--set", "steps=200"), "--reference"),
        (("seeds", RECIPE, "--n", "20000"), "max-points"),
    ]:
        proc = run_cli(*args, env_dirs=dirs, timeout=120)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], (args, proc.stderr)
    assert files_under(tmp_path) == []


def test_the_claim_table_shows_committed_pass_rates(tmp_path):
    figures = tmp_path / "figures"
    (figures / "seeds").mkdir(parents=True)
    reference = json.loads((ROOT / "figures" / f"{RECIPE}.json").read_text())
    (figures / f"{RECIPE}.json").write_text(json.dumps(reference))
    name = reference["claims"][0]["name"]
    module = api.recipes.load(RECIPE)
    rates = {"seeds": list(range(10)), "claims": [{"name": name, "passed": 9, "seeds": 10}],
             "provenance": {"code_hash": store.code_hash(Path(module.__file__))}}
    (figures / "seeds" / f"{RECIPE}.json").write_text(json.dumps(rates))
    table = run_cli("list", "--markdown", env_dirs=(tmp_path / "cache", figures)).stdout
    row = next(line for line in table.splitlines() if name.replace("|", "\\|") in line)
    assert row.endswith("| 9/10 (seeds 0–9) |")
    rates["provenance"]["code_hash"] = "0" * 16
    (figures / "seeds" / f"{RECIPE}.json").write_text(json.dumps(rates))
    table = run_cli("list", "--markdown", env_dirs=(tmp_path / "cache", figures)).stdout
    assert "9/10 (seeds 0–9) stale |" in table


def test_the_pages_table_reads_the_committed_rates_and_says_when_there_are_none(tmp_path):
    from experiments import recipes, seeds, store

    folder = tmp_path / "figures" / "seeds"
    folder.mkdir(parents=True)
    current = store.code_hash(recipes.load("xu2024-xor-grokking").__file__)
    for recipe_id, code in (("xu2024-xor-grokking", current), ("lu2024-benign-oscillation",
                                                               "0123456789abcdef")):
        (folder / f"{recipe_id}.json").write_text(json.dumps({
            "id": recipe_id, "scale": "quick", "seeds": list(range(10)), "done": 10,
            "missing": [], "provenance": {"code_hash": code},
            "claims": [{"name": "a claim", "passed": 9, "seeds": 10, "failing_seeds": [4],
                        "spread": [0.5, 0.75, 1.0]}]}))
    xu, lu, kumar = seeds.committed_table(["xu2024-xor-grokking", "lu2024-benign-oscillation",
                                           "kumar2024-lazy-to-rich"],
                                          figures=tmp_path / "figures").split("\n\n")
    assert xu.splitlines() == [
        "xu2024-xor-grokking (quick): 10 of 10 seeds done",
        "    9/10  a claim  measured min 0.5, median 0.75, max 1  fails at seeds 4"]
    assert lu.splitlines()[0].endswith("(stale: the recipe changed since)")
    assert kumar == "kumar2024-lazy-to-rich (quick): no pass rates over seeds measured yet"
