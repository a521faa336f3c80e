"""NumPy twins of ``src/dlcore/conv.pyx``: im2col / col2im, and convolution as matrix products.

This file is the specification of the compiled kernels: plain, unchunked, one line of
NumPy per line of math. Notation (CS231n's letters, PyTorch's layout): input ``x`` of
shape (N, C, H, W), weight (F, C/G, KH, KW) with G groups, stride (SH, SW), zero padding
(PH, PW), dilation (DH, DW), output (N, F, OH, OW) with

    OH = floor((H + 2*PH - DH*(KH - 1) - 1) / SH) + 1      (OW likewise),

L = OH*OW output positions and K = C*KH*KW numbers in one receptive field (Kg = K/G of
them in one group's).

* ``im2col`` copies every receptive field into a column: ``cols[n, (c, kh, kw), (oh, ow)]
  = xpad[n, c, oh*SH + kh*DH, ow*SW + kw*DW]`` -- torch's ``F.unfold`` layout (N, K, L).
* ``col2im`` is its adjoint (torch's ``F.fold``): each column entry is *added* back to the
  pixel it was copied from, so overlapping windows sum.
* A convolution is then one matrix product per image and group,
  ``out[n, g] = W2[g] @ cols[n, g]`` with ``W2 = weight.reshape(G, F/G, Kg)``, and its
  gradients are products too (see the kernels).

The compiled kernels compute the same products tile by tile, for speed; these twins hold
whole-batch arrays (the column matrix of a batch: N*K*L numbers), for clarity.
"""

import numpy as np

__all__ = [
    "im2col",
    "col2im",
    "conv2d_forward",
    "conv2d_backward",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward",
]


def _out_size(size, kernel, stride, pad, dilation):
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def _windows(kernel_h, kernel_w, OH, OW, stride_h, stride_w, dilation_h, dilation_w):
    """For every window offset (kh, kw), the slice of the padded image it reads: OH rows SH
    apart starting at kh*DH, and OW columns SW apart starting at kw*DW."""
    for kh in range(kernel_h):
        for kw in range(kernel_w):
            rows = slice(kh * dilation_h, kh * dilation_h + stride_h * (OH - 1) + 1, stride_h)
            columns = slice(kw * dilation_w, kw * dilation_w + stride_w * (OW - 1) + 1, stride_w)
            yield kh, kw, (slice(None), slice(None), rows, columns)


def _unfold_into(x, cols6, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w):
    """im2col into cols6 of shape (N, C, KH, KW, OH, OW): OH x OW window positions."""
    _, _, KH, KW, OH, OW = cols6.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)))
    for kh, kw, window in _windows(KH, KW, OH, OW, stride_h, stride_w, dilation_h, dilation_w):
        cols6[:, :, kh, kw] = xpad[window]


def _fold_into(cols6, x, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w):
    """col2im of cols6 (N, C, KH, KW, OH, OW) into x (N, C, H, W), overwritten."""
    N, C, H, W = x.shape
    _, _, KH, KW, OH, OW = cols6.shape
    xpad = np.zeros((N, C, H + 2 * pad_h, W + 2 * pad_w), dtype=x.dtype)
    for kh, kw, window in _windows(KH, KW, OH, OW, stride_h, stride_w, dilation_h, dilation_w):
        xpad[window] += cols6[:, :, kh, kw]
    x[...] = xpad[:, :, pad_h:pad_h + H, pad_w:pad_w + W]


def im2col(x, cols, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
           n_threads):
    """Unfold every KH x KW window of ``x`` into a column (torch's ``F.unfold``).

    ``cols[n, c*KH*KW + kh*KW + kw, oh*OW + ow] = xpad[n, c, oh*SH + kh*DH, ow*SW + kw*DW]``
    where ``xpad`` is ``x`` with PH zero rows and PW zero columns on each side::

        for kh in range(KH):
            for kw in range(KW):            # one strided slice per window offset
                cols[:, (:, kh, kw), :] = xpad[:, :, kh*DH : kh*DH + SH*OH : SH, kw*DW : ... : SW]

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64 (IN)
    cols : ndarray of shape (N, C*KH*KW, OH*OW), same dtype, C-contiguous (OUT, every entry
        overwritten)
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w : int
        Window size (>= 1), step (>= 1), zero padding (>= 0) and spacing of the window's
        taps (>= 1), validated by the caller.
    n_threads : int
        Ignored (the compiled kernel's thread count).
    """
    N, C, H, W = x.shape
    OH = _out_size(H, kernel_h, stride_h, pad_h, dilation_h)
    OW = _out_size(W, kernel_w, stride_w, pad_w, dilation_w)
    # cols is C-contiguous, so the reshape is a view: the writes reach the caller's array
    cols6 = cols.reshape(N, C, kernel_h, kernel_w, OH, OW)
    _unfold_into(x, cols6, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w)


def col2im(cols, x, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
           n_threads):
    """Fold columns back into an image, summing overlaps (torch's ``F.fold``).

    The adjoint of :func:`im2col`: ``<im2col(x), cols> == <x, col2im(cols)>``. Each pixel
    receives the sum of every column entry that was copied from it; the padding is dropped::

        xpad = zeros(N, C, H + 2*PH, W + 2*PW)
        for kh in range(KH):
            for kw in range(KW):            # the same slices as im2col, '=' becomes '+='
                xpad[:, :, kh*DH : ... : SH, kw*DW : ... : SW] += cols[:, (:, kh, kw), :]
        x = xpad[:, :, PH : PH+H, PW : PW+W]

    Pixels add their contributions in (kh, kw) order, the compiled kernel's order too.

    Parameters
    ----------
    cols : ndarray of shape (N, C*KH*KW, OH*OW), float32 or float64 (IN)
    x : ndarray of shape (N, C, H, W), same dtype (OUT, every entry overwritten)
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w : int
        As for :func:`im2col`.
    n_threads : int
        Ignored.
    """
    N, C, H, W = x.shape
    OH = _out_size(H, kernel_h, stride_h, pad_h, dilation_h)
    OW = _out_size(W, kernel_w, stride_w, pad_w, dilation_w)
    cols6 = cols.reshape(N, C, kernel_h, kernel_w, OH, OW)
    _fold_into(cols6, x, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w)


def _unfold(x, kernel_h, kernel_w, positions, window, groups):
    """im2col of x with OH x OW = ``positions`` windows, as a fresh (N, G, Kg, OH*OW) array."""
    N, C = x.shape[:2]
    OH, OW = positions
    cols6 = np.empty((N, C, kernel_h, kernel_w, OH, OW), dtype=x.dtype)
    _unfold_into(x, cols6, *window)
    return cols6.reshape(N, groups, C // groups * kernel_h * kernel_w, OH * OW)


def _fold(cols_g, x, kernel_h, kernel_w, positions, window):
    """col2im of (N, G, Kg, OH*OW) columns, OH x OW = ``positions``, into x (overwritten)."""
    N, C = x.shape[:2]
    _fold_into(cols_g.reshape(N, C, kernel_h, kernel_w, *positions), x, *window)


def _weight_grad(a, cols_g):
    """``sum over n, l of a[n, g, i, l] * cols_g[n, g, k, l]`` -> (G, I, Kg): the batch's
    sum of ``a[n, g] @ cols_g[n, g].T``."""
    return np.stack([np.tensordot(a[:, g], cols_g[:, g], axes=([0, 2], [0, 2]))
                     for g in range(a.shape[1])])


def conv2d_forward(x, weight, bias, out, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
                   groups, n_threads):
    """``out[n, g] = W2[g] @ im2col(x)[n, g] + bias``, ``W2 = weight.reshape(G, F/G, Kg)``.

    Parameters: x (N, C, H, W) IN; weight (F, C/G, KH, KW) IN; bias (F,) IN or None;
    out (N, F, OH, OW) OUT; the window numbers as for :func:`im2col`; groups G >= 1
    dividing C and F (group g maps input channels g*C/G .. (g+1)*C/G - 1 to output
    channels g*F/G .. (g+1)*F/G - 1); n_threads ignored.
    """
    N, F, OH, OW = out.shape
    _, _, KH, KW = weight.shape
    window = (stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w)
    cols_g = _unfold(x, KH, KW, (OH, OW), window, groups)  # (N, G, Kg, L)
    w2 = weight.reshape(groups, F // groups, -1)           # (G, F/G, Kg)
    out[...] = np.matmul(w2, cols_g).reshape(N, F, OH, OW)
    if bias is not None:
        out += bias[:, None, None]


def conv2d_backward(x, weight, grad_output, grad_input, grad_weight, grad_bias,
                    stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups, n_threads):
    """Gradients of :func:`conv2d_forward` given ``grad_output`` = dL/dout, per group g::

        grad_weight[g] = sum_n  G[n, g] (F/G, L) @ im2col(x)[n, g].T (L, Kg)
        grad_input     = col2im(W2[g].T (Kg, F/G) @ G[n, g] (F/G, L))
        grad_bias      = grad_output summed over n, oh, ow (in float64)

    grad_input (N, C, H, W) or None (then not computed), grad_weight (F, C/G, KH, KW) and
    grad_bias (F,) or None are OUT (overwritten).
    """
    N, F, OH, OW = grad_output.shape
    _, _, KH, KW = weight.shape
    window = (stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w)
    g = grad_output.reshape(N, groups, F // groups, OH * OW)  # (N, G, F/G, L)
    cols_g = _unfold(x, KH, KW, (OH, OW), window, groups)  # (N, G, Kg, L)
    grad_weight[...] = _weight_grad(g, cols_g).reshape(grad_weight.shape)
    if grad_bias is not None:
        grad_bias[...] = grad_output.sum(axis=(0, 2, 3), dtype=np.float64)
    if grad_input is not None:
        w2 = weight.reshape(groups, F // groups, -1)
        _fold(np.matmul(w2.transpose(0, 2, 1), g), grad_input, KH, KW, (OH, OW), window)


def conv_transpose2d_forward(x, weight, bias, out, stride_h, stride_w, pad_h, pad_w,
                             dilation_h, dilation_w, groups, n_threads):
    """Transposed convolution: conv2d's input gradient with ``x`` as the upstream gradient.

    ``out = col2im(W2[g].T @ x[n, g]) + bias`` with ``W2 = weight.reshape(G, C_in/G, Kg)``,
    Kg = (C_out/G)*KH*KW; x (N, C_in, H, W) IN, weight (C_in, C_out/G, KH, KW) IN, bias
    (C_out,) or None IN, out (N, C_out, HO, WO) OUT: window (h, w) of the output image,
    swept with the given stride, padding and dilation, receives pixel (h, w) of x (with
    output_padding the output has rows/columns beyond the last window: bias only).
    """
    N, C_in, H, W = x.shape
    _, _, KH, KW = weight.shape
    window = (stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w)
    xg = x.reshape(N, groups, C_in // groups, H * W)      # (N, G, C_in/G, L)
    w2 = weight.reshape(groups, C_in // groups, -1)       # (G, C_in/G, Kg)
    _fold(np.matmul(w2.transpose(0, 2, 1), xg), out, KH, KW, (H, W), window)
    if bias is not None:
        out += bias[:, None, None]


def conv_transpose2d_backward(x, weight, grad_output, grad_input, grad_weight, grad_bias,
                              stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups,
                              n_threads):
    """Gradients of :func:`conv_transpose2d_forward` (it is linear, so: its adjoints), per group::

        grad_input     = W2[g] (C_in/G, Kg) @ im2col(G)[n, g] (Kg, H*W)   -- a conv2d forward
        grad_weight[g] = sum_n  x[n, g] (C_in/G, H*W) @ im2col(G)[n, g].T
        grad_bias      = grad_output summed over n, h, w (in float64)

    grad_input None: not computed.
    """
    N, C_in, H, W = x.shape
    _, _, KH, KW = weight.shape
    window = (stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w)
    xg = x.reshape(N, groups, C_in // groups, H * W)
    cols_g = _unfold(grad_output, KH, KW, (H, W), window, groups)  # (N, G, Kg, H*W)
    grad_weight[...] = _weight_grad(xg, cols_g).reshape(grad_weight.shape)
    if grad_bias is not None:
        grad_bias[...] = grad_output.sum(axis=(0, 2, 3), dtype=np.float64)
    if grad_input is not None:
        w2 = weight.reshape(groups, C_in // groups, -1)
        grad_input[...] = np.matmul(w2, cols_g).reshape(grad_input.shape)
