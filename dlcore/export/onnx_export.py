"""``to_onnx(model, sample_input, path)``: the model's inference graph as an ONNX file.

The exporter walks the model while running it on ``sample_input``: each layer adds its ONNX
nodes and weights (initializers) and passes the name of its output on, and the real
forward pass gives every intermediate shape (needed by a few layers, e.g. a Flatten that
is not ONNX's "flatten to 2-D"). The graph is the *inference* computation: BatchNorm uses
its running statistics and Dropout is the identity, as ``model.eval()`` computes.
The batch dimension stays symbolic (``"N"``), so the file runs on any batch size.
"""
import numpy as np

from .. import nn
from ..models import networks

__all__ = ["to_onnx"]

OPSET = 17


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("dlcore.export.to_onnx needs the onnx package: "
                          "pip install onnx onnxruntime (or, from a dlcore source checkout, pip install '.[export]')") from None
    return onnx


class _Graph:
    """The nodes and initializers written so far, with unique names."""

    def __init__(self, onnx):
        self.onnx, self.nodes, self.initializers, self._count = onnx, [], [], 0

    def name(self, hint):
        self._count += 1
        return f"{hint or 'model'}/{self._count}"

    def weight(self, array, hint):
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, hint, **attrs):
        out = self.name(f"{hint}/{op}")
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _pads(padding):
    ph, pw = padding
    return [ph, pw, ph, pw]  # ONNX: begin of each spatial axis, then end of each


def _emit(g, m, x_name, x, path):
    """Add module ``m`` applied to input ``x_name`` (value ``x``); return (name, value)."""
    kind = type(m)
    y = None if kind in (nn.Sequential, nn.Residual, networks.Autoencoder) else m(x)
    if kind is nn.Sequential:
        for child_name, child in m.named_children():
            x_name, x = _emit(g, child, x_name, x, f"{path}.{child_name}" if path else child_name)
        return x_name, x
    if kind is networks.Autoencoder:
        x_name, x = _emit(g, m.encoder, x_name, x, "encoder")
        return _emit(g, m.decoder, x_name, x, "decoder")
    if kind is nn.Residual:
        main_name, main = _emit(g, m.block, x_name, x, f"{path}.block")
        if m.shortcut is None:
            skip_name, skip = x_name, x
        else:
            skip_name, skip = _emit(g, m.shortcut, x_name, x, f"{path}.shortcut")
        return g.node("Add", [main_name, skip_name], path), main + skip
    if kind is nn.Linear:
        b = g.weight(m.bias.data, f"{path}.bias") if m.bias is not None else None
        if x.ndim == 2:
            w = g.weight(m.weight.data, f"{path}.weight")
            return g.node("Gemm", [x_name, w] + ([b] if b else []), path, transB=1), y
        wt = g.weight(m.weight.data.T, f"{path}.weight_t")  # MatMul broadcasts over leading axes
        out = g.node("MatMul", [x_name, wt], path)
        return (g.node("Add", [out, b], path) if b else out), y
    if kind in (nn.Conv2d, nn.ConvTranspose2d):
        inputs = [x_name, g.weight(m.weight.data, f"{path}.weight")]
        if m.bias is not None:
            inputs.append(g.weight(m.bias.data, f"{path}.bias"))
        dilation = getattr(m, "dilation", 1)
        dilation = list(dilation) if isinstance(dilation, (tuple, list)) else [dilation] * 2
        attrs = dict(kernel_shape=list(m.kernel_size), strides=list(m.stride), pads=_pads(m.padding),
                     dilations=dilation, group=getattr(m, "groups", 1))
        if kind is nn.ConvTranspose2d:
            return g.node("ConvTranspose", inputs, path, output_padding=list(m.output_padding), **attrs), y
        return g.node("Conv", inputs, path, **attrs), y
    if kind in (nn.MaxPool2d, nn.AvgPool2d):
        if kind is nn.MaxPool2d and m.return_indices:
            raise TypeError(f"to_onnx: MaxPool2d(return_indices=True) at {path!r} is not supported")
        attrs = dict(kernel_shape=list(m.kernel_size), strides=list(m.stride), pads=_pads(m.padding))
        if kind is nn.AvgPool2d:
            attrs["count_include_pad"] = 1  # dlcore (and torch by default) divide by the full window
            return g.node("AveragePool", [x_name], path, **attrs), y
        return g.node("MaxPool", [x_name], path, **attrs), y
    if kind is networks.GlobalAvgPool2d:
        pooled = g.node("GlobalAveragePool", [x_name], path)
        return g.node("Flatten", [pooled], path, axis=1), y
    if kind in (nn.BatchNorm1d, nn.BatchNorm2d):
        if not m.track_running_stats:
            raise TypeError(f"to_onnx: {kind.__name__} without running statistics at {path!r} is not supported")
        c = m.num_features
        scale = m.weight.data if m.affine else np.ones(c, m.running_mean.dtype)
        shift = m.bias.data if m.affine else np.zeros(c, m.running_mean.dtype)
        inputs = [x_name] + [g.weight(a, f"{path}.{n}") for a, n in
                             [(scale, "weight"), (shift, "bias"), (m.running_mean, "running_mean"),
                              (m.running_var, "running_var")]]
        return g.node("BatchNormalization", inputs, path, epsilon=float(m.eps)), y
    if kind is nn.InstanceNorm2d:
        if m.track_running_stats:
            raise TypeError(f"to_onnx: InstanceNorm2d(track_running_stats=True) at {path!r} is not supported")
        c, dtype = m.num_features, x.dtype
        scale = m.weight.data if m.affine else np.ones(c, dtype)
        shift = m.bias.data if m.affine else np.zeros(c, dtype)
        inputs = [x_name, g.weight(scale, f"{path}.weight"), g.weight(shift, f"{path}.bias")]
        return g.node("InstanceNormalization", inputs, path, epsilon=float(m.eps)), y
    if kind is getattr(nn, "Upsample", None):  # nearest: y[i] = x[floor(i / s)]
        scales = g.weight(np.array([1, 1, *m.scale_factor], np.float32), f"{path}.scales")
        return g.node("Resize", [x_name, "", scales], path, mode="nearest",
                      coordinate_transformation_mode="asymmetric", nearest_mode="floor"), y
    if kind is nn.Flatten:
        if m.start_dim == 1 and m.end_dim in (-1, x.ndim - 1):
            return g.node("Flatten", [x_name], path, axis=1), y
        shape = g.weight(np.array((-1,) + y.shape[1:], np.int64), f"{path}.shape")
        return g.node("Reshape", [x_name, shape], path), y
    if kind in (nn.Dropout, nn.Identity):
        return g.node("Identity", [x_name], path), y
    simple = {nn.ReLU: "Relu", nn.Sigmoid: "Sigmoid", nn.Tanh: "Tanh"}
    if kind in simple:
        return g.node(simple[kind], [x_name], path), y
    if kind is nn.LeakyReLU:
        return g.node("LeakyRelu", [x_name], path, alpha=float(m.negative_slope)), y
    if kind is nn.SiLU:
        return g.node("Mul", [x_name, g.node("Sigmoid", [x_name], path)], path), y
    if kind in (nn.Softmax, nn.LogSoftmax):
        return g.node(kind.__name__, [x_name], path, axis=int(m.dim)), y
    raise TypeError(f"to_onnx: no ONNX translation known for {kind.__name__} at {path or 'the top level'!r}; "
                    "supported: Sequential, Residual, Autoencoder, Linear, Conv2d, ConvTranspose2d, "
                    "MaxPool2d, AvgPool2d, GlobalAvgPool2d, Upsample, BatchNorm1d/2d, InstanceNorm2d, Flatten, "
                    "Dropout, Identity and the activations")


def to_onnx(model, sample_input, path):
    """Write ``model``'s inference graph to the ONNX file ``path`` and check it.

    Args:
        model: a dlcore ``nn.Module`` of the supported layers (Sequential and Residual
            containers, the models in :mod:`dlcore.models`); exported as ``model.eval()``
            computes (its train/eval mode is restored afterwards).
        sample_input: an array of the input's shape (any batch size); it fixes the
            dtype and the non-batch dimensions of the graph's input ``"input"``.
        path: where to write the ``.onnx`` file (str or PathLike).

    Returns:
        the ``onnx.ModelProto`` written, after ``onnx.checker.check_model`` accepted it.
        Run it with ONNX Runtime: ``onnxruntime.InferenceSession(path).run(None,
        {"input": x})[0]``.

    Raises:
        ImportError: the ``onnx`` package is missing (``pip install onnx onnxruntime``).
        TypeError: a layer has no ONNX translation here (the message names it and its path).
    """
    onnx = _import_onnx()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a dlcore nn.Module, got {type(model).__name__}")
    x = np.asarray(sample_input)
    if x.dtype not in (np.float32, np.float64) or x.ndim < 1:
        raise TypeError(f"sample_input must be a float32 or float64 array with a batch axis, "
                        f"got dtype {x.dtype} and shape {x.shape}")
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        dtype = model.dtype if list(model.parameters()) else x.dtype
        x = x.astype(dtype, copy=False)
        g = _Graph(onnx)
        out_name, out = _emit(g, model, "input", x, "")
    finally:
        for m, training in modes.items():
            m.training = training
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    g.nodes.append(onnx.helper.make_node("Identity", [out_name], ["output"], name="output"))
    graph = onnx.helper.make_graph(
        g.nodes, type(model).__name__,
        [onnx.helper.make_tensor_value_info("input", elem, ["N", *x.shape[1:]])],
        [onnx.helper.make_tensor_value_info("output", elem, ["N", *np.shape(out)[1:]])],
        g.initializers)
    proto = onnx.helper.make_model(graph, producer_name="dlcore",
                                   opset_imports=[onnx.helper.make_opsetid("", OPSET)])
    proto.ir_version = min(proto.ir_version, 8)  # readable by older runtimes too
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return proto
