"""Stateless ops with torch.nn.functional's names, arguments and results.

Each op validates its input once, then calls the active backend's kernels. Ops that
layers differentiate also come as a pair written for backpropagation, in CS231n's
``(out, cache)`` style::

    out, ctx = F.conv2d_forward(x, weight, bias, stride, padding)
    grad_x, grad_weight, grad_bias = F.conv2d_backward(grad_output, ctx)

``ctx`` holds what the backward needs (opaque to callers); ``F.conv2d(...)`` is
``F.conv2d_forward(...)[0]``.
"""
from .activation import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .resample import *  # noqa: F401,F403
