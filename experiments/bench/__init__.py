"""``python -m experiments bench [--quick]``: measured speed and memory against the issues'
targets, printed as one table, never asserted.

Every row is (what, measured, target, met); ``met`` is None for a row that only gives
context (then target and met print as "-"). The rows come from this package's topic
modules, each a ``rows(quick) -> list[Row]``, in ``TOPICS`` order:

- ``curvature``: HVP against gradient (time, peak memory) at widths 100-800, products to a
  warm-started sharpness, on the fc-tanh MNIST-1D workload;
- ``eos``: the sharpness-tracking overhead of ``cohen2021-progressive-sharpening``;
- ``grokking``, ``ntk``, ``sgd``, ``fractal``: their issues' rows.
- ``explorers``: seconds per slider update of each live explorer, at its slowest setting;
- ``plan``: a quick preset's planned wall time against its measured run.

Timings are medians of repeated calls. Where the torch thread count matters (small-op
work, which the project runs at one thread) a row pair gives 1 and 2 threads.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

TOPICS = ("curvature", "eos", "grokking", "ntk", "sgd", "fractal", "explorers", "plan")


@dataclass
class Row:
    what: str
    measured: str
    target: str
    met: bool | None


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextlib.contextmanager
def _silenced_output() -> Iterator[None]:
    """Send the process's stdout and stderr file descriptors to /dev/null.

    The torch profiler's C++ side writes "profiler_start"/"profiler_stop" lines to the C
    stdout buffer, which Python's ``redirect_stdout`` cannot catch; flushing that buffer
    before restoring the descriptors drops them."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    sys.stderr.flush()
    libc.fflush(None)
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def peak_allocated_bytes(fn: Callable[[], object]) -> int:
    """Peak of the bytes that ``fn`` allocates on top of what was live before it (CPU).

    Read from the profiler's allocation and free events in time order.
    """
    from torch.profiler import ProfilerActivity, profile

    with _silenced_output(), profile(activities=[ProfilerActivity.CPU],
                                     profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads, then restore the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def thread_counts() -> tuple[int, ...]:
    """1 and, where the machine has more cores, 2 threads (the row pairs' settings)."""
    return (1, 2) if (os.cpu_count() or 1) >= 2 else (1,)


def all_rows(quick: bool = False, topics: tuple[str, ...] = TOPICS) -> list[Row]:
    rows: list[Row] = []
    for topic in topics:
        module = importlib.import_module(f"{__name__}.{topic}")
        with _silenced_output():  # progress bars, profiler lines: only the table prints
            topic_rows = module.rows(quick)
        rows += [row if isinstance(row, Row) else Row(*row) for row in topic_rows]
    return rows


def format_table(rows: list[Row]) -> str:
    width = max(len(r.what) for r in rows)
    target_width = max(6, *(len(r.target) for r in rows))
    lines = [f"{'measure'.ljust(width)}  {'target'.ljust(target_width)}  met  measured"]
    for r in rows:
        met = "-" if r.met is None else ("yes" if r.met else "NO")
        target = r.target if r.target else "-"
        lines.append(f"{r.what.ljust(width)}  {target.ljust(target_width)}  {met:3}  "
                     f"{r.measured}")
    return "\n".join(lines)


def main(quick: bool = False) -> int:
    torch.manual_seed(0)
    print(format_table(all_rows(quick)), flush=True)
    return 0
