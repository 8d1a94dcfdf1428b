"""toy_models.transformer against independent computations: attention written out as loops
over heads and positions with explicit 2×2 rotations, qk-layernorm per head from means and
variances, z-loss and its gradient in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from toy_models import transformer as tf


def _model(qk_norm=False, seed=0, vocab=11, width=12, depth=2, heads=3):
    return tf.Transformer(vocab, width, depth, heads, qk_norm=qk_norm, seed=seed).double()


def _rotation(t: int, head_dim: int) -> np.ndarray:
    """The rotary map at position t as a d_h × d_h block-diagonal matrix of 2×2 rotations."""
    r = np.zeros((head_dim, head_dim))
    for i in range(head_dim // 2):
        theta = t * tf.ROPE_BASE ** (-2 * i / head_dim)
        c, s = math.cos(theta), math.sin(theta)
        r[2 * i:2 * i + 2, 2 * i:2 * i + 2] = [[c, -s], [s, c]]
    return r


def _layer_norm(v: np.ndarray, scale: np.ndarray) -> np.ndarray:
    mean, var = v.mean(), v.var()
    return (v - mean) / math.sqrt(var + tf.LN_EPS) * scale


def _attention_by_hand(attn: tf.CausalSelfAttention, x: np.ndarray):
    """Output and max |logit| of one attention layer, one example, written as loops."""
    t_len, width = x.shape
    h, dh = attn.heads, attn.head_dim
    w = attn.qkv.weight.detach().numpy()
    wq, wk, wv = w[:width], w[width:2 * width], w[2 * width:]
    out = np.zeros((t_len, width))
    max_logit = 0.0
    for head in range(h):
        rows = slice(head * dh, (head + 1) * dh)
        q = [wq[rows] @ x[t] for t in range(t_len)]
        k = [wk[rows] @ x[t] for t in range(t_len)]
        v = [wv[rows] @ x[t] for t in range(t_len)]
        if attn.q_norm is not None:
            q = [_layer_norm(qi, attn.q_norm.weight.detach().numpy()) for qi in q]
            k = [_layer_norm(ki, attn.k_norm.weight.detach().numpy()) for ki in k]
        q = [_rotation(t, dh) @ q[t] for t in range(t_len)]
        k = [_rotation(t, dh) @ k[t] for t in range(t_len)]
        for i in range(t_len):
            z = np.array([q[i] @ k[j] / math.sqrt(dh) for j in range(i + 1)])  # j ≤ i only
            max_logit = max(max_logit, np.abs(z).max())
            a = np.exp(z - z.max())
            a /= a.sum()
            out[i, rows] = sum(a[j] * v[j] for j in range(i + 1))
    return out @ attn.out.weight.detach().numpy().T, max_logit


@pytest.mark.parametrize("qk_norm", [False, True])
def test_attention_equals_the_loops_over_heads_and_positions(qk_norm):
    model = _model(qk_norm=qk_norm)
    attn = model.blocks[0].attn
    if qk_norm:  # a scale that is not all ones, so it is checked too
        with torch.no_grad():
            attn.q_norm.weight.copy_(torch.linspace(0.5, 1.5, attn.head_dim))
            attn.k_norm.weight.copy_(torch.linspace(2.0, 0.2, attn.head_dim))
    x = torch.randn(2, 7, model.width, dtype=torch.float64, generator=torch.Generator()
                    .manual_seed(1))
    got = attn(x)
    for b in range(2):
        want, want_max = _attention_by_hand(attn, x[b].numpy())
        np.testing.assert_allclose(got[b].detach().numpy(), want, rtol=1e-10, atol=1e-12)
    # max over the batch of the per-example maxima
    maxima = [_attention_by_hand(attn, x[b].numpy())[1] for b in range(2)]
    assert float(attn.max_logit) == pytest.approx(max(maxima), rel=1e-12)


def test_the_max_logit_ignores_masked_entries(monkeypatch):
    attn = _model().blocks[0].attn
    x = torch.randn(1, 4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    z, v = attn.logits(x)
    designed = torch.full_like(z, 0.5)
    designed[0, 1, 2, 1] = -7.0  # causal (j ≤ i): the largest |z| the diagnostic may see
    designed[0, 0, 0, 3] = 50.0  # masked (j > i): must not count
    monkeypatch.setattr(attn, "logits", lambda _: (designed, v))
    out = attn(x)
    assert float(attn.max_logit) == 7.0
    assert torch.isfinite(out).all()


def test_a_token_never_sees_the_tokens_after_it():
    model = _model()
    tokens = torch.randint(0, 11, (1, 9), generator=torch.Generator().manual_seed(3))
    changed = tokens.clone()
    changed[0, 5:] = (changed[0, 5:] + 1) % 11
    a, b = model(tokens), model(changed)
    assert torch.equal(a[0, :5], b[0, :5])
    assert not torch.allclose(a[0, 5:], b[0, 5:])


def test_qk_layernorm_normalises_each_head_separately():
    model = _model(qk_norm=True, width=12, heads=3)
    attn = model.blocks[0].attn
    x = torch.randn(1, 4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():  # give the three heads' queries very different scales
        attn.qkv.weight[:12].mul_(torch.tensor([1.0] * 4 + [30.0] * 4 + [0.01] * 4)[:, None])
    q = attn.qkv(x)[..., :12].view(1, 4, 3, 4)
    normed = attn.q_norm(q)
    np.testing.assert_allclose(normed.mean(-1).detach().numpy(), 0.0, atol=1e-12)
    # variance v/(v + ε) per head, v that head's own raw variance, whatever its scale was
    raw = q.var(-1, unbiased=False).detach().numpy()
    np.testing.assert_allclose(normed.var(-1, unbiased=False).detach().numpy(),
                               raw / (raw + tf.LN_EPS), rtol=1e-10)
    # one LayerNorm over all 12 entries would leave the heads at different scales
    joint = F.layer_norm(q.reshape(1, 4, 12), (12,)).view(1, 4, 3, 4)
    assert joint.var(-1, unbiased=False).max() / joint.var(-1, unbiased=False).min() > 100


def test_rotary_logits_depend_on_the_offset_only():
    rng = np.random.default_rng(5)
    q, k = rng.standard_normal(8), rng.standard_normal(8)
    cos, sin = tf.rope_angles(20, 8, torch.float64)
    rot = tf.rotate(torch.tensor(np.stack([q, k] * 10)).view(20, 8), cos, sin).numpy()
    # rows 2m are q at position 2m, rows 2n+1 are k at position 2n+1
    pairs = [(0, 5), (4, 9), (10, 15)]  # the same offset, 5
    dots = [rot[m] @ rot[n] for m, n in pairs]
    np.testing.assert_allclose(dots, dots[0], rtol=1e-12)
    # and the rotation keeps each vector's norm
    np.testing.assert_allclose(np.linalg.norm(rot, axis=1)[0::2], np.linalg.norm(q), rtol=1e-12)
    # against the explicit 2×2 rotations
    np.testing.assert_allclose(rot[6], _rotation(6, 8) @ q, rtol=1e-12, atol=1e-14)


def test_z_loss_and_its_gradient_in_closed_form():
    gen = torch.Generator().manual_seed(6)
    logits = (3 * torch.randn(4, 5, 7, generator=gen, dtype=torch.float64)).requires_grad_()
    targets = torch.randint(0, 7, (4, 5), generator=gen)
    c = 1e-2
    loss = tf.lm_loss(logits, targets, z_loss=c)
    y = logits.detach().numpy().reshape(-1, 7)
    t = targets.numpy().reshape(-1)
    lz = np.log(np.exp(y).sum(1))
    ce = np.mean(lz - y[np.arange(len(t)), t])
    assert float(loss.detach()) == pytest.approx(ce + c * np.mean(lz ** 2), rel=1e-12)
    loss.backward()
    p = np.exp(y - lz[:, None])
    onehot = np.eye(7)[t]
    n = len(t)
    # ∂/∂y [CE + c (log Z)²] = (p − onehot)/n + 2c·log Z·p/n
    want = (p - onehot) / n + 2 * c * lz[:, None] * p / n
    np.testing.assert_allclose(logits.grad.numpy().reshape(-1, 7), want, rtol=1e-10)
    assert float(tf.lm_loss(logits, targets).detach()) == pytest.approx(ce, rel=1e-12)
    # the per-sequence losses train.fit averages: equal sequences, so their mean is the loss
    per_sequence = tf.sequence_losses(logits.detach(), targets, z_loss=c)
    assert per_sequence.shape == (4,)
    assert float(per_sequence.mean()) == pytest.approx(ce + c * np.mean(lz ** 2), rel=1e-12)


def test_no_biases_untied_head_and_the_initial_scale():
    model = tf.Transformer(50, 64, 2, 4, seed=0)
    names = [n for n, _ in model.named_parameters()]
    assert not [n for n in names if n.endswith("bias")]
    assert model.embed.weight.data_ptr() != model.head.weight.data_ptr()
    # truncated normal at ±2σ with σ = 1/√fan_in: std 0.880σ
    up = model.blocks[0].up.weight
    assert float(up.abs().max()) <= 2 / math.sqrt(64) + 1e-7
    assert float(up.std()) == pytest.approx(0.880 / math.sqrt(64), rel=0.03)
    # the initial loss: the head sees unit-RMS features (the final LayerNorm), so its
    # logits are ≈ N(0, s²) with s = 0.880 (the truncated normal's std), and
    # E[log Σ_j e^{y_j} − y_t] ≈ log V + s²/2 for V = 50 classes
    tokens = torch.randint(0, 50, (8, 16), generator=torch.Generator().manual_seed(7))
    loss = tf.lm_loss(model(tokens[:, :-1]), tokens[:, 1:])
    assert float(loss) == pytest.approx(math.log(50) + 0.880 ** 2 / 2, rel=0.05)


def test_a_seed_gives_the_same_model_and_leaves_the_global_generator_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b = tf.Transformer(20, 16, 1, 2, seed=3), tf.Transformer(20, 16, 1, 2, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert a.non_embedding_parameters() == sum(
        p.numel() for n, p in a.named_parameters() if n not in ("embed.weight", "head.weight"))
