"""Normalization layers: BatchNorm1d, BatchNorm2d, InstanceNorm2d and AdaIN.

The math (forward, the compact backward, torch's running-statistics convention) lives in
:mod:`dlcore.functional.normalization`; these classes hold the parameters ``weight``
(gamma) and ``bias`` (beta), the running statistics, and the training/eval switch.
"""
import numpy as np

from .. import functional as F
from .._checks import check_int, check_number, float_dtype
from .module import Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "InstanceNorm2d", "AdaIN"]


class _NormBase(Module):
    """Parameters and buffers shared by batch and instance norm (torch's ``_NormBase``)."""

    _expected_ndim: tuple = ()
    _layout = ""

    def __init__(self, num_features, eps, momentum, affine, track_running_stats, dtype):
        super().__init__()
        self.num_features = check_int(num_features, "num_features", 1)
        self.eps = check_number(eps, "eps", 0.0)
        self.momentum = None if momentum is None else check_number(momentum, "momentum", 0.0, 1.0)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        dtype = float_dtype(dtype)
        if self.affine:
            self.weight = Parameter(np.ones(num_features, dtype=dtype))
            self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        else:
            self.weight = None
            self.bias = None
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        """running_mean to 0, running_var to 1, num_batches_tracked to 0 (in place)."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self):
        """Running statistics reset; weight to 1 and bias to 0 (torch's init)."""
        self.reset_running_stats()
        if self.affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def _check_input(self, x):
        x = self._as_input(x)
        if x.ndim not in self._expected_ndim:
            want = " or ".join(f"{n}-D" for n in self._expected_ndim)
            raise ValueError(f"{type(self).__name__} expects a {want} input {self._layout}, got shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) expects input with "
                             f"{self.num_features} channels (dim 1), got shape {x.shape}")
        return x

    def _param_data(self):
        if self.affine:
            return self.weight.data, self.bias.data
        return None, None

    def backward(self, grad_output):
        """Returns dL/dinput and adds dL/dweight, dL/dbias into the parameters' grads."""
        g, ctx = self._saved_for_backward(grad_output)
        grad_input, grad_weight, grad_bias = self._backward_op(g, ctx)
        if self.affine:
            self.weight.accumulate_grad(grad_weight)
            self.bias.accumulate_grad(grad_bias)
        return grad_input

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class _BatchNorm(_NormBase):
    _backward_op = staticmethod(F.batch_norm_backward)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)

    def forward(self, input):
        x = self._check_input(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked[...] += 1
            if self.momentum is None:  # cumulative moving average, as torch
                factor = 1.0 / float(self.num_batches_tracked)
        # batch statistics when training, or when there are no running statistics to use
        use_batch = self.training or not self.track_running_stats
        out, ctx = F.batch_norm_forward(
            x, self.running_mean, self.running_var, *self._param_data(),
            training=use_batch, momentum=factor, eps=self.eps,
        )
        self._save_for_backward(out, ctx)
        return out


class BatchNorm1d(_BatchNorm):
    r"""Batch normalization over a 2-D ``(N, C)`` or 3-D ``(N, C, L)`` input (Ioffe & Szegedy 2015).

    Forward, per channel c over the m = N (or N*L) values of the batch:

    .. math::

        \mu_c = \frac1m\sum x, \qquad \sigma_c^2 = \frac1m\sum (x-\mu_c)^2, \qquad
        \hat x = \frac{x-\mu_c}{\sqrt{\sigma_c^2+\epsilon}}, \qquad y = \gamma_c\hat x + \beta_c

    In training mode the batch statistics normalize (biased variance) and the running
    statistics are updated as torch's:
    ``running_mean = (1 - momentum) * running_mean + momentum * mu`` and
    ``running_var = (1 - momentum) * running_var + momentum * sigma^2 * m / (m - 1)`` (the
    *unbiased* variance); ``momentum=None`` gives the cumulative average
    (factor ``1 / num_batches_tracked``). In eval mode the running statistics normalize.

    Backward (the compact form), with :math:`g = \partial L/\partial y` and
    :math:`\hat g = g\gamma`:

    .. math::

        \frac{\partial L}{\partial x} = \frac{1}{m\sqrt{\sigma^2+\epsilon}}
            \Big(m\hat g - \sum\hat g - \hat x\sum \hat g\hat x\Big), \qquad
        \frac{\partial L}{\partial\gamma} = \sum g\hat x, \qquad
        \frac{\partial L}{\partial\beta} = \sum g

    (sums over every axis but C). In eval mode the statistics are constants and
    :math:`\partial L/\partial x = \hat g/\sqrt{\sigma^2_{run}+\epsilon}`.

    Args:
        num_features: C.
        eps: added to the variance (default 1e-5).
        momentum: running-statistics factor (default 0.1); None for a cumulative average.
        affine: learn ``weight`` and ``bias`` (default True).
        track_running_stats: keep running statistics (default True); without them
            eval mode uses batch statistics too.
        dtype: parameter dtype (default float32).

    Shape:
        input ``(N, C)`` or ``(N, C, L)``; output the same shape.

    Attributes:
        weight: ``(C,)`` initialized to 1.  bias: ``(C,)`` initialized to 0.
        running_mean ``(C,)`` = 0, running_var ``(C,)`` = 1, num_batches_tracked (int64) = 0.

    Examples::

        >>> bn = BatchNorm1d(3)
        >>> y = bn(np.random.rand(8, 3).astype(np.float32))
        >>> grad_x = bn.backward(np.ones_like(y))
    """

    _expected_ndim = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    r"""Batch normalization over a 4-D ``(N, C, H, W)`` input, per channel over N*H*W values.

    Forward: :math:`y = \gamma_c (x-\mu_c)/\sqrt{\sigma_c^2+\epsilon} + \beta_c` with the
    batch mean and biased variance of channel c in training mode (the running statistics
    in eval mode). Running statistics follow torch: ``(1 - momentum) * running +
    momentum * batch`` with the unbiased variance ``sigma^2 * m / (m - 1)``, m = N*H*W.

    Backward (compact form), :math:`\hat g = g\gamma`, sums over N, H, W:

    .. math::

        \frac{\partial L}{\partial x} = \frac{1}{m\sqrt{\sigma^2+\epsilon}}
            \Big(m\hat g - \sum\hat g - \hat x\sum \hat g\hat x\Big), \qquad
        \frac{\partial L}{\partial\gamma} = \sum g\hat x, \qquad
        \frac{\partial L}{\partial\beta} = \sum g

    and :math:`\partial L/\partial x = \hat g/\sqrt{\sigma^2_{run}+\epsilon}` in eval mode.

    Args and attributes as :class:`BatchNorm1d` (weight = 1, bias = 0, running_mean = 0,
    running_var = 1, num_batches_tracked = 0).

    Shape:
        input ``(N, C, H, W)``; output the same shape.
    """

    _expected_ndim = (4,)
    _layout = "(N, C, H, W)"


class InstanceNorm2d(_NormBase):
    r"""Instance normalization (Ulyanov et al. 2016) of a ``(N, C, H, W)`` input.

    Each sample's channel is standardized over its own H*W positions:

    .. math::

        \mu_{nc} = \frac{1}{HW}\sum_{h,w} x_{nchw}, \quad
        \sigma^2_{nc} = \frac{1}{HW}\sum_{h,w}(x_{nchw}-\mu_{nc})^2, \quad
        y = \gamma_c\frac{x-\mu_{nc}}{\sqrt{\sigma^2_{nc}+\epsilon}} + \beta_c

    The same in training and eval mode (torch's default ``track_running_stats=False``).
    With ``track_running_stats=True`` training also updates running statistics (the
    batch average of the per-instance mean and unbiased variance, torch's momentum
    convention) and eval mode normalizes with them.

    Backward: the compact batch-norm formula per (n, c) over m = H*W values,
    :math:`\hat g = g\gamma`:

    .. math::

        \frac{\partial L}{\partial x_{nc}} = \frac{1}{m\sqrt{\sigma^2_{nc}+\epsilon}}
            \Big(m\hat g - \sum_{hw}\hat g - \hat x\sum_{hw}\hat g\hat x\Big), \quad
        \frac{\partial L}{\partial\gamma} = \sum_{n,h,w} g\hat x, \quad
        \frac{\partial L}{\partial\beta} = \sum_{n,h,w} g

    Args (torch's order and defaults):
        num_features: C.  eps: 1e-5.  momentum: 0.1 (used with running statistics).
        affine: learn ``weight`` (init 1) and ``bias`` (init 0), default False.
        track_running_stats: default False.  dtype: of parameters/buffers (float32);
        without either, the layer computes in its input's floating dtype.

    Shape:
        input ``(N, C, H, W)`` with H*W > 1; output the same shape.
    """

    _expected_ndim = (4,)
    _layout = "(N, C, H, W)"
    _backward_op = staticmethod(F.instance_norm_backward)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False,
                 dtype=np.float32):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)

    def forward(self, input):
        x = self._check_input(input)
        use_input_stats = self.training or not self.track_running_stats
        out, ctx = F.instance_norm_forward(
            x, self.running_mean, self.running_var, *self._param_data(),
            use_input_stats=use_input_stats, momentum=0.0 if self.momentum is None else self.momentum,
            eps=self.eps,
        )
        self._save_for_backward(out, ctx)
        return out


class AdaIN(Module):
    r"""Adaptive instance normalization (Huang & Belongie 2017): ``adain(content, style)``.

    The content features are instance-normalized, then take the style features'
    per-instance, per-channel standard deviation and mean (there are no learned
    parameters; the affine ``gamma, beta`` of instance norm come from the style):

    .. math::

        \mathrm{AdaIN}(x, y) = \sigma(y)\,\frac{x-\mu(x)}{\sigma(x)} + \mu(y), \qquad
        \sigma(x)_{nc} = \sqrt{\tfrac{1}{HW}\textstyle\sum_{hw}(x_{nchw}-\mu(x)_{nc})^2+\epsilon}

    (the notes' eq. 8.24; :math:`\sigma` uses the biased variance plus eps for both inputs,
    as in the paper).

    Backward returns a TUPLE ``(grad_content, grad_style)``, the gradients with respect to
    both inputs: with :math:`\hat x = (x-\mu(x))/\sigma(x)`, :math:`\hat y` likewise,
    m = H*W of the content and m' of the style,

    .. math::

        \frac{\partial L}{\partial x} = \frac{\sigma(y)}{m\,\sigma(x)}
            \Big(m g - \sum g - \hat x\sum g\hat x\Big), \qquad
        \frac{\partial L}{\partial y} = \frac{1}{m'}\Big(\sum g + \hat y\sum g\hat x\Big)

    (sums over each (n, c)'s content positions).

    Args:
        eps: added to both variances (default 1e-5).

    Shape:
        content ``(N, C, H, W)``, style ``(N, C, H', W')`` (any spatial size); output the
        content's shape, in the content's floating dtype (style cast to it).

    Examples::

        >>> import numpy as np
        >>> content, style = np.ones((2, 3, 8, 8)), np.ones((2, 3, 5, 5))
        >>> adain = AdaIN()
        >>> out = adain(content, style)
        >>> grad_content, grad_style = adain.backward(np.ones_like(out))
        >>> out.shape, grad_style.shape
        ((2, 3, 8, 8), (2, 3, 5, 5))
    """

    def __init__(self, eps=1e-5):
        super().__init__()
        self.eps = check_number(eps, "eps", 0.0)

    def forward(self, content, style):
        x = self._as_input(content, "content")
        y = self._as_input(style, "style")
        for name, value in (("content", x), ("style", y)):
            if value.ndim != 4:
                raise ValueError(f"AdaIN expects a 4-D {name} (N, C, H, W), got shape {value.shape}")
        out, ctx = F.adaptive_instance_norm_forward(x, y, self.eps)
        self._save_for_backward(out, ctx)
        return out

    def backward(self, grad_output):
        """Returns ``(grad_content, grad_style)``."""
        return F.adaptive_instance_norm_backward(*self._saved_for_backward(grad_output))

    def extra_repr(self):
        return f"eps={self.eps}"
