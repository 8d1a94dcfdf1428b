"""Scalar networks f(w) = ∏_{i=1}^D w_i with the squared loss (Kreisler et al. 2023, §3).

Convention (stated once): L(w) = ℓ(f(w)) with ℓ(f) = ½(f − y)², target y ≠ 0 (y = 1 in
the paper's examples), so ℓ''(f) = 1 and a minimiser is any w with ∏ w_i = y.
Everything is float64 numpy and works on a batch: ``w`` has shape (..., D), one
network per leading index.

* ``gd_step``: the exact GD map w ← w − η∇L(w), ∂L/∂w_i = (∏w − y)·∏_{j≠i} w_j.
* Gradient flow: d(w_i²)/dt = −2(∏w − y)·∏w is the same for every i, so the
  differences w_i² − w_j² (``conserved``) never change along the flow.
* At a minimiser the Hessian is ∇f∇fᵀ (rank one; the (f − y)∇²f term vanishes), so
  its sharpness is ‖∇f‖² = Σ_i ∏_{j≠i} w_j² = y²·Σ_i 1/w_i².
* GFS sharpness φ(w): the sharpness of the minimiser that gradient flow from w
  reaches. That minimiser s has s_i² = w_i² + c for one scalar c (conservation) and
  ∏|s_i| = |y|, so c solves Σ_i log(w_i² + c) = log y², one increasing equation;
  then φ = y²·Σ_i 1/(w_i² + c). Signs do not enter φ (only squares do), but they
  decide which minimiser is reached: if sign(∏w) ≠ sign(y), the flow shrinks every
  |w_i| at the same rate in w_i² until the smallest one crosses zero and flips sign
  (``gfs_minimiser``). Where the flow ends at a saddle instead (two or more weights
  tied for the smallest |w_i| with the wrong product sign, or two or more zeros) φ is
  NaN; those sets have measure zero.
"""

from __future__ import annotations

import numpy as np

NEWTON_ITERATIONS = 200


def _as_weights(w) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 0 or w.shape[-1] < 1:
        raise ValueError(f"weights must have shape (..., D) with D >= 1, got {w.shape}")
    return w


def _check_target(y: float) -> float:
    y = float(y)
    if y == 0.0 or not np.isfinite(y):
        raise ValueError(f"the target y must be finite and non-zero, got {y}")
    return y


def output(w) -> np.ndarray:
    """f(w) = ∏_i w_i."""
    return np.prod(_as_weights(w), axis=-1)


def loss(w, y: float = 1.0) -> np.ndarray:
    """L(w) = ½(∏w − y)²."""
    return 0.5 * (output(w) - y) ** 2


def products_without_one(w) -> np.ndarray:
    """∂f/∂w_i = ∏_{j≠i} w_j, by prefix and suffix products (no division, zeros allowed)."""
    w = _as_weights(w)
    ones = np.ones_like(w[..., :1])
    before = np.cumprod(np.concatenate([ones, w[..., :-1]], axis=-1), axis=-1)
    after = np.flip(np.cumprod(np.concatenate([ones, np.flip(w[..., 1:], -1)], axis=-1),
                               axis=-1), -1)
    return before * after


def gradient(w, y: float = 1.0) -> np.ndarray:
    """∇L(w) = (∏w − y)·∇f(w)."""
    return (output(w) - y)[..., None] * products_without_one(w)


def gd_step(w, eta: float, y: float = 1.0) -> np.ndarray:
    """The exact GD map w ← w − η∇L(w)."""
    w = _as_weights(w)
    return w - eta * gradient(w, y)


def hessian(w, y: float = 1.0) -> np.ndarray:
    """∇²L(w) = ∇f∇fᵀ + (∏w − y)∇²f, with (∇²f)_ij = ∏_{k≠i,j} w_k (i ≠ j), 0 on the diagonal."""
    w = _as_weights(w)
    d = w.shape[-1]
    grad_f = products_without_one(w)
    second = np.zeros(w.shape + (d,))
    for i in range(d):
        without_i = w.copy()
        without_i[..., i] = 1.0
        second[..., i, :] = products_without_one(without_i)  # ∏_{k≠i,j} w_k for j ≠ i
        second[..., i, i] = 0.0
    residual = output(w) - y
    return grad_f[..., :, None] * grad_f[..., None, :] + residual[..., None, None] * second


def sharpness(w, y: float = 1.0) -> np.ndarray:
    """λ_max(∇²L(w)) by a dense symmetric eigendecomposition."""
    return np.linalg.eigvalsh(hessian(w, y))[..., -1]


def minimiser_sharpness(w) -> np.ndarray:
    """Sharpness at a minimiser (∏w = y): λ_max(∇f∇fᵀ) = ‖∇f‖² = Σ_i ∏_{j≠i} w_j²."""
    return np.sum(products_without_one(w) ** 2, axis=-1)


def conserved(w) -> np.ndarray:
    """w_i² − w_1² for i = 2..D: constant along gradient flow (shape (..., D − 1))."""
    w = _as_weights(w)
    return w[..., 1:] ** 2 - w[..., :1] ** 2


def _gfs_shift(squares: np.ndarray, y: float,
               start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(b, v): b_i = w_i² − min_j w_j² ≥ 0 and v = log u with Σ_i log(b_i + u) = log y².

    The minimiser reached by the flow has s_i² = b_i + u. In v the equation
    g(v) = Σ log(b_i + e^v) − log y² = 0 is increasing and convex with slope in [1, D].
    Newton's method on such a function converges from any start: from the left the first
    step lands right of the root (the tangent lies below the graph), and from the right
    it decreases monotonically to the root. Without ``start`` it begins at
    v₀ = log(y²)/D, where every term is ≥ v₀, so g ≥ 0.
    """
    b = squares - np.min(squares, axis=-1, keepdims=True)
    d = squares.shape[-1]
    target = np.log(y * y)
    v = np.full(squares.shape[:-1], target / d)
    if start is not None:
        start = np.broadcast_to(np.asarray(start, dtype=np.float64), v.shape)
        v = np.where(np.isfinite(start), start, v)
    for _ in range(NEWTON_ITERATIONS):
        u = np.exp(v)[..., None]
        g = np.sum(np.log(b + u), axis=-1) - target
        step = g / np.sum(u / (b + u), axis=-1)
        v = v - step
        if np.all(np.abs(step) <= 4 * np.finfo(float).eps * np.maximum(1.0, np.abs(v))):
            break
    return b, v


def _reaches_saddle(w: np.ndarray, y: float) -> np.ndarray:
    """Where gradient flow from w stops at a saddle instead of a minimiser."""
    magnitude = np.abs(w)
    smallest = np.min(magnitude, axis=-1, keepdims=True)
    ties = np.sum(magnitude == smallest, axis=-1)
    wrong_sign = np.sign(np.prod(w, axis=-1)) != np.sign(y)
    return wrong_sign & (ties >= 2) & (w.shape[-1] >= 2)


def gfs_sharpness(w, y: float = 1.0, start=None, with_root: bool = False):
    """φ(w): the sharpness of the minimiser gradient flow from w converges to.

    φ = y²·Σ_i 1/s_i² with s_i² = w_i² + c, c the root of Σ log(w_i² + c) = log y²
    (see the module docstring); NaN where the flow ends at a saddle, or w is not finite.
    ``with_root=True`` also returns log min_i s_i², which, passed as ``start`` for a
    nearby w (the next GD iterate), warm-starts the Newton solve; it changes only speed.
    """
    w = _as_weights(w)
    y = _check_target(y)
    finite = np.all(np.isfinite(w), axis=-1)
    safe = np.where(finite[..., None], w, 1.0)
    b, v = _gfs_shift(safe ** 2, y, start)
    phi = y * y * np.sum(1.0 / (b + np.exp(v)[..., None]), axis=-1)
    phi = np.where(finite & ~_reaches_saddle(safe, y), phi, np.nan)
    return (phi, v) if with_root else phi


def gfs_minimiser(w, y: float = 1.0) -> np.ndarray:
    """The minimiser s (∏s = y) that gradient flow from w converges to; NaN at saddles.

    |s_i| = √(w_i² + c); the signs are those of w, except when sign(∏w) ≠ sign(y) (or
    ∏w = 0): then the weight of smallest |w_i| passes through zero and takes the sign
    that makes ∏s = y.
    """
    w = _as_weights(w)
    y = _check_target(y)
    b, v = _gfs_shift(w ** 2, y)
    magnitude = np.sqrt(b + np.exp(v)[..., None])
    signs = np.where(w < 0, -1.0, 1.0)
    smallest = np.argmin(np.abs(w), axis=-1)
    product_sign = np.prod(signs, axis=-1)
    flip = product_sign != np.sign(y)  # a zero weight counts as +: it takes sign(y·∏others)
    flipped = np.take_along_axis(signs, smallest[..., None], axis=-1)
    flipped = np.where(flip[..., None], -flipped, flipped)
    np.put_along_axis(signs, smallest[..., None], flipped, axis=-1)
    s = signs * magnitude
    saddle = _reaches_saddle(w, y) | (np.sum(w == 0, axis=-1) >= 2)
    return np.where(saddle[..., None], np.nan, s)
