"""Grokking tasks, models and StableMax (Prieto et al. 2025, "Grokking at the Edge of
Numerical Stability").

Data: modular arithmetic (a ∘ b mod p as a pair of one-hots, two tokens or binary
codes) with a seeded train/test split, and sparse parity. Models: the 2×200 ReLU MLP
(no bias by default, so it is positively homogeneous) and the one-layer transformer of
the official code. Losses: softmax cross-entropy and StableMax cross-entropy computed in
a chosen dtype, and the logit gap beyond which Σ_k e^{z_k} absorbs every term but the
largest (Softmax Collapse).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from toy_models.networks import mlp, seeded

OPERATIONS = {
    "add": lambda a, b, p: (a + b) % p,
    "multiply": lambda a, b, p: (a * b) % p,
    "subtract": lambda a, b, p: (a - b) % p,
}
ENCODINGS = ("one_hot", "tokens", "binary")


def split_indices(n: int, train_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of range(n) into disjoint sorted train and test indices."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(train_fraction * n + 1e-9)   # floor, as the official code (5,107 of 12,769)
    return np.sort(order[:n_train]), np.sort(order[n_train:])


def binary_codes(p: int, seed: int | None = None) -> torch.Tensor:
    """(p, bits) 0/1 codes of 0..p−1, bits = ⌈log2 p⌉; ``seed`` permutes the integer→code map."""
    bits = max(1, math.ceil(math.log2(p)))
    values = np.arange(p) if seed is None else np.random.default_rng(seed).permutation(p)
    codes = (values[:, None] >> np.arange(bits)[None, :]) & 1
    return torch.as_tensor(codes, dtype=torch.float32)


def modular_arithmetic(p: int = 113, operation: str = "add", train_fraction: float = 0.4,
                       seed: int = 42, encoding: str = "one_hot", exclude_zero: bool = False,
                       binary_seed: int | None = None) -> dict[str, torch.Tensor]:
    """All pairs (a, b) with label a ∘ b mod p, split into train and test.

    ``one_hot``: 2p-dimensional concatenated one-hots (the MLP input); ``tokens``: the two
    integers (the transformer input; the official transformer data use a, b ∈ 1..p−1,
    ``exclude_zero=True``); ``binary``: ⌈log2 p⌉ bits per operand (Prieto Fig. 4 right).
    """
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; one of {sorted(OPERATIONS)}")
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; one of {ENCODINGS}")
    start = 1 if exclude_zero else 0
    values = torch.arange(start, p)
    a, b = torch.cartesian_prod(values, values).unbind(1)
    labels = OPERATIONS[operation](a, b, p)
    if encoding == "one_hot":
        x = torch.cat([F.one_hot(a, p), F.one_hot(b, p)], dim=1).float()
    elif encoding == "tokens":
        x = torch.stack([a, b], dim=1)
    else:
        codes = binary_codes(p, binary_seed)
        x = torch.cat([codes[a], codes[b]], dim=1)
    train, test = split_indices(len(labels), train_fraction, seed)
    train, test = torch.as_tensor(train), torch.as_tensor(test)
    return {"x_train": x[train], "y_train": labels[train], "x_test": x[test],
            "y_test": labels[test], "classes": p}


def sparse_parity(n_bits: int = 40, k: int = 3, n_samples: int = 2000,
                  train_fraction: float = 0.5, seed: int = 42) -> dict[str, torch.Tensor]:
    """Unique random bit strings; the label is the parity of the first ``k`` bits.

    Prieto Fig. 4: k = 3 relevant and 40 noise bits ("n = 40, k = 3"), 2,000 unique samples,
    a 50/50 split. Here ``n_bits`` counts the noise bits, so the input has k + n_bits bits.
    """
    total = k + n_bits
    if total < 63 and n_samples > 2**total:
        raise ValueError(f"only {2**total} distinct strings of {total} bits, asked {n_samples}")
    rng = np.random.default_rng(seed)
    seen: set[bytes] = set()
    rows: list[np.ndarray] = []
    while len(rows) < n_samples:
        row = rng.integers(0, 2, size=total, dtype=np.int8)
        key = row.tobytes()
        if key not in seen:
            seen.add(key)
            rows.append(row)
    bits = np.stack(rows)
    labels = bits[:, :k].sum(axis=1) % 2
    train, test = split_indices(n_samples, train_fraction, seed + 1)
    x, y = torch.as_tensor(bits, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long)
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test],
            "classes": 2}


def grokking_mlp(inputs: int, classes: int, width: int = 200, depth: int = 2,
                 bias: bool = False, seed: int = 0) -> nn.Sequential:
    """Prieto's MLP: inputs → width → width → classes, ReLU, PyTorch default init.

    Without bias it is positively homogeneous of degree ``depth + 1``: f(cθ) = c^{depth+1} f(θ),
    so scaling θ is a naïve-loss-minimisation direction once every train point is fitted.
    """
    return seeded(seed, mlp, [inputs] + [width] * depth + [classes], "relu", bias)


def one_hot_pair_indices(x: torch.Tensor) -> torch.Tensor:
    """(n, 2) column indices of the two ones in each row of a one-hot pair input.

    Raises ValueError unless every row is 0/1 with exactly one 1 in each half, i.e. the
    ``one_hot`` encoding of :func:`modular_arithmetic`.
    """
    half = x.shape[1] // 2
    if x.ndim != 2 or x.shape[1] != 2 * half or not bool(((x == 0) | (x == 1)).all()):
        raise ValueError("not a one-hot pair input")
    first, second = x[:, :half], x[:, half:]
    if not (bool((first.sum(1) == 1).all()) and bool((second.sum(1) == 1).all())):
        raise ValueError("not a one-hot pair input: a row lacks exactly one 1 in a half")
    return torch.stack([first.argmax(1), half + second.argmax(1)], dim=1)


class _PairColumns(torch.autograd.Function):
    """W·x for a one-hot pair x given as its two column indices: W[:, a] + W[:, b].

    The forward equals the dense product bit for bit (the other terms are exact zeros and
    the two columns are added once). The backward accumulates ∂L/∂h into the two columns
    of each example with ``index_add_`` instead of the dense (2p × n)·(n × width) product;
    it is the same sum in another order, so the first-layer gradient rounds differently.
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(pairs)
        ctx.in_features = weight.shape[1]
        rows = weight.t().contiguous()
        return rows.index_select(0, pairs[:, 0]) + rows.index_select(0, pairs[:, 1])

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (pairs,) = ctx.saved_tensors
        grad_rows = grad_out.new_zeros(ctx.in_features, grad_out.shape[1])
        grad_rows.index_add_(0, pairs[:, 0], grad_out)
        grad_rows.index_add_(0, pairs[:, 1], grad_out)
        return grad_rows.t(), None


class PairInputMLP(nn.Sequential):
    """The grokking MLP fed a one-hot pair as its two column indices (a long (n, 2) tensor
    from :func:`one_hot_pair_indices`); a float input goes through the dense layers as usual.

    Same modules, names and parameters as :func:`grokking_mlp`; only the first layer's
    product is a two-column gather. Measured on the 113-class task (70% split, width 200,
    1 thread): ≈ 1.2–1.3× faster per full-batch AdamW step than the dense one-hot product.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_floating_point():
            return super().forward(x)
        first = self[0]
        h = _PairColumns.apply(first.weight, x)
        if first.bias is not None:
            h = h + first.bias
        for module in list(self)[1:]:
            h = module(h)
        return h


def pair_input(model: nn.Sequential) -> PairInputMLP:
    """The same modules (shared, not copied) as a :class:`PairInputMLP`."""
    return PairInputMLP(*model)


class OneLayerTransformer(nn.Module):
    """The official code's "one-layer transformer": embedding → ``nn.TransformerEncoderLayer``
    (d_model 128, 4 heads, PyTorch defaults: feed-forward 2048, dropout 0.1, post-LayerNorm,
    ReLU) → unembedding at the last position. No positional embedding and no "=" token."""

    def __init__(self, vocab: int, d_model: int = 128, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.block = nn.TransformerEncoderLayer(d_model, heads, dropout=dropout,
                                                batch_first=True)
        self.unembed = nn.Linear(d_model, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.unembed(self.block(self.embed(tokens))[:, -1])


def transformer(vocab: int, seed: int = 0, **kwargs) -> OneLayerTransformer:
    return seeded(seed, OneLayerTransformer, vocab, **kwargs)


# --- StableMax (Prieto Def. 4, Eqs. 5–7) ----------------------------------------------

def stablemax_s(x: torch.Tensor) -> torch.Tensor:
    """s(x) = x + 1 for x ≥ 0 and 1/(1 − x) for x < 0 (continuous, s(0) = 1, s' = 1 at 0)."""
    negative = x < 0
    return torch.where(negative, 1.0 / (1.0 - torch.where(negative, x, 0.0)), x + 1.0)


def stablemax_g(x: torch.Tensor) -> torch.Tensor:
    """g with StableMax = Softmax(g(x)) (Prop. 1): log(1 + x) for x ≥ 0, −log(1 − x) for x < 0."""
    return torch.log(stablemax_s(x))


def stablemax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """StableMax(x)_i = s(x_i) / Σ_j s(x_j), in the dtype of ``logits``."""
    s = stablemax_s(logits)
    return s / s.sum(dim=dim, keepdim=True)


def log_stablemax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    s = stablemax_s(logits)
    return torch.log(s) - torch.log(s.sum(dim=dim, keepdim=True))


def stablemax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                            dtype: torch.dtype | None = None) -> torch.Tensor:
    """Per-example −log StableMax(z)_y, computed in ``dtype`` (default: the logits' dtype).

    The official code always computes it in float64; pass ``dtype=torch.float64`` for that.
    """
    z = logits if dtype is None else logits.to(dtype)
    return -log_stablemax(z).gather(1, labels[:, None].long()).squeeze(1)


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                          dtype: torch.dtype | None = None) -> torch.Tensor:
    """Per-example softmax cross-entropy computed in ``dtype`` (Prieto's softmax precision).

    log-softmax as z_y − max z − log Σ_k e^{z_k − max z}: once Σ_k e^{z_k − max z} rounds
    to exactly 1 (Softmax Collapse) the loss of a correctly classified example is exactly 0.
    """
    z = logits if dtype is None else logits.to(dtype)
    return -torch.log_softmax(z, dim=1).gather(1, labels[:, None].long()).squeeze(1)


def significand_bits(dtype: torch.dtype) -> int:
    """p of paper Def. 1: significand bits including the implicit one (float32: 24)."""
    return int(round(-math.log2(torch.finfo(dtype).eps))) + 1


def absorption_gap(dtype: torch.dtype, classes: int | None = None) -> float:
    """The logit gap Δ beyond which Σ_k e^{z_k − max z} evaluates to exactly 1.

    With ``classes`` None: one term is absorbed by 1 once e^{−Δ} < 2^{−p} (round to
    nearest; the half-ulp of 1 is 2^{−p}), Δ = p·ln 2 (float32 ≈ 16.6, float64 ≈ 36.7).
    With C classes all at gap Δ, the C − 1 small terms may be summed first, so collapse is
    guaranteed whatever the summation order once (C − 1)·e^{−Δ} < 2^{−p}:
    Δ = p·ln 2 + ln(C − 1) (float32, C = 113: ≈ 21.3).
    """
    gap = significand_bits(dtype) * math.log(2.0)
    if classes is not None:
        if classes < 2:
            raise ValueError(f"classes must be >= 2, got {classes}")
        gap += math.log(classes - 1)
    return gap
