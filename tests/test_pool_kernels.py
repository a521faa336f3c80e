"""The pool kernels: hand-computed cases, compiled == NumPy twin, thread-count invariance.

The compiled kernels are meant to equal their twins *bitwise* (same comparison order for
max, same summation order in float64 for average, same scatter order), so the
comparisons here are exact.
"""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import dlcore
from dlcore import backends

NUMPY = backends.backend("numpy")
HAS_CYTHON = "cython" in dlcore.available_backends()
CYTHON = backends.backend("cython") if HAS_CYTHON else None
requires_cython = pytest.mark.skipif(not HAS_CYTHON, reason="compiled backend not built")


def out_size(H, W, k, s, p):
    return (H + 2 * p[0] - k[0]) // s[0] + 1, (W + 2 * p[1] - k[1]) // s[1] + 1


def run_kernels(be, x, k, s, p, n_threads=1, seed=0, fill=0.0):
    """Every pool kernel of backend ``be`` on ``x``; outputs pre-filled with ``fill``."""
    N, C, H, W = x.shape
    OH, OW = out_size(H, W, k, s, p)
    geometry = (k[0], k[1], s[0], s[1], p[0], p[1])
    rng = np.random.default_rng(seed)
    g = rng.integers(-4, 5, (N, C, OH, OW)).astype(x.dtype)
    res = {}
    out = np.full((N, C, OH, OW), fill, x.dtype)
    idx = np.full((N, C, OH, OW), -7 if np.isnan(fill) else 123, np.int64)
    be.max_pool2d_forward(x, out, idx, *geometry, n_threads)
    res["max_out"], res["max_idx"] = out, idx
    gi = np.full(x.shape, fill, x.dtype)
    be.max_pool2d_backward(g, idx, gi, n_threads)
    res["max_grad"] = gi
    out = np.full((N, C, OH, OW), fill, x.dtype)
    be.avg_pool2d_forward(x, out, *geometry, n_threads)
    res["avg_out"] = out
    gi = np.full(x.shape, fill, x.dtype)
    be.avg_pool2d_backward(g, gi, *geometry, n_threads)
    res["avg_grad"] = gi
    # Unpool the pooled map back into the (H, W) plane with the pooling indices (which
    # repeat when windows overlap: the last write wins), then its gather backward.
    up = np.full(x.shape, fill, x.dtype)
    be.max_unpool2d_forward(g, idx, up, n_threads)
    res["unpool_out"] = up
    gu = rng.integers(-4, 5, x.shape).astype(x.dtype)
    gx = np.full(g.shape, fill, x.dtype)
    be.max_unpool2d_backward(gu, idx, gx, n_threads)
    res["unpool_grad"] = gx
    return res


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        assert a[key].dtype == b[key].dtype, key


KERNEL_BACKENDS = [NUMPY] + ([CYTHON] if HAS_CYTHON else [])


# ---- 1. hand-computed cases --------------------------------------------------------------

@pytest.mark.parametrize("be", KERNEL_BACKENDS, ids=lambda b: b.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_hand_computed(be, dtype):
    x = np.array([[1, 3, 2, 0],
                  [4, 2, 2, 2],
                  [0, 0, 5, 1],
                  [0, 0, 1, 5]], dtype)[None, None]
    out = np.empty((1, 1, 2, 2), dtype)
    idx = np.empty((1, 1, 2, 2), np.int64)
    be.max_pool2d_forward(x, out, idx, 2, 2, 2, 2, 0, 0, 1)
    np.testing.assert_array_equal(out[0, 0], [[4, 2], [0, 5]])
    # ties: the first maximum in row-major order (2 at (0,2); 0 at (2,0)); 5 at (2,2) first
    np.testing.assert_array_equal(idx[0, 0], [[4, 2], [8, 10]])
    grad = np.empty_like(x)
    be.max_pool2d_backward(np.array([[[[1, 2], [3, 4]]]], dtype), idx, grad, 1)
    np.testing.assert_array_equal(grad[0, 0], [[0, 0, 2, 0], [1, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]])


@pytest.mark.parametrize("be", KERNEL_BACKENDS, ids=lambda b: b.name)
def test_max_pool_padding_overlap_hand_computed(be):
    # kernel 3, stride 2, padding 1 on a 3x3 plane: windows [-1..1] and [1..3] per axis.
    x = np.array([[1, 9, 2], [3, 4, 5], [9, 0, 6]], np.float64)[None, None]
    out = np.empty((1, 1, 2, 2))
    idx = np.empty((1, 1, 2, 2), np.int64)
    be.max_pool2d_forward(x, out, idx, 3, 3, 2, 2, 1, 1, 1)
    np.testing.assert_array_equal(out[0, 0], [[9, 9], [9, 6]])
    np.testing.assert_array_equal(idx[0, 0], [[1, 1], [6, 8]])
    grad = np.empty_like(x)
    be.max_pool2d_backward(np.array([[[[1.0, 10.0], [100.0, 1000.0]]]]), idx, grad, 1)
    # the shared maximum x[0, 1] collects both windows' gradients
    np.testing.assert_array_equal(grad[0, 0], [[0, 11, 0], [0, 0, 0], [100, 0, 1000]])


@pytest.mark.parametrize("be", KERNEL_BACKENDS, ids=lambda b: b.name)
def test_max_pool_nan_and_minus_inf(be):
    nan, inf = np.nan, np.inf
    x = np.array([[1, nan, nan, 3, -inf, -inf],
                  [nan, 5, 1, nan, -inf, -inf]], np.float32)[None, None]
    out = np.empty((1, 1, 1, 3), np.float32)
    idx = np.empty((1, 1, 1, 3), np.int64)
    be.max_pool2d_forward(x, out, idx, 2, 2, 2, 2, 0, 0, 1)
    assert np.isnan(out[0, 0, 0, :2]).all() and out[0, 0, 0, 2] == -inf
    # PyTorch: a NaN wins, the last one in the window; all -inf: the first element
    np.testing.assert_array_equal(idx[0, 0, 0], [6, 9, 4])
    # all -inf with padding: the first element inside the plane, never a padded one
    x = np.full((1, 1, 3, 3), -inf)
    out = np.empty((1, 1, 2, 2))
    idx = np.empty((1, 1, 2, 2), np.int64)
    be.max_pool2d_forward(x, out, idx, 2, 2, 2, 2, 1, 1, 1)
    np.testing.assert_array_equal(idx[0, 0], [[0, 1], [3, 4]])


@pytest.mark.parametrize("be", KERNEL_BACKENDS, ids=lambda b: b.name)
def test_avg_pool_hand_computed(be):
    x = np.arange(1, 10, dtype=np.float64).reshape(1, 1, 3, 3)
    out = np.empty((1, 1, 2, 2))
    be.avg_pool2d_forward(x, out, 2, 2, 1, 1, 0, 0, 1)
    np.testing.assert_array_equal(out[0, 0], [[3, 4], [6, 7]])
    # padding 1, stride 2: the padded zeros count in the divisor 4
    out = np.empty((1, 1, 2, 2))
    be.avg_pool2d_forward(x, out, 2, 2, 2, 2, 1, 1, 1)
    np.testing.assert_array_equal(out[0, 0], [[1 / 4, (2 + 3) / 4], [(4 + 7) / 4, (5 + 6 + 8 + 9) / 4]])
    grad = np.empty_like(x)
    be.avg_pool2d_backward(np.array([[[[4.0, 8.0], [12.0, 16.0]]]]), grad, 2, 2, 1, 1, 0, 0, 1)
    np.testing.assert_array_equal(grad[0, 0], [[1, 3, 2], [4, 10, 6], [3, 7, 4]])


@pytest.mark.parametrize("be", KERNEL_BACKENDS, ids=lambda b: b.name)
def test_unpool_hand_computed(be):
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    idx = np.array([[[[5, 2], [5, 15]]]])  # 5 twice: the later value (3) wins
    out = np.empty((1, 1, 4, 4))
    be.max_unpool2d_forward(x, idx, out, 1)
    expect = np.zeros(16)
    expect[[2, 5, 15]] = [2, 3, 4]
    np.testing.assert_array_equal(out.ravel(), expect)
    grad = np.empty_like(x)
    be.max_unpool2d_backward(np.arange(16.0).reshape(1, 1, 4, 4), idx, grad, 1)
    np.testing.assert_array_equal(grad[0, 0], [[5, 2], [5, 15]])


# ---- 2. compiled == twin on an edge-case grid --------------------------------------------

EDGE_CASES = [
    # (N, C, H, W), kernel, stride, padding
    ((2, 3, 8, 8), (2, 2), (2, 2), (0, 0)),  # the 2x2 fast path
    ((2, 3, 9, 7), (2, 2), (2, 2), (0, 0)),  # fast path, odd sizes: last row/column unused
    ((1, 1, 2, 2), (2, 2), (2, 2), (0, 0)),  # one window
    ((1, 1, 5, 5), (1, 1), (1, 1), (0, 0)),  # kernel 1
    ((2, 2, 7, 7), (1, 1), (3, 3), (0, 0)),  # kernel 1, stride > kernel
    ((2, 2, 10, 9), (2, 2), (3, 3), (1, 1)),  # stride > kernel, padding = kernel // 2
    ((1, 3, 7, 7), (3, 3), (1, 1), (1, 1)),  # overlapping windows with padding
    ((2, 1, 6, 9), (3, 2), (1, 2), (1, 1)),  # non-square everything
    ((1, 2, 5, 4), (5, 4), (1, 1), (2, 2)),  # kernel as large as the plane, padded
    ((1, 1, 4, 4), (4, 4), (1, 1), (0, 0)),  # global pooling
    ((3, 2, 8, 6), (2, 3), (2, 1), (0, 1)),
    ((2, 2, 3, 70), (2, 2), (2, 2), (0, 0)),  # fast path across several 64-window chunks
    ((1, 2, 5, 150), (3, 3), (1, 1), (1, 1)),  # general path: interior in several chunks
    ((1, 1, 4, 140), (3, 2), (2, 3), (1, 1)),
]


def edge_input(shape, dtype, seed=0, specials=False):
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, shape).astype(dtype)  # small integers: many ties
    if specials:
        flat = x.reshape(-1)
        pos = rng.choice(flat.size, size=max(1, flat.size // 6), replace=False)
        flat[pos] = rng.choice([np.nan, -np.inf, np.inf], size=pos.size)
    return x


@requires_cython
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape,k,s,p", EDGE_CASES)
@pytest.mark.parametrize("specials", [False, True], ids=["finite", "nan-inf"])
def test_compiled_equals_twin_edge_cases(shape, k, s, p, dtype, specials):
    x = edge_input(shape, dtype, specials=specials)
    assert_same(run_kernels(CYTHON, x, k, s, p, n_threads=2), run_kernels(NUMPY, x, k, s, p))


@pytest.mark.parametrize("be", KERNEL_BACKENDS, ids=lambda b: b.name)
@pytest.mark.parametrize("shape,k,s,p", EDGE_CASES[:8])
def test_outputs_fully_written(be, shape, k, s, p):
    """Outputs may come from np.empty: every element is written, whatever it held."""
    x = edge_input(shape, np.float64)
    assert_same(run_kernels(be, x, k, s, p, fill=np.nan), run_kernels(be, x, k, s, p, fill=0.0))


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    H = draw(st.integers(max(1, kh - 2 * ph), 11))
    W = draw(st.integers(max(1, kw - 2 * pw), 11))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), H, W)
    return shape, (kh, kw), (sh, sw), (ph, pw)


@requires_cython
@given(case=pool_cases(), dtype=st.sampled_from([np.float32, np.float64]),
       specials=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_compiled_equals_twin_hypothesis(case, dtype, specials, seed):
    shape, k, s, p = case
    x = edge_input(shape, dtype, seed=seed, specials=specials)
    assert_same(run_kernels(CYTHON, x, k, s, p, seed=seed), run_kernels(NUMPY, x, k, s, p, seed=seed))


@requires_cython
@given(case=pool_cases(), seed=st.integers(0, 2**32 - 1))
def test_compiled_equals_twin_hypothesis_continuous(case, seed):
    # Continuous values: the float64 sums of average pooling round identically too.
    shape, k, s, p = case
    x = np.random.default_rng(seed).standard_normal(shape)
    assert_same(run_kernels(CYTHON, x, k, s, p, seed=seed), run_kernels(NUMPY, x, k, s, p, seed=seed))


@requires_cython
@pytest.mark.parametrize("avx2", [True, False], ids=["best", "sse2"])
@pytest.mark.parametrize("specials", [False, True], ids=["finite", "nan-inf"])
def test_max_pool_2x2_float32_steps_equal_twin(avx2, specials):
    """The float32 2x2 forward takes 8 windows per AVX2 step (when the CPU has it), 4 per
    SSE2 step, then single windows: every row width from 1 to 21 windows mixes them (the
    AVX2 row ends with an overlapping step), odd widths leave a column out, ties and
    NaN / inf cover the selection rule."""
    from dlcore.backends.cython_kernels import pool as mod

    mod._set_isa(avx2)
    try:
        for W in range(2, 44):
            x = edge_input((2, 3, 5, W), np.float32, seed=W, specials=specials)
            assert_same(run_kernels(CYTHON, x, (2, 2), (2, 2), (0, 0), n_threads=2),
                        run_kernels(NUMPY, x, (2, 2), (2, 2), (0, 0)))
    finally:
        mod._set_isa(True)


# ---- 3. thread-count invariance (the grid above also runs the compiled side on 2 threads) ----------------------------------------------------------

@requires_cython
@pytest.mark.parametrize("shape,k,s,p", [EDGE_CASES[0], EDGE_CASES[6], EDGE_CASES[7]])
def test_threads_bitwise_equal(shape, k, s, p):
    x = np.random.default_rng(3).standard_normal((5, 7) + shape[2:]).astype(np.float32)
    x[0, 0, 0, :] = 0.0  # ties as well
    one = run_kernels(CYTHON, x, k, s, p, n_threads=1)
    for n in (2, 3, 8):  # more threads than cores and than planes are allowed
        assert_same(run_kernels(CYTHON, x, k, s, p, n_threads=n), one)
