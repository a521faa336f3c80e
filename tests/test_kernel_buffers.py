"""Kernels called directly with inconsistent buffers raise ValueError, never read or write
out of bounds (issue 9, item 2).

The compiled loops run without bounds checks, so each ``def`` checks that the sizes of all
its arguments agree, and indices that come from the caller are range-checked. Every case
below fed to an unchecked kernel wrote or read past a buffer (or crashed). The NumPy twins
cannot go out of bounds; they refuse out-of-range indices and targets too (NumPy would
wrap a negative one silently), while a few size mismatches there just broadcast, so the
size tests run on the compiled backend. (The convolution kernels are covered by the
convolution's own tests.)
"""
import numpy as np
import pytest

import dlcore.functional as F
from dlcore import backends

ELEMENTWISE = {  # name: extra arguments after the arrays
    "relu": (), "leaky_relu": (0.1,), "sigmoid": (), "tanh": (), "silu": (),
}
ROWS = ("softmax", "log_softmax")


def _k():
    return backends.kernels()


@pytest.fixture
def compiled():
    if "cython" not in backends.available_backends():
        pytest.skip("the compiled backend is not built")
    with backends.use_backend("cython"):
        yield "cython"


def _f(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


# ---- elementwise and row-wise activations -----------------------------------------------------

@pytest.mark.parametrize("op", sorted(ELEMENTWISE))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_short_buffers(compiled, op, dtype):
    args, n = ELEMENTWISE[op], 50_000  # more than one parallel chunk
    fwd, bwd = getattr(_k(), op + "_forward"), getattr(_k(), op + "_backward")
    with pytest.raises(ValueError):
        fwd(_f(n, dtype=dtype), _f(n - 1, dtype=dtype), *args, 2)
    with pytest.raises(ValueError):
        fwd(_f(n, dtype=dtype), _f(3, dtype=dtype), *args, 2)
    with pytest.raises(ValueError):  # saved forward value too short
        bwd(_f(n, dtype=dtype), _f(10, dtype=dtype), _f(n, dtype=dtype), *args, 2)
    with pytest.raises(ValueError):  # grad_input too short
        bwd(_f(n, dtype=dtype), _f(n, dtype=dtype), _f(n - 7, dtype=dtype), *args, 2)
    with pytest.raises(ValueError):  # mixed dtypes
        fwd(_f(n, dtype=np.float32), _f(n, dtype=np.float64), *args, 2)


@pytest.mark.parametrize("op", ROWS)
def test_row_kernels_mismatched_shapes(compiled, op):
    fwd, bwd = getattr(_k(), op + "_forward"), getattr(_k(), op + "_backward")
    for bad in [(4, 6), (3, 5), (1, 1)]:
        with pytest.raises(ValueError):
            fwd(_f(4, 5), _f(*bad), 2)
        with pytest.raises(ValueError):
            bwd(_f(4, 5), _f(*bad), _f(4, 5), 2)
        with pytest.raises(ValueError):
            bwd(_f(4, 5), _f(4, 5), _f(*bad), 2)


def _ce_buffers(N=4, C=3, dtype=np.float32):
    return _f(N, C, dtype=dtype), np.zeros(N, np.int64), _f(N, dtype=dtype), np.zeros(N), np.zeros(N)


@pytest.mark.parametrize("bad_target", [3, -1, 10**8, -(2**62)])
def test_cross_entropy_out_of_range_targets(backend, bad_target):
    x, t, loss, m, ls = _ce_buffers()
    t[2] = bad_target
    with pytest.raises(ValueError, match="target"):
        _k().softmax_cross_entropy_forward(x, t, loss, m, ls, 2)
    with pytest.raises(ValueError, match="target"):
        _k().softmax_cross_entropy_backward(loss, x, t, m, ls, np.empty_like(x), 2)


def test_cross_entropy_short_buffers(compiled):
    x, t, loss, m, ls = _ce_buffers()
    fwd, bwd = _k().softmax_cross_entropy_forward, _k().softmax_cross_entropy_backward
    for args in [(x, t[:2], loss, m, ls), (x, t, loss[:1], m, ls), (x, t, loss, m[:3], ls),
                 (x, t, loss, m, ls[:0])]:
        with pytest.raises(ValueError):
            fwd(*args, 2)
    for args in [(loss[:2], x, t, m, ls, np.empty_like(x)), (loss, x, t[:3], m, ls, np.empty_like(x)),
                 (loss, x, t, m[:1], ls, np.empty_like(x)), (loss, x, t, m, ls[:2], np.empty_like(x)),
                 (loss, x, t, m, ls, _f(4, 2)), (loss, x, t, m, ls, _f(3, 3))]:
        with pytest.raises(ValueError):
            bwd(*args, 2)


# ---- pooling ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_forward_inconsistent_geometry(compiled, kind):
    x = _f(2, 3, 8, 8)

    def fwd(out, *geometry):
        if kind == "max":
            _k().max_pool2d_forward(x, out, np.zeros(out.shape, np.int64), *geometry, 2)
        else:
            _k().avg_pool2d_forward(x, out, *geometry, 2)

    fwd(_f(2, 3, 4, 4), 2, 2, 2, 2, 0, 0)  # consistent: no error
    for out, geometry in [
        (_f(2, 3, 3, 4), (2, 2, 2, 2, 0, 0)),   # short out
        (_f(2, 3, 5, 5), (2, 2, 2, 2, 0, 0)),   # long out: windows past the plane
        (_f(2, 2, 4, 4), (2, 2, 2, 2, 0, 0)),   # fewer channels
        (_f(3, 3, 4, 4), (2, 2, 2, 2, 0, 0)),   # more images
        (_f(2, 3, 9, 9), (1, 1, 1, 1, 1, 1)),   # padding larger than half the kernel
        (_f(2, 3, 1, 1), (20, 20, 1, 1, 0, 0)),  # kernel larger than the plane
        (_f(2, 3, 4, 4), (2, 2, 0, 2, 0, 0)),   # stride 0
        (_f(2, 3, 4, 4), (2, 2, 2, 2, -1, 0)),  # negative padding
    ]:
        with pytest.raises(ValueError):
            fwd(out, *geometry)


def test_max_pool_forward_mismatched_indices(compiled):
    with pytest.raises(ValueError):
        _k().max_pool2d_forward(_f(2, 3, 8, 8), _f(2, 3, 4, 4), np.zeros((2, 3, 4, 3), np.int64),
                                2, 2, 2, 2, 0, 0, 2)


def test_avg_pool_backward_inconsistent_geometry(compiled):
    g = _f(2, 3, 4, 4)
    _k().avg_pool2d_backward(g, _f(2, 3, 8, 8), 2, 2, 2, 2, 0, 0, 2)
    for gi in [_f(2, 3, 4, 4), _f(2, 3, 7, 7), _f(2, 2, 8, 8), _f(1, 3, 8, 8)]:
        with pytest.raises(ValueError):
            _k().avg_pool2d_backward(g, gi, 2, 2, 2, 2, 0, 0, 2)
    with pytest.raises(ValueError):
        _k().avg_pool2d_backward(g, _f(2, 3, 8, 8), 2, 2, 2, 2, 3, 0, 2)


@pytest.mark.parametrize("bad", [16, 10**8, -1, -(2**40)])
def test_max_pool_backward_out_of_range_indices(backend, bad):
    idx = np.zeros((2, 3, 2, 2), np.int64)
    idx[1, 2, 1, 0] = bad
    with pytest.raises(ValueError, match="indices"):
        _k().max_pool2d_backward(_f(2, 3, 2, 2), idx, _f(2, 3, 4, 4), 2)


def test_max_pool_backward_mismatched_shapes(compiled):
    idx = np.zeros((2, 3, 2, 2), np.int64)
    for g, i, gi in [(_f(2, 3, 2, 3), idx, _f(2, 3, 4, 4)), (_f(2, 3, 2, 2), idx, _f(2, 2, 4, 4)),
                     (_f(2, 3, 2, 2), idx, _f(3, 3, 4, 4)), (_f(2, 3, 2, 2), idx[:, :, :1], _f(2, 3, 4, 4))]:
        with pytest.raises(ValueError):
            _k().max_pool2d_backward(g, i, gi, 2)


@pytest.mark.parametrize("bad", [16, 10**8, -1])
def test_max_unpool_out_of_range_indices(backend, bad):
    idx = np.zeros((2, 3, 2, 2), np.int64)
    idx[0, 1, 1, 1] = bad
    with pytest.raises(ValueError, match="indices"):
        _k().max_unpool2d_forward(_f(2, 3, 2, 2), idx, _f(2, 3, 4, 4), 2)
    with pytest.raises(ValueError, match="indices"):
        _k().max_unpool2d_backward(_f(2, 3, 4, 4), idx, _f(2, 3, 2, 2), 2)


def test_max_unpool_mismatched_shapes(compiled):
    idx = np.zeros((2, 3, 2, 2), np.int64)
    for x, i, out in [(_f(2, 3, 2, 3), idx, _f(2, 3, 4, 4)), (_f(2, 3, 2, 2), idx, _f(2, 2, 4, 4)),
                      (_f(2, 3, 2, 2), idx, _f(1, 3, 4, 4)), (_f(2, 3, 2, 2), idx[:1], _f(2, 3, 4, 4))]:
        with pytest.raises(ValueError):
            _k().max_unpool2d_forward(x, i, out, 2)
    for g, i, gi in [(_f(2, 2, 4, 4), idx, _f(2, 3, 2, 2)), (_f(2, 3, 4, 4), idx, _f(2, 3, 2, 3)),
                     (_f(2, 3, 4, 4), idx[:, :2], _f(2, 3, 2, 2))]:
        with pytest.raises(ValueError):
            _k().max_unpool2d_backward(g, i, gi, 2)


# ---- the public path: contexts do not hand out writable owners of trusted data ----------------

def test_max_pool_ctx_indices_cannot_be_forged(backend):
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    out, idx, ctx = F.max_pool2d_forward(x, 2)
    for a in (idx, ctx.indices):
        with pytest.raises(ValueError):
            a.setflags(write=True)
        with pytest.raises(ValueError):
            a[...] = 10**8
    # Even through the owner, reached on purpose, a forged index is refused, not followed.
    ctx.indices.base.setflags(write=True)
    ctx.indices.base[...] = 10**8
    with pytest.raises(ValueError, match="indices"):
        F.max_pool2d_backward(np.ones_like(out), ctx)


def test_max_unpool_ctx_keeps_its_own_checked_copy(backend):
    x = np.ones((1, 1, 2, 2), np.float32)
    idx = np.array([[[[0, 3], [12, 15]]]])
    out, ctx = F.max_unpool2d_forward(x, idx, 2)
    idx[...] = 10**8  # the caller's array: the ctx holds a copy
    with pytest.raises(ValueError):
        ctx.indices.setflags(write=True)
    assert np.array_equal(F.max_unpool2d_backward(np.ones_like(out), ctx), np.ones_like(x))
    with pytest.raises(ValueError, match="indices"):
        F.max_unpool2d(x, np.array([[[[0, 3], [12, 16]]]]), 2)
    with pytest.raises(ValueError, match="indices"):
        F.max_unpool2d(x, np.array([[[[0, -3], [12, 15]]]]), 2)


# ---- optimizers -------------------------------------------------------------------------------

def _opt_calls(n, short):
    p, g, s = _f(n, dtype=np.float64), _f(n, dtype=np.float64), _f(short, dtype=np.float64)
    full = _f(n, dtype=np.float64)
    return {
        "sgd_grad": lambda k: k.sgd_step(p, s, full, 0.1, 0.9, 0.0, 0.0, False, False, 2),
        "sgd_momentum": lambda k: k.sgd_step(p, g, s, 0.1, 0.9, 0.0, 0.0, False, False, 2),
        "adagrad": lambda k: k.adagrad_step(p, g, s, 0.1, 0.0, 0.0, 1e-10, 1, 2),
        "rmsprop_sq": lambda k: k.rmsprop_step(p, g, s, full, full, 0.1, 0.99, 1e-8, 0.0, 0.9, True, 2),
        "rmsprop_avg": lambda k: k.rmsprop_step(p, g, full, s, full, 0.1, 0.99, 1e-8, 0.0, 0.9, True, 2),
        "rmsprop_mom": lambda k: k.rmsprop_step(p, g, full, full, s, 0.1, 0.99, 1e-8, 0.0, 0.9, True, 2),
        "adam_m": lambda k: k.adam_step(p, g, s, full, full, 0.1, 0.9, 0.999, 1e-8, 0.0, True, 1, 2),
        "adam_v": lambda k: k.adam_step(p, g, full, s, full, 0.1, 0.9, 0.999, 1e-8, 0.0, True, 1, 2),
        "adam_vmax": lambda k: k.adam_step(p, g, full, full, s, 0.1, 0.9, 0.999, 1e-8, 0.0, True, 1, 2),
        "adamw_v": lambda k: k.adamw_step(p, g, full, s, full, 0.1, 0.9, 0.999, 1e-8, 0.01, False, 1, 2),
    }


@pytest.mark.parametrize("case", sorted(_opt_calls(1, 1)))
def test_optimizer_kernels_short_state(compiled, case):
    with pytest.raises(ValueError):
        _opt_calls(40_000, 17)[case](_k())
