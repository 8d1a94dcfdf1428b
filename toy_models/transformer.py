"""A small decoder-only transformer with the architecture choices of Wortsman et al. 2024,
"Small-scale proxies for large-scale Transformer training instabilities" (ICLR), at toy
size: pre-LN blocks, no biases anywhere, an embedding and an output head that are separate
matrices (not tied), rotary position embeddings, attention logits z_ij = ⟨q_i, k_j⟩/√d_h,
a GeLU MLP of width 4d, truncated-normal initialisation with std 1/√fan_in (the embedding
std 1/√d), LayerNorm ε = 1e-6.

Two options the paper studies:

- ``qk_norm``: LayerNorm of every query and key over its head's d_h entries, after the Q/K
  projections and before the rotation (the per-head normalisation of Dehghani et al.
  2023; one LayerNorm over all heads together is a different, and reportedly harmful,
  operation). Its scale has d_h entries, shared by the heads (as a LayerNorm over the last
  axis of a (…, heads, d_h) array has).
- z-loss (:func:`lm_loss`): ``z_loss · mean (log Z)²`` added to the cross-entropy, Z the
  sum of exp over the raw output logits of each token (PaLM's auxiliary loss, 1e-4 in the
  paper).

Each attention layer keeps ``max_logit``, the largest |z_ij| of its last forward pass over
the batch, the heads and the causal (unmasked) entries only: the paper's diagnostic of
attention-logit growth.

Which of these settings the paper states and which are recalled is in the lab's reference
note on this paper; the model is plain PyTorch and trains through ``experiments.train``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

LN_EPS = 1e-6
ROPE_BASE = 10_000.0


def _init_linear(layer: nn.Linear) -> None:
    std = 1.0 / math.sqrt(layer.in_features)
    nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)


def layer_norm(size: int) -> nn.LayerNorm:
    """LayerNorm with a scale and no bias (the model has no biases), ε = 1e-6."""
    return nn.LayerNorm(size, eps=LN_EPS, bias=False)


def rope_angles(length: int, head_dim: int, dtype=torch.float32, device=None):
    """(cos, sin) of the rotary angles θ_{t,i} = t · base^(−2i/d_h), shape (length, d_h/2)."""
    if head_dim % 2:
        raise ValueError(f"rotary embeddings need an even head dimension, got {head_dim}")
    inv = ROPE_BASE ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * inv[None, :]
    return angles.cos().to(dtype=dtype, device=device), angles.sin().to(dtype=dtype,
                                                                        device=device)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x_{2i}, x_{2i+1}) of the last axis of ``x`` (…, T, d_h) by the
    angle θ_{t,i} of its position t: a rotation, so ⟨R_m q, R_n k⟩ depends on m − n only."""
    even, odd = x[..., 0::2], x[..., 1::2]
    out = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return out.flatten(-2)


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, qk_norm: bool = False):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.heads, self.head_dim = heads, width // heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        self.q_norm = layer_norm(self.head_dim) if qk_norm else None
        self.k_norm = layer_norm(self.head_dim) if qk_norm else None
        self.max_logit = torch.zeros(())

    def logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, v): the attention logits z (B, heads, T, T), before the mask, and the values."""
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        cos, sin = rope_angles(t, self.head_dim, x.dtype, x.device)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        return q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, width = x.shape
        z, v = self.logits(x)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        with torch.no_grad():
            self.max_logit = z.abs().masked_fill(~causal, 0.0).amax()
        weights = z.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(b, t, width))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, qk_norm: bool = False):
        super().__init__()
        self.ln_attn, self.ln_mlp = layer_norm(width), layer_norm(width)
        self.attn = CausalSelfAttention(width, heads, qk_norm)
        self.up = nn.Linear(width, 4 * width, bias=False)
        self.down = nn.Linear(4 * width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_attn(x))
        return x + self.down(F.gelu(self.up(self.ln_mlp(x))))


class Transformer(nn.Module):
    """Tokens (B, T) → next-token logits (B, T, vocab)."""

    def __init__(self, vocab: int, width: int, depth: int, heads: int,
                 qk_norm: bool = False, seed: int | None = None):
        super().__init__()
        self.vocab, self.width = vocab, width
        # with a seed, the initialisation draws from its own generator state and leaves
        # the caller's global one as it was
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.embed = nn.Embedding(vocab, width)
            self.blocks = nn.ModuleList(Block(width, heads, qk_norm) for _ in range(depth))
            self.ln_out = layer_norm(width)
            self.head = nn.Linear(width, vocab, bias=False)
            std = 1.0 / math.sqrt(width)
            nn.init.trunc_normal_(self.embed.weight, std=std, a=-2 * std, b=2 * std)
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    _init_linear(module)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_out(x))

    def max_attention_logits(self) -> torch.Tensor:
        """Each layer's largest |z_ij| over its last forward pass (causal entries only)."""
        return torch.stack([block.attn.max_logit for block in self.blocks])

    def non_embedding_parameters(self) -> int:
        """Parameter count without the embedding and the head (the paper's size axis)."""
        skip = {id(self.embed.weight), id(self.head.weight)}
        return sum(p.numel() for p in self.parameters() if id(p) not in skip)


def log_z(logits: torch.Tensor) -> torch.Tensor:
    """log Σ_j exp(y_j) of each token's raw output logits y (…, vocab)."""
    return torch.logsumexp(logits, dim=-1)


def sequence_losses(logits: torch.Tensor, targets: torch.Tensor,
                    z_loss: float = 0.0) -> torch.Tensor:
    """Per sequence (B,): the mean over its tokens of the next-token cross-entropy plus
    ``z_loss · (log Z)²`` (the per-example losses ``experiments.train.fit`` averages)."""
    per_token = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    if z_loss:
        per_token = per_token + z_loss * log_z(logits).pow(2)
    return per_token.mean(dim=1)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, z_loss: float = 0.0) -> torch.Tensor:
    """Mean next-token cross-entropy, plus ``z_loss · mean (log Z)²`` (PaLM's z-loss)."""
    flat = logits.reshape(-1, logits.shape[-1])
    loss = F.cross_entropy(flat, targets.reshape(-1))
    if z_loss:
        loss = loss + z_loss * log_z(flat).pow(2).mean()
    return loss
