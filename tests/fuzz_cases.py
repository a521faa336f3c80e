"""The fuzz properties, run by tests/test_fuzz.py in a subprocess (a crash or a hang there
fails that test instead of killing the test run). Not collected on its own (no ``test_``
prefix in the file name).

Every case draws arguments -- shapes with empty dimensions, strides, paddings, dtypes
(float32/64, float16, int, bool, complex, object), NaN/Inf, non-contiguous, Fortran-order
and read-only arrays, wrong types -- calls a public function or layer, and requires one of:

* a TypeError or ValueError whose message names one of the call's arguments, or
* a result equal to PyTorch's on the same input (float64 tolerance for float64 results,
  float32 for float32; NaN where torch has NaN);

and, either way, that no input array was modified.

``DLCORE_FUZZ_EXAMPLES`` sets the examples per case (default 25; e.g. 500 for a long run).
"""
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dlcore
import dlcore.functional as F
from dlcore import nn

torch = pytest.importorskip("torch")
# every case compares against torch (or scikit-learn) as the oracle; the torch marker lets a
# CI run of this file (DLCORE_REQUIRE_ORACLE=1, inherited from test_fuzz.py) count them
pytestmark = pytest.mark.torch
torch.set_num_threads(1)

# tests/test_fuzz.py runs this file in a child process: it must fuzz the same dlcore (the
# installed one, under a plain `pytest`), not a source tree that happens to be on sys.path.
_EXPECTED = os.environ.get("DLCORE_FUZZ_EXPECT_PARENT")
_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(dlcore.__file__)))
assert _EXPECTED is None or os.path.samefile(_PARENT, _EXPECTED), f"fuzzing the dlcore in {_PARENT}, not {_EXPECTED}"

EXAMPLES = int(os.environ.get("DLCORE_FUZZ_EXAMPLES", "25"))
fuzz = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 25,
                suppress_health_check=list(HealthCheck), print_blob=True)

FLOATS = [np.float32, np.float64]
ODD = [np.float16, np.int32, np.int64, np.bool_, np.complex64, object]


@st.composite
def arrays(draw, ndim=(0, 4), side=(0, 4), shape=None, dtypes=None, valid_p=0.8):
    """An ndarray: mostly float32/64, sometimes an odd dtype; NaN/Inf; any memory layout."""
    if shape is None:
        shape = tuple(draw(st.integers(*side)) for _ in range(draw(st.integers(*ndim))))
    if dtypes is None:
        dtypes = FLOATS if draw(st.floats(0, 1)) < valid_p else ODD
    dtype = draw(st.sampled_from(dtypes))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = np.asarray(rng.standard_normal(shape) * draw(st.sampled_from([1.0, 1e-3, 1e4])))
    if x.size and draw(st.booleans()) and dtype in (np.float32, np.float64, np.float16):
        x.flat[rng.integers(0, x.size, max(1, x.size // 5))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    x = np.asarray(x.astype(dtype))
    layout = draw(st.sampled_from(["c", "c", "strided", "fortran", "readonly"]))
    if layout == "strided" and x.ndim:
        big = np.repeat(x, 2, axis=-1)
        x = big[..., ::2]
    elif layout == "fortran":
        x = np.asfortranarray(x)
    elif layout == "readonly":
        x.setflags(write=False)
    return x


def ints(lo=-1, hi=4):
    """Mostly valid ints, sometimes a wrong type."""
    return st.one_of(st.integers(lo, hi), st.integers(lo, hi), st.integers(lo, hi),
                     st.sampled_from([1.5, "2", None, True, (1, 2, 3), np.int64(2)]))


# ---- the property -----------------------------------------------------------------------------------

def _snapshot(args):
    return [(a, a.copy()) for a in args if isinstance(a, np.ndarray)]


def _unchanged(snapshot):
    for a, before in snapshot:
        same = np.array_equal(a, before, equal_nan=a.dtype.kind in "fc") if a.dtype != object else \
            all(x is y or x == y or (x != x and y != y) for x, y in zip(a.flat, before.flat))
        assert same, "an input array was modified"


def _as_torch(a, dtype):
    if isinstance(a, np.ndarray):
        return torch.from_numpy(np.array(a, dtype=dtype))
    return a


def _close(ours, theirs, dtype, more_nan=False):
    """``more_nan``: dlcore may have NaN where torch has none (0 * NaN in a zero-padded
    convolution is NaN; torch's kernels skip the padding), never the other way round."""
    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs.detach().numpy() if hasattr(theirs, "detach") else theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, f"shape {ours.shape}, torch {theirs.shape}"
    if more_nan:
        assert np.isnan(ours)[np.isnan(theirs)].all(), "torch has NaN where dlcore has none"
        keep = ~np.isnan(ours)
        ours, theirs = ours[keep], theirs[keep]
    assert np.array_equal(np.isnan(ours), np.isnan(theirs)), "NaN in other places than torch's"
    finite = np.isfinite(theirs) & np.isfinite(ours)
    assert np.array_equal(ours[~finite & ~np.isnan(ours)], theirs[~finite & ~np.isnan(theirs)]), "inf differs"
    if finite.any():
        scale = max(1.0, float(np.abs(theirs[finite]).max()))
        tol = (1e-4 if dtype == np.float32 else 1e-9) * scale
        err = float(np.abs(ours[finite] - theirs[finite]).max())
        assert err <= tol, f"max error {err:.3g} > {tol:.3g} against torch"


def check(names, ours, theirs, args, more_nan=False):
    """Run ``ours()``: documented error naming an argument, or torch's result; inputs unchanged."""
    snap = _snapshot(args)
    try:
        result = ours()
    except (TypeError, ValueError) as exc:
        _unchanged(snap)
        msg = str(exc)
        assert any(n in msg for n in names), f"{type(exc).__name__} {msg!r} names none of {names}"
        return
    _unchanged(snap)
    results = result if isinstance(result, tuple) else (result,)
    dtype = np.asarray(results[0]).dtype
    if isinstance(results[0], float):  # a reduced loss: computed in the input's precision
        floats = [a.dtype for a in args if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
        dtype = np.dtype(np.float64) if floats and floats[0] == np.float64 else np.dtype(np.float32)
    if dtype not in (np.float32, np.float64):
        return  # an index array or a count: compared by the case itself
    with torch.no_grad():
        try:
            expected = theirs(dtype)
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            pytest.fail(f"dlcore accepted what torch refuses ({type(exc).__name__}: {str(exc)[:200]})")
    expected = expected if isinstance(expected, tuple) else (expected,)
    for r, e in zip(results, expected):
        _close(r, e, dtype, more_nan)


# ---- activations ------------------------------------------------------------------------------------

ELEMENTWISE = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
               "silu": torch.nn.functional.silu}


@fuzz
@given(op=st.sampled_from(sorted(ELEMENTWISE)), x=arrays())
def test_elementwise(op, x):
    check(["x"], lambda: getattr(F, op)(x), lambda dt: ELEMENTWISE[op](_as_torch(x, dt)), [x])


@fuzz
@given(x=arrays(), slope=st.one_of(st.floats(-3, 3), st.sampled_from([np.nan, np.inf, "a", None, 2])))
def test_leaky_relu(x, slope):
    check(["x", "negative_slope"], lambda: F.leaky_relu(x, slope),
          lambda dt: torch.nn.functional.leaky_relu(_as_torch(x, dt), slope), [x])


@fuzz
@given(op=st.sampled_from(["softmax", "log_softmax"]), x=arrays(ndim=(0, 4)), dim=ints(-5, 4))
def test_softmax(op, x, dim):
    check(["x", "dim"], lambda: getattr(F, op)(x, dim),
          lambda dt: getattr(torch, op)(_as_torch(x, dt), dim), [x])


# ---- pooling ----------------------------------------------------------------------------------------

@fuzz
@given(kind=st.sampled_from(["max", "avg"]), x=arrays(ndim=(2, 5), side=(0, 7)), k=ints(0, 4),
       stride=st.one_of(st.none(), ints(0, 3)), padding=ints(-1, 2))
def test_pool(kind, x, k, stride, padding):
    def theirs(dt):
        fn = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d
        return fn(_as_torch(x, dt), k, stride, padding)

    check(["x", "kernel_size", "stride", "padding"],
          lambda: getattr(F, f"{kind}_pool2d")(x, k, stride, padding), theirs, [x])


@fuzz
@given(x=arrays(shape=(2, 3, 6, 6), dtypes=FLOATS), k=st.integers(1, 3), data=st.data())
def test_max_pool_backward_and_unpool(x, k, data):
    # through the forward/backward pairs, with torch's autograd as the oracle
    if np.isnan(x).any():
        return  # the argmax among NaN is implementation-defined (both pick "a" NaN)
    out, idx, ctx = F.max_pool2d_forward(x, k)
    g = data.draw(arrays(shape=out.shape, dtypes=[x.dtype]))
    xt = _as_torch(x, x.dtype).requires_grad_()
    ot, it = torch.nn.functional.max_pool2d(xt, k, return_indices=True)
    ot.backward(_as_torch(g, x.dtype))
    _close(out, ot, x.dtype)
    if np.isfinite(x).all():  # ties between -inf and inf may pick other positions
        assert np.array_equal(idx, it.numpy())
        _close(F.max_pool2d_backward(g, ctx), xt.grad, x.dtype)
        size = x.shape[-2:]
        check(["x", "indices", "output_size"], lambda: F.max_unpool2d(out, idx, k, output_size=size),
              lambda dt: torch.nn.functional.max_unpool2d(_as_torch(out, dt), it, k, output_size=size), [out, idx])
    bad = np.array(idx)
    bad.flat[data.draw(st.integers(0, bad.size - 1))] = data.draw(st.sampled_from([-1, x[0, 0].size, 10**12]))
    with pytest.raises(ValueError, match="indices"):
        F.max_unpool2d(out, bad, k, output_size=x.shape[-2:])


# ---- convolution and linear -------------------------------------------------------------------------

@fuzz
@given(transposed=st.booleans(), data=st.data())
def test_conv(transposed, data):
    N, C, H, W = (data.draw(st.integers(0, 3)), data.draw(st.integers(1, 3)),
                  data.draw(st.integers(1, 7)), data.draw(st.integers(1, 7)))
    C_out, k = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    valid = data.draw(st.floats(0, 1)) < 0.7
    x = data.draw(arrays(shape=(N, C, H, W) if valid else None, ndim=(2, 5)))
    w_shape = (C, C_out, k, k) if transposed else (C_out, C, k, k)
    w = data.draw(arrays(shape=w_shape if valid else None, ndim=(2, 5), dtypes=[x.dtype] if valid else None))
    b = data.draw(st.one_of(st.none(), arrays(shape=(C_out,), dtypes=[x.dtype] if valid else None)))
    stride, padding = data.draw(ints(0, 3)), data.draw(ints(-1, 2))
    fn = F.conv_transpose2d if transposed else F.conv2d
    tfn = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d

    def theirs(dt):
        return tfn(_as_torch(x, dt), _as_torch(w, dt), _as_torch(b, dt), stride, padding)

    check(["x", "weight", "bias", "stride", "padding"], lambda: fn(x, w, b, stride, padding), theirs, [x, w, b],
          more_nan=True)


@fuzz
@given(data=st.data())
def test_linear(data):
    n_in, n_out = data.draw(st.integers(0, 4)), data.draw(st.integers(0, 4))
    valid = data.draw(st.floats(0, 1)) < 0.7
    x = data.draw(arrays(shape=(data.draw(st.integers(0, 3)), n_in) if valid else None))
    w = data.draw(arrays(shape=(n_out, n_in) if valid else None, ndim=(0, 3)))
    b = data.draw(st.one_of(st.none(), arrays(shape=(n_out,) if valid else None, ndim=(0, 2))))

    def theirs(dt):
        return torch.nn.functional.linear(_as_torch(x, dt), _as_torch(w, dt), _as_torch(b, dt))

    # ("input": F.linear's messages use torch's name for x)
    check(["x", "input", "weight", "bias"], lambda: F.linear(x, w, b), theirs, [x, w, b])


# ---- losses -----------------------------------------------------------------------------------------

REDUCTIONS = st.sampled_from(["mean", "sum", "none", "avg", None])


@fuzz
@given(op=st.sampled_from(["mse_loss", "l1_loss", "binary_cross_entropy_with_logits", "binary_cross_entropy"]),
       data=st.data(), reduction=REDUCTIONS)
def test_elementwise_losses(op, data, reduction):
    x = data.draw(arrays())
    same = data.draw(st.floats(0, 1)) < 0.8
    t = data.draw(arrays(shape=x.shape if same else None, dtypes=FLOATS + [np.int64, np.bool_]))
    if op == "binary_cross_entropy" and x.dtype.kind == "f" and data.draw(st.booleans()):
        x = np.asarray(np.clip(np.abs(x) / 10, 0, 1))  # mostly valid probabilities
    if op.startswith("binary") and t.dtype.kind == "f" and same and data.draw(st.booleans()):
        t = np.asarray(t > 0).astype(t.dtype)

    def theirs(dt):
        tt = _as_torch(t, dt)
        return getattr(torch.nn.functional, op)(_as_torch(x, dt), tt, reduction=reduction)

    check(["input", "target", "reduction"], lambda: getattr(F, op)(x, t, reduction=reduction), theirs, [x, t])


@fuzz
@given(op=st.sampled_from(["cross_entropy", "nll_loss", "multi_margin_loss"]), data=st.data(),
       reduction=REDUCTIONS)
def test_class_losses(op, data, reduction):
    N, C = data.draw(st.integers(0, 4)), data.draw(st.integers(0, 4))
    valid = data.draw(st.floats(0, 1)) < 0.75
    x = data.draw(arrays(shape=(N, C) if valid else None, ndim=(0, 3)))
    t_dtype = data.draw(st.sampled_from([np.int64, np.int32, np.uint8, np.uint64, np.float32, np.bool_]))
    t = np.random.default_rng(data.draw(st.integers(0, 99))).integers(0, max(C, 1) + (0 if valid else 2),
                                                                       N if valid else data.draw(st.integers(0, 4)))
    if t_dtype == np.uint64 and t.size and data.draw(st.booleans()):
        t = t.astype(np.uint64)
        t[0] = np.uint64(2**64 - 100)  # wraps to -100 (= ignore_index) if cast carelessly
    t = t.astype(t_dtype)
    kwargs = {"reduction": reduction}
    if op == "cross_entropy" and data.draw(st.booleans()):
        kwargs["label_smoothing"] = data.draw(st.sampled_from([0.0, 0.1, 1.0, -0.1, 2.0, np.nan]))

    def theirs(dt):
        if op == "multi_margin_loss" and x.size == 0 and reduction == "mean":
            return torch.tensor(float("nan"))  # the mean of nothing; torch 2.13 returns an uninitialized value
        tt = torch.from_numpy(t.astype(np.int64))
        return getattr(torch.nn.functional, op)(_as_torch(x, dt), tt, **kwargs)

    check(["input", "target", "reduction", "label_smoothing"], lambda: getattr(F, op)(x, t, **kwargs), theirs,
          [x, t])


# ---- layers, forward and backward -------------------------------------------------------------------

def _layer_pair(name, C, k, stride, padding, dtype):
    """(dlcore layer, torch layer) with the same parameters."""
    if name == "Conv2d":
        ours, theirs = nn.Conv2d(C, 2, k, stride, padding, dtype=dtype), torch.nn.Conv2d(C, 2, k, stride, padding)
    elif name == "ConvTranspose2d":
        ours = nn.ConvTranspose2d(C, 2, k, stride, padding, dtype=dtype)
        theirs = torch.nn.ConvTranspose2d(C, 2, k, stride, padding)
    elif name == "BatchNorm2d":
        ours, theirs = nn.BatchNorm2d(C, dtype=dtype), torch.nn.BatchNorm2d(C)
    elif name == "MaxPool2d":
        return nn.MaxPool2d(k, stride, padding), torch.nn.MaxPool2d(k, stride, padding)
    elif name == "AvgPool2d":
        return nn.AvgPool2d(k, stride, padding), torch.nn.AvgPool2d(k, stride, padding)
    else:
        return getattr(nn, name)(), getattr(torch.nn, name)()
    theirs = theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        for (_, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
            q.copy_(torch.from_numpy(p.data))
    return ours, theirs


@fuzz
@given(name=st.sampled_from(["Conv2d", "ConvTranspose2d", "BatchNorm2d", "MaxPool2d", "AvgPool2d", "ReLU",
                             "Sigmoid", "Tanh", "SiLU", "Flatten"]),
       dtype=st.sampled_from(FLOATS), N=st.integers(0, 3), C=st.integers(1, 3), H=st.integers(1, 6),
       W=st.integers(1, 6), k=st.integers(1, 3), stride=st.integers(1, 2), padding=st.integers(0, 1),
       seed=st.integers(0, 2**16))
def test_layers_forward_backward(name, dtype, N, C, H, W, k, stride, padding, seed):
    if padding > k // 2 and name in ("MaxPool2d", "AvgPool2d"):
        padding = 0
    if name in ("MaxPool2d", "AvgPool2d", "Conv2d") and (H + 2 * padding < k or W + 2 * padding < k):
        return  # torch and dlcore both refuse (the functional case checks the message)
    if name == "BatchNorm2d" and N * H * W <= 1:
        return  # both refuse a single value per channel in training mode
    ours, theirs = _layer_pair(name, C, k, stride, padding, dtype)
    x = np.random.default_rng(seed).standard_normal((N, C, H, W)).astype(dtype)
    x.setflags(write=False)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    try:
        out = ours(x)
    except ValueError as exc:  # then torch must refuse too (or, for an empty batch, give an empty map)
        assert "output" in str(exc) or "x" in str(exc), str(exc)
        try:
            ot = theirs(xt)
        except RuntimeError:
            return
        assert N == 0 and 0 in ot.shape[2:], f"dlcore refused ({exc}) what torch computes"
        return
    ot = theirs(xt)
    _close(out, ot, dtype)
    g = np.random.default_rng(seed + 1).standard_normal(out.shape).astype(dtype)
    gi = ours.backward(g)
    ot.backward(torch.from_numpy(g))
    _close(gi, xt.grad if xt.grad is not None else torch.zeros_like(xt), dtype)
    for (pname, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        _close(p.grad if p.grad is not None else np.zeros_like(p.data), q.grad if q.grad is not None else 0 * q,
               dtype)


# ---- odds and ends ----------------------------------------------------------------------------------

@fuzz
@given(y_true=arrays(ndim=(0, 2), dtypes=[np.int64, np.float64, np.bool_, np.complex64]),
       y_pred=arrays(ndim=(0, 2), dtypes=[np.int64, np.float64, np.bool_, np.complex64]))
def test_accuracy_score(y_true, y_pred):
    from sklearn.metrics import accuracy_score as sk_accuracy

    snap = _snapshot([y_true, y_pred])
    try:
        ours = dlcore.metrics.accuracy_score(y_true, y_pred)
    except (TypeError, ValueError) as exc:
        assert any(n in str(exc) for n in ("y_true", "y_pred")), str(exc)
        return
    finally:
        _unchanged(snap)
    try:
        theirs = sk_accuracy(y_true, y_pred)
    except ValueError as exc:
        pytest.fail(f"dlcore accepted what scikit-learn refuses ({exc})")
    assert math.isclose(ours, theirs)


@fuzz
@given(value=st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=5),
              arrays(ndim=(0, 3), dtypes=FLOATS + [np.int32, np.bool_, np.complex64, object, np.float16])),
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=3), kids, max_size=3),
                           st.tuples(kids, kids)), max_leaves=8))
def test_save_load_round_trip(tmp_path_factory, value):
    path = tmp_path_factory.mktemp("fuzz") / "x.npz"
    try:
        dlcore.save({"v": value}, path)
    except (TypeError, ValueError) as exc:
        assert "obj" in str(exc) or "path" in str(exc), str(exc)
        assert not path.exists()
        return
    back = dlcore.load(path)["v"]

    def same(a, b):
        if isinstance(a, np.ndarray):
            return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
        if isinstance(a, float) and math.isnan(a):
            return isinstance(b, float) and math.isnan(b)
        if isinstance(a, (list, tuple)):
            return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        if isinstance(a, dict):
            return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
        return type(a) is type(b) and a == b

    assert same(value, back)
