r"""Loss functions with torch.nn.functional's names, arguments and results, and their backward.

Each loss comes as ``F.<loss>(input, target, ...)`` and as the pair used by the loss
modules::

    loss, ctx = F.cross_entropy_forward(logits, target)       # a Python float ("mean"/"sum")
    grad_logits = F.cross_entropy_backward(1.0, ctx)          # ∂loss/∂logits, logits' shape

``reduction`` is ``"mean"`` (default), ``"sum"`` or ``"none"``. A reduced loss is a Python
float and its ``grad_output`` a number; with ``"none"`` the loss is an ndarray (the
per-element or per-sample losses :math:`\ell`) and ``grad_output`` an array of that shape.
``"mean"`` divides by the number of elements (regression and binary losses), by the number
of samples N (``multi_margin_loss``), or by the summed weights of the counted samples
(``cross_entropy`` and ``nll_loss``, as torch's), so every gradient carries that factor.

Notation: :math:`x` the prediction (``input``), :math:`y` the target, :math:`δ` the upstream
gradient (``grad_output``), :math:`σ` the logistic sigmoid, :math:`N` samples, :math:`C` classes.
Losses compute in the prediction's floating dtype (float32/float64); an integer prediction
raises TypeError. Inputs are never modified.
"""
import numpy as np

from .._checks import as_floating, check_int, check_number, check_reduction
from ..backends import kernel_threads, kernels

__all__ = [
    "mse_loss",
    "mse_loss_forward",
    "mse_loss_backward",
    "l1_loss",
    "l1_loss_forward",
    "l1_loss_backward",
    "binary_cross_entropy",
    "binary_cross_entropy_forward",
    "binary_cross_entropy_backward",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_forward",
    "binary_cross_entropy_with_logits_backward",
    "cross_entropy",
    "cross_entropy_forward",
    "cross_entropy_backward",
    "nll_loss",
    "nll_loss_forward",
    "nll_loss_backward",
    "multi_margin_loss",
    "multi_margin_loss_forward",
    "multi_margin_loss_backward",
]


class _LossCtx:
    """What a loss's backward needs (opaque to callers)."""

    __slots__ = ("op", "reduction", "loss_shape", "dtype", "denom", "saved")

    def __init__(self, op, reduction, loss_shape, dtype, denom, **saved):
        self.op, self.reduction, self.loss_shape, self.dtype = op, reduction, loss_shape, dtype
        self.denom, self.saved = denom, saved

    def __repr__(self):
        return f"<{self.op} ctx: reduction {self.reduction!r}, loss shape {self.loss_shape}>"


# ---- validation and reduction ---------------------------------------------------------------------

def _prediction(input, name="input"):
    x = as_floating(input, name)
    return x.reshape(()) if np.ndim(input) == 0 else x


def _real_target(target, x, name="target"):
    """A regression/binary target: real numbers of input's shape, cast to input's dtype."""
    t = target if isinstance(target, np.ndarray) else np.asarray(target)
    if t.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    if t.shape != x.shape:
        raise ValueError(f"{name} must have the shape of input {x.shape}, got {t.shape}")
    return np.ascontiguousarray(t, dtype=x.dtype).reshape(x.shape)


def _broadcast_weight(weight, x, name):
    """An optional per-element weight, broadcast to input's shape (read-only view)."""
    if weight is None:
        return None
    w = as_floating(weight, name, dtype=x.dtype)
    w = w.reshape(()) if np.ndim(weight) == 0 else w
    try:
        return np.broadcast_to(w, x.shape)
    except ValueError:
        raise ValueError(f"{name} must broadcast to input's shape {x.shape}, got shape {w.shape}") from None


def _class_weight(weight, C, dtype):
    if weight is None:
        return None
    w = as_floating(weight, "weight", dtype=dtype)
    if w.shape != (C,):
        raise ValueError(f"weight must have shape (C,) = ({C},), one weight per class, got {w.shape}")
    return w


def _logits_and_labels(input, target, ignore_index=None):
    """(N, C) floating scores and (N,) int64 labels in [0, C) (or == ignore_index)."""
    x = _prediction(input)
    if x.ndim != 2:
        raise ValueError(f"input must be 2-D (N, C) scores, got shape {x.shape}")
    N, C = x.shape
    if C == 0:
        raise ValueError(f"input must have at least one class (C >= 1), got shape {x.shape}")
    t = np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"target must hold integer class indices, got dtype {t.dtype}")
    if t.shape != (N,):
        raise ValueError(f"target must have shape (N,) = ({N},) to match input {x.shape}, got {t.shape}")
    if t.dtype.kind == "u" and t.size and t.max() > np.iinfo(np.int64).max:
        # checked before the cast, which would wrap 2**64 - 100 to -100 (= ignore_index)
        raise ValueError(f"target must hold class indices in [0, {C}) for input with C = {C} classes, "
                         f"got {int(t.max())}")
    t = np.ascontiguousarray(t, dtype=np.int64)
    counted = t != ignore_index if ignore_index is not None else np.ones(N, dtype=bool)
    bad = counted & ((t < 0) | (t >= C))
    if bad.any():
        raise ValueError(f"target must hold class indices in [0, {C}) for input with C = {C} classes, "
                         f"got {int(t[bad][0])}")
    return x, t, counted


def _reduce(loss, reduction, denom):
    if reduction == "none":
        return loss
    total = float(np.sum(loss, dtype=np.float64))
    if reduction == "sum":
        return total
    return total / denom if denom else float("nan")  # torch: the mean of nothing is nan


def _scale(grad_output, ctx):
    """δ for each element/sample: an array of the loss's shape ("none") or a number."""
    if ctx.reduction == "none":
        g = as_floating(grad_output, "grad_output", dtype=ctx.dtype)
        g = g.reshape(()) if np.ndim(grad_output) == 0 else g
        if g.shape != ctx.loss_shape:
            raise ValueError(f"grad_output must have the loss's shape {ctx.loss_shape} (reduction='none'), "
                             f"got {g.shape}")
        return g
    if isinstance(grad_output, np.ndarray) and grad_output.size == 1 and grad_output.dtype.kind in "fiu":
        grad_output = grad_output.reshape(()).item()
    g = check_number(grad_output, "grad_output")
    if ctx.reduction == "mean":
        g = g / ctx.denom if ctx.denom else float("nan")
    return g


def _check_ctx(ctx, op):
    if not isinstance(ctx, _LossCtx) or ctx.op != op:
        raise TypeError(f"ctx must be the context returned by {op}_forward, got {ctx!r}")


def _as_grad(a, dtype):
    return np.ascontiguousarray(a, dtype=dtype)


# ---- regression -----------------------------------------------------------------------------------

def mse_loss_forward(input, target, reduction="mean"):
    r"""Mean squared error: :math:`\ell_i = (x_i - y_i)^2`; ``"mean"`` is
    :math:`\frac{1}{n}\sum_i (x_i - y_i)^2` over all n elements (the notes' MSE, eq. 4.2/5.2).

    Backward: :math:`∂L/∂x_i = 2 (x_i - y_i) δ` (times :math:`1/n` for ``"mean"``).

    Args:
        input: prediction, floating, any shape. target: same shape, real numbers.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``"none"`` returns input's shape).
    Returns ``(loss, ctx)``.
    """
    reduction = check_reduction(reduction)
    x = _prediction(input)
    diff = x - _real_target(target, x)
    loss = diff * diff
    return _reduce(loss, reduction, loss.size), _LossCtx("mse_loss", reduction, loss.shape, x.dtype, loss.size,
                                                          diff=diff)


def mse_loss_backward(grad_output, ctx):
    """``2 (x - y) δ`` (``/n`` for "mean") for the ``ctx`` of :func:`mse_loss_forward`."""
    _check_ctx(ctx, "mse_loss")
    return _as_grad(2 * ctx.saved["diff"] * _scale(grad_output, ctx), ctx.dtype)


def mse_loss(input, target, reduction="mean"):
    """Mean squared error (see :func:`mse_loss_forward`)."""
    return mse_loss_forward(input, target, reduction)[0]


def l1_loss_forward(input, target, reduction="mean"):
    r"""Mean absolute error (L1): :math:`\ell_i = |x_i - y_i|`; ``"mean"`` is
    :math:`\frac{1}{n}\sum_i |x_i - y_i|`.

    (The notes' eq. 4.3/5.3 labels this formula "MSE"; it is the MAE / L1 loss.)
    Backward: :math:`∂L/∂x_i = \text{sign}(x_i - y_i) δ` (times :math:`1/n` for ``"mean"``),
    with sign(0) = 0 as torch. Returns ``(loss, ctx)``.
    """
    reduction = check_reduction(reduction)
    x = _prediction(input)
    diff = x - _real_target(target, x)
    loss = np.abs(diff)
    return _reduce(loss, reduction, loss.size), _LossCtx("l1_loss", reduction, loss.shape, x.dtype, loss.size,
                                                          diff=diff)


def l1_loss_backward(grad_output, ctx):
    """``sign(x - y) δ`` (``/n`` for "mean") for the ``ctx`` of :func:`l1_loss_forward`."""
    _check_ctx(ctx, "l1_loss")
    return _as_grad(np.sign(ctx.saved["diff"]) * _scale(grad_output, ctx), ctx.dtype)


def l1_loss(input, target, reduction="mean"):
    """Mean absolute error (see :func:`l1_loss_forward`)."""
    return l1_loss_forward(input, target, reduction)[0]


# ---- binary classification ------------------------------------------------------------------------

_BCE_EPS = float(np.float32(1e-12))  # torch's clamp is the float32 constant 1e-12, in every dtype


def binary_cross_entropy_forward(input, target, weight=None, reduction="mean"):
    r"""Binary cross-entropy on probabilities :math:`x \in [0, 1]`:

    .. math:: \ell_i = -w_i \left[ y_i \log x_i + (1 - y_i) \log(1 - x_i) \right]

    (the notes' cross-entropy error of logistic regression). Each log is clamped at
    :math:`-100`, as torch's, so :math:`x = 0` or :math:`1` gives a finite loss.
    Backward: :math:`∂L/∂x_i = w_i δ (x_i - y_i) / \max(x_i (1 - x_i), 10^{-12})`
    (torch's clamp; times :math:`1/n` for ``"mean"``).

    Args:
        input: probabilities in [0, 1] (else ValueError), any shape.
        target: same shape, usually in {0, 1} (soft targets allowed).
        weight: optional rescaling weight, broadcast to input's shape.
    Prefer :func:`binary_cross_entropy_with_logits` on raw scores: it is stable.
    """
    reduction = check_reduction(reduction)
    x = _prediction(input)
    t = _real_target(target, x)
    w = _broadcast_weight(weight, x, "weight")
    if x.size and not ((x >= 0) & (x <= 1)).all():
        finite = x[~np.isnan(x)]
        got = "NaN" if finite.size < x.size else f"values in [{finite.min()}, {finite.max()}]"
        raise ValueError(f"input of binary_cross_entropy must hold probabilities in [0, 1], got {got}")
    if t.size and not ((t >= 0) & (t <= 1)).all():  # as torch: a target is a probability too
        bad = t[~((t >= 0) & (t <= 1))][0]
        raise ValueError(f"target of binary_cross_entropy must hold probabilities in [0, 1], got {bad}")
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(x), -100)
        log_q = np.maximum(np.log1p(-x), -100)
    loss = (t - 1) * log_q - t * log_p
    if w is not None:
        loss = loss * w
    return _reduce(loss, reduction, loss.size), _LossCtx("binary_cross_entropy", reduction, loss.shape, x.dtype,
                                                          loss.size, x=x, t=t, w=w)


def binary_cross_entropy_backward(grad_output, ctx):
    """``w δ (x - y) / max(x (1 - x), 1e-12)`` for the ``ctx`` of :func:`binary_cross_entropy_forward`."""
    _check_ctx(ctx, "binary_cross_entropy")
    x, t, w = ctx.saved["x"], ctx.saved["t"], ctx.saved["w"]
    grad = (x - t) / np.maximum((1 - x) * x, x.dtype.type(_BCE_EPS)) * _scale(grad_output, ctx)
    return _as_grad(grad if w is None else grad * w, ctx.dtype)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """Binary cross-entropy on probabilities (see :func:`binary_cross_entropy_forward`)."""
    return binary_cross_entropy_forward(input, target, weight, reduction)[0]


def binary_cross_entropy_with_logits_forward(input, target, weight=None, reduction="mean", pos_weight=None):
    r"""Sigmoid and binary cross-entropy fused, on logits :math:`z` (``input``):

    .. math:: \ell_i = -w_i \left[ p_c\, y_i \log σ(z_i) + (1 - y_i) \log(1 - σ(z_i)) \right]
              = w_i \left[ (1 - y_i) z_i + (1 + (p_c - 1) y_i)\, \text{softplus}(-z_i) \right]

    with :math:`\text{softplus}(-z) = -\log σ(z) = \log(1 + e^{-|z|}) + \max(-z, 0)`, which
    never overflows (finite for :math:`|z| = 10^{30}`); :math:`p_c` is ``pos_weight``
    (1 by default), broadcast along the last axis as torch's.
    Backward: :math:`∂L/∂z_i = w_i δ \left[(1 + (p_c - 1) y_i)\, σ(z_i) - p_c y_i\right]`,
    i.e. :math:`w_i δ (σ(z_i) - y_i)` without ``pos_weight`` (times :math:`1/n` for ``"mean"``).
    """
    reduction = check_reduction(reduction)
    z = _prediction(input)
    t = _real_target(target, z)
    w = _broadcast_weight(weight, z, "weight")
    pw = _broadcast_weight(pos_weight, z, "pos_weight")
    softplus_neg = np.log1p(np.exp(-np.abs(z))) + np.maximum(-z, 0)
    log_weight = 1 if pw is None else 1 + (pw - 1) * t
    loss = (1 - t) * z + log_weight * softplus_neg
    if w is not None:
        loss = loss * w
    return _reduce(loss, reduction, loss.size), _LossCtx("binary_cross_entropy_with_logits", reduction, loss.shape,
                                                          z.dtype, loss.size, z=z, t=t, w=w, pw=pw)


def binary_cross_entropy_with_logits_backward(grad_output, ctx):
    """``w δ ((1 + (p_c - 1) y) σ(z) - p_c y)`` for the ``ctx`` of the forward."""
    _check_ctx(ctx, "binary_cross_entropy_with_logits")
    z, t, w, pw = (ctx.saved[k] for k in ("z", "t", "w", "pw"))
    s = np.empty_like(z)
    kernels().sigmoid_forward(z.reshape(-1), s.reshape(-1), kernel_threads())
    grad = s - t if pw is None else (1 + (pw - 1) * t) * s - pw * t
    grad = grad * _scale(grad_output, ctx)
    return _as_grad(grad if w is None else grad * w, ctx.dtype)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Stable sigmoid + binary cross-entropy (see :func:`binary_cross_entropy_with_logits_forward`)."""
    return binary_cross_entropy_with_logits_forward(input, target, weight, reduction, pos_weight)[0]


# ---- multi-class classification --------------------------------------------------------------------

def cross_entropy_forward(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    r"""Softmax cross-entropy on logits :math:`z` of shape (N, C) with integer targets :math:`y`:

    .. math:: \ell_n = -w_{y_n} \log \frac{e^{z_{n,y_n}}}{\sum_c e^{z_{n,c}}}
              = w_{y_n} \left[ \text{logsumexp}(z_n) - z_{n,y_n} \right]

    (the notes' categorical cross-entropy :math:`-\sum_c y_c \log \hat y_c` with a one-hot
    :math:`y` and :math:`\hat y = \text{softmax}(z)`). The log-sum-exp subtracts each row's
    maximum, so logits of :math:`\pm 10^{30}` give finite losses and gradients. Computed
    by one fused kernel (``softmax_cross_entropy_forward``).

    Backward (the notes' :math:`e = a - y`): :math:`∂L/∂z_{n,c} = w_{y_n} δ_n
    (\text{softmax}(z_n)_c - [c = y_n])`; ``"mean"`` divides by :math:`\sum_n w_{y_n}` (N
    without weights), counting only samples whose target is not ``ignore_index``.

    With ``label_smoothing`` :math:`ε` (torch's), the target is mixed with the uniform
    distribution: :math:`\ell_n = (1-ε)\,\ell_n^{\text{above}} + \frac{ε}{C} \sum_c w_c
    (\text{logsumexp}(z_n) - z_{n,c})`, whose gradient adds
    :math:`\frac{ε}{C} δ_n (\text{softmax}(z_n)_c \sum_k w_k - w_c)`.

    Args:
        input: logits (N, C), floating. target: (N,) ints in [0, C) (else ValueError),
            or equal to ``ignore_index`` (those samples count for nothing).
        weight: optional (C,) per-class weights. reduction: "mean" | "sum" | "none" ((N,)).
        label_smoothing: float in [0, 1].
    """
    reduction = check_reduction(reduction)
    ignore_index = check_int(ignore_index, "ignore_index")
    eps = check_number(label_smoothing, "label_smoothing", minimum=0.0, maximum=1.0)
    x, t, counted = _logits_and_labels(input, target, ignore_index)
    N, C = x.shape
    w_class = _class_weight(weight, C, x.dtype)
    t_safe = np.where(counted, t, 0)  # the kernel indexes every row; ignored rows are zeroed below
    rows = np.empty(N, dtype=x.dtype)
    row_max, log_sum = np.empty(N), np.empty(N)  # logsumexp(z_n) = row_max + log_sum, kept apart
    kernels().softmax_cross_entropy_forward(x, t_safe, rows, row_max, log_sum, kernel_threads())
    # w_row: the weight of each sample's term (0 for an ignored sample)
    w_row = counted.astype(x.dtype) if w_class is None else np.where(counted, w_class[t_safe], 0).astype(x.dtype)
    loss = rows * w_row
    if eps:
        # sum_c w_c (logsumexp(z_n) - z_{n,c}) = sum_c w_c (m_n - z_{n,c}) + log_sum_n sum_c w_c: with
        # m + log_sum summed first, a huge m would swallow log_sum (1e30 + log 2 == 1e30).
        w_all = np.ones(C, dtype=np.float64) if w_class is None else w_class.astype(np.float64)
        smooth = (row_max[:, None] - x) @ w_all + log_sum * w_all.sum()
        loss = (1 - eps) * loss + (eps / C) * np.where(counted, smooth, 0).astype(x.dtype)
    denom = float(w_row.sum(dtype=np.float64))
    ctx = _LossCtx("cross_entropy", reduction, (N,), x.dtype, denom, x=x, t=t_safe, row_max=row_max,
                   log_sum=log_sum, w_row=w_row, counted=counted, eps=eps, w_class=w_class)
    return _reduce(loss, reduction, denom), ctx


def cross_entropy_backward(grad_output, ctx):
    """``w_y δ (softmax(z) - onehot(y))`` (plus the smoothing term) for :func:`cross_entropy_forward`'s ctx."""
    _check_ctx(ctx, "cross_entropy")
    s = ctx.saved
    x = s["x"]
    N, C = x.shape
    g = np.broadcast_to(np.asarray(_scale(grad_output, ctx), dtype=ctx.dtype), (N,))
    grad = np.empty_like(x)
    g_main = np.ascontiguousarray(g * s["w_row"] * (1 - s["eps"]), dtype=ctx.dtype)
    kernels().softmax_cross_entropy_backward(g_main, x, s["t"], s["row_max"], s["log_sum"], grad,
                                             kernel_threads())
    if s["eps"]:
        w_all = np.ones(C, dtype=ctx.dtype) if s["w_class"] is None else s["w_class"]
        p = np.exp((x - s["row_max"][:, None]) - s["log_sum"][:, None])
        g_smooth = (s["eps"] / C) * np.where(s["counted"], g, 0)[:, None]
        grad += (g_smooth * (p * w_all.sum() - w_all)).astype(ctx.dtype)
    return grad


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy on (N, C) logits and (N,) int targets (see :func:`cross_entropy_forward`)."""
    return cross_entropy_forward(input, target, weight, ignore_index, reduction, label_smoothing)[0]


def nll_loss_forward(input, target, weight=None, ignore_index=-100, reduction="mean"):
    r"""Negative log-likelihood on log-probabilities :math:`x` (N, C): :math:`\ell_n = -w_{y_n} x_{n,y_n}`.

    ``nll_loss(log_softmax(z, 1), y)`` equals ``cross_entropy(z, y)``.
    Backward: :math:`∂L/∂x_{n,c} = -w_{y_n} δ_n [c = y_n]`; ``"mean"`` divides by
    :math:`\sum_n w_{y_n}` over the samples not equal to ``ignore_index``.

    Args:
        input: (N, C) floating. target: (N,) ints in [0, C) or ``ignore_index``.
        weight: optional (C,) per-class weights.
    """
    reduction = check_reduction(reduction)
    ignore_index = check_int(ignore_index, "ignore_index")
    x, t, counted = _logits_and_labels(input, target, ignore_index)
    N, C = x.shape
    w_class = _class_weight(weight, C, x.dtype)
    t_safe = np.where(counted, t, 0)
    w_row = counted.astype(x.dtype) if w_class is None else np.where(counted, w_class[t_safe], 0).astype(x.dtype)
    loss = -x[np.arange(N), t_safe] * w_row
    denom = float(w_row.sum(dtype=np.float64))
    return _reduce(loss, reduction, denom), _LossCtx("nll_loss", reduction, (N,), x.dtype, denom, shape=x.shape,
                                                      t=t_safe, w_row=w_row)


def nll_loss_backward(grad_output, ctx):
    """``-w_y δ`` at each sample's target entry, 0 elsewhere, for :func:`nll_loss_forward`'s ctx."""
    _check_ctx(ctx, "nll_loss")
    N, C = ctx.saved["shape"]
    grad = np.zeros((N, C), dtype=ctx.dtype)
    grad[np.arange(N), ctx.saved["t"]] = -ctx.saved["w_row"] * _scale(grad_output, ctx)
    return grad


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood (see :func:`nll_loss_forward`)."""
    return nll_loss_forward(input, target, weight, ignore_index, reduction)[0]


def multi_margin_loss_forward(input, target, p=1, margin=1.0, weight=None, reduction="mean"):
    r"""Multi-class hinge loss (the notes' SVM / hinge error, eq. 7.1), as torch's:

    .. math:: \ell_n = \frac{w_{y_n}}{C} \sum_{c \ne y_n} \max(0,\ Δ - x_{n,y_n} + x_{n,c})^p

    with :math:`Δ` = ``margin``: the true class's score should beat every other by Δ.
    (The notes sum without the :math:`1/C`; torch, followed here, averages over C.)
    ``"mean"`` averages over the N samples.
    Backward, with :math:`h_{n,c} = Δ - x_{n,y_n} + x_{n,c} > 0` for a violating class:
    :math:`∂L/∂x_{n,c} = \frac{w_{y_n}}{C} δ_n\, p\, h_{n,c}^{p-1}`, and the true class gets
    minus the sum of those. (The hinge is not differentiable at :math:`h = 0`; as torch,
    the gradient there is 0.)

    Args:
        input: (N, C) scores. target: (N,) ints in [0, C).
        p: 1 or 2. margin: float. weight: optional (C,) per-class weights.
    """
    reduction = check_reduction(reduction)
    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    margin = check_number(margin, "margin")
    x, t, _ = _logits_and_labels(input, target)
    N, C = x.shape
    w_class = _class_weight(weight, C, x.dtype)
    rows = np.arange(N)
    h = margin - x[rows, t][:, None] + x
    h[rows, t] = 0  # the true class is not its own rival
    active = h > 0
    hinge = np.where(active, h, 0)
    terms = hinge if p == 1 else hinge * hinge
    scale = (np.ones(N, dtype=x.dtype) if w_class is None else w_class[t]) / x.dtype.type(C)
    loss = terms.sum(axis=1) * scale
    return _reduce(loss, reduction, N), _LossCtx("multi_margin_loss", reduction, (N,), x.dtype, N, t=t,
                                                  active=active, hinge=hinge, p=p, scale=scale)


def multi_margin_loss_backward(grad_output, ctx):
    """The hinge's subgradient (see :func:`multi_margin_loss_forward`) for its ``ctx``."""
    _check_ctx(ctx, "multi_margin_loss")
    s = ctx.saved
    N = s["t"].shape[0]
    per_row = (np.asarray(_scale(grad_output, ctx), dtype=ctx.dtype) * s["scale"])[..., None]
    slope = s["active"].astype(ctx.dtype) if s["p"] == 1 else 2 * s["hinge"]
    grad = slope * per_row
    grad[np.arange(N), s["t"]] = -grad.sum(axis=1)
    return _as_grad(grad, ctx.dtype)


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, reduction="mean"):
    """Multi-class hinge loss (see :func:`multi_margin_loss_forward`)."""
    return multi_margin_loss_forward(input, target, p, margin, weight, reduction)[0]
