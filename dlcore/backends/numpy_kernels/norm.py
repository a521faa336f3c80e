r"""Normalization kernels (batch norm, instance norm), NumPy twin of ``src/dlcore/norm.pyx``.

The input is ``x`` of shape ``(N, C, L)``: N samples, C channels, L values per plane
(``L = H * W``, or 1 for ``(N, C)`` input). Values that share one mean and variance form a
*group*: one plane ``(n, c)`` for instance norm, one channel ``c`` of every sample for
batch norm. Per-group arrays have shape ``(S, C)``: ``S = N`` means one value per plane,
``S = 1`` one value per channel (over all N planes); the kernels tell the two apart by
that first dimension. The kernels compute sums and apply affine maps;
:mod:`dlcore.functional.normalization` turns sums into statistics and statistics into the
coefficients. Sums accumulate in float64 whatever the input dtype.

* ``norm_moments``:  :math:`s_1 = \sum (x - k)`, :math:`s_2 = \sum (x - k)^2` over each group
  (``k`` a per-group shift: 0 for the mean, then the mean for the variance);
* ``norm_grad_sums``: :math:`t_1 = \sum g`, :math:`t_2 = \sum g (x - \mu)` over each group;
* ``norm_affine_forward``:  :math:`y = a x + b` with the group's ``a, b``;
* ``norm_affine_backward``: :math:`\delta = a g + b x + c` with the group's ``a, b, c``.

Same contract as every twin: arrays validated and allocated by the caller, C-contiguous,
``x``/``g``/outputs of one float dtype, ``a, b, c`` in that dtype, shifts, means and sums
in float64; ``n_threads`` is ignored here.
"""
import numpy as np

__all__ = ["norm_moments", "norm_grad_sums", "norm_affine_forward", "norm_affine_backward"]


def _group_axes(x, per_group):
    """Axes summed per group: L only (S = N, one group per plane), or N and L (S = 1)."""
    return (2,) if per_group.shape[0] == x.shape[0] else (0, 2)


def norm_moments(x, shift, sum1, sum2, n_threads):
    """sum1 = sum(x - shift), sum2 = sum((x - shift)**2) per group, in float64."""
    d = x - shift[:, :, None]  # float64, as the shift
    axes = _group_axes(x, shift)
    sum1[...] = d.sum(axis=axes)
    sum2[...] = np.square(d).sum(axis=axes)


def norm_grad_sums(g, x, mean, sum_g, sum_gx, n_threads):
    """sum_g = sum(g), sum_gx = sum(g * (x - mean)) per group, in float64."""
    g64 = g.astype(np.float64)
    axes = _group_axes(x, mean)
    sum_g[...] = g64.sum(axis=axes)
    sum_gx[...] = (g64 * (x - mean[:, :, None])).sum(axis=axes)


def norm_affine_forward(x, a, b, out, n_threads):
    """out = a * x + b, with a, b of shape (S, C) broadcast over the planes."""
    np.multiply(x, a[:, :, None], out=out)
    out += b[:, :, None]


def norm_affine_backward(g, x, a, b, c, grad_input, n_threads):
    """grad_input = a * g + b * x + c, with a, b, c of shape (S, C) broadcast over the planes."""
    np.multiply(g, a[:, :, None], out=grad_input)
    grad_input += b[:, :, None] * x
    grad_input += c[:, :, None]
