"""``compare_with_torch``: where does a dlcore model stop agreeing with its PyTorch twin?

For a student porting a model between the two libraries: both models run one forward
and one backward pass on the same input, with the same weights (dlcore's, copied into a
copy of the torch model by ``state_dict`` name), and every leaf layer's output, running
statistics, input gradient and parameter gradients are compared. The report names the
*first* layer that differs -- in forward order for outputs and buffers, then in backward
order (last layer first) for gradients, because an error spreads to everything computed
after it.
"""
import copy

import numpy as np

from . import nn

__all__ = ["compare_with_torch", "Comparison"]


def _leaves(module):
    return {name: m for name, m in module.named_modules() if not list(m.children())}


class _DlcoreRecorder:
    """Wraps each leaf's forward and backward (instance attributes, removed afterwards)."""

    def __init__(self, model):
        self.leaves = _leaves(model)
        self.order, self.outputs, self.grad_inputs = [], {}, {}

    def __enter__(self):
        for name, m in self.leaves.items():
            object.__setattr__(m, "forward", self._forward(name, type(m).forward.__get__(m)))
            object.__setattr__(m, "backward", self._backward(name, type(m).backward.__get__(m)))
        return self

    def __exit__(self, *exc):
        for m in self.leaves.values():
            for attr in ("forward", "backward"):
                m.__dict__.pop(attr, None)

    def _forward(self, name, fn):
        def forward(*args):
            out = fn(*args)
            self.order.append(name)
            self.outputs[name] = np.array(out[0] if isinstance(out, tuple) else out, copy=True)
            return out
        return forward

    def _backward(self, name, fn):
        def backward(grad_output):
            grad = fn(grad_output)
            self.grad_inputs[name] = None if grad is None else np.array(grad, copy=True)
            return grad
        return backward


def _torch_record(torch, tmodel, names):
    outputs, grad_inputs, handles = {}, {}, []
    leaves = dict(tmodel.named_modules())
    for name in names:
        m = leaves.get(name)
        if m is None:
            continue

        def fwd(mod, inputs, out, name=name):
            outputs[name] = (out[0] if isinstance(out, tuple) else out).detach().numpy().copy()

        def bwd(mod, grad_input, grad_output, name=name):
            g = grad_input[0] if grad_input else None
            grad_inputs[name] = None if g is None else g.detach().numpy().copy()

        handles.append(m.register_forward_hook(fwd))
        handles.append(m.register_full_backward_hook(bwd))
    return outputs, grad_inputs, handles


def _close(a, b, atol, rtol):
    """(max |a - b|, whether every entry is within atol + rtol * |b|)."""
    if a is None or b is None:
        return None, a is None and b is None
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf"), False
    if a.size == 0:
        return 0.0, True
    diff = np.abs(a - b)
    return float(diff.max()), bool(np.all(diff <= atol + rtol * np.abs(b)))


class Comparison:
    """The result of :func:`compare_with_torch`.

    ``rows``: one dict per leaf layer in forward order (``layer``, ``type``, and the max
    absolute error of ``output``, ``buffers``, ``grad_input``, ``grad_params``, each None
    when there is nothing to compare); ``loss`` error; ``first_divergence``: None when all
    agree, else a dict ``layer``, ``type``, ``what`` (e.g. ``"buffer running_mean"``),
    ``error``; ``str()`` is the table.
    """

    def __init__(self, rows, loss, first_divergence, atol, rtol):
        self.rows, self.loss, self.first_divergence = rows, loss, first_divergence
        self.atol, self.rtol = atol, rtol

    @property
    def ok(self):
        return self.first_divergence is None

    def __str__(self):
        def fmt(v):
            return "-" if v is None else f"{v:.1e}"

        width = max([len(r["layer"]) for r in self.rows] + [5])
        lines = [f"{'layer':<{width}}  {'type':<16} {'output':>8} {'buffers':>8} {'grad_in':>8} {'grad_par':>8}"]
        for r in self.rows:
            mark = "  <-- first divergence" if self.first_divergence and r["layer"] == self.first_divergence["layer"] else ""
            lines.append(f"{r['layer']:<{width}}  {r['type']:<16} {fmt(r['output']):>8} {fmt(r['buffers']):>8} "
                         f"{fmt(r['grad_input']):>8} {fmt(r['grad_params']):>8}{mark}")
        if self.loss is not None:
            lines.append(f"loss: max error {self.loss:.1e}")
        if self.first_divergence is None:
            lines.append(f"no divergence (atol={self.atol:g}, rtol={self.rtol:g})")
        else:
            d = self.first_divergence
            lines.append(f"first divergence: layer {d['layer']!r} ({d['type']}): {d['what']} differs by "
                         f"{d['error']:.2e} (atol={self.atol:g}, rtol={self.rtol:g})")
        return "\n".join(lines)


def compare_with_torch(model, torch_model, x, target=None, criterion=None, atol=1e-5, rtol=1e-4, seed=0):
    """Run ``model`` (dlcore) and ``torch_model`` layer by layer and locate the first difference.

    Both run one forward pass on ``x`` and one backward pass: from ``criterion(out,
    target)`` when both are given (a dlcore loss; the torch loss of the same class name is
    used on the torch side), else from a seeded random ``grad_output``. Before that,
    dlcore's parameters and buffers are copied into a deep copy of ``torch_model`` by
    ``state_dict`` name (``torch_model`` itself is left untouched), which also takes
    dlcore's dtype and train/eval mode. Layers are matched by name (``"0"``,
    ``"2.block.1"``, ...), which agree when the two models are built the same way.

    Args:
        model: the dlcore ``nn.Module``.
        torch_model: the ``torch.nn.Module`` that should compute the same function.
        x: input array. target, criterion: optional loss (see above).
        atol, rtol: an entry differs when ``|dlcore - torch| > atol + rtol * |torch|``.
        seed: for the random upstream gradient.

    Returns:
        a :class:`Comparison`; ``print()`` it for the per-layer table. Note that Dropout
        in training mode draws different masks in the two libraries: use ``eval()``.

    Raises:
        ValueError: a dlcore parameter or buffer has no counterpart of that name and
            shape in ``torch_model``.
    """
    import torch

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a dlcore nn.Module, got {type(model).__name__}")
    if not isinstance(torch_model, torch.nn.Module):
        raise TypeError(f"torch_model must be a torch.nn.Module, got {type(torch_model).__name__}")
    dtype = model.dtype if list(model.parameters()) else np.dtype(np.float32)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    tmodel = copy.deepcopy(torch_model).to(tdtype)
    state, tstate = model.state_dict(), tmodel.state_dict()
    for key, value in state.items():
        if key not in tstate:
            raise ValueError(f"torch_model has no parameter or buffer {key!r} (dlcore's name); its names "
                             f"are {sorted(tstate)[:8]}{'...' if len(tstate) > 8 else ''}")
        if tuple(tstate[key].shape) != np.shape(value) and tstate[key].numel() != np.size(value):
            raise ValueError(f"{key!r} has shape {np.shape(value)} in model but {tuple(tstate[key].shape)} "
                             "in torch_model")
    with torch.no_grad():
        for key, value in state.items():
            t = tstate[key]
            t.copy_(torch.from_numpy(np.array(value).reshape(tuple(t.shape))).to(t.dtype))
    modes = dict(model.named_modules())
    for name, tm in tmodel.named_modules():
        if name in modes:
            tm.train(modes[name].training)

    x = np.asarray(x)
    if x.dtype.kind == "f":
        x = x.astype(dtype)
    model.zero_grad()
    with _DlcoreRecorder(model) as rec:
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        if criterion is not None and target is not None:
            loss = criterion(out, target)
            g = criterion.backward()
        else:
            loss = None
            g = np.random.default_rng(seed).standard_normal(np.shape(out)).astype(out.dtype)
        model.backward(g)

    outputs, grad_inputs, handles = _torch_record(torch, tmodel, rec.leaves)
    try:
        xt = torch.from_numpy(x.copy())
        if xt.is_floating_point():
            xt.requires_grad_()
        tout = tmodel(xt)
        tout = tout[0] if isinstance(tout, tuple) else tout
        if loss is not None:
            tcrit = getattr(torch.nn, type(criterion).__name__)(reduction=getattr(criterion, "reduction", "mean"))
            t_target = torch.as_tensor(np.asarray(target))
            if t_target.is_floating_point():
                t_target = t_target.to(tdtype)
            tloss = tcrit(tout, t_target)
            tloss.backward()
            loss_err = abs(float(loss) - tloss.item())
        else:
            tout.backward(torch.from_numpy(g))
            loss_err = None
    finally:
        for h in handles:
            h.remove()

    tparams = dict(tmodel.named_parameters())
    tbuffers = dict(tmodel.named_buffers())
    rows, forward_bad, backward_bad = [], None, []
    for name in dict.fromkeys(rec.order):  # forward order, each layer once
        m = rec.leaves[name]
        row = dict(layer=name, type=type(m).__name__, output=None, buffers=None, grad_input=None, grad_params=None)
        checks = [("output", "output", rec.outputs.get(name), outputs.get(name))]
        for bname, b in m.named_buffers():
            full = f"{name}.{bname}" if name else bname
            if b is not None and full in tbuffers and "num_batches" not in bname:
                checks.append(("buffers", f"buffer {bname}", b, tbuffers[full].numpy()))
        grad_checks = [("grad_input", "input gradient", rec.grad_inputs.get(name), grad_inputs.get(name))]
        for pname, p in m.named_parameters():
            full = f"{name}.{pname}" if name else pname
            tp = tparams.get(full)
            tgrad = None if tp is None or tp.grad is None else tp.grad.numpy()
            grad_checks.append(("grad_params", f"gradient of {pname}", p.grad, tgrad))
        for column, what, a, b in checks + grad_checks:
            if name not in outputs and column == "output":
                row["output"] = float("inf")
                what = "output (no torch layer of this name)"
                ok = False
                err = float("inf")
            else:
                err, ok = _close(a, b, atol, rtol)
                if err is not None:
                    row[column] = max(row[column] or 0.0, err)
            if not ok:
                found = dict(layer=name, type=row["type"], what=what, error=err if err is not None else float("inf"))
                if column in ("output", "buffers"):
                    forward_bad = forward_bad or found
                else:
                    backward_bad.append(found)
        rows.append(row)
    first = forward_bad
    if first is None and backward_bad:
        # Backward runs last layer first: the culprit is the latest layer (in forward
        # order) with a bad gradient; every layer before it inherits the error.
        culprit = backward_bad[-1]["layer"]
        first = next(b for b in backward_bad if b["layer"] == culprit)
    return Comparison(rows, loss_err, first, atol, rtol)
