"""``dlcore verify``: every kernel of a backend checked on this machine, three ways.

How a kernel is checked. Kernels are not called directly: they are driven through the
library, by *scenarios* -- one layer, loss or optimizer step with random inputs (for
example "Conv2d forward and backward", "Adam, 3 steps"). A scenario runs

1. on the NumPy twin (the reference),
2. on a *hybrid* backend: the twin with only the kernel under test taken from the
   backend being verified, at 1 thread and at N threads,
3. in PyTorch, when installed (through :func:`dlcore.export.to_torch` or torch.optim).

Every output of the scenario (the forward result, the input and parameter gradients,
the updated parameters) is compared, so a wrong kernel is caught where a user would meet
it, and the hybrid pins the error on that one kernel. Which kernels a scenario exercises
is not written down: it is recorded by running the scenario once on a twin that logs its
calls, so kernels added to the registry later are covered by any scenario that reaches
them, and a kernel no scenario reaches is reported as "no generator" (never skipped
silently).

Errors are relative to the reference's scale: ``max|a - b| / max(1, max|b|)`` over all
outputs. A kernel passes when that is at most 1e-4 (float32) or 1e-9 (float64) against
the twin, and the 1- and N-thread results agree as closely.
"""
import contextlib
import time
import types

import numpy as np

from . import backends, nn, optim
from . import functional as F
from ._random import manual_seed
from .backends import threads

__all__ = ["verify", "load_kernels", "VerifyReport", "SCENARIOS", "kernels_used"]

TOLERANCE = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-9}
DTYPES = (np.float32, np.float64)


# ---- scenarios -----------------------------------------------------------------------------
# A scenario is ``run(case, dtype, torch=None) -> {output name: ndarray}``: with ``torch``
# (the module) it computes the same outputs in PyTorch. Inputs come from ``case["seed"]``,
# so every run of one case sees the same numbers.

def _rng(case):
    return np.random.default_rng(case["seed"])


def _module_run(make, x_shape, case, dtype, torch, eval_mode=False):
    """Forward and backward of one module: output, input gradient, parameter gradients,
    buffers (running statistics)."""
    manual_seed(case["seed"])
    module = make().to(dtype)
    if eval_mode:
        module.eval()
    rng = _rng(case)
    x = rng.standard_normal(x_shape).astype(dtype)
    if torch is None:
        out = module(x)
        g = rng.standard_normal(out.shape).astype(dtype)
        result = {"output": out, "grad_input": module.backward(g)}
        result.update({f"grad {n}": p.grad for n, p in module.named_parameters()})
        result.update({f"buffer {n}": b for n, b in module.named_buffers() if b is not None})
        return result
    from .export import to_torch

    tmodule = to_torch(module)
    xt = torch.from_numpy(x).requires_grad_()
    out = tmodule(xt)
    g = rng.standard_normal(tuple(out.shape)).astype(dtype)
    out.backward(torch.from_numpy(g))
    result = {"output": out.detach().numpy(), "grad_input": xt.grad.numpy()}
    result.update({f"grad {n}": p.grad.numpy() for n, p in tmodule.named_parameters()})
    result.update({f"buffer {n}": b.numpy() for n, b in tmodule.named_buffers() if "num_batches" not in n})
    return result


def _layer(make, shape_of):
    def run(case, dtype, torch=None):
        return _module_run(lambda: make(case), shape_of(case), case, dtype, torch)
    return run


def _conv_cases():
    # (N, C, H, W, F, kernel, stride, padding): general, 1x1, non-square with stride 2,
    # kernel as large as the input, stride larger than the kernel, and one large enough
    # for the compiled kernels to use several threads.
    return [dict(N=2, C=3, H=7, W=7, F=4, k=3, s=1, p=1), dict(N=1, C=1, H=5, W=5, F=1, k=1, s=1, p=0),
            dict(N=3, C=2, H=6, W=9, F=5, k=(3, 2), s=2, p=(0, 1)), dict(N=2, C=3, H=4, W=4, F=2, k=4, s=1, p=0),
            dict(N=2, C=2, H=5, W=5, F=3, k=2, s=3, p=1), dict(N=4, C=3, H=32, W=32, F=4, k=3, s=1, p=1)]


def _pool_cases():
    return [dict(N=2, C=3, H=8, W=8, k=2, s=None, p=0), dict(N=1, C=1, H=5, W=7, k=3, s=2, p=1),
            dict(N=2, C=2, H=6, W=6, k=(3, 2), s=(1, 2), p=(1, 0)), dict(N=1, C=2, H=4, W=4, k=1, s=1, p=0),
            dict(N=4, C=8, H=48, W=48, k=2, s=None, p=0)]


def _image_shape(c):
    return (c["N"], c["C"], c["H"], c["W"])


def _unfold_fold(case, dtype, torch=None):
    rng = _rng(case)
    x = rng.standard_normal(_image_shape(case)).astype(dtype)
    k, s, p = case["k"], case["s"], case["p"]
    if torch is not None:
        tf = torch.nn.functional
        cols = tf.unfold(torch.from_numpy(x), k, padding=p, stride=s)
        c = rng.standard_normal(tuple(cols.shape)).astype(dtype)
        back = tf.fold(torch.from_numpy(c), (case["H"], case["W"]), k, padding=p, stride=s)
        return {"unfold": cols.numpy(), "fold": back.numpy()}
    cols = F.unfold(x, k, s, p)
    c = rng.standard_normal(cols.shape).astype(dtype)
    return {"unfold": cols, "fold": F.fold(c, (case["H"], case["W"]), k, s, p)}


def _unpool(case, dtype, torch=None):
    rng = _rng(case)
    x = rng.standard_normal(_image_shape(case)).astype(dtype)
    k, s, p = case["k"], case["s"], case["p"]
    pooled, indices = F.max_pool2d(x, k, s, p, return_indices=True)
    g = rng.standard_normal(_image_shape(case)).astype(dtype)
    if torch is not None:
        t = torch.from_numpy(pooled).requires_grad_()
        out = torch.nn.functional.max_unpool2d(t, torch.from_numpy(indices.copy()), k, s, p, output_size=x.shape[2:])
        out.backward(torch.from_numpy(g))
        return {"output": out.detach().numpy(), "grad_input": t.grad.numpy()}
    unpool = nn.MaxUnpool2d(k, s, p)
    out = unpool(pooled, indices, output_size=x.shape[2:])
    return {"output": out, "grad_input": unpool.backward(g)}


def _loss_run(make, torch_loss, case, dtype, torch):
    rng = _rng(case)
    logits = rng.standard_normal((case["N"], case["C"])).astype(dtype)
    if case["kind"] == "class":
        target = rng.integers(0, case["C"], case["N"])
    else:
        target = rng.random((case["N"], case["C"])).astype(dtype)
    if torch is not None:
        t = torch.from_numpy(logits).requires_grad_()
        loss = torch_loss(torch)(t, torch.from_numpy(target))
        loss.backward()
        return {"loss": np.array(loss.item()), "grad_input": t.grad.numpy()}
    criterion = make()
    loss = criterion(logits, target)
    return {"loss": np.array(loss), "grad_input": criterion.backward()}


_OPTIMIZERS = {
    "SGD momentum nesterov": ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "SGD dampening": ("SGD", dict(lr=0.1, momentum=0.5, dampening=0.3)),
    "Adagrad": ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.01)),
    "RMSprop centered momentum": ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.01)),
    "RMSprop": ("RMSprop", dict(lr=0.01)),
    "Adam": ("Adam", dict(lr=0.01, weight_decay=0.01)),
    "Adam amsgrad": ("Adam", dict(lr=0.01, amsgrad=True)),
    "AdamW": ("AdamW", dict(lr=0.01, amsgrad=True)),
}


def _optimizer(label):
    cls, kwargs = _OPTIMIZERS[label]

    def run(case, dtype, torch=None):
        rng = _rng(case)
        shapes = [(7, 5), (13,), (case["n"],)]
        data = [rng.standard_normal(s).astype(dtype) for s in shapes]
        grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(3)]
        if torch is not None:
            params = [torch.from_numpy(d.copy()) for d in data]
            opt = getattr(torch.optim, cls)(params, **kwargs)
            for step in grads:
                for p, g in zip(params, step):
                    p.grad = torch.from_numpy(g)
                opt.step()
            return {f"param {i}": p.numpy() for i, p in enumerate(params)}
        params = [nn.Parameter(d.copy()) for d in data]
        opt = getattr(optim, cls)(params, **kwargs)
        for step in grads:
            for p, g in zip(params, step):
                p.grad = g.copy()
            opt.step()
        return {f"param {i}": p.data for i, p in enumerate(params)}
    return run


def _activation(make, shapes):
    return [(_layer(lambda c: make(), lambda c: c["shape"]), [dict(shape=s) for s in shapes])]


_ACT_SHAPES = [(3, 5), (1, 1), (2, 3, 4, 5), (70000,)]


def _scenarios():
    """name -> (run, cases). Each case gets a seed; edge cases are listed by hand."""
    conv = _conv_cases()
    pool = _pool_cases()
    table = {
        "Conv2d": (_layer(lambda c: nn.Conv2d(c["C"], c["F"], c["k"], c["s"], c["p"]), _image_shape), conv),
        "Conv2d no bias": (_layer(lambda c: nn.Conv2d(c["C"], c["F"], c["k"], c["s"], c["p"], bias=False),
                                  _image_shape), conv[:2]),
        "ConvTranspose2d": (_layer(lambda c: nn.ConvTranspose2d(c["C"], c["F"], c["k"], c["s"], c["p"]),
                                   _image_shape), conv),
        "unfold/fold": (_unfold_fold, conv),
        "MaxPool2d": (_layer(lambda c: nn.MaxPool2d(c["k"], c["s"], c["p"]), _image_shape), pool),
        "AvgPool2d": (_layer(lambda c: nn.AvgPool2d(c["k"], c["s"], c["p"]), _image_shape), pool),
        "MaxUnpool2d": (_unpool, pool),
        "BatchNorm2d": (_layer(lambda c: nn.BatchNorm2d(c["C"]), _image_shape), pool),
        "BatchNorm1d": (_layer(lambda c: nn.BatchNorm1d(c["shape"][1]), lambda c: c["shape"]),
                        [dict(shape=(8, 5)), dict(shape=(4, 3, 7)), dict(shape=(256, 300))]),
        "InstanceNorm2d": (_layer(lambda c: nn.InstanceNorm2d(c["C"], affine=True), _image_shape), pool),
        "CrossEntropyLoss": (lambda case, dtype, torch=None: _loss_run(
            nn.CrossEntropyLoss, lambda t: t.nn.functional.cross_entropy, case, dtype, torch),
            [dict(N=4, C=3, kind="class"), dict(N=1, C=1, kind="class"), dict(N=600, C=120, kind="class")]),
        "BCEWithLogitsLoss": (lambda case, dtype, torch=None: _loss_run(
            nn.BCEWithLogitsLoss, lambda t: t.nn.functional.binary_cross_entropy_with_logits, case, dtype, torch),
            [dict(N=4, C=3, kind="prob"), dict(N=600, C=120, kind="prob")]),
    }
    for name, make in [("ReLU", nn.ReLU), ("LeakyReLU", lambda: nn.LeakyReLU(0.2)), ("Sigmoid", nn.Sigmoid),
                       ("Tanh", nn.Tanh), ("SiLU", nn.SiLU), ("Softmax", lambda: nn.Softmax(-1)),
                       ("Softmax dim 1", lambda: nn.Softmax(1)), ("LogSoftmax", lambda: nn.LogSoftmax(-1))]:
        (run, cases), = _activation(make, _ACT_SHAPES if "dim 1" not in name else _ACT_SHAPES[:3])
        table[name] = (run, cases)
    for label in _OPTIMIZERS:
        table[label] = (_optimizer(label), [dict(n=1), dict(n=100_000)])
    for name, (run, cases) in table.items():
        for i, case in enumerate(cases):
            case.setdefault("seed", 1000 + i)
    return table


#: What :func:`verify` runs: ``{scenario name: (run, cases)}``; ``run(case, dtype, torch=None)``
#: returns ``{output name: ndarray}`` and ``cases`` is a list of dicts, each with its ``seed``.
SCENARIOS = _scenarios()


def _random_conv(rng):
    k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    p = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
    return dict(N=int(rng.integers(1, 4)), C=int(rng.integers(1, 5)), F=int(rng.integers(1, 5)), k=k,
                s=(int(rng.integers(1, 4)), int(rng.integers(1, 4))), p=p,
                H=int(rng.integers(max(1, k[0] - 2 * p[0]), 11)), W=int(rng.integers(max(1, k[1] - 2 * p[1]), 11)))


def _random_conv_transpose(rng):
    case = _random_conv(rng)
    case["p"] = tuple(int(rng.integers(0, (k - 1) // 2 + 1)) for k in case["k"])  # output size >= 1
    return case


def _random_pool(rng):
    k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    return dict(N=int(rng.integers(1, 4)), C=int(rng.integers(1, 5)), k=k,
                s=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
                p=(int(rng.integers(0, k[0] // 2 + 1)), int(rng.integers(0, k[1] // 2 + 1))),
                H=int(rng.integers(k[0], 11)), W=int(rng.integers(k[1], 11)))


def _random_rows(rng):
    return dict(shape=tuple(int(d) for d in rng.integers(1, 9, int(rng.integers(1, 4)))))


def _random_logits(kind):
    return lambda rng: dict(N=int(rng.integers(1, 20)), C=int(rng.integers(1, 12)), kind=kind)


# Scenario name -> a function drawing one random case (verify adds ``random_cases`` per run).
RANDOM_CASES = {"Conv2d": _random_conv, "unfold/fold": _random_conv, "ConvTranspose2d": _random_conv_transpose}
RANDOM_CASES.update({name: _random_pool for name in ("MaxPool2d", "AvgPool2d", "MaxUnpool2d", "BatchNorm2d")})
RANDOM_CASES.update({name: _random_rows for name in ("ReLU", "LeakyReLU", "Sigmoid", "Tanh", "SiLU", "Softmax",
                                                      "LogSoftmax")})
RANDOM_CASES.update({"CrossEntropyLoss": _random_logits("class"), "BCEWithLogitsLoss": _random_logits("prob")})


# ---- backends built on the fly ------------------------------------------------------------

@contextlib.contextmanager
def _running_on(namespace):
    """Run the library on a backend made of ``namespace``'s kernels, inside the block only."""
    name = "_verify"
    backends._backends[name] = backends.Backend(name, namespace, openmp=False)
    try:
        with backends.use_backend(name):
            yield
    finally:
        del backends._backends[name]


def _twin_namespace(**replaced):
    twin = backends.backend("numpy")
    ns = types.SimpleNamespace(**{k: getattr(twin, k) for k in backends.KERNEL_NAMES})
    for k, fn in replaced.items():
        setattr(ns, k, fn)
    return ns


def kernels_used(scenario):
    """The kernel names a scenario calls (recorded on the twin with its first case)."""
    run, cases = SCENARIOS[scenario]
    called = []

    def spy(name, fn):
        def call(*args, **kwargs):
            called.append(name)
            return fn(*args, **kwargs)
        return call

    twin = backends.backend("numpy")
    with _running_on(_twin_namespace(**{k: spy(k, getattr(twin, k)) for k in backends.KERNEL_NAMES})):
        run(cases[0], np.float64)
    return sorted(set(called), key=backends.KERNEL_NAMES.index)


class _Timed:
    """A kernel wrapped to add up the time spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


def _error(got, ref):
    """Largest scaled difference over all outputs, and the output where it is."""
    worst, where = 0.0, None
    for key, r in ref.items():
        g = got.get(key)
        if g is None or np.shape(g) != np.shape(r):
            return float("inf"), f"{key}: shape {np.shape(g)} vs {np.shape(r)}"
        g, r = np.asarray(g, np.float64), np.asarray(r, np.float64)
        if g.size == 0:
            continue
        if not np.all(np.isfinite(g) == np.isfinite(r)):
            return float("inf"), f"{key}: non-finite values"
        err = float(np.max(np.abs(np.nan_to_num(g - r)))) / max(1.0, float(np.max(np.abs(r))))
        if err > worst or where is None:
            worst, where = err, key
    return worst, where


def _run(run, case, dtype, namespace, n_threads, torch=None):
    # Exactly n_threads: without this, a busy machine would give the "N threads" run one
    # thread (backends/threads.py, rule 4) and the thread-invariance check could not fail.
    previous, dynamic = backends.get_num_threads(), threads.DYNAMIC
    backends.set_num_threads(n_threads)
    threads.DYNAMIC = False
    try:
        if torch is not None:
            return run(case, dtype, torch)
        with _running_on(namespace):
            return run(case, dtype)
    finally:
        threads.DYNAMIC = dynamic
        backends.set_num_threads(previous)


# ---- the report --------------------------------------------------------------------------

class VerifyReport:
    """The result of :func:`verify`: ``rows`` (one dict per kernel), ``ok``, ``failed``,
    and ``str(report)``, the table."""

    def __init__(self, backend, rows, n_threads):
        self.backend, self.rows, self.n_threads = backend, rows, n_threads

    @property
    def failed(self):
        """Names of the kernels that failed (wrong numbers, thread-dependent, or raised)."""
        return [r["kernel"] for r in self.rows if r["status"] == "FAIL"]

    @property
    def ok(self):
        return not self.failed

    def __str__(self):
        def fmt(v):
            return "-" if v is None else f"{v:.1e}"

        def ms(v):
            return "-" if v is None else f"{v * 1e3:.3f}"

        lines = [f"dlcore verify: backend {self.backend!r} vs the NumPy twin and torch, "
                 f"1 and {self.n_threads} threads, float32 and float64",
                 f"{'kernel':<32} {'status':<13} {'vs twin':>8} {'vs torch':>8} {'threads':>8} "
                 f"{'ms/call':>8} {'twin ms':>8} {'cython ms':>9}"]
        for r in self.rows:
            threads = "-" if r["thread_diff"] is None else ("yes" if r["thread_ok"] else "NO")
            lines.append(f"{r['kernel']:<32} {r['status']:<13} {fmt(r['err_twin']):>8} {fmt(r['err_torch']):>8} "
                         f"{threads:>8} {ms(r['ms'])[:8]:>8} {ms(r['ms_twin'])[:8]:>8} {ms(r['ms_cython'])[:9]:>9}")
        problems = [r for r in self.rows if r["status"] != "ok"]
        for r in problems:
            lines.append(f"{r['kernel']}: {r['status']}: {r['message']}")
        lines.append("ms: per call, on each scenario's largest case, float32, "
                     f"{self.n_threads} threads, best of 3 ('-': not timed)")
        checked = sum(r["status"] != "no generator" for r in self.rows)
        lines.append(f"{checked} kernels checked, {len(self.failed)} failed, "
                     f"{len(self.rows) - checked} without a generator")
        return "\n".join(lines)


def _check_kernel(kernel, candidate, scenarios, n_threads, torch, timings):
    """One row of the table: ``candidate`` (a function) as ``kernel``, on every scenario."""
    row = dict(kernel=kernel, status="ok", err_twin=0.0, err_torch=None, thread_diff=0.0, thread_ok=True,
               ms=None, ms_twin=None, ms_cython=None, message="")
    ns = _twin_namespace(**{kernel: candidate})
    worst_where = ""
    for name, (run, cases) in scenarios.items():
        for case in cases:
            for dtype in DTYPES:
                label = f"{name} {dict((k, v) for k, v in case.items() if k != 'seed')} {np.dtype(dtype).name}"
                tol = TOLERANCE[np.dtype(dtype)]
                ref = _reference(name, run, case, dtype, n_threads)
                try:
                    one = _run(run, case, dtype, ns, 1)
                    many = _run(run, case, dtype, ns, n_threads)
                except Exception as exc:  # a student's kernel may raise anything: report it
                    row.update(status="FAIL", err_twin=None, err_torch=None, thread_diff=None,
                               message=f"raised {type(exc).__name__}: {exc} (in {label})")
                    return row
                err, where = _error(one, ref)
                diff, _ = _error(many, one)
                if err > row["err_twin"] or not worst_where:
                    row["err_twin"], worst_where = err, f"{where} in {label}"
                row["thread_diff"] = max(row["thread_diff"], diff)
                if torch is not None:
                    tref = _reference(name, run, case, dtype, n_threads, torch)
                    row["err_torch"] = max(row["err_torch"] or 0.0, _error(one, tref)[0])
                if err > tol and row["status"] == "ok":
                    row.update(status="FAIL", message=f"differs from the twin by {err:.2e} (tolerance {tol:.0e}) "
                                                     f"in {where} of {label}")
                if diff > tol:
                    row["thread_ok"] = False
                if diff > tol and row["status"] == "ok":
                    row.update(status="FAIL", message=f"1 and {n_threads} threads differ by {diff:.2e} in {label}")
    return row


_reference_cache: dict = {}


def _reference(name, run, case, dtype, n_threads, torch=None):
    key = (name, repr(case), np.dtype(dtype).name, torch is not None)
    if key not in _reference_cache:
        _reference_cache[key] = _run(run, case, dtype, _twin_namespace(), n_threads, torch)
    return _reference_cache[key]


def _kernel_times(backend_name, kernel, scenarios, n_threads, repeat=3):
    """Seconds per call of ``backend_name``'s kernel on the last (largest)
    case of each scenario, float32, N threads; the best of ``repeat`` runs."""
    best = None
    for _ in range(repeat):
        timed = _Timed(getattr(backends.backend(backend_name), kernel))
        ns = _twin_namespace(**{kernel: timed})
        for run, cases in scenarios.values():
            _run(run, cases[-1], np.float32, ns, n_threads)
        if timed.calls:
            per_call = timed.seconds / timed.calls
            best = per_call if best is None else min(best, per_call)
    return best


def verify(backend=None, kernels=None, n_threads=None, use_torch=True, timing=True, seed=None,
           random_cases=2):
    """Check ``backend``'s kernels against the NumPy twin (and torch) on this machine.

    Args:
        backend (str): the backend to check (default: the compiled one when present, else
            the active one). For a backend made with ``register_backend``, only its own
            kernels are checked by default.
        kernels (list of str): kernel names to check (default: as above, else every kernel
            in ``dlcore.backends.KERNEL_NAMES``).
        n_threads (int): the "N threads" run (default: ``get_num_threads()``, at least 2).
        use_torch (bool): also compare with PyTorch when it imports (default True).
        timing (bool): time the twin's (and compiled) kernel for comparison (default True).
        seed (int or None): seeds the random shapes (default None: new shapes every run).
        random_cases (int): random shapes drawn per scenario, on top of its fixed (edge)
            cases (default 2).

    Returns:
        a :class:`VerifyReport`; ``print(report)`` shows the table, ``report.failed`` the
        names of the failing kernels.
    """
    if backend is None:
        backend = "cython" if "cython" in backends.available_backends() else backends.get_backend()
    candidate = backends.backend(backend)
    if kernels is None:
        kernels = list(getattr(candidate, "user_kernels", None) or backends.KERNEL_NAMES)
    elif isinstance(kernels, str):
        kernels = [kernels]
    unknown = [k for k in kernels if k not in backends.KERNEL_NAMES]
    if unknown:
        raise ValueError(f"kernels must be names from dlcore.backends.KERNEL_NAMES, got unknown {unknown}")
    n_threads = max(2, backends.get_num_threads()) if n_threads is None else n_threads
    torch = None
    if use_torch:
        try:
            import torch
        except ImportError:
            torch = None
    coverage = {}
    for name in SCENARIOS:
        for k in kernels_used(name):
            coverage.setdefault(k, []).append(name)
    rng = np.random.default_rng(seed)
    table = {}
    for name, (run, cases) in SCENARIOS.items():
        draw = RANDOM_CASES.get(name)
        extra = [dict(draw(rng), seed=int(rng.integers(2**31))) for _ in range(random_cases)] if draw else []
        table[name] = (run, extra + cases)  # the fixed list ends with the largest case (timed)
    _reference_cache.clear()
    rows = []
    for kernel in kernels:
        scenarios = {name: table[name] for name in coverage.get(kernel, [])}
        if not scenarios:
            rows.append(dict(kernel=kernel, status="no generator", err_twin=None, err_torch=None,
                             thread_diff=None, thread_ok=None, ms=None, ms_twin=None, ms_cython=None,
                             message="no scenario in dlcore.verify.SCENARIOS calls this kernel; add one"))
            continue
        timings = {}
        row = _check_kernel(kernel, getattr(candidate, kernel), scenarios, n_threads, torch, timings)
        if timing and row["status"] == "ok":
            timings[("candidate", kernel)] = _kernel_times(backend, kernel, scenarios, n_threads)
            for other in ("numpy", "cython"):
                if other in backends.available_backends():
                    timings[(other, kernel)] = (timings[("candidate", kernel)] if other == backend
                                                else _kernel_times(other, kernel, scenarios, n_threads))
            row.update(ms=timings[("candidate", kernel)], ms_twin=timings.get(("numpy", kernel)),
                       ms_cython=timings.get(("cython", kernel)))
        rows.append(row)
    _reference_cache.clear()
    return VerifyReport(backend, rows, n_threads)


def load_kernels(path, name=None):
    """Run the Python file ``path`` and register its ``KERNELS`` dict as a backend.

    This is how ``dlcore verify --load FILE`` checks an exercise or a student's own file:
    the file defines kernel functions and ``KERNELS = {"kernel_name": function, ...}``.

    Returns:
        the backend's name (``name``, default the file's stem).
    """
    import os
    import runpy

    if not os.path.isfile(path):
        raise FileNotFoundError(f"path must be a Python file defining KERNELS, got {path!r} (no such file)")
    namespace = runpy.run_path(path, run_name="dlcore_user_kernels")
    found = namespace.get("KERNELS")
    if not isinstance(found, dict):
        raise ValueError(f"{path} must define KERNELS, a dict of kernel name -> function, "
                         f"got {type(found).__name__}")
    name = name or os.path.splitext(os.path.basename(path))[0]
    backends.register_backend(name, found)
    return name


def add_parser(sub):
    """The ``verify`` subcommand of ``python -m dlcore``."""
    p = sub.add_parser("verify", help="check every kernel against the NumPy twin and torch on this machine")
    p.add_argument("--backend", help="backend to check (default: the compiled one; with --load: the loaded file)")
    p.add_argument("--kernel", action="append", help="check only this kernel (repeatable)")
    p.add_argument("--load", metavar="FILE", help="a Python file defining KERNELS = {name: function}, "
                                                  "registered as a backend named after the file")
    p.add_argument("--threads", type=int, help="the N of '1 and N threads' (default: the cores, at least 2)")
    p.add_argument("--seed", type=int, help="seed of the random shapes (default: new shapes every run)")
    p.add_argument("--no-torch", action="store_true", help="skip the comparison with PyTorch")
    p.set_defaults(func=_main)


def _main(args):
    backend = args.backend
    if args.load:
        loaded = load_kernels(args.load)
        backend = backend or loaded
    report = verify(backend, args.kernel, n_threads=args.threads, use_torch=not args.no_torch, seed=args.seed)
    print(report)
    return 0 if report.ok else 1
