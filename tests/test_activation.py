"""Activation kernels (both backends) and the functional activations: hand cases, compiled ==
twin, thread invariance, odd layouts, finite differences, torch oracle, extremes, errors."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import dlcore
import dlcore.functional as F
from dlcore import backends
from helpers import assert_close, numeric_grad, requires_torch, torch

HAS_CYTHON = "cython" in dlcore.available_backends()
requires_cython = pytest.mark.skipif(not HAS_CYTHON, reason="compiled backend not built")

ELEMENTWISE = ["relu", "leaky_relu", "sigmoid", "tanh", "silu"]
ALONG_DIM = ["softmax", "log_softmax"]


def _fwd(op, x, *args):
    return getattr(F, op + "_forward")(x, *args)


def _bwd(op, g, ctx):
    return getattr(F, op + "_backward")(g, ctx)


def _args(op):
    return (0.1,) if op == "leaky_relu" else ()


# ---- hand-computed ---------------------------------------------------------------------------

def test_hand_computed_elementwise(backend, dtype):
    x = np.array([-2.0, 0.0, 3.0], dtype=dtype)
    assert_close(F.relu(x), [0, 0, 3], dtype)
    assert_close(F.leaky_relu(x, 0.5), [-1, 0, 3], dtype)
    assert_close(F.leaky_relu(x), [-0.02, 0, 3], dtype)
    assert_close(F.sigmoid(x), [1 / (1 + np.e ** 2), 0.5, 1 / (1 + np.e ** -3)], dtype)
    assert_close(F.tanh(np.array([0.0, np.log(2)], dtype=dtype)), [0, 0.6], dtype)  # (4-1)/(4+1)
    assert_close(F.silu(np.array([0.0, 1.0], dtype=dtype)), [0, 1 / (1 + np.e ** -1)], dtype)
    g = np.array([10.0, 20.0, 30.0], dtype=dtype)
    _, ctx = F.relu_forward(x)
    assert_close(F.relu_backward(g, ctx), [0, 0, 30], dtype)  # 0 at x == 0, as torch
    _, ctx = F.leaky_relu_forward(x, 0.5)
    assert_close(F.leaky_relu_backward(g, ctx), [5, 10, 30], dtype)  # slope at x == 0
    _, ctx = F.sigmoid_forward(np.zeros(1, dtype))
    assert_close(F.sigmoid_backward(np.ones(1, dtype), ctx), [0.25], dtype)
    _, ctx = F.tanh_forward(np.zeros(1, dtype))
    assert_close(F.tanh_backward(np.ones(1, dtype), ctx), [1.0], dtype)
    _, ctx = F.silu_forward(np.zeros(1, dtype))
    assert_close(F.silu_backward(np.ones(1, dtype), ctx), [0.5], dtype)


def test_hand_computed_softmax(backend, dtype):
    x = np.array([[0.0, np.log(3.0)], [5.0, 5.0]], dtype=dtype)
    assert_close(F.softmax(x, 1), [[0.25, 0.75], [0.5, 0.5]], dtype)
    assert_close(F.log_softmax(x, -1), np.log([[0.25, 0.75], [0.5, 0.5]]), dtype)
    assert_close(F.softmax(x, 0), [[np.exp(-5) / (1 + np.exp(-5)), 3 / (3 + np.exp(5))],
                                   [1 / (1 + np.exp(-5)), np.exp(5) / (3 + np.exp(5))]], dtype)
    # y = (1/4, 3/4), g = (1, 0): y * (g - <g, y>) = (1/4 * 3/4, -3/4 * 1/4)
    y, ctx = F.softmax_forward(x[:1], 1)
    assert_close(F.softmax_backward(np.array([[1.0, 0.0]], dtype), ctx), [[3 / 16, -3 / 16]], dtype)
    # log_softmax: g - softmax * sum(g) = (1, 0) - (1/4, 3/4)
    _, ctx = F.log_softmax_forward(x[:1], 1)
    assert_close(F.log_softmax_backward(np.array([[1.0, 0.0]], dtype), ctx), [[0.75, -0.75]], dtype)


def test_hand_computed_softmax_cross_entropy_kernel(backend, dtype):
    logits = np.array([[0.0, np.log(3.0)], [1.0, 1.0]], dtype=dtype)
    target = np.array([1, 0], dtype=np.int64)
    loss, row_max, log_sum = np.empty(2, dtype), np.empty(2), np.empty(2)
    k = backends.kernels()
    k.softmax_cross_entropy_forward(logits, target, loss, row_max, log_sum, 2)
    assert_close(loss, [-np.log(0.75), np.log(2)], dtype)
    assert_close(row_max, [np.log(3), 1], dtype)
    assert_close(log_sum, [np.log(4) - np.log(3), np.log(2)], dtype)
    grad = np.empty_like(logits)
    k.softmax_cross_entropy_backward(np.array([2.0, 1.0], dtype), logits, target, row_max, log_sum, grad, 2)
    assert_close(grad, [[0.5, -0.5], [-0.5, 0.5]], dtype)


# ---- compiled == twin --------------------------------------------------------------------------

def _run_elementwise(be, op, x, g, n_threads):
    """Forward and backward of one elementwise op on one backend, through the kernels."""
    k = backends.backend(be)
    args = _args(op)
    out = np.empty_like(x)
    getattr(k, op + "_forward")(x, out, *args, n_threads)
    saved = x if op in ("leaky_relu", "silu") else out
    gi = np.empty_like(x)
    getattr(k, op + "_backward")(g, saved, gi, *args, n_threads)
    return out, gi


def _run_rows(be, op, x, g, n_threads):
    k = backends.backend(be)
    out = np.empty_like(x)
    getattr(k, op + "_forward")(x, out, n_threads)
    gi = np.empty_like(x)
    getattr(k, op + "_backward")(g, out, gi, n_threads)
    return out, gi


def _run_ce(be, x, t, g, n_threads):
    k = backends.backend(be)
    loss, row_max, log_sum = np.empty(len(t), x.dtype), np.empty(len(t)), np.empty(len(t))
    k.softmax_cross_entropy_forward(x, t, loss, row_max, log_sum, n_threads)
    gi = np.empty_like(x)
    k.softmax_cross_entropy_backward(g, x, t, row_max, log_sum, gi, n_threads)
    return loss, row_max, log_sum, gi


@requires_cython
@settings(max_examples=25)
@given(n=st.integers(0, 40000), scale=st.sampled_from([0.1, 3.0, 60.0]), op=st.sampled_from(ELEMENTWISE),
       f64=st.booleans(), seed=st.integers(0, 2**16))
def test_elementwise_compiled_equals_twin(n, scale, op, f64, seed):
    dtype = np.float64 if f64 else np.float32
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * scale).astype(dtype)
    x[: n // 7] = 0  # exact zeros: the kink of relu / leaky_relu
    g = rng.standard_normal(n).astype(dtype)
    (o1, g1), (o2, g2) = (_run_elementwise(be, op, x, g, 2) for be in ("cython", "numpy"))
    assert_close(o1, o2, dtype, scale=2)
    assert_close(g1, g2, dtype, scale=2)


@requires_cython
@settings(max_examples=25)
@given(R=st.integers(0, 40), C=st.integers(1, 300), scale=st.sampled_from([0.5, 5.0, 50.0]),
       op=st.sampled_from(ALONG_DIM), f64=st.booleans(), seed=st.integers(0, 2**16))
def test_rows_compiled_equals_twin(R, C, scale, op, f64, seed):
    dtype = np.float64 if f64 else np.float32
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((R, C)) * scale).astype(dtype)
    g = rng.standard_normal((R, C)).astype(dtype)
    (o1, g1), (o2, g2) = (_run_rows(be, op, x, g, 2) for be in ("cython", "numpy"))
    assert_close(o1, o2, dtype, scale=10)
    assert_close(g1, g2, dtype, scale=10)


@requires_cython
@settings(max_examples=25)
@given(N=st.integers(0, 40), C=st.integers(1, 200), scale=st.sampled_from([0.5, 5.0, 1e30]),
       f64=st.booleans(), seed=st.integers(0, 2**16))
def test_softmax_cross_entropy_compiled_equals_twin(N, C, scale, f64, seed):
    dtype = np.float64 if f64 else np.float32
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((N, C)) * scale).astype(dtype)
    t = rng.integers(0, C, N)
    g = rng.standard_normal(N).astype(dtype)
    r1, r2 = (_run_ce(be, x, t, g, 2) for be in ("cython", "numpy"))
    for a, b in zip(r1, r2):
        assert np.isfinite(a).all()
        assert_close(a, b, dtype, scale=10)


@requires_cython
@pytest.mark.parametrize("op", ELEMENTWISE)
def test_elementwise_threads_bitwise(op, dtype, rng):
    n = 3 * 65536 + 17  # above the one-thread threshold, several chunks, a ragged tail
    x = (rng.standard_normal(n) * 5).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    a = _run_elementwise("cython", op, x, g, 1)
    b = _run_elementwise("cython", op, x, g, 2)
    c = _run_elementwise("cython", op, x, g, 3)
    for u, v, w in zip(a, b, c):
        assert np.array_equal(u, v) and np.array_equal(u, w)


@requires_cython
@pytest.mark.parametrize("op", ["sigmoid", "tanh"])
def test_backward_from_output_bitwise_twin(op, dtype, rng):
    """sigmoid's and tanh's backward, from the saved output, are a few float operations
    in the twin's order and precision: bitwise equal to it (float32 stays float32)."""
    n = 100_003
    y = np.tanh(rng.standard_normal(n) * 3).astype(dtype)
    if op == "sigmoid":
        y = ((y + 1) / 2).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    out = {}
    for be in ("cython", "numpy"):
        out[be] = np.empty_like(y)
        getattr(backends.backend(be), op + "_backward")(g, y, out[be], 2)
    assert np.array_equal(out["cython"], out["numpy"])


@requires_cython
@pytest.mark.parametrize("op", ELEMENTWISE)
@pytest.mark.parametrize("offset", [0, 1, 3])
def test_elementwise_streaming_stores_bitwise(op, offset, dtype, rng):
    """Outputs past the cache are written with streaming stores (src/dlcore/_stream.pxd):
    forced on for small arrays, the results are bitwise the plain path's, with the output
    misaligned by `offset` elements (plain stores up to the 16-byte boundary) and a ragged
    tail, at 1 and 2 threads."""
    from dlcore.backends.cython_kernels import activation as mod

    n = 2 * 65536 + 37
    x = (rng.standard_normal(n) * 5).astype(dtype)
    x[:50] = 0
    g = rng.standard_normal(n).astype(dtype)
    plain = _run_elementwise("cython", op, x, g, 2)
    k = backends.backend("cython")
    args = _args(op)
    old = mod._stream_min_bytes(0)
    try:
        for n_threads in (1, 2):
            out = np.full(n + offset, np.nan, dtype)[offset:]
            gi = np.full(n + offset, np.nan, dtype)[offset:]
            getattr(k, op + "_forward")(x, out, *args, n_threads)
            getattr(k, op + "_backward")(g, x if op in ("leaky_relu", "silu") else out, gi, *args, n_threads)
            assert np.array_equal(out, plain[0]) and np.array_equal(gi, plain[1])
    finally:
        mod._stream_min_bytes(old)
    assert mod._stream_min_bytes() == old


@requires_cython
@pytest.mark.parametrize("op", ALONG_DIM + ["ce"])
def test_rows_threads_bitwise(op, dtype, rng):
    x = (rng.standard_normal((301, 257)) * 4).astype(dtype)
    if op == "ce":
        t = rng.integers(0, 257, 301)
        g = rng.standard_normal(301).astype(dtype)
        a, b = (_run_ce("cython", x, t, g, n) for n in (1, 2))
    else:
        g = rng.standard_normal(x.shape).astype(dtype)
        a, b = (_run_rows("cython", op, x, g, n) for n in (1, 2))
    for u, v in zip(a, b):
        assert np.array_equal(u, v)


# ---- layouts, dtypes, shapes ----------------------------------------------------------------------

@pytest.mark.parametrize("op", ELEMENTWISE + ALONG_DIM)
def test_odd_layouts_equal_contiguous(op, backend, dtype, n_threads, rng):
    base = rng.standard_normal((6, 5, 8)).astype(dtype)
    args = (1,) if op in ALONG_DIM else _args(op)
    ref_out, ref_ctx = _fwd(op, base.transpose(2, 0, 1).copy(), *args)
    g = rng.standard_normal(ref_out.shape).astype(dtype)
    ref_grad = _bwd(op, g, ref_ctx)
    views = {
        "transposed": base.transpose(2, 0, 1),
        "fortran": np.asfortranarray(base.transpose(2, 0, 1)),
        "readonly": base.transpose(2, 0, 1).copy(),
    }
    views["readonly"].flags.writeable = False
    for name, v in views.items():
        before = v.copy()
        g_view = np.asfortranarray(g)
        out, ctx = _fwd(op, v, *args)
        assert out.shape == ref_out.shape and out.dtype == dtype
        assert np.array_equal(out, ref_out), name
        assert np.array_equal(_bwd(op, g_view, ctx), ref_grad), name
        assert np.array_equal(v, before)
    sliced = np.arange(60, dtype=dtype).reshape(6, 10)[:, ::3] - 20
    assert np.array_equal(_fwd(op, sliced, *args)[0], _fwd(op, sliced.copy(), *args)[0])


@pytest.mark.parametrize("op", ELEMENTWISE)
def test_shapes_and_dtypes_elementwise(op, backend):
    for shape in [(), (0,), (1,), (7,), (2, 0, 3), (3, 1, 4, 5)]:
        for dt in (np.float32, np.float64):
            x = np.full(shape, -0.5, dtype=dt)
            out, ctx = _fwd(op, x, *_args(op))
            assert out.shape == shape and out.dtype == dt
            grad = _bwd(op, np.ones(shape, dt), ctx)
            assert grad.shape == shape and grad.dtype == dt
    out = _fwd(op, np.ones(3, np.float16), *_args(op))[0]
    assert out.dtype == np.float32
    out = _fwd(op, [1.0, -2.0], *_args(op))[0]  # lists are accepted as torch's tensors are built
    assert out.shape == (2,)


def test_shapes_along_dim(backend):
    assert F.softmax(np.float64(3.0), 0) == 1.0 and F.softmax(np.float64(3.0), 0).shape == ()
    assert F.softmax(np.zeros((2, 0)), 1).shape == (2, 0)
    assert F.log_softmax(np.zeros((0, 3)), 1).shape == (0, 3)
    y = F.softmax(np.random.default_rng(1).standard_normal((2, 3, 4)), 1)
    assert_close(y.sum(axis=1), np.ones((2, 4)))


# ---- finite differences (float64) ---------------------------------------------------------------


@pytest.mark.parametrize("op", ELEMENTWISE)
def test_finite_differences_elementwise(op, backend, rng):
    x = rng.standard_normal((3, 4)) * 3
    x[np.abs(x) < 0.05] = 0.3  # stay away from the kinks
    g = rng.standard_normal(x.shape)
    _, ctx = _fwd(op, x, *_args(op))
    analytic = _bwd(op, g, ctx)
    numeric = numeric_grad(lambda v: float((_fwd(op, v, *_args(op))[0] * g).sum()), x.copy())
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("op", ALONG_DIM)
@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_finite_differences_along_dim(op, dim, backend, rng):
    x = rng.standard_normal((2, 3, 4)) * 2
    g = rng.standard_normal(x.shape)
    _, ctx = _fwd(op, x, dim)
    analytic = _bwd(op, g, ctx)
    numeric = numeric_grad(lambda v: float((_fwd(op, v, dim)[0] * g).sum()), x.copy())
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


# ---- torch oracle -------------------------------------------------------------------------------

def _torch_op(op, tx, dim=None):
    tf = torch.nn.functional
    return {"relu": lambda: torch.relu(tx), "leaky_relu": lambda: tf.leaky_relu(tx, 0.1),
            "sigmoid": lambda: torch.sigmoid(tx), "tanh": lambda: torch.tanh(tx), "silu": lambda: tf.silu(tx),
            "softmax": lambda: torch.softmax(tx, dim), "log_softmax": lambda: torch.log_softmax(tx, dim)}[op]()


@requires_torch
@pytest.mark.parametrize("op", ELEMENTWISE + ALONG_DIM)
def test_torch_oracle(op, backend, dtype, rng):
    x = (rng.standard_normal((4, 70, 33)) * 4).astype(dtype)
    x.reshape(-1)[:50] = 0
    x.reshape(-1)[50:60] = [1e30, -1e30, 100, -100, 88, -88, 1e-30, -1e-30, 20, -20]
    g = rng.standard_normal(x.shape).astype(dtype)
    dims = [0, 1, -1] if op in ALONG_DIM else [None]
    for dim in dims:
        args = (dim,) if dim is not None else _args(op)
        out, ctx = _fwd(op, x, *args)
        grad = _bwd(op, g, ctx)
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        ty = _torch_op(op, tx, dim)
        ty.backward(torch.from_numpy(g))
        assert_close(out, ty.detach().numpy(), dtype, scale=2, err_msg=f"{op} dim={dim} forward")
        assert_close(grad, tx.grad.numpy(), dtype, scale=2, err_msg=f"{op} dim={dim} backward")


# ---- accuracy of the compiled float32 exp / tanh (Cephes polynomials, not libm) ----------------

@requires_cython
@pytest.mark.parametrize("op", ["sigmoid", "tanh", "silu"])
def test_compiled_float32_accuracy_against_float64(op):
    x = np.concatenate([np.linspace(-100, 100, 200001), np.linspace(-1, 1, 20001), np.geomspace(1e-30, 1e3, 3001),
                        -np.geomspace(1e-30, 1e3, 3001), [0.0, -0.0, 0.625, -0.625, 87.3, -87.3, 88.8, -88.8, 1e30,
                                                          -1e30, np.inf, -np.inf]]).astype(np.float32)
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        s64 = 1 / (1 + np.exp(-x64))
        ref = {"sigmoid": s64, "tanh": np.tanh(x64), "silu": np.where(np.isinf(x64) & (x64 < 0), np.nan, x64 * s64)}[op]
    out = np.empty_like(x)
    getattr(backends.backend("cython"), op + "_forward")(x, out, 2)
    finite = np.isfinite(ref)
    # a few float32 ulps; sigmoid values below FLT_MIN (x < -87.3) flush to 0, so silu there
    # is -0 instead of x * sigma(x) ~ -1e-36
    np.testing.assert_allclose(out[finite], ref[finite], rtol=4e-7, atol=1e-35 if op == "silu" else 2e-38)
    assert np.array_equal(np.isnan(out), np.isnan(ref))
    g = np.ones_like(x)
    if op == "silu":  # the backward recomputes sigmoid: check it too
        gi = np.empty_like(x)
        backends.backend("cython").silu_backward(g, x, gi, 2)
        with np.errstate(over="ignore", invalid="ignore"):
            dref = s64 * (1 + x64 * (1 - s64))
        ok = np.isfinite(dref)
        np.testing.assert_allclose(gi[ok], dref[ok], rtol=2e-6, atol=1e-7)


# ---- extremes ------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ELEMENTWISE + ALONG_DIM)
def test_extreme_inputs_finite_and_quiet(op, backend, dtype):
    x = np.array([[1e30, -1e30, 0.0, 1e-30], [-1e30, -1e30, 1e30, 3.0], [80.0, -80.0, 700.0, -700.0]]).astype(dtype)
    args = (1,) if op in ALONG_DIM else _args(op)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            out, ctx = _fwd(op, x, *args)
            grad = _bwd(op, np.ones_like(x), ctx)
    assert np.isfinite(out).all(), out
    assert np.isfinite(grad).all(), grad
    if op == "sigmoid":
        assert out[0, 0] == 1 and out[0, 1] == 0
    if op == "softmax":
        assert_close(out.sum(axis=1), np.ones(3), dtype)


def test_nan_propagates_like_torch(backend, dtype):
    x = np.array([np.nan, 1.0], dtype=dtype)
    for op in ELEMENTWISE:
        assert np.isnan(_fwd(op, x, *_args(op))[0][0]), op
    assert np.isnan(F.softmax(x, 0)).all()


# ---- errors ----------------------------------------------------------------------------------------

def test_errors(backend):
    x = np.ones((2, 3))
    for op in ELEMENTWISE:
        with pytest.raises(TypeError, match="x must have a floating dtype"):
            _fwd(op, np.ones(3, dtype=np.int64), *_args(op))
        out, ctx = _fwd(op, x, *_args(op))
        with pytest.raises(ValueError, match=r"grad_output must have the forward output's shape \(2, 3\)"):
            _bwd(op, np.ones((3, 2)), ctx)
        with pytest.raises(TypeError, match="grad_output must have a floating dtype"):
            _bwd(op, np.ones((2, 3), dtype=int), ctx)
    with pytest.raises(TypeError, match="ctx must be the context returned by relu_forward"):
        F.relu_backward(x, F.sigmoid_forward(x)[1])
    with pytest.raises(TypeError, match="negative_slope"):
        F.leaky_relu(x, "0.1")
    for op in ALONG_DIM:
        with pytest.raises(ValueError, match=r"dim must be in \[-2, 1\] .* got 2"):
            _fwd(op, x, 2)
        with pytest.raises(TypeError, match="dim must be an int"):
            _fwd(op, x, 1.0)
        with pytest.raises(TypeError, match="dim"):
            _fwd(op, x, None)
        with pytest.raises(TypeError, match="floating"):
            _fwd(op, np.ones((2, 2), dtype=bool), 1)
