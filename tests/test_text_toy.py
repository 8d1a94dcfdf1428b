"""toy_models.text: the corpora need no download, the synthetic language has the law it
says, and windows are next-token pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toy_models import text


def test_the_stdlib_corpus_is_real_python_and_the_same_twice():
    data = text.stdlib_source(200_000)
    assert len(data) == 200_000
    assert data.count(b"def ") > 100 and data.count(b"import ") > 10
    assert text.digest(text.stdlib_source(200_000)) == text.digest(data)


def test_a_folder_corpus_reads_its_text_files_in_name_order(tmp_path):
    (tmp_path / "b.txt").write_text("second ")
    (tmp_path / "a.txt").write_text("first ")
    (tmp_path / "notes.md").write_text("not text")
    assert text.folder_text(tmp_path) == b"first second "
    assert text.folder_text(tmp_path, max_bytes=5) == b"first"
    with pytest.raises(ValueError, match="does not exist"):
        text.folder_text(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no non-empty"):
        text.folder_text(empty)


def test_the_markov_language_has_its_stationary_law_and_transitions():
    vocab = 12
    tokens = text.markov_language(vocab, 200_000, seed=3)
    p = text.markov_matrix(vocab, seed=3)
    pi = text.stationary(p)
    np.testing.assert_allclose(pi @ p, pi, atol=1e-12)
    freq = np.bincount(tokens, minlength=vocab) / len(tokens)
    # a Markov chain's frequencies converge at ~1/√n (with mixing); 0.01 is ≥ 5σ here
    np.testing.assert_allclose(freq, pi, atol=0.01)
    counts = np.zeros((vocab, vocab))
    np.add.at(counts, (tokens[:-1], tokens[1:]), 1)
    empirical = counts / counts.sum(1, keepdims=True)
    np.testing.assert_allclose(empirical, p, atol=0.02)
    # Zipf rows: every token's most likely successor has probability 1/H(12, 1.2)
    top = 1 / np.sum(1.0 / np.arange(1, vocab + 1) ** 1.2)
    np.testing.assert_allclose(p.max(1), top, rtol=1e-12)


def test_windows_are_next_token_pairs():
    tokens = np.arange(1000) % 97
    x, y = text.windows(tokens, seq_len=16, count=50, seed=0)
    assert x.shape == y.shape == (50, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(y[:, -1], (x[:, -1] + 1) % 97)
    x2, _ = text.windows(tokens, seq_len=16, count=50, seed=0)
    assert torch.equal(x, x2)
    with pytest.raises(ValueError, match="fewer than one window"):
        text.windows(np.arange(10), seq_len=16, count=1, seed=0)
