"""Normalization ops: batch norm, instance norm and adaptive instance norm (AdaIN).

All three standardize an activation over some axes and then rescale it::

    x_hat = (x - mu) / sigma,     sigma = sqrt(var + eps)     (var: biased, 1/m)
    y     = gamma * x_hat + beta

and differ only in which elements share one ``(mu, sigma)``:

* batch norm    -- per channel, over the batch and every spatial position (m = N*L);
* instance norm -- per sample and channel, over the spatial positions only (m = L);
* AdaIN         -- instance norm whose ``gamma, beta`` are the *style* input's per-instance
  standard deviation and mean (Huang & Belongie, 2017).

Inputs are ``(N, C, *spatial)``; internally they are viewed as ``(N, C, L)`` with
``L = prod(spatial)`` (``L = 1`` for ``(N, C)`` input), so one code path covers 1-D, 2-D
and 3-D feature maps. Batch and instance norm run on the backend's ``norm_*`` kernels
(``dlcore/backends/numpy_kernels/norm.py`` is the readable version): the kernels see the
input as ``P = N * C`` planes of ``L`` values and compute per-plane sums; this module
turns them into statistics (batch norm adds the N planes of each channel, in plane
order, so the result does not depend on the thread count) and the statistics into one
affine map per plane, ``y = a * x + b`` (torch's CPU kernels use the same form). Sums
accumulate in float64 whatever the input dtype. AdaIN stays in NumPy.

The variance is the corrected two-pass one: with ``d = x - mean`` (mean from the first
pass), ``var = (sum d**2 - (sum d)**2 / m) / m``; the second term removes the rounding
error of the mean.

Backward in the compact form (Ioffe & Szegedy 2015; the form CS231n derives), for the
elements ``i = 1..m`` sharing one ``(mu, sigma)`` and ``g = dL/dy``::

    dL/dx_hat = g * gamma
    dL/dx_i   = (1 / (m * sigma)) * (m * dL/dx_hat_i - sum_j dL/dx_hat_j
                                     - x_hat_i * sum_j dL/dx_hat_j * x_hat_j)
    dL/dgamma = sum g * x_hat,     dL/dbeta = sum g      (over every axis but C)

With fixed statistics (batch norm in eval mode) mu and sigma are constants and
``dL/dx = dL/dx_hat / sigma``.

Running statistics follow torch: ``running = (1 - momentum) * running + momentum * batch``
with the *unbiased* variance ``var * m / (m - 1)``, updated in place (the only arrays
these ops write to that the caller passed in, exactly as ``torch.nn.functional``).
"""
import numpy as np

from .._checks import as_floating, check_number, describe
from ..backends import kernels, threads_for, workspace

__all__ = [
    "batch_norm",
    "batch_norm_forward",
    "batch_norm_backward",
    "instance_norm",
    "instance_norm_forward",
    "instance_norm_backward",
    "adaptive_instance_norm",
    "adaptive_instance_norm_forward",
    "adaptive_instance_norm_backward",
]


# ---- shared pieces -----------------------------------------------------------------------
def _compute_dtype(weight):
    """The weight's dtype when there is a weight (the input is cast to it), else None."""
    if weight is None:
        return None
    return as_floating(weight, "weight").dtype


def _as_channels(x, name, min_ndim):
    """``x`` (N, C, *spatial) viewed as (N, C, L)."""
    if x.ndim < min_ndim:
        want = "(N, C) or (N, C, *spatial)" if min_ndim == 2 else "(N, C, *spatial)"
        raise ValueError(f"{name} must be at least {min_ndim}-D {want}, got shape {x.shape}")
    return x.reshape(x.shape[0], x.shape[1], -1)


def _per_channel(value, name, channels, dtype):
    """An optional per-channel vector (weight, bias) as a (1, C, 1) array of ``dtype``."""
    if value is None:
        return None
    value = as_floating(value, name, dtype)
    if value.shape != (channels,):
        raise ValueError(f"{name} must have shape ({channels},) (one value per channel), got {value.shape}")
    return value.reshape(1, channels, 1)


def _running(running_mean, running_var, channels, writable):
    """Validate running statistics: both None, or both float arrays of shape (C,)."""
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must both be arrays or both be None, "
                         f"got {describe(running_mean)} and {describe(running_var)}")
    for name, value in (("running_mean", running_mean), ("running_var", running_var)):
        if value is None:
            continue
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise TypeError(f"{name} must be a floating numpy array, got {describe(value)}")
        if value.shape != (channels,):
            raise ValueError(f"{name} must have shape ({channels},) (one value per channel), got {value.shape}")
        if writable and not value.flags.writeable:
            raise ValueError(f"{name} is updated in place when training, got a read-only array")


def _check_momentum_eps(momentum, eps):
    if momentum is not None:
        check_number(momentum, "momentum", 0.0, 1.0)
    return check_number(eps, "eps", 0.0)


def _sum(a, axes):
    """Sum over ``axes`` keeping dims, accumulated in float64, returned in ``a``'s dtype."""
    return a.sum(axis=axes, keepdims=True, dtype=np.float64).astype(a.dtype, copy=False)


def _standardize(xs, axes, eps):
    """Batch statistics over ``axes`` of xs (N, C, L): returns x_hat, mean, var, inv_std."""
    m = int(np.prod([xs.shape[a] for a in axes]))
    mean = _sum(xs, axes) / m
    centered = xs - mean
    var = _sum(np.square(centered), axes) / m
    inv_std = 1.0 / np.sqrt(var + eps)
    return centered * inv_std, mean, var, inv_std


def _update_running(running, batch_value, momentum):
    """torch's exponential moving average, in place: (1 - momentum) * running + momentum * batch."""
    running[...] = (1.0 - momentum) * running + momentum * batch_value


# ---- batch and instance norm on the norm_* kernels -----------------------------------------
# Group arrays have shape (S, C): S = N for one (mu, sigma) per plane (instance norm,
# m = L values each), S = 1 for one per channel (batch norm, m = N * L values each).
def _statistics(xs, per_instance):
    """Mean and biased variance per group, float64 arrays (S, C): corrected two-pass."""
    backend, threads = kernels(), threads_for(xs.size, "norm")
    n, c, length = xs.shape
    rows, m = (n, length) if per_instance else (1, n * length)
    sum1, sum2 = np.empty((rows, c)), np.empty((rows, c))
    backend.norm_moments(xs, np.zeros((rows, c)), sum1, sum2, threads)
    mean = sum1 / m
    backend.norm_moments(xs, mean, sum1, sum2, threads)
    var = np.maximum((sum2 - sum1 * sum1 / m) / m, 0.0)
    return mean, var


def _normalize(xs, mean, inv_std, weight, bias):
    """``y = a * x + b`` per group, with ``a = weight * inv_std``, ``b = bias - mean * a``.

    ``xs``: (N, C, L); ``mean, inv_std``: float64 (S, C); weight, bias: (1, C, 1) or None.
    Returns the output (N, C, L) and the ctx of the backward (x itself, not x_hat).
    """
    c = xs.shape[1]
    w = np.ones(c) if weight is None else weight.reshape(c).astype(np.float64)
    a = w * inv_std
    b = (0.0 if bias is None else bias.reshape(c).astype(np.float64)) - mean * a
    out = workspace.empty_like(xs)
    kernels().norm_affine_forward(xs, a.astype(xs.dtype), b.astype(xs.dtype), out,
                                  threads_for(xs.size, "norm"))
    ctx = {"xs": xs, "mean": mean, "inv_std": inv_std, "w": w,
           "weight": weight is not None, "bias": bias is not None}
    return out, ctx


def _normalize_backward(grad_output, ctx):
    r"""(grad_input, grad_weight, grad_bias) of :func:`_normalize`.

    With :math:`k = w / \sigma`, the group sums :math:`S_g = \sum g` and
    :math:`S_{gx} = \sum g (x - \mu)` over the group's m values, the compact form
    :math:`\delta = k (g - S_g / m - \hat x S_{gx} / (m \sigma))` is affine in g and x:
    :math:`\delta = k g + B x + C` with :math:`B = -k S_{gx} / (m \sigma^2)` and
    :math:`C = -k S_g / m - B \mu`. With fixed statistics :math:`\delta = k g`.
    Per channel: grad_weight :math:`= \sum S_{gx} / \sigma`, grad_bias :math:`= \sum S_g`.
    """
    xs, mean, inv_std = ctx["xs"], ctx["mean"], ctx["inv_std"]
    dtype = xs.dtype
    g = as_floating(grad_output, "grad_output", dtype)
    if g.shape != ctx["shape"]:
        raise ValueError(f"grad_output must have the output's shape {ctx['shape']}, got {g.shape}")
    g = g.reshape(xs.shape)
    backend, threads = kernels(), threads_for(xs.size, "norm")
    k = ctx["w"] * inv_std
    grad_weight = grad_bias = None
    if ctx["batch_stats"] or ctx["weight"] or ctx["bias"]:
        sum_g, sum_gx = np.empty(mean.shape), np.empty(mean.shape)
        backend.norm_grad_sums(g, xs, mean, sum_g, sum_gx, threads)
        if ctx["weight"]:
            grad_weight = (sum_gx * inv_std).sum(axis=0).astype(dtype)
        if ctx["bias"]:
            grad_bias = sum_g.sum(axis=0).astype(dtype)
    grad_input = workspace.empty_like(xs)
    if ctx["batch_stats"]:
        m = xs.shape[2] if ctx["per_instance"] else xs.shape[0] * xs.shape[2]
        b = -k * inv_std * inv_std * sum_gx / m
        c = -k * sum_g / m - b * mean
        backend.norm_affine_backward(g, xs, k.astype(dtype), b.astype(dtype), c.astype(dtype),
                                     grad_input, threads)
    else:
        backend.norm_affine_forward(g, k.astype(dtype), np.zeros(k.shape, dtype), grad_input, threads)
    return grad_input.reshape(ctx["shape"]), grad_weight, grad_bias


def _standardize_backward(dx_hat, x_hat, inv_std, axes):
    """dL/dx from dL/dx_hat when (mu, sigma) were computed over ``axes`` (the compact form)."""
    m = int(np.prod([x_hat.shape[a] for a in axes]))
    return (inv_std / m) * (m * dx_hat - _sum(dx_hat, axes) - x_hat * _sum(dx_hat * x_hat, axes))


def _grad_like(grad_output, ctx):
    g = as_floating(grad_output, "grad_output", ctx["dtype"])
    if g.shape != ctx["shape"]:
        raise ValueError(f"grad_output must have the output's shape {ctx['shape']}, got {g.shape}")
    return g.reshape(ctx["x_hat"].shape)


# ---- batch norm --------------------------------------------------------------------------
def batch_norm_forward(input, running_mean, running_var, weight=None, bias=None, training=False,
                       momentum=0.1, eps=1e-5):
    """Batch normalization, returning ``(out, ctx)`` for :func:`batch_norm_backward`.

    Per channel c, over the batch and spatial positions (m = N * L values)::

        mu_c = mean(x[:, c]),  var_c = mean((x[:, c] - mu_c)**2)       (biased)
        y[:, c] = weight_c * (x[:, c] - mu_c) / sqrt(var_c + eps) + bias_c

    ``training=True`` normalizes with the batch statistics and, when running statistics
    are given (they may be None), updates them in place:
    ``running_mean = (1 - momentum) * running_mean + momentum * mu`` and
    ``running_var = (1 - momentum) * running_var + momentum * var * m / (m - 1)``
    (unbiased). ``momentum=None`` is not a functional option (the module turns it into a
    cumulative average before calling). ``training=False`` normalizes with the running
    statistics, which must then be given (as torch).

    Parameters
    ----------
    input : ndarray ``(N, C)`` or ``(N, C, *spatial)``, floating
    running_mean, running_var : ndarray (C,) or None
    weight, bias : ndarray (C,) or None -- gamma and beta (identity when None)
    training : bool
    momentum : float in [0, 1]
    eps : float, >= 0 (> 0 when training, as torch)

    Returns
    -------
    out : ndarray of the input's shape (in the weight's dtype, else the input's)
    ctx : opaque, for :func:`batch_norm_backward`

    Raises ValueError for wrong shapes and, when training, for a single value per
    channel (as torch: the variance of one value is 0 and carries no information).
    """
    x = as_floating(input, "input", _compute_dtype(weight))
    xs = _as_channels(x, "input", 2)
    n, c, length = xs.shape
    weight = _per_channel(weight, "weight", c, x.dtype)
    bias = _per_channel(bias, "bias", c, x.dtype)
    _running(running_mean, running_var, c, writable=bool(training))
    if momentum is None:
        raise ValueError("momentum must be a number in [0, 1] for batch_norm, got None")
    eps = _check_momentum_eps(momentum, eps)
    if not training and running_mean is None:
        raise ValueError("batch_norm with training=False needs running_mean and running_var, got None")
    if training and eps == 0:
        raise ValueError("eps must be > 0 when training (a constant channel would divide by 0), got 0.0")
    training = bool(training)
    m = n * length
    if training:
        if m <= 1:
            raise ValueError(f"batch_norm expects more than 1 value per channel when training, "
                             f"got input of shape {x.shape}")
        mean, var = _statistics(xs, per_instance=False)
        if running_mean is not None:
            _update_running(running_mean, mean[0], momentum)
            _update_running(running_var, var[0] * (m / (m - 1)), momentum)
    else:
        mean = running_mean.astype(np.float64).reshape(1, c)
        var = running_var.astype(np.float64).reshape(1, c)
    out, ctx = _normalize(xs, mean, 1.0 / np.sqrt(var + eps), weight, bias)
    ctx.update(batch_stats=training, per_instance=False, shape=x.shape)
    out = out.reshape(x.shape)
    return out, ctx


def batch_norm_backward(grad_output, ctx):
    """Gradients of batch normalization: ``(grad_input, grad_weight, grad_bias)``.

    With batch statistics (training), over the m = N * L values of each channel::

        dx_hat = g * weight
        dx = (1 / (m * sigma)) * (m * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat))

    with fixed running statistics (eval) ``dx = dx_hat / sigma``; in both cases
    ``grad_weight = sum(g * x_hat)`` and ``grad_bias = sum(g)`` over every axis but C.
    ``grad_weight``/``grad_bias`` are None when the forward had no weight/bias.
    """
    return _normalize_backward(grad_output, ctx)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalization (torch.nn.functional.batch_norm); see :func:`batch_norm_forward`."""
    return batch_norm_forward(input, running_mean, running_var, weight, bias, training, momentum, eps)[0]


# ---- instance norm -----------------------------------------------------------------------
def instance_norm_forward(input, running_mean=None, running_var=None, weight=None, bias=None,
                          use_input_stats=True, momentum=0.1, eps=1e-5):
    """Instance normalization, returning ``(out, ctx)`` for :func:`instance_norm_backward`.

    Per sample n and channel c, over the L spatial positions (Ulyanov et al. 2016)::

        mu_nc = mean(x[n, c]),  var_nc = mean((x[n, c] - mu_nc)**2)       (biased)
        y[n, c] = weight_c * (x[n, c] - mu_nc) / sqrt(var_nc + eps) + bias_c

    With ``use_input_stats=True`` (torch's default) and running statistics given, they are
    updated in place with the batch average of the per-instance statistics (the unbiased
    variance ``var_nc * L / (L - 1)``), as torch does. ``use_input_stats=False`` normalizes
    every instance with the running statistics instead.

    Parameters
    ----------
    input : ndarray ``(N, C, *spatial)``, floating, at least 3-D
    running_mean, running_var : ndarray (C,) or None
    weight, bias : ndarray (C,) or None
    use_input_stats : bool
    momentum : float in [0, 1]
    eps : float >= 0
    """
    x = as_floating(input, "input", _compute_dtype(weight))
    xs = _as_channels(x, "input", 3)
    n, c, length = xs.shape
    weight = _per_channel(weight, "weight", c, x.dtype)
    bias = _per_channel(bias, "bias", c, x.dtype)
    _running(running_mean, running_var, c, writable=bool(use_input_stats))
    eps = _check_momentum_eps(momentum, eps)
    if not use_input_stats and running_mean is None:
        raise ValueError("instance_norm with use_input_stats=False needs running_mean and running_var, got None")
    if use_input_stats:
        if length <= 1:
            raise ValueError(f"instance_norm expects more than 1 spatial element per channel, got input of shape {x.shape}")
        mean, var = _statistics(xs, per_instance=True)
        if running_mean is not None:
            _update_running(running_mean, mean.mean(axis=0), momentum)
            _update_running(running_var, (var * (length / (length - 1))).mean(axis=0), momentum)
    else:
        mean = running_mean.astype(np.float64).reshape(1, c)
        var = running_var.astype(np.float64).reshape(1, c)
    out, ctx = _normalize(xs, mean, 1.0 / np.sqrt(var + eps), weight, bias)
    ctx.update(batch_stats=bool(use_input_stats), per_instance=True, shape=x.shape)
    out = out.reshape(x.shape)
    return out, ctx


def instance_norm_backward(grad_output, ctx):
    """Gradients of instance normalization: ``(grad_input, grad_weight, grad_bias)``.

    The compact batch-norm backward applied per (n, c) over its L positions::

        dx_hat = g * weight
        dx[n, c] = (1 / (L * sigma_nc)) * (L * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat))

    (``dx = dx_hat / sigma`` with running statistics); ``grad_weight = sum(g * x_hat)``
    and ``grad_bias = sum(g)`` over N and the spatial axes, or None without weight/bias.
    """
    return _normalize_backward(grad_output, ctx)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """Instance normalization (torch.nn.functional.instance_norm); see :func:`instance_norm_forward`."""
    return instance_norm_forward(input, running_mean, running_var, weight, bias, use_input_stats,
                                 momentum, eps)[0]


# ---- adaptive instance norm (AdaIN) ------------------------------------------------------
def adaptive_instance_norm_forward(content, style, eps=1e-5):
    """AdaIN (Huang & Belongie 2017, eq. 8), returning ``(out, ctx)``.

    The content features are normalized per instance and channel, then given the style
    features' per-instance, per-channel standard deviation and mean::

        AdaIN(x, y) = sigma(y) * (x - mu(x)) / sigma(x) + mu(y)
        mu(x)_nc = mean_l x[n, c, l],   sigma(x)_nc = sqrt(mean_l (x[n, c, l] - mu(x)_nc)**2 + eps)

    (the same for y over its own spatial positions, which may differ in number from the
    content's). As in the paper, sigma uses the biased variance plus ``eps`` for both
    inputs; some public implementations use the unbiased variance instead.

    Parameters
    ----------
    content : ndarray ``(N, C, *spatial)``, floating -- x
    style : ndarray ``(N, C, *spatial')``, floating -- y (cast to the content's dtype)
    eps : float >= 0

    Returns
    -------
    out : ndarray of the content's shape and dtype
    ctx : opaque, for :func:`adaptive_instance_norm_backward`
    """
    x = as_floating(content, "content")
    y = as_floating(style, "style", x.dtype)
    xs = _as_channels(x, "content", 3)
    ys = _as_channels(y, "style", 3)
    if ys.shape[:2] != xs.shape[:2]:
        raise ValueError(f"style must have the content's batch and channel sizes (N, C) = {xs.shape[:2]}, "
                         f"got shape {y.shape}")
    eps = check_number(eps, "eps", 0.0)
    x_hat, _, _, inv_std_x = _standardize(xs, (2,), eps)
    y_hat, mean_y, var_y, _ = _standardize(ys, (2,), eps)
    std_y = np.sqrt(var_y + eps)
    out = (std_y * x_hat + mean_y).reshape(x.shape)
    ctx = {"x_hat": x_hat, "inv_std": inv_std_x, "y_hat": y_hat, "std_y": std_y,
           "shape": x.shape, "style_shape": y.shape, "dtype": x.dtype}
    return out, ctx


def adaptive_instance_norm_backward(grad_output, ctx):
    """Gradients of AdaIN with respect to both inputs: ``(grad_content, grad_style)``.

    The content path is instance norm with weight ``sigma(y)``; the style path goes
    through ``mu(y)`` and ``sigma(y)``, with ``dsigma/dy_l = y_hat_l / L_y`` and
    ``dmu/dy_l = 1 / L_y``::

        dx_hat    = g * sigma(y)
        dx        = (1 / (L * sigma(x))) * (L * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat))
        dsigma(y) = sum_l g * x_hat,       dmu(y) = sum_l g
        dy        = (dmu(y) + dsigma(y) * y_hat) / L_y

    where ``y_hat = (y - mu(y)) / sigma(y)`` and the sums run over each (n, c)'s positions.
    """
    g = _grad_like(grad_output, ctx)
    x_hat, y_hat = ctx["x_hat"], ctx["y_hat"]
    grad_content = _standardize_backward(g * ctx["std_y"], x_hat, ctx["inv_std"], (2,))
    grad_std_y = _sum(g * x_hat, (2,))
    grad_mean_y = _sum(g, (2,))
    grad_style = (grad_mean_y + grad_std_y * y_hat) / y_hat.shape[2]
    return grad_content.reshape(ctx["shape"]), grad_style.reshape(ctx["style_shape"])


def adaptive_instance_norm(content, style, eps=1e-5):
    """AdaIN: content normalized per instance, then scaled and shifted by the style's
    per-instance std and mean; see :func:`adaptive_instance_norm_forward`."""
    return adaptive_instance_norm_forward(content, style, eps)[0]
