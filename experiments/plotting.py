"""The one plot style: sizes, colours, and how a figure is saved.

The style applies inside :func:`style` (``matplotlib.rc_context``), never to the caller's
global ``rcParams``: :func:`experiments.api.run` and ``outcome.figure()`` draw a recipe's
figure inside it, so a notebook's later plots keep the user's own settings.
"""

from __future__ import annotations

import contextlib
import functools
import io
from collections.abc import Iterator
from pathlib import Path

import matplotlib as mpl

from experiments import store

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 140,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "lines.linewidth": 1.4,
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Within this block figures get the lab's style; ``rcParams`` are restored after."""
    with mpl.rc_context(STYLE):
        yield


def styled(draw):
    """``draw`` (a function that returns a figure) run inside :func:`style`."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with style():
            return draw(*args, **kwargs)
    return wrapper


def palette(n: int) -> list:
    """``n`` distinguishable colours in a fixed order."""
    cmap = mpl.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def subplots(nrows: int = 1, ncols: int = 1, width: float = 4.0, height: float = 3.2, **kw):
    """A figure with ``nrows × ncols`` panels of ``width × height`` inches each (styled when
    drawn inside :func:`style`, as every recipe figure is)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                             squeeze=False, layout="constrained", **kw)
    return fig, axes


def save(fig, path: Path) -> None:
    """Write a PNG atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=STYLE["savefig.dpi"])
    store.atomic_write_bytes(Path(path), buffer.getvalue())
