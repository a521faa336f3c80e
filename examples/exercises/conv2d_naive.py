"""Exercise 1: a 2-D convolution forward pass with plain loops (CS231n's "naive" version).

Task: write ``conv2d_forward`` below so that it computes, for every image n, output
channel f and output position (i, j)::

    out[n, f, i, j] = bias[f] + sum over c, kh, kw of
                      weight[f, c, kh, kw] * xpad[n, g*Cg + c, i*stride_h + kh*dilation_h,
                                                           j*stride_w + kw*dilation_w]

where ``xpad`` is ``x`` with ``pad_h`` rows of zeros above and below and ``pad_w`` columns
of zeros left and right (``np.pad``), ``Cg = C // groups`` input channels per group and
``g = f // (F // groups)`` the group of output channel f (with groups=1 and dilation 1,
the textbook formula). Loop over n, f, i and j; with ``top = i*stride_h`` the window is
one slice with a step, ``xpad[n, g*Cg:(g+1)*Cg, top:top + dilation_h*(KH-1) + 1:dilation_h, ...]``
(columns alike), and its sum one ``np.sum`` of its product with ``weight[f]``. Write the
result into ``out`` (``out[...] = ...`` or item by item) -- do not rebind ``out``, the
caller reads the array it passed.

Arguments (the contract of every dlcore kernel: see dlcore/backends/numpy_kernels/conv.py)
    x        (N, C, H, W) input, float32 or float64
    weight   (F, C // groups, KH, KW)
    bias     (F,) or None (no bias: add nothing)
    out      (N, F, OH, OW), OH = (H + 2*pad_h - dilation_h*(KH-1) - 1) // stride_h + 1 (OW alike)
    stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups: ints
    n_threads: ignore it

Check your work (it prints a table and says what is wrong)::

    python -m dlcore verify --load examples/exercises/conv2d_naive.py

then train with it: ``dlcore.backends.register_backend("mine", KERNELS)``,
``dlcore.set_backend("mine")``, and any model with a Conv2d runs your loops. Then
compare ``ms/call`` with the compiled kernel's: that gap is what im2col + GEMM buys.
"""
import numpy as np


def conv2d_forward(x, weight, bias, out, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
                   groups, n_threads):
    # YOUR CODE HERE: fill out[n, f, i, j] with four loops (see the module docstring).
    raise NotImplementedError("exercise 1: conv2d_forward is not written yet -- "
                              "see the docstring of examples/exercises/conv2d_naive.py")


# What `dlcore verify --load` registers (as a backend named after this file).
KERNELS = {"conv2d_forward": conv2d_forward}
