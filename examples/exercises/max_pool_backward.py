"""Exercise 2: the backward pass of 2-D max pooling.

In the forward pass every window's output is its largest input, and ``indices`` records
where that maximum was: ``indices[n, c, i, j]`` is the flat position ``h*W + w`` of the
winner within the H x W plane of image n, channel c.

Task: write ``max_pool2d_backward`` below. The derivative of a max is 1 for the element
that won and 0 for the others, so each output gradient ``grad_output[n, c, i, j]`` goes to
exactly one input position -- the one ``indices`` names -- and nowhere else. When windows
overlap (stride smaller than the kernel), one input can win several windows: its gradient
is then the SUM of theirs. Every position that won nothing gets 0.

Arguments (see dlcore/backends/numpy_kernels/pool.py for the contract)
    grad_output  (N, C, OH, OW), float32 or float64
    indices      (N, C, OH, OW), int64, each in [0, H*W)
    grad_input   (N, C, H, W), OUT: overwrite every element (it arrives uninitialised)
    n_threads    ignore it

Hints: start with loops over n, c, i, j and ``divmod(index, W)``; then try a vectorized
version. Beware ``a[idx] += v`` with repeated ``idx``: NumPy applies only one of the
repeated additions (``np.add.at`` applies them all).

Check::

    python -m dlcore verify --load examples/exercises/max_pool_backward.py
"""
import numpy as np


def max_pool2d_backward(grad_output, indices, grad_input, n_threads):
    # YOUR CODE HERE
    raise NotImplementedError("exercise 2: max_pool2d_backward is not written yet -- "
                              "see the docstring of examples/exercises/max_pool_backward.py")


KERNELS = {"max_pool2d_backward": max_pool2d_backward}
