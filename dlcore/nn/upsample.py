"""Upsampling and channel concatenation layers: what a U-Net adds to a plain CNN.

A U-Net's decoder doubles the resolution (:class:`Upsample`) and joins the encoder's
feature map of the same size (:class:`Concat`, the "skip connection"); the backward pass
sums each upsampled block and splits the concatenated gradient back to its two sources.
"""
import numpy as np

from .. import functional as F
from .._checks import check_int
from ..functional.resample import _scale_pair
from .module import Module

__all__ = ["Upsample", "Concat"]


class Upsample(Module):
    r"""Nearest-neighbour upsampling by an integer factor (torch's ``nn.Upsample(mode="nearest")``).

    Forward: each pixel is repeated over an ``s_h × s_w`` block,

    .. math:: y[n, c, i, j] = x[n, c, \lfloor i / s_h \rfloor, \lfloor j / s_w \rfloor].

    Backward: the gradient of an input pixel is the sum of :math:`δ` over its block,

    .. math:: ∂L/∂x[n, c, p, q] = \sum_{a < s_h,\, b < s_w} δ[n, c, p s_h + a, q s_w + b].

    Args:
        scale_factor (int or pair of ints): ``s`` or ``(s_h, s_w)``, each ``≥ 1`` (default 2).
        mode (str): ``"nearest"`` (the only mode implemented).

    Shape:
        - Input: ``(N, C, H, W)``; Output: ``(N, C, H·s_h, W·s_w)``.

    Examples::

        >>> import numpy as np, dlcore
        >>> dlcore.nn.Upsample(scale_factor=2)(np.zeros((1, 3, 7, 7), np.float32)).shape
        (1, 3, 14, 14)
    """

    def __init__(self, scale_factor=2, mode="nearest"):
        super().__init__()
        if mode != "nearest":
            raise ValueError(f"mode must be 'nearest' (the only mode implemented), got {mode!r}")
        self.scale_factor = _scale_pair(scale_factor)
        self.mode = mode

    def forward(self, x):
        x = self._as_input(x)
        out, ctx = F.upsample_nearest2d_forward(x, self.scale_factor)
        self._save_for_backward(out, ctx)
        return out

    def backward(self, grad_output):
        grad_output, ctx = self._saved_for_backward(grad_output)
        return F.upsample_nearest2d_backward(grad_output, ctx)

    def extra_repr(self):
        sh, sw = self.scale_factor
        scale = float(sh) if sh == sw else (float(sh), float(sw))
        return f"scale_factor={scale}, mode='{self.mode}'"


class Concat(Module):
    r"""Concatenates its inputs along ``dim`` (``torch.cat`` as a layer): ``y = [x_1, …, x_K]``.

    Called with several arrays, ``Concat(dim=1)(up, skip)``; ``backward(δ)`` returns a tuple
    with one gradient per input, the slices of :math:`δ` that belong to it:

    .. math:: ∂L/∂x_k = δ[\ldots, o_k : o_k + c_k, \ldots], \qquad o_k = \sum_{j<k} c_j,

    :math:`c_k` being input ``k``'s size along ``dim``. In a U-Net the skip's gradient is
    then ADDED to the gradient that reached the same feature map along the main path.

    Args:
        dim (int): the axis to join along (default 1, channels of NCHW).

    Shape:
        - Inputs: arrays equal in every axis but ``dim``; Output: their sizes along ``dim`` summed.
    """

    def __init__(self, dim=1):
        super().__init__()
        self.dim = check_int(dim, "dim")

    def forward(self, *arrays):
        if len(arrays) == 1 and isinstance(arrays[0], (list, tuple)):
            arrays = tuple(arrays[0])
        out, ctx = F.cat_forward(list(arrays), self.dim)
        self._save_for_backward(out, ctx)
        return out

    def backward(self, grad_output):
        grad_output, ctx = self._saved_for_backward(grad_output)
        return tuple(F.cat_backward(grad_output, ctx))

    def extra_repr(self):
        return f"dim={self.dim}"
