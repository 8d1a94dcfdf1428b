"""The one plot style: sizes, colours, and how a figure is saved."""

from __future__ import annotations

import io
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


def palette(n: int) -> list:
    """``n`` distinguishable colours in a fixed order."""
    cmap = mpl.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def subplots(nrows: int = 1, ncols: int = 1, width: float = 4.0, height: float = 3.2, **kw):
    """A styled figure with ``nrows × ncols`` panels of ``width × height`` inches each."""
    import matplotlib.pyplot as plt

    mpl.rcParams.update(STYLE)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                             squeeze=False, layout="constrained", **kw)
    return fig, axes


def save(fig, path: Path) -> None:
    """Write a PNG atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    store.atomic_write_bytes(Path(path), buffer.getvalue())
