"""Module and Parameter: the base of every layer, loss and model.

A Module is a function with state. ``forward`` computes the output and keeps what the
backward pass will need; ``backward(grad_output)`` returns dLoss/dInput for that most
recent forward and ADDS dLoss/dParameter into each ``param.grad`` (as torch's autograd
accumulates). Backpropagation through a network is then the chain rule written out:
``Sequential.backward`` calls its children's ``backward`` in reverse order.

In the notes' notation, a layer ``m`` maps its input ``y^(m-1)`` to its output
``y^(m)``; its ``backward`` receives ``∂L/∂y^(m)`` (``grad_output``) and returns
``∂L/∂y^(m-1)`` (``grad_input``), adding ``∂L/∂W^(m)`` and ``∂L/∂b^(m)`` into the
parameters' ``.grad`` on the way.

Writing a layer::

    class Scale(Module):
        def __init__(self, n, dtype=np.float32):
            super().__init__()
            self.weight = Parameter(np.ones(n, dtype=dtype))

        def forward(self, x):
            x = self._as_input(x)                 # floating, cast to the module's dtype
            out = x * self.weight.data
            self._save_for_backward(out, x)       # remembers the output's shape too
            return out

        def backward(self, grad_output):
            g, x = self._saved_for_backward(grad_output)   # RuntimeError / ValueError checks
            self.weight.accumulate_grad((g * x).sum(axis=0))
            return g * self.weight.data
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np

from .._checks import FLOAT_DTYPES, as_floating, describe, float_dtype
from .._typing import ArrayLike, DTypeLike
from .summary import summary as _summary

__all__ = ["Module", "Parameter", "RemovableHandle"]

_M = TypeVar("_M", bound="Module")


class Parameter:
    """A trainable array: ``.data`` (ndarray) and ``.grad`` (same shape, or None before any backward).

    ``Parameter(data)`` keeps ``data`` itself when it is already a writable C-contiguous
    float32/float64 array (as ``torch.nn.Parameter`` shares its tensor), and copies it
    otherwise. Integer or other non-floating data raises TypeError.
    """

    __slots__ = ("data", "grad")
    data: np.ndarray
    grad: Optional[np.ndarray]

    def __init__(self, data: ArrayLike) -> None:
        array = np.asarray(data.data if isinstance(data, Parameter) else data)
        if array.dtype not in FLOAT_DTYPES:
            raise TypeError(f"Parameter data must be float32 or float64, got dtype {array.dtype}")
        if not (array.flags.c_contiguous and array.flags.writeable):
            array = np.array(array, order="C", copy=True)
        self.data = array
        self.grad = None

    @property
    def shape(self) -> Tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def __array__(self, dtype=None, copy=None):
        if dtype is None and not copy:
            return self.data
        return np.array(self.data, dtype=dtype, copy=True)

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"

    def accumulate_grad(self, grad: ArrayLike) -> None:
        """Add ``grad`` into ``.grad`` (allocated as zeros of the parameter's shape on first use).

        ``grad`` must have the parameter's shape exactly (no broadcasting): a mismatch is a
        bug in a layer's backward and raises ValueError.
        """
        grad = np.asarray(grad)
        if grad.shape != self.data.shape:
            raise ValueError(
                f"gradient for a parameter of shape {self.data.shape} has shape {grad.shape}"
            )
        if self.grad is None:
            self.grad = np.zeros_like(self.data)
        elif self.grad.shape != self.data.shape:
            raise ValueError(
                f"param.grad has shape {self.grad.shape}, the parameter has shape {self.data.shape}"
            )
        self.grad += grad


def _check_name(name, kind):
    if not isinstance(name, str):
        raise TypeError(f"{kind} name must be a str, got {describe(name)}")
    if not name or "." in name:
        raise ValueError(f"{kind} name must be a non-empty str without '.', got {name!r}")


class Module:
    """Base class of layers, losses and models; subclasses define ``forward`` and ``backward``.

    Attributes that are Parameters, Modules or registered buffers are found by name, so
    ``named_parameters()`` yields torch's dotted names (``"0.weight"``, ``"block.1.bias"``)
    and ``state_dict()`` has torch's keys, in torch's order (each module's parameters,
    then its buffers, then its children's entries).

    Contract of ``backward(grad_output)``: it refers to the most recent ``forward``;
    without one it raises RuntimeError; a ``grad_output`` whose shape differs from the
    output's raises ValueError; parameter gradients are ADDED into ``param.grad``
    (call ``zero_grad()`` between steps); it returns the gradient with respect to the
    input, of the input's shape.
    """

    # Set with object.__setattr__ in __init__ (they are bookkeeping, not registered values).
    _parameters: Dict[str, Optional[Parameter]]
    _modules: Dict[str, Optional[Module]]
    _buffers: Dict[str, bool]
    _forward_pre_hooks: Dict[int, Callable[..., Any]]
    _forward_hooks: Dict[int, Callable[..., Any]]
    _saved: Any
    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_saved", None)
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    # ---- registration -------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        if isinstance(value, Parameter):
            self._modules.pop(name, None)
            self._buffers.pop(name, None)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._parameters.pop(name, None)
            self._buffers.pop(name, None)
            self._modules[name] = value
        elif name in self._parameters:
            # torch: a registered parameter may be replaced by a Parameter or None only.
            if value is not None:
                raise TypeError(
                    f"cannot assign {describe(value)} as parameter {name!r} "
                    "(a Parameter or None is required; to change values, assign to .data)"
                )
            self._parameters[name] = None
        elif name in self._buffers:
            if value is not None and not isinstance(value, np.ndarray):
                raise TypeError(f"cannot assign {describe(value)} as buffer {name!r} (an ndarray or None is required)")
        elif name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign {describe(value)} as child module {name!r} (a Module or None is required)")
            self._modules[name] = None
        elif value is None and name in ("weight", "bias"):
            # ``self.bias = None`` for a layer built with bias=False: a known, absent parameter.
            self._parameters[name] = None
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for table in (self._parameters, self._modules, self._buffers):
            table.pop(name, None)
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Optional[Parameter]) -> None:
        """Register ``param`` (a Parameter, or None for an absent one) under ``name``."""
        _check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"param must be a Parameter or None, got {describe(param)}")
        self._modules.pop(name, None)
        self._buffers.pop(name, None)
        self._parameters[name] = param
        object.__setattr__(self, name, param)

    def add_module(self, name: str, module: Optional[Module]) -> None:
        """Register ``module`` as a child under ``name`` (how Sequential names its children "0", "1", ...)."""
        _check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"module must be a Module or None, got {describe(module)}")
        self._parameters.pop(name, None)
        self._buffers.pop(name, None)
        self._modules[name] = module
        object.__setattr__(self, name, module)

    def register_buffer(self, name: str, array: Optional[np.ndarray]) -> None:
        """A non-trainable array saved in ``state_dict`` (BatchNorm's running statistics).

        Assigning ``self.<name> = new_array`` later replaces the buffer's value.
        """
        _check_name(name, "buffer")
        if array is not None and not isinstance(array, np.ndarray):
            raise TypeError(f"buffer {name!r} must be an ndarray or None, got {describe(array)}")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__setattr__(self, name, array)
        self._buffers[name] = True

    def _set_buffer(self, name, array):
        object.__setattr__(self, name, array)

    # ---- calling ------------------------------------------------------------------------
    def forward(self, *args: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def backward(self, grad_output: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define backward")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``forward(*args, **kwargs)``, with the registered hooks run before and after it."""
        for hook in tuple(self._forward_pre_hooks.values()):
            changed = hook(self, args)
            if changed is not None:
                args = changed if isinstance(changed, tuple) else (changed,)
        out = self.forward(*args, **kwargs)
        for hook in tuple(self._forward_hooks.values()):
            changed = hook(self, args, out)
            if changed is not None:
                out = changed
        return out

    # ---- hooks --------------------------------------------------------------------------
    def register_forward_pre_hook(self, hook: Callable[[Module, tuple], Any]) -> RemovableHandle:
        """Call ``hook(module, args)`` before every forward of this module (as torch).

        ``args`` is the tuple of positional inputs; a hook returning something other than
        None replaces them (a tuple, or a single input). Returns a :class:`RemovableHandle`
        whose ``remove()`` unregisters the hook (also usable as a context manager).
        """
        return RemovableHandle(self._forward_pre_hooks, _check_hook(hook))

    def register_forward_hook(self, hook: Callable[[Module, tuple, Any], Any]) -> RemovableHandle:
        """Call ``hook(module, args, output)`` after every forward of this module (as torch).

        Hooks observe a model without changing its code: record each layer's output shape
        (:meth:`summary` does), keep activations for plotting, time layers. A hook returning
        something other than None replaces the output; ``backward`` still refers to what
        ``forward`` computed, so a replacement must not change what the gradient means.
        Returns a :class:`RemovableHandle` whose ``remove()`` unregisters the hook.

        Example::

            shapes = []
            handle = model.register_forward_hook(lambda m, args, out: shapes.append(out.shape))
            model(x)
            handle.remove()
        """
        return RemovableHandle(self._forward_hooks, _check_hook(hook))

    def _as_input(self, x: ArrayLike, name: str = "input") -> np.ndarray:
        """``x`` validated as floating and cast to the module's dtype (the input's own if it has none)."""
        return as_floating(x, name, self.dtype)

    def _save_for_backward(self, out: Any, ctx: Any) -> None:
        """Keep ``ctx`` for backward, with the output's shape and dtype (checked against grad_output)."""
        object.__setattr__(self, "_saved", (tuple(np.shape(out)), np.asarray(out).dtype, ctx))

    def _saved_for_backward(self, grad_output: ArrayLike) -> Tuple[np.ndarray, Any]:
        """``(grad_output, ctx)``: grad_output checked against the last output, cast to its dtype.

        Raises RuntimeError when no forward has run, ValueError when ``grad_output``'s
        shape differs from the output's (the message names both shapes).
        """
        saved = self.__dict__.get("_saved")
        if saved is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward() called before forward(): "
                "run a forward pass first, backward refers to the most recent one"
            )
        shape, dtype, ctx = saved
        grad_output = as_floating(grad_output, "grad_output", dtype)
        if grad_output.shape != shape:
            raise ValueError(
                f"grad_output must have the shape of {type(self).__name__}'s output {shape}, "
                f"got shape {grad_output.shape}"
            )
        return grad_output, ctx

    # ---- traversal ----------------------------------------------------------------------
    def named_children(self) -> Iterator[Tuple[str, Module]]:
        """``(name, child)`` for each direct child module, in registration order."""
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self) -> Iterator[Module]:
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix: str = "", _memo: Optional[set] = None) -> Iterator[Tuple[str, Module]]:
        """``(dotted_name, module)`` for this module (name ``prefix``) and every descendant, pre-order.

        A module reachable twice is yielded once (as torch's ``named_modules``).
        """
        memo = set() if _memo is None else _memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(f"{prefix}.{name}" if prefix else name, memo)

    def modules(self) -> Iterator[Module]:
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> Iterator[Tuple[str, Parameter]]:
        """``(dotted_name, Parameter)`` pairs with torch's names; a shared Parameter appears once.

        ``recurse=False`` lists only this module's own parameters.
        """
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name, param in module._parameters.items():
                if param is not None and id(param) not in seen:
                    seen.add(id(param))
                    yield (f"{module_name}.{name}" if module_name else name), param

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "") -> Iterator[Tuple[str, np.ndarray]]:
        for module_name, module in self.named_modules(prefix):
            for name in module._buffers:
                value = getattr(module, name)
                if value is not None:
                    yield (f"{module_name}.{name}" if module_name else name), value

    def buffers(self) -> Iterator[np.ndarray]:
        for _, value in self.named_buffers():
            yield value

    def apply(self: _M, fn: Callable[[Module], Any]) -> _M:
        """Call ``fn(module)`` on every descendant (children first) and on self; returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def num_parameters(self) -> int:
        """The number of scalar parameters (shared ones counted once)."""
        return int(sum(p.size for p in self.parameters()))

    # ---- training state -----------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = False) -> None:
        """Set every parameter's ``.grad`` to zeros of its shape (to None with ``set_to_none=True``)."""
        for param in self.parameters():
            param.grad = None if set_to_none else np.zeros_like(param.data)

    def train(self: _M, mode: bool = True) -> _M:
        """Training mode (Dropout drops, BatchNorm uses batch statistics) for self and descendants."""
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"mode must be a bool, got {describe(mode)}")
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self: _M) -> _M:
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    # ---- dtype --------------------------------------------------------------------------
    @property
    def dtype(self) -> Optional[np.dtype]:
        """The dtype of the module's parameters (None for a module without any)."""
        for param in self._parameters.values():  # a layer's own: asked at every forward
            if param is not None:
                return param.dtype
        if not self._modules and not self._buffers:
            return None  # a leaf without state (ReLU, MaxPool2d): nothing else to look at
        for param in self.parameters():
            return param.dtype
        for value in self.buffers():
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                return value.dtype
        return None

    def to(self: _M, dtype: DTypeLike) -> _M:
        """Convert parameters, their gradients and floating buffers to ``dtype`` in place; returns self.

        The Parameter objects stay the same (an optimizer holding them keeps working);
        their ``.data`` is replaced by a converted copy.
        """
        dtype = float_dtype(dtype)
        for module in self.modules():
            for param in module._parameters.values():
                if param is not None and param.data.dtype != dtype:
                    param.data = param.data.astype(dtype)
                    if param.grad is not None:
                        param.grad = param.grad.astype(dtype)
            for name in module._buffers:
                value = getattr(module, name)
                if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.dtype != dtype:
                    module._set_buffer(name, value.astype(dtype))
            # a cached forward holds arrays of the old dtype
            object.__setattr__(module, "_saved", None)
        return self

    def float(self: _M) -> _M:
        """``to(np.float32)``."""
        return self.to(np.float32)

    def double(self: _M) -> _M:
        """``to(np.float64)``."""
        return self.to(np.float64)

    # ---- state dict ---------------------------------------------------------------------
    def _state_entries(self, prefix=""):
        """``(key, module, name, param_or_None)`` for every parameter and buffer, torch's order.

        Unlike ``named_modules`` this does not drop shared modules (torch's state_dict keeps
        every path), so a model's keys do not depend on how it shares layers.
        """
        for name, param in self._parameters.items():
            if param is not None:
                yield prefix + name, self, name, param
        for name in self._buffers:
            if getattr(self, name) is not None:
                yield prefix + name, self, name, None
        for name, child in self._modules.items():
            if child is not None:
                yield from child._state_entries(f"{prefix}{name}.")

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Copies of every parameter and buffer under torch's names, in torch's order."""
        state = OrderedDict()
        for key, module, name, param in self._state_entries():
            value = param.data if param is not None else getattr(module, name)
            state[key] = np.array(value, copy=True)
        return state

    def load_state_dict(self, state: Mapping[str, ArrayLike], strict: bool = True) -> Tuple[List[str], List[str]]:
        """Copy values from ``state`` into the existing parameters and buffers, keeping their dtype.

        ``state`` maps torch's keys to arrays (or anything ``np.asarray`` accepts, such as
        torch tensors). A missing or unexpected key raises KeyError naming it (ignored with
        ``strict=False``); a wrong shape always raises ValueError naming the key and both
        shapes. Nothing is changed unless every entry is valid. BatchNorm's
        ``num_batches_tracked`` (torch) is accepted and ignored when the module has none.
        Returns ``(missing_keys, unexpected_keys)`` as lists.
        """
        if not hasattr(state, "keys") or not hasattr(state, "items"):
            raise TypeError(f"state must be a dict of arrays, got {describe(state)}")
        targets = OrderedDict((key, (module, name, param)) for key, module, name, param in self._state_entries())
        missing = [k for k in targets if k not in state]
        unexpected = [
            k for k in state if k not in targets and not (isinstance(k, str) and k.endswith("num_batches_tracked"))
        ]
        if strict and missing:
            raise KeyError(f"missing key(s) in state_dict: {', '.join(map(repr, missing))}")
        if strict and unexpected:
            raise KeyError(f"unexpected key(s) in state_dict: {', '.join(map(repr, unexpected))}")
        updates = []
        for key, (module, name, param) in targets.items():
            if key not in state:
                continue
            value = state[key]
            if isinstance(value, Parameter):
                value = value.data
            value = np.asarray(value)
            current = param.data if param is not None else np.asarray(getattr(module, name))
            if value.shape != current.shape:
                raise ValueError(
                    f"size mismatch for {key!r}: the module has shape {current.shape}, "
                    f"the state_dict has shape {value.shape}"
                )
            if value.dtype.kind not in "biuf":
                raise TypeError(f"state_dict entry {key!r} must be a numeric array, got dtype {value.dtype}")
            updates.append((module, name, param, value, current.dtype))
        for module, name, param, value, dtype in updates:
            target = param.data if param is not None else getattr(module, name)
            if isinstance(target, np.ndarray) and target.flags.writeable:
                target[...] = value  # in place: references held elsewhere stay valid
            elif param is not None:
                param.data = np.array(value, dtype=dtype, order="C", copy=True)
            else:
                module._set_buffer(name, np.array(value, dtype=dtype, copy=True))
        return missing, unexpected

    # ---- display ------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text inside the parentheses of ``repr`` (a layer's arguments, as torch shows them)."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        children = [(name, child) for name, child in self._modules.items() if child is not None]
        if not children:
            return f"{type(self).__name__}({extra})"
        lines = [f"{type(self).__name__}("]
        if extra:
            lines.append("  " + extra.replace("\n", "\n  "))
        for name, child in children:
            lines.append(f"  ({name}): " + repr(child).replace("\n", "\n  "))
        lines.append(")")
        return "\n".join(lines)

    def summary(self, input_shape: Union[int, Sequence[int]], batch_size: int = 1) -> str:
        """Print and return a table of each layer's output shape, activation size and parameters.

        ``input_shape`` excludes the batch dimension, e.g. ``(1, 28, 28)``. See
        :func:`dlcore.nn.summary.summary`.
        """
        return _summary(self, input_shape, batch_size=batch_size)


def _check_hook(hook):
    if not callable(hook):
        raise TypeError(f"hook must be callable, got {describe(hook)}")
    return hook


class RemovableHandle:
    """What ``register_forward_hook`` returns: ``handle.remove()`` unregisters the hook.

    Removing twice is harmless. ``with model.register_forward_hook(f): ...`` removes the
    hook when the block ends.
    """

    _next_id = 0

    def __init__(self, hooks: Dict[int, Callable[..., Any]], hook: Callable[..., Any]) -> None:
        self._hooks = hooks
        self.id = RemovableHandle._next_id
        RemovableHandle._next_id += 1
        hooks[self.id] = hook

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.remove()


def backward_from_data(module: Module, grad_output: Any) -> None:
    """``module.backward(grad_output)`` when the module's input is data (needs no gradient).

    A module that understands ``backward(grad, input_grad=False)`` (``accepts_input_grad``,
    e.g. Sequential) then skips the first layer's input gradient, as torch does for an
    input without ``requires_grad``; any other module runs its plain backward.
    """
    if getattr(module, "accepts_input_grad", False):
        module.backward(grad_output, input_grad=False)  # type: ignore[call-arg]
    else:
        module.backward(grad_output)
