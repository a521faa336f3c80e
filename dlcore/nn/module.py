"""Module and Parameter: the base of every layer, loss and model.

A Module is a function with state. ``forward`` computes the output and keeps what the
backward pass will need; ``backward(grad_output)`` returns dLoss/dInput for that most
recent forward and ADDS dLoss/dParameter into each ``param.grad`` (as torch's autograd
accumulates). Backpropagation through a network is then the chain rule written out:
``Sequential.backward`` calls its children's ``backward`` in reverse order.
"""
from collections import OrderedDict

import numpy as np

from .._checks import FLOAT_DTYPES, as_floating, describe


class Parameter:
    """A trainable array: ``.data`` (ndarray) and ``.grad`` (same shape, or None before any backward)."""

    __slots__ = ("data", "grad")

    def __init__(self, data):
        data = np.asarray(data)
        if data.dtype not in FLOAT_DTYPES:
            raise TypeError(f"Parameter data must be float32 or float64, got dtype {data.dtype}")
        self.data = np.ascontiguousarray(data)
        self.grad = None

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    @property
    def ndim(self):
        return self.data.ndim

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"

    def accumulate_grad(self, grad):
        """``grad`` added into ``.grad`` (allocated as zeros on first use)."""
        if self.grad is None:
            self.grad = np.zeros_like(self.data)
        self.grad += grad


class Module:
    """Base class of layers, losses and models; subclasses define ``forward`` and ``backward``.

    Attributes that are Parameters, Modules or registered buffers are found by name, so
    ``named_parameters()`` yields torch's dotted names (``"0.weight"``, ``"block.1.bias"``).
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- registration -------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        for table in (self._parameters, self._modules, self._buffers):
            table.pop(name, None)
        if isinstance(value, Parameter) or (value is None and name in ("weight", "bias")):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, array):
        """A non-trainable array saved in ``state_dict`` (BatchNorm's running statistics)."""
        object.__setattr__(self, name, array)
        self._buffers[name] = True

    def _set_buffer(self, name, array):
        object.__setattr__(self, name, array)

    # ---- calling ------------------------------------------------------------------------
    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__} does not define backward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---- traversal ----------------------------------------------------------------------
    def named_children(self):
        yield from self._modules.items()

    def children(self):
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix=""):
        for module_name, module in self.named_modules(prefix):
            for name, param in module._parameters.items():
                if param is not None:
                    yield (f"{module_name}.{name}" if module_name else name), param

    def parameters(self):
        for _, param in self.named_parameters():
            yield param

    def named_buffers(self, prefix=""):
        for module_name, module in self.named_modules(prefix):
            for name in module._buffers:
                value = getattr(module, name)
                if value is not None:
                    yield (f"{module_name}.{name}" if module_name else name), value

    def buffers(self):
        for _, value in self.named_buffers():
            yield value

    # ---- training state -----------------------------------------------------------------
    def zero_grad(self):
        """Set every parameter's ``.grad`` to zeros of its shape."""
        for param in self.parameters():
            param.grad = np.zeros_like(param.data)

    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    # ---- dtype --------------------------------------------------------------------------
    @property
    def dtype(self):
        """The dtype of the module's parameters (None for a module without any)."""
        for param in self.parameters():
            return param.dtype
        for value in self.buffers():
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                return value.dtype
        return None

    def to(self, dtype):
        """Convert parameters, their gradients and floating buffers to ``dtype`` in place; returns self."""
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        for module in self.modules():
            for param in module._parameters.values():
                if param is not None:
                    param.data = param.data.astype(dtype)
                    if param.grad is not None:
                        param.grad = param.grad.astype(dtype)
            for name in module._buffers:
                value = getattr(module, name)
                if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                    module._set_buffer(name, value.astype(dtype))
        return self

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def _as_input(self, x, name="input"):
        """``x`` validated as floating and cast to the module's dtype (the input's own if it has none)."""
        return as_floating(x, name, self.dtype)

    # ---- state dict ---------------------------------------------------------------------
    def state_dict(self):
        """Copies of every parameter and buffer under torch's names, in registration order."""
        state = OrderedDict()
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name, param in module._parameters.items():
                if param is not None:
                    state[prefix + name] = param.data.copy()
            for name in module._buffers:
                value = getattr(module, name)
                if value is not None:
                    state[prefix + name] = np.array(value, copy=True)
        return state

    def load_state_dict(self, state, strict=True):
        """Copy values from ``state`` into the existing parameters and buffers, keeping their dtype.

        A missing or unexpected key raises KeyError naming it (ignored with ``strict=False``);
        a wrong shape always raises ValueError naming the key and both shapes.
        BatchNorm's ``num_batches_tracked`` (torch) is accepted and ignored.
        """
        if not hasattr(state, "keys"):
            raise TypeError(f"state must be a dict of arrays, got {describe(state)}")
        own = self.state_dict()
        ignorable = {k for k in state if k.endswith("num_batches_tracked") and k not in own}
        if strict:
            missing = [k for k in own if k not in state]
            unexpected = [k for k in state if k not in own and k not in ignorable]
            if missing:
                raise KeyError(f"missing key(s) in state_dict: {missing}")
            if unexpected:
                raise KeyError(f"unexpected key(s) in state_dict: {unexpected}")
        targets = {}
        for module_name, module in self.named_modules():
            prefix = f"{module_name}." if module_name else ""
            for name, param in module._parameters.items():
                if param is not None:
                    targets[prefix + name] = (module, name, param)
            for name in module._buffers:
                targets[prefix + name] = (module, name, None)
        for key, value in state.items():
            if key not in targets:
                continue
            value = np.asarray(value)
            module, name, param = targets[key]
            current = param.data if param is not None else np.asarray(getattr(module, name))
            if value.shape != current.shape:
                raise ValueError(f"size mismatch for {key}: expected shape {current.shape}, got {value.shape}")
            if param is not None:
                param.data[...] = value
            else:
                module._set_buffer(name, value.astype(current.dtype, copy=True))

    # ---- display ------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, child in self._modules.items():
                child_repr = repr(child).replace("\n", "\n  ")
                lines.append(f"\n  ({name}): {child_repr}")
            lines.append("\n")
        return "".join(lines) + ")"

    def summary(self, input_shape, batch_size=1):
        """Print and return a table of each layer's output shape, activation size and parameters.

        ``input_shape`` excludes the batch dimension, e.g. ``(1, 28, 28)``.
        """
        from .summary import summary

        return summary(self, input_shape, batch_size=batch_size)
