"""The bench (`python -m experiments bench`): its table, and rows that must run whatever the
machine's speed.

The table prints one line per row with its target and whether it is met, and nothing
else: the torch profiler's start/stop lines, written by its C++ side, are dropped.

The trace rows run whatever the machine's speed.

Hutch++ needs at least 4 curvature products; the bench sizes its budget from timings, and
on a loaded machine the exact trace once cost fewer than 4 products, which crashed the
whole bench. The rows must come back with finite estimates at equal product budgets.
"""

from __future__ import annotations

import re
import subprocess
import sys

import experiments.bench as bench
from experiments.bench import sgd as bench_sgd


def test_table_gives_every_row_a_target_and_a_verdict():
    rows = [bench.Row("a measure", "1.5", "<= 2", True), bench.Row("  context", "3", "", None),
            bench.Row("another", "9", ">= 10", False)]
    lines = bench.format_table(rows).splitlines()
    assert len(lines) == 1 + len(rows)
    assert lines[0].split() == ["measure", "target", "met", "measured"]
    assert [line.split("  ")[-1].strip() for line in lines[1:]] == ["1.5", "3", "9"]
    assert " yes " in lines[1] and " - " in lines[2] and " NO " in lines[3]


def test_peak_memory_measurement_prints_nothing():
    code = ("import torch; from experiments.bench import peak_allocated_bytes; "
            "print(peak_allocated_bytes(lambda: torch.ones(1000) * 2) > 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout == "True\n" and out.stderr == ""


def test_bench_package_keeps_the_cli_entry_point():
    assert callable(bench.main) and set(bench.TOPICS) >= {"curvature", "eos", "ntk"}


def test_trace_rows_compare_estimators_at_one_budget_of_at_least_six_products():
    rows = bench_sgd.rows()
    assert len(rows) == 3
    budgets = [int(re.search(r"\((\d+) GN products\)", row[0]).group(1)) for row in rows[1:]]
    assert budgets[0] == budgets[1] >= 6 and budgets[0] % 3 == 0
    for row in rows[1:]:
        error = float(re.search(r"relative error ([0-9.e+-]+)", row[1]).group(1))
        assert 0 <= error < 1
