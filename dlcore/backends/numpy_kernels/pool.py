"""NumPy twins of ``src/dlcore/pool.pyx``: max / average pooling and max unpooling.

These functions are the specification of the compiled kernels: same names, same
parameters (``n_threads`` is accepted and ignored), same results. The caller
(:mod:`dlcore.functional.pooling`) has validated everything: arrays are C-contiguous,
of one floating dtype (``indices`` int64, every index inside its plane), sizes agree and
outputs are allocated. Results are written into the given output arrays.

Shapes (torch's letters): ``x`` is ``(N, C, H, W)``; the pooled map is ``(N, C, OH, OW)``
with ``OH = (H + 2*PH - KH) // SH + 1`` (likewise OW). The study notes give
``(H - KH) / SH + 1``: that is the same formula without padding, rounded down.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "max_unpool2d_forward",
    "max_unpool2d_backward",
]


def _check_indices(indices, n):
    # NumPy would wrap a negative index silently; both backends refuse out-of-plane ones alike.
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise ValueError(f"indices must lie in [0, {n}) (a flat position in one plane), "
                         f"got {indices.min() if indices.min() < 0 else indices.max()}")


def max_pool2d_forward(x, out, indices, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, n_threads):
    """out[n,c,oh,ow] = max of the window; indices = where it is (flat index in the H*W plane).

    The window of (oh, ow) covers rows ``oh*SH - PH .. +KH-1`` and columns
    ``ow*SW - PW .. +KW-1``; padded positions lie outside the plane and are never
    selected. Ties go to the first maximum in row-major window order and a NaN wins
    (the last NaN of the window), as in PyTorch::

        for n, c, oh, ow:
            best = first in-plane position of the window
            for kh, kw (row-major), (ih, iw) = (oh*SH-PH+kh, ow*SW-PW+kw) inside the plane:
                if x[ih, iw] > x[best] or isnan(x[ih, iw]): best = (ih, iw)
            out[n, c, oh, ow] = x[best];  indices[n, c, oh, ow] = ih*W + iw of best

    Parameters
    ----------
    x : ndarray (N, C, H, W), float32 or float64          # IN
    out : ndarray (N, C, OH, OW), x's dtype               # OUT
    indices : ndarray (N, C, OH, OW), int64               # OUT
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w : int (pad <= kernel // 2)
    n_threads : int, ignored
    """
    N, C, H, W = x.shape
    OH, OW = out.shape[2:]
    # Pad with -inf so that padded positions can only tie, never win (see the fix-up below).
    xp = np.pad(x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)), constant_values=-np.inf)
    win = sliding_window_view(xp, (kernel_h, kernel_w), axis=(2, 3))[:, :, ::stride_h, ::stride_w]
    win = win.reshape(N, C, OH, OW, kernel_h * kernel_w)  # a copy: (window, row-major offset)
    k = np.argmax(win, axis=-1)  # the first maximum; the first NaN if there is one
    out[...] = np.take_along_axis(win, k[..., None], axis=-1)[..., 0]
    nan = np.isnan(out)
    if nan.any():  # PyTorch keeps the last NaN of the window
        last = win.shape[-1] - 1 - np.argmax(np.isnan(win[..., ::-1]), axis=-1)
        k = np.where(nan, last, k)
    # Offset of each window's first in-plane element; chosen when all its values are -inf.
    kh0 = np.maximum(pad_h - stride_h * np.arange(OH), 0)[:, None]
    kw0 = np.maximum(pad_w - stride_w * np.arange(OW), 0)[None, :]
    k = np.where(out == -np.inf, kh0 * kernel_w + kw0, k)
    ih = stride_h * np.arange(OH)[:, None] - pad_h + k // kernel_w
    iw = stride_w * np.arange(OW)[None, :] - pad_w + k % kernel_w
    indices[...] = ih * W + iw


def max_pool2d_backward(grad_output, indices, grad_input, n_threads):
    """grad_input[n,c].flat[indices[n,c,oh,ow]] += grad_output[n,c,oh,ow]; zero elsewhere.

    Only the selected element of each window receives that window's gradient
    (dmax/dx_i = 1 for the argmax, 0 for the others). Overlapping windows can select
    the same element, whose gradients then add up, in row-major order of (oh, ow)::

        grad_input[...] = 0
        for n, c, oh, ow:
            grad_input[n, c].flat[indices[n, c, oh, ow]] += grad_output[n, c, oh, ow]

    Parameters
    ----------
    grad_output : ndarray (N, C, OH, OW), float32 or float64   # IN
    indices : ndarray (N, C, OH, OW), int64, each in [0, H*W)   # IN
    grad_input : ndarray (N, C, H, W), grad_output's dtype      # OUT
    n_threads : int, ignored
    """
    planes = grad_input.reshape(grad_input.shape[0] * grad_input.shape[1], -1)  # a view
    _check_indices(indices, planes.shape[1])
    planes[...] = 0
    rows = np.arange(planes.shape[0])[:, None]
    np.add.at(planes, (rows, indices.reshape(planes.shape[0], -1)), grad_output.reshape(planes.shape[0], -1))


def avg_pool2d_forward(x, out, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, n_threads):
    """out[n,c,oh,ow] = (1 / (KH*KW)) * sum of the window, padding counted as zeros.

    PyTorch's default ``count_include_pad=True``: the divisor is always KH*KW. Sums are
    taken in float64 in row-major window order, then divided and rounded to x's dtype::

        for n, c, oh, ow:
            s = 0.0
            for kh, kw (row-major), (ih, iw) = (oh*SH-PH+kh, ow*SW-PW+kw) inside the plane:
                s += x[n, c, ih, iw]
            out[n, c, oh, ow] = s / (KH*KW)

    Vectorized: one strided slice of the padded input per kernel offset (kh, kw).

    Parameters
    ----------
    x : ndarray (N, C, H, W), float32 or float64   # IN
    out : ndarray (N, C, OH, OW), x's dtype        # OUT
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w : int (pad <= kernel // 2)
    n_threads : int, ignored
    """
    OH, OW = out.shape[2:]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)))
    total = np.zeros(out.shape)
    with np.errstate(invalid="ignore"):  # inf + -inf is NaN, silently, as in the compiled loop
        for kh in range(kernel_h):
            for kw in range(kernel_w):
                total += xp[:, :, kh:kh + stride_h * OH:stride_h, kw:kw + stride_w * OW:stride_w]
    out[...] = total / (kernel_h * kernel_w)


def avg_pool2d_backward(grad_output, grad_input, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, n_threads):
    """grad_input[n,c,ih,iw] = (1 / (KH*KW)) * sum of grad_output over the windows covering (ih, iw).

    Every element of a window gets 1/(KH*KW) of the window's gradient; padded positions
    absorb their share and are cropped. Sums in float64, then rounded::

        g = zeros of the padded shape (N, C, H + 2*PH, W + 2*PW), float64
        for kh, kw:                          # each kernel offset
            for n, c, oh, ow:
                g[n, c, oh*SH + kh, ow*SW + kw] += grad_output[n, c, oh, ow]
        grad_input = g[:, :, PH:PH+H, PW:PW+W] / (KH*KW)

    Parameters
    ----------
    grad_output : ndarray (N, C, OH, OW), float32 or float64   # IN
    grad_input : ndarray (N, C, H, W), grad_output's dtype      # OUT
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w : int
    n_threads : int, ignored
    """
    N, C, H, W = grad_input.shape
    OH, OW = grad_output.shape[2:]
    g = np.zeros((N, C, H + 2 * pad_h, W + 2 * pad_w))
    with np.errstate(invalid="ignore"):
        for kh in range(kernel_h):
            for kw in range(kernel_w):
                g[:, :, kh:kh + stride_h * OH:stride_h, kw:kw + stride_w * OW:stride_w] += grad_output
    grad_input[...] = g[:, :, pad_h:pad_h + H, pad_w:pad_w + W] / (kernel_h * kernel_w)


def max_unpool2d_forward(x, indices, out, n_threads):
    """out[n,c].flat[indices[n,c,i,j]] = x[n,c,i,j]; zero elsewhere (the inverse of max pooling).

    When an index repeats within a plane, the last value in row-major order wins::

        out[...] = 0
        for n, c, i, j:
            out[n, c].flat[indices[n, c, i, j]] = x[n, c, i, j]

    Parameters
    ----------
    x : ndarray (N, C, H, W), float32 or float64          # IN
    indices : ndarray (N, C, H, W), int64, each in [0, OH*OW)   # IN
    out : ndarray (N, C, OH, OW), x's dtype               # OUT
    n_threads : int, ignored
    """
    planes = out.reshape(out.shape[0] * out.shape[1], -1)  # a view
    _check_indices(indices, planes.shape[1])
    planes[...] = 0
    rows = np.arange(planes.shape[0])[:, None]
    # Assignment visits the index array in row-major order here, so the last write wins.
    planes[rows, indices.reshape(planes.shape[0], -1)] = x.reshape(planes.shape[0], -1)


def max_unpool2d_backward(grad_output, indices, grad_input, n_threads):
    """grad_input[n,c,i,j] = grad_output[n,c].flat[indices[n,c,i,j]] (a gather).

    Each input element was copied to one output position, so its gradient is that
    position's gradient::

        for n, c, i, j:
            grad_input[n, c, i, j] = grad_output[n, c].flat[indices[n, c, i, j]]

    Parameters
    ----------
    grad_output : ndarray (N, C, OH, OW), float32 or float64    # IN
    indices : ndarray (N, C, H, W), int64, each in [0, OH*OW)    # IN
    grad_input : ndarray (N, C, H, W), grad_output's dtype       # OUT
    n_threads : int, ignored
    """
    NC = grad_input.shape[0] * grad_input.shape[1]
    _check_indices(indices, grad_output.shape[2] * grad_output.shape[3])
    flat = np.take_along_axis(grad_output.reshape(NC, -1), indices.reshape(NC, -1), axis=1)
    grad_input[...] = flat.reshape(grad_input.shape)
