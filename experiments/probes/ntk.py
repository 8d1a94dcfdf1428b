"""Empirical neural tangent kernel Θ(x, x') = Σ_p ∂_p f(x) ∂_p f(x')ᵀ of any module.

Three methods that give the same numbers (tests check they agree):

* ``"jacobian"``: per-example Jacobians by ``vmap(jacrev)``, contracted over parameters;
  memory O(chunk·O·P).
* ``"ntk_vp"``: NTK-vector products: a ``vjp`` of the outputs at x' pulls each output
  basis vector back to parameter space, a ``jvp`` pushes it forward at x; never forms
  the Jacobian.
* ``"structured"``: for MLPs of linear layers and elementwise activations: the gradient of
  an output w.r.t. a layer's weight is an outer product (back-propagated output gradient
  ⊗ layer input), so that layer's contribution is the elementwise product of two Gram
  matrices: (a_x·a_x')·s_w² + s_b², times (δ_x·δ_x'). Never forms the N×P Jacobian.

Modes: ``"full"`` (N1 × N2 × O × O), ``"trace"`` (Σ_o Θ_oo, N1 × N2) and ``"diagonal"``
(Θ(x_i, x_i), N1 × O × O). Examples are processed in chunks for bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

METHODS = ("jacobian", "ntk_vp", "structured")
MODES = ("full", "trace", "diagonal")


def _params(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach() for k, v in model.named_parameters()}


def _chunks(n: int, size: int | None) -> Iterator[slice]:
    size = n if size is None else max(1, size)
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _outputs_2d(model: nn.Module, params, x: Tensor) -> Tensor:
    out = functional_call(model, params, (x,))
    return out.reshape(len(x), -1)


# ---------------------------------------------------------------- the three methods

def _jacobians(model: nn.Module, params, x: Tensor) -> Tensor:
    """Per-example Jacobians, flattened: (n, O, P)."""
    def single(p, xi):
        return _outputs_2d(model, p, xi[None])[0]

    jac = vmap(jacrev(single), in_dims=(None, 0))(params, x)
    return torch.cat([jac[k].reshape(len(x), jac[k].shape[1], -1) for k in params], dim=2)


def _ntk_jacobian(model, x1, x2, chunk_size):
    """Jacobians of x2 once, then each chunk of x1 against them; when x1 is x2 (the kernel
    of a set with itself) the Jacobians of x2 serve both sides, computed once."""
    params = _params(model)
    j2 = torch.cat([_jacobians(model, params, x2[part])
                    for part in _chunks(len(x2), chunk_size)])
    rows = []
    for part in _chunks(len(x1), chunk_size):
        j1 = j2[part] if x1 is x2 else _jacobians(model, params, x1[part])
        rows.append(torch.einsum("aop,bqp->aboq", j1, j2))
    return torch.cat(rows)


def _ntk_vector_products(model, x1, x2, chunk_size):
    params = _params(model)

    def f1(p):
        return _outputs_2d(model, p, x1)

    blocks = []
    for part in _chunks(len(x2), chunk_size):
        xb = x2[part]
        out, pull_back = vjp(lambda p, xb=xb: _outputs_2d(model, p, xb), params)
        basis = torch.eye(out.numel(), dtype=out.dtype, device=out.device).reshape(
            -1, *out.shape)

        def column(cotangent, pull_back=pull_back):
            (tangent,) = pull_back(cotangent)
            return jvp(f1, (params,), (tangent,))[1]

        cols = vmap(column)(basis)  # (b·O, n1, O)
        cols = cols.reshape(out.shape[0], out.shape[1], len(x1), -1)  # (b, q, a, o)
        blocks.append(cols.permute(2, 0, 3, 1))  # (a, b, o, q)
    return torch.cat(blocks, dim=1)


def _layer_scales(layer: nn.Module) -> tuple[float, float, bool]:
    """(weight scale s_w, bias scale s_b, has bias) with y = s_w·W x + s_b·b."""
    if isinstance(layer, nn.Linear):
        return 1.0, 1.0, layer.bias is not None
    if hasattr(layer, "weight_scale"):
        return float(layer.weight_scale), float(layer.bias_scale), layer.bias is not None
    raise TypeError(f"structured NTK supports Linear-like layers, got {type(layer).__name__}")


def _structured_factors(model: nn.Sequential, x: Tensor):
    """Per linear layer: its inputs (n, fan_in) and the gradients of every output w.r.t.
    its pre-activation (n, O, fan_out)."""
    inputs, pre_activations = [], []
    h = x
    for layer in model:
        if isinstance(layer, nn.Linear) or hasattr(layer, "weight_scale"):
            inputs.append(h.detach())
            h = layer(h)
            pre_activations.append(h)
        else:
            h = layer(h)
    out = h.reshape(len(x), -1)
    grads = []
    for o in range(out.shape[1]):
        grads.append(torch.autograd.grad(out[:, o].sum(), pre_activations,
                                         retain_graph=o < out.shape[1] - 1))
    deltas = [torch.stack([g[i] for g in grads], dim=1) for i in range(len(pre_activations))]
    return inputs, deltas


def _ntk_structured(model, x1, x2, chunk_size):
    if not isinstance(model, nn.Sequential):
        raise TypeError("structured NTK needs an nn.Sequential of linear layers and "
                        "elementwise activations")
    layers = [m for m in model if isinstance(m, nn.Linear) or hasattr(m, "weight_scale")]
    scales = [_layer_scales(layer) for layer in layers]

    def factors(x):
        parts = [_structured_factors(model, x[part]) for part in _chunks(len(x), chunk_size)]
        return ([torch.cat([p[0][i] for p in parts]) for i in range(len(layers))],
                [torch.cat([p[1][i] for p in parts]) for i in range(len(layers))])

    with torch.enable_grad():
        a1, d1 = factors(x1)
        a2, d2 = factors(x2) if x2 is not x1 else (a1, d1)
    total = 0
    for (s_w, s_b, has_bias), in1, in2, del1, del2 in zip(scales, a1, a2, d1, d2, strict=True):
        gram_in = s_w**2 * in1 @ in2.T + (s_b**2 if has_bias else 0.0)
        total = total + gram_in[:, :, None, None] * torch.einsum("aoh,bqh->aboq", del1, del2)
    return total.detach()


_IMPLEMENTATIONS = {"jacobian": _ntk_jacobian, "ntk_vp": _ntk_vector_products,
                    "structured": _ntk_structured}


def empirical_ntk(model: nn.Module, x1: Tensor, x2: Tensor | None = None,
                  method: str = "structured", mode: str = "full",
                  chunk_size: int | None = 256) -> Tensor:
    """Θ between the rows of ``x1`` and ``x2`` (``x2=None``: x1 with itself)."""
    if method not in _IMPLEMENTATIONS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "diagonal":
        if x2 is not None:
            raise ValueError("diagonal mode takes one input set")
        # Θ(x_i, x_i) chunk by chunk: the diagonal of each chunk's own block
        # (the same tensor on both sides, so each method can reuse it)
        blocks = [_IMPLEMENTATIONS[method](model, xb, xb, None)
                  for xb in (x1[part] for part in _chunks(len(x1), chunk_size))]
        return torch.cat([torch.diagonal(b, dim1=0, dim2=1).permute(2, 0, 1) for b in blocks])
    kernel = _IMPLEMENTATIONS[method](model, x1, x1 if x2 is None else x2, chunk_size)
    if mode == "trace":
        return torch.diagonal(kernel, dim1=2, dim2=3).sum(-1)
    return kernel


# ---------------------------------------------------------------- comparisons

def kernel_distance(k1: Tensor | np.ndarray, k2: Tensor | np.ndarray) -> float:
    """1 − ⟨K1, K2⟩_F/(‖K1‖_F‖K2‖_F): 0 for kernels equal up to scale (Fort et al. 2020)."""
    k1, k2 = np.asarray(k1, dtype=float).ravel(), np.asarray(k2, dtype=float).ravel()
    return float(1 - k1 @ k2 / (np.linalg.norm(k1) * np.linalg.norm(k2)))


def kernel_target_alignment(kernel: Tensor | np.ndarray, y: Tensor | np.ndarray) -> float:
    """yᵀKy/(‖K‖_F·‖y‖²) for an N × N kernel and targets y (N or N × O, summed over O)."""
    k = np.asarray(kernel, dtype=float)
    y = np.asarray(y, dtype=float).reshape(len(k), -1)
    return float(np.trace(y.T @ k @ y) / (np.linalg.norm(k) * np.sum(y**2)))
