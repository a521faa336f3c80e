r"""``dlcore.profile``: where the time of one training step goes, layer by layer.

For each leaf layer, one forward and one backward pass are timed (the median of
``repeat`` steps after a warm-up) and set against what the layer has to do:

* layers built on matrix products (Linear, Conv2d, ConvTranspose2d) are *compute-bound*:
  their FLOPs are counted (a multiply-add is 2 FLOPs) and the achieved GFLOP/s is shown as
  a fraction of this machine's GEMM rate (a large float32/float64 ``numpy`` matmul,
  measured once);
* every other layer (activations, pooling, normalization, reshapes) does a few operations
  per element and is *memory-bound*: the bytes it must read and write are counted and
  the achieved GB/s is shown as a fraction of this machine's memory bandwidth (an
  in-place ``a += b`` on arrays larger than the caches, measured once).

FLOP counts, with B the number of rows (batch) and for a convolution
``P = N * OH * OW`` output positions, ``K = C_in / groups * KH * KW``:

.. math::

    \text{Linear: forward } 2 B \, d_{in} d_{out} \,(+ B d_{out} \text{ bias}), \quad
    \text{backward } 4 B \, d_{in} d_{out} \,(+ B d_{out})

    \text{Conv2d: forward } 2 P \, C_{out} K \,(+ P C_{out}), \quad
    \text{backward } 4 P \, C_{out} K \,(+ P C_{out})

(the backward is two products of the forward's size: the input gradient and the weight
gradient; a layer that skips the input gradient, as a first Conv2d does in training
because its input is data, counts one). The "backend" column says which kernels each layer called, on which backend;
Linear layers call none: their products are NumPy's BLAS.
"""
import time

import numpy as np

from . import backends, nn
from .nn.module import backward_from_data

__all__ = ["profile", "ProfileReport", "machine_rates", "layer_flops"]

_RATES: dict = {}


def machine_rates(dtype=np.float32):
    """``(GEMM GFLOP/s, memory GB/s)`` of this machine for ``dtype``, measured once and cached.

    GEMM: best of 20 ``a @ b`` with 512x512 matrices (NumPy's BLAS with its own threads).
    Bandwidth: best of 10 ``a += b`` on two 64 MiB arrays (past the last-level cache),
    counting 3 bytes per byte of ``a``: two reads and a write, which is the real traffic
    (``python -m dlcore bench`` counts its floor the same way; a plain copy would also
    read each output line before writing it, traffic that a 2-byte count misses).
    (Best-of, because on a shared machine any single run may be slowed by other processes.)
    """
    dtype = np.dtype(dtype)
    if dtype not in _RATES:
        rng = np.random.default_rng(0)
        n = 512
        a, b = rng.random((n, n)).astype(dtype), rng.random((n, n)).astype(dtype)
        c = a @ b
        best = min(_timed(lambda: np.matmul(a, b, out=c)) for _ in range(20))
        src = np.ones(64 * 2**20 // dtype.itemsize, dtype)
        dst = np.zeros_like(src)
        np.add(dst, src, out=dst)
        update = min(_timed(lambda: np.add(dst, src, out=dst)) for _ in range(10))
        _RATES[dtype] = (2 * n**3 / best / 1e9, 3 * src.nbytes / update / 1e9)
    return _RATES[dtype]


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def layer_flops(module, x_shape, out_shape, input_grad=True):
    """``(forward FLOPs, backward FLOPs)`` of a compute-bound layer, or None for the others.

    ``input_grad=False``: the backward skipped dL/dx (the first layer of a training step),
    so it is one product of the forward's size, not two.
    """
    if isinstance(module, nn.Linear):
        rows = int(np.prod(x_shape[:-1]))
        mac = rows * module.in_features * module.out_features
        bias = rows * module.out_features if module.bias is not None else 0
        return 2 * mac + bias, (4 if input_grad else 2) * mac + bias
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        groups = getattr(module, "groups", 1)
        kh, kw = module.kernel_size
        if isinstance(module, nn.Conv2d):  # every output value is a K-term dot product
            mac = int(np.prod(out_shape)) * (module.in_channels // groups * kh * kw)
        else:  # every input value scatters C_out/groups * KH * KW products
            mac = int(np.prod(x_shape)) * (module.out_channels // groups * kh * kw)
        bias = int(np.prod(out_shape)) if module.bias is not None else 0
        return 2 * mac + bias, (4 if input_grad else 2) * mac + bias
    return None


def _layer_bytes(x, out):
    """Bytes a memory-bound layer moves: forward reads x and writes out; backward reads the
    output gradient and what was saved (about x) and writes the input gradient."""
    x_bytes, out_bytes = np.asarray(x).nbytes, np.asarray(out).nbytes
    return x_bytes + out_bytes, out_bytes + 2 * x_bytes


class _Recorder:
    """Leaf forwards and backwards timed (instance attributes, removed on exit), and
    the kernels each one calls (the active backend's attributes, restored on exit)."""

    def __init__(self, model):
        self.leaves = {name: m for name, m in model.named_modules() if not list(m.children())}
        self.seconds = {}      # (name, "forward"|"backward") -> seconds in this step
        self.shapes = {}       # name -> (input shape, output shape, input, output)
        self.kernels = {}      # name -> kernel names called
        self.no_input_grad = set()  # names whose backward returned no dL/dx
        self.order = []
        self.current = []

    def __enter__(self):
        for name, m in self.leaves.items():
            for phase in ("forward", "backward"):
                object.__setattr__(m, phase, self._wrap(name, phase, getattr(type(m), phase).__get__(m)))
        self.backend = backends.kernels()
        self.saved = {}
        for k in backends.KERNEL_NAMES:
            fn = getattr(self.backend, k)
            self.saved[k] = fn
            setattr(self.backend, k, self._spy(k, fn))
        return self

    def __exit__(self, *exc):
        for m in self.leaves.values():
            m.__dict__.pop("forward", None)
            m.__dict__.pop("backward", None)
        for k, fn in self.saved.items():
            setattr(self.backend, k, fn)

    def _spy(self, kernel, fn):
        def call(*args, **kwargs):
            if self.current:
                self.kernels.setdefault(self.current[-1], []).append(kernel)
            return fn(*args, **kwargs)
        return call

    def _wrap(self, name, phase, fn):
        def run(*args, **kwargs):
            self.current.append(name)
            start = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self.current.pop()
            self.seconds[(name, phase)] = self.seconds.get((name, phase), 0.0) + elapsed
            if phase == "backward" and out is None:  # it skipped dL/dx (asked, or needs_input_grad=False)
                self.no_input_grad.add(name)
            if phase == "forward":
                if name not in self.shapes:
                    self.order.append(name)
                    y = out[0] if isinstance(out, tuple) else out
                    self.shapes[name] = (np.shape(args[0]), np.shape(y), args[0], y)
            return out
        return run


class ProfileReport:
    """What :func:`profile` measured: ``rows`` (one dict per layer), ``totals``, the
    machine's rates; ``str(report)`` is the table and ``report.as_dict()`` plain data."""

    def __init__(self, rows, totals, gemm_gflops, bandwidth_gbs, backend, n_threads):
        self.rows, self.totals = rows, totals
        self.gemm_gflops, self.bandwidth_gbs = gemm_gflops, bandwidth_gbs
        self.backend, self.n_threads = backend, n_threads

    def as_dict(self):
        return {"rows": [dict(r) for r in self.rows], "totals": dict(self.totals),
                "gemm_gflops": self.gemm_gflops, "bandwidth_gbs": self.bandwidth_gbs,
                "backend": self.backend, "n_threads": self.n_threads}

    def __str__(self):
        w = max([len(r["layer"]) for r in self.rows] + [5])
        lines = [f"dlcore.profile: backend {self.backend!r}, {self.n_threads} thread(s); machine: GEMM "
                 f"{self.gemm_gflops:.1f} GFLOP/s, memory {self.bandwidth_gbs:.1f} GB/s",
                 f"{'layer':<{w}}  {'type':<15} {'output':<16} {'fwd ms':>7} {'bwd ms':>7} {'MFLOP':>8} "
                 f"{'GFLOP/s':>8} {'MB':>7} {'GB/s':>6} {'of peak':>7}  backend"]
        for r in self.rows:
            mflop = "-" if r["flops"] is None else f"{r['flops'] / 1e6:.2f}"
            gflops = "-" if r["gflops"] is None else f"{r['gflops']:.2f}"
            mb = "-" if r["bytes"] is None else f"{r['bytes'] / 1e6:.2f}"
            gbs = "-" if r["gbs"] is None else f"{r['gbs']:.1f}"
            lines.append(f"{r['layer']:<{w}}  {r['type']:<15} {str(r['output_shape']):<16} "
                         f"{r['forward_ms']:>7.3f} {r['backward_ms']:>7.3f} {mflop:>8} {gflops:>8} {mb:>7} {gbs:>6} "
                         f"{r['fraction_of_peak']:>7.0%}  {r['backend']}")
        t = self.totals
        if t["loss_ms"] is not None:
            lines.append(f"{'loss':<{w}}  {'':<15} {'':<16} {t['loss_ms']:>7.3f}")
        lines.append(f"{'total':<{w}}  {'':<15} {'':<16} {t['forward_ms']:>7.3f} {t['backward_ms']:>7.3f} "
                     f"{t['flops'] / 1e6:>8.2f} {t['gflops']:>8.2f}")
        lines.append(f"layers + loss {t['total_ms']:.3f} ms; whole step (wall) {t['step_ms']:.3f} ms "
                     f"(median of {t['repeat']} steps; fwd/bwd = forward/backward, peak = GEMM rate "
                     f"for layers with FLOPs, memory bandwidth for the others)")
        return "\n".join(lines)


def profile(model, x, y=None, criterion=None, repeat=5, warmup=1):
    """Time one forward and backward of every leaf layer of ``model`` on input ``x``.

    Args:
        model: a dlcore ``nn.Module``.
        x: an input batch.
        y, criterion: target and loss module; when both are given the backward pass starts
            from ``criterion.backward()`` and the loss is timed too; otherwise from ones.
        repeat (int): steps timed; each figure is the median over them (default 5).
        warmup (int): untimed steps first (default 1).

    Returns:
        a :class:`ProfileReport`: ``print(report)`` for the table, ``report.as_dict()``
        for the numbers (per layer: ``forward_ms``, ``backward_ms``, ``flops``, ``gflops``,
        ``bytes``, ``gbs``, ``fraction_of_peak``, ``output_shape``, ``backend``; totals).
        Parameter gradients are left as the last step computed them.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a dlcore nn.Module, got {type(model).__name__}")
    if (y is None) != (criterion is None):
        raise ValueError("y and criterion must be given together (or neither), got "
                         f"y={'an array' if y is not None else None}, criterion={criterion!r}")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an int >= 1, got {repeat!r}")
    steps, losses, walls = [], [], []
    recorder = _Recorder(model)
    with recorder:
        for i in range(warmup + repeat):
            recorder.seconds = {}
            model.zero_grad()
            start = time.perf_counter()
            out = model(x)
            out = out[0] if isinstance(out, tuple) else out
            loss_time = 0.0
            if criterion is not None:
                t0 = time.perf_counter()
                criterion(out, y)
                g = criterion.backward()
                loss_time = time.perf_counter() - t0
            else:
                g = np.ones_like(out)
            backward_from_data(model, g)  # as a training step: x is data, no dL/dx
            wall = time.perf_counter() - start
            if i >= warmup:
                steps.append(recorder.seconds)
                losses.append(loss_time)
                walls.append(wall)
    dtype = np.asarray(recorder.shapes[recorder.order[0]][3]).dtype if recorder.order else np.dtype(np.float32)
    gemm, bandwidth = machine_rates(dtype if dtype.kind == "f" else np.float32)
    backend = backends.get_backend()
    rows = []
    for name in recorder.order:
        m = recorder.leaves[name]
        x_shape, out_shape, xin, out = recorder.shapes[name]
        fwd = float(np.median([s.get((name, "forward"), 0.0) for s in steps]))
        bwd = float(np.median([s.get((name, "backward"), 0.0) for s in steps]))
        flops = layer_flops(m, x_shape, out_shape, input_grad=name not in recorder.no_input_grad)
        row = dict(layer=name, type=type(m).__name__, output_shape=tuple(out_shape),
                   forward_ms=fwd * 1e3, backward_ms=bwd * 1e3, flops=None, gflops=None, bytes=None, gbs=None)
        if flops is not None:
            row["flops"] = flops[0] + flops[1]
            row["gflops"] = row["flops"] / max(fwd + bwd, 1e-12) / 1e9
            row["fraction_of_peak"] = row["gflops"] / gemm
        else:
            moved = _layer_bytes(xin, out)
            row["bytes"] = moved[0] + moved[1]
            row["gbs"] = row["bytes"] / max(fwd + bwd, 1e-12) / 1e9
            row["fraction_of_peak"] = row["gbs"] / bandwidth
        called = list(dict.fromkeys(recorder.kernels.get(name, [])))
        row["backend"] = f"{backend}: {', '.join(called)}" if called else "numpy (no kernel)"
        rows.append(row)
    forward_ms = sum(r["forward_ms"] for r in rows)
    backward_ms = sum(r["backward_ms"] for r in rows)
    loss_ms = float(np.median(losses)) * 1e3 if criterion is not None else None
    flops = sum(r["flops"] or 0 for r in rows)
    total_ms = forward_ms + backward_ms + (loss_ms or 0.0)
    totals = dict(forward_ms=forward_ms, backward_ms=backward_ms, loss_ms=loss_ms, total_ms=total_ms,
                  step_ms=float(np.median(walls)) * 1e3, flops=flops,
                  gflops=flops / max(forward_ms + backward_ms, 1e-9) / 1e6, repeat=repeat)
    return ProfileReport(rows, totals, gemm, bandwidth, backend, backends.get_num_threads())
