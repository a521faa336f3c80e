r"""Convolutions, and the im2col / col2im pair they are built from.

Notation: input ``x`` of shape (N, C, H, W), weight (F, C/G, KH, KW) with G groups, stride
(SH, SW), zero padding (PH, PW), dilation (DH, DW). Like every deep-learning library (and unlike the signal-processing
definition ``S(i, j) = sum_{m,n} I(m, n) K(i-m, j-n)`` in the study notes), ``conv2d``
computes a *cross-correlation*: the kernel is not flipped. The notes' output size
``h_o = (h_i - h_k)/h_s + 1`` assumes no padding and a stride that divides evenly; in
general (as PyTorch):

.. math::

    OH = \left\lfloor \frac{H + 2 PH - DH (KH - 1) - 1}{SH} \right\rfloor + 1, \qquad
    OW = \left\lfloor \frac{W + 2 PW - DW (KW - 1) - 1}{SW} \right\rfloor + 1

(a dilated window's taps are DH rows and DW columns apart, so it spans DH*(KH-1)+1 rows).

Each op validates once, then calls the active backend's kernels (compiled or NumPy,
see :mod:`dlcore.backends`), which do im2col/col2im and one matrix product per image and
group (the compiled kernels: per tile of images, see ``src/dlcore/conv.pyx``; for few
input channels in float32 they convolve directly, without im2col). The compiled kernels
get ``dlcore.backends.kernel_threads()`` threads: fewer on a busy machine.
"""
import numpy as np

from .._checks import as_floating, check_int, check_ndim, check_window_fits, pair
from ..backends import kernel_threads, kernels, workspace

__all__ = [
    "conv2d",
    "conv2d_forward",
    "conv2d_backward",
    "conv_transpose2d",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward",
    "unfold",
    "fold",
]


class _ConvCtx:
    """What a convolution's backward needs: the (cast, contiguous) input and weight,
    whether there was a bias, the window (stride, padding, dilation), the groups and the
    output's shape."""

    __slots__ = ("x", "weight", "has_bias", "stride", "padding", "dilation", "groups", "out_shape")

    def __init__(self, x, weight, has_bias, stride, padding, dilation, groups, out_shape):
        self.x, self.weight, self.has_bias = x, weight, has_bias
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.groups, self.out_shape = groups, out_shape


# ---- validation --------------------------------------------------------------------------

def _weight(weight, layout):
    weight = as_floating(weight, "weight")
    check_ndim(weight, 4, "weight", layout)
    if weight.size == 0:
        raise ValueError(f"weight must have no zero-sized dimension {layout}, got shape {weight.shape}")
    return weight


def _image(x, name, dtype, channels, channel_source):
    """``x`` as a C-contiguous (N, C, H, W) array of ``dtype`` with C == channels."""
    x = as_floating(x, name, dtype=dtype)
    check_ndim(x, 4, name, "(N, C, H, W)")
    if x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels ({channel_source}) in its "
                         f"shape (N, C, H, W), got shape {x.shape}")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name} must have a non-empty H x W plane, got shape {x.shape}")
    return x


def _bias(bias, channels, dtype):
    if bias is None:
        return None
    bias = as_floating(bias, "bias", dtype=dtype)
    if bias.shape != (channels,):
        raise ValueError(f"bias must have shape ({channels},) (one value per output channel), "
                         f"got shape {bias.shape}")
    return bias


def _groups(groups, channels):
    """``groups`` as an int >= 1 dividing every count in ``channels`` ({name: count})."""
    groups = check_int(groups, "groups", 1)
    for name, count in channels.items():
        if count % groups:
            raise ValueError(f"groups={groups} must divide {name} ({count})")
    return groups


def _window(size, kernel, stride, padding, dilation=(1, 1)):
    """(OH, OW) of a window sweep, after checking the (dilated) window fits the padded plane."""
    check_window_fits(size, kernel, padding, "x", dilation)
    (H, W), (KH, KW), (SH, SW), (PH, PW), (DH, DW) = size, kernel, stride, padding, dilation
    EH, EW = DH * (KH - 1) + 1, DW * (KW - 1) + 1   # the window's extent, taps DH/DW apart
    return (H + 2 * PH - EH) // SH + 1, (W + 2 * PW - EW) // SW + 1


def _grad_output(grad_output, ctx):
    grad_output = as_floating(grad_output, "grad_output", dtype=ctx.weight.dtype)
    if grad_output.shape != ctx.out_shape:
        raise ValueError(f"grad_output must have the output's shape {ctx.out_shape}, "
                         f"got shape {grad_output.shape}")
    return grad_output


def _window_args(stride, padding, dilation):
    return (pair(stride, "stride", minimum=1), pair(padding, "padding", minimum=0),
            pair(dilation, "dilation", minimum=1))


# ---- conv2d ------------------------------------------------------------------------------

def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    r"""2-D convolution (cross-correlation) over an NCHW batch, and the context for backward.

    .. math::

        \text{out}[n, f, oh, ow] = b_f + \sum_{c=0}^{C/G-1} \sum_{kh=0}^{KH-1} \sum_{kw=0}^{KW-1}
            w[f, c, kh, kw] \; x_{\text{pad}}[n, g C/G + c, oh \cdot SH + kh \cdot DH,
            ow \cdot SW + kw \cdot DW]

    with ``g = f // (F/G)`` the group of output channel f, computed as
    ``out[n, g] = W2[g] @ im2col(x)[n, g] + b`` with ``W2 = weight.reshape(G, F/G, C/G*KH*KW)``.

    Args:
        x: input of shape (N, C, H, W); cast to the weight's dtype.
        weight: (F, C/G, KH, KW), float32 or float64 (it fixes the dtype of the computation).
        bias: (F,) or None (default: None).
        stride: int or (SH, SW), each >= 1 (default: 1).
        padding: int or (PH, PW) zero rows/columns added on each side, each >= 0 (default: 0).
        dilation: int or (DH, DW), each >= 1: the spacing of the window's taps (default: 1).
        groups: int G >= 1 dividing C and F: input channels and output channels split into
            G groups, group g's outputs seeing only group g's inputs (default: 1).

    Returns:
        ``(out, ctx)``: out of shape (N, F, OH, OW) with
        ``OH = floor((H + 2*PH - DH*(KH - 1) - 1) / SH) + 1`` (OW likewise); ``ctx`` for
        :func:`conv2d_backward`.
    """
    weight = _weight(weight, "(out_channels, in_channels/groups, kH, kW)")
    F, Cg, KH, KW = weight.shape
    groups = check_int(groups, "groups", 1)
    x = _image(x, "x", weight.dtype, Cg * groups,
               "weight.shape[1]" if groups == 1 else f"weight.shape[1]*groups = {Cg}*{groups}")
    groups = _groups(groups, {"out_channels": F})
    bias = _bias(bias, F, weight.dtype)
    stride, padding, dilation = _window_args(stride, padding, dilation)
    OH, OW = _window(x.shape[2:], (KH, KW), stride, padding, dilation)
    out = workspace.empty((x.shape[0], F, OH, OW), weight.dtype)  # reused when no one holds it any more
    kernels().conv2d_forward(x, weight, bias, out, *stride, *padding, *dilation, groups,
                             kernel_threads())
    return out, _ConvCtx(x, weight, bias is not None, stride, padding, dilation, groups, out.shape)


def conv2d_backward(grad_output, ctx, input_grad=True):
    r"""Gradients of :func:`conv2d_forward` given ``grad_output`` = dL/dout (N, F, OH, OW).

    With ``cols = im2col(x)`` viewed as (N, G, C/G*KH*KW, OH*OW) and ``G_ = grad_output``
    viewed as (N, G, F/G, OH*OW), for each group g:

    .. math::

        \frac{\partial L}{\partial W_2[g]} = \sum_n G_[n, g] \, \text{cols}[n, g]^T, \qquad
        \frac{\partial L}{\partial b_f} = \sum_{n, oh, ow} G_[n, f, oh, ow], \qquad
        \frac{\partial L}{\partial x} = \text{col2im}\big(W_2[g]^T G_[n, g]\big),

    i.e. ``grad_input[n, c, h, w]`` sums ``w[f, c, kh, kw] * G_[n, f, oh, ow]`` over every
    (f, kh, kw, oh, ow) whose window put pixel (h, w) at offset (kh, kw). The bias sum is
    accumulated in float64.

    Args:
        grad_output: dL/dout, the forward output's shape.
        ctx: the forward's context.
        input_grad (bool): compute dL/dx (default True). False skips that work -- about a
            third of the backward -- and returns None in its place: for a first layer,
            whose input (the data) needs no gradient; torch skips it likewise when the
            input does not require grad.

    Returns:
        ``(grad_input, grad_weight, grad_bias)``, shaped like x, weight and bias;
        ``grad_input`` is None when not asked for, ``grad_bias`` when the forward had no bias.

    ``ctx`` keeps a reference to the forward's input (as torch saves tensors): modifying
    that array in place between forward and backward changes grad_weight.
    """
    g = _grad_output(grad_output, ctx)
    x, weight = ctx.x, ctx.weight
    grad_input = workspace.empty_like(x) if input_grad else None
    grad_weight = np.empty_like(weight)
    grad_bias = np.empty(weight.shape[0], weight.dtype) if ctx.has_bias else None
    kernels().conv2d_backward(x, weight, g, grad_input, grad_weight, grad_bias, *ctx.stride,
                              *ctx.padding, *ctx.dilation, ctx.groups, kernel_threads())
    return grad_input, grad_weight, grad_bias


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution as ``torch.nn.functional.conv2d``; see :func:`conv2d_forward`."""
    return conv2d_forward(x, weight, bias, stride, padding, dilation, groups)[0]


# ---- conv_transpose2d --------------------------------------------------------------------

def conv_transpose2d_forward(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                             dilation=1):
    r"""2-D transposed convolution (conv2d's input gradient, run forward), with its context.

    Each input pixel scatters ``x[n, c, h, w] * w[c, :, :, :]`` into the output at
    ``(h*SH - PH + kh*DH, w*SW - PW + kw*DW)``, within its group's output channels:

    .. math::

        \text{out}[n, f, i, j] = b_f + \sum_{c, h, w, kh, kw \,:\, h SH - PH + kh DH = i,\;
            w SW - PW + kw DW = j} x[n, c, h, w] \; w[c, f - g F/G, kh, kw]

    (c running over group g's input channels), computed as
    ``out = col2im(W2[g].T @ x[n, g]) + b`` with ``W2 = weight.reshape(G, C_in/G, F/G*KH*KW)``.
    This is exactly the gradient of ``conv2d(·, weight, stride, padding, dilation, groups)``
    with respect to its input, which is why the layer upsamples by the stride.

    Args:
        x: (N, C_in, H, W), cast to the weight's dtype.
        weight: (C_in, C_out/G, KH, KW) -- torch's layout, in/out swapped relative to conv2d.
        bias: (C_out,) or None (default: None).
        stride: int or pair, >= 1 (default: 1).
        padding: int or pair, >= 0: rows/columns cropped from each side (default: 0).
        output_padding: int or pair, 0 <= output_padding < max(stride, dilation): extra
            rows/columns added at the bottom/right to pick one of the output sizes a strided
            conv2d maps to the same input size (default: 0).
        groups: int >= 1 dividing C_in and C_out (default: 1).
        dilation: int or pair, >= 1 (default: 1).

    Returns:
        ``(out, ctx)`` with out of shape (N, C_out, HO, WO),
        ``HO = (H - 1)*SH - 2*PH + DH*(KH - 1) + output_padding_h + 1`` (and likewise WO).
    """
    weight = _weight(weight, "(in_channels, out_channels/groups, kH, kW)")
    C_in, Cg_out, KH, KW = weight.shape
    x = _image(x, "x", weight.dtype, C_in, "weight.shape[0]")
    groups = _groups(groups, {"in_channels": C_in})
    C_out = Cg_out * groups
    bias = _bias(bias, C_out, weight.dtype)
    stride, padding, dilation = _window_args(stride, padding, dilation)
    output_padding = pair(output_padding, "output_padding", minimum=0)
    for i in (0, 1):
        if output_padding[i] >= max(stride[i], dilation[i]):
            raise ValueError(f"output_padding must be smaller than stride {stride} or dilation "
                             f"{dilation} in each dimension, got {output_padding}")
    HO, WO = ((x.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (weight.shape[2 + i] - 1)
              + output_padding[i] + 1 for i in (0, 1))
    if HO < 1 or WO < 1:
        raise ValueError(f"conv_transpose2d output size must be positive, got {(HO, WO)} from input "
                         f"{x.shape[2:]}, kernel {(KH, KW)}, stride {stride}, padding {padding}, "
                         f"dilation {dilation}, output_padding {output_padding}")
    out = np.empty((x.shape[0], C_out, HO, WO), dtype=weight.dtype)
    kernels().conv_transpose2d_forward(x, weight, bias, out, *stride, *padding, *dilation, groups,
                                       kernel_threads())
    return out, _ConvCtx(x, weight, bias is not None, stride, padding, dilation, groups, out.shape)


def conv_transpose2d_backward(grad_output, ctx, input_grad=True):
    r"""Gradients of :func:`conv_transpose2d_forward` given dL/dout (N, C_out, HO, WO).

    The forward is linear in x and in the weight, so its gradients are its adjoints; with
    ``cols = im2col(grad_output)`` viewed as (N, G, C_out/G*KH*KW, H*W), for each group g:

    .. math::

        \frac{\partial L}{\partial x}[n, g] = W_2[g] \, \text{cols}[n, g]
            \;(= \text{conv2d}(G_, \text{weight}, \ldots)), \qquad
        \frac{\partial L}{\partial W_2[g]} = \sum_n x[n, g] \, \text{cols}[n, g]^T, \qquad
        \frac{\partial L}{\partial b_f} = \sum_{n, i, j} G_[n, f, i, j].

    ``input_grad=False`` skips dL/dx and returns None in its place (see
    :func:`conv2d_backward`).

    Returns:
        ``(grad_input, grad_weight, grad_bias)``; ``grad_bias`` is None without a bias.
    """
    g = _grad_output(grad_output, ctx)
    x, weight = ctx.x, ctx.weight
    grad_input = np.empty_like(x) if input_grad else None
    grad_weight = np.empty_like(weight)
    grad_bias = np.empty(g.shape[1], weight.dtype) if ctx.has_bias else None
    kernels().conv_transpose2d_backward(x, weight, g, grad_input, grad_weight, grad_bias,
                                        *ctx.stride, *ctx.padding, *ctx.dilation, ctx.groups,
                                        kernel_threads())
    return grad_input, grad_weight, grad_bias


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed convolution as ``torch.nn.functional.conv_transpose2d``; see
    :func:`conv_transpose2d_forward`."""
    return conv_transpose2d_forward(x, weight, bias, stride, padding, output_padding, groups, dilation)[0]


# ---- unfold / fold -------------------------------------------------------------------------

def unfold(x, kernel_size, stride=1, padding=0, dilation=1):
    r"""im2col: every KH x KW window of ``x`` as a column (torch's ``F.unfold``).

    .. math::

        \text{cols}[n, c \cdot KH \cdot KW + kh \cdot KW + kw, oh \cdot OW + ow]
            = x_{\text{pad}}[n, c, oh \cdot SH + kh, ow \cdot SW + kw]

    Args:
        x: (N, C, H, W), float32 or float64.
        kernel_size: int or (KH, KW), >= 1.
        stride: int or pair, >= 1 (default: 1).
        padding: int or pair, >= 0 (default: 0).
        dilation: int or pair, >= 1: spacing of the window's taps (default: 1).

    Returns:
        cols of shape (N, C*KH*KW, L), L = OH*OW (the floor formula of the module docstring).
        Its gradient is :func:`fold` of the upstream gradient (they are adjoint).
    """
    x = as_floating(x, "x")
    check_ndim(x, 4, "x", "(N, C, H, W)")
    if x.shape[1] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"x must have non-empty C, H and W dimensions, got shape {x.shape}")
    kernel = pair(kernel_size, "kernel_size", minimum=1)
    stride, padding, dilation = _window_args(stride, padding, dilation)
    OH, OW = _window(x.shape[2:], kernel, stride, padding, dilation)
    N, C = x.shape[:2]
    cols = np.empty((N, C * kernel[0] * kernel[1], OH * OW), dtype=x.dtype)
    kernels().im2col(x, cols, *kernel, *stride, *padding, *dilation, kernel_threads())
    return cols


def fold(cols, output_size, kernel_size, stride=1, padding=0, dilation=1):
    r"""col2im: sum columns back into images (torch's ``F.fold``), the adjoint of :func:`unfold`.

    .. math::

        x[n, c, h, w] = \sum_{kh, kw, oh, ow \,:\, oh \cdot SH - PH + kh = h,\;
            ow \cdot SW - PW + kw = w} \text{cols}[n, c \cdot KH \cdot KW + kh \cdot KW + kw,
            oh \cdot OW + ow]

    so ``<unfold(x), cols> == <x, fold(cols)>`` and ``fold(unfold(x))`` multiplies each
    pixel by the number of windows that cover it.

    Args:
        cols: (N, C*KH*KW, L), float32 or float64, with L the number of window positions
            on the (padded) output plane.
        output_size: int or (H, W) of the images to rebuild.
        kernel_size, stride, padding, dilation: as for :func:`unfold`.

    Returns:
        x of shape (N, C, H, W).
    """
    cols = as_floating(cols, "cols")
    check_ndim(cols, 3, "cols", "(N, C*kH*kW, L)")
    H, W = pair(output_size, "output_size", minimum=1)
    kernel = pair(kernel_size, "kernel_size", minimum=1)
    stride, padding, dilation = _window_args(stride, padding, dilation)
    KK = kernel[0] * kernel[1]
    if cols.shape[1] == 0 or cols.shape[1] % KK:
        raise ValueError(f"cols.shape[1] must be a positive multiple of kH*kW = {KK}, "
                         f"got shape {cols.shape}")
    OH, OW = _window((H, W), kernel, stride, padding, dilation)
    if cols.shape[2] != OH * OW:
        raise ValueError(f"cols.shape[2] must be the number of window positions {OH}*{OW} = {OH * OW} "
                         f"for output_size {(H, W)}, kernel_size {kernel}, stride {stride}, "
                         f"padding {padding}, got shape {cols.shape}")
    x = np.empty((cols.shape[0], cols.shape[1] // KK, H, W), dtype=cols.dtype)
    kernels().col2im(cols, x, *kernel, *stride, *padding, *dilation, kernel_threads())
    return x

