"""Kernels called directly with inconsistent buffers raise ValueError, never read or write
out of bounds (issue 9, item 2).

The compiled loops run without bounds checks, so each ``def`` checks that the sizes of all
its arguments agree, and indices that come from the caller are range-checked. Every case
below fed to an unchecked kernel wrote or read past a buffer (or crashed). The NumPy twins
cannot go out of bounds; they refuse out-of-range indices and targets too (NumPy would
wrap a negative one silently), while a few size mismatches there just broadcast, so the
size tests run on the compiled backend. The table at the end holds every kernel of the
registry, so a new kernel without such cases fails.
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


# ---- every kernel of the registry ---------------------------------------------------------------
# One consistent call per kernel, and variants that each change one argument so that the
# sizes no longer agree. A kernel added to dlcore.backends.KERNELS without an entry here
# fails test_every_kernel_has_buffer_cases: its author must say what it checks.

def _table():
    """kernel name -> (consistent arguments by parameter name, {parameter: [bad values]})."""
    f, i8 = _f, (lambda *s: np.zeros(s, np.int64))
    t = {}
    # im2col/col2im: x (2, 3, 6, 6), 3x3 windows, padding 1 -> cols (2, 27, 36)
    win = dict(kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, pad_h=1, pad_w=1, dilation_h=1, dilation_w=1)
    bad_win = {"kernel_h": [0, 9], "stride_w": [0], "pad_h": [-1], "dilation_w": [0, 4]}
    t["im2col"] = (dict(x=f(2, 3, 6, 6), cols=f(2, 27, 36), **win, n_threads=2),
                   {"cols": [f(2, 27, 35), f(2, 26, 36), f(1, 27, 36)], **bad_win})
    t["col2im"] = (dict(cols=f(2, 27, 36), x=f(2, 3, 6, 6), **win, n_threads=2),
                   {"cols": [f(2, 27, 35), f(2, 26, 36), f(1, 27, 36)], "x": [f(2, 3, 6, 5)], **bad_win})
    # conv2d: x (2, 4, 6, 6), weight (6, 2, 3, 3) in 2 groups, padding 1 -> out (2, 6, 6, 6)
    geo = dict(stride_h=1, stride_w=1, pad_h=1, pad_w=1, dilation_h=1, dilation_w=1, groups=2, n_threads=2)
    bad_geo = {"stride_h": [0], "pad_w": [-1], "dilation_h": [0, 4], "groups": [0, 3, 4]}
    t["conv2d_forward"] = (
        dict(x=f(2, 4, 6, 6), weight=f(6, 2, 3, 3), bias=f(6), out=f(2, 6, 6, 6), **geo),
        {"weight": [f(6, 4, 3, 3), f(6, 1, 3, 3)], "bias": [f(5), f(7)],
         "out": [f(2, 6, 6, 5), f(2, 6, 5, 6), f(2, 5, 6, 6), f(3, 6, 6, 6)], **bad_geo})
    t["conv2d_backward"] = (
        dict(x=f(2, 4, 6, 6), weight=f(6, 2, 3, 3), grad_output=f(2, 6, 6, 6), grad_input=f(2, 4, 6, 6),
             grad_weight=f(6, 2, 3, 3), grad_bias=f(6), **geo),
        {"weight": [f(6, 4, 3, 3)], "grad_output": [f(2, 6, 6, 5), f(2, 5, 6, 6), f(1, 6, 6, 6)],
         "grad_input": [f(2, 4, 6, 5), f(2, 3, 6, 6), f(1, 4, 6, 6)],
         "grad_weight": [f(6, 2, 3, 2), f(5, 2, 3, 3)], "grad_bias": [f(5), f(7)], **bad_geo})
    # conv_transpose2d: x (2, 4, 5, 5), weight (4, 3, 3, 3) in 2 groups, padding 1 -> out (2, 6, 5, 5)
    t["conv_transpose2d_forward"] = (
        dict(x=f(2, 4, 5, 5), weight=f(4, 3, 3, 3), bias=f(6), out=f(2, 6, 5, 5), **geo),
        {"weight": [f(4, 2, 3, 3), f(3, 3, 3, 3)], "bias": [f(5), f(7)],
         "out": [f(2, 6, 4, 5), f(2, 6, 5, 4), f(3, 6, 5, 5), f(1, 6, 5, 5), f(2, 4, 5, 5)], **bad_geo})
    t["conv_transpose2d_backward"] = (
        dict(x=f(2, 4, 5, 5), weight=f(4, 3, 3, 3), grad_output=f(2, 6, 5, 5), grad_input=f(2, 4, 5, 5),
             grad_weight=f(4, 3, 3, 3), grad_bias=f(6), **geo),
        {"weight": [f(4, 2, 3, 3)], "grad_output": [f(2, 6, 4, 5), f(1, 6, 5, 5), f(2, 4, 5, 5)],
         "grad_input": [f(2, 4, 5, 4), f(2, 2, 5, 5), f(1, 4, 5, 5)],
         "grad_weight": [f(4, 3, 3, 2), f(2, 3, 3, 3)], "grad_bias": [f(5), f(4)], **bad_geo})
    # pooling: x (2, 3, 8, 8), 2x2 windows, stride 2 -> (2, 3, 4, 4)
    pw = dict(kernel_h=2, kernel_w=2, stride_h=2, stride_w=2, pad_h=0, pad_w=0)
    bad_pw = {"kernel_w": [0, 20], "stride_h": [0], "pad_h": [-1, 2]}
    t["max_pool2d_forward"] = (
        dict(x=f(2, 3, 8, 8), out=f(2, 3, 4, 4), indices=i8(2, 3, 4, 4), **pw, n_threads=2),
        {"out": [f(2, 3, 4, 3), f(2, 3, 5, 5), f(2, 2, 4, 4), f(3, 3, 4, 4)],
         "indices": [i8(2, 3, 4, 3), i8(1, 3, 4, 4)], **bad_pw})
    t["avg_pool2d_forward"] = (dict(x=f(2, 3, 8, 8), out=f(2, 3, 4, 4), **pw, n_threads=2),
                               {"out": [f(2, 3, 4, 3), f(2, 3, 5, 5), f(2, 2, 4, 4), f(3, 3, 4, 4)], **bad_pw})
    t["avg_pool2d_backward"] = (dict(grad_output=f(2, 3, 4, 4), grad_input=f(2, 3, 8, 8), **pw, n_threads=2),
                                {"grad_input": [f(2, 3, 7, 7), f(2, 2, 8, 8), f(1, 3, 8, 8)], **bad_pw})
    for name in ("max_pool2d_backward", "max_unpool2d_backward"):  # (small, indices, large)
        small, large = ("grad_output", "grad_input") if name.startswith("max_pool") else ("grad_input", "grad_output")
        bad_idx = i8(2, 3, 2, 2)
        bad_idx[1, 2, 1, 1] = 16
        t[name] = (dict(grad_output=None, indices=i8(2, 3, 2, 2), grad_input=None, n_threads=2)
                   | {small: f(2, 3, 2, 2), large: f(2, 3, 4, 4)},
                   {small: [f(2, 3, 2, 3), f(2, 2, 2, 2), f(1, 3, 2, 2)], large: [f(2, 2, 4, 4), f(3, 3, 4, 4)],
                    "indices": [i8(2, 3, 2, 1), i8(2, 3, 1, 2), i8(1, 3, 2, 2), bad_idx]})
    bad_idx = i8(2, 3, 2, 2)
    bad_idx[0, 0, 0, 0] = -1
    t["max_unpool2d_forward"] = (dict(x=f(2, 3, 2, 2), indices=i8(2, 3, 2, 2), out=f(2, 3, 4, 4), n_threads=2),
                                 {"x": [f(2, 3, 2, 3), f(1, 3, 2, 2)], "out": [f(2, 2, 4, 4), f(1, 3, 4, 4)],
                                  "indices": [i8(2, 3, 2, 1), i8(2, 2, 2, 2), bad_idx]})
    # activations
    n = 50_000  # more than one parallel chunk
    for op, extra in ELEMENTWISE.items():
        slope = {"negative_slope": 0.1} if extra else {}
        t[op + "_forward"] = (dict(x=f(n), out=f(n), **slope, n_threads=2), {"out": [f(n - 1), f(n + 1), f(3)]})
        second = "x" if op in ("leaky_relu", "silu") else "output"
        t[op + "_backward"] = (dict(grad_output=f(n), **{second: f(n)}, grad_input=f(n), **slope, n_threads=2),
                               {second: [f(n - 1), f(10)], "grad_input": [f(n - 7), f(n + 1)]})
    for op in ROWS:
        t[op + "_forward"] = (dict(x=f(4, 5), out=f(4, 5), n_threads=2), {"out": [f(4, 6), f(3, 5), f(1, 1)]})
        t[op + "_backward"] = (dict(grad_output=f(4, 5), output=f(4, 5), grad_input=f(4, 5), n_threads=2),
                               {"output": [f(4, 6), f(3, 5)], "grad_input": [f(4, 4), f(5, 5)]})
    x, tg, loss, m, ls = _ce_buffers()
    big = i8(4)
    big[3] = 3
    t["softmax_cross_entropy_forward"] = (
        dict(logits=x, target=tg, loss=loss, row_max=m, log_sum=ls, n_threads=2),
        {"target": [tg[:3], i8(5), big], "loss": [loss[:3]], "row_max": [m[:1]], "log_sum": [np.zeros(5)]})
    t["softmax_cross_entropy_backward"] = (
        dict(grad_output=loss, logits=x, target=tg, row_max=m, log_sum=ls, grad_input=f(4, 3), n_threads=2),
        {"grad_output": [loss[:2]], "target": [tg[:3], big], "row_max": [m[:3]], "log_sum": [ls[:2]],
         "grad_input": [f(4, 2), f(3, 3), f(5, 3)]})
    # optimizers (float64 state): 40,000 parameters, a state array one element short
    p, s = 40_000, 39_999
    d = lambda k: np.zeros(k)  # noqa: E731
    t["sgd_step"] = (dict(param=d(p), grad=d(p), momentum_buffer=d(p), lr=0.1, momentum=0.9, dampening=0.0,
                          weight_decay=0.0, nesterov=False, first_step=False, n_threads=2),
                     {"grad": [d(s)], "momentum_buffer": [d(s), d(0)]})
    t["adagrad_step"] = (dict(param=d(p), grad=d(p), state_sum=d(p), lr=0.1, lr_decay=0.0, weight_decay=0.0,
                              eps=1e-10, step=1, n_threads=2), {"grad": [d(s)], "state_sum": [d(s), d(p + 1)]})
    t["rmsprop_step"] = (dict(param=d(p), grad=d(p), square_avg=d(p), grad_avg=d(p), momentum_buffer=d(p), lr=0.1,
                              alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.9, centered=True, n_threads=2),
                         {"grad": [d(s)], "square_avg": [d(s)], "grad_avg": [d(s), d(0)],
                          "momentum_buffer": [d(s), d(0)]})
    for name in ("adam_step", "adamw_step"):
        t[name] = (dict(param=d(p), grad=d(p), exp_avg=d(p), exp_avg_sq=d(p), max_exp_avg_sq=d(p), lr=0.1,
                        beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, amsgrad=True, step=1, n_threads=2),
                   {"grad": [d(s)], "exp_avg": [d(s)], "exp_avg_sq": [d(s)], "max_exp_avg_sq": [d(s), d(0)]})
    # normalization: x (3, 4, 10); per-group arrays (3, 4) (per plane) or (1, 4) (per channel)
    xn = f(3, 4, 10)
    groups = lambda s=3: d((s, 4))  # noqa: E731  (float64 sums and shifts)
    bad_groups = [groups(2), d((3, 5)), d((1, 3))]
    t["norm_moments"] = (dict(x=xn, shift=groups(), sum1=groups(), sum2=groups(), n_threads=2),
                         {"shift": bad_groups, "sum1": bad_groups + [groups(1)], "sum2": bad_groups + [groups(1)]})
    t["norm_grad_sums"] = (dict(g=f(3, 4, 10), x=xn, mean=groups(1), sum_g=groups(1), sum_gx=groups(1), n_threads=2),
                           {"g": [f(3, 4, 9), f(2, 4, 10), f(3, 3, 10)], "mean": bad_groups,
                            "sum_g": bad_groups + [groups(3)], "sum_gx": bad_groups + [groups(3)]})
    co = lambda s=3, c=4: f(s, c)  # noqa: E731  (coefficients in x's dtype)
    bad_co = [co(2), co(3, 5), co(1, 3), co(4)]
    t["norm_affine_forward"] = (dict(x=xn, a=co(), b=co(), out=f(3, 4, 10), n_threads=2),
                                {"a": bad_co, "b": bad_co + [co(1)], "out": [f(3, 4, 9), f(2, 4, 10), f(3, 5, 10)]})
    t["norm_affine_backward"] = (
        dict(g=f(3, 4, 10), x=xn, a=co(1), b=co(1), c=co(1), grad_input=f(3, 4, 10), n_threads=2),
        {"g": [f(3, 4, 9), f(3, 3, 10)], "a": bad_co, "b": bad_co + [co()], "c": bad_co + [co()],
         "grad_input": [f(3, 4, 11), f(4, 4, 10)]})
    return t


CASES = _table()


def test_every_kernel_has_buffer_cases():
    registered = set(backends.KERNEL_NAMES)
    assert not registered - set(CASES), (
        f"kernels without inconsistent-buffer cases in {__name__}._table: {sorted(registered - set(CASES))}")
    assert not set(CASES) - registered, f"cases for kernels that no longer exist: {sorted(set(CASES) - registered)}"


@pytest.mark.parametrize("name", backends.KERNEL_NAMES)
def test_kernel_refuses_inconsistent_buffers(compiled, name):
    if name not in CASES:
        pytest.fail(f"{name} has no inconsistent-buffer cases (add them to _table)")
    good, bad = CASES[name]
    kernel = getattr(_k(), name)
    params = list(good)
    kernel(*good.values())  # the consistent call runs
    assert bad, f"{name}: no inconsistent variant"
    for param, values in bad.items():
        assert param in params, f"{name} has no parameter {param!r}"
        for value in values:
            args = dict(good, **{param: value})
            with pytest.raises(ValueError) as info:
                kernel(*args.values())
            # The kernel's own check, not Cython's argument conversion (wrong dtype or ndim):
            # a variant that fails there would test nothing.
            assert not str(info.value).startswith(("Buffer", "ndarray is not")), (name, param, info.value)
    # A team size no thread policy gives: libgomp would abort (negative) or crash (100,000).
    for n_threads in (0, -1, 100_000):
        with pytest.raises(ValueError, match="n_threads"):
            kernel(*dict(good, n_threads=n_threads).values())


def test_table_parameters_match_the_twins():
    """The cases pass arguments by position in the order of the NumPy twin's signature."""
    import inspect

    from dlcore.backends import numpy_kernels

    for name, (good, _) in CASES.items():
        assert list(good) == list(inspect.signature(getattr(numpy_kernels, name)).parameters), name
