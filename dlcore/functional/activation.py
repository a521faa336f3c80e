r"""Activations: relu, leaky_relu, sigmoid, tanh, silu (elementwise), softmax and log_softmax
(along one axis), each with its backward pass.

Every op comes as ``F.<op>(x, ...)`` and as the pair used by the layers::

    out, ctx = F.sigmoid_forward(x)
    grad_x = F.sigmoid_backward(grad_output, ctx)     # grad_output = ∂L/∂out, same shape as out

Notation (the notes'): :math:`δ` = ``grad_output``, :math:`y` = the forward output,
:math:`σ(x) = 1 / (1 + e^{-x})`. Every op computes in the input's floating dtype
(float32 or float64; float16 is promoted to float32); integer, bool, complex or object
input raises TypeError. Inputs may be non-contiguous or read-only and are never modified.

The work is done by the active backend's kernels (``dlcore.backends``): the NumPy twins in
``dlcore/backends/numpy_kernels/activation.py`` show each computation in a few lines.

``ctx`` keeps a reference to what backward needs (the output for relu, sigmoid, tanh,
softmax and log_softmax; the input for leaky_relu and silu): do not modify those arrays
in place between forward and backward.
"""
import math

import numpy as np

from .._checks import as_floating, check_int, check_number
from ..backends import kernel_threads, kernels, workspace

__all__ = [
    "relu",
    "relu_forward",
    "relu_backward",
    "leaky_relu",
    "leaky_relu_forward",
    "leaky_relu_backward",
    "sigmoid",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh",
    "tanh_forward",
    "tanh_backward",
    "silu",
    "silu_forward",
    "silu_backward",
    "softmax",
    "softmax_forward",
    "softmax_backward",
    "log_softmax",
    "log_softmax_forward",
    "log_softmax_backward",
]


class _Ctx:
    """What a backward needs: the op's name, its saved arrays and scalars (opaque to callers)."""

    __slots__ = ("op", "shape", "dtype", "saved", "args")

    def __init__(self, op, shape, dtype, saved, args=()):
        self.op, self.shape, self.dtype, self.saved, self.args = op, shape, dtype, saved, args

    def __repr__(self):
        return f"<{self.op} ctx: shape {self.shape}, {self.dtype}>"


def _check_ctx(ctx, op):
    if not isinstance(ctx, _Ctx) or ctx.op != op:
        raise TypeError(f"ctx must be the context returned by {op}_forward, got {ctx!r}")


def _grad(grad_output, ctx):
    """grad_output as a C-contiguous array of the forward's dtype and output shape."""
    g = _as_input(grad_output, "grad_output", dtype=ctx.dtype)
    if g.shape != ctx.shape:
        raise ValueError(f"grad_output must have the forward output's shape {ctx.shape}, got {g.shape}")
    return g


def _flat(a):
    return a.reshape(-1)


def _as_input(x, name="x", dtype=None):
    """as_floating, keeping a 0-d input 0-d (np.ascontiguousarray returns at least 1-d)."""
    a = as_floating(x, name, dtype)
    return a.reshape(()) if np.ndim(x) == 0 else a


# ---- elementwise --------------------------------------------------------------------------------

def _elementwise_forward(op, x, saves_input, *args):
    x = _as_input(x)
    out = workspace.empty_like(x)  # a large buffer nobody holds any more, else fresh
    getattr(kernels(), op + "_forward")(_flat(x), _flat(out), *args, kernel_threads())
    return out, _Ctx(op, x.shape, x.dtype, x if saves_input else out, args)


def _elementwise_backward(op, grad_output, ctx):
    _check_ctx(ctx, op)
    g = _grad(grad_output, ctx)
    grad_input = workspace.empty_like(g)
    getattr(kernels(), op + "_backward")(_flat(g), _flat(ctx.saved), _flat(grad_input), *ctx.args,
                                         kernel_threads())
    return grad_input


def relu_forward(x):
    r"""ReLU, :math:`y = \max(0, x)` elementwise; returns ``(out, ctx)``.

    Backward: :math:`∂L/∂x = δ ⊙ [x > 0]` -- the subgradient at :math:`x = 0` is 0, as
    torch's. NaN input gives NaN output (as ``torch.relu``). Shape: any; ``out`` has x's shape.
    """
    return _elementwise_forward("relu", x, False)


def relu_backward(grad_output, ctx):
    """``grad_output * (out > 0)`` for the ``ctx`` of :func:`relu_forward`."""
    return _elementwise_backward("relu", grad_output, ctx)


def relu(x):
    """ReLU, ``max(0, x)`` elementwise (see :func:`relu_forward`)."""
    return relu_forward(x)[0]


def leaky_relu_forward(x, negative_slope=0.01):
    r"""Leaky ReLU: :math:`y = x` for :math:`x > 0`, else :math:`α x` (:math:`α` = ``negative_slope``).

    The notes write it :math:`\max(αx, x)`, which is the same for :math:`0 ≤ α ≤ 1`.
    Backward: :math:`∂L/∂x = δ ⊙ (1 \text{ if } x > 0 \text{ else } α)` (slope α at 0, as torch).
    Returns ``(out, ctx)``.
    """
    # finite: the compiled kernel computes max(x, 0) + slope * min(x, 0), where NaN * 0 is NaN
    negative_slope = check_number(negative_slope, "negative_slope")
    if not math.isfinite(negative_slope):
        raise ValueError(f"negative_slope must be finite, got {negative_slope}")
    return _elementwise_forward("leaky_relu", x, True, negative_slope)


def leaky_relu_backward(grad_output, ctx):
    """``grad_output * (1 if x > 0 else negative_slope)`` for the ``ctx`` of :func:`leaky_relu_forward`."""
    return _elementwise_backward("leaky_relu", grad_output, ctx)


def leaky_relu(x, negative_slope=0.01):
    """Leaky ReLU elementwise (see :func:`leaky_relu_forward`)."""
    return leaky_relu_forward(x, negative_slope)[0]


def sigmoid_forward(x):
    r"""Logistic sigmoid, :math:`y = σ(x) = 1 / (1 + e^{-x})`; returns ``(out, ctx)``.

    Computed as :math:`1/(1 + e^{-|x|})` or :math:`e^{-|x|}/(1 + e^{-|x|})` by the sign of x,
    so no exponential overflows for any x (no warnings at ±1e30, ±inf).
    Backward (from the output alone): :math:`∂L/∂x = δ ⊙ y ⊙ (1 - y)`.
    """
    return _elementwise_forward("sigmoid", x, False)


def sigmoid_backward(grad_output, ctx):
    """``grad_output * y * (1 - y)`` for the ``ctx`` of :func:`sigmoid_forward`."""
    return _elementwise_backward("sigmoid", grad_output, ctx)


def sigmoid(x):
    """Logistic sigmoid elementwise (see :func:`sigmoid_forward`)."""
    return sigmoid_forward(x)[0]


def tanh_forward(x):
    r"""Hyperbolic tangent, :math:`y = \tanh x = (e^x - e^{-x}) / (e^x + e^{-x}) = 2σ(2x) - 1`.

    Backward: :math:`∂L/∂x = δ ⊙ (1 - y^2)`. Returns ``(out, ctx)``.
    """
    return _elementwise_forward("tanh", x, False)


def tanh_backward(grad_output, ctx):
    """``grad_output * (1 - y**2)`` for the ``ctx`` of :func:`tanh_forward`."""
    return _elementwise_backward("tanh", grad_output, ctx)


def tanh(x):
    """tanh elementwise (see :func:`tanh_forward`)."""
    return tanh_forward(x)[0]


def silu_forward(x):
    r"""SiLU (swish with β = 1): :math:`y = x σ(x)`; returns ``(out, ctx)``.

    Backward: :math:`∂L/∂x = δ ⊙ σ(x) (1 + x (1 - σ(x)))`, since
    :math:`(xσ)' = σ + xσ(1 - σ)`.
    """
    return _elementwise_forward("silu", x, True)


def silu_backward(grad_output, ctx):
    """``grad_output * s * (1 + x * (1 - s))``, ``s = σ(x)``, for the ``ctx`` of :func:`silu_forward`."""
    return _elementwise_backward("silu", grad_output, ctx)


def silu(x):
    """SiLU / swish, ``x * sigmoid(x)`` elementwise (see :func:`silu_forward`)."""
    return silu_forward(x)[0]


# ---- along one axis -------------------------------------------------------------------------------

def _check_dim(dim, x):
    ndim = max(x.ndim, 1)  # a 0-d input behaves as one row of one entry, as torch's
    if dim is None:
        raise TypeError(f"dim must be an int (the axis to normalize over), got None for an input of shape {x.shape}")
    dim = check_int(dim, "dim")
    if not -ndim <= dim < ndim:
        raise ValueError(f"dim must be in [{-ndim}, {ndim - 1}] for an input of shape {x.shape}, got {dim}")
    return dim % ndim


def _to_rows(a, dim):
    """``a`` with axis ``dim`` moved last, as a C-contiguous (rows, C) array."""
    moved = np.moveaxis(a.reshape(a.shape or (1,)), dim, -1)
    cols = moved.shape[-1]
    return np.ascontiguousarray(moved).reshape(moved.size // cols if cols else 0, cols), moved.shape


def _from_rows(rows, moved_shape, dim, shape):
    return np.ascontiguousarray(np.moveaxis(rows.reshape(moved_shape), -1, dim)).reshape(shape)


def _along_dim_forward(op, x, dim):
    x = _as_input(x)
    dim = _check_dim(dim, x)
    rows, moved_shape = _to_rows(x, dim)
    out_rows = np.empty_like(rows)
    getattr(kernels(), op + "_forward")(rows, out_rows, kernel_threads())
    # ctx keeps the (rows, C) output: backward works in that layout without moving axes again.
    return _from_rows(out_rows, moved_shape, dim, x.shape), _Ctx(op, x.shape, x.dtype, out_rows, (dim, moved_shape))


def _along_dim_backward(op, grad_output, ctx):
    _check_ctx(ctx, op)
    g = _grad(grad_output, ctx)
    dim, moved_shape = ctx.args
    g_rows, _ = _to_rows(g, dim)
    grad_rows = np.empty_like(g_rows)
    getattr(kernels(), op + "_backward")(g_rows, ctx.saved, grad_rows, kernel_threads())
    return _from_rows(grad_rows, moved_shape, dim, ctx.shape)


def softmax_forward(x, dim):
    r"""Softmax along ``dim``: :math:`y_i = e^{x_i} / \sum_j e^{x_j}`; returns ``(out, ctx)``.

    Computed as :math:`e^{x_i - m} / \sum_j e^{x_j - m}` with :math:`m = \max_j x_j` (the
    notes' stabilized softmax: same value, no overflow). The entries along ``dim`` sum to 1.
    Backward: the Jacobian is :math:`\text{diag}(y) - y y^T`, so
    :math:`∂L/∂x = y ⊙ (δ - \sum_j δ_j y_j)` along ``dim``.

    Args:
        x: array of any shape (a 0-d x is one entry: softmax is 1).
        dim (int): the axis to normalize over; negative counts from the end.
    """
    return _along_dim_forward("softmax", x, dim)


def softmax_backward(grad_output, ctx):
    """``y * (grad_output - sum(grad_output * y, dim))`` for the ``ctx`` of :func:`softmax_forward`."""
    return _along_dim_backward("softmax", grad_output, ctx)


def softmax(x, dim):
    """Softmax along ``dim`` (see :func:`softmax_forward`)."""
    return softmax_forward(x, dim)[0]


def log_softmax_forward(x, dim):
    r"""Log-softmax along ``dim``: :math:`y_i = x_i - \log \sum_j e^{x_j}`; returns ``(out, ctx)``.

    Computed as :math:`(x_i - m) - \log \sum_j e^{x_j - m}`, :math:`m = \max_j x_j`
    (log-sum-exp): finite for any finite logits, where ``log(softmax(x))`` would give
    ``-inf`` once a probability underflows.
    Backward: :math:`∂L/∂x = δ - e^{y} \sum_j δ_j` along ``dim`` (:math:`e^y` = softmax).
    """
    return _along_dim_forward("log_softmax", x, dim)


def log_softmax_backward(grad_output, ctx):
    """``grad_output - exp(y) * sum(grad_output, dim)`` for the ``ctx`` of :func:`log_softmax_forward`."""
    return _along_dim_backward("log_softmax", grad_output, ctx)


def log_softmax(x, dim):
    """Log-softmax along ``dim`` (see :func:`log_softmax_forward`)."""
    return log_softmax_forward(x, dim)[0]
