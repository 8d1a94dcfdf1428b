"""lewkowycz2020-catapult at quick scale: every claim passes."""

from __future__ import annotations

import json

from conftest import run_cli

RECIPE = "lewkowycz2020-catapult"


def test_quick_run_passes_and_records(session_store):
    proc = run_cli("run", RECIPE, "--scale", "quick", env_dirs=session_store)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = json.loads((session_store[1] / f"{RECIPE}.json").read_text())
    assert record["passed"] and len(record["claims"]) == 4
