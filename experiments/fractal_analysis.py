"""Boundary pixels, box-counting dimension, and cached zoom sequences of trainability planes.

A *window* is (x_lo, x_hi, y_lo, y_hi) in log10 units of the two hyperparameters; a
plane's score array is indexed [y, x] (row = second hyperparameter), as it is drawn.

The zoom sequence (Sohl-Dickstein 2024, §5 of the reference note) is cached under
``<cache root>/fractal-zoom/<canonical name>/``, the name spelling out every
hyperparameter of the plane, with the chosen windows in ``windows.json`` and one
``keyframe-XX-rRES.npz`` per keyframe and resolution, each written atomically. A
killed run resumes from the keyframes already there; asking for a higher resolution
computes (refines) one keyframe at a time inside the windows already chosen, so the
sequence of windows does not move when it is refined.

A plane can also be split into tiles (:func:`tile_bounds`), computed as independent
runs (sweep points, e.g. a Slurm job array) and put back together by
:func:`stitch_tiles`; :func:`seed_keyframe` then puts the stitched plane into the zoom
cache, where the recipe finds it as its first keyframe.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from experiments import store

Window = tuple[float, float, float, float]


# ---------------------------------------------------------------- boundary and box counting

def boundary_pixels(score: np.ndarray) -> np.ndarray:
    """Edge image: True where the 2×2 window starting at a pixel holds scores of both signs
    (max·min < 0). Shape (H − 1, W − 1)."""
    s = np.asarray(score, dtype=np.float64)
    quad = np.stack([s[:-1, :-1], s[:-1, 1:], s[1:, :-1], s[1:, 1:]])
    return quad.max(0) * quad.min(0) < 0


def default_box_sizes(shape: Sequence[int]) -> list[int]:
    """Powers of two from 1 up to a quarter of the shorter side (at least two sizes)."""
    top = max(2, min(shape) // 4)
    return [2 ** k for k in range(int(np.log2(top)) + 1)]


def box_counts(edge: np.ndarray, sizes: Sequence[int] | None = None):
    """(sizes, N(s)): the number of grid-aligned s×s boxes that hold an edge pixel."""
    edge = np.asarray(edge, dtype=bool)
    sizes = list(default_box_sizes(edge.shape) if sizes is None else sizes)
    counts = []
    for s in sizes:
        h, w = -(-edge.shape[0] // s) * s, -(-edge.shape[1] // s) * s
        padded = np.zeros((h, w), dtype=bool)
        padded[: edge.shape[0], : edge.shape[1]] = edge
        counts.append(int(padded.reshape(h // s, s, w // s, s).any(axis=(1, 3)).sum()))
    return np.asarray(sizes), np.asarray(counts)


def box_slopes(edge: np.ndarray, sizes: Sequence[int] | None = None) -> np.ndarray:
    """−Δlog N/Δlog s between consecutive box sizes (scales with no boxes are dropped)."""
    sizes, counts = box_counts(edge, sizes)
    keep = counts > 0
    sizes, counts = sizes[keep], counts[keep]
    if len(sizes) < 2:
        return np.array([])
    return -np.diff(np.log(counts)) / np.diff(np.log(sizes))


def box_counting_dimension(edges, sizes: Sequence[int] | None = None) -> float:
    """Median of all per-scale slopes over one edge image or a list of them (keyframes)."""
    if isinstance(edges, np.ndarray) and edges.ndim == 2:
        edges = [edges]
    slopes = np.concatenate([box_slopes(e, sizes) for e in edges])
    return float(np.median(slopes)) if len(slopes) else float("nan")


# ---------------------------------------------------------------- zooming

def axis_values(lo: float, hi: float, resolution: int) -> np.ndarray:
    """Pixel centres, log-spaced: 10 ** linspace(lo, hi) (the notebook's logspace)."""
    return 10.0 ** np.linspace(lo, hi, resolution)


def zoom_window(window: Window, point: tuple[float, float], factor: float = 2.0) -> Window:
    """The window ``factor``× narrower on both axes, centred at ``point`` (log10 units)."""
    x_lo, x_hi, y_lo, y_hi = window
    hx, hy = (x_hi - x_lo) / (2 * factor), (y_hi - y_lo) / (2 * factor)
    return (point[0] - hx, point[0] + hx, point[1] - hy, point[1] + hy)


def zoom_point(score: np.ndarray, window: Window, neighbourhood: int = 7) -> tuple[float, float]:
    """A boundary point to zoom into: among edge pixels in the central half of the window,
    the one with the most edge pixels around it (the most convoluted stretch of the
    boundary), ties broken by closeness to the centre. Falls back to the centre."""
    edge = boundary_pixels(score)
    if not edge.any():
        x_lo, x_hi, y_lo, y_hi = window
        return (0.5 * (x_lo + x_hi), 0.5 * (y_lo + y_hi))
    h, w = edge.shape
    k = neighbourhood
    padded = np.pad(edge.astype(np.int64), k // 2)
    integral = padded.cumsum(0).cumsum(1)
    integral = np.pad(integral, ((1, 0), (1, 0)))
    density = (integral[k:, k:] - integral[:-k, k:] - integral[k:, :-k] + integral[:-k, :-k])
    rows, cols = np.mgrid[0:h, 0:w]
    central = ((np.abs(rows - (h - 1) / 2) <= h / 4) & (np.abs(cols - (w - 1) / 2) <= w / 4))
    candidates = edge & central if (edge & central).any() else edge
    distance = np.hypot(rows - (h - 1) / 2, cols - (w - 1) / 2)
    rank = np.where(candidates, density * (h + w) - distance, -np.inf)
    r, c = np.unravel_index(np.argmax(rank), rank.shape)
    x_lo, x_hi, y_lo, y_hi = window
    # an edge pixel (r, c) sits between pixel centres r, r+1 and c, c+1
    x = x_lo + (c + 0.5) / (w) * (x_hi - x_lo)
    y = y_lo + (r + 0.5) / (h) * (y_hi - y_lo)
    return (float(x), float(y))


def canonical_name(hyperparameters: dict) -> str:
    """A readable cache name from every hyperparameter, e.g.
    ``zoom_activation-tanh_batch-full_..._window-m3_6_m3_6``, plus a short digest."""
    parts = []
    for key in sorted(hyperparameters):
        value = hyperparameters[key]
        if isinstance(value, list | tuple):
            value = "_".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        elif isinstance(value, float):
            value = f"{value:g}"
        parts.append(f"{key}-{value}")
    readable = "zoom_" + "_".join(parts).replace("/", "-").replace(" ", "")
    digest = hashlib.sha256(json.dumps(hyperparameters, sort_keys=True).encode()).hexdigest()
    return f"{readable[:200]}_{digest[:10]}"


def _save_keyframe(path: Path, score: np.ndarray, window: Window) -> None:
    arrays = {"score": np.asarray(score), "window": np.asarray(window, dtype=np.float64),
              "name": np.asarray(path.parent.name), "frame": np.asarray(path.name)}
    arrays["digest"] = np.asarray(store.arrays_digest(arrays))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    store.atomic_write_bytes(path, buffer.getvalue())


def _load_keyframe(path: Path) -> tuple[np.ndarray, Window]:
    """A keyframe checked as the results store checks an entry: it must name this plane
    (folder) and this file, and its arrays must hash to the digest it carries; else
    :class:`store.DamagedEntry`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data}
    except Exception as err:  # truncated or garbage: never served
        raise store.DamagedEntry(f"keyframe is unreadable ({type(err).__name__})") from None
    digest = arrays.pop("digest", None)
    if digest is None or set(arrays) != {"score", "window", "name", "frame"}:
        raise store.DamagedEntry("keyframe lacks its digest or arrays (older code)")
    if str(arrays["name"]) != path.parent.name or str(arrays["frame"]) != path.name:
        raise store.DamagedEntry("keyframe belongs to another plane or keyframe")
    if store.arrays_digest(arrays) != str(digest):
        raise store.DamagedEntry("keyframe does not match its digest")
    return arrays["score"], tuple(float(v) for v in arrays["window"])


def _read_keyframe(path: Path) -> tuple[np.ndarray, Window] | None:
    """The cached keyframe, or None (absent, or damaged and moved aside to be recomputed)."""
    if not path.exists():
        return None
    try:
        return _load_keyframe(path)
    except store.DamagedEntry as err:
        store.quarantine(path, f"{err}; recomputing it")
        return None


def _read_windows(manifest: Path) -> list[Window] | None:
    if not manifest.exists():
        return None
    try:
        windows = [tuple(float(v) for v in w) for w in json.loads(manifest.read_text())["windows"]]
        if not all(len(w) == 4 for w in windows):
            raise ValueError("a window is not 4 numbers")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        store.quarantine(manifest, f"windows.json is unreadable ({type(err).__name__}); "
                                   "choosing the windows again")
        return None
    return windows


def zoom_sequence(compute: Callable[[Window, int], np.ndarray], first: Window, keyframes: int,
                  resolution: int, hyperparameters: dict, cache: Path | None = None,
                  progress: Callable[[int], None] | None = None):
    """Keyframe scores and windows; each window 2× narrower around a boundary point of the
    previous keyframe. ``compute(window, resolution)`` returns the (res, res) score array.

    Cached, resumable and refinable (see the module docstring). Returns
    (list of score arrays, list of windows, cache directory).
    """
    root = store.cache_root() / "fractal-zoom" if cache is None else Path(cache)
    directory = root / canonical_name(hyperparameters)
    manifest = directory / "windows.json"
    windows: list[Window] = [tuple(first)]
    stored = _read_windows(manifest)
    if stored and np.allclose(stored[0], first):
        windows = stored
    scores: list[np.ndarray] = []
    for k in range(keyframes):
        if k >= len(windows):
            windows.append(zoom_point_window(scores[-1], windows[-1]))
            store.atomic_write_json(manifest, {"hyperparameters": hyperparameters,
                                               "windows": windows})
        path = directory / f"keyframe-{k:02d}-r{resolution}.npz"
        score = None
        cached = _read_keyframe(path)
        if cached is not None and np.allclose(cached[1], windows[k]):
            score = cached[0]
        if score is None:
            score = np.asarray(compute(windows[k], resolution), dtype=np.float64)
            _save_keyframe(path, score, windows[k])
        if not manifest.exists():
            store.atomic_write_json(manifest, {"hyperparameters": hyperparameters,
                                               "windows": windows})
        scores.append(score)
        if progress is not None:
            progress(k)
    return scores, windows[:keyframes], directory


def zoom_point_window(score: np.ndarray, window: Window) -> Window:
    return zoom_window(window, zoom_point(score, window))


# ---------------------------------------------------------------- tiles

def tile_grid(tiles: int) -> tuple[int, int]:
    """(rows, cols) of a split into ``tiles`` rectangles: the factor pair nearest a square
    (4 → 2×2, 6 → 2×3, 7 → 1×7)."""
    if tiles < 1:
        raise ValueError(f"tiles must be >= 1, got {tiles}")
    rows = max(d for d in range(1, math.isqrt(tiles) + 1) if tiles % d == 0)
    return rows, tiles // rows


def tile_bounds(resolution: int, tiles: int, tile: int) -> tuple[int, int, int, int]:
    """Pixel rows r0:r1 and columns c0:c1 of tile number ``tile`` (row-major) of a
    resolution × resolution plane split into ``tiles`` near-equal rectangles."""
    rows, cols = tile_grid(tiles)
    if not 0 <= tile < tiles:
        raise ValueError(f"tile must be in 0..{tiles - 1}, got {tile}")
    if rows > resolution or cols > resolution:
        raise ValueError(f"{tiles} tiles ({rows}×{cols}) do not fit {resolution}² pixels")
    r, c = divmod(tile, cols)
    return (r * resolution // rows, (r + 1) * resolution // rows,
            c * resolution // cols, (c + 1) * resolution // cols)


def stitch_tiles(parts: Sequence[tuple[Sequence[int], np.ndarray]], resolution: int) -> np.ndarray:
    """The full plane from (bounds (r0, r1, c0, c1), tile score) pairs; every pixel must be
    covered exactly once."""
    plane = np.full((resolution, resolution), np.nan)
    covered = np.zeros((resolution, resolution), dtype=np.int64)
    for bounds, score in parts:
        r0, r1, c0, c1 = (int(b) for b in bounds)
        plane[r0:r1, c0:c1] = score
        covered[r0:r1, c0:c1] += 1
    if not np.all(covered == 1):
        raise ValueError(f"tiles cover {np.sum(covered > 0)} of {resolution ** 2} pixels "
                         f"({np.sum(covered > 1)} more than once)")
    return plane


def seed_keyframe(hyperparameters: dict, first: Window, resolution: int, score: np.ndarray,
                  cache: Path | None = None) -> str:
    """Put a plane computed elsewhere (stitched tiles) into the zoom cache as keyframe 0.

    Returns "written", or, when keyframe 0 is already cached, "equal" or "different"
    (the cached file is then left as it is).
    """
    root = store.cache_root() / "fractal-zoom" if cache is None else Path(cache)
    directory = root / canonical_name(hyperparameters)
    path = directory / f"keyframe-00-r{resolution}.npz"
    found = _read_keyframe(path)
    if found is not None:
        cached, window = found
        same = np.allclose(window, first) and np.array_equal(cached, score)
        return "equal" if same else "different"
    _save_keyframe(path, np.asarray(score, dtype=np.float64), first)
    manifest = directory / "windows.json"
    if not manifest.exists():
        store.atomic_write_json(manifest, {"hyperparameters": hyperparameters,
                                           "windows": [list(first)]})
    return "written"
