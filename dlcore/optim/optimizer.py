"""The Optimizer base class: parameter groups, per-parameter state, zero_grad, state_dict.

An optimizer holds references to the model's :class:`~dlcore.nn.Parameter` objects, split
into *parameter groups* (dicts with a ``"params"`` list and their own hyperparameters,
as in torch). ``step()`` visits every parameter that has a gradient and calls the active
backend's update kernel (``dlcore.backends.kernels().adam_step`` and so on) on its data,
its gradient and its state arrays, in place: the class keeps the state, the kernel does
the math (torch's split between ``torch.optim.Adam`` and ``torch.optim._functional``).
"""
import numbers
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import numpy as np

from .._checks import FLOAT_DTYPES, describe
from ..backends import kernel_threads, kernels
from ..nn.module import Parameter

#: What an optimizer takes: Parameters (``model.parameters()``) or param-group dicts.
Params = Union[Iterable[Parameter], Iterable[Dict[str, Any]]]

# Passed for state a configuration does not use (no momentum, no amsgrad, ...): kernels
# never read it. One per dtype so the compiled kernel's fused dtype still matches.
_EMPTY = {dtype: np.zeros(0, dtype=dtype) for dtype in FLOAT_DTYPES}


def _check_real(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {describe(value)}")
    return value


def check_hyper(value, name, ok, label=None):
    """torch's range check: ``ValueError("Invalid <label>: <value>")`` unless ``ok(value)``.

    ``name`` is the argument (for the TypeError on non-numbers), ``label`` torch's wording.
    """
    _check_real(value, name)
    if not ok(value):  # also rejects NaN, since every comparison with NaN is False
        raise ValueError(f"Invalid {label or name + ' value'}: {value}")
    return value


def nonnegative(value):
    return 0.0 <= value


class Optimizer:
    """Base class of every optimizer.

    Args:
        params: an iterable of :class:`~dlcore.nn.Parameter` (e.g. ``model.parameters()``),
            or of dicts ``{"params": [...], "lr": ..., ...}`` giving each group its own
            hyperparameters (missing ones come from ``defaults``).
        defaults (dict): the hyperparameters given to the constructor.

    Attributes:
        param_groups (list of dict): the groups, each with its ``"params"`` list.
        state (dict): per-parameter state (``Parameter -> dict``), created lazily.
        lr: the learning rate; setting it sets every group's ``"lr"``.

    Every optimizer also takes ``l1_decay`` (keyword-only, default 0), a dlcore addition
    for the notes' L1 regularization ``alpha * ||w||_1``: before the update rule runs, the
    gradient becomes ``grad + l1_decay * sign(w)`` (a subgradient; 0 at ``w = 0``).
    """

    def __init__(self, params: Params, defaults: Dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.state: Dict[Parameter, Dict[str, Any]] = {}
        self.param_groups: List[Dict[str, Any]] = []
        if isinstance(params, (Parameter, np.ndarray, dict, str)) or not hasattr(params, "__iter__"):
            raise TypeError(
                "params must be an iterable of Parameters or of param-group dicts, "
                f"got {describe(params)}"
            )
        groups: List[Any] = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ---- groups and checks ------------------------------------------------------------
    def _check_group(self, group):
        """Validate one group's hyperparameters (subclasses extend it)."""
        check_hyper(group["lr"], "lr", nonnegative, "learning rate")
        check_hyper(group["l1_decay"], "l1_decay", nonnegative)

    def add_param_group(self, param_group: Dict[str, Any]) -> None:
        """Add a group: a dict with ``"params"`` and optional hyperparameters."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {describe(param_group)}")
        if "params" not in param_group:
            raise ValueError("param_group must have a 'params' entry")
        params = param_group["params"]
        if isinstance(params, Parameter):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("param_group['params'] must be an ordered iterable (a set's order changes between runs)")
        else:
            params = list(params)
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizers can only optimize dlcore.nn.Parameter objects, got {describe(p)}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter group contains the same parameter twice")
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in taken for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        group = {k: v for k, v in param_group.items() if k != "params"}
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_group(group)
        group["params"] = params
        self.param_groups.append(group)
        self._init_group(group)

    def _init_group(self, group):
        """Hook for optimizers whose state exists before the first step (Adagrad)."""

    @property
    def lr(self) -> float:
        """The learning rate of the first group; assigning sets every group's ``"lr"``."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        check_hyper(value, "lr", nonnegative, "learning rate")
        for group in self.param_groups:
            group["lr"] = value

    # ---- the update -------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = False) -> None:
        """Set every parameter's ``.grad`` to zeros of its shape (``None`` with ``set_to_none``)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None if set_to_none else np.zeros_like(p.data)

    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        """One update of every parameter whose ``.grad`` is not None (others are skipped).

        ``closure``, if given, is called first and its value (the loss) returned, as in torch.
        """
        loss = closure() if closure is not None else None
        backend, n_threads = kernels(), kernel_threads()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                flat = _flat_param(p)
                grad = _flat_grad(p, flat, group["l1_decay"])
                self._update(backend, n_threads, p, flat, grad, self.state.setdefault(p, {}), group)
        return loss

    def _update(self, backend, n_threads, p, flat, grad, state, group):
        raise NotImplementedError

    # ---- state_dict -------------------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """The optimizer's state as a nested dict that :func:`dlcore.save` can store.

        ``{"state": {"0": {"step": 3, "exp_avg": array, ...}, ...},
        "param_groups": [{"lr": ..., ..., "params": [0, 1, ...]}, ...]}``: parameters are
        numbered in group order, state keys are those numbers as strings, arrays are copies.
        """
        index: Dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: _plain(v) for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if self.state.get(p):
                    state[str(index[id(p)])] = {
                        k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in self.state[p].items()
                    }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore hyperparameters (``lr`` included) and per-parameter state.

        ``state_dict`` comes from :meth:`state_dict` (possibly through ``dlcore.save`` and
        ``dlcore.load``); parameters are matched by position. State arrays are copied and
        cast to each parameter's dtype. Mismatched groups or shapes raise ``ValueError``.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {describe(state_dict)}")
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise KeyError(f"optimizer state_dict has no {key!r} entry")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter groups, "
                f"the optimizer has {len(self.param_groups)}"
            )
        by_index, group_of = {}, {}
        new_groups = []
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"parameter group {i} has {len(saved['params'])} parameters in the loaded "
                    f"state dict and {len(group['params'])} in the optimizer"
                )
            by_index.update({int(k): p for k, p in zip(saved["params"], group["params"])})
            new = {k: v for k, v in saved.items() if k != "params"}
            if isinstance(new.get("betas"), list):
                new["betas"] = tuple(new["betas"])
            for key, value in self.defaults.items():
                new.setdefault(key, value)
            self._check_group(new)
            new["params"] = group["params"]
            new_groups.append(new)
            group_of.update({int(k): new for k in saved["params"]})
        new_state = {}
        for key, saved in state_dict["state"].items():
            if int(key) not in by_index:
                raise KeyError(f"state_dict has state for parameter {key}, which no parameter group lists")
            p = by_index[int(key)]
            _check_state_keys(self, saved, group_of[int(key)], key)
            new_state[p] = {name: _load_value(name, value, p, key) for name, value in saved.items()}
        self.param_groups = new_groups
        self.state = new_state

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])


# ---- helpers shared by the optimizers ------------------------------------------------------

def _flat_param(p):
    """The parameter's data as a 1-D view the kernel can update in place."""
    data = p.data
    if not isinstance(data, np.ndarray) or data.dtype not in FLOAT_DTYPES:
        raise TypeError(f"parameter data must be a float32 or float64 array, got {describe(data)}")
    if not (data.flags.c_contiguous and data.flags.writeable):
        # A read-only or strided array cannot be updated in place: the Parameter gets a
        # writable C-contiguous copy (a Parameter owns its data).
        p.data = data = np.array(data, order="C")
    return data.reshape(-1)


def _flat_grad(p, flat, l1_decay):
    """``p.grad`` checked, as a C-contiguous 1-D array of the parameter's dtype (+ L1 term)."""
    grad = p.grad
    if not isinstance(grad, np.ndarray):
        grad = np.asarray(grad)
    if grad.dtype.kind != "f":
        raise TypeError(f"the gradient of {p!r} must have a floating dtype, got dtype {grad.dtype}")
    if grad.shape != p.data.shape:
        raise ValueError(f"the gradient of {p!r} must have shape {p.data.shape}, got {grad.shape}")
    grad = np.ascontiguousarray(grad, dtype=p.data.dtype).reshape(-1)
    if l1_decay != 0:
        grad = grad + float(l1_decay) * np.sign(flat)  # a new array: p.grad is left alone
    return grad


def _buffer(state, key, data, fill=0.0):
    """``state[key]`` (created as ``fill`` of the parameter's shape and dtype) as a 1-D view."""
    buf = state.get(key)
    if buf is None:
        buf = state[key] = np.full(data.shape, fill, dtype=data.dtype)
    elif buf.dtype != data.dtype:  # the model was converted with .to(dtype) since
        buf = state[key] = buf.astype(data.dtype)
    if buf.shape != data.shape:
        raise ValueError(f"optimizer state {key!r} has shape {buf.shape}, its parameter has shape {data.shape}")
    return buf.reshape(-1)


def _plain(value):
    """Hyperparameters as plain Python values (NumPy scalars become numbers) for dlcore.save."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _check_state_keys(optimizer, saved, group, key):
    """A parameter's loaded state, once it has any, must hold every buffer its step reads.

    ``_state_keys`` (per optimizer class) maps each buffer to None (always needed) or to
    the group option that enables it (``"amsgrad"``, ...). A missing one would otherwise
    be silently recreated as zeros, restarting that running average; torch raises KeyError.
    """
    if not saved:
        return
    if not isinstance(saved, dict):
        raise TypeError(f"state of parameter {key} must be a dict, got {describe(saved)}")
    needed = [k for k, option in getattr(optimizer, "_state_keys", {}).items() if option is None or group.get(option)]
    missing = [k for k in needed if k not in saved]
    if missing:
        raise KeyError(f"the state of parameter {key} lacks {missing} (it holds {sorted(saved)}): "
                       f"the state dict is incomplete for {type(optimizer).__name__}")


def _load_value(name, value, p, key):
    if name == "step":
        return int(float(np.asarray(value)))
    if isinstance(value, (np.ndarray, list, tuple)) or hasattr(value, "__array__"):
        arr = np.array(value, dtype=p.data.dtype, order="C")
        if arr.shape != p.data.shape:
            raise ValueError(
                f"state {name!r} of parameter {key} has shape {arr.shape}, the parameter has shape {p.data.shape}"
            )
        return arr
    return value


def empty(data):
    """The never-read placeholder for unused state of ``data``'s dtype."""
    return _EMPTY[data.dtype]
