"""Text workloads for the language-model recipes, none of which needs a download.

- :func:`stdlib_source`: a real corpus every machine with Python has, the top-level
  modules of Python's own standard library (``*.py`` in the ``stdlib`` directory, in
  name order), as bytes. It differs between Python versions, so a recipe records the
  version and a digest of the bytes it used.
- :func:`markov_language`: a small synthetic language for the smallest checks, a
  first-order Markov chain whose rows are Zipf-distributed over a random order of the
  vocabulary (so every token has a few likely successors), with a known stationary law.
- :func:`folder_text`: the ``*.txt`` files of a folder the user names, in name order.

:func:`windows` cuts a token sequence into (input, next-token target) pairs of a fixed
length at seeded random offsets.
"""

from __future__ import annotations

import hashlib
import sysconfig
from pathlib import Path

import numpy as np
import torch


def stdlib_source(max_bytes: int) -> bytes:
    """The first ``max_bytes`` bytes of the standard library's top-level ``*.py`` files,
    concatenated in file-name order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out, total = [], 0
    for path in sorted(root.glob("*.py")):
        data = path.read_bytes()
        out.append(data)
        total += len(data)
        if total >= max_bytes:
            break
    return b"".join(out)[:max_bytes]


def folder_text(folder: str | Path, max_bytes: int | None = None) -> bytes:
    """The ``*.txt`` files of ``folder`` in name order, concatenated (ValueError naming the
    folder when it is missing or holds no text)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"text folder {folder} does not exist")
    files = sorted(p for p in folder.glob("*.txt") if p.is_file())
    data = b"".join(p.read_bytes() for p in files)
    if not data:
        raise ValueError(f"text folder {folder} holds no non-empty *.txt file")
    return data if max_bytes is None else data[:max_bytes]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def markov_matrix(vocab: int, seed: int, exponent: float = 1.2) -> np.ndarray:
    """The chain's transition matrix P (rows sum to 1): row a gives successor b the
    probability ∝ 1/rank_a(b)^exponent, for a random ranking of the vocabulary per row."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocab + 1) ** exponent
    p = np.empty((vocab, vocab))
    for a in range(vocab):
        p[a, rng.permutation(vocab)] = weights
    return p / p.sum(axis=1, keepdims=True)


def stationary(p: np.ndarray) -> np.ndarray:
    """The stationary law π of a transition matrix (πP = π, Σπ = 1)."""
    values, vectors = np.linalg.eig(p.T)
    pi = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
    return pi / pi.sum()


def markov_language(vocab: int, length: int, seed: int, exponent: float = 1.2) -> np.ndarray:
    """``length`` tokens of the chain :func:`markov_matrix` (vocab, seed), started from
    its stationary law."""
    p = markov_matrix(vocab, seed, exponent)
    cumulative = np.cumsum(p, axis=1)
    rng = np.random.default_rng(seed + 1)
    u = rng.random(length)
    tokens = np.empty(length, dtype=np.int64)
    tokens[0] = np.searchsorted(np.cumsum(stationary(p)), u[0])
    for t in range(1, length):
        tokens[t] = min(np.searchsorted(cumulative[tokens[t - 1]], u[t]), vocab - 1)
    return tokens


def windows(tokens, seq_len: int, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` windows of ``seq_len`` tokens at seeded random offsets: inputs x (count,
    seq_len) and targets y, the same windows shifted by one token."""
    tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    if tokens.numel() < seq_len + 1:
        raise ValueError(f"the corpus has {tokens.numel()} tokens, fewer than one window "
                         f"of {seq_len} + 1")
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, tokens.numel() - seq_len, (count,), generator=gen)
    index = starts[:, None] + torch.arange(seq_len + 1)[None, :]
    chunk = tokens[index]
    return chunk[:, :-1], chunk[:, 1:]
