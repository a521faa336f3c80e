"""Pooling layers: MaxPool2d, AvgPool2d and MaxUnpool2d (no parameters).

Each layer validates its configuration once, then calls the functional pair
``F.<op>_forward`` / ``F.<op>_backward`` (backed by the ``pool`` kernels).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from .. import functional as F
from .._checks import window
from .._typing import Array, ArrayLike, IntPair
from .module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "MaxUnpool2d"]


def _window_config(module, kernel_size, stride, padding):
    """kernel_size, stride (default: the kernel), padding (at most half the kernel) as pairs.

    The layer validates only this configuration; the input (its dtype, rank and whether
    the window fits) is checked once, by the functional op it calls.
    """
    module.kernel_size, module.stride, module.padding = window(kernel_size, stride, padding)


class _Pool2d(Module):
    kernel_size: Tuple[int, int]
    stride: Tuple[int, int]
    padding: Tuple[int, int]

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    r"""2-D max pooling over ``(N, C, H, W)``: the largest value of each window.

    Forward, with :math:`x_p` the input padded by ``-inf`` (padding never wins):

    .. math::

        y_{n,c,i,j} = \max_{0\le p<k_h,\ 0\le q<k_w} x_{p;\,n,c,\,s_h i+p,\,s_w j+q}

    and ``indices[n, c, i, j]`` the flat position ``h*W + w`` of that maximum within the
    input's H×W plane (torch's convention; ties go to the first maximum in row-major
    window order).

    Backward: each output gradient goes to the input position that won, and only there;
    positions that won several (overlapping) windows collect the sum:

    .. math::

        \frac{\partial L}{\partial x_{n,c,h,w}} = \sum_{i,j:\ \mathrm{indices}_{n,c,i,j} = hW+w} g_{n,c,i,j}

    Args:
        kernel_size (int or pair).  stride (int or pair, default None = kernel_size).
        padding (int or pair, default 0): at most half the kernel.
        return_indices (bool, default False): forward returns ``(out, indices)``.

    Shape:
        input ``(N, C, H, W)``, output ``(N, C, H_out, W_out)`` with
        ``H_out = floor((H + 2*padding_h - kh) / stride_h) + 1``; indices the same shape, int64.
    """

    def __init__(self, kernel_size: IntPair, stride: Optional[IntPair] = None, padding: IntPair = 0,
                 return_indices: bool = False) -> None:
        super().__init__()
        _window_config(self, kernel_size, stride, padding)
        self.return_indices = bool(return_indices)

    def forward(self, x: Array) -> Union[Array, Tuple[Array, Array]]:
        x = self._as_input(x)
        out, indices, ctx = F.max_pool2d_forward(x, self.kernel_size, self.stride, self.padding)
        self._save_for_backward(out, ctx)
        return (out, indices) if self.return_indices else out

    def backward(self, grad_output: Array) -> Array:
        """dL/dx: grad_output routed back to the positions of the maxima."""
        return F.max_pool2d_backward(*self._saved_for_backward(grad_output))


class AvgPool2d(_Pool2d):
    r"""2-D average pooling over ``(N, C, H, W)``: the mean of each window.

    Forward, with :math:`x_p` the zero-padded input (padding counts in the divisor, torch's
    default ``count_include_pad=True``):

    .. math::

        y_{n,c,i,j} = \frac{1}{k_h k_w}\sum_{p,q} x_{p;\,n,c,\,s_h i+p,\,s_w j+q}

    Backward: every window spreads its gradient evenly over its k_h*k_w positions, the
    overlaps add, then the padding is cropped:

    .. math::

        \frac{\partial L}{\partial x_{p;\,n,c,h,w}} = \frac{1}{k_h k_w}
            \sum_{i,j:\ (h,w)\in\mathrm{window}(i,j)} g_{n,c,i,j}

    Args:
        kernel_size (int or pair).  stride (default None = kernel_size).
        padding (default 0): at most half the kernel.

    Shape:
        input ``(N, C, H, W)``, output ``(N, C, H_out, W_out)`` with
        ``H_out = floor((H + 2*padding_h - kh) / stride_h) + 1``.
    """

    def __init__(self, kernel_size: IntPair, stride: Optional[IntPair] = None, padding: IntPair = 0) -> None:
        super().__init__()
        _window_config(self, kernel_size, stride, padding)

    def forward(self, x: Array) -> Array:
        x = self._as_input(x)
        out, ctx = F.avg_pool2d_forward(x, self.kernel_size, self.stride, self.padding)
        self._save_for_backward(out, ctx)
        return out

    def backward(self, grad_output: Array) -> Array:
        """dL/dx: each window's gradient spread evenly over the window."""
        return F.avg_pool2d_backward(*self._saved_for_backward(grad_output))


class MaxUnpool2d(_Pool2d):
    r"""The partial inverse of MaxPool2d: ``unpool(x, indices, output_size=None)``.

    Forward: an output of zeros in which every pooled value returns to the position its
    max came from (``indices`` from ``MaxPool2d(..., return_indices=True)``, flat within
    each H_out×W_out plane):

    .. math::

        y_{n,c,\,\mathrm{indices}_{n,c,i,j}} = x_{n,c,i,j}, \quad 0 \text{ elsewhere}

    Backward (with respect to ``x``; the indices are not differentiable): a gather,

    .. math::

        \frac{\partial L}{\partial x_{n,c,i,j}} = g_{n,c,\,\mathrm{indices}_{n,c,i,j}}

    When windows overlapped, an index can repeat: the forward then keeps one of the
    values (the last in row-major order) while the backward still gathers for every copy,
    as torch's does; there it is torch's gradient rather than the forward's derivative.

    Args:
        kernel_size (int or pair).  stride (default None = kernel_size).  padding (default 0).

    Shape:
        x and indices ``(N, C, H, W)``; output ``(N, C, H_out, W_out)`` with
        ``H_out = (H - 1)*stride_h - 2*padding_h + kh`` unless ``output_size`` (``(H_out,
        W_out)``, or a longer sequence whose last two entries are used, as torch) picks
        another size within one stride of it. Every index must lie in
        ``[0, H_out*W_out)``, else ValueError.
    """

    def __init__(self, kernel_size: IntPair, stride: Optional[IntPair] = None, padding: IntPair = 0) -> None:
        super().__init__()
        _window_config(self, kernel_size, stride, padding)

    def forward(self, x: Array, indices: Array, output_size: Optional[Sequence[int]] = None) -> Array:
        x = self._as_input(x)
        if x.ndim != 4:
            raise ValueError(f"MaxUnpool2d expects a 4-D input (N, C, H, W), got shape {x.shape}")
        indices = np.asarray(indices)
        if indices.dtype.kind not in "iu":
            raise TypeError(f"indices must be an integer array (from MaxPool2d), got dtype {indices.dtype}")
        if indices.shape != x.shape:
            raise ValueError(f"indices must have the input's shape {x.shape}, got {indices.shape}")
        if output_size is not None:
            output_size = tuple(int(s) for s in output_size)
            if len(output_size) not in (2, 3, 4):
                raise ValueError(f"output_size must be (H_out, W_out) (optionally led by N, C), got {output_size}")
            output_size = output_size[-2:]
        out, ctx = F.max_unpool2d_forward(x, indices, self.kernel_size, self.stride, self.padding, output_size)
        self._save_for_backward(out, ctx)
        return out

    def backward(self, grad_output: Array) -> Array:
        """dL/dx: grad_output gathered at the indices."""
        return F.max_unpool2d_backward(*self._saved_for_backward(grad_output))
