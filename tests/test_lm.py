"""experiments.lm against independent computations: the schedule in closed form, AdamW with
clipping and the independent decay written out in numpy, the coupled decay against torch's
own AdamW with a LambdaLR schedule, LR sensitivity on numbers worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from experiments import lm


def test_the_schedule_warms_up_linearly_then_decays_as_a_cosine():
    peak, total, warmup, low = 1e-2, 100, 10, 1e-5
    assert lm.lr_at(1, peak, total, warmup, low) == pytest.approx(1e-3)
    assert lm.lr_at(10, peak, total, warmup, low) == pytest.approx(peak)
    assert lm.lr_at(55, peak, total, warmup, low) == pytest.approx((peak + low) / 2)
    assert lm.lr_at(100, peak, total, warmup, low) == pytest.approx(low)
    assert lm.lr_at(5, peak, total, 0, low) == pytest.approx(
        low + (peak - low) * 0.5 * (1 + math.cos(math.pi * 5 / 100)))


def _problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(32, 2, generator=gen, dtype=torch.float64)
    model = torch.nn.Linear(5, 2, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, 5, generator=gen, dtype=torch.float64))
    return model, x, y


def _grad(w, x, y):
    # ∇_W of mean ½‖xWᵀ − y‖² over the batch
    return ((x @ w.T - y).T @ x) / len(x)


def test_independent_decay_and_clipping_equal_adamw_written_out():
    model, x, y = _problem()
    peak, total, warmup, low, lam, clip = 0.05, 12, 3, 1e-4, 0.3, 0.5
    opt = lm.ScheduledAdamW(model.parameters(), peak, total, warmup, low, lam,
                            "independent", clip)
    w = model.weight.detach().numpy().copy()
    xs, ys = x.numpy(), y.numpy()
    m = v = np.zeros_like(w)
    b1, b2, eps = 0.9, 0.95, 1e-8
    for t in range(1, total + 1):
        opt.zero_grad()
        (0.5 * ((model(x) - y) ** 2).sum(1).mean()).backward()
        opt.step()
        g = _grad(w, xs, ys)
        norm = np.linalg.norm(g)
        assert opt.last_grad_norm == pytest.approx(norm, rel=1e-10)
        g = g * min(1.0, clip / (norm + 1e-6))  # torch's clip_grad_norm_ adds 1e-6
        lr = lm.lr_at(t, peak, total, warmup, low)
        w = w * (1 - lr / peak * lam)  # the decay step, independent of the peak LR
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        np.testing.assert_allclose(model.weight.detach().numpy(), w, rtol=1e-10, atol=1e-13)


def test_coupled_decay_is_torchs_adamw_on_the_same_schedule():
    model, x, y = _problem(1)
    twin, _, _ = _problem(1)
    peak, total, warmup, low, lam = 0.02, 10, 2, 0.0, 0.1
    opt = lm.ScheduledAdamW(model.parameters(), peak, total, warmup, low, lam, "coupled",
                            clip=None)
    ref = torch.optim.AdamW(twin.parameters(), lr=peak, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=lam)
    sched = torch.optim.lr_scheduler.LambdaLR(
        ref, lambda k: lm.lr_at(k + 1, peak, total, warmup, low) / peak)
    for _ in range(total):
        for net, o in ((model, opt), (twin, ref)):
            o.zero_grad()
            (0.5 * ((net(x) - y) ** 2).sum(1).mean()).backward()
            o.step()
        sched.step()
        np.testing.assert_allclose(model.weight.detach().numpy(),
                                   twin.weight.detach().numpy(), rtol=1e-12)


def test_the_schedule_resumes_from_the_state_dict():
    model, x, y = _problem(2)
    opt = lm.ScheduledAdamW(model.parameters(), 0.01, 20, 5)
    for _ in range(7):
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        opt.step()
    fresh = lm.ScheduledAdamW(model.parameters(), 0.01, 20, 5)
    fresh.load_state_dict(opt.state_dict())
    assert fresh.param_groups[0]["updates"] == 7
    assert fresh.param_groups[0]["lr"] == pytest.approx(lm.lr_at(7, 0.01, 20, 5, 0.0))


def test_bad_settings_are_refused():
    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="decay"):
        lm.ScheduledAdamW(params, 0.1, 10, decay="decoupled")
    with pytest.raises(ValueError, match="warmup"):
        lm.ScheduledAdamW(params, 0.1, 10, warmup=11)


def test_lr_sensitivity_by_hand():
    # best 2.0; the others 0.5 and 1.0 above it; a diverged and a NaN run count as ℓ₀ = 4
    losses = [2.5, 2.0, 3.0, float("inf"), float("nan")]
    assert lm.lr_sensitivity(losses, 4.0) == pytest.approx((0.5 + 0 + 1 + 2 + 2) / 5)
    # a run that ends above ℓ₀ counts as ℓ₀
    assert lm.lr_sensitivity([2.0, 9.0], 4.0) == pytest.approx(1.0)
    assert lm.lr_sensitivity([1.0, 1.0, 1.0], 4.0) == 0.0
