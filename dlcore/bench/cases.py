"""The benchmark cases, defined once for ``python -m dlcore bench`` and ``benchmarks/``.

A :class:`Case` knows how to *build* a ready-to-time callable for one implementation
kind:

* ``"dlcore"`` -- the public API (``dlcore.functional``, ``dlcore.optim``,
  ``dlcore.models``); the harness activates the backend (``cython`` or ``numpy``) and the
  thread count around the calls, so one build serves both backends;
* ``"torch"`` -- the fair PyTorch equivalent (forward in ``no_grad`` for forward-only
  cases, forward + autograd backward otherwise, ``torch.optim`` with its defaults).

Inputs come from a generator seeded by the case, so every implementation sees the same
numbers and a fresh build followed by one call gives comparable results (the checks
compare every implementation with the NumPy twin after timing).

Work counts, used for GFLOP/s and GB/s:

* convolution: ``2*N*F*C*KH*KW*OH*OW`` flops per forward, twice that for the backward
  (grad input and grad weight);
* memory-bound ops: the bytes that *must* move (each array read or written once, at the
  array's dtype); a kernel that touches memory more often shows a lower GB/s. An array
  updated in place counts twice (read, written), as the bandwidth probe's ``a += b`` counts
  ``a`` (``dlcore/bench/machine.py``); the line a plain store reads before overwriting a
  fresh output (write-allocate) is not counted, since streaming stores avoid it.
"""
import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Case", "Unavailable", "all_cases", "get_case", "to_numpy", "IMPLS"]

#: Implementations, in table order: compiled backend, NumPy twin, PyTorch CPU.
IMPLS = ("cython", "numpy", "torch")

F32 = 4  # bytes of a float32
I64 = 8  # bytes of an int64 (max-pool indices)


class Unavailable(Exception):
    """This implementation cannot run here (torch missing, an API not written yet, ...)."""


@dataclass(frozen=True)
class Case:
    """One benchmark: what to time, how much work it is, and how to check it.

    ``build(kind, quick)`` returns a :class:`Bound`; ``kind`` is ``"dlcore"`` or
    ``"torch"``. ``flops`` / ``nbytes`` are per call (0 when not meaningful).
    """

    key: str
    name: str
    group: str
    build: object = field(repr=False)
    flops: float = 0.0
    nbytes: float = 0.0
    quick: bool = False
    full_only: bool = False
    tol: float = 1e-5
    target: str = ""  # the roof it is measured against: "bandwidth", "gemm" or ""


@dataclass
class Bound:
    """A built case: ``fn()`` runs one timed call and returns its result.

    ``scale`` multiplies a measured call time into the reported one (an epoch estimated
    from a fraction of its steps); ``note`` says so.
    """

    fn: object
    scale: float = 1.0
    note: str = ""
    #: for long cases: a short call to warm up with, and the fraction of ``fn`` it is
    #: (the harness then estimates ``fn``'s time instead of running it to warm up)
    warmup: object = None
    warmup_fraction: float = 1.0
    #: for long cases: ``truncate(fraction)`` -> a Bound running about that fraction of
    #: ``fn`` and scaled back up (used when a call would exceed the harness's time cap)
    truncate: object = None


def _torch():
    try:
        import torch
    except ImportError as exc:  # torch is optional
        raise Unavailable(f"torch not importable ({exc})") from None
    return torch


def to_numpy(result):
    """A tuple of float64 ndarrays from whatever a case returned (arrays, tensors, floats)."""
    if not isinstance(result, (tuple, list)):
        result = (result,)
    out = []
    for r in result:
        if hasattr(r, "detach"):  # a torch tensor
            r = r.detach().cpu().numpy()
        elif hasattr(r, "data") and hasattr(r, "grad"):  # a dlcore Parameter
            r = r.data
        out.append(np.asarray(r, dtype=np.float64))
    return tuple(out)


def _rng(key):
    # A seed derived from the case key: same inputs for every implementation of a case.
    return np.random.default_rng(sum(ord(c) * (i + 1) for i, c in enumerate(key)))


def _randn(rng, shape, scale=1.0):
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale))


# ---- convolution ---------------------------------------------------------------------------

def _conv_out(size, k, stride, pad):
    return (size + 2 * pad - k) // stride + 1


def _conv_case(key, label, xs, ws, stride, pad, backward, quick=False, target=""):
    n, c, h, w = xs
    f, _, kh, kw = ws
    oh, ow = _conv_out(h, kh, stride, pad), _conv_out(w, kw, stride, pad)
    fwd_flops = 2.0 * n * f * c * kh * kw * oh * ow

    def build(kind, quick_run):
        rng = _rng(key)
        x = _randn(rng, xs)
        weight = _randn(rng, ws, 1.0 / math.sqrt(c * kh * kw))
        bias = _randn(rng, (f,), 0.1)
        grad_out = _randn(rng, (n, f, oh, ow))
        if kind == "torch":
            torch = _torch()
            tf = torch.nn.functional
            tx, tw, tb, tg = (torch.from_numpy(a) for a in (x, weight, bias, grad_out))
            if not backward:
                def run():
                    with torch.no_grad():
                        return tf.conv2d(tx, tw, tb, stride=stride, padding=pad)
                return Bound(run)
            for t in (tx, tw, tb):
                t.requires_grad_(True)

            def run():
                tx.grad = tw.grad = tb.grad = None
                out = tf.conv2d(tx, tw, tb, stride=stride, padding=pad)
                out.backward(tg)
                return out, tx.grad, tw.grad, tb.grad
            return Bound(run)

        from dlcore import functional as F
        if not backward:
            return Bound(lambda: F.conv2d(x, weight, bias, stride=stride, padding=pad))

        def run():
            out, ctx = F.conv2d_forward(x, weight, bias, stride, pad)
            gx, gw, gb = F.conv2d_backward(grad_out, ctx)
            return out, gx, gw, gb
        return Bound(run)

    what = "fwd+bwd" if backward else "fwd"
    return Case(
        key=f"conv2d.{'fb' if backward else 'f'}.{key}",
        name=f"conv2d {what} {label}",
        group="conv",
        build=build,
        flops=fwd_flops * (3 if backward else 1),
        quick=quick,
        tol=1e-4,
        target=target,
    )


# (key, label, x shape, w shape, stride, padding)
CONV_SHAPES = (
    ("lenet1", "LeNet conv1 x64x1x28x28 w6x1x5x5 p2", (64, 1, 28, 28), (6, 1, 5, 5), 1, 2),
    ("lenet2", "LeNet conv2 x64x6x14x14 w16x6x5x5", (64, 6, 14, 14), (16, 6, 5, 5), 1, 0),
    ("c64", "64ch 32x32 x32x64x32x32 w64x64x3x3 p1", (32, 64, 32, 32), (64, 64, 3, 3), 1, 1),
    ("s2", "stride2 x32x64x32x32 w128x64x3x3 s2 p1", (32, 64, 32, 32), (128, 64, 3, 3), 2, 1),
)


# ---- pooling -------------------------------------------------------------------------------

def _pool_case(kind_name, key, label, xs, quick=False, target=""):
    n, c, h, w = xs
    numel = n * c * h * w
    out_numel = n * c * (h // 2) * (w // 2)
    if kind_name == "max":
        # fwd: read x, write out + int64 indices; bwd: read grad_out + indices, write grad_in.
        nbytes = numel * F32 + out_numel * (F32 + I64) + out_numel * (F32 + I64) + numel * F32
    else:
        # fwd: read x, write out; bwd: read grad_out, write grad_in.
        nbytes = 2 * numel * F32 + 2 * out_numel * F32

    def build(kind, quick_run):
        rng = _rng(key + kind_name)
        x = _randn(rng, xs)
        grad_out = _randn(rng, (n, c, h // 2, w // 2))
        if kind == "torch":
            torch = _torch()
            pool = getattr(torch.nn.functional, f"{kind_name}_pool2d")
            tx, tg = torch.from_numpy(x), torch.from_numpy(grad_out)
            tx.requires_grad_(True)

            def run():
                tx.grad = None
                out = pool(tx, 2)
                out.backward(tg)
                return out, tx.grad
            return Bound(run)

        from dlcore import functional as F
        if kind_name == "max":
            def run():
                out, _indices, ctx = F.max_pool2d_forward(x, 2)
                return out, F.max_pool2d_backward(grad_out, ctx)
        else:
            def run():
                out, ctx = F.avg_pool2d_forward(x, 2)
                return out, F.avg_pool2d_backward(grad_out, ctx)
        return Bound(run)

    return Case(
        key=f"{kind_name}_pool2d.fb.{key}",
        name=f"{kind_name}_pool2d 2x2 fwd+bwd {label}",
        group="pool",
        build=build,
        nbytes=nbytes,
        quick=quick,
        target=target,
    )


POOL_SHAPES = (
    ("lenet1", "x64x6x28x28", (64, 6, 28, 28)),
    ("lenet2", "x64x16x10x10", (64, 16, 10, 10)),
    ("c64", "x32x64x32x32", (32, 64, 32, 32)),
    ("big", "x32x64x64x64 (8.4e6)", (32, 64, 64, 64)),
)


def _avg_pool_overlap_case(key, label, xs, quick=False):
    """3x3 windows at stride 2, padding 1: windows overlap, so the backward adds shares."""
    n, c, h, w = xs
    oh, ow = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1

    def build(kind, quick_run):
        rng = _rng(key + "avg3")
        x = _randn(rng, xs)
        grad_out = _randn(rng, (n, c, oh, ow))
        if kind == "torch":
            torch = _torch()
            tx, tg = torch.from_numpy(x), torch.from_numpy(grad_out)
            tx.requires_grad_(True)

            def run():
                tx.grad = None
                out = torch.nn.functional.avg_pool2d(tx, 3, 2, 1)
                out.backward(tg)
                return out, tx.grad
            return Bound(run)

        from dlcore import functional as F

        def run():
            out, ctx = F.avg_pool2d_forward(x, 3, 2, 1)
            return out, F.avg_pool2d_backward(grad_out, ctx)
        return Bound(run)

    return Case(
        key=f"avg_pool2d.fb.overlap.{key}",
        name=f"avg_pool2d 3x3 s2 p1 fwd+bwd {label}",
        group="pool",
        build=build,
        nbytes=2 * n * c * h * w * F32 + 2 * n * c * oh * ow * F32,
        quick=quick,
    )


NORM_SHAPES = (
    ("c16", "x64x16x32x32", (64, 16, 32, 32)),
    ("c64", "x32x64x16x16", (32, 64, 16, 16)),
)


def _norm_case(kind_name, key, label, xs, quick=False):
    """Batch or instance norm (affine, training mode) forward + backward."""
    numel = int(np.prod(xs))
    c = xs[1]

    def build(kind, quick_run):
        rng = _rng(key + kind_name)
        x = _randn(rng, xs)
        grad_out = _randn(rng, xs)
        weight = (1 + 0.1 * rng.standard_normal(c)).astype(np.float32)
        bias = (0.1 * rng.standard_normal(c)).astype(np.float32)
        if kind == "torch":
            torch = _torch()
            tx, tg = torch.from_numpy(x), torch.from_numpy(grad_out)
            tw, tb = torch.from_numpy(weight.copy()), torch.from_numpy(bias.copy())
            for t in (tx, tw, tb):
                t.requires_grad_(True)
            rm, rv = torch.zeros(c), torch.ones(c)

            def run():
                tx.grad = tw.grad = tb.grad = None
                if kind_name == "batch":
                    out = torch.nn.functional.batch_norm(tx, rm, rv, tw, tb, training=True)
                else:
                    out = torch.nn.functional.instance_norm(tx, weight=tw, bias=tb)
                out.backward(tg)
                return out, tx.grad, tw.grad, tb.grad
            return Bound(run)

        from dlcore import functional as F
        rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)

        def run():
            if kind_name == "batch":
                out, ctx = F.batch_norm_forward(x, rm, rv, weight, bias, training=True)
                return (out, *F.batch_norm_backward(grad_out, ctx))
            out, ctx = F.instance_norm_forward(x, None, None, weight, bias)
            return (out, *F.instance_norm_backward(grad_out, ctx))
        return Bound(run)

    return Case(
        key=f"{kind_name}_norm.fb.{key}",
        name=f"{kind_name}_norm fwd+bwd {label}",
        group="norm",
        build=build,
        # fwd: read x (twice: the two moments passes), write out; bwd: read g, x (twice), write grad.
        nbytes=3 * numel * F32 + 4 * numel * F32,
        quick=quick,
        tol=1e-4,  # float32 sums over 65,536 values per channel, in another order
    )


# ---- activations and loss ------------------------------------------------------------------

ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "silu")


def _activation_case(act, numel, quick=False):
    shape = (numel // 1000, 1000)
    key = f"{act}.fb.{numel:.0e}".replace("+0", "")

    def build(kind, quick_run):
        rng = _rng(key)
        x = _randn(rng, shape)
        grad_out = _randn(rng, shape)
        if kind == "torch":
            torch = _torch()
            fn = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
                  "silu": torch.nn.functional.silu,
                  "leaky_relu": torch.nn.functional.leaky_relu}[act]
            tx, tg = torch.from_numpy(x), torch.from_numpy(grad_out)
            tx.requires_grad_(True)

            def run():
                tx.grad = None
                out = fn(tx)
                out.backward(tg)
                return out, tx.grad
            return Bound(run)

        from dlcore import functional as F
        forward, backward = getattr(F, f"{act}_forward"), getattr(F, f"{act}_backward")

        def run():
            out, ctx = forward(x)
            return out, backward(grad_out, ctx)
        return Bound(run)

    return Case(
        key=key,
        name=f"{act} fwd+bwd {numel:.0e}".replace("+0", ""),
        group="activation",
        build=build,
        # fwd: read x, write out; bwd: read grad_out and one saved array, write grad_in.
        nbytes=5.0 * numel * F32,
        quick=quick,
        target="bandwidth" if numel >= 10**7 else "",
    )


def _cross_entropy_case(n, c, quick=False):
    key = f"cross_entropy.fb.{n}x{c}"

    def build(kind, quick_run):
        rng = _rng(key)
        logits = _randn(rng, (n, c), 3.0)
        target = rng.integers(0, c, size=n)
        if kind == "torch":
            torch = _torch()
            tl, tt = torch.from_numpy(logits), torch.from_numpy(target)
            tl.requires_grad_(True)

            def run():
                tl.grad = None
                loss = torch.nn.functional.cross_entropy(tl, tt)
                loss.backward()
                return loss, tl.grad
            return Bound(run)

        from dlcore import functional as F

        def run():
            loss, ctx = F.cross_entropy_forward(logits, target)
            return loss, F.cross_entropy_backward(1.0, ctx)
        return Bound(run)

    return Case(
        key=key,
        name=f"softmax-cross-entropy fwd+bwd {n}x{c}",
        group="loss",
        build=build,
        # fwd: read logits (+ targets); bwd: read saved probabilities, write grad.
        nbytes=3.0 * n * c * F32 + n * I64,
        quick=quick,
    )


# ---- optimizers ----------------------------------------------------------------------------

# name -> (dlcore/torch class name, keyword arguments, float32 arrays read+written per element)
OPTIMIZERS = {
    "sgd_momentum": ("SGD", {"lr": 0.01, "momentum": 0.9}, 5),  # p rw, g r, buf rw
    "adagrad": ("Adagrad", {"lr": 0.01}, 5),  # p rw, g r, sum rw
    "rmsprop": ("RMSprop", {"lr": 0.01}, 5),  # p rw, g r, square_avg rw
    "adam": ("Adam", {"lr": 1e-3}, 7),  # p rw, g r, m rw, v rw
    "adamw": ("AdamW", {"lr": 1e-3}, 7),
}


def _optim_case(opt, numel, quick=False):
    cls_name, kwargs, arrays = OPTIMIZERS[opt]
    key = f"{opt}.step.{numel:.0e}".replace("+0", "")

    def build(kind, quick_run):
        rng = _rng(key)
        p0 = _randn(rng, (numel,))
        g = _randn(rng, (numel,), 0.1)
        if kind == "torch":
            torch = _torch()
            tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
            tp.grad = torch.from_numpy(g)
            optimizer = getattr(torch.optim, cls_name)([tp], **kwargs)

            def run():
                optimizer.step()
                return tp
            return Bound(run)

        from dlcore import optim
        from dlcore.nn import Parameter
        p = Parameter(p0.copy())
        p.grad = g
        optimizer = getattr(optim, cls_name)([p], **kwargs)

        def run():
            optimizer.step()
            return p.data
        return Bound(run)

    label = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    return Case(
        key=key,
        name=f"{cls_name}({label}) step {numel:.0e}".replace("+0", ""),
        group="optim",
        build=build,
        nbytes=float(arrays * numel * F32),
        quick=quick,
        target="bandwidth" if numel >= 10**7 else "",
    )


# ---- whole models --------------------------------------------------------------------------

LENET_BATCH = 64
MNIST_TRAIN = 60_000


def _lenet_forward_flops(batch):
    conv1 = 2.0 * batch * 6 * 1 * 25 * 28 * 28
    conv2 = 2.0 * batch * 16 * 6 * 25 * 10 * 10
    fc = 2.0 * batch * (400 * 120 + 120 * 84 + 84 * 10)
    return conv1 + conv2 + fc


def _torch_lenet(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def _dlcore_lenet():
    import dlcore
    from dlcore.models import LeNet5

    dlcore.manual_seed(0)
    return LeNet5()


def _lenet_trainer(kind):
    """``step(x, y) -> (logits, loss)``: one training step (forward, CE, backward, Adam)."""
    if kind == "torch":
        torch = _torch()
        model = _torch_lenet(torch)
        try:  # the same initial weights as the dlcore model, when dlcore's LeNet5 exists
            state = _dlcore_lenet().state_dict()
            model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
        except Exception:  # noqa: BLE001 -- timing is still meaningful with torch's own init
            pass
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.functional.cross_entropy

        def step(x, y):
            tx, ty = torch.from_numpy(x), torch.from_numpy(y)
            optimizer.zero_grad()
            logits = model(tx)
            loss = loss_fn(logits, ty)
            loss.backward()
            optimizer.step()
            return logits, loss
        return step

    from dlcore import nn, optim
    from dlcore.nn.module import backward_from_data
    model = _dlcore_lenet()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=1e-3)

    def step(x, y):
        optimizer.zero_grad()
        logits = model(x)
        loss = criterion(logits, y)
        backward_from_data(model, criterion.backward())  # as torch: the data needs no gradient
        optimizer.step()
        return logits, loss
    return step


def _lenet_step_case():
    key = "lenet5.train_step.b64"

    def build(kind, quick_run):
        rng = _rng(key)
        x = rng.random((LENET_BATCH, 1, 28, 28), dtype=np.float32)
        y = rng.integers(0, 10, size=LENET_BATCH)
        step = _lenet_trainer(kind)
        return Bound(lambda: step(x, y))

    return Case(
        key=key,
        name="LeNet-5 train step batch 64 (fwd, CE, bwd, Adam)",
        group="model",
        build=build,
        flops=3 * _lenet_forward_flops(LENET_BATCH),
        quick=True,
        tol=1e-3,
    )


_MNIST_CACHE: dict = {}


def _mnist_like():
    """60,000 random MNIST-shaped samples (float32 in [0, 1]) and labels, made once."""
    if "data" not in _MNIST_CACHE:
        rng = np.random.default_rng(60_000)
        x = rng.random((MNIST_TRAIN, 1, 28, 28), dtype=np.float32)
        y = rng.integers(0, 10, size=MNIST_TRAIN)
        _MNIST_CACHE["data"] = (x, y)
    return _MNIST_CACHE["data"]


QUICK_EPOCH_STEPS = 40


def _lenet_epoch_case():
    key = "lenet5.epoch.60000"
    batches = math.ceil(MNIST_TRAIN / LENET_BATCH)

    def build(kind, quick_run):
        x, y = _mnist_like()
        step = _lenet_trainer(kind)
        rng = np.random.default_rng(1)
        warm = 3

        def run(steps):
            order = rng.permutation(MNIST_TRAIN)  # a shuffled epoch, as a DataLoader gives
            loss = None
            for b in range(steps):
                idx = order[b * LENET_BATCH:(b + 1) * LENET_BATCH]
                loss = step(x[idx], y[idx])[1]
            return loss

        def bound(steps, why=""):
            note = f"estimated from {steps} of {batches} steps{why}" if steps < batches else ""
            return Bound(lambda: run(steps), scale=batches / steps, note=note,
                         warmup=lambda: run(warm), warmup_fraction=warm / steps,
                         truncate=lambda f: bound(max(warm, int(steps * f)), " (time cap)"))
        return bound(QUICK_EPOCH_STEPS if quick_run else batches)

    return Case(
        key=key,
        name=f"LeNet-5 epoch of {MNIST_TRAIN:,} MNIST-shaped samples, batch 64",
        group="model",
        build=build,
        flops=3 * _lenet_forward_flops(LENET_BATCH) * MNIST_TRAIN / LENET_BATCH,
        quick=True,
        full_only=True,  # pytest-benchmark skips it; the quick report estimates it
        tol=float("inf"),  # random data, shuffled: no element-wise check (the step case checks)
    )


# ---- the list ------------------------------------------------------------------------------

def _build_cases():
    cases = []
    for key, label, xs, ws, stride, pad in CONV_SHAPES:
        for backward in (False, True):
            quick = backward and key in ("lenet2", "c64")
            target = "gemm" if (backward and key == "c64") else ""
            cases.append(_conv_case(key, label, xs, ws, stride, pad, backward, quick, target))
    for kind_name in ("max", "avg"):
        for key, label, xs in POOL_SHAPES:
            if kind_name == "avg" and key == "big":
                continue
            quick = kind_name == "max" and key in ("c64", "big")
            target = "bandwidth" if (kind_name == "max" and key == "big") else ""
            cases.append(_pool_case(kind_name, key, label, xs, quick, target))
    cases.append(_avg_pool_overlap_case("c64", "x32x64x32x32", (32, 64, 32, 32)))
    for kind_name in ("batch", "instance"):
        for key, label, xs in NORM_SHAPES:
            cases.append(_norm_case(kind_name, key, label, xs, quick=key == "c16"))
    for act in ACTIVATIONS:
        for numel in (10**6, 10**7):
            cases.append(_activation_case(act, numel, quick=act in ("relu", "silu") and numel == 10**7))
    cases.append(_cross_entropy_case(64, 10))
    cases.append(_cross_entropy_case(1024, 1000, quick=True))
    for opt in OPTIMIZERS:
        for numel in (10**6, 10**7):
            cases.append(_optim_case(opt, numel, quick=opt in ("sgd_momentum", "adam") and numel == 10**7))
    cases.append(_lenet_step_case())
    cases.append(_lenet_epoch_case())
    return tuple(cases)


CASES = _build_cases()
assert len({c.key for c in CASES}) == len(CASES), "case keys must be unique"


def all_cases(quick=False, filter=None, include_full_only=True):
    """The cases of a run: all, or the ``quick`` subset; ``filter`` keeps names or keys
    containing that substring (case-insensitive)."""
    out = []
    for case in CASES:
        if quick and not case.quick:
            continue
        if not include_full_only and case.full_only:
            continue
        if filter and filter.lower() not in case.name.lower() and filter.lower() not in case.key.lower():
            continue
        out.append(case)
    return out


def get_case(key):
    for case in CASES:
        if case.key == key:
            return case
    raise KeyError(f"no benchmark case with key {key!r}")
