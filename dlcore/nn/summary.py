"""``summary(model, input_shape)``: a Keras/torchinfo-style table of a model's layers.

It runs one forward pass on zeros of shape ``(batch_size, *input_shape)`` (in eval mode,
so no running statistic changes and no dropout is drawn), records every leaf layer's
output through forward hooks (:meth:`Module.register_forward_hook`), and prints a table
with one row per layer call:

* **Layer**: the dotted name (torch's ``named_modules`` name, e.g. ``"2.block.0"``) and type;
  leaf layers, plus containers that compute something themselves, such as ``Residual``
  (its row, after its children's, is the sum ``block(x) + shortcut(x)``); a container whose
  output is its last child's own output (``Sequential``) gets no row;
* **Output shape**: including the batch axis;
* **Activations**: the number of output elements (what the forward stores for backward);
* **Params**: the layer's own parameter count (``weight.size + bias.size``).

and totals: parameters (shared ones once), activation elements, and both in bytes of the
model's dtype.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Union

import numpy as np

from .._checks import check_int, describe

# No import of .module or .layers: module.py imports this file (Module.summary), and a
# model is anything with named_modules() and register_forward_hook().
__all__ = ["summary"]


def _shape_of(out):
    if isinstance(out, tuple):
        return " ".join(str(list(np.shape(o))) for o in out), int(sum(np.size(o) for o in out))
    return str(list(np.shape(out))), int(np.size(out))


def summary(model: Any, input_shape: Union[int, Sequence[int]], batch_size: int = 1,
            print_fn: Optional[Callable[[str], Any]] = print) -> str:
    """Print and return (as a ``str``) the table of ``model``'s layers for one input shape.

    Parameters
    ----------
    model : Module
    input_shape : tuple of int
        One sample's shape, without the batch axis, e.g. ``(1, 28, 28)``.
    batch_size : int
        The batch size of the dummy forward (default 1); shapes and activation counts use it.
    print_fn : callable or None
        Where the table goes (default ``print``; None prints nothing).

    Example: LeNet-5 on ``(1, 28, 28)`` reports 61,706 parameters.
    """
    if not (hasattr(model, "named_modules") and hasattr(model, "register_forward_hook")):
        raise TypeError(f"model must be a dlcore.nn.Module, got {describe(model)}")
    if isinstance(input_shape, (int, np.integer)):
        input_shape = (input_shape,)
    if not isinstance(input_shape, (tuple, list)):
        raise TypeError(f"input_shape must be a tuple of ints (without the batch axis), got {describe(input_shape)}")
    input_shape = tuple(check_int(s, "input_shape", minimum=1) for s in input_shape)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    dtype = model.dtype or np.dtype(np.float32)

    rows: List[list] = []  # [name, type, shape, size, params, output object], in call order

    def record(module, name):
        def hook(module, args, out):
            children = [c for c in module.children() if c is not None]
            if children and rows and rows[-1][5] is out:
                return  # a pass-through container (Sequential): its last child's row says it
            shape, size = _shape_of(out)
            n_params = sum(p.size for p in module._parameters.values() if p is not None)
            rows.append([name or "(model)", type(module).__name__, shape, size, n_params, out])

        return module.register_forward_hook(hook)

    handles = [record(module, name) for name, module in model.named_modules()]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        model(np.zeros((batch_size,) + input_shape, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes:
            object.__setattr__(module, "training", mode)
        for module in model.modules():
            object.__setattr__(module, "_saved", None)
    rows = [row[:5] for row in rows]

    total_params = model.num_parameters()
    trainable = total_params
    activations = sum(r[3] for r in rows)
    itemsize = dtype.itemsize

    header = ("Layer (type)", "Output shape", "Activations", "Params")
    body = [(f"{name} ({kind})", shape, f"{size:,}", f"{n:,}") for name, kind, shape, size, n in rows]
    widths = [max(len(r[i]) for r in body + [header]) for i in range(4)]
    width = sum(widths) + 3 * 3

    def line(cells):
        return "   ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths))
        )

    out = [
        f"{type(model).__name__} summary: input {[batch_size, *input_shape]}, dtype {dtype}",
        "=" * width,
        line(header),
        "=" * width,
    ]
    out += [line(r) for r in body]
    out += [
        "=" * width,
        f"Total params: {total_params:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total_params - trainable:,}",
        "-" * width,
        f"Input size (MB): {batch_size * int(np.prod(input_shape)) * itemsize / 2**20:.2f}",
        f"Activations: {activations:,} elements ({activations * itemsize / 2**20:.2f} MB)",
        f"Params size (MB): {total_params * itemsize / 2**20:.2f}",
        "=" * width,
    ]
    text = "\n".join(out)
    if print_fn is not None:
        print_fn(text)
    return text
