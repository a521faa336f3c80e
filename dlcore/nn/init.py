r"""Weight initializations with torch.nn.init's names, arguments and laws.

Each function fills its argument IN PLACE (an ndarray of floats, or a Parameter) and
returns it. Random draws come from dlcore's generator, so ``dlcore.manual_seed`` makes
them reproducible (the numbers differ from torch's, the distributions are the same).

Fans: for a weight of shape ``(out, in, *kernel)``, ``fan_in = in · ∏kernel`` and
``fan_out = out · ∏kernel`` (torch's convention; a Linear weight is ``(out, in)``).

====================  ======================================================================
function              law
====================  ======================================================================
``xavier_uniform_``   :math:`\mathcal{U}(-a, a)`, :math:`a = \text{gain}\sqrt{6/(\text{fan\_in}+\text{fan\_out})}`
``xavier_normal_``    :math:`\mathcal{N}(0, σ^2)`, :math:`σ = \text{gain}\sqrt{2/(\text{fan\_in}+\text{fan\_out})}`
``kaiming_uniform_``  :math:`\mathcal{U}(-b, b)`, :math:`b = \text{gain}\sqrt{3/\text{fan}}`
``kaiming_normal_``   :math:`\mathcal{N}(0, σ^2)`, :math:`σ = \text{gain}/\sqrt{\text{fan}}`
====================  ======================================================================

with ``gain = calculate_gain(nonlinearity, a)`` for Kaiming (He) init and ``fan`` the
``mode``'s fan. Notes on the study notes: their Xavier formula ``U(0, √(6/(n_in+n_out)))``
should be symmetric, ``U(-a, a)`` (Glorot & Bengio, 2010); their "Xavier" normal
``N(0,1)·√(1/n)`` is LeCun's init, which is ``kaiming_normal_(w, nonlinearity="linear")``
here; their "He" law ``N(0,1)·√(2/n)`` is ``kaiming_normal_(w)`` with the ReLU gain
(``nonlinearity="relu"``).
"""
import math
import numbers

import numpy as np

from .._checks import describe
from .._random import generator
from .module import Parameter

__all__ = [
    "calculate_gain",
    "uniform_",
    "normal_",
    "constant_",
    "zeros_",
    "ones_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
]

_LINEAR_LIKE = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
)


def calculate_gain(nonlinearity, param=None):
    r"""The recommended gain for a nonlinearity (torch's table).

    ``linear``, ``conv*``, ``sigmoid``: 1; ``tanh``: 5/3; ``relu``: √2;
    ``leaky_relu``: :math:`\sqrt{2/(1+α^2)}` with ``α = param`` (default 0.01);
    ``selu``: 3/4. Unknown names raise ValueError.
    """
    if nonlinearity in _LINEAR_LIKE:
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, numbers.Real) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(
        f"Unsupported nonlinearity {nonlinearity!r}; expected one of linear, conv1d, conv2d, conv3d, "
        "conv_transpose1d/2d/3d, sigmoid, tanh, relu, leaky_relu, selu"
    )


def _target(tensor):
    """The ndarray to fill (a Parameter's ``.data``), checked to be a writable float array."""
    array = tensor.data if isinstance(tensor, Parameter) else tensor
    if not isinstance(array, np.ndarray):
        raise TypeError(f"tensor must be an ndarray or a Parameter, got {describe(tensor)}")
    if array.dtype.kind != "f":
        raise TypeError(f"tensor must have a floating dtype, got dtype {array.dtype}")
    if not array.flags.writeable:
        raise ValueError("tensor is read-only; init functions fill their argument in place")
    return array


def _fill(tensor, values):
    _target(tensor)[...] = values
    return tensor


def _fans(array):
    if array.ndim < 2:
        raise ValueError(
            f"fan in and fan out can not be computed for a tensor with fewer than 2 dimensions, got shape {array.shape}"
        )
    receptive = int(np.prod(array.shape[2:], dtype=np.int64)) if array.ndim > 2 else 1
    return array.shape[1] * receptive, array.shape[0] * receptive


def _real(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {describe(value)}")
    return float(value)


def uniform_(tensor, a=0.0, b=1.0):
    """Fill with :math:`\\mathcal{U}(a, b)`."""
    a, b = _real(a, "a"), _real(b, "b")
    if a > b:
        raise ValueError(f"uniform_ expects a <= b, got a={a}, b={b}")
    array = _target(tensor)
    return _fill(tensor, generator().uniform(a, b, size=array.shape))


def normal_(tensor, mean=0.0, std=1.0):
    """Fill with :math:`\\mathcal{N}(\\text{mean}, \\text{std}^2)`."""
    mean, std = _real(mean, "mean"), _real(std, "std")
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    array = _target(tensor)
    return _fill(tensor, generator().normal(mean, std, size=array.shape))


def constant_(tensor, val):
    """Fill with the constant ``val``."""
    return _fill(tensor, _real(val, "val"))


def zeros_(tensor):
    """Fill with zeros."""
    return _fill(tensor, 0.0)


def ones_(tensor):
    """Fill with ones."""
    return _fill(tensor, 1.0)


def xavier_uniform_(tensor, gain=1.0):
    r"""Glorot/Xavier uniform: :math:`\mathcal{U}(-a, a)`, :math:`a = \text{gain}·\sqrt{6/(\text{fan\_in} + \text{fan\_out})}`.

    Keeps the activations' and the gradients' variance roughly constant across layers
    for tanh/sigmoid-like units (Glorot & Bengio, 2010).
    """
    fan_in, fan_out = _fans(_target(tensor))
    gain = _real(gain, "gain")
    if fan_in + fan_out == 0:
        return tensor
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    r"""Glorot/Xavier normal: :math:`\mathcal{N}(0, σ^2)`, :math:`σ = \text{gain}·\sqrt{2/(\text{fan\_in} + \text{fan\_out})}`."""
    fan_in, fan_out = _fans(_target(tensor))
    gain = _real(gain, "gain")
    if fan_in + fan_out == 0:
        return tensor
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_std(array, a, mode, nonlinearity):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(array)
    fan = fan_in if mode == "fan_in" else fan_out
    gain = calculate_gain(nonlinearity, a)
    return gain / math.sqrt(fan)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    r"""He/Kaiming uniform: :math:`\mathcal{U}(-b, b)`, :math:`b = \text{gain}·\sqrt{3/\text{fan}}`.

    Args:
        a: the negative slope of the leaky ReLU that follows (only with
            ``nonlinearity="leaky_relu"``, the default; ``a=0`` is plain ReLU's gain √2).
        mode: ``"fan_in"`` (default) preserves the forward variance, ``"fan_out"`` the backward's.
        nonlinearity: a name for :func:`calculate_gain`.

    ``Linear`` and ``Conv2d`` use ``a=√5``, which gives :math:`b = 1/\sqrt{\text{fan\_in}}` (torch's default).
    A tensor with no elements is left alone (as torch).
    """
    array = _target(tensor)
    if array.size == 0:
        return tensor
    bound = math.sqrt(3.0) * _kaiming_std(array, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    r"""He/Kaiming normal: :math:`\mathcal{N}(0, σ^2)`, :math:`σ = \text{gain}/\sqrt{\text{fan}}` (arguments as :func:`kaiming_uniform_`)."""
    array = _target(tensor)
    if array.size == 0:
        return tensor
    return normal_(tensor, 0.0, _kaiming_std(array, a, mode, nonlinearity))
