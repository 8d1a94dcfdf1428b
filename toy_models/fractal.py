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
products with the shared data X per step), and the pixels are processed in chunks
so the memory stays bounded. All pixels share the data, the initialisation and, in
the minibatch variant, the index sequence, so an image is a deterministic function
of its hyperparameters.

Per pixel the loss trajectory is reduced on the fly to the paper's score (§4 of the
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

@dataclass
class Plane:
    """The weights of P pixels: w0 (P, n, n) and w1 (P, n)."""

    w0: torch.Tensor
    w1: torch.Tensor


def _loss_and_grads(problem: Problem, plane: Plane, rows: torch.Tensor | None,
                    need_grads: bool = True):
    """Mean loss on the rows (all if None) and its gradients, for every pixel at once.

    Returns (loss (P,), grad_w0 (P, n, n), grad_w1 (P, n)). Every product is a batched
    matrix product over pixels; the data X is shared.
    """
    x, y = (problem.x, problem.y) if rows is None else (problem.x[rows], problem.y[rows])
    n_rows, n = x.shape
    act = problem.activation
    # tanh(u) = 2·sigmoid(2u) − 1: torch's sigmoid is ~5x faster than its tanh on CPU
    # (float64), so tanh networks carry s = sigmoid(2u) with the 2 folded into the data.
    xs = (input_scale(act, n) * (2.0 if act == "tanh" else 1.0)) * x
    u = torch.matmul(xs, plane.w0)  # (P, rows, n)
    w1n = plane.w1 / n
    if act == "tanh":
        s = torch.sigmoid_(u)
        f = torch.bmm(s, (2.0 * w1n).unsqueeze(2)).squeeze(2) - w1n.sum(1, keepdim=True)
    else:
        h = torch.relu_(u) if act == "relu" else u
        f = torch.bmm(h, w1n.unsqueeze(2)).squeeze(2)
    r = f - y  # (P, rows)
    loss = (r * r).mean(1)
    if not need_grads:
        return loss, None, None
    g = r * (2.0 / n_rows)  # dL/df
    if act == "tanh":
        # h = 2s − 1, so dL/dW₁ = (2Sᵀg − Σg)/n and dL/du' = (g w₁/n)·2s(1 − s)
        grad_w1 = (torch.bmm(s.transpose(1, 2), (2.0 / n) * g.unsqueeze(2)).squeeze(2)
                   - g.sum(1, keepdim=True) / n)
        du = torch.addcmul(s, s, s, value=-1.0)
        du.mul_((2.0 * w1n).unsqueeze(1)).mul_(g.unsqueeze(2))
    else:
        grad_w1 = torch.bmm(h.transpose(1, 2), g.unsqueeze(2)).squeeze(2) / n
        du = g.unsqueeze(2) * w1n.unsqueeze(1)
        if act == "relu":
            du.mul_(h > 0)
    grad_w0 = torch.matmul(xs.T, du)  # (P, n, n)
    return loss, grad_w0, grad_w1


def gd_step(problem: Problem, plane: Plane, lr0: torch.Tensor, lr1: torch.Tensor,
            rows: torch.Tensor | None = None) -> tuple[Plane, torch.Tensor]:
    """One GD step of every pixel, W_l ← W_l − η_l ∇_l L; returns (new plane, loss before).

    ``rows`` selects a minibatch; the returned loss is always the full-batch loss.
    """
    loss, grad_w0, grad_w1 = _loss_and_grads(problem, plane, rows)
    if rows is not None:
        loss = _loss_and_grads(problem, plane, None, need_grads=False)[0]
    w0 = plane.w0 - lr0[:, None, None] * grad_w0
    w1 = plane.w1 - lr1[:, None] * grad_w1
    return Plane(w0, w1), loss


class ScoreAccumulator:
    """Reduces loss trajectories to the paper's score without storing them."""

    def __init__(self, steps: int):
        self.steps, self.t = steps, 0
        self.loss0 = self.sum_v = self.sum_inv = self.sum_last = None

    def add(self, loss: torch.Tensor) -> None:
        loss = torch.nan_to_num(loss, nan=LOSS_CLIP, posinf=LOSS_CLIP, neginf=LOSS_CLIP)
        if self.t == 0:
            self.loss0 = loss.clone()
            zeros = torch.zeros_like(loss)
            self.sum_v, self.sum_inv, self.sum_last = zeros, zeros.clone(), zeros.clone()
        v = (loss / self.loss0).clamp(max=LOSS_CLIP)
        self.sum_v += v
        self.sum_inv += 1.0 / v
        if self.t >= self.steps - LAST:
            self.sum_last += v
        self.t += 1

    def score(self) -> torch.Tensor:
        converged = self.sum_last / min(LAST, self.steps) < 1.0
        return torch.where(converged, -self.sum_v, self.sum_inv)


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
                 rows: torch.Tensor | None, trajectory: bool):
    pixels = lr0.shape[0]
    n = problem.width
    w0 = problem.w0.expand(pixels, n, n).clone()
    if offset_mode == "init":
        w0 += offset[:, None, None]
    plane = Plane(w0, problem.w1[None, :].expand(pixels, n).clone())
    acc = ScoreAccumulator(steps)
    history = []
    for t in range(steps):
        if offset_mode == "every_step":  # the released notebook's train_step
            plane.w0 += offset[:, None, None]
        plane, loss = gd_step(problem, plane, lr0, lr1, None if rows is None else rows[t])
        acc.add(loss)
        if trajectory:
            history.append(loss)
    return acc.score(), (torch.stack(history, -1) if trajectory else None), plane


def train_plane(problem: Problem, lr0, lr1, steps: int, *, offset=None,
                offset_mode: str = "none", batch_size: int | None = None,
                minibatch_seed: int = 42, chunk: int = 256, dtype: str = "float64",
                device: str | torch.device = "cpu", trajectory: bool = False):
    """Train one network per pixel; return the score per pixel (a float64 CPU tensor).

    lr0, lr1 (and offset): arrays of one shape (the plane); every pixel is a network with
    input-layer step lr0, output-layer step lr1. ``batch_size`` switches to minibatch GD
    (indices drawn with replacement from ``minibatch_seed``, shared by all pixels).
    With ``trajectory=True`` also return the (pixels..., steps) full-batch losses.
    """
    if offset_mode not in OFFSET_MODES:
        raise ValueError(f"offset_mode must be one of {OFFSET_MODES}")
    tdtype = DTYPES[dtype]
    lr0 = torch.as_tensor(lr0, dtype=torch.float64)
    shape = lr0.shape
    lr0 = lr0.reshape(-1).to(device=device, dtype=tdtype)
    lr1 = torch.as_tensor(lr1, dtype=torch.float64).reshape(-1).to(device=device, dtype=tdtype)
    if offset is None:
        offset = torch.zeros_like(lr0)
        offset_mode = "none"
    offset = torch.as_tensor(offset, dtype=torch.float64).reshape(-1).to(device=device,
                                                                         dtype=tdtype)
    prob = problem.to(device, tdtype)
    rows = None
    if batch_size is not None:
        rows = minibatch_indices(problem.n_data, batch_size, steps, minibatch_seed).to(device)
    scores, histories = [], []
    with torch.no_grad():
        for start in range(0, lr0.shape[0], chunk):
            part = slice(start, start + chunk)
            score, hist, _ = _train_chunk(prob, lr0[part], lr1[part], offset[part],
                                          offset_mode, steps, rows, trajectory)
            scores.append(score.to("cpu", torch.float64))
            if trajectory:
                histories.append(hist.to("cpu", torch.float64))
    score = torch.cat(scores).reshape(shape)
    if trajectory:
        return score, torch.cat(histories).reshape(*shape, steps)
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
