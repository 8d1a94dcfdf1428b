"""Shared body of the six ``sohldickstein2024-<config>`` recipes (not a recipe itself).

Sohl-Dickstein 2024, "The boundary of neural network trainability is fractal": every
pixel of a log-hyperparameter plane is one network (``toy_models.fractal``) trained
for ``steps`` steps; blue = converged, red = diverged. The recipe computes a zoom
sequence (each keyframe 2× narrower around a boundary point of the previous one,
cached and resumable through ``experiments.fractal_analysis``) and measures the
boundary: both phases present, the edge-pixel fraction under zoom, and the
box-counting dimension (median of the per-scale slopes over all keyframes).

With ``tiles`` > 1 a run computes one tile (``tile``) of the first keyframe's plane
only; ``python -m experiments sweep <id> --tiles N`` runs the N tiles as independent
points and :func:`stitch` puts them back together (and into the zoom cache, where a
full run of the recipe then finds its first keyframe).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from experiments import fractal_analysis as fa
from experiments import store
from experiments.claims import Claim, fmt, is_true
from experiments.config import param
from toy_models import fractal

PAPER = ("Sohl-Dickstein 2024, The boundary of neural network trainability is fractal "
         "(arXiv 2402.06184)")
PAPER_DIMENSIONS = (1.17, 1.98)  # box-counting dimensions across the six configurations
SOURCE = "Sohl-Dickstein 2024, Fig. 1-2 and §3 (box-counting dimension 1.17-1.98)"
PLANES = ("lr_vs_lr", "offset_vs_lr")
AXIS_LABELS = {
    "lr_vs_lr": ("input-layer learning rate η₀", "output-layer learning rate η₁"),
    "offset_vs_lr": ("offset added to W₀", "learning rate η (both layers)"),
}


@dataclass(frozen=True)
class FractalConfig:
    activation: str = param("tanh", choices=fractal.ACTIVATIONS, help="hidden nonlinearity")
    n_data: int = param(272, lo=1, hi=100_000, help="training points N (272 = #parameters)")
    batch_size: int = param(0, lo=0, hi=100_000, help="minibatch size; 0 = full batch")
    plane: str = param("lr_vs_lr", choices=PLANES, help="the two axes of the image")
    offset_mode: str = param("every_step", choices=("every_step", "init"),
                             help="offset_vs_lr: add the offset before every step (as the "
                                  "released notebook does) or once at initialisation")
    x_range: tuple[float, ...] = param((-3.0, 6.0), lo=-20.0, hi=20.0,
                                       help="log10 range of the x axis of the first keyframe")
    y_range: tuple[float, ...] = param((-3.0, 6.0), lo=-20.0, hi=20.0,
                                       help="log10 range of the y axis of the first keyframe")
    resolution: int = param(64, lo=16, hi=8192, help="pixels per side")
    steps: int = param(200, lo=20, hi=100_000, help="GD steps per pixel")
    keyframes: int = param(3, lo=2, hi=60, help="zoom levels (each 2× narrower)")
    dtype: str = param("float64", choices=("float32", "float64"))
    chunk: int = param(0, lo=0, hi=1_000_000,
                       help="pixels trained at once; 0 = the device's default (64 on CPU: "
                            "cache-sized; 65536 on CUDA); the rounding depends on it")
    workers: int = param(0, lo=0, hi=1024,
                         help="CPU threads training chunks side by side (0 = one per core); "
                              "the numbers do not depend on it")
    cpu_threads: int = param(1, lo=0, hi=256,
                             help="torch threads on CPU (0 = torch's default); 1 avoids "
                                  "OpenMP spin-waits on a shared 2-core machine")
    seed: int = param(0, lo=0, hi=2**31 - 1,
                      help="data and initialisation seed (shared by every pixel)")
    tiles: int = param(1, lo=1, hi=1 << 20,
                       help="split the first keyframe's plane into this many tiles, each one "
                            "run (sweep --tiles N); 1 = the whole recipe")
    tile: int = param(-1, lo=-1, hi=1 << 20,
                      help="the tile this run computes, 0..tiles-1; -1 = the whole recipe")

    def __post_init__(self):
        for name in ("x_range", "y_range"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not lo_hi[0] < lo_hi[1]:
                raise ValueError(f"{name}: expected lo,hi with lo < hi, got {lo_hi}")
        if self.tile >= self.tiles:
            raise ValueError(f"tile: {self.tile} is not below tiles = {self.tiles}")
        if self.tiles > 1 and self.tile < 0:
            raise ValueError(f"tiles = {self.tiles} needs tile in 0..{self.tiles - 1} "
                             "(sweep --tiles N sets it)")
        if self.tile >= 0:
            fa.tile_bounds(self.resolution, self.tiles, self.tile)  # the tiles must fit


FIELD_META = {f.name: dict(f.metadata) for f in dataclasses.fields(FractalConfig)}
# The paper's scale: ≥ 1024² pixels, 1000 steps, ≥ 20 keyframes from the notebook's first
# window (10⁻³…10⁶), float64, on a GPU when lent (chunks sized for an 80 GB card).
PAPER_SCALE = dict(resolution=1024, steps=1000, keyframes=20)


def hyperparameters(cfg: FractalConfig) -> dict:
    """Everything that determines a keyframe's pixels (the zoom cache's canonical name)."""
    return {
        "width": fractal.WIDTH, "depth": 2, "activation": cfg.activation, "n_data": cfg.n_data,
        "batch": cfg.batch_size or "full", "minibatch_seed": 42, "plane": cfg.plane,
        "offset_mode": cfg.offset_mode if cfg.plane == "offset_vs_lr" else "none",
        "steps": cfg.steps, "dtype": cfg.dtype, "seed": cfg.seed,
        "first_window": [*cfg.x_range, *cfg.y_range], "score": "sohl-dickstein-2024",
        "trainer": store.code_hash(Path(fractal.__file__)),  # a new trainer, a new cache
    }


def plane_scores(cfg: FractalConfig, window: fa.Window, resolution: int, device: str,
                 offset_mode: str | None = None, rows: slice = slice(None),
                 cols: slice = slice(None)) -> np.ndarray:
    """The (resolution, resolution) score array of one window, rows = y axis (or the
    ``rows`` × ``cols`` part of it: the same pixel values, fewer pixels)."""
    problem = fractal.make_problem(cfg.activation, n_data=cfg.n_data, seed=cfg.seed)
    xs = fa.axis_values(window[0], window[1], resolution)[cols]
    ys = fa.axis_values(window[2], window[3], resolution)[rows]
    gx, gy = np.meshgrid(xs, ys)
    index = np.arange(resolution)
    # each pixel keeps its place in the whole plane's chunks: a tile equals the plane
    col_at, row_at = np.meshgrid(index[cols], index[rows])
    common = dict(batch_size=cfg.batch_size or None, chunk=cfg.chunk, dtype=cfg.dtype,
                  device=device, positions=row_at * resolution + col_at, workers=cfg.workers)
    if cfg.plane == "lr_vs_lr":
        score = fractal.train_plane(problem, gx, gy, cfg.steps, **common)
    else:
        score = fractal.train_plane(problem, gy, gy, cfg.steps, offset=gx,
                                    offset_mode=offset_mode or cfg.offset_mode, **common)
    return score.numpy()


def run(cfg: FractalConfig, device: str) -> dict:
    if cfg.tile >= 0:
        return run_tile(cfg, device)
    threads = torch.get_num_threads()
    if device == "cpu" and cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    started = time.perf_counter()
    computed: list[float] = []
    try:
        bar = tqdm(total=cfg.keyframes, desc="keyframes", disable=None)

        def compute(window, resolution):
            t0 = time.perf_counter()
            out = plane_scores(cfg, window, resolution, device)
            computed.append(time.perf_counter() - t0)
            return out

        scores, windows, _ = fa.zoom_sequence(
            compute, (*cfg.x_range, *cfg.y_range), cfg.keyframes, cfg.resolution,
            hyperparameters(cfg), progress=lambda k: bar.update(1))
        bar.close()
        other = None
        if cfg.plane == "offset_vs_lr":  # the other reading of the offset axis, first window
            other_mode = "init" if cfg.offset_mode == "every_step" else "every_step"
            other = plane_scores(cfg, windows[0], cfg.resolution, device, other_mode)
    finally:
        torch.set_num_threads(threads)
    result: dict = {}
    edges = [fa.boundary_pixels(s) for s in scores]
    for k, (score, window) in enumerate(zip(scores, windows, strict=True)):
        result[f"keyframe.{k}.score"] = score.astype(np.float32)
        result[f"keyframe.{k}.window"] = np.asarray(window)
    result["converged_fraction"] = np.array([np.mean(s < 0) for s in scores])
    result["edge_fraction"] = np.array([e.mean() for e in edges])
    result["keyframe_dimension"] = np.array([fa.box_counting_dimension(e) for e in edges])
    result["dimension"] = fa.box_counting_dimension(edges)
    result["compute_seconds"] = float(sum(computed))
    result["keyframes_computed"] = len(computed)
    pixel_steps = len(computed) * cfg.resolution**2 * cfg.steps
    result["pixel_steps_per_second"] = (pixel_steps / sum(computed) if computed
                                        else float("nan"))
    result["seconds"] = time.perf_counter() - started
    if other is not None:
        result["other_reading.score"] = other.astype(np.float32)
    return result


# ---------------------------------------------------------------- tiles

def run_tile(cfg: FractalConfig, device: str) -> dict:
    """One tile of the first keyframe's plane (pixels r0:r1 × c0:c1), in float64."""
    r0, r1, c0, c1 = fa.tile_bounds(cfg.resolution, cfg.tiles, cfg.tile)
    threads = torch.get_num_threads()
    if device == "cpu" and cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    started = time.perf_counter()
    try:
        score = plane_scores(cfg, (*cfg.x_range, *cfg.y_range), cfg.resolution, device,
                             rows=slice(r0, r1), cols=slice(c0, c1))
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - started
    return {"tile.score": score, "tile.bounds": np.array([r0, r1, c0, c1]),
            "window": np.array([*cfg.x_range, *cfg.y_range]),
            "converged_fraction": float(np.mean(score < 0)), "seconds": seconds,
            "pixel_steps_per_second": score.size * cfg.steps / seconds}


def stitch(tile_results: list[dict], cfg: FractalConfig) -> dict:
    """The first keyframe's plane from all its tiles, its boundary statistics, and whether
    it went into the zoom cache ("written") or matched the plane already there."""
    window = tuple(float(v) for v in tile_results[0]["window"])
    plane = fa.stitch_tiles([(r["tile.bounds"], r["tile.score"]) for r in tile_results],
                            cfg.resolution)
    edge = fa.boundary_pixels(plane)
    return {
        "score": plane, "window": np.asarray(window),
        "bounds": np.array([r["tile.bounds"] for r in tile_results]),
        "converged_fraction": float(np.mean(plane < 0)), "edge_fraction": float(edge.mean()),
        "dimension": fa.box_counting_dimension(edge),
        "keyframe_cache": fa.seed_keyframe(hyperparameters(cfg), window, cfg.resolution, plane),
    }


def draw_stitched(ax, stitched: dict, cfg: FractalConfig) -> None:
    """The stitched plane in the paper's colours, tile borders dashed."""
    from matplotlib.patches import Rectangle

    window = stitched["window"]
    _show(ax, stitched["score"], window)
    dx = (window[1] - window[0]) / cfg.resolution
    dy = (window[3] - window[2]) / cfg.resolution
    for r0, r1, c0, c1 in stitched["bounds"]:
        ax.add_patch(Rectangle((window[0] + c0 * dx, window[2] + r0 * dy), (c1 - c0) * dx,
                               (r1 - r0) * dy, fill=False, lw=0.8, ls="--", ec="k"))
    xlabel, ylabel = AXIS_LABELS[cfg.plane]
    ax.set(xlabel=f"log10 {xlabel}", ylabel=f"log10 {ylabel}")


# ---------------------------------------------------------------- colouring and figure

def paper_colours(score: np.ndarray) -> np.ndarray:
    """The paper's display values in [−1, 1] for the ``Spectral`` colormap: ranks of the
    converged scores stretched to [0.25, 1] (blue), diverged to [−1, −0.25] (red)."""
    score = np.asarray(score, dtype=np.float64)
    out = np.zeros_like(score)
    for mask, lo, hi in ((score < 0, 0.25, 1.0), (score >= 0, -1.0, -0.25)):
        values = score[mask]
        if values.size:
            ranks = np.argsort(np.argsort(values)) / max(values.size - 1, 1)
            out[mask] = lo + (hi - lo) * ranks
    return out


def _extent(window) -> list[float]:
    return [float(window[0]), float(window[1]), float(window[2]), float(window[3])]


def _show(ax, score, window=None):
    ax.imshow(paper_colours(score), origin="lower", cmap="Spectral", vmin=-1, vmax=1,
              extent=None if window is None else _extent(window), aspect="auto",
              interpolation="nearest")
    ax.grid(False)


def plot(result: dict, cfg: FractalConfig, title: str = ""):
    import matplotlib as mpl
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from experiments import plotting

    if "tile.score" in result:  # one tile of the first keyframe
        fig, axes = plotting.subplots(1, 1, width=4.2, height=3.6)
        r0, r1, c0, c1 = result["tile.bounds"]
        _show(axes[0, 0], result["tile.score"])
        axes[0, 0].set(title=f"tile {cfg.tile} of {cfg.tiles}: rows {r0}:{r1}, cols {c0}:{c1}")
        return fig
    k_total = sum(1 for key in result if key.startswith("keyframe.") and key.endswith(".score"))
    has_other = "other_reading.score" in result
    ncols = 2 + has_other
    mpl.rcParams.update(plotting.STYLE)
    fig = plt.figure(figsize=(3.9 * ncols, 3.6 + 2.3), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.6, 2.3])
    axes = top.subplots(1, ncols)
    xlabel, ylabel = AXIS_LABELS[cfg.plane]
    w0 = result["keyframe.0.window"]
    ax = axes[0]
    _show(ax, result["keyframe.0.score"], w0)
    ax.set(xlabel=f"log10 {xlabel}", ylabel=f"log10 {ylabel}",
           title=title or "blue converged, red diverged")
    for k in range(1, k_total):
        w = result[f"keyframe.{k}.window"]
        ax.add_patch(Rectangle((w[0], w[2]), w[1] - w[0], w[3] - w[2], fill=False, lw=0.8,
                               ec="k"))
    ax = axes[1]
    ax.plot(range(k_total), result["edge_fraction"], "o-", label="edge-pixel fraction")
    ax.set(xlabel="zoom level k (window 2⁻ᵏ of the first)", ylabel="edge-pixel fraction",
           ylim=(0, None), title=f"box-counting dimension D = {result['dimension']:.2f}")
    twin = ax.twinx()
    twin.plot(range(k_total), result["keyframe_dimension"], "s--", color="C3",
              label="D per keyframe")
    twin.axhspan(*PAPER_DIMENSIONS, color="C2", alpha=0.12, label="paper: 1.17-1.98")
    twin.set(ylim=(0.8, 2.2), ylabel="box-counting dimension")
    twin.grid(False)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="lower left")
    if has_other:
        other_mode = "init" if cfg.offset_mode == "every_step" else "every_step"
        _show(axes[2], result["other_reading.score"], w0)
        axes[2].set(xlabel=f"log10 {xlabel}", ylabel=f"log10 {ylabel}",
                    title=f"other reading of the offset: {other_mode}")
    strip = bottom.subplots(1, k_total)
    for k, ax in enumerate(np.atleast_1d(strip)):
        w = result[f"keyframe.{k}.window"]
        _show(ax, result[f"keyframe.{k}.score"])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"k = {k}: {w[1] - w[0]:.3g} × {w[3] - w[2]:.3g} decades", fontsize=8)
    bottom.suptitle("zoom keyframes, each 2× narrower around a boundary point", fontsize=9)
    return fig


# ---------------------------------------------------------------- claims

EDGE_KEEP = 0.5  # a scale-invariant boundary keeps its edge fraction under 2× zoom
# Box counting on a 64² edge image measures a smooth curve at 1 ± ~0.07 (slopes over box
# sizes 1-16 see the pixel staircase), so "strictly between 1 and 2" is tested with a
# margin of 0.1 on both sides: a straight boundary cannot pass by rounding.
DIM_MARGIN = 0.1


def claims(result: dict, cfg: FractalConfig) -> list[Claim]:
    if "tile.score" in result:  # a tile has no claims; the stitched plane is the figure
        return []
    conv = np.asarray(result["converged_fraction"])
    edge = np.asarray(result["edge_fraction"])
    dims = np.asarray(result["keyframe_dimension"])
    dim = float(result["dimension"])
    both = bool(np.all((conv > 0) & (conv < 1)))
    out = [
        is_true("both phases present at every keyframe", both,
                f"0 < converged fraction < 1 at all {len(conv)} keyframes",
                "converged fractions " + ", ".join(fmt(c, 3) for c in conv), SOURCE),
        is_true("boundary pixel fraction does not vanish under zoom",
                bool(np.all(edge > 0) and edge.min() >= EDGE_KEEP * edge[0]),
                f"every keyframe's edge fraction > 0 and >= {EDGE_KEEP} × the first's",
                "edge fractions " + ", ".join(fmt(e, 3) for e in edge), SOURCE),
        Claim("box-counting dimension strictly between 1 and 2",
              f"{1 + DIM_MARGIN:g} < D < {2 - DIM_MARGIN:g} (paper: {PAPER_DIMENSIONS[0]}-"
              f"{PAPER_DIMENSIONS[1]} across configs)",
              f"D = {dim:.3f} (median of slopes); per keyframe "
              + ", ".join(f"{d:.2f}" for d in dims),
              bool(np.isfinite(dim) and 1 + DIM_MARGIN < dim < 2 - DIM_MARGIN), SOURCE),
    ]
    return out
