r"""Loss functions as Modules: ``loss = criterion(pred, target)``, then ``criterion.backward()``.

A loss is the last link of backpropagation: its ``backward(grad_output=None)`` returns
``∂L/∂pred``, the ``δ`` that the network's own ``backward`` starts from::

    loss = criterion(model(x), y)          # a Python float (reduction "mean"/"sum")
    model.backward(criterion.backward())   # parameters' .grad now hold ∂loss/∂θ

``grad_output`` defaults to 1 for a reduced loss and to ones of the loss's shape for
``reduction="none"``. With ``"mean"`` the per-element losses are averaged, so every
gradient carries a ``1/N`` factor (N the number of elements, or of samples for the
classification losses). The math is in ``dlcore.functional``'s ``<loss>_forward``;
each class's docstring states it.

Constructors take ``reduction`` first (dlcore's API); torch's other arguments
(``weight``, ``ignore_index``, ``label_smoothing``, ``pos_weight``, ``p``, ``margin``) are
keyword-only, with torch's defaults and meaning. Class weights are buffers named
``"weight"`` / ``"pos_weight"``, as in torch's ``state_dict``.
"""
import numbers

import numpy as np

from .. import functional as F
from .._checks import check_int, check_number, check_reduction, describe
from .module import Module

__all__ = [
    "Loss",
    "MSELoss",
    "L1Loss",
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "NLLLoss",
    "MultiMarginLoss",
]


class Loss(Module):
    """Base class of the losses: forward delegates to ``F.<op>_forward``, backward to ``F.<op>_backward``."""

    _op: str = ""  # the functional op's name, set by each subclass

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = check_reduction(reduction)

    def _extra_kwargs(self):
        """torch's extra arguments of the functional loss, passed only when not at their defaults."""
        kwargs = {}
        for name in ("weight", "pos_weight"):
            value = self.__dict__.get(name)
            if value is not None:
                kwargs[name] = value
        return kwargs

    def _register_weight(self, name, value):
        """torch keeps a loss's class weights as a buffer (so it appears in ``state_dict``)."""
        if value is not None:
            value = np.asarray(getattr(value, "data", value))
            if value.dtype.kind != "f":
                raise TypeError(f"{name} must be a floating array, got dtype {value.dtype}")
            if value.ndim != 1:
                raise ValueError(f"{name} must be 1-D (one entry per class), got shape {value.shape}")
            value = np.array(value, copy=True)
        self.register_buffer(name, value)

    def forward(self, input, target):
        loss, ctx = getattr(F, self._op + "_forward")(input, target, reduction=self.reduction, **self._extra_kwargs())
        object.__setattr__(self, "_saved", (np.shape(loss), ctx))
        return loss

    def backward(self, grad_output=None):
        """``∂L/∂pred`` for the last forward, scaled by ``grad_output`` (1 / ones by default)."""
        saved = self.__dict__.get("_saved")
        if saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before a forward: call criterion(pred, target) first")
        loss_shape, ctx = saved
        if self.reduction == "none":
            if grad_output is None:
                grad_output = np.ones(loss_shape)
            else:
                if not isinstance(grad_output, np.ndarray) and not isinstance(grad_output, (list, tuple, numbers.Real)):
                    raise TypeError(f"grad_output must be an array of the loss's shape {loss_shape}, got {describe(grad_output)}")
                grad_output = np.asarray(grad_output)
                if grad_output.dtype.kind != "f":
                    raise TypeError(f"grad_output must be floating, got dtype {grad_output.dtype}")
                if grad_output.shape != loss_shape:
                    raise ValueError(f"grad_output must have the loss's shape {loss_shape}, got shape {grad_output.shape}")
        else:
            if grad_output is None:
                grad_output = 1.0
            else:
                if isinstance(grad_output, np.ndarray):
                    if grad_output.shape not in ((), (1,)):
                        raise ValueError(
                            f"grad_output of a reduced loss must be a scalar, got an array of shape {grad_output.shape}"
                        )
                    if grad_output.dtype.kind != "f":
                        raise TypeError(f"grad_output must be floating, got dtype {grad_output.dtype}")
                    grad_output = float(grad_output.reshape(()))
                else:
                    grad_output = check_number(grad_output, "grad_output")
        return getattr(F, self._op + "_backward")(grad_output, ctx)

    def extra_repr(self):
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class MSELoss(Loss):
    r"""Mean squared error: :math:`\ell_i = (x_i - y_i)^2`, averaged (``"mean"``) or summed.

    Backward: :math:`∂L/∂x_i = 2(x_i - y_i)/N` for ``"mean"`` (N elements), without ``1/N`` for ``"sum"``.

    Shape: ``input`` and ``target`` of the same shape (floating); ``"none"`` returns that shape.
    """

    _op = "mse_loss"


class L1Loss(Loss):
    r"""Mean absolute error: :math:`\ell_i = |x_i - y_i|`.

    Backward: :math:`∂L/∂x_i = \text{sign}(x_i - y_i)/N` for ``"mean"`` (0 where equal, as torch).
    (The notes' "Mean absolute error" section labels this formula MSE, a typo: it is the L1 / MAE loss.)
    """

    _op = "l1_loss"


class BCELoss(Loss):
    r"""Binary cross-entropy on probabilities: :math:`\ell_i = -[y_i \log p_i + (1-y_i)\log(1-p_i)]`.

    Each log is clamped at -100 (as torch), so ``p = 0`` or ``1`` gives a finite loss.
    Backward: :math:`∂L/∂p_i = (p_i - y_i) / (p_i (1 - p_i))` (``/N`` for ``"mean"``),
    with torch's clamp of the denominator at 1e-12.

    Shape: ``input`` (probabilities in [0, 1]) and ``target`` of the same shape.
    Prefer :class:`BCEWithLogitsLoss` on raw scores: it is numerically stable.

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        weight (ndarray or None): a rescaling weight per element (broadcast), torch's.
    """

    _op = "binary_cross_entropy"

    def __init__(self, reduction="mean", *, weight=None):
        super().__init__(reduction)
        self.register_buffer("weight", None if weight is None else np.array(np.asarray(weight), copy=True))


class BCEWithLogitsLoss(Loss):
    r"""Sigmoid + binary cross-entropy in one stable expression, on logits ``z``:

    .. math:: \ell_i = \max(z_i, 0) - z_i y_i + \log(1 + e^{-|z_i|})

    Backward: :math:`∂L/∂z_i = σ(z_i) - y_i` (``/N`` for ``"mean"``).

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        weight (ndarray or None): a rescaling weight per element (broadcast), torch's.
        pos_weight (ndarray or None): weight of the positive term per class, torch's:
            :math:`\ell_i = -w_i[p_c\, y_i \log σ(z_i) + (1-y_i)\log(1-σ(z_i))]`.
    """

    _op = "binary_cross_entropy_with_logits"

    def __init__(self, reduction="mean", *, weight=None, pos_weight=None):
        super().__init__(reduction)
        self.register_buffer("weight", None if weight is None else np.array(np.asarray(weight), copy=True))
        self.register_buffer("pos_weight", None if pos_weight is None else np.array(np.asarray(pos_weight), copy=True))


class CrossEntropyLoss(Loss):
    r"""Softmax cross-entropy on logits, with integer class targets:

    .. math:: \ell_n = -\log \frac{e^{z_{n,y_n}}}{\sum_c e^{z_{n,c}}} = \text{logsumexp}(z_n) - z_{n,y_n}

    Backward: :math:`∂L/∂z_n = \text{softmax}(z_n) - \text{onehot}(y_n)` (``/N`` for ``"mean"``).

    Shape: ``input`` ``(N, C)`` logits; ``target`` ``(N,)`` ints in ``[0, C)`` (else ValueError);
    ``"none"`` returns ``(N,)``.

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        weight (ndarray or None): ``(C,)`` class weights; with ``"mean"`` the weighted losses
            are divided by the sum of the targets' weights (torch's rule).
        ignore_index (int): targets equal to it contribute no loss and no gradient (default -100).
        label_smoothing (float): in [0, 1]; the target becomes
            :math:`(1-ε)\,\text{onehot}(y) + ε/C` (torch's), and the gradient
            :math:`\text{softmax}(z) - \text{that target}`.
    """

    _op = "cross_entropy"

    def __init__(self, reduction="mean", *, weight=None, ignore_index=-100, label_smoothing=0.0):
        super().__init__(reduction)
        self._register_weight("weight", weight)
        self.ignore_index = check_int(ignore_index, "ignore_index")
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", minimum=0.0, maximum=1.0)

    def _extra_kwargs(self):
        kwargs = super()._extra_kwargs()
        if self.ignore_index != -100:
            kwargs["ignore_index"] = self.ignore_index
        if self.label_smoothing:
            kwargs["label_smoothing"] = self.label_smoothing
        return kwargs


class NLLLoss(Loss):
    r"""Negative log-likelihood on log-probabilities: :math:`\ell_n = -x_{n,y_n}`.

    Pair it with :class:`LogSoftmax` (``dim=1``): together they equal :class:`CrossEntropyLoss`.
    Backward: :math:`∂L/∂x_{n,c} = -[c = y_n]` (``/N`` for ``"mean"``).

    Shape: ``input`` ``(N, C)``; ``target`` ``(N,)`` ints in ``[0, C)``.

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        weight (ndarray or None): ``(C,)`` class weights (weighted mean, as torch).
        ignore_index (int): targets to skip (default -100).
    """

    _op = "nll_loss"

    def __init__(self, reduction="mean", *, weight=None, ignore_index=-100):
        super().__init__(reduction)
        self._register_weight("weight", weight)
        self.ignore_index = check_int(ignore_index, "ignore_index")

    def _extra_kwargs(self):
        kwargs = super()._extra_kwargs()
        if self.ignore_index != -100:
            kwargs["ignore_index"] = self.ignore_index
        return kwargs


class MultiMarginLoss(Loss):
    r"""Multi-class hinge loss (the SVM loss of the notes, averaged over classes as torch):

    .. math:: \ell_n = \frac{1}{C} \sum_{c \ne y_n} \max(0, \text{margin} - x_{n,y_n} + x_{n,c})^p

    Backward (``p = 1``): each violating class ``c`` gets :math:`+1/C`, the true class
    :math:`-(\text{number of violators})/C` (``/N`` for ``"mean"``); for ``p = 2`` each term is
    scaled by :math:`2 \max(0, \cdot)`. (The notes' SVM loss sums without the ``1/C``.)

    Shape: ``input`` ``(N, C)``; ``target`` ``(N,)`` ints in ``[0, C)``.

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        p (int): 1 (default) or 2.
        margin (float): default 1.
        weight (ndarray or None): ``(C,)`` class weights, applied per sample by its target class.
    """

    _op = "multi_margin_loss"

    def __init__(self, reduction="mean", *, p=1, margin=1.0, weight=None):
        super().__init__(reduction)
        if p not in (1, 2) or isinstance(p, bool):
            raise ValueError(f"p must be 1 or 2, got {p!r}")
        self.p = int(p)
        self.margin = check_number(margin, "margin")
        self._register_weight("weight", weight)

    def _extra_kwargs(self):
        kwargs = super()._extra_kwargs()
        if self.p != 1:
            kwargs["p"] = self.p
        if self.margin != 1.0:
            kwargs["margin"] = self.margin
        return kwargs
