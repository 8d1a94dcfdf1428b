"""Grokking toy models, StableMax, Softmax-Collapse probes and ⊥Grad against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from experiments.optim import OrthoGrad
from experiments.probes import softmax_collapse as sc
from toy_models import grokking as g

# --- data -------------------------------------------------------------------------------

def test_modular_split_is_deterministic_disjoint_and_complete():
    a = g.modular_arithmetic(113, "add", 0.4, seed=42)
    b = g.modular_arithmetic(113, "add", 0.4, seed=42)
    c = g.modular_arithmetic(113, "add", 0.4, seed=7)
    assert torch.equal(a["x_train"], b["x_train"]) and torch.equal(a["y_test"], b["y_test"])
    assert not torch.equal(a["x_train"], c["x_train"])
    # Prieto §1.1: 12,769 pairs, 5,107 of them for training at 40%
    assert len(a["y_train"]) == 5107 and len(a["y_train"]) + len(a["y_test"]) == 113**2
    pairs = lambda x: {tuple(row.nonzero().flatten().tolist()) for row in x}  # noqa: E731
    assert not pairs(a["x_train"]) & pairs(a["x_test"])


@pytest.mark.parametrize("operation, fn", [("add", lambda x, y: x + y),
                                           ("multiply", lambda x, y: x * y),
                                           ("subtract", lambda x, y: x - y)])
def test_labels_and_encodings(operation, fn):
    p = 13
    tokens = g.modular_arithmetic(p, operation, 0.5, seed=0, encoding="tokens")
    onehot = g.modular_arithmetic(p, operation, 0.5, seed=0, encoding="one_hot")
    a, b = tokens["x_train"].unbind(1)
    assert torch.equal(tokens["y_train"], fn(a, b) % p)
    assert torch.equal(onehot["x_train"][:, :p].argmax(1), a)
    assert torch.equal(onehot["x_train"][:, p:].argmax(1), b)
    binary = g.modular_arithmetic(p, operation, 0.5, seed=0, encoding="binary")
    bits = binary["x_train"].shape[1] // 2
    weights = 2 ** torch.arange(bits, dtype=torch.float32)
    assert torch.equal((binary["x_train"][:, :bits] @ weights).long(), a)
    no_zero = g.modular_arithmetic(p, operation, 0.5, seed=0, encoding="tokens",
                                   exclude_zero=True)
    assert len(no_zero["y_train"]) + len(no_zero["y_test"]) == (p - 1) ** 2
    assert int(no_zero["x_train"].min()) == 1


def test_sparse_parity_labels_and_uniqueness():
    d = g.sparse_parity(n_bits=10, k=3, n_samples=500, seed=1)
    x = torch.cat([d["x_train"], d["x_test"]])
    y = torch.cat([d["y_train"], d["y_test"]])
    assert len({tuple(r.tolist()) for r in x}) == 500 and x.shape[1] == 13
    assert torch.equal(y, x[:, :3].sum(1).long() % 2)


def test_mlp_without_bias_is_positively_homogeneous():
    model = g.grokking_mlp(26, 13, width=16, seed=0).double()
    x = torch.randn(5, 26, dtype=torch.float64)
    out = model(x)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    # three layers: f(2θ) = 2³ f(θ)
    assert torch.allclose(model(x), 8.0 * out, rtol=1e-12)


def test_transformer_shapes():
    model = g.transformer(13, seed=0)
    tokens = g.modular_arithmetic(13, "add", 0.5, encoding="tokens")["x_train"]
    assert model(tokens[:7]).shape == (7, 13)


# --- StableMax ----------------------------------------------------------------------------

def test_stablemax_is_softmax_of_g_and_s_is_continuous():
    z = torch.randn(50, 9, dtype=torch.float64) * 5
    g_of_z = torch.where(z >= 0, torch.log1p(z), -torch.log1p(-z))   # Prop. 1
    assert torch.allclose(g.stablemax(z), torch.softmax(g_of_z, dim=1), rtol=1e-12)
    assert torch.allclose(g.stablemax(z).sum(1), torch.ones(50, dtype=torch.float64))
    eps = torch.tensor([-1e-9, 0.0, 1e-9], dtype=torch.float64)
    assert torch.allclose(g.stablemax_s(eps), torch.ones(3, dtype=torch.float64), atol=2e-9)


def test_stablemax_cross_entropy_gradient_closed_form():
    z = (torch.randn(20, 7, dtype=torch.float64) * 3).requires_grad_()
    y = torch.randint(0, 7, (20,))
    g.stablemax_cross_entropy(z, y).sum().backward()
    zd = z.detach()
    s = torch.where(zd >= 0, zd + 1, 1 / (1 - zd))
    ds = torch.where(zd >= 0, torch.ones_like(zd), 1 / (1 - zd) ** 2)
    expected = ds / s.sum(1, keepdim=True)
    rows = torch.arange(20)
    expected[rows, y] -= ds[rows, y] / s[rows, y]
    assert torch.allclose(z.grad, expected, rtol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_losses_run_in_the_requested_dtype(dtype):
    z = torch.randn(4, 5)
    y = torch.tensor([0, 1, 2, 3])
    assert g.stablemax_cross_entropy(z, y, dtype).dtype == dtype
    assert g.softmax_cross_entropy(z, y, dtype).dtype == dtype


def test_stablemax_has_no_collapse_where_softmax_does():
    # gap 100 between the label and the rest: softmax CE is exactly 0 in float32,
    # StableMax CE is log((101 + 4·s(0))/101) = log(1 + 4/101) > 0
    z = torch.zeros(3, 5)
    z[:, 0] = 100.0
    y = torch.zeros(3, dtype=torch.long)
    assert torch.all(g.softmax_cross_entropy(z, y, torch.float32) == 0)
    expected = math.log(1 + 4 / 101)
    assert torch.allclose(g.stablemax_cross_entropy(z, y, torch.float64),
                          torch.full((3,), expected, dtype=torch.float64), rtol=1e-12)


# --- Softmax Collapse ----------------------------------------------------------------------

def test_significand_bits_and_gap_values_of_the_reference():
    assert [g.significand_bits(d) for d in (torch.float16, torch.float32, torch.float64)] == \
        [11, 24, 53]
    # reference note, SC thresholds: ≈7.6, 16.6, 36.7 per term; 21.3 and 41.5 at C = 113
    assert g.absorption_gap(torch.float16) == pytest.approx(7.62, abs=0.01)
    assert g.absorption_gap(torch.float32) == pytest.approx(16.64, abs=0.01)
    assert g.absorption_gap(torch.float64) == pytest.approx(36.74, abs=0.01)
    assert g.absorption_gap(torch.float32, 113) == pytest.approx(21.3, abs=0.1)
    assert g.absorption_gap(torch.float64, 113) == pytest.approx(41.5, abs=0.1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_collapse_fraction_is_one_beyond_the_gap_and_zero_well_below(dtype):
    classes = 113
    gap = g.absorption_gap(dtype, classes)

    def logits(delta):
        z = torch.zeros(64, classes, dtype=torch.float64)
        z[:, 0] = delta
        return z

    assert sc.softmax_collapse_fraction(logits(gap + 0.5), dtype) == 1.0
    assert sc.softmax_collapse_fraction(logits(g.absorption_gap(dtype) - 1.0), dtype) == 0.0
    # a collapsed example has exactly zero loss; an uncollapsed one does not
    y = torch.zeros(64, dtype=torch.long)
    assert sc.zero_loss_fraction(g.softmax_cross_entropy(logits(gap + 0.5), y, dtype)) == 1.0
    assert sc.zero_loss_fraction(g.softmax_cross_entropy(logits(5.0), y, dtype)) == 0.0


def test_collapse_of_a_scaled_network():
    # scaling the logits of a fixed net by c drives the fraction from 0 towards 1 in float32
    model = g.grokking_mlp(26, 13, width=32, seed=0)
    data = g.modular_arithmetic(13, "add", 0.9, seed=0)
    z = model(data["x_train"]).detach()
    gaps = sc.logit_gap_stats(z)
    assert 0 < gaps["min"] <= gaps["median"] <= gaps["max"]
    assert sc.softmax_collapse_fraction(z, torch.float32) == 0.0
    big = z * (g.absorption_gap(torch.float32, 13) + 1) / gaps["min"]
    assert sc.softmax_collapse_fraction(big, torch.float32) == 1.0
    # every top-2 gap below float64's single-term gap: the runner-up term survives
    below = z * (g.absorption_gap(torch.float64) - 1) / gaps["max"]
    assert sc.softmax_collapse_fraction(below, torch.float64) == 0.0


def test_layer_alignment_and_weight_norm():
    model = torch.nn.Linear(3, 2, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    model.weight.grad = -2.0 * model.weight.detach().clone()    # −∇L ∥ W
    assert sc.layer_alignment(model)["weight"] == pytest.approx(1.0)
    model.weight.grad = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    assert sc.layer_alignment(model)["weight"] == pytest.approx(0.0)
    assert sc.weight_norm(model) == pytest.approx(math.sqrt(2))


# --- ⊥Grad ----------------------------------------------------------------------------------

def _model_with_gradient(seed=0):
    model = g.grokking_mlp(10, 4, width=8, depth=1, bias=True, seed=seed).double()
    x = torch.randn(16, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    y = torch.randint(0, 4, (16,), generator=torch.Generator().manual_seed(seed))
    loss = lambda: g.softmax_cross_entropy(model(x), y).mean()  # noqa: E731
    return model, loss


def _flat(tensors):
    return torch.cat([t.flatten() for t in tensors])


def test_global_orthograd_step_is_orthogonal_to_theta_and_descends():
    model, loss = _model_with_gradient()
    theta0 = _flat(p.detach().clone() for p in model.parameters())
    loss().backward()
    grad = _flat(p.grad.clone() for p in model.parameters())
    opt = OrthoGrad(model.parameters(), torch.optim.SGD, mode="global", lr=1e-4)
    opt.project()
    g_perp = _flat(p.grad for p in model.parameters())
    expected = grad - (theta0 @ grad) / (theta0 @ theta0) * theta0     # Eq. 12
    assert torch.allclose(g_perp, expected, rtol=1e-12, atol=1e-15)
    assert abs(float(theta0 @ g_perp)) < 1e-12 * float(theta0.norm() * g_perp.norm())
    assert float(grad @ g_perp) > 0                                    # Prop. 2
    before = float(loss().detach())
    opt.base.step()
    step = _flat(p.detach() for p in model.parameters()) - theta0
    assert abs(float(step @ theta0)) < 1e-12 * float(step.norm() * theta0.norm())
    assert float(loss().detach()) < before


def test_per_tensor_orthograd_keeps_each_gradient_norm():
    model, loss = _model_with_gradient(1)
    loss().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt = OrthoGrad(model.parameters(), torch.optim.SGD, mode="per_tensor", lr=0.1)
    opt.project()
    for p, g0 in zip(model.parameters(), grads, strict=True):
        w = p.detach()
        assert abs(float((w * p.grad).sum())) < 1e-10 * float(w.norm() * p.grad.norm())
        assert float(p.grad.norm()) == pytest.approx(float(g0.norm()), rel=1e-10)


def test_orthograd_passes_every_base_argument_and_checkpoints():
    model, loss = _model_with_gradient(2)
    opt = OrthoGrad(model.parameters(), torch.optim.AdamW, lr=0.01, betas=(0.5, 0.9),
                    eps=1e-20, weight_decay=0.3)
    group = opt.base.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == \
        (0.01, (0.5, 0.9), 1e-20, 0.3)
    for _ in range(3):
        opt.zero_grad()
        loss().backward()
        opt.step()
    saved = opt.state_dict()
    clone, _ = _model_with_gradient(2)
    clone.load_state_dict(model.state_dict())
    opt2 = OrthoGrad(clone.parameters(), torch.optim.AdamW, lr=0.01, betas=(0.5, 0.9),
                     eps=1e-20, weight_decay=0.3)
    opt2.load_state_dict(saved)
    state = [s["exp_avg"] for s in opt2.base.state.values()]
    assert len(state) == 4 and all(torch.equal(a, b["exp_avg"]) for a, b in
                                   zip(state, opt.base.state.values(), strict=True))
    np.testing.assert_array_equal(_flat(clone.parameters()).detach().numpy(),
                                  _flat(model.parameters()).detach().numpy())


def test_stablemax_collapses_only_at_astronomical_gaps():
    z = torch.zeros(8, 113, dtype=torch.float64)
    z[:, 0] = 100.0     # softmax: collapsed in float32 (gap ≫ 21.3)
    assert sc.softmax_collapse_fraction(z, torch.float32) == 1.0
    assert sc.stablemax_collapse_fraction(z, torch.float32) == 0.0
    # s grows linearly: 112 runner-ups at share 1/(1 + Δ) vanish once 112/(1 + Δ) < 2^-24
    z[:, 0] = 1e10
    assert sc.stablemax_collapse_fraction(z, torch.float32) == 1.0
    assert sc.stablemax_collapse_fraction(z, torch.float64) == 0.0


# --- the one-hot pair as two column indices --------------------------------------------

@pytest.mark.parametrize("bias", [False, True])
def test_pair_input_mlp_equals_the_dense_one_hot_product(bias):
    data = g.modular_arithmetic(13, "add", 0.6, seed=3)
    x = data["x_train"]
    pairs = g.one_hot_pair_indices(x)
    assert torch.equal(pairs[:, 0], x[:, :13].argmax(1))
    assert torch.equal(pairs[:, 1], 13 + x[:, 13:].argmax(1))
    dense = g.grokking_mlp(26, 13, 32, bias=bias, seed=5).double()
    gathered = g.pair_input(g.grokking_mlp(26, 13, 32, bias=bias, seed=5).double())
    assert [n for n, _ in dense.named_parameters()] == [n for n, _ in
                                                        gathered.named_parameters()]
    out_dense, out_pair = dense(x.double()), gathered(pairs)
    assert torch.equal(out_dense, out_pair)          # the other terms are exact zeros
    assert torch.equal(gathered(x.double()), out_dense)   # a float input: dense path
    y = data["y_train"]
    torch.nn.functional.cross_entropy(out_dense, y).backward()
    torch.nn.functional.cross_entropy(out_pair, y).backward()
    for a, b in zip(dense.parameters(), gathered.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("x", [torch.tensor([[1.0, 0, 1, 0], [0, 1, 1, 1]]),
                               torch.tensor([[0.5, 0, 1, 0]]),
                               torch.tensor([[1.0, 0, 0]])])
def test_one_hot_pair_indices_refuses_other_inputs(x):
    with pytest.raises(ValueError, match="one-hot pair"):
        g.one_hot_pair_indices(x)


@pytest.mark.parametrize("classes, dtype, gap, sc_says, grad_zero", [
    # tied runners-up at gap Δ; thresholds measured on a 0.001 grid (softmax_collapse.py)
    (113, torch.float32, 20.0, True, False),    # the sum says 1, the loss is not 0 yet
    (113, torch.float32, 21.0, True, True),
    # C = 12: the sum exceeds 1 until 18.02 on every machine seen, but where log_softmax's
    # loss reaches 0 depends on the CPU's vector kernels (plausibly how the 12 terms split
    # into SIMD lanes): from 16.64 where these gaps were first measured,
    # from 18.43 on an AVX2 machine (torch.backends.cpu.get_cpu_capability()). None: the
    # probe must agree with autograd here, whatever this machine rounds to.
    (12, torch.float32, 17.0, False, None),
    (113, torch.float16, 12.0, False, False),
    (113, torch.float16, 12.5, True, True),
])
def test_zero_gradient_fraction_differs_from_the_collapse_fraction_in_a_band(
        classes, dtype, gap, sc_says, grad_zero):
    z = torch.zeros(4, classes, dtype=torch.float64)
    z[:, 0] = gap
    labels = torch.zeros(4, dtype=torch.long)
    # independent: the exact loss log(1 + (C−1)e^−Δ) is positive at every gap here
    assert math.log1p((classes - 1) * math.exp(-gap)) > 0
    assert sc.softmax_collapse_fraction(z, dtype) == float(sc_says)
    fraction = sc.zero_gradient_fraction(z, labels, g.softmax_cross_entropy, dtype)
    # where the gradient is exactly 0, so is the loss; the runner-up entries are not 0
    zz = z.to(dtype).requires_grad_(True)
    loss = g.softmax_cross_entropy(zz, labels)
    (grad,) = torch.autograd.grad(loss.sum(), zz)
    if grad_zero is None:
        grad_zero = bool((grad[:, 0] == 0).all())
    assert fraction == float(grad_zero)
    assert bool((loss == 0).all()) == grad_zero
    assert bool((grad[:, 1:] > 0).all())
