"""∇S by the third-derivative contraction, σ² and the central flow on a closed-form model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from experiments import losses
from experiments.flows import CentralFlow, central_flow_sigma2
from experiments.probes.curvature import (
    CurvatureOperator,
    flatten,
    functional_params,
    sharpness_gradient,
    unflatten,
)
from toy_models.networks import mlp, seeded


def _curvature_along(model, x, y, w, like, u) -> float:
    op = CurvatureOperator(model, losses.half_sum_mse, x, y, params=unflatten(w, like))
    return float(torch.dot(u, op.matvec(u)))


@pytest.mark.parametrize("chunk_size", [None, 7])
def test_sharpness_gradient_matches_finite_differences_of_uHu(chunk_size):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(20, 5, generator=generator, dtype=torch.float64)
    y = torch.randn(20, 3, generator=generator, dtype=torch.float64)
    model = seeded(0, mlp, [5, 8, 8, 3], "tanh", dtype=torch.float64)
    like = functional_params(model)
    w = flatten(like)
    u = torch.randn(w.numel(), generator=generator, dtype=torch.float64)
    u /= torch.linalg.vector_norm(u)
    op = CurvatureOperator(model, losses.half_sum_mse, x, y, chunk_size=chunk_size)
    at = sharpness_gradient(op, u)
    assert at.value == pytest.approx(float(torch.dot(u, op.matvec(u))), rel=1e-12)
    assert torch.allclose(at.hvp, op.matvec(u), rtol=1e-12, atol=1e-14)
    assert torch.allclose(at.loss_gradient, op.gradient(), rtol=1e-12, atol=1e-14)
    for _ in range(3):  # central differences of uᵀH(w)u along random directions, u fixed
        d = torch.randn(w.numel(), generator=generator, dtype=torch.float64)
        eps = 1e-5
        plus = _curvature_along(model, x, y, w + eps * d, like, u)
        minus = _curvature_along(model, x, y, w - eps * d, like, u)
        assert float(torch.dot(at.gradient, d)) == pytest.approx((plus - minus) / (2 * eps),
                                                                 rel=1e-7)


class Toy(nn.Module):
    """L(a, b, d) = ½·b²·a² − c·b + ½·d²: at a = 0 the top curvature b² lies along a.

    Closed forms at a = 0 (b > 1): S = b², ∇S = (0, 2b, 0), ∇L = (0, −c, d), so
    σ² = 2⟨−∇L, ∇S⟩/‖∇S‖² = 2·2bc/(4b²) = c/b; gradient flow raises b at rate c
    (progressive sharpening) and the central flow holds b at √(2/η).
    """

    def __init__(self, a: float, b: float, d: float, c: float):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor(b, dtype=torch.float64))
        self.d = nn.Parameter(torch.tensor(d, dtype=torch.float64))
        self.c = c

    def forward(self, x):
        value = 0.5 * self.b**2 * self.a**2 - self.c * self.b + 0.5 * self.d**2
        return value * torch.ones_like(x)


def _value(outputs, targets):
    return outputs.reshape(-1)


def test_sigma2_closed_form_on_the_toy():
    b, c = 3.0, 0.6
    model = Toy(0.0, b, 0.5, c)
    x = y = torch.zeros(1, dtype=torch.float64)
    op = CurvatureOperator(model, _value, x, y)
    u = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    at = sharpness_gradient(op, u)
    assert at.value == pytest.approx(b**2)
    assert torch.allclose(at.gradient, torch.tensor([0.0, 2 * b, 0.0], dtype=torch.float64))
    assert central_flow_sigma2(at.loss_gradient, at.gradient) == pytest.approx(c / b, rel=1e-12)
    # a flow that already lowers S needs no help: σ² is clipped at 0
    assert central_flow_sigma2(-at.loss_gradient, at.gradient) == 0.0


def test_central_flow_holds_the_toy_at_two_over_eta():
    lr, c = 0.5, 0.6  # 2/η = 4: b rises from 1.5 until b² = 4, then stays at b = 2
    model = Toy(0.0, 1.5, 0.5, c)
    x = y = torch.zeros(1, dtype=torch.float64)
    flow = CentralFlow(model, _value, x, y, lr=lr, substeps=4, refresh_every=8,
                       lanczos_ncv=3)
    flow.advance_to(1.0)
    assert not flow.active and flow.sigma2 == 0.0  # gradient flow: b = 1.5 + ηc·τ
    assert float(flow.w[1]) == pytest.approx(1.5 + lr * c * 1.0, rel=1e-12)
    flow.advance_to(40.0)
    assert flow.active and not flow.diverged
    assert flow.onset_step == pytest.approx((2.0 - 1.5) / (lr * c), abs=0.26)
    # the first active substep overshoots 2/η by O(ηc/substeps); ``relax`` removes it at
    # rate 0.2 per step, so 33 steps later it is down by e^(−6.6)
    assert float(flow.w[1]) == pytest.approx(math.sqrt(2 / lr), rel=1e-4)
    assert flow.sigma2 == pytest.approx(c / 2.0, rel=1e-3)
    # d follows the Euler map of ½d²: ×(1 − η/4) per substep
    assert float(flow.w[2]) == pytest.approx(0.5 * (1 - lr / 4) ** 160, rel=1e-9)
