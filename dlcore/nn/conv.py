"""Convolution layers: Conv2d and ConvTranspose2d.

The layers hold the weight and bias in torch's layouts and initialization; the work
(im2col + GEMM forward, GEMM + col2im backward) is ``F.conv2d_forward`` /
``F.conv2d_backward`` and their transposed twins.

Input gradients on demand: ``backward`` returns dL/dinput, as torch computes it for an
input that requires grad. A layer whose input needs no gradient -- the first layer, fed
with data -- can skip that work (a third of its backward): set
``layer.needs_input_grad = False``, or pass ``backward(grad, input_grad=False)``; backward
then returns None. :meth:`dlcore.nn.Sequential.backward` accepts ``input_grad=False`` too
and hands it to its first layer.
"""
import math

import numpy as np

from .. import functional as F
from .._checks import check_int, float_dtype, pair
from . import init
from .module import Module, Parameter

__all__ = ["Conv2d", "ConvTranspose2d"]


def _check_image(module, x, channels):
    """A (N, C, H, W) input with ``channels`` channels."""
    name = type(module).__name__
    if x.ndim != 4:
        raise ValueError(f"{name} expects a 4-D input (N, C, H, W), got shape {x.shape}")
    if x.shape[1] != channels:
        raise ValueError(f"{name} expects input with in_channels={channels} channels (dim 1), got shape {x.shape}")


class _ConvNd(Module):
    #: backward(grad, input_grad=...) is understood (Sequential asks before passing it on)
    accepts_input_grad = True

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                 dtype):
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.out_channels = check_int(out_channels, "out_channels", 1)
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = pair(stride, "stride", 1)
        self.padding = pair(padding, "padding", 0)
        self.dilation = pair(dilation, "dilation", 1)
        self.groups = check_int(groups, "groups", 1)
        for name, count in (("in_channels", self.in_channels), ("out_channels", self.out_channels)):
            if count % self.groups:
                raise ValueError(f"{name} ({count}) must be divisible by groups ({self.groups})")
        #: False: backward skips dL/dinput and returns None (see the module docstring)
        self.needs_input_grad = True
        self._dtype = float_dtype(dtype)

    def reset_parameters(self):
        """torch's init: kaiming_uniform_(weight, a=sqrt(5)) and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

        With gain = sqrt(2 / (1 + a^2)) = sqrt(1/3), the weight bound is
        gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in).
        """
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            # torch's fan_in: weight.shape[1] * kh * kw (C_in for Conv2d, C_out for ConvTranspose2d)
            fan_in = self.weight.shape[1] * self.kernel_size[0] * self.kernel_size[1]
            bound = 1.0 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound)

    def _bias_data(self):
        return None if self.bias is None else self.bias.data

    def backward(self, grad_output, input_grad=None):
        """Returns dL/dx; adds dL/dweight (and dL/dbias) into the parameters' ``.grad``.

        ``input_grad`` (bool, default ``self.needs_input_grad``, itself True): False skips
        computing dL/dx and returns None.
        """
        g, ctx = self._saved_for_backward(grad_output)
        want = self.needs_input_grad if input_grad is None else bool(input_grad)
        grad_input, grad_weight, grad_bias = self._backward_op(g, ctx, want)
        self.weight.accumulate_grad(grad_weight)
        if self.bias is not None:
            self.bias.accumulate_grad(grad_bias)
        return grad_input

    def extra_repr(self):
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")
        if getattr(self, "output_padding", (0, 0)) != (0, 0):
            text += f", output_padding={self.output_padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + ("" if self.bias is not None else ", bias=False")


class Conv2d(_ConvNd):
    r"""2-D convolution (cross-correlation, as torch) over an ``(N, C_in, H, W)`` input.

    Forward, with :math:`x_p` the input zero-padded by ``padding``, stride s and dilation d
    (groups = 1; with G groups, output channel o sees only the C_in/G input channels of its
    group, and W has C_in/G input channels):

    .. math::

        y_{n,o,i,j} = b_o + \sum_{c=0}^{C_{in}-1}\sum_{p=0}^{k_h-1}\sum_{q=0}^{k_w-1}
                      W_{o,c,p,q}\, x_{p;\,n,c,\,s_h i+d_h p,\,s_w j+d_w q}

    computed as im2col + one GEMM per group: ``cols (N, C_in*kh*kw, H_out*W_out)``,
    ``y = W_flat @ cols``.

    Backward, with :math:`g = \partial L/\partial y`:

    .. math::

        \frac{\partial L}{\partial W_{o,c,p,q}} = \sum_{n,i,j} g_{n,o,i,j}\,x_{p;\,n,c,\,s_h i+d_h p,\,s_w j+d_w q},
        \qquad \frac{\partial L}{\partial b_o} = \sum_{n,i,j} g_{n,o,i,j},

    .. math::

        \frac{\partial L}{\partial x_p} = \mathrm{col2im}\big(W_{flat}^\top g\big)
        \quad(\text{every input pixel collects } W_{o,c,p,q}\,g_{n,o,i,j}
        \text{ from each window that saw it; the padding is then cropped}),

    i.e. dL/dx is the transposed convolution of g with the same weight. It is computed only
    when asked (``needs_input_grad``, default True; see the module docstring).

    Args (torch's order):
        in_channels (int): C_in.  out_channels (int): C_out.
        kernel_size (int or pair): (kh, kw).  stride (int or pair, default 1): >= 1.
        padding (int or pair, default 0): zeros added on each side, >= 0.
        dilation (int or pair, default 1): spacing of the kernel's taps, >= 1.
        groups (int, default 1): divides C_in and C_out; group g's C_out/groups outputs see
        only its C_in/groups inputs (groups = C_in: a depthwise convolution).
        bias (bool, default True).  dtype (default float32).

    Shape:
        input ``(N, C_in, H, W)``, output ``(N, C_out, H_out, W_out)`` with
        ``H_out = floor((H + 2*padding_h - dilation_h*(kh - 1) - 1) / stride_h) + 1``
        (W likewise); the dilated kernel must fit in the padded input.

    Attributes:
        weight: ``(C_out, C_in/groups, kh, kw)``, init U(-bound, bound) with torch's
            kaiming_uniform(a=sqrt(5)): bound = gain*sqrt(3/fan_in) = 1/sqrt(fan_in),
            fan_in = C_in/groups*kh*kw.
        bias: ``(C_out,)``, init U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        needs_input_grad (bool): False makes ``backward`` skip dL/dx and return None.

    Examples::

        >>> conv = Conv2d(1, 6, 5, padding=2)
        >>> y = conv(np.zeros((8, 1, 28, 28), np.float32))    # (8, 6, 28, 28)
        >>> grad_x = conv.backward(np.ones_like(y))
        >>> conv.backward(np.ones_like(y), input_grad=False) is None   # weights' grads only
        True
    """

    def _backward_op(self, g, ctx, input_grad):
        return F.conv2d_backward(g, ctx, input_grad)

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, dtype=np.float32):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         dtype)
        kh, kw = self.kernel_size
        self.weight = Parameter(np.empty((self.out_channels, self.in_channels // self.groups, kh, kw),
                                         dtype=self._dtype))
        self.bias = Parameter(np.empty(self.out_channels, dtype=self._dtype)) if bias else None
        self.reset_parameters()

    def forward(self, x):
        x = self._as_input(x)
        _check_image(self, x, self.in_channels)
        out, ctx = F.conv2d_forward(x, self.weight.data, self._bias_data(), self.stride, self.padding,
                                    self.dilation, self.groups)
        self._save_for_backward(out, ctx)
        return out


class ConvTranspose2d(_ConvNd):
    r"""2-D transposed convolution ("deconvolution"): the gradient of Conv2d w.r.t. its input.

    Forward: every input pixel scatters a kernel-sized patch, weighted by its value, into
    the (padded) output; overlapping patches add; then ``padding`` is cropped from each side:

    .. math::

        y_{p;\,n,o,\,s_h i+p,\,s_w j+q} \mathrel{+}= \sum_{c} x_{n,c,i,j}\, W_{c,o,p,q},
        \qquad y = \mathrm{crop}(y_p) + b_o

    computed as one GEMM ``cols = W_flat^T @ x`` then col2im.

    Backward, with :math:`g = \partial L/\partial y` zero-padded to :math:`g_p`:

    .. math::

        \frac{\partial L}{\partial x_{n,c,i,j}} = \sum_{o,p,q} W_{c,o,p,q}\, g_{p;\,n,o,\,s_h i+p,\,s_w j+q}
        \quad(\text{a Conv2d of } g \text{ with the same weight}),

    .. math::

        \frac{\partial L}{\partial W_{c,o,p,q}} = \sum_{n,i,j} x_{n,c,i,j}\, g_{p;\,n,o,\,s_h i+p,\,s_w j+q},
        \qquad \frac{\partial L}{\partial b_o} = \sum_{n,h,w} g_{n,o,h,w}.

    (Shown for groups = 1 and dilation 1; a dilation d puts tap (p, q) at
    ``(s_h i + d_h p, s_w j + d_w q)``, and groups pair input and output channels group by
    group, as in Conv2d.) dL/dx is computed only when asked (``needs_input_grad``).

    Args (torch's order):
        in_channels, out_channels, kernel_size, stride (default 1), padding (default 0)
        as Conv2d; output_padding (int or pair, default 0): extra rows/columns added on
        one side of the output, each < stride or < dilation (it picks among the input
        sizes a strided Conv2d maps to the same size); groups (default 1); bias (default
        True); dilation (int or pair, default 1); dtype (default float32).

    Shape:
        input ``(N, C_in, H, W)``, output ``(N, C_out, H_out, W_out)`` with
        ``H_out = (H - 1)*stride_h - 2*padding_h + dilation_h*(kh - 1) + output_padding_h + 1``
        (W likewise), which must be >= 1.

    Attributes:
        weight: ``(C_in, C_out/groups, kh, kw)`` (torch's layout for transposed
            convolution), init U(-1/sqrt(fan_in), 1/sqrt(fan_in)) by torch's
            kaiming_uniform(a=sqrt(5)), where torch computes fan_in = weight.shape[1]*kh*kw.
        bias: ``(C_out,)``, init U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with the same fan_in.
        needs_input_grad (bool): False makes ``backward`` skip dL/dx and return None.

    Examples::

        >>> up = ConvTranspose2d(16, 8, 2, stride=2)
        >>> y = up(np.zeros((4, 16, 7, 7), np.float32))    # (4, 8, 14, 14)
    """

    def _backward_op(self, g, ctx, input_grad):
        return F.conv_transpose2d_backward(g, ctx, input_grad)

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0,
                 groups=1, bias=True, dilation=1, dtype=np.float32):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         dtype)
        self.output_padding = pair(output_padding, "output_padding", 0)
        for axis in (0, 1):
            if self.output_padding[axis] >= max(self.stride[axis], self.dilation[axis]):
                raise ValueError(f"output_padding must be smaller than stride {self.stride} or dilation "
                                 f"{self.dilation}, got output_padding {self.output_padding}")
        kh, kw = self.kernel_size
        self.weight = Parameter(np.empty((self.in_channels, self.out_channels // self.groups, kh, kw),
                                         dtype=self._dtype))
        self.bias = Parameter(np.empty(self.out_channels, dtype=self._dtype)) if bias else None
        self.reset_parameters()

    def output_shape(self, input_shape):
        """``(N, C_out, H_out, W_out)`` for an input of shape ``(N, C_in, H, W)``."""
        n, _, h, w = input_shape
        sizes = [(size - 1) * s - 2 * p + d * (k - 1) + op + 1 for size, s, p, k, op, d in
                 zip((h, w), self.stride, self.padding, self.kernel_size, self.output_padding,
                     self.dilation)]
        return (n, self.out_channels, sizes[0], sizes[1])

    def forward(self, x):
        x = self._as_input(x)
        _check_image(self, x, self.in_channels)
        shape = self.output_shape(x.shape)
        if min(shape[2:]) < 1:
            raise ValueError(f"ConvTranspose2d output would be empty: input {x.shape[2:]} with "
                             f"kernel_size {self.kernel_size}, stride {self.stride}, padding {self.padding} "
                             f"gives output size {shape[2:]}")
        out, ctx = F.conv_transpose2d_forward(x, self.weight.data, self._bias_data(), self.stride,
                                              self.padding, self.output_padding, self.groups, self.dilation)
        self._save_for_backward(out, ctx)
        return out
