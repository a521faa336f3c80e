"""Fully connected layer, shape and regularization layers, activations and containers.

Every layer here pairs a ``forward`` with a hand-written ``backward``; the formulas use
the notes' backprop notation: ``δ = ∂L/∂y`` is the gradient arriving from above
(``grad_output``), ``y`` the layer's output and ``x`` its input.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterator, List, Optional, Union

import numpy as np

from .. import functional as F
from .._checks import check_int, check_number, describe, float_dtype
from . import init
from .._typing import Array, ArrayLike, DTypeLike
from .module import Module, Parameter

__all__ = [
    "Linear",
    "Flatten",
    "Dropout",
    "Identity",
    "ReLU",
    "LeakyReLU",
    "Sigmoid",
    "Tanh",
    "SiLU",
    "Softmax",
    "LogSoftmax",
    "Sequential",
    "Residual",
]


class Linear(Module):
    r"""Fully connected layer: :math:`y = x W^T + b`.

    Forward, per sample (notes: ``x^(m) = W^(m) y^(m-1) + b^(m)``):

    .. math:: y_i = \sum_j W_{ij} x_j + b_i

    Backward, with :math:`δ = ∂L/∂y` stacked as rows of shape ``(N, out_features)``:

    .. math::
        ∂L/∂x = δ W, \qquad ∂L/∂W = δ^T x \;(= \sum_n δ_n x_n^T), \qquad ∂L/∂b = \sum_n δ_n

    (the notes' ``∂L/∂w_ij = δ_i · y_j``, summed over the batch).

    Args:
        in_features (int): size of each input sample (``≥ 0``).
        out_features (int): size of each output sample (``≥ 0``).
        bias (bool): learn an additive bias (default ``True``).
        dtype: ``np.float32`` (default) or ``np.float64``.

    Shape:
        - Input: ``(*, in_features)``, any number of leading axes (at least the feature axis).
        - Output: ``(*, out_features)``.

    Attributes:
        weight (Parameter): ``(out_features, in_features)``, initialized as torch:
            ``kaiming_uniform_(a=√5)``, i.e. :math:`\mathcal{U}(-1/\sqrt{k}, 1/\sqrt{k})`
            with :math:`k = \text{in\_features}`.
        bias (Parameter or None): ``(out_features,)``, :math:`\mathcal{U}(-1/\sqrt{k}, 1/\sqrt{k})`.

    Examples::

        >>> import numpy as np, dlcore
        >>> layer = dlcore.nn.Linear(20, 30)
        >>> layer(np.zeros((128, 20), np.float32)).shape
        (128, 30)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype: DTypeLike = np.float32) -> None:
        super().__init__()
        self.in_features = check_int(in_features, "in_features", minimum=0)
        self.out_features = check_int(out_features, "out_features", minimum=0)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be a bool, got {describe(bias)}")
        dtype = float_dtype(dtype)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype=dtype))
        self.bias = Parameter(np.empty(self.out_features, dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's init: weight kaiming_uniform_(a=√5), bias U(±1/√fan_in) (0 when fan_in is 0)."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Array) -> Array:
        x = self._as_input(x)
        out, ctx = F.linear_forward(x, self.weight.data, None if self.bias is None else self.bias.data)
        self._save_for_backward(out, ctx)
        return out

    def backward(self, grad_output: Array) -> Array:
        grad_output, ctx = self._saved_for_backward(grad_output)
        grad_input, grad_weight, grad_bias = F.linear_backward(grad_output, ctx)
        self.weight.accumulate_grad(grad_weight)
        if self.bias is not None and grad_bias is not None:
            self.bias.accumulate_grad(grad_bias)
        return grad_input

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Flatten(Module):
    r"""Flattens axes ``start_dim..end_dim`` into one: ``(N, C, H, W) → (N, C·H·W)`` by default.

    Forward: a reshape (a view of a contiguous copy of the input). Backward: ``∂L/∂x`` is
    ``δ`` reshaped back to the input's shape (a reshape moves no values).

    Args:
        start_dim (int): first axis to flatten (default 1, keeping the batch axis).
        end_dim (int): last axis to flatten (default -1).

    Shape:
        - Input: ``(*, S_start, ..., S_end, *)``; Output: ``(*, ∏ S_i, *)``.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = check_int(start_dim, "start_dim")
        self.end_dim = check_int(end_dim, "end_dim")

    def forward(self, x: Array) -> Array:
        x = self._as_input(x)
        ndim = x.ndim
        start = self.start_dim + ndim if self.start_dim < 0 else self.start_dim
        end = self.end_dim + ndim if self.end_dim < 0 else self.end_dim
        if not (0 <= start < ndim and 0 <= end < ndim):
            raise ValueError(
                f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}) is out of range for "
                f"an input of shape {x.shape} ({ndim}-D)"
            )
        if start > end:
            raise ValueError(
                f"Flatten: start_dim={self.start_dim} comes after end_dim={self.end_dim} "
                f"for an input of shape {x.shape}"
            )
        shape = x.shape[:start] + (int(np.prod(x.shape[start:end + 1], dtype=np.int64)),) + x.shape[end + 1:]
        out = x.reshape(shape)
        self._save_for_backward(out, x.shape)
        return out

    def backward(self, grad_output: Array) -> Array:
        grad_output, x_shape = self._saved_for_backward(grad_output)
        return grad_output.reshape(x_shape)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    r"""Inverted dropout: in training, zero each element with probability ``p`` and scale by ``1/(1-p)``.

    Forward (training): :math:`y = x ⊙ m / (1-p)`, :math:`m_i \sim \text{Bernoulli}(1-p)`
    drawn from dlcore's generator (``dlcore.manual_seed``); in eval mode :math:`y = x`.
    Backward: :math:`∂L/∂x = δ ⊙ m / (1-p)` with the forward's mask (``δ`` in eval).
    ``p = 1`` outputs zeros. The notes' version scales at test time instead; torch's
    (and this) inverted form needs no change at inference.

    Args:
        p (float): probability of an element being zeroed, in ``[0, 1]`` (default 0.5).

    Shape: any; output has the input's shape.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        self.p = check_number(p, "p", minimum=0.0, maximum=1.0)
        self.inplace = bool(inplace)  # accepted for torch compatibility; dlcore never writes its input

    def forward(self, x: Array) -> Array:
        x = self._as_input(x)
        out, ctx = F.dropout_forward(x, self.p, self.training)
        self._save_for_backward(out, ctx)
        return out

    def backward(self, grad_output: Array) -> Array:
        grad_output, ctx = self._saved_for_backward(grad_output)
        return F.dropout_backward(grad_output, ctx)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Identity(Module):
    """Returns its input: :math:`y = x`; backward :math:`∂L/∂x = δ`. Constructor arguments are ignored (as torch)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, x: Array) -> Array:
        x = self._as_input(x)
        self._save_for_backward(x, None)
        return x

    def backward(self, grad_output: Array) -> Array:
        grad_output, _ = self._saved_for_backward(grad_output)
        return grad_output.copy()


class _Activation(Module):
    """An elementwise (or along-one-axis) activation that delegates to ``F.<op>_forward/_backward``."""

    _op: str = ""  # the functional op's name, set by each subclass

    def _args(self):
        return ()

    def forward(self, x: Array) -> Array:
        x = self._as_input(x)
        out, ctx = getattr(F, self._op + "_forward")(x, *self._args())
        self._save_for_backward(out, ctx)
        return out

    def backward(self, grad_output: Array) -> Array:
        grad_output, ctx = self._saved_for_backward(grad_output)
        return getattr(F, self._op + "_backward")(grad_output, ctx)


class ReLU(_Activation):
    r"""Rectified linear unit, elementwise: :math:`y = \max(0, x)`.

    Backward: :math:`∂L/∂x = δ ⊙ [x > 0]` (the subgradient at 0 is taken as 0, as torch).
    Shape: any; output has the input's shape. ``inplace`` is accepted and ignored.
    """

    _op = "relu"

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = bool(inplace)


class LeakyReLU(_Activation):
    r"""Leaky ReLU, elementwise: :math:`y = x` for :math:`x > 0`, else :math:`αx` (``α = negative_slope``).

    Backward: :math:`∂L/∂x = δ ⊙ (1 \text{ if } x > 0 \text{ else } α)`.

    Args:
        negative_slope (float): ``α`` (default 0.01).
    """

    _op = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = check_number(negative_slope, "negative_slope")
        self.inplace = bool(inplace)

    def _args(self):
        return (self.negative_slope,)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(_Activation):
    r"""Logistic sigmoid: :math:`y = σ(x) = 1 / (1 + e^{-x})`.

    Backward: :math:`∂L/∂x = δ ⊙ y ⊙ (1 - y)`.
    """

    _op = "sigmoid"


class Tanh(_Activation):
    r"""Hyperbolic tangent: :math:`y = \tanh x`. Backward: :math:`∂L/∂x = δ ⊙ (1 - y^2)`."""

    _op = "tanh"


class SiLU(_Activation):
    r"""SiLU / swish: :math:`y = x · σ(x)`.

    Backward: :math:`∂L/∂x = δ ⊙ σ(x)(1 + x(1 - σ(x)))`.
    """

    _op = "silu"

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = bool(inplace)


class _AlongDim(_Activation):
    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim is None:
            raise TypeError(f"{type(self).__name__} needs an explicit dim (an int), got None")
        self.dim = check_int(dim, "dim")

    def _args(self):
        return (self.dim,)

    def forward(self, x: Array) -> Array:
        x = self._as_input(x)
        if not -max(x.ndim, 1) <= self.dim < max(x.ndim, 1):
            raise ValueError(f"dim={self.dim} is out of range for an input of shape {x.shape}")
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_AlongDim):
    r"""Softmax along ``dim``: :math:`y_i = e^{x_i} / \sum_j e^{x_j}` (computed as :math:`e^{x_i - \max x}`).

    Backward (the Jacobian is :math:`\text{diag}(y) - y y^T`):
    :math:`∂L/∂x = y ⊙ (δ - \sum_j δ_j y_j)` along ``dim``.

    Args:
        dim (int): the axis whose entries sum to 1.
    """

    _op = "softmax"


class LogSoftmax(_AlongDim):
    r"""Log-softmax along ``dim``: :math:`y_i = x_i - \log \sum_j e^{x_j}` (log-sum-exp with max subtraction).

    Backward: :math:`∂L/∂x = δ - \text{softmax}(x) \sum_j δ_j` along ``dim``.

    Args:
        dim (int): the axis to normalize over.
    """

    _op = "log_softmax"


class Sequential(Module):
    r"""A chain of modules: :math:`y = f_K(\cdots f_2(f_1(x)))`.

    Backward is the chain rule written out: the children's ``backward`` in reverse order,
    each receiving the gradient its successor returned,
    :math:`∂L/∂x = f_1'^T(\cdots f_K'^T(δ))`.

    Children are named ``"0"``, ``"1"``, … (torch's names, so ``"0.weight"`` in
    ``state_dict``). ``len``, iteration, ``seq[i]`` and slices (a new Sequential sharing the
    modules) work as torch's. An empty Sequential is the identity.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], dict):
            items = list(modules[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(modules)]
        for name, module in items:
            if not isinstance(module, Module):
                raise TypeError(f"Sequential takes Modules, got {describe(module)} at position {name}")
            self.add_module(str(name), module)

    def append(self, module: Module) -> Sequential:
        """Add ``module`` at the end (named by its position); returns self."""
        if not isinstance(module, Module):
            raise TypeError(f"Sequential takes Modules, got {describe(module)}")
        self.add_module(str(len(self._modules)), module)
        return self

    def _layers(self) -> List[Module]:
        # every entry in order, a module used twice included (children() lists it once)
        return [m for m in self._modules.values() if m is not None]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._layers())

    def __getitem__(self, index: Union[int, slice]) -> Any:  # a Module (a Sequential for a slice)
        modules = self._layers()
        if isinstance(index, slice):
            return Sequential(*modules[index])
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"Sequential index must be an int or a slice, got {describe(index)}")
        if not -len(modules) <= index < len(modules):
            raise IndexError(f"index {index} is out of range for a Sequential of length {len(modules)}")
        return modules[index]

    def forward(self, x: Array) -> Array:
        for module in self._layers():
            x = module(x)
        self._save_for_backward(x, None)
        return x

    #: backward(grad, input_grad=False) is understood (see below)
    accepts_input_grad = True

    def backward(self, grad_output: Array, input_grad: bool = True) -> Optional[Array]:
        """Backpropagate through the layers, last first; returns dL/dinput.

        ``input_grad=False``: the caller needs no dL/dinput (the input is data). The first
        layer is then asked not to compute it when it can (a Conv2d skips a third of its
        backward), and None is returned.
        """
        grad, _ = self._saved_for_backward(grad_output)
        modules = self._layers()
        for i, module in reversed(list(enumerate(modules))):
            if i == 0 and not input_grad:
                if getattr(module, "accepts_input_grad", False):
                    backward: Any = module.backward  # this layer's backward takes input_grad
                    backward(grad, input_grad=False)
                else:
                    module.backward(grad)
                return None
            grad = module.backward(grad)
        return grad


class Residual(Module):
    r"""A residual connection: :math:`y = \text{block}(x) + \text{shortcut}(x)` (identity shortcut by default).

    Backward: the gradient flows into both branches and adds at the input,

    .. math:: ∂L/∂x = \text{block}'^T(δ) + \text{shortcut}'^T(δ) \qquad (= \text{block}'^T(δ) + δ
              \text{ for the identity})

    which is why deep residual networks train: :math:`δ` reaches early layers unattenuated.

    Args:
        block (Module): the residual branch.
        shortcut (Module or None): the skip branch (a 1×1 Conv2d to change shape, say);
            None means the identity. Children are named ``"block"`` and ``"shortcut"``
            (the latter only when given), as in ``"2.block.0.weight"``.

    Shape: ``block(x)`` and ``shortcut(x)`` must have the same shape (else ValueError).
    """

    def __init__(self, block: Module, shortcut: Optional[Module] = None) -> None:
        super().__init__()
        if not isinstance(block, Module):
            raise TypeError(f"block must be a Module, got {describe(block)}")
        if shortcut is not None and not isinstance(shortcut, Module):
            raise TypeError(f"shortcut must be a Module or None, got {describe(shortcut)}")
        self.block = block
        if shortcut is not None:
            self.shortcut = shortcut
        else:
            object.__setattr__(self, "shortcut", None)

    def forward(self, x: Array) -> Array:
        x = self._as_input(x)
        main = self.block(x)
        skip = self.shortcut(x) if self.shortcut is not None else x
        if np.shape(main) != np.shape(skip):
            raise ValueError(
                f"Residual: block output shape {np.shape(main)} differs from shortcut output shape "
                f"{np.shape(skip)} (give a shortcut that maps the input to the block's output shape)"
            )
        out = main + skip
        self._save_for_backward(out, x.dtype)
        return out

    def backward(self, grad_output: Array) -> Array:
        grad, _ = self._saved_for_backward(grad_output)
        grad_input = np.array(self.block.backward(grad), copy=True)
        if self.shortcut is not None:
            grad_input += self.shortcut.backward(grad)
        else:
            grad_input += grad
        return grad_input
