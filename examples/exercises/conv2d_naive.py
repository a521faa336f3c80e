"""Exercise 1: a 2-D convolution forward pass with plain loops (CS231n's "naive" version).

Task: write ``conv2d_forward`` below so that it computes, for every image n, output
channel f and output position (i, j)::

    out[n, f, i, j] = bias[f] + sum over c, kh, kw of
                      weight[f, c, kh, kw] * xpad[n, c, i*stride_h + kh, j*stride_w + kw]

where ``xpad`` is ``x`` with ``pad_h`` rows of zeros above and below and ``pad_w`` columns
of zeros left and right (``np.pad``). Loop over n, f, i and j; the sum over a window can
be one ``np.sum`` of a product. Write the result into ``out`` (``out[...] = ...`` or item
by item) -- do not rebind ``out``, the caller reads the array it passed.

Arguments (the contract of every dlcore kernel: see dlcore/backends/numpy_kernels/conv.py)
    x        (N, C, H, W) input, float32 or float64
    weight   (F, C, KH, KW)
    bias     (F,) or None (no bias: add nothing)
    out      (N, F, OH, OW), with OH = (H + 2*pad_h - KH) // stride_h + 1 (OW alike)
    cols     scratch kept for the backward pass; filled for you by ``keep_columns`` below
    stride_h, stride_w, pad_h, pad_w: ints;  n_threads: ignore it

Check your work (it prints a table and says what is wrong)::

    python -m dlcore verify --load examples/exercises/conv2d_naive.py

then train with it: ``dlcore.backends.register_backend("mine", KERNELS)``,
``dlcore.set_backend("mine")``, and any model with a Conv2d runs your loops. Then
compare ``ms/call`` with the compiled kernel's: that gap is what im2col + GEMM buys.
"""
import numpy as np

from dlcore import functional as F


def keep_columns(x, cols, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w):
    """Given: the backward pass reuses the im2col columns the forward pass leaves in ``cols``
    (a (C*KH*KW, N*OH*OW) array, or None when the caller did not ask for them)."""
    if cols is not None:
        unfolded = F.unfold(x, (kernel_h, kernel_w), (stride_h, stride_w), (pad_h, pad_w))  # (N, K, L)
        cols[...] = unfolded.transpose(1, 0, 2).reshape(cols.shape)


def conv2d_forward(x, weight, bias, out, cols, stride_h, stride_w, pad_h, pad_w, n_threads):
    keep_columns(x, cols, weight.shape[2], weight.shape[3], stride_h, stride_w, pad_h, pad_w)
    # YOUR CODE HERE: fill out[n, f, i, j] with four loops (see the module docstring).
    raise NotImplementedError("exercise 1: conv2d_forward is not written yet -- "
                              "see the docstring of examples/exercises/conv2d_naive.py")


# What `dlcore verify --load` registers (as a backend named after this file).
KERNELS = {"conv2d_forward": conv2d_forward}
