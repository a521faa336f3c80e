"""Compiled im2col / col2im, and the convolutions built on them.

The specification is the NumPy twin, ``dlcore/backends/numpy_kernels/conv.py``: same
names, same parameters, same results (bitwise: im2col only copies, and col2im adds a
pixel's contributions in the twin's (kh, kw) order).

Index glossary: ``n`` image, ``c`` channel, ``kh, kw`` offset inside the window, ``oh, ow``
output row and column, ``ih, iw`` input row and column, ``p`` flat (n, c) plane index.
Sizes: ``N, C, H, W`` input, ``KH, KW`` window, ``SH, SW`` stride, ``PH, PW`` padding,
``OH, OW`` output positions.

Parallelism: both kernels run one ``prange`` over the N*C image planes. im2col is a pure
gather, so any split would do; col2im *adds* overlapping windows into the image, and
splitting over planes is what keeps it race-free: plane (n, c) reads only the KH*KW
column rows of channel c of image n and writes only its own H x W pixels. No thread ever
touches another's output, so the result does not depend on the thread count.

Below ``_SERIAL_BELOW`` copied elements a kernel runs on one thread: waking a second
thread costs microseconds, more than a tiny plane loop, and on a loaded machine a
parallel region waits for a thread the OS has not scheduled yet. Each plane is computed
the same way whatever the thread count, so results stay bitwise identical.

The inner loops work row by row: for a fixed (kh, kw, oh) the window positions ``ow`` that
fall inside the image form one interval, computed once, so the hot loop is a strided
copy (im2col) or add (col2im) with no branch; the rest of the row is zero padding.

The convolutions themselves are im2col/col2im plus matrix products with NumPy's BLAS,
done by the twin module's GEMM drivers (one shared implementation, here called with the
compiled im2col/col2im) outside every parallel region, so BLAS threads and OpenMP threads
never run at the same time.
"""
from cython.parallel cimport prange
from libc.string cimport memcpy, memset

from dlcore._common cimport floating, intp_t

from dlcore.backends.numpy_kernels import conv as _twin

# About 10 microseconds of copying: smaller jobs are not worth a thread team.
cdef intp_t _SERIAL_BELOW = 1 << 15

__all__ = [
    "im2col",
    "col2im",
    "conv2d_forward",
    "conv2d_backward",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward",
]


cdef inline void _valid_range(intp_t k, intp_t pad, intp_t stride, intp_t size, intp_t n_out,
                              intp_t* lo, intp_t* hi) noexcept nogil:
    """Output positions o in [lo, hi) whose input index o*stride - pad + k lies in [0, size)."""
    cdef intp_t first = 0, last
    if k < pad:
        first = (pad - k + stride - 1) // stride
    if size - 1 + pad - k < 0:
        last = 0
    else:
        last = (size - 1 + pad - k) // stride + 1
    if last > n_out:
        last = n_out
    if first > last:
        first = last
    lo[0] = first
    hi[0] = last


cdef void _im2col_plane(const floating* src, floating* dst, intp_t row_stride,
                        intp_t H, intp_t W, intp_t KH, intp_t KW, intp_t SH, intp_t SW,
                        intp_t PH, intp_t PW, intp_t OH, intp_t OW) noexcept nogil:
    """Fill the KH*KW column rows of one (n, c) plane; row (kh, kw) starts at dst + (kh*KW + kw)*row_stride."""
    cdef intp_t kh, kw, oh, ow, oh_lo, oh_hi, ow_lo, ow_hi
    cdef floating* row
    cdef const floating* s
    for kh in range(KH):
        _valid_range(kh, PH, SH, H, OH, &oh_lo, &oh_hi)
        for kw in range(KW):
            _valid_range(kw, PW, SW, W, OW, &ow_lo, &ow_hi)
            row = dst + (kh * KW + kw) * row_stride
            if oh_lo > 0:
                memset(row, 0, oh_lo * OW * sizeof(floating))
            for oh in range(oh_lo, oh_hi):
                if ow_lo > 0:
                    memset(row + oh * OW, 0, ow_lo * sizeof(floating))
                s = src + (oh * SH - PH + kh) * W + (ow_lo * SW - PW + kw)
                if SW == 1:
                    for ow in range(ow_lo, ow_hi):
                        row[oh * OW + ow] = s[ow - ow_lo]
                else:
                    for ow in range(ow_lo, ow_hi):
                        row[oh * OW + ow] = s[(ow - ow_lo) * SW]
                if ow_hi < OW:
                    memset(row + oh * OW + ow_hi, 0, (OW - ow_hi) * sizeof(floating))
            if oh_hi < OH:
                memset(row + oh_hi * OW, 0, (OH - oh_hi) * OW * sizeof(floating))


cdef void _col2im_plane(const floating* src, floating* dst, intp_t row_stride,
                        intp_t H, intp_t W, intp_t KH, intp_t KW, intp_t SH, intp_t SW,
                        intp_t PH, intp_t PW, intp_t OH, intp_t OW) noexcept nogil:
    """Overwrite one H x W plane with the sum of its KH*KW column rows (row (kh, kw) at src + (kh*KW + kw)*row_stride)."""
    cdef intp_t kh, kw, oh, ow, oh_lo, oh_hi, ow_lo, ow_hi, n_ow
    cdef const floating* s
    cdef floating* d
    memset(dst, 0, H * W * sizeof(floating))
    for kh in range(KH):
        _valid_range(kh, PH, SH, H, OH, &oh_lo, &oh_hi)
        for kw in range(KW):
            _valid_range(kw, PW, SW, W, OW, &ow_lo, &ow_hi)
            n_ow = ow_hi - ow_lo
            for oh in range(oh_lo, oh_hi):
                s = src + (kh * KW + kw) * row_stride + oh * OW + ow_lo
                d = dst + (oh * SH - PH + kh) * W + (ow_lo * SW - PW + kw)
                if SW == 1:
                    for ow in range(n_ow):
                        d[ow] += s[ow]
                else:
                    for ow in range(n_ow):
                        d[ow * SW] += s[ow]


cdef _check_cols(tuple x_shape, tuple cols_shape, intp_t cols_step, intp_t KH, intp_t KW, intp_t SH, intp_t SW,
                 intp_t PH, intp_t PW):
    """The bounds the loops rely on (they run unchecked); O(1), before any loop."""
    N, C, H, W = x_shape
    if min(KH, KW, SH, SW) < 1 or min(PH, PW) < 0 or H + 2 * PH < KH or W + 2 * PW < KW:
        raise ValueError(f"bad window for an image of shape {x_shape}: kernel {(KH, KW)}, "
                         f"stride {(SH, SW)}, padding {(PH, PW)}")
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    want = (N, C * KH * KW, OH * OW)
    if cols_shape != want:
        raise ValueError(f"cols must have shape {want} for x of shape {x_shape}, got {cols_shape}")
    if cols_step != 1 and OH * OW > 1:
        raise ValueError("cols must be contiguous along its last axis")
    return OH, OW


def im2col(const floating[:, :, :, ::1] x,   # IN  (N, C, H, W)
           floating[:, :, :] cols,            # OUT (N, C*KH*KW, OH*OW), last axis contiguous
           intp_t kernel_h, intp_t kernel_w, intp_t stride_h, intp_t stride_w,
           intp_t pad_h, intp_t pad_w, int n_threads):
    """Unfold every window of ``x`` into a column of ``cols`` (torch's ``F.unfold`` layout).

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), dtype float32 or float64, C-contiguous (IN)
    cols : ndarray of shape (N, C*KH*KW, OH*OW), same dtype; the last axis contiguous,
        the other two any strides (OUT, every entry overwritten)
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w : int
    n_threads : int
        OpenMP threads for the loop over the N*C planes.

    Same contract as the NumPy twin. The caller validates and allocates.
    """
    cdef intp_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef intp_t OH, OW, p, n, c
    cdef intp_t KK = kernel_h * kernel_w
    OH, OW = _check_cols((N, C, H, W), (cols.shape[0], cols.shape[1], cols.shape[2]),
                         cols.strides[2] // <intp_t> sizeof(floating), kernel_h, kernel_w,
                         stride_h, stride_w, pad_h, pad_w)
    cdef intp_t row_stride = cols.strides[1] // <intp_t> sizeof(floating)
    if N * C * OH * OW == 0:
        return
    if N * C * KK * OH * OW < _SERIAL_BELOW:
        n_threads = 1
    with nogil:
        for p in prange(N * C, schedule='static', num_threads=n_threads):
            n = p // C
            c = p - n * C
            _im2col_plane(&x[n, c, 0, 0], &cols[n, c * KK, 0], row_stride, H, W,
                          kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, OH, OW)


def col2im(const floating[:, :, :] cols,       # IN  (N, C*KH*KW, OH*OW), last axis contiguous
           floating[:, :, :, ::1] x,           # OUT (N, C, H, W)
           intp_t kernel_h, intp_t kernel_w, intp_t stride_h, intp_t stride_w,
           intp_t pad_h, intp_t pad_w, int n_threads):
    """Fold columns back into images, summing overlapping windows (torch's ``F.fold``).

    Parameters
    ----------
    cols : ndarray of shape (N, C*KH*KW, OH*OW), dtype float32 or float64; the last axis
        contiguous, the other two any strides (IN)
    x : ndarray of shape (N, C, H, W), same dtype, C-contiguous (OUT, every entry
        overwritten)
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w : int
    n_threads : int
        OpenMP threads for the loop over the N*C planes (the race-free axis).

    Same contract as the NumPy twin. The caller validates and allocates.
    """
    cdef intp_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef intp_t OH, OW, p, n, c
    cdef intp_t KK = kernel_h * kernel_w
    OH, OW = _check_cols((N, C, H, W), (cols.shape[0], cols.shape[1], cols.shape[2]),
                         cols.strides[2] // <intp_t> sizeof(floating), kernel_h, kernel_w,
                         stride_h, stride_w, pad_h, pad_w)
    cdef intp_t row_stride = cols.strides[1] // <intp_t> sizeof(floating)
    if N * C * H * W == 0:
        return
    if N * C * KK * OH * OW < _SERIAL_BELOW:
        n_threads = 1
    with nogil:
        for p in prange(N * C, schedule='static', num_threads=n_threads):
            n = p // C
            c = p - n * C
            _col2im_plane(&cols[n, c * KK, 0], &x[n, c, 0, 0], row_stride, H, W,
                          kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, OH, OW)


def conv2d_forward(x, weight, bias, out, cols, stride_h, stride_w, pad_h, pad_w, n_threads):
    """``out[n] = W2 @ im2col(x)[n] + bias``; compiled im2col, one BLAS GEMM per batch chunk.

    x (N, C, H, W) IN; weight (F, C, KH, KW) IN; bias (F,) IN or None; out (N, F, OH, OW)
    OUT; cols None or (C*KH*KW, N*OH*OW) OUT, the columns kept for the backward pass.
    Same contract as the NumPy twin.
    """
    _twin.gemm_conv2d_forward(im2col, x, weight, bias, out, cols, stride_h, stride_w, pad_h, pad_w, n_threads)


def conv2d_backward(x, weight, grad_output, cols, grad_input, grad_weight, grad_bias,
                    stride_h, stride_w, pad_h, pad_w, n_threads):
    """Gradients of conv2d_forward into grad_input, grad_weight, grad_bias (or None), all OUT;
    cols: the forward's kept columns (IN) or None to recompute them.

    Same contract as the NumPy twin.
    """
    _twin.gemm_conv2d_backward(im2col, col2im, x, weight, grad_output, cols, grad_input, grad_weight,
                               grad_bias, stride_h, stride_w, pad_h, pad_w, n_threads)


def conv_transpose2d_forward(x, weight, bias, out, stride_h, stride_w, pad_h, pad_w, n_threads):
    """``out = col2im(W2.T @ x[n]) + bias``; weight (C_in, C_out, KH, KW). Same contract as the twin."""
    _twin.gemm_conv_transpose2d_forward(col2im, x, weight, bias, out, stride_h, stride_w, pad_h, pad_w,
                                        n_threads)


def conv_transpose2d_backward(x, weight, grad_output, grad_input, grad_weight, grad_bias,
                              stride_h, stride_w, pad_h, pad_w, n_threads):
    """Gradients of conv_transpose2d_forward (all OUT). Same contract as the NumPy twin."""
    _twin.gemm_conv_transpose2d_backward(im2col, x, weight, grad_output, grad_input, grad_weight, grad_bias,
                                         stride_h, stride_w, pad_h, pad_w, n_threads)
