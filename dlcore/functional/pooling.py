r"""Pooling: max, average and max unpooling, as ``torch.nn.functional``.

Each op validates its arguments once, allocates the outputs and calls the active
backend's kernels (``dlcore/backends/numpy_kernels/pool.py`` is the readable version,
``src/dlcore/pool.pyx`` the compiled one). The differentiable ops come in pairs for the
layers::

    out, indices, ctx = max_pool2d_forward(x, kernel_size, stride, padding)
    grad_input = max_pool2d_backward(grad_output, ctx)

Notation (the study notes' ``h_o = (h_i - h_k) / h_s + 1``, with padding and rounding
down, as PyTorch): an input ``x`` of shape ``(N, C, H, W)`` pooled with a ``KH x KW``
kernel, stride ``(SH, SW)`` and padding ``(PH, PW)`` gives ``(N, C, OH, OW)`` with

.. math::

    OH = \left\lfloor \frac{H + 2 PH - KH}{SH} \right\rfloor + 1, \qquad
    OW = \left\lfloor \frac{W + 2 PW - KW}{SW} \right\rfloor + 1.

The window of output ``(oh, ow)`` is :math:`R(oh, ow) = \{(oh \cdot SH - PH + k_h,\;
ow \cdot SW - PW + k_w) : 0 \le k_h < KH,\ 0 \le k_w < KW\}`. ``stride`` defaults to
``kernel_size``; padding may be at most half the kernel (as PyTorch requires), so every
window holds at least one real element. 3-D input ``(C, H, W)`` is accepted too, as in
PyTorch, and gives 3-D results.
"""
from __future__ import annotations

from collections import namedtuple
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from .._checks import as_floating, check_ndim, check_window_fits, describe, pair, window, window_output_size
from .._typing import Array, ArrayLike, IntPair
from ..backends import kernels, threads_for, workspace

__all__ = [
    "max_pool2d",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "max_unpool2d",
    "max_unpool2d_forward",
    "max_unpool2d_backward",
]

# What the backward passes need (opaque to callers).
_MaxPoolCtx = namedtuple("_MaxPoolCtx", "indices input_shape out_shape dtype batched")
_AvgPoolCtx = namedtuple("_AvgPoolCtx", "geometry input_shape out_shape dtype batched")
_UnpoolCtx = namedtuple("_UnpoolCtx", "indices input_shape out_shape dtype batched")


def _as_images(x: Any, name: str) -> Tuple[np.ndarray, bool]:
    """``x`` as a C-contiguous (N, C, H, W) float array, and whether it came batched."""
    x = as_floating(x, name)
    check_ndim(x, (3, 4), name, "(N, C, H, W) or (C, H, W)")
    if any(d == 0 for d in x.shape[-3:]):
        raise ValueError(f"{name} must have non-zero C, H and W (only N may be 0), got shape {x.shape}")
    return (x, True) if x.ndim == 4 else (x[None], False)


def _geometry(x_shape: Sequence[int], kernel_size: Any, stride: Any, padding: Any) -> Tuple[tuple, Tuple[int, int]]:
    """Validated (KH, KW, SH, SW, PH, PW) and the output size (OH, OW)."""
    kernel, stride, padding = window(kernel_size, stride, padding)
    check_window_fits(x_shape[-2:], kernel, padding)
    return kernel + stride + padding, window_output_size(x_shape[-2:], kernel, stride, padding)


def _grad_output(grad_output: Any, ctx: Any, ctx_type: Any, forward: str) -> np.ndarray:
    """grad_output as a C-contiguous 4-D array of the forward's dtype and output shape."""
    if not isinstance(ctx, ctx_type):
        raise TypeError(f"ctx must be the ctx returned by {forward}_forward, got {describe(ctx)}")
    g = as_floating(grad_output, "grad_output", dtype=ctx.dtype)
    want = ctx.out_shape if ctx.batched else ctx.out_shape[1:]
    if g.shape != want:
        raise ValueError(f"grad_output must have the forward output's shape {want}, got {g.shape}")
    return g if ctx.batched else g[None]


def _threads(*arrays):
    """Threads for a pooling kernel over these arrays (serial below the policy's threshold)."""
    return threads_for(sum(a.size for a in arrays), "pool")


def _unbatch(a: np.ndarray, batched: bool) -> np.ndarray:
    return a if batched else a[0]


# ---- max pooling -------------------------------------------------------------------------

def max_pool2d_forward(x: ArrayLike, kernel_size: IntPair, stride: Optional[IntPair] = None,
                       padding: IntPair = 0) -> Tuple[Array, Array, Any]:
    r"""Max pooling, keeping the argmax of each window for the backward pass.

    Forward:

    .. math::

        y_{n,c,oh,ow} = \max_{(i, j) \in R(oh, ow)} x_{n,c,i,j}, \qquad
        \text{indices}_{n,c,oh,ow} = i^* W + j^*

    where :math:`(i^*, j^*)` is the first maximum in row-major window order (PyTorch's
    tie rule; a NaN counts as the maximum, and the last NaN of a window wins). Padded
    positions are never selected.

    Backward (the max routes the whole gradient to its argmax; overlapping windows that
    share an argmax add up):

    .. math::

        \frac{\partial L}{\partial x_{n,c,i,j}} =
        \sum_{(oh, ow) : \text{indices}_{n,c,oh,ow} = iW + j} \frac{\partial L}{\partial y_{n,c,oh,ow}}

    Parameters
    ----------
    x : ndarray (N, C, H, W) or (C, H, W), float32 or float64
    kernel_size, stride, padding : int or pair of ints
        ``stride`` defaults to ``kernel_size``; ``padding`` at most half the kernel.

    Returns
    -------
    out : ndarray (N, C, OH, OW), x's dtype
    indices : ndarray (N, C, OH, OW), int64, flat indices in each H*W plane (as PyTorch);
        read-only, since the backward indexes with them (copy to modify)
    ctx : what :func:`max_pool2d_backward` needs
    """
    x, batched = _as_images(x, "x")
    geometry, (OH, OW) = _geometry(x.shape, kernel_size, stride, padding)
    N, C = x.shape[:2]
    out = workspace.empty((N, C, OH, OW), x.dtype)  # reused when no one holds it any more
    indices = workspace.empty((N, C, OH, OW), np.int64)
    if N:  # (an empty batch has nothing to compute)
        kernels().max_pool2d_forward(x, out, indices, *geometry, _threads(x, out))
    # The backward scatters through these indices: the caller and the ctx get read-only
    # views of a read-only owner, which cannot be made writable again (the owner could).
    indices.setflags(write=False)
    ctx = _MaxPoolCtx(indices.view(), x.shape, out.shape, x.dtype, batched)
    return _unbatch(out, batched), _unbatch(indices.view(), batched), ctx


def max_pool2d_backward(grad_output: ArrayLike, ctx: Any) -> Array:
    """Gradient of :func:`max_pool2d_forward` with respect to ``x`` (formula there).

    ``grad_output`` has the forward output's shape; the result has ``x``'s shape and the
    forward's dtype.
    """
    g = _grad_output(grad_output, ctx, _MaxPoolCtx, "max_pool2d")
    grad_input = workspace.empty(ctx.input_shape, ctx.dtype)
    if grad_input.size:
        kernels().max_pool2d_backward(g, ctx.indices, grad_input, _threads(g, grad_input))
    return _unbatch(grad_input, ctx.batched)


def max_pool2d(x: ArrayLike, kernel_size: IntPair, stride: Optional[IntPair] = None, padding: IntPair = 0,
               return_indices: bool = False) -> Union[Array, Tuple[Array, Array]]:
    """Max pooling as ``torch.nn.functional.max_pool2d``; ``(out, indices)`` with ``return_indices``.

    See :func:`max_pool2d_forward` for the formulas, shapes and the tie rule.
    """
    out, indices, _ = max_pool2d_forward(x, kernel_size, stride, padding)
    return (out, indices) if return_indices else out


# ---- average pooling ---------------------------------------------------------------------

def avg_pool2d_forward(x: ArrayLike, kernel_size: IntPair, stride: Optional[IntPair] = None,
                       padding: IntPair = 0) -> Tuple[Array, Any]:
    r"""Average pooling; zero padding is counted (PyTorch's ``count_include_pad=True``).

    Forward (float32 windows are summed in float64, then rounded):

    .. math::

        y_{n,c,oh,ow} = \frac{1}{KH \cdot KW} \sum_{(i, j) \in R(oh, ow)} x_{n,c,i,j}
        \qquad (x = 0 \text{ at padded positions})

    Backward (each element of a window receives an equal share of its gradient):

    .. math::

        \frac{\partial L}{\partial x_{n,c,i,j}} = \frac{1}{KH \cdot KW}
        \sum_{(oh, ow) : (i, j) \in R(oh, ow)} \frac{\partial L}{\partial y_{n,c,oh,ow}}

    Parameters
    ----------
    x : ndarray (N, C, H, W) or (C, H, W), float32 or float64
    kernel_size, stride, padding : int or pair of ints
        ``stride`` defaults to ``kernel_size``; ``padding`` at most half the kernel.

    Returns
    -------
    out : ndarray (N, C, OH, OW), x's dtype
    ctx : what :func:`avg_pool2d_backward` needs
    """
    x, batched = _as_images(x, "x")
    geometry, (OH, OW) = _geometry(x.shape, kernel_size, stride, padding)
    out = workspace.empty(x.shape[:2] + (OH, OW), x.dtype)
    if out.size:
        kernels().avg_pool2d_forward(x, out, *geometry, _threads(x, out))
    return _unbatch(out, batched), _AvgPoolCtx(geometry, x.shape, out.shape, x.dtype, batched)


def avg_pool2d_backward(grad_output: ArrayLike, ctx: Any) -> Array:
    """Gradient of :func:`avg_pool2d_forward` with respect to ``x`` (formula there)."""
    g = _grad_output(grad_output, ctx, _AvgPoolCtx, "avg_pool2d")
    grad_input = workspace.empty(ctx.input_shape, ctx.dtype)
    if grad_input.size:
        kernels().avg_pool2d_backward(g, grad_input, *ctx.geometry, _threads(g, grad_input))
    return _unbatch(grad_input, ctx.batched)


def avg_pool2d(x: ArrayLike, kernel_size: IntPair, stride: Optional[IntPair] = None, padding: IntPair = 0) -> Array:
    """Average pooling as ``torch.nn.functional.avg_pool2d`` (padding counted in the mean)."""
    return avg_pool2d_forward(x, kernel_size, stride, padding)[0]


# ---- max unpooling -----------------------------------------------------------------------

def _unpool_size(x_shape, kernel_size, stride, padding, output_size):
    """(OH, OW): PyTorch's default ``(H - 1) * SH - 2 * PH + KH``, or a checked ``output_size``."""
    kh, kw = pair(kernel_size, "kernel_size", 1)
    sh, sw = (kh, kw) if stride is None else pair(stride, "stride", 1)
    ph, pw = pair(padding, "padding", 0)
    default = ((x_shape[-2] - 1) * sh - 2 * ph + kh, (x_shape[-1] - 1) * sw - 2 * pw + kw)
    if output_size is None:
        size = default
    else:
        if not isinstance(output_size, (tuple, list)) or len(output_size) not in (2, 4):
            raise ValueError(
                f"output_size must be (OH, OW) or (N, C, OH, OW), got {describe(output_size)}"
            )
        size = pair(tuple(output_size[-2:]), "output_size", 1)
        for d, (s, step) in enumerate(zip(size, (sh, sw))):
            if not default[d] - step < s < default[d] + step:
                raise ValueError(
                    f"output_size must lie strictly between {default[0] - sh, default[1] - sw} and "
                    f"{default[0] + sh, default[1] + sw} (the default size {default} -/+ stride), got {size}"
                )
    if size[0] < 1 or size[1] < 1:
        raise ValueError(
            f"the unpooled size {size} must be positive (x's H, W = {tuple(x_shape[-2:])}, "
            f"kernel_size {(kh, kw)}, stride {(sh, sw)}, padding {(ph, pw)})"
        )
    return size


def max_unpool2d_forward(x: ArrayLike, indices: ArrayLike, kernel_size: IntPair, stride: Optional[IntPair] = None,
                         padding: IntPair = 0, output_size: Optional[Sequence[int]] = None) -> Tuple[Array, Any]:
    r"""Max unpooling: put each value back where :func:`max_pool2d` found it, zeros elsewhere.

    Forward (``indices`` as returned by max pooling: flat positions in each output plane;
    a repeated index keeps the last value in row-major order, as PyTorch's CPU kernel):

    .. math::

        y_{n,c}[\text{indices}_{n,c,i,j}] = x_{n,c,i,j}, \qquad y = 0 \text{ elsewhere}

    Backward (a gather):

    .. math::

        \frac{\partial L}{\partial x_{n,c,i,j}} =
        \frac{\partial L}{\partial y_{n,c}}[\text{indices}_{n,c,i,j}]

    Parameters
    ----------
    x : ndarray (N, C, H, W) or (C, H, W), float32 or float64
    indices : integer ndarray of x's shape, each in ``[0, OH*OW)`` (else ValueError)
    kernel_size, stride, padding : int or pair of ints (stride defaults to kernel_size)
    output_size : (OH, OW) or (N, C, OH, OW), optional
        Default ``OH = (H - 1) * SH - 2 * PH + KH`` (likewise OW); a given size must lie
        strictly within one stride of it, as PyTorch checks.

    Returns
    -------
    out : ndarray (N, C, OH, OW), x's dtype
    ctx : what :func:`max_unpool2d_backward` needs
    """
    x, batched = _as_images(x, "x")
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"indices must be an integer numpy array, got {describe(indices)}")
    if indices.dtype.kind not in "iu":
        raise TypeError(f"indices must have an integer dtype (int64), got dtype {indices.dtype}")
    want = x.shape if batched else x.shape[1:]
    if indices.shape != want:
        raise ValueError(f"indices must have x's shape {want}, got {indices.shape}")
    OH, OW = _unpool_size(x.shape, kernel_size, stride, padding, output_size)
    # A private copy, checked once: the kernels (and the backward's gather, later) index
    # with it unchecked, so the caller must not be able to change it afterwards.
    indices = np.array(indices, dtype=np.int64, order="C")
    indices.setflags(write=False)
    if indices.size:
        lo, hi = indices.min(), indices.max()
        if lo < 0 or hi >= OH * OW:
            raise ValueError(
                f"indices must lie in [0, {OH * OW}) (the output plane {(OH, OW)}), got {lo if lo < 0 else hi}"
            )
    indices = indices.view() if batched else indices[None]  # the ctx keeps a view, not the owner
    out = np.empty(x.shape[:2] + (OH, OW), dtype=x.dtype)
    if out.size:
        kernels().max_unpool2d_forward(x, indices, out, _threads(x, out))
    return _unbatch(out, batched), _UnpoolCtx(indices, x.shape, out.shape, x.dtype, batched)


def max_unpool2d_backward(grad_output: ArrayLike, ctx: Any) -> Array:
    """Gradient of :func:`max_unpool2d_forward` with respect to ``x`` (formula there)."""
    g = _grad_output(grad_output, ctx, _UnpoolCtx, "max_unpool2d")
    grad_input = np.empty(ctx.input_shape, dtype=ctx.dtype)
    if grad_input.size:
        kernels().max_unpool2d_backward(g, ctx.indices, grad_input, _threads(g, grad_input))
    return _unbatch(grad_input, ctx.batched)


def max_unpool2d(x: ArrayLike, indices: ArrayLike, kernel_size: IntPair, stride: Optional[IntPair] = None,
                 padding: IntPair = 0, output_size: Optional[Sequence[int]] = None) -> Array:
    """Max unpooling as ``torch.nn.functional.max_unpool2d``; see :func:`max_unpool2d_forward`."""
    return max_unpool2d_forward(x, indices, kernel_size, stride, padding, output_size)[0]
