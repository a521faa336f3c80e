"""Fully connected layer and dropout, as forward/backward pairs.

``linear`` is one GEMM (NumPy's ``@``, i.e. BLAS), so it has no kernel of its own;
``dropout`` draws its mask from dlcore's generator (``dlcore.manual_seed``).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from .._checks import as_floating, check_linear_input, check_number, describe
from .._typing import Array, ArrayLike
from .._random import generator

__all__ = [
    "linear",
    "linear_forward",
    "linear_backward",
    "dropout",
    "dropout_forward",
    "dropout_backward",
]


def _as_weight(weight: Any, name: str) -> np.ndarray:
    data = getattr(weight, "data", weight) if not isinstance(weight, np.ndarray) else weight
    return as_floating(data, name)


def linear_forward(x: ArrayLike, weight: ArrayLike, bias: Optional[ArrayLike] = None) -> Tuple[Array, Any]:
    r"""Affine map ``y = x Wᵀ + b`` over the last axis; returns ``(out, ctx)``.

    Forward, for one sample (the notes' ``x^(m) = W^(m) y^(m-1) + b^(m)``):

    .. math:: y_i = \sum_j W_{ij} x_j + b_i

    Backward (:func:`linear_backward`), with ``δ = ∂L/∂y`` of shape ``(N, out)`` (all
    leading axes flattened into N):

    .. math::
        ∂L/∂x = δ · W, \qquad ∂L/∂W = δᵀ · x \;(\text{per sample } δ·xᵀ),
        \qquad ∂L/∂b = \sum_n δ_n

    Parameters
    ----------
    x : ndarray of shape ``(*, in_features)``, floating
        Cast to the weight's dtype.
    weight : ndarray of shape (out_features, in_features), float32 or float64
    bias : ndarray of shape (out_features,) or None

    Returns
    -------
    out : ndarray of shape (*, out_features), the weight's dtype
    ctx : opaque, for :func:`linear_backward`
    """
    weight = _as_weight(weight, "weight")
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    x = as_floating(x, "input", weight.dtype)
    check_linear_input(x, weight.shape[1])
    if bias is not None:
        bias = as_floating(_as_weight(bias, "bias"), "bias", weight.dtype)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {bias.shape}")
    rows = int(np.prod(x.shape[:-1], dtype=np.int64))  # explicit: reshape(-1, 0) is ambiguous
    x2d = x.reshape(rows, weight.shape[1])
    out = x2d @ weight.T
    if bias is not None:
        out += bias
    out = out.reshape(x.shape[:-1] + (weight.shape[0],))
    return out, (x2d, weight, bias is not None, x.shape)


def linear_backward(grad_output: ArrayLike, ctx: Any) -> Tuple[Array, Array, Optional[Array]]:
    """Gradients of :func:`linear_forward`: ``(grad_input, grad_weight, grad_bias_or_None)``.

    ``grad_output`` has the forward output's shape ``(*, out_features)``.
    """
    x2d, weight, has_bias, x_shape = ctx
    expected = x_shape[:-1] + (weight.shape[0],)
    grad_output = as_floating(grad_output, "grad_output", weight.dtype)
    if grad_output.shape != expected:
        raise ValueError(f"grad_output must have the output's shape {expected}, got {grad_output.shape}")
    g = grad_output.reshape(x2d.shape[0], weight.shape[0])
    grad_input = (g @ weight).reshape(x_shape)
    grad_weight = g.T @ x2d
    # float32: sum the bias gradient in double, as the compiled kernels accumulate
    grad_bias = g.sum(axis=0, dtype=np.float64).astype(weight.dtype) if has_bias else None
    return grad_input, grad_weight, grad_bias


def linear(x: ArrayLike, weight: ArrayLike, bias: Optional[ArrayLike] = None) -> Array:
    """``x @ weight.T + bias`` (torch.nn.functional.linear); see :func:`linear_forward`."""
    return linear_forward(x, weight, bias)[0]


def _check_p(p):
    return check_number(p, "p", minimum=0.0, maximum=1.0)


def dropout_forward(x: ArrayLike, p: float = 0.5, training: bool = True) -> Tuple[Array, Any]:
    r"""Inverted dropout; returns ``(out, ctx)``.

    Forward, in training: each element is kept with probability ``1 - p`` and scaled so
    the expectation is unchanged (torch's convention),

    .. math:: y = x ⊙ m / (1 - p), \qquad m_i \sim \text{Bernoulli}(1 - p)

    ``p = 1`` gives zeros; ``p = 0`` or ``training=False`` gives ``x`` unchanged. Because
    of the ``1/(1-p)`` scaling nothing needs rescaling at inference (the notes describe the
    original, non-inverted form, which instead multiplies by the keep probability at test
    time; the two agree in expectation).

    Backward (:func:`dropout_backward`): ``∂L/∂x = δ ⊙ m / (1 - p)`` with the same mask.

    Parameters
    ----------
    x : ndarray of any shape, floating
    p : float in [0, 1], the probability of zeroing an element
    training : bool
    """
    p = _check_p(p)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be a bool, got {describe(training)}")
    x = as_floating(x, "input")
    if not training or p == 0.0:
        return x, (None, x.shape)
    if p == 1.0:
        scaled_mask = np.zeros_like(x)
    else:
        keep = generator().random(x.shape) >= p
        scaled_mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return x * scaled_mask, (scaled_mask, x.shape)


def dropout_backward(grad_output: ArrayLike, ctx: Any) -> Array:
    """Gradient of :func:`dropout_forward`: ``grad_output * mask / (1 - p)``."""
    scaled_mask, shape = ctx
    grad_output = as_floating(grad_output, "grad_output", None if scaled_mask is None else scaled_mask.dtype)
    if grad_output.shape != shape:
        raise ValueError(f"grad_output must have the output's shape {shape}, got {grad_output.shape}")
    if scaled_mask is None:
        return grad_output.copy()
    return grad_output * scaled_mask


def dropout(x: ArrayLike, p: float = 0.5, training: bool = True) -> Array:
    """Inverted dropout (torch.nn.functional.dropout); see :func:`dropout_forward`."""
    return dropout_forward(x, p, training)[0]
