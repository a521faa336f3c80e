"""NumPy twins of ``src/dlcore/conv.pyx``: im2col / col2im and convolution as one GEMM.

Notation (CS231n's letters, PyTorch's layout): input ``x`` of shape (N, C, H, W), weight
(F, C, KH, KW), stride (SH, SW), zero padding (PH, PW), output (N, F, OH, OW) with

    OH = floor((H + 2*PH - KH) / SH) + 1,     OW = floor((W + 2*PW - KW) / SW) + 1,

L = OH*OW output positions and K = C*KH*KW numbers in one receptive field.

* ``im2col`` copies every receptive field into a column: ``cols[n, (c, kh, kw), (oh, ow)]
  = xpad[n, c, oh*SH + kh, ow*SW + kw]`` -- torch's ``F.unfold`` layout (N, K, L).
* ``col2im`` is its adjoint (torch's ``F.fold``): each column entry is *added* back to the
  pixel it was copied from, so overlapping windows sum.
* A convolution is then a matrix product per image, ``out[n] = W2 @ cols[n]`` with
  ``W2 = weight.reshape(F, K)``, and its gradients are products too (see the kernels).

The two kernels accept any ``cols`` array whose last axis is contiguous, not only a
C-contiguous one: the GEMM drivers at the bottom of this file (shared with the compiled
backend) pass a *transposed view* of a (K, n*L) buffer, so that a chunk of n images becomes
one big matrix product ``W2 (F, K) @ cols (K, n*L)`` instead of n small ones.
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

# Hard cap on the scratch memory one convolution call allocates (column buffer plus a
# transposed copy of the output or gradient). The batch is processed in chunks of images
# that fit; a single image is never split, so one image larger than the cap still runs.
WORKSPACE_BYTES = 512 * 2**20
# Chunks are usually much smaller than the cap: with a few MiB of columns, im2col writes
# into the cache and the GEMM reads them back from it. Measured on a shared 2-core Haswell
# VM (float32 x 32x64x32x32, 3x3 kernel, one thread, CPU time): forward+backward 129-138 ms
# with 4 MiB chunks, 145 ms with 16 MiB, 168-184 ms with the whole batch as one chunk.
CHUNK_BYTES = 4 * 2**20


def _windows(cols, x_shape, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w):
    """``cols`` (N, C*KH*KW, OH*OW) as a 6-D view (N, C, KH, KW, OH, OW) and the slice
    of the padded image that window offset (kh, kw) reads, for every (kh, kw)."""
    N, C, H, W = x_shape
    OH = (H + 2 * pad_h - kernel_h) // stride_h + 1
    OW = (W + 2 * pad_w - kernel_w) // stride_w + 1
    # copy=False: splitting axes never copies, and the writes must reach the caller's buffer.
    cols6 = np.reshape(cols, (N, C, kernel_h, kernel_w, OH, OW), copy=False)
    for kh in range(kernel_h):
        for kw in range(kernel_w):
            rows = slice(kh, kh + stride_h * (OH - 1) + 1, stride_h)
            columns = slice(kw, kw + stride_w * (OW - 1) + 1, stride_w)
            yield cols6[:, :, kh, kw], (slice(None), slice(None), rows, columns)


def im2col(x, cols, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, n_threads):
    """Unfold every KH x KW window of ``x`` into a column (torch's ``F.unfold``).

    ``cols[n, c*KH*KW + kh*KW + kw, oh*OW + ow] = xpad[n, c, oh*SH + kh, ow*SW + kw]``
    where ``xpad`` is ``x`` with PH zero rows and PW zero columns on each side::

        for kh in range(KH):
            for kw in range(KW):            # one strided slice per window offset
                cols[:, (:, kh, kw), :] = xpad[:, :, kh : kh+SH*OH : SH, kw : kw+SW*OW : SW]

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64 (IN)
    cols : ndarray of shape (N, C*KH*KW, OH*OW), same dtype, last axis contiguous (OUT,
        every entry overwritten)
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w : int
        Window size (>= 1), step (>= 1) and zero padding (>= 0), validated by the caller.
    n_threads : int
        Ignored (the compiled kernel's thread count).
    """
    xpad = np.pad(x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)))
    for col, window in _windows(cols, x.shape, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w):
        col[...] = xpad[window]


def col2im(cols, x, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, n_threads):
    """Fold columns back into an image, summing overlaps (torch's ``F.fold``).

    The adjoint of :func:`im2col`: ``<im2col(x), cols> == <x, col2im(cols)>``. Each pixel
    receives the sum of every column entry that was copied from it; padding is dropped::

        xpad = zeros(N, C, H + 2*PH, W + 2*PW)
        for kh in range(KH):
            for kw in range(KW):            # the same slices as im2col, '=' becomes '+='
                xpad[:, :, kh : kh+SH*OH : SH, kw : kw+SW*OW : SW] += cols[:, (:, kh, kw), :]
        x = xpad[:, :, PH : PH+H, PW : PW+W]

    Pixels add their contributions in (kh, kw) order, the compiled kernel's order too.

    Parameters
    ----------
    cols : ndarray of shape (N, C*KH*KW, OH*OW), float32 or float64, last axis
        contiguous (IN)
    x : ndarray of shape (N, C, H, W), same dtype (OUT, every entry overwritten)
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w : int
        As for :func:`im2col`.
    n_threads : int
        Ignored.
    """
    N, C, H, W = x.shape
    xpad = np.zeros((N, C, H + 2 * pad_h, W + 2 * pad_w), dtype=x.dtype)
    for col, window in _windows(cols, x.shape, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w):
        xpad[window] += col
    x[...] = xpad[:, :, pad_h:pad_h + H, pad_w:pad_w + W]


def conv2d_forward(x, weight, bias, out, cols, stride_h, stride_w, pad_h, pad_w, n_threads):
    """``out[n] = W2 @ im2col(x)[n] + bias`` with ``W2 = weight.reshape(F, C*KH*KW)``.

    Parameters: x (N, C, H, W) IN; weight (F, C, KH, KW) IN; bias (F,) IN or None;
    out (N, F, OH, OW) OUT; cols None, or a C-contiguous (C*KH*KW, N*OH*OW) OUT that keeps
    the columns for the backward pass (image n in columns n*L .. (n+1)*L); the rest as
    for :func:`im2col`. See :func:`gemm_conv2d_forward`.
    """
    gemm_conv2d_forward(im2col, x, weight, bias, out, cols, stride_h, stride_w, pad_h, pad_w, n_threads)


def conv2d_backward(x, weight, grad_output, cols, grad_input, grad_weight, grad_bias,
                    stride_h, stride_w, pad_h, pad_w, n_threads):
    """Gradients of :func:`conv2d_forward` given ``grad_output`` = dL/dout::

        grad_weight = sum_n  grad_output[n] (F, L) @ im2col(x)[n].T (L, K)
        grad_input  = col2im(W2.T (K, F) @ grad_output[n] (F, L))
        grad_bias   = grad_output summed over n, oh, ow

    cols is the forward's kept columns (IN) or None (then im2col runs again).
    grad_input (N, C, H, W), grad_weight (F, C, KH, KW) and grad_bias (F,) or None are
    OUT (overwritten). See :func:`gemm_conv2d_backward`.
    """
    gemm_conv2d_backward(im2col, col2im, x, weight, grad_output, cols, grad_input, grad_weight, grad_bias,
                         stride_h, stride_w, pad_h, pad_w, n_threads)


def conv_transpose2d_forward(x, weight, bias, out, stride_h, stride_w, pad_h, pad_w, n_threads):
    """Transposed convolution: conv2d's input gradient with ``x`` as the upstream gradient.

    ``out = col2im(W2.T @ x[n]) + bias`` with ``W2 = weight.reshape(C_in, C_out*KH*KW)``;
    x (N, C_in, H, W) IN, weight (C_in, C_out, KH, KW) IN, bias (C_out,) or None IN,
    out (N, C_out, HO, WO) OUT, ``HO = (H-1)*SH - 2*PH + KH + output_padding``.
    """
    gemm_conv_transpose2d_forward(col2im, x, weight, bias, out, stride_h, stride_w, pad_h, pad_w, n_threads)


def conv_transpose2d_backward(x, weight, grad_output, grad_input, grad_weight, grad_bias,
                              stride_h, stride_w, pad_h, pad_w, n_threads):
    """Gradients of :func:`conv_transpose2d_forward` (it is linear, so: its adjoints)::

        grad_input  = W2 (C_in, K) @ im2col(grad_output)[n] (K, H*W)   -- a conv2d forward
        grad_weight = sum_n  x[n] (C_in, H*W) @ im2col(grad_output)[n].T
        grad_bias   = grad_output summed over n, h, w
    """
    gemm_conv_transpose2d_backward(im2col, x, weight, grad_output, grad_input, grad_weight, grad_bias,
                                   stride_h, stride_w, pad_h, pad_w, n_threads)


# ---- GEMM drivers, shared with the compiled backend ----------------------------------
# Each takes the backend's im2col and/or col2im and does the matrix products with NumPy's
# BLAS, outside any parallel region. Columns live in a (K, n*L) buffer -- image after image
# along the second axis -- handed to im2col/col2im as the (n, K, L) view ``cols3`` below,
# so one GEMM covers a whole chunk of the batch.

# Threads for the im2col/col2im calls *between* GEMMs. GNU OpenMP's workers spin for a
# while after each parallel region (unless OMP_WAIT_POLICY=PASSIVE), right when OpenBLAS
# starts its own threads for the next GEMM: the two pools then fight for the cores.
# Measured on a 2-core VM: conv2d forward+backward (32x64x32x32, 3x3) ~800 ms with
# 2 OpenMP threads and spinning workers, ~100 ms with 1 thread or passive workers. So
# the copies run on one thread unless the workers are known to sleep; results are
# bitwise the same either way. (Standalone im2col/col2im, with no GEMM, always honour
# n_threads.)
def _copy_threads(n_threads):
    from .. import OPENMP_WORKERS_SLEEP  # dlcore sets PASSIVE unless the user chose otherwise

    return n_threads if OPENMP_WORKERS_SLEEP else 1


def _chunk(N, elems_per_image, dtype):
    """Images per chunk: scratch within CHUNK_BYTES (and WORKSPACE_BYTES), at least one image."""
    per_image = max(1, elems_per_image * np.dtype(dtype).itemsize)
    most = max(1, min(N, min(CHUNK_BYTES, WORKSPACE_BYTES) // per_image))
    return int(-(-N // -(-N // most))) if N else 1  # equal chunks: 64 images as 32 + 32, not 63 + 1


def _as_nkl(buf, K, n, L):
    """The first K*n*L entries of ``buf`` as a (K, n*L) matrix and its (n, K, L) view."""
    mat = buf[:K * n * L].reshape(K, n * L)
    return mat, mat.reshape(K, n, L).transpose(1, 0, 2)


def _sum_channels(a3, out):
    """``out[f] = sum over n, l of a3[n, f, l]``, accumulated in float64."""
    out[...] = a3.sum(axis=(0, 2), dtype=np.float64)


def _kept(cols, K, n0, n, L):
    """Images n0 .. n0+n of kept (K, N*L) columns as a (K, n*L) matrix and its (n, K, L) view."""
    mat = cols[:, n0 * L:(n0 + n) * L]
    return mat, np.reshape(mat, (K, n, L), copy=False).transpose(1, 0, 2)


def gemm_conv2d_forward(im2col, x, weight, bias, out, cols, stride_h, stride_w, pad_h, pad_w, n_threads):
    """conv2d forward for a chunk of images at a time: ``out = W2 @ cols + bias``."""
    nt = _copy_threads(n_threads)
    N, C, H, W = x.shape
    F, _, KH, KW = weight.shape
    K, L = C * KH * KW, out.shape[2] * out.shape[3]
    w2, out3 = weight.reshape(F, K), out.reshape(N, F, L)
    nb = _chunk(N, (K + F) * L, x.dtype)
    cols_buf = np.empty(K * nb * L, x.dtype) if cols is None else None
    res_buf = np.empty(F * nb * L, x.dtype)
    for n0 in range(0, N, nb):
        n = min(nb, N - n0)
        c, c3 = _as_nkl(cols_buf, K, n, L) if cols is None else _kept(cols, K, n0, n, L)
        im2col(x[n0:n0 + n], c3, KH, KW, stride_h, stride_w, pad_h, pad_w, nt)
        res, res3 = _as_nkl(res_buf, F, n, L)
        np.matmul(w2, c, out=res)
        if bias is None:
            out3[n0:n0 + n] = res3
        else:
            np.add(res3, bias[:, None], out=out3[n0:n0 + n])


def gemm_conv2d_backward(im2col, col2im, x, weight, grad_output, cols, grad_input, grad_weight, grad_bias,
                         stride_h, stride_w, pad_h, pad_w, n_threads):
    """conv2d backward, chunk by chunk: grad_weight += g @ cols.T, then col2im(W2.T @ g)."""
    nt = _copy_threads(n_threads)
    N, C, H, W = x.shape
    F, _, KH, KW = weight.shape
    K, L = C * KH * KW, grad_output.shape[2] * grad_output.shape[3]
    w2, g3, gw2 = weight.reshape(F, K), grad_output.reshape(N, F, L), grad_weight.reshape(F, K)
    if grad_bias is not None:
        _sum_channels(g3, grad_bias)
    gw2[...] = 0
    nb = _chunk(N, (K + F) * L, x.dtype)
    cols_buf, g_buf = np.empty(K * nb * L, x.dtype), np.empty(F * nb * L, x.dtype)
    for n0 in range(0, N, nb):
        n = min(nb, N - n0)
        buf, buf3 = _as_nkl(cols_buf, K, n, L)
        if cols is None:
            c = buf
            im2col(x[n0:n0 + n], buf3, KH, KW, stride_h, stride_w, pad_h, pad_w, nt)
        else:
            c = _kept(cols, K, n0, n, L)[0]
        g, g3_view = _as_nkl(g_buf, F, n, L)
        g3_view[...] = g3[n0:n0 + n]
        gw2 += g @ c.T
        np.matmul(w2.T, g, out=buf)  # the columns are spent: buf now holds their gradients
        col2im(buf3, grad_input[n0:n0 + n], KH, KW, stride_h, stride_w, pad_h, pad_w, nt)


def gemm_conv_transpose2d_forward(col2im, x, weight, bias, out, stride_h, stride_w, pad_h, pad_w, n_threads):
    """conv_transpose2d forward, chunk by chunk: cols = W2.T @ x, out = col2im(cols) + bias."""
    nt = _copy_threads(n_threads)
    N, C_in, H, W = x.shape
    _, C_out, KH, KW = weight.shape
    K, L = C_out * KH * KW, H * W
    w2, x3 = weight.reshape(C_in, K), x.reshape(N, C_in, L)
    nb = _chunk(N, (K + C_in) * L, x.dtype)
    cols_buf, xt_buf = np.empty(K * nb * L, x.dtype), np.empty(C_in * nb * L, x.dtype)
    for n0 in range(0, N, nb):
        n = min(nb, N - n0)
        xt, xt3 = _as_nkl(xt_buf, C_in, n, L)
        xt3[...] = x3[n0:n0 + n]
        cols, cols3 = _as_nkl(cols_buf, K, n, L)
        np.matmul(w2.T, xt, out=cols)
        col2im(cols3, out[n0:n0 + n], KH, KW, stride_h, stride_w, pad_h, pad_w, nt)
    if bias is not None:
        out += bias[:, None, None]


def gemm_conv_transpose2d_backward(im2col, x, weight, grad_output, grad_input, grad_weight, grad_bias,
                                   stride_h, stride_w, pad_h, pad_w, n_threads):
    """conv_transpose2d backward, chunk by chunk: cols = im2col(g), grad_weight += x @ cols.T,
    grad_input = W2 @ cols."""
    nt = _copy_threads(n_threads)
    N, C_in, H, W = x.shape
    _, C_out, KH, KW = weight.shape
    K, L = C_out * KH * KW, H * W
    w2, x3, gw2 = weight.reshape(C_in, K), x.reshape(N, C_in, L), grad_weight.reshape(C_in, K)
    gi3 = grad_input.reshape(N, C_in, L)
    if grad_bias is not None:
        # (an explicit size: reshape's -1 cannot be inferred when N = 0)
        _sum_channels(grad_output.reshape(N, C_out, grad_output.shape[2] * grad_output.shape[3]), grad_bias)
    gw2[...] = 0
    nb = _chunk(N, (K + C_in) * L, x.dtype)
    cols_buf, xt_buf = np.empty(K * nb * L, x.dtype), np.empty(C_in * nb * L, x.dtype)
    for n0 in range(0, N, nb):
        n = min(nb, N - n0)
        cols, cols3 = _as_nkl(cols_buf, K, n, L)
        im2col(grad_output[n0:n0 + n], cols3, KH, KW, stride_h, stride_w, pad_h, pad_w, nt)
        xt, xt3 = _as_nkl(xt_buf, C_in, n, L)
        xt3[...] = x3[n0:n0 + n]
        gw2 += xt @ cols.T
        np.matmul(w2, cols, out=xt)  # x's copy is spent: reuse it for grad_input
        gi3[n0:n0 + n] = xt3
