r"""Finite-difference check of a module's hand-written ``backward``.

For a layer ``y = f(x; θ)`` the check builds a scalar from a seeded random upstream
gradient ``G`` (the ``δ`` the layer would receive),

.. math:: s(x, θ) = \sum_i G_i\, f(x; θ)_i,

so ``module.backward(G)`` must return ``∂s/∂x`` and add ``∂s/∂θ`` into each ``.grad``.
Each entry is compared with the central difference

.. math:: \frac{∂s}{∂v} ≈ \frac{s(v + ε) - s(v - ε)}{2ε}

whose error is O(ε²) — small in float64 (the check runs there), hopeless in float32.
For a loss, ``s`` is the loss itself (``G`` for ``reduction="none"``) and only the
prediction is checked; the target is passed unchanged.
"""
from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, List, Tuple

import numpy as np

from . import _random

__all__ = ["gradcheck"]

if TYPE_CHECKING:
    from .nn.module import Module


def _is_loss(module):
    from .nn.loss import Loss

    return isinstance(module, Loss)


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def gradcheck(module: Module, *inputs: Any, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              seed: int = 0) -> bool:
    """Check ``module.backward`` against central finite differences, in float64.

    Parameters
    ----------
    module : Module
        A layer (called as ``module(*inputs)``) or a loss (called as ``module(pred, target)``).
    *inputs : arrays
        Floating inputs are converted to float64 and checked (for a loss only the first,
        the prediction); other inputs (integer labels, pooling indices) are passed as is.
    eps : float
        Step of the central difference.
    atol, rtol : float
        An entry passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.
    seed : int
        Seeds the random upstream gradient, and dlcore's generator before every forward
        (so a Dropout draws the same mask each time).

    Returns
    -------
    True, or raises AssertionError naming the worst entry (input or parameter, index,
    analytic and numeric values).

    The module is converted to float64 for the check and restored afterwards (its
    dtype, parameter values, gradients, buffers and dlcore's random state are as before).
    """
    from .nn.module import Module

    if not isinstance(module, Module):
        raise TypeError(f"module must be a dlcore.nn.Module, got {type(module).__name__}")
    for name, value in (("eps", eps), ("atol", atol), ("rtol", rtol)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) >= 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if not inputs:
        raise ValueError("gradcheck needs at least one input")

    is_loss = _is_loss(module)
    if is_loss and len(inputs) != 2:
        raise ValueError(f"a loss is checked as gradcheck(loss, pred, target), got {len(inputs)} inputs")
    inputs = tuple(np.array(x, dtype=np.float64) if _floating(x) else x for x in inputs)
    checked = [0] if is_loss else [i for i, x in enumerate(inputs) if _floating(x)]
    if is_loss and not _floating(inputs[0]):
        raise TypeError("the prediction passed to a loss must be floating")

    # save everything the check disturbs, restore it at the end
    params = list(module.named_parameters())
    saved_params: List[Tuple[Any, Any, Any]] = [(p, p.data, p.grad) for _, p in params]
    saved_buffers = [
        (m, name, getattr(m, name), _copy(getattr(m, name))) for m in module.modules() for name in m._buffers
    ]
    saved_generator = _random._generator
    module.to(np.float64)
    try:
        upstream = {}

        def objective():
            _random.manual_seed(seed)
            out = module(*inputs)
            if isinstance(out, float):
                return out, None
            out = np.asarray(_first(out), dtype=np.float64)
            if "G" not in upstream:
                upstream["G"] = np.random.default_rng(seed).standard_normal(out.shape)
            return float(np.sum(upstream["G"] * out)), upstream["G"]

        _, G = objective()
        for _, p in params:
            p.grad = None
        grads = module.backward(None) if (is_loss and G is None) else module.backward(G)  # None: a loss's default
        if is_loss or not isinstance(grads, (tuple, list)):
            grads = [grads]
        analytic = {}
        for k, i in enumerate(checked):
            if k < len(grads) and grads[k] is not None:
                analytic[f"input {i}"] = np.asarray(grads[k], dtype=np.float64)
        for name, p in params:
            analytic[f"parameter {name!r}"] = (
                np.zeros(p.shape) if p.grad is None else np.array(p.grad, dtype=np.float64)
            )

        targets = {f"input {i}": inputs[i] for i in checked}
        targets.update({f"parameter {name!r}": p.data for name, p in params})
        worst = None  # (excess ratio, label, index, analytic, numeric)
        for label, array in targets.items():
            if label not in analytic:
                raise AssertionError(f"gradcheck: backward returned no gradient for {label}")
            grad = analytic[label]
            if grad.shape != array.shape:
                raise AssertionError(
                    f"gradcheck: the gradient for {label} has shape {grad.shape}, expected {array.shape}"
                )
            flat = array.reshape(-1)  # a view: both are C-contiguous float64
            for j in range(flat.size):
                original = flat[j]
                flat[j] = original + eps
                plus, _ = objective()
                flat[j] = original - eps
                minus, _ = objective()
                flat[j] = original
                numeric = (plus - minus) / (2 * eps)
                a = grad.reshape(-1)[j]
                excess = abs(a - numeric) / (atol + rtol * abs(numeric))
                if not np.isfinite(a) or not np.isfinite(numeric):
                    excess = np.inf
                if worst is None or excess > worst[0]:
                    worst = (excess, label, np.unravel_index(j, array.shape), a, numeric)
    finally:
        for p, data, grad in saved_params:
            p.data, p.grad = data, grad
        for m, name, value, copy in saved_buffers:
            if isinstance(value, np.ndarray) and value.flags.writeable:
                value[...] = copy  # undo in-place updates (running statistics)
            m._set_buffer(name, value)
        for m in module.modules():
            object.__setattr__(m, "_saved", None)
        _random._generator = saved_generator

    if worst is not None and not worst[0] <= 1.0:
        _, label, where, a, numeric = worst
        index = tuple(int(i) for i in where)
        a, numeric = float(a), float(numeric)
        raise AssertionError(
            f"gradcheck failed for {type(module).__name__}: worst entry {label} at index {index}: "
            f"analytic {a!r} vs numeric {numeric!r} (|difference| {abs(a - numeric):.3g} > "
            f"atol + rtol*|numeric| = {atol + rtol * abs(numeric):.3g})"
        )
    return True


def _copy(value):
    return np.array(value, copy=True) if isinstance(value, np.ndarray) else value


def _floating(x):
    if isinstance(x, np.ndarray):
        return x.dtype.kind == "f"
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)):
        return np.asarray(x).dtype.kind == "f"
    return False
