r"""Nearest-neighbour upsampling and channel concatenation: the two ops a U-Net adds to a CNN.

Both are pure data movement (no arithmetic worth a compiled kernel), so they are written
here in NumPy and are the same on every backend::

    out, ctx = F.upsample_nearest2d_forward(x, scale_factor=2)
    grad_x = F.upsample_nearest2d_backward(grad_output, ctx)

    out, ctx = F.cat_forward([a, b], dim=1)           # a U-Net skip: [upsampled, skip]
    grad_a, grad_b = F.cat_backward(grad_output, ctx)  # the gradient split back

Notation: :math:`δ` = ``grad_output`` (∂L/∂out). Inputs may be non-contiguous or read-only
and are never modified.
"""
import numbers

import numpy as np

from .._checks import as_floating, check_int, describe

__all__ = [
    "upsample_nearest2d_forward",
    "upsample_nearest2d_backward",
    "upsample_nearest2d",
    "interpolate",
    "cat_forward",
    "cat_backward",
    "cat",
]


class _ResampleCtx:
    __slots__ = ("op", "shape", "dtype", "args")

    def __init__(self, op, shape, dtype, args):
        self.op, self.shape, self.dtype, self.args = op, shape, dtype, args

    def __repr__(self):
        return f"<{self.op} ctx: output shape {self.shape}, {self.dtype}>"


def _grad(grad_output, ctx, op):
    if not isinstance(ctx, _ResampleCtx) or ctx.op != op:
        raise TypeError(f"ctx must be the context returned by {op}_forward, got {ctx!r}")
    g = as_floating(grad_output, "grad_output", ctx.dtype)
    if g.shape != ctx.shape:
        raise ValueError(f"grad_output must have the forward output's shape {ctx.shape}, got {g.shape}")
    return g


def _scale_pair(scale_factor):
    """An integer scale factor (or a pair of them) as ``(sh, sw)``, each >= 1."""
    if isinstance(scale_factor, (tuple, list)):
        if len(scale_factor) != 2:
            raise ValueError(f"scale_factor must be an int or a pair of ints, got {scale_factor!r}")
        items = scale_factor
    else:
        items = (scale_factor, scale_factor)
    out = []
    for s in items:
        if isinstance(s, numbers.Real) and not isinstance(s, (bool, numbers.Integral)) and float(s).is_integer():
            s = int(s)  # 2.0 is accepted as 2, as torch
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise TypeError(
                f"scale_factor must be a positive int (or a pair), got {describe(s)}; "
                "nearest upsampling here supports integer factors only"
            )
        out.append(check_int(s, "scale_factor", minimum=1))
    return tuple(out)


def upsample_nearest2d_forward(x, scale_factor=2):
    r"""Nearest-neighbour upsampling by integer factors: each pixel becomes an ``sh × sw`` block.

    Forward (torch's ``mode="nearest"`` with an integer ``scale_factor``):

    .. math:: y[n, c, i, j] = x[n, c, \lfloor i / s_h \rfloor, \lfloor j / s_w \rfloor]

    Backward: every input pixel was copied to ``sh·sw`` outputs, so its gradient is the
    sum over its block,

    .. math:: ∂L/∂x[n, c, p, q] = \sum_{a < s_h,\, b < s_w} δ[n, c, p s_h + a, q s_w + b].

    Args:
        x: ``(N, C, H, W)`` floating array.
        scale_factor (int or pair of ints): ``s`` or ``(s_h, s_w)``, each ``≥ 1``.

    Returns:
        ``(out, ctx)`` with ``out`` of shape ``(N, C, H·s_h, W·s_w)``.
    """
    x = as_floating(x, "x")
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D (N, C, H, W), got shape {x.shape}")
    sh, sw = _scale_pair(scale_factor)
    n, c, h, w = x.shape
    # broadcast each pixel over a (sh, sw) block, then merge the block axes into H and W
    out = np.broadcast_to(x[:, :, :, None, :, None], (n, c, h, sh, w, sw)).reshape(n, c, h * sh, w * sw)
    return out, _ResampleCtx("upsample_nearest2d", out.shape, out.dtype, (sh, sw))


def upsample_nearest2d_backward(grad_output, ctx):
    """``∂L/∂x``: ``grad_output`` summed over each ``s_h × s_w`` block (see the forward)."""
    g = _grad(grad_output, ctx, "upsample_nearest2d")
    sh, sw = ctx.args
    n, c, H, W = g.shape
    return g.reshape(n, c, H // sh, sh, W // sw, sw).sum(axis=(3, 5))


def upsample_nearest2d(x, scale_factor=2):
    """``upsample_nearest2d_forward(x, scale_factor)[0]``."""
    return upsample_nearest2d_forward(x, scale_factor)[0]


def interpolate(x, scale_factor, mode="nearest"):
    """torch's ``F.interpolate`` for the one case dlcore has: ``mode="nearest"``, integer factors."""
    if mode != "nearest":
        raise ValueError(f"mode must be 'nearest' (the only mode implemented), got {mode!r}")
    return upsample_nearest2d(x, scale_factor)


def cat_forward(arrays, dim=1):
    r"""Concatenate along ``dim`` (torch's ``torch.cat``): a U-Net joins its skip this way.

    Forward: :math:`y = [x_1, x_2, \ldots, x_K]` along ``dim`` (channels for ``dim=1``);
    all other axes must agree. Backward: the output's slices go back to their owners,

    .. math:: ∂L/∂x_k = δ[\ldots, o_k : o_k + c_k, \ldots], \qquad o_k = \sum_{j<k} c_j,

    where :math:`c_k` is ``x_k.shape[dim]``. A tensor used twice (in a skip *and* further
    down the network) receives the sum of both gradients: the caller adds them.

    Args:
        arrays: a list or tuple of floating arrays (at least one). They are computed in the
            first array's dtype (the others are cast to it).
        dim (int): the axis to join along (negative counts from the end).

    Returns:
        ``(out, ctx)``.
    """
    if not isinstance(arrays, (list, tuple)) or len(arrays) == 0:
        raise TypeError(f"arrays must be a non-empty list or tuple of arrays, got {describe(arrays)}")
    first = as_floating(arrays[0], "arrays[0]")
    xs = [first] + [as_floating(a, f"arrays[{i}]", first.dtype) for i, a in enumerate(arrays[1:], 1)]
    dim = check_int(dim, "dim")
    ndim = first.ndim
    if not -max(ndim, 1) <= dim < max(ndim, 1) or ndim == 0:
        raise ValueError(f"dim={dim} is out of range for arrays of shape {first.shape}")
    dim %= ndim
    for i, a in enumerate(xs):
        if a.ndim != ndim or a.shape[:dim] + a.shape[dim + 1:] != first.shape[:dim] + first.shape[dim + 1:]:
            raise ValueError(
                f"arrays[{i}] has shape {a.shape}; every array must match arrays[0]'s shape "
                f"{first.shape} except along dim={dim}"
            )
    out = np.concatenate(xs, axis=dim)
    sizes = tuple(a.shape[dim] for a in xs)
    return out, _ResampleCtx("cat", out.shape, out.dtype, (dim, sizes))


def cat_backward(grad_output, ctx):
    """A list with ``∂L/∂x_k`` for each input: ``grad_output`` split back along ``dim``."""
    g = _grad(grad_output, ctx, "cat")
    dim, sizes = ctx.args
    bounds = np.cumsum(sizes)[:-1]
    return [np.ascontiguousarray(part) for part in np.split(g, bounds, axis=dim)]


def cat(arrays, dim=1):
    """``cat_forward(arrays, dim)[0]``."""
    return cat_forward(arrays, dim)[0]
