"""Step-size thresholds of GD, heavy-ball and Nesterov on a quadratic, derived with sympy.

The update rules are written exactly as ``torch.optim.SGD`` implements them
(PyTorch docs, SGD algorithm box), with momentum μ, dampening τ and weight decay 0::

    g_t = ∇f(x_t)
    b_t = μ·b_{t−1} + (1 − τ)·g_t          (b_0 = g_0)
    d_t = g_t + μ·b_t  if nesterov  else  b_t
    x_{t+1} = x_t − η·d_t

On f(x) = ½·λ·x² every rule is a linear map of the state (x_t, η·b_{t−1}) that depends
on η and λ only through a = η·λ. The iteration is stable iff both roots of the
map's characteristic polynomial z² + c₁z + c₀ lie in the open unit disc, i.e. (Jury)
|c₀| < 1, 1 + c₁ + c₀ > 0 and 1 − c₁ + c₀ > 0. For these rules the condition that
fails first as a grows is 1 − c₁ + c₀ > 0 (an eigenvalue leaves through z = −1), so
the threshold a* solves p(−1) = 0: 2 for GD, (2 + 2μ)/(1 − τ) for heavy-ball and
(2 + 2μ)/(1 + 2μ) for Nesterov at τ = 0. On a quadratic with Hessian H the
threshold on η is a*/λ_max(H).
"""

from __future__ import annotations

import functools

import numpy as np
import sympy as sp

a, mu, tau, z = sp.symbols("a mu tau z", real=True)

METHODS = ("gd", "heavy_ball", "nesterov")


def update_matrix(method: str) -> sp.Matrix:
    """The linear map (x_t, η·b_{t−1}) → (x_{t+1}, η·b_t) of ``torch.optim.SGD`` on ½λx²."""
    if method == "gd":  # momentum 0: torch keeps no buffer and ignores dampening
        momentum, damp = sp.Integer(0), sp.Integer(0)
    elif method in ("heavy_ball", "nesterov"):
        momentum, damp = mu, tau
    else:
        raise ValueError(f"unknown method {method!r}; one of {METHODS}")
    # η·b_t = μ·(η·b_{t−1}) + (1 − τ)·a·x_t
    new_b = sp.Matrix([[(1 - damp) * a, momentum]])
    if method == "nesterov":
        # η·d_t = a·x_t + μ·η·b_t
        step = sp.Matrix([[a, 0]]) + momentum * new_b
    else:
        step = new_b
    new_x = sp.Matrix([[1, 0]]) - step
    return sp.Matrix.vstack(new_x, new_b)


def characteristic_polynomial(method: str) -> sp.Expr:
    matrix = update_matrix(method)
    return sp.expand((z * sp.eye(2) - matrix).det())


@functools.cache
def threshold_expression(method: str) -> sp.Expr:
    """The critical a* = η·λ as a closed form in μ and τ, from p(−1) = 0."""
    poly = characteristic_polynomial(method)
    roots = sp.solve(sp.Eq(poly.subs(z, -1), 0), a)
    if len(roots) != 1:
        raise RuntimeError(f"expected one root of p(-1) = 0 for {method}, got {roots}")
    return sp.factor(sp.simplify(roots[0]))


def jury_conditions(method: str) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """(1 − |c₀|, p(1), p(−1)): all three positive iff the iteration is stable."""
    poly = sp.Poly(characteristic_polynomial(method), z)
    _, c1, c0 = poly.all_coeffs()
    return 1 - sp.Abs(c0), sp.expand(1 + c1 + c0), sp.expand(1 - c1 + c0)


def critical_step(method: str, momentum: float = 0.0, dampening: float = 0.0) -> float:
    """a* = η*·λ for ``torch.optim.SGD(momentum, dampening, nesterov)``."""
    expr = threshold_expression(method)
    return float(expr.subs({mu: momentum, tau: dampening}))


def critical_lr(method: str, lam_max: float, momentum: float = 0.0,
                dampening: float = 0.0) -> float:
    """The largest stable learning rate on a quadratic whose top Hessian eigenvalue is λ_max."""
    return critical_step(method, momentum, dampening) / lam_max


def spectral_radius(method: str, step: np.ndarray, momentum: float = 0.0,
                    dampening: float = 0.0) -> np.ndarray:
    """ρ of the update map at a = η·λ (numeric, vectorised over ``step``)."""
    matrix = sp.lambdify((a, mu, tau), update_matrix(method), "numpy")
    steps = np.atleast_1d(np.asarray(step, dtype=float))
    return np.array([
        np.max(np.abs(np.linalg.eigvals(np.array(matrix(s, momentum, dampening), dtype=float))))
        for s in steps
    ])
