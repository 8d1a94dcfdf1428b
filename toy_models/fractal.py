"""Fractal trainability boundaries (Sohl-Dickstein 2024): every pixel a network.

The system of "The boundary of neural network trainability is fractal" (arXiv
2402.06184): a one-hidden-layer, width-16, bias-free network in mean-field
parameterization, trained by gradient descent with one learning rate per layer on
N Gaussian data points under the mean squared error **without** ½::

    u = α₀·X W₀          α₀ = √(2/n) (tanh, ReLU) or √(1/n) (identity)
    h = φ(u)             φ = tanh, relu or the identity
    f = h·W₁ / n         (output scale 1/n: mean field)
    L = mean_i (f_i − y_i)²

A plane of hyperparameters (η₀, η₁) or (offset, η) is trained at once: the weights
of all pixels live in one tensor, the gradient is written out by hand (two matrix
products with the shared data X per step, each one BLAS call for a whole chunk of
pixels), and the pixels are processed in chunks
so the memory stays bounded. All pixels share the data, the initialisation and, in
the minibatch variant, the index sequence, so an image is a deterministic function
of its hyperparameters.

Per pixel the loss trajectory (kept per chunk) is reduced to the paper's score (§4 of the
reference note): v_t = L_t/L_0 (non-finite → 1e6 before the division, clipped at
1e6); converged ⇔ mean of the last 20 v_t < 1; score = −Σ v_t if converged, else
+Σ 1/v_t. The sign is the phase.

The offset configuration has two readings: ``offset_mode="init"`` adds the offset to
every entry of W₀ once (the blog's "mean of the initialisation"); ``"every_step"``
adds it again before every step, as the released notebook does inside its
``train_step``.

Also here: the 1-D analogue of Liu 2024 (arXiv 2406.13971), GD on
x² + δ·cos(2πx/λ) over a line of learning rates.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

ACTIVATIONS = ("tanh", "relu", "identity")
OFFSET_MODES = ("none", "init", "every_step")
WIDTH = 16
LOSS_CLIP = 1e6  # non-finite losses and normalised losses are capped here (paper §4)
LAST = 20  # converged ⇔ mean of the last 20 normalised losses < 1
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def default_n_data(activation: str, width: int = WIDTH) -> int:
    """N = number of parameters (width² + width = 272) or, for the linear net, the width."""
    return width if activation == "identity" else width * width + width


def input_scale(activation: str, width: int) -> float:
    """α₀: √(2/n) for tanh and ReLU, √(1/n) for the identity."""
    return math.sqrt((1.0 if activation == "identity" else 2.0) / width)


@dataclass(frozen=True)
class Problem:
    """Data and the shared initialisation of every pixel's network."""

    x: torch.Tensor  # (N, n)
    y: torch.Tensor  # (N,)
    w0: torch.Tensor  # (n, n) input-layer weights
    w1: torch.Tensor  # (n,) output weights
    activation: str

    @property
    def width(self) -> int:
        return self.w0.shape[0]

    @property
    def n_data(self) -> int:
        return self.x.shape[0]

    def to(self, device: str | torch.device, dtype: torch.dtype) -> Problem:
        return Problem(*(t.to(device=device, dtype=dtype) for t in
                         (self.x, self.y, self.w0, self.w1)), self.activation)


def make_problem(activation: str = "tanh", width: int = WIDTH, n_data: int | None = None,
                 seed: int = 0) -> Problem:
    """X, y ~ N(0, 1) and every weight ~ N(0, 1), in float64 on the CPU."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    n_data = default_n_data(activation, width) if n_data is None else n_data
    gen = torch.Generator().manual_seed(seed)
    w0 = torch.randn(width, width, generator=gen, dtype=torch.float64)
    w1 = torch.randn(width, generator=gen, dtype=torch.float64)
    x = torch.randn(n_data, width, generator=gen, dtype=torch.float64)
    y = torch.randn(n_data, generator=gen, dtype=torch.float64)
    return Problem(x, y, w0, w1, activation)


def minibatch_indices(n_data: int, batch_size: int, steps: int, seed: int = 42) -> torch.Tensor:
    """(steps, batch) indices drawn with replacement, shared by every pixel."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, n_data, (steps, batch_size), generator=gen)


def forward(problem: Problem, w0: torch.Tensor, w1: torch.Tensor,
            x: torch.Tensor | None = None) -> torch.Tensor:
    """Outputs of one network (w0 (n, n), w1 (n,)) on x (default: the training inputs)."""
    x = problem.x if x is None else x
    n = w0.shape[0]
    u = input_scale(problem.activation, n) * (x @ w0)
    h = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda t: t}[problem.activation](u)
    return h @ w1 / n


# ---------------------------------------------------------------- the batched GD map
#
# Layout. The input-layer weights of P pixels are stored as one (n, P·n) matrix (W₀ of
# pixel p in columns p·n … p·n + n − 1), so the forward product of every pixel is ONE
# matrix product X·[W₀⁽¹⁾ … W₀⁽ᴾ⁾] of shape (N, n) × (n, P·n), and the backward product
# one Xᵀ·[δ⁽¹⁾ … δ⁽ᴾ⁾] of shape (n, N) × (N, P·n): two large BLAS calls per step instead
# of P small ones. Activations are (N, P, n). The per-pixel contractions with w₁ are an
# elementwise product summed over the last axis and a batched (1 × N)·(N × n) product.
# On CPU the chunk is kept near the L2 cache size (an (N, P, n) float64 array is 2.2 MB at
# P = 64, N = 272). Measured on 2 cores (64² plane, 20 steps, pixel-steps/s, 1 thread /
# 2 chunk threads): P = 16: –/4.8e4, 32: 3.7e4/6.8e4, 64: 4.1e4/7.7e4, 128: 3.9e4/6.5e4.

CPU_CHUNK = 64  # pixels per chunk on CPU (cache-sized, see above)
GPU_CHUNK = 65536  # pixels per chunk on CUDA (memory-sized)


def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a sweep worker's share)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def default_chunk(device: str | torch.device) -> int:
    return GPU_CHUNK if torch.device(device).type == "cuda" else CPU_CHUNK


@dataclass
class Plane:
    """The weights of P pixels: ``w0`` (n, P, n), pixel p's input layer ``w0[:, p, :]``
    (contiguous, so ``w0.view(n, P·n)`` is the side-by-side matrix), and ``w1`` (P, n)."""

    w0: torch.Tensor
    w1: torch.Tensor

    @classmethod
    def from_pixels(cls, w0: torch.Tensor, w1: torch.Tensor) -> Plane:
        """From per-pixel weights w0 (P, n, n), w1 (P, n)."""
        return cls(w0.permute(1, 0, 2).contiguous(), w1.contiguous())

    def pixel_w0(self) -> torch.Tensor:
        """The input-layer weights as (P, n, n)."""
        return self.w0.permute(1, 0, 2)

    @property
    def pixels(self) -> int:
        return self.w0.shape[1]


class _Workspace:
    """Reused (rows, P, n) buffers: a fresh 1 MB array per operation and step costs page
    faults and zeroing comparable to the arithmetic itself."""

    def __init__(self):
        self.buffers: dict[tuple, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        key = (name, shape)
        if key not in self.buffers:
            self.buffers[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return self.buffers[key]


def _loss_and_grads(problem: Problem, plane: Plane, rows: torch.Tensor | None,
                    need_grads: bool = True, work: _Workspace | None = None):
    """Mean loss on the rows (all if None) and its gradients, for every pixel at once.

    Returns (loss (P,), grad_w0 (n, P, n), grad_w1 (P, n)); X is shared by every pixel.
    With a workspace the large arrays (and grad_w0) live in its reused buffers.
    """
    work = _Workspace() if work is None else work
    x, y = (problem.x, problem.y) if rows is None else (problem.x[rows], problem.y[rows])
    n_rows, n = x.shape
    pixels = plane.pixels
    act = problem.activation
    # tanh(u) = 2·sigmoid(2u) − 1: torch's sigmoid is ~4x faster than its tanh on CPU
    # (float64), so tanh networks carry s = sigmoid(2u) with the 2 folded into the data.
    xs = (input_scale(act, n) * (2.0 if act == "tanh" else 1.0)) * x
    wide = (n_rows, pixels * n)
    u = torch.mm(xs, plane.w0.view(n, pixels * n), out=work.get("u", wide, xs))
    u = u.view(n_rows, pixels, n)
    if act == "tanh":
        w1s = plane.w1 * (2.0 / n)  # f = Σ_j (2s_j − 1) w1_j / n = Σ_j s_j·w1s_j − Σ w1s/2
        s = torch.sigmoid_(u)
    else:
        w1s = plane.w1 / n
        s = torch.relu_(u) if act == "relu" else u
    f = torch.mul(s, w1s, out=work.get("sw", u.shape, xs)).sum(2)
    if act == "tanh":
        f -= 0.5 * w1s.sum(1)
    r = f - y[:, None]  # (rows, P)
    loss = (r * r).mean(0)
    if not need_grads:
        return loss, None, None
    g = r * (2.0 / n_rows)  # dL/df
    g_rows = g.T.contiguous()  # (P, rows)
    grad_w1 = torch.bmm(g_rows.unsqueeze(1), s.transpose(0, 1)).squeeze(1)  # Σ_i g_i s_i
    du = work.get("du", u.shape, xs)
    if act == "tanh":
        # h = 2s − 1: dL/dW₁ = (2·Σ g s − Σ g)/n and dL/du' = g·(2w₁/n)·s(1 − s)
        grad_w1 = grad_w1.mul_(2.0 / n).sub_(g_rows.sum(1, keepdim=True) / n)
        torch.mul(g.unsqueeze(2), w1s, out=du)
        torch.ops.aten.sigmoid_backward.grad_input(du, s, grad_input=du)  # du·s(1 − s)
    else:
        grad_w1 = grad_w1.div_(n)
        torch.mul(g.unsqueeze(2), w1s, out=du)
        if act == "relu":
            du.mul_(s > 0)
    grad_w0 = torch.mm(xs.T, du.view(wide), out=work.get("grad_w0", (n, pixels * n), xs))
    return loss, grad_w0.view(n, pixels, n), grad_w1


def _step_(problem: Problem, plane: Plane, lr0: torch.Tensor, lr1: torch.Tensor,
           rows: torch.Tensor | None, work: _Workspace | None) -> torch.Tensor:
    """One GD step of every pixel in place; returns the full-batch loss before it."""
    loss, grad_w0, grad_w1 = _loss_and_grads(problem, plane, rows, work=work)
    if rows is not None:
        loss = _loss_and_grads(problem, plane, None, need_grads=False, work=work)[0]
    plane.w0.sub_(grad_w0.mul_(lr0[None, :, None]))
    plane.w1.sub_(grad_w1.mul_(lr1[:, None]))
    return loss


def gd_step(problem: Problem, plane: Plane, lr0: torch.Tensor, lr1: torch.Tensor,
            rows: torch.Tensor | None = None) -> tuple[Plane, torch.Tensor]:
    """One GD step of every pixel, W_l ← W_l − η_l ∇_l L; returns (new plane, loss before).

    ``rows`` selects a minibatch; the returned loss is always the full-batch loss.
    """
    new = Plane(plane.w0.clone(), plane.w1.clone())
    return new, _step_(problem, new, lr0, lr1, rows, None)


def score_from_losses(losses: torch.Tensor) -> torch.Tensor:
    """The score of loss trajectories (..., T), written directly from the definition."""
    v = torch.nan_to_num(losses, nan=LOSS_CLIP, posinf=LOSS_CLIP, neginf=LOSS_CLIP)
    v = (v / v[..., :1]).clamp(max=LOSS_CLIP)
    converged = v[..., -LAST:].mean(-1) < 1.0
    return torch.where(converged, -v.sum(-1), (1.0 / v).sum(-1))


def converged(score: torch.Tensor):
    """The phase: True where the pixel converged (negative score)."""
    return score < 0


def _train_chunk(problem: Problem, lr0, lr1, offset, offset_mode: str, steps: int,
                 rows: torch.Tensor | None):
    """Train one chunk; returns (score (P,), full-batch losses (P, steps), plane)."""
    pixels = lr0.shape[0]
    n = problem.width
    plane = Plane.from_pixels(problem.w0.expand(pixels, n, n), problem.w1.expand(pixels, n))
    offset = offset[None, :, None]
    if offset_mode == "init":
        plane.w0 += offset
    work = _Workspace()
    losses = torch.empty(steps, pixels, dtype=lr0.dtype, device=lr0.device)
    for t in range(steps):
        if offset_mode == "every_step":  # the released notebook's train_step
            plane.w0 += offset
        losses[t] = _step_(problem, plane, lr0, lr1, None if rows is None else rows[t], work)
    losses = losses.T
    return score_from_losses(losses), losses, plane


def train_plane(problem: Problem, lr0, lr1, steps: int, *, offset=None,
                offset_mode: str = "none", batch_size: int | None = None,
                minibatch_seed: int = 42, chunk: int | None = None, dtype: str = "float64",
                device: str | torch.device = "cpu", trajectory: bool = False,
                positions=None, workers: int = 1):
    """Train one network per pixel; return the score per pixel (a float64 CPU tensor).

    lr0, lr1 (and offset): arrays of one shape (the plane); every pixel is a network with
    input-layer step lr0, output-layer step lr1. ``batch_size`` switches to minibatch GD
    (indices drawn with replacement from ``minibatch_seed``, shared by all pixels).
    With ``trajectory=True`` also return the (pixels..., steps) full-batch losses.

    Chunks. Pixels are trained ``chunk`` at a time (default :func:`default_chunk`), every
    chunk padded to exactly ``chunk`` pixels. BLAS rounds a pixel's products the same way
    whatever its chunk-mates hold, but not whatever the matrix shape or the pixel's slot
    in it, so a pixel's numbers are fixed by (chunk, slot): pixel k of the plane sits in
    chunk k // chunk at slot k % chunk. ``positions`` (one int per pixel, default 0, 1,
    …) places pixels that are part of a larger plane (a tile) where that plane puts
    them, so a tile's scores equal the whole plane's bit for bit.

    On CPU, ``workers`` threads (0: one per core) train chunks side by side; a chunk's
    numbers do not depend on which thread trains it, so the scores do not either. Keep
    torch's own threads at 1 then (``torch.set_num_threads``), or they compete.
    """
    if offset_mode not in OFFSET_MODES:
        raise ValueError(f"offset_mode must be one of {OFFSET_MODES}")
    tdtype = DTYPES[dtype]
    chunk = chunk or default_chunk(device)
    lr0 = torch.as_tensor(lr0, dtype=torch.float64)
    shape = lr0.shape
    lr0 = lr0.reshape(-1)
    lr1 = torch.as_tensor(lr1, dtype=torch.float64).reshape(-1)
    if offset is None:
        offset = torch.zeros_like(lr0)
        offset_mode = "none"
    offset = torch.as_tensor(offset, dtype=torch.float64).reshape(-1)
    count = lr0.shape[0]
    positions = (torch.arange(count) if positions is None
                 else torch.as_tensor(positions, dtype=torch.int64).reshape(-1))
    if positions.shape[0] != count or len(torch.unique(positions)) != count:
        raise ValueError("positions must give each pixel its own place")
    prob = problem.to(device, tdtype)
    rows = None
    if batch_size is not None:
        rows = minibatch_indices(problem.n_data, batch_size, steps, minibatch_seed).to(device)
    score = torch.empty(count, dtype=torch.float64)
    history = torch.empty(count, steps, dtype=torch.float64) if trajectory else None
    slot = positions % chunk
    order = torch.argsort(positions)  # pixels grouped by chunk, chunk by chunk
    _, sizes = torch.unique_consecutive(positions[order] // chunk, return_counts=True)
    groups = torch.split(order, sizes.tolist())

    def train(members: torch.Tensor):
        with torch.no_grad():  # grad mode is per thread
            # empty slots repeat the chunk's first pixel (their results are dropped)
            fill = torch.full((chunk,), int(members[0]), dtype=torch.int64)
            fill[slot[members]] = members
            part = [t[fill].to(device=device, dtype=tdtype) for t in (lr0, lr1, offset)]
            out, hist, _ = _train_chunk(prob, *part, offset_mode, steps, rows)
            return (members, out.to("cpu", torch.float64),
                    hist.to("cpu", torch.float64) if trajectory else None)

    workers = min(workers or _usable_cores(), len(groups))
    if torch.device(device).type == "cpu" and workers > 1:
        # torch releases the GIL inside its kernels, so the chunks run side by side
        with ThreadPoolExecutor(workers) as pool:
            done = list(pool.map(train, groups))
    else:
        done = map(train, groups)
    for members, out, hist in done:
        score[members] = out[slot[members]]
        if trajectory:
            history[members] = hist[slot[members]]
    score = score.reshape(shape)
    if trajectory:
        return score, history.reshape(*shape, steps)
    return score


# ---------------------------------------------------------------- the 1-D analogue (Liu 2024)

def liu_loss(x, delta: float, wavelength: float):
    """x² + δ·cos(2πx/λ)."""
    return x * x + delta * torch.cos(2 * math.pi * x / wavelength)


def liu_grad(x, delta: float, wavelength: float):
    k = 2 * math.pi / wavelength
    return 2 * x - delta * k * torch.sin(k * x)


def liu_scores(lrs, x0: float = 1.0, delta: float = 0.1, wavelength: float = 0.1,
               steps: int = 1000, bound: float = 1e6, dtype=torch.float64):
    """GD x ← x − η·∇ on x² + δ·cos(2πx/λ) for every η; score = Σ 1/(1 + loss) over steps
    that stayed bounded, negative once |x| leaves ``bound`` (the diverged phase).

    Returns (score, diverged) as tensors over ``lrs``. The loss is bounded below by −δ, so
    1 + loss > 0 when δ < 1; a trajectory that diverges does so geometrically (η > 1 makes
    the quadratic part expand by |1 − 2η| per step).
    """
    eta = torch.as_tensor(lrs, dtype=dtype)
    x = torch.full_like(eta, x0)
    total = torch.zeros_like(eta)
    diverged = torch.zeros_like(eta, dtype=torch.bool)
    for _ in range(steps):
        x = x - eta * liu_grad(x, delta, wavelength)
        diverged |= ~(x.abs() < bound)
        x = torch.where(diverged, torch.zeros_like(x), x)
        total += torch.where(diverged, 0.0, 1.0 / (1.0 + liu_loss(x, delta, wavelength)))
    return torch.where(diverged, -total, total), diverged
