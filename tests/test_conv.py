"""Convolution kernels (im2col, col2im, conv2d, conv_transpose2d) and their functional ops.

Order: hand-computed cases; compiled == twin on an edge-case grid and on hypothesis
shapes (with dilation and groups); thread-count invariance; the kernels' own size checks;
awkward input layouts; finite differences; the torch oracle; the compiled workspace;
input gradients on demand; errors.
"""
import tracemalloc

import numpy as np
import pytest
from helpers import assert_close, numeric_grad, requires_torch, torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dlcore
import dlcore.functional as F
from dlcore._checks import pair
from dlcore.backends import backend as get_backend_kernels
from dlcore.backends.numpy_kernels import conv as twin

HAS_COMPILED = "cython" in dlcore.available_backends()
requires_compiled = pytest.mark.skipif(not HAS_COMPILED, reason="compiled backend not built")


def _rand(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


# ---- 1. hand-computed cases ------------------------------------------------------------

def test_conv2d_hand_computed(backend, dtype):
    x = np.arange(9, dtype=dtype).reshape(1, 1, 3, 3)
    w = np.array([[[[1, 2], [3, 4]]]], dtype=dtype)
    # window (0,0): 0*1 + 1*2 + 3*3 + 4*4 = 27; then 37, 57, 67; plus the bias 1
    out = F.conv2d(x, w, np.array([1.0], dtype))
    np.testing.assert_array_equal(out, [[[[28, 38], [58, 68]]]])
    assert out.dtype == dtype
    # stride 2 and padding 1 on the same image: windows start at -1 and 1
    out = F.conv2d(x, w, stride=2, padding=1)
    # (-1,-1): only x[0,0]*4 = 0; (-1,1): x[0,1]*3 + x[0,2]*4 = 3 + 8;
    # (1,-1): x[1,0]*2 + x[2,0]*4 = 6 + 24; (1,1): 4*1 + 5*2 + 7*3 + 8*4 = 67
    np.testing.assert_array_equal(out, [[[[0, 11], [30, 67]]]])


def test_conv2d_backward_hand_computed(backend):
    x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
    w = np.array([[[[1, 2], [3, 4]]]], dtype=np.float64)
    out, ctx = F.conv2d_forward(x, w, np.zeros(1))
    gx, gw, gb = F.conv2d_backward(np.ones_like(out), ctx)
    # dL/dw[kh, kw] = sum of the four windows' pixels at that offset
    np.testing.assert_array_equal(gw, [[[[0 + 1 + 3 + 4, 1 + 2 + 4 + 5], [3 + 4 + 6 + 7, 4 + 5 + 7 + 8]]]])
    # dL/dx = sum of the weights of every window covering the pixel
    np.testing.assert_array_equal(gx, [[[[1, 3, 2], [4, 10, 6], [3, 7, 4]]]])
    np.testing.assert_array_equal(gb, [4])


def test_unfold_fold_hand_computed(backend, dtype):
    x = np.arange(9, dtype=dtype).reshape(1, 1, 3, 3)
    cols = F.unfold(x, 2)
    np.testing.assert_array_equal(cols, [[[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]])
    # fold of ones counts the windows covering each pixel
    np.testing.assert_array_equal(F.fold(np.ones((1, 4, 4), dtype), 3, 2), [[[[1, 2, 1], [2, 4, 2], [1, 2, 1]]]])


def test_conv_transpose2d_hand_computed(backend, dtype):
    x = np.array([[[[1, 2], [3, 4]]]], dtype=dtype)
    # a 2x2 kernel of ones with stride 2 copies each pixel into its own 2x2 block
    out = F.conv_transpose2d(x, np.ones((1, 1, 2, 2), dtype), np.array([0.5], dtype), stride=2)
    np.testing.assert_array_equal(out, np.kron(x, np.ones((2, 2))) + 0.5)
    # stride 1: overlapping blocks add; output_padding adds a zero row/column (bias only)
    out = F.conv_transpose2d(x, np.ones((1, 1, 2, 2), dtype))
    np.testing.assert_array_equal(out, [[[[1, 3, 2], [4, 10, 6], [3, 7, 4]]]])
    out = F.conv_transpose2d(x, np.ones((1, 1, 1, 1), dtype), stride=2, output_padding=1)
    np.testing.assert_array_equal(out, [[[[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]]])


# ---- 2. compiled == twin -----------------------------------------------------------------

# (N, C, H, W, F, KH, KW, stride, padding[, dilation, groups])
EDGE_CASES = [
    (2, 3, 7, 7, 4, 1, 1, 1, 0),            # 1x1 kernel
    (2, 3, 8, 6, 2, 1, 1, 2, 0),            # 1x1 kernel, stride 2
    (1, 2, 9, 9, 3, 2, 2, 3, 0),            # stride > kernel (pixels never read)
    (2, 1, 5, 5, 2, 3, 3, 1, 2),            # padding = kernel - 1
    (1, 1, 4, 4, 1, 4, 4, 1, 3),            # padding = kernel - 1, big kernel
    (3, 2, 7, 11, 5, 3, 5, (2, 1), (1, 2)),  # non-square everything
    (1, 1, 1, 1, 1, 1, 1, 1, 0),            # a single pixel
    (1, 3, 1, 6, 2, 1, 3, (1, 2), (0, 1)),  # one-row image
    (2, 2, 5, 5, 3, 5, 5, 1, 0),            # kernel = input
    (1, 1, 2, 2, 1, 3, 3, 2, 1),            # kernel > input, fits with padding
    (2, 2, 6, 6, 2, 2, 2, 2, (3, 0)),       # padding larger than kernel
    (2, 3, 9, 8, 4, 3, 2, 1, 1, 2, 1),      # dilation 2
    (1, 2, 11, 7, 2, 3, 3, (2, 1), (0, 2), (3, 2), 1),  # dilation, stride, padding mixed
    (2, 4, 6, 6, 6, 3, 3, 1, 1, 1, 2),      # two groups
    (2, 6, 7, 5, 6, 2, 3, 2, 1, (1, 2), 6),  # depthwise (groups = channels), dilated
    (1, 4, 5, 5, 2, 5, 5, 1, 4, 2, 2),      # dilated kernel wider than the image, padded
]


def _case(case):
    """An EDGE_CASES tuple with dilation and groups filled in."""
    return tuple(case) + (1, 1) if len(case) == 9 else tuple(case)


def _conv_all(x, w, b, stride, padding, g, dilation=1, groups=1):
    out, ctx = F.conv2d_forward(x, w, b, stride, padding, dilation, groups)
    return (out, *F.conv2d_backward(g, ctx))


def _conv_t_all(x, w, b, stride, padding, output_padding, g, groups=1, dilation=1):
    out, ctx = F.conv_transpose2d_forward(x, w, b, stride, padding, output_padding, groups, dilation)
    return (out, *F.conv_transpose2d_backward(g, ctx))


def _both_backends(fn, *args):
    results = []
    for name in ("numpy", "cython"):
        with dlcore.use_backend(name):
            results.append(fn(*args))
    return results


def _assert_same(a, b, dtype):
    """out, grad_input, grad_weight, grad_bias of two backends: equal up to rounding (the
    GEMMs sum in other orders; the weight and bias gradients are sums over the batch)."""
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    for i, (u, v) in enumerate(zip(a, b)):
        if u is None:
            assert v is None
        else:
            assert_close(u, v, dtype, scale=10 if i < 2 else 100)


def _check_against_twin(case, dtype, rng, with_bias=True):
    N, C, H, W, Fo, KH, KW, stride, padding, dilation, groups = _case(case)
    x, w = _rand(rng, (N, C, H, W), dtype), _rand(rng, (Fo, C // groups, KH, KW), dtype)
    b = _rand(rng, (Fo,), dtype) if with_bias else None
    kernel = (KH, KW)
    cols_np, cols_cy = _both_backends(F.unfold, x, kernel, stride, padding, dilation)
    np.testing.assert_array_equal(cols_np, cols_cy)
    back_np, back_cy = _both_backends(F.fold, cols_np, (H, W), kernel, stride, padding, dilation)
    np.testing.assert_array_equal(back_np, back_cy)  # same summation order: bitwise

    out = F.conv2d(x, w, b, stride, padding, dilation, groups)
    g = _rand(rng, out.shape, dtype)
    _assert_same(*_both_backends(_conv_all, x, w, b, stride, padding, g, dilation, groups), dtype)

    # the transposed conv maps out's shape back towards x's (any output_padding < stride)
    (SH, SW), (PH, PW), (DH, DW) = (pair(v, "v") for v in (stride, padding, dilation))
    op = (min(max(SH, DH) - 1, 1), 0)
    if ((out.shape[2] - 1) * SH - 2 * PH + DH * (KH - 1) + 1 + op[0] < 1
            or (out.shape[3] - 1) * SW - 2 * PW + DW * (KW - 1) + 1 < 1):
        return  # padding crops everything: conv_transpose2d rejects it (tested below)
    wt = _rand(rng, (Fo, C // groups, KH, KW), dtype)
    bias_t = _rand(rng, (C,), dtype) if with_bias else None
    y = F.conv_transpose2d(out, wt, bias_t, stride, padding, op, groups, dilation)
    gy = _rand(rng, y.shape, dtype)
    _assert_same(*_both_backends(_conv_t_all, out, wt, bias_t, stride, padding, op, gy, groups, dilation),
                 dtype)


@requires_compiled
@pytest.mark.parametrize("case", EDGE_CASES, ids=[str(i) for i in range(len(EDGE_CASES))])
def test_compiled_equals_twin_edge_cases(case, dtype, rng):
    _check_against_twin(case, dtype, rng)


@requires_compiled
def test_compiled_equals_twin_without_bias(rng):
    _check_against_twin(EDGE_CASES[5], np.float64, rng, with_bias=False)


@st.composite
def conv_cases(draw):
    KH, KW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    SH, SW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    PH, PW = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    DH, DW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    H = draw(st.integers(max(1, DH * (KH - 1) + 1 - 2 * PH), 10))
    W = draw(st.integers(max(1, DW * (KW - 1) + 1 - 2 * PW), 10))
    groups = draw(st.integers(1, 3))
    N = draw(st.integers(1, 3))
    C, Fo = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    return N, C, H, W, Fo, KH, KW, (SH, SW), (PH, PW), (DH, DW), groups


@requires_compiled
@settings(max_examples=30)
@given(case=conv_cases(), f32=st.booleans(), seed=st.integers(0, 2**16))
def test_compiled_equals_twin_hypothesis(case, f32, seed):
    _check_against_twin(case, np.float32 if f32 else np.float64, np.random.default_rng(seed))


@requires_compiled
@pytest.mark.parametrize("case", [EDGE_CASES[3], EDGE_CASES[5], EDGE_CASES[13], (4, 8, 12, 12, 8, 3, 3, 1, 1),
                                  (4, 3, 9, 9, 4, 3, 3, 2, 1)])  # im2col's path, tiles added in chunks
@pytest.mark.parametrize("tile_bytes", [None, 1])  # the default tiles, and one image per tile
def test_threads_bitwise_equal(case, tile_bytes, rng, monkeypatch):
    from dlcore.backends.cython_kernels import conv as compiled

    if tile_bytes is not None:
        monkeypatch.setattr(compiled, "TILE_BYTES", tile_bytes)
    N, C, H, W, Fo, KH, KW, stride, padding, dilation, groups = _case(case)
    N *= 5  # several tiles: the weight gradient is a sum over tiles
    x = _rand(rng, (N, C, H, W), np.float32)
    w, b = _rand(rng, (Fo, C // groups, KH, KW), np.float32), _rand(rng, (Fo,), np.float32)
    g = _rand(rng, F.conv2d(x, w, b, stride, padding, dilation, groups).shape, np.float32)
    wt, bt = _rand(rng, (C, Fo // groups, KH, KW), np.float32), _rand(rng, (Fo,), np.float32)
    xt = _rand(rng, g.shape[:1] + (C,) + g.shape[2:], np.float32)
    gt = _rand(rng, F.conv_transpose2d(xt, wt, bt, stride, padding, 0, groups, dilation).shape, np.float32)
    previous = dlcore.get_num_threads()
    results = []
    try:
        with dlcore.use_backend("cython"):
            for n in (1, 2, 3):
                dlcore.set_num_threads(n)
                cols = F.unfold(x, (KH, KW), stride, padding, dilation)
                results.append((cols, F.fold(cols, (H, W), (KH, KW), stride, padding, dilation),
                                *_conv_all(x, w, b, stride, padding, g, dilation, groups),
                                *_conv_t_all(xt, wt, bt, stride, padding, 0, gt, groups, dilation)))
    finally:
        dlcore.set_num_threads(previous)
    for other in results[1:]:
        for a, c in zip(results[0], other):
            np.testing.assert_array_equal(a, c)


# Shapes for the direct (few-input-channel) paths: (x shape, weight shape, stride, padding, dilation, bias)
DIRECT_CASES = [
    ((9, 1, 28, 28), (6, 1, 5, 5), 1, 2, 1, True),       # LeNet conv1
    ((9, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1, True),      # LeNet conv2
    ((3, 2, 11, 37), (5, 2, 3, 4), (2, 1), (1, 3), (2, 1), False),  # tails, row stride, dilation
    ((2, 3, 5, 3), (7, 3, 3, 3), (1, 1), 2, (1, 2), True),          # output wider than the image
    ((2, 1, 9, 12), (4, 1, 2, 7), 1, 3, 1, False),       # padding past the window; 7 taps = 3 + 2 + 2
]


@requires_compiled
@pytest.mark.parametrize("xs, ws, stride, padding, dilation, bias", DIRECT_CASES)
@pytest.mark.parametrize("avx2", [True, False])
def test_direct_forward_equals_gemm_path(xs, ws, stride, padding, dilation, bias, avx2, rng, monkeypatch):
    """Few input channels take the direct loops (float32); they agree with im2col + GEMM."""
    from dlcore.backends.cython_kernels import conv as compiled

    x, w = _rand(rng, xs, np.float32), _rand(rng, ws, np.float32)
    b = _rand(rng, ws[:1], np.float32) if bias else None
    assert ws[1] * ws[2] * ws[3] <= compiled.DIRECT_MAX_K
    with dlcore.use_backend("cython"):
        try:
            compiled._direct_isa(avx2)
            direct = F.conv2d(x, w, b, stride, padding, dilation)
        finally:
            compiled._direct_isa(True)
        monkeypatch.setattr(compiled, "DIRECT_MAX_K", 0)
        gemm = F.conv2d(x, w, b, stride, padding, dilation)
    assert_close(direct, gemm, np.float32, scale=10)


@requires_compiled
@pytest.mark.parametrize("xs, ws, stride, padding, dilation, bias", DIRECT_CASES + [
    ((4, 1, 6, 6), (1, 1, 1, 1), 1, 0, 1, True),         # one output channel, a 1x1 window
])
@pytest.mark.parametrize("avx2", [True, False])
@pytest.mark.parametrize("input_grad", [True, False])
def test_direct_weight_gradient_equals_gemm_path(xs, ws, stride, padding, dilation, bias, avx2, input_grad,
                                                 rng, monkeypatch):
    """Few input channels take the direct loops for the weight gradient too (float32)."""
    from dlcore.backends.cython_kernels import conv as compiled

    x, w = _rand(rng, xs, np.float32), _rand(rng, ws, np.float32)
    b = _rand(rng, ws[:1], np.float32) if bias else None
    assert ws[1] * ws[2] * ws[3] <= min(compiled.DIRECT_MAX_K, compiled.DIRECT_GW_MAX_K)
    with dlcore.use_backend("cython"):
        out, ctx = F.conv2d_forward(x, w, b, stride, padding, dilation)
        g = _rand(rng, out.shape, np.float32)
        try:
            compiled._direct_isa(avx2)
            direct = F.conv2d_backward(g, ctx, input_grad)
        finally:
            compiled._direct_isa(True)
        monkeypatch.setattr(compiled, "DIRECT_GW_MAX_K", 0)
        gemm = F.conv2d_backward(g, ctx, input_grad)
    for a, c in zip(direct, gemm):
        if c is None:
            assert a is None
        else:
            assert a is not None and a.dtype == np.float32
            assert_close(a, c, np.float32, scale=100)


@requires_compiled
@pytest.mark.parametrize("shapes", [((6, 6, 14, 14), (16, 6, 5, 5)), ((3, 8, 12, 12), (24, 8, 3, 3))])
def test_concurrent_calls_never_share_scratch(shapes, rng):
    """The kernels keep scratch buffers between calls; Python threads calling at once (the
    kernels release the GIL) must each get their own, so each result equals its serial one."""
    import threading

    xs, ws = shapes
    cases = []
    for _ in range(4):
        x, w, b = _rand(rng, xs, np.float32), _rand(rng, ws, np.float32), _rand(rng, ws[:1], np.float32)
        g = _rand(rng, F.conv2d(x, w, b, 1, 1).shape, np.float32)
        cases.append((x, w, b, g))
    with dlcore.use_backend("cython"):
        serial = [_conv_all(x, w, b, 1, 1, g) for x, w, b, g in cases]
        results = [None] * len(cases)
        start = threading.Barrier(len(cases))

        def run(i):
            start.wait()
            x, w, b, g = cases[i]
            results[i] = [_conv_all(x, w, b, 1, 1, g) for _ in range(20)]

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(cases))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for want, got in zip(serial, results):
        for repeat in got:
            for a, c in zip(repeat, want):
                np.testing.assert_array_equal(a, c)


@requires_compiled
def test_kernel_signatures_match():
    import inspect

    for name in twin.__all__:
        a = inspect.signature(getattr(get_backend_kernels("numpy"), name))
        b = inspect.signature(getattr(get_backend_kernels("cython"), name))
        assert list(a.parameters) == list(b.parameters), name
        assert list(a.parameters)[-1] == "n_threads"


@requires_compiled
def test_compiled_kernels_check_every_size():
    """The loops run unchecked, so each kernel compares all its sizes first (O(1))."""
    k = get_backend_kernels("cython")
    x, w, b = np.zeros((2, 4, 5, 5)), np.zeros((6, 2, 3, 3)), np.zeros(6)
    out, gw = np.zeros((2, 6, 3, 3)), np.zeros((6, 2, 3, 3))
    win = (1, 1, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="cols must have shape"):
        k.im2col(x, np.zeros((2, 36, 10)), 3, 3, *win, 1)
    with pytest.raises(ValueError, match="cols must have shape"):
        k.col2im(np.zeros((2, 35, 9)), x, 3, 3, *win, 1)
    with pytest.raises(ValueError, match="ndarray is not C-contiguous|must be contiguous"):
        k.im2col(x, np.zeros((2, 36, 18))[:, :, ::2], 3, 3, *win, 1)
    with pytest.raises(ValueError, match="does not fit the padded image"):
        k.im2col(x, np.zeros((2, 4 * 36, 1)), 6, 6, *win, 1)
    with pytest.raises(ValueError, match="must be >= 1"):
        k.im2col(x, np.zeros((2, 36, 9)), 3, 3, 1, 1, 0, 0, 0, 1, 1)
    k.conv2d_forward(x, w, b, out, *win, 2, 1)  # consistent: runs
    with pytest.raises(ValueError, match="groups=3 must divide"):
        k.conv2d_forward(x, w, b, out, *win, 3, 1)
    with pytest.raises(ValueError, match="weight must have shape"):
        k.conv2d_forward(x, w, b, out, *win, 1, 1)
    with pytest.raises(ValueError, match="out must have shape"):
        k.conv2d_forward(x, w, b, np.zeros((2, 6, 2, 3)), *win, 2, 1)
    with pytest.raises(ValueError, match="bias must have shape"):
        k.conv2d_forward(x, w, b[:5], out, *win, 2, 1)
    with pytest.raises(ValueError, match="Buffer dtype mismatch"):
        k.conv2d_forward(x, w, b.astype(np.float32), out, *win, 2, 1)
    with pytest.raises(ValueError, match="grad_output must have shape"):
        k.conv2d_backward(x, w, out[:1], None, gw, None, *win, 2, 1)
    with pytest.raises(ValueError, match="grad_input must have shape"):
        k.conv2d_backward(x, w, out, np.zeros((2, 2, 5, 5)), gw, None, *win, 2, 1)
    with pytest.raises(ValueError, match="grad_weight must have shape"):
        k.conv2d_backward(x, w, out, None, gw[:3], None, *win, 2, 1)
    with pytest.raises(ValueError, match="grad_bias must have shape"):
        k.conv2d_backward(x, w, out, None, gw, b[:2], *win, 2, 1)
    # transposed: x (2, 6, 3, 3) -> out (2, 4, 5, 5) with weight (6, 2, 3, 3) and 2 groups
    k.conv_transpose2d_forward(out, w, np.zeros(4), x, *win, 2, 1)
    with pytest.raises(ValueError, match="does not fit x"):
        k.conv_transpose2d_forward(out, w, None, np.zeros((2, 4, 4, 5)), *win, 2, 1)
    with pytest.raises(ValueError, match="bias must have shape"):
        k.conv_transpose2d_forward(out, w, b, x, *win, 2, 1)
    with pytest.raises(ValueError, match="weight must have shape"):
        k.conv_transpose2d_backward(out, np.zeros((6, 1, 3, 3)), x, None, np.zeros((6, 1, 3, 3)), None, *win, 2, 1)
    with pytest.raises(ValueError, match="grad_input must have shape"):
        k.conv_transpose2d_backward(out, w, x, x, gw, None, *win, 2, 1)


# ---- 3. input layouts ----------------------------------------------------------------------

def test_awkward_inputs_equal_contiguous_copies(backend, rng):
    base = _rand(rng, (3, 5, 9, 8))
    w_base = _rand(rng, (4, 2, 3, 3))
    b = _rand(rng, (4,))
    x = base[::2, 1:5:2, :, ::-1]                     # sliced, negative strides
    w = np.asfortranarray(w_base)                      # Fortran order
    g = _rand(rng, (2, 4, 7, 6))
    ro = [a.copy() for a in (x, w, b, g)]
    for a in ro:
        a.flags.writeable = False
    expected = _conv_all(np.ascontiguousarray(x), np.ascontiguousarray(w), b, 1, 0, g)
    for args in ((x, w, b, g), tuple(ro)):
        snapshot = [a.copy() for a in args]
        got = _conv_all(args[0], args[1], args[2], 1, 0, args[3])
        for u, v in zip(got, expected):
            np.testing.assert_array_equal(u, v)
        for a, s in zip(args, snapshot):
            np.testing.assert_array_equal(a, s)  # inputs untouched
    # transposed (H <-> W) input through unfold/fold and conv_transpose2d
    xt = base[:, :2].transpose(0, 1, 3, 2)
    np.testing.assert_array_equal(F.unfold(xt, 2, 2, 1), F.unfold(np.ascontiguousarray(xt), 2, 2, 1))
    cols = F.unfold(np.ascontiguousarray(xt), 2).transpose(0, 2, 1).copy().transpose(0, 2, 1)
    np.testing.assert_array_equal(F.fold(cols, (8, 9), 2), F.fold(np.ascontiguousarray(cols), (8, 9), 2))
    wt = _rand(rng, (2, 3, 2, 2)).transpose(0, 1, 3, 2)
    np.testing.assert_array_equal(F.conv_transpose2d(xt, wt, None, 2),
                                  F.conv_transpose2d(np.ascontiguousarray(xt), np.ascontiguousarray(wt), None, 2))


def test_dtype_follows_weight(backend, rng):
    x = _rand(rng, (1, 2, 5, 5), np.float32)
    w = _rand(rng, (3, 2, 3, 3), np.float64)
    out, ctx = F.conv2d_forward(x, w)
    assert out.dtype == np.float64
    gx, gw, gb = F.conv2d_backward(np.ones(out.shape, np.float32), ctx)
    assert gx.dtype == gw.dtype == np.float64 and gb is None
    assert F.conv2d(x.astype(np.float64), w.astype(np.float32)).dtype == np.float32
    assert F.conv_transpose2d(x, w.transpose(1, 0, 2, 3).astype(np.float32)).dtype == np.float32
    assert F.unfold(x, 2).dtype == np.float32 and F.fold(F.unfold(x, 2), 5, 2).dtype == np.float32


def test_empty_batch(backend):
    out, ctx = F.conv2d_forward(np.zeros((0, 2, 5, 5)), np.ones((3, 2, 3, 3)), np.ones(3))
    assert out.shape == (0, 3, 3, 3)
    gx, gw, gb = F.conv2d_backward(out, ctx)
    assert gx.shape == (0, 2, 5, 5)
    np.testing.assert_array_equal(gw, 0)
    np.testing.assert_array_equal(gb, 0)


# ---- 4. finite differences (float64) -------------------------------------------------------

@pytest.mark.parametrize("stride, padding, dilation, groups", [
    (1, 0, 1, 1), ((2, 1), (1, 2), 1, 1), (3, 1, 1, 1), (1, 1, 2, 2), ((2, 1), (2, 0), (1, 2), 4)])
def test_conv2d_gradients_finite_differences(backend, rng, stride, padding, dilation, groups):
    x, w, b = _rand(rng, (2, 4, 6, 5)), _rand(rng, (4, 4 // groups, 3, 2)), _rand(rng, (4,))
    out, ctx = F.conv2d_forward(x, w, b, stride, padding, dilation, groups)
    g = _rand(rng, out.shape)
    gx, gw, gb = F.conv2d_backward(g, ctx)
    loss = lambda: float(np.sum(F.conv2d(x, w, b, stride, padding, dilation, groups) * g))  # noqa: E731
    for analytic, param in ((gx, x), (gw, w), (gb, b)):
        np.testing.assert_allclose(analytic, numeric_grad(lambda _: loss(), param), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("stride, padding, output_padding, groups, dilation", [
    (1, 0, 0, 1, 1), (2, 1, 1, 1, 1), ((3, 2), (0, 1), (2, 0), 1, 1), (2, 1, 1, 3, 2), (1, (1, 0), (1, 0), 3, (2, 1))])
def test_conv_transpose2d_gradients_finite_differences(backend, rng, stride, padding, output_padding, groups,
                                                       dilation):
    x, w, b = _rand(rng, (2, 3, 3, 4)), _rand(rng, (3, 2, 3, 2)), _rand(rng, (2 * groups,))
    args = (stride, padding, output_padding, groups, dilation)
    out, ctx = F.conv_transpose2d_forward(x, w, b, *args)
    g = _rand(rng, out.shape)
    gx, gw, gb = F.conv_transpose2d_backward(g, ctx)
    loss = lambda: float(np.sum(F.conv_transpose2d(x, w, b, *args) * g))  # noqa: E731
    for analytic, param in ((gx, x), (gw, w), (gb, b)):
        np.testing.assert_allclose(analytic, numeric_grad(lambda _: loss(), param), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), ((2, 3), (2, 1), (0, 2)), (2, 3, 1)])
def test_fold_is_adjoint_of_unfold(backend, rng, kernel, stride, padding):
    x = _rand(rng, (2, 3, 7, 6))
    cols = F.unfold(x, kernel, stride, padding)
    c = _rand(rng, cols.shape)
    lhs = np.vdot(cols, c)
    rhs = np.vdot(x, F.fold(c, (7, 6), kernel, stride, padding))
    assert lhs == pytest.approx(rhs, rel=1e-12)
    # and the gradient of <unfold(x), c> with respect to x, by finite differences, is fold(c)
    xs = x[:1, :1].copy()
    cs = c[:1, : cols.shape[1] // 3]
    num = numeric_grad(lambda _: float(np.vdot(F.unfold(xs, kernel, stride, padding), cs)), xs)
    np.testing.assert_allclose(F.fold(cs, (7, 6), kernel, stride, padding), num, rtol=1e-7, atol=1e-9)


# ---- 5. the torch oracle -------------------------------------------------------------------

# (x shape, weight shape, stride, padding, dilation, groups)
TORCH_CASES = [
    ((4, 3, 10, 9), (5, 3, 3, 3), 1, 1, 1, 1),
    ((2, 2, 11, 8), (3, 2, 4, 2), (2, 3), (1, 0), 1, 1),
    ((3, 1, 28, 28), (6, 1, 5, 5), 1, 2, 1, 1),
    ((2, 4, 12, 10), (6, 2, 3, 3), 1, 2, 2, 2),
    ((3, 6, 9, 9), (6, 1, 3, 2), 2, (1, 0), (2, 3), 6),
    ((40, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1, 1),  # several tiles
]


@requires_torch
@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", TORCH_CASES)
def test_conv2d_matches_torch(backend, dtype, rng, xs, ws, stride, padding, dilation, groups):
    x, w, b = _rand(rng, xs, dtype), _rand(rng, ws, dtype), _rand(rng, ws[:1], dtype)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    tout = torch.nn.functional.conv2d(tx, tw, tb, stride, padding, dilation, groups)
    g = _rand(rng, tuple(tout.shape), dtype)
    tout.backward(torch.tensor(g))
    out, ctx = F.conv2d_forward(x, w, b, stride, padding, dilation, groups)
    gx, gw, gb = F.conv2d_backward(g, ctx)
    scale = 30  # sums of up to a few hundred float32 products, in another order than torch's
    assert_close(out, tout.detach().numpy(), dtype, scale)
    assert_close(gx, tx.grad.numpy(), dtype, scale)
    assert_close(gw, tw.grad.numpy(), dtype, scale * 10)
    assert_close(gb, tb.grad.numpy(), dtype, scale * 10)


@requires_torch
@pytest.mark.parametrize("xs, ws, stride, padding, output_padding, groups, dilation", [
    ((2, 4, 5, 6), (4, 3, 3, 3), 2, 1, 1, 1, 1),
    ((3, 2, 4, 3), (2, 5, 2, 4), (1, 3), (0, 1), (0, 2), 1, 1),
    ((1, 6, 7, 7), (6, 1, 5, 5), 1, 2, 0, 1, 1),
    ((2, 4, 5, 6), (4, 3, 3, 2), (2, 3), (1, 0), (1, 2), 2, (2, 1)),
    ((2, 6, 4, 4), (6, 1, 3, 3), 1, 1, 1, 6, 2),   # output_padding < dilation (stride 1)
    ((30, 4, 6, 5), (4, 3, 3, 3), 2, 1, 1, 1, 1),  # several tiles
])
def test_conv_transpose2d_matches_torch(backend, dtype, rng, xs, ws, stride, padding, output_padding,
                                        groups, dilation):
    x, w, b = _rand(rng, xs, dtype), _rand(rng, ws, dtype), _rand(rng, (ws[1] * groups,), dtype)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    tout = torch.nn.functional.conv_transpose2d(tx, tw, tb, stride, padding, output_padding, groups, dilation)
    g = _rand(rng, tuple(tout.shape), dtype)
    tout.backward(torch.tensor(g))
    out, ctx = F.conv_transpose2d_forward(x, w, b, stride, padding, output_padding, groups, dilation)
    assert out.shape == tuple(tout.shape)
    gx, gw, gb = F.conv_transpose2d_backward(g, ctx)
    assert_close(out, tout.detach().numpy(), dtype, 30)
    assert_close(gx, tx.grad.numpy(), dtype, 30)
    assert_close(gw, tw.grad.numpy(), dtype, 300)
    assert_close(gb, tb.grad.numpy(), dtype, 300)


@requires_torch
@pytest.mark.parametrize("kernel, stride, padding, dilation", [
    (3, 1, 1, 1), ((2, 3), (2, 1), (0, 2), 1), (4, 3, 2, 1), (3, (1, 2), 2, (2, 3))])
def test_unfold_fold_match_torch(backend, dtype, rng, kernel, stride, padding, dilation):
    x = _rand(rng, (2, 3, 9, 7), dtype)
    tx = torch.tensor(x, requires_grad=True)
    tcols = torch.nn.functional.unfold(tx, kernel, dilation=dilation, padding=padding, stride=stride)
    np.testing.assert_array_equal(F.unfold(x, kernel, stride, padding, dilation), tcols.detach().numpy())
    c = _rand(rng, tuple(tcols.shape), dtype)
    tcols.backward(torch.tensor(c))
    # unfold's gradient is fold, and fold itself is torch's fold
    assert_close(F.fold(c, (9, 7), kernel, stride, padding, dilation), tx.grad.numpy(), dtype)
    tc = torch.tensor(c, requires_grad=True)
    tfold = torch.nn.functional.fold(tc, (9, 7), kernel, dilation=dilation, padding=padding, stride=stride)
    assert_close(F.fold(c, (9, 7), kernel, stride, padding, dilation), tfold.detach().numpy(), dtype)
    gx = _rand(rng, x.shape, dtype)
    tfold.backward(torch.tensor(gx))
    np.testing.assert_array_equal(F.unfold(gx, kernel, stride, padding, dilation), tc.grad.numpy())


# ---- 6. the compiled workspace; input gradients on demand --------------------------------

def _peak_extra_bytes(fn):
    """Peak traced allocation during fn() minus the bytes of the arrays it returns."""
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    arrays = result if isinstance(result, tuple) else (result,)
    return peak - sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))


@requires_compiled
def test_compiled_workspace_does_not_grow_with_the_batch(rng):
    """Per thread one tile's columns (about TILE_BYTES); per tile one weight-sized partial sum."""
    from dlcore.backends.cython_kernels import conv as compiled

    w, b = _rand(rng, (8, 3, 3, 3)), _rand(rng, (8,))
    per_tile_partials = (w.size + 8) * 8
    with dlcore.use_backend("cython"):
        for N in (16, 128):
            x = _rand(rng, (N, 3, 20, 20))
            out, ctx = F.conv2d_forward(x, w, b, 1, 1)
            g = _rand(rng, out.shape)
            n_tiles = -(-N // max(1, compiled.TILE_BYTES // ((27 + 8) * 400 * 8)))
            bound = dlcore.get_num_threads() * (compiled.TILE_BYTES + (27 + 8) * 400 * 8) + 64 * 1024
            assert _peak_extra_bytes(lambda: F.conv2d_forward(x, w, b, 1, 1)[0]) <= bound
            assert _peak_extra_bytes(lambda: F.conv2d_backward(g, ctx)) <= bound + n_tiles * per_tile_partials


@pytest.mark.parametrize("transposed", [False, True])
def test_input_gradient_only_when_asked(backend, rng, transposed):
    x, w, b = _rand(rng, (3, 4, 7, 6)), _rand(rng, (4, 2, 3, 3)), _rand(rng, (4,))
    if transposed:
        out, ctx = F.conv_transpose2d_forward(x, w, b, 2, 1, 1, 2, 1)
        backward = F.conv_transpose2d_backward
    else:
        out, ctx = F.conv2d_forward(x, w, b, 1, 1, 1, 2)
        backward = F.conv2d_backward
    g = _rand(rng, out.shape)
    gx, gw, gb = backward(g, ctx)
    none, gw2, gb2 = backward(g, ctx, input_grad=False)
    assert gx is not None and gx.shape == x.shape and none is None
    np.testing.assert_array_equal(gw2, gw)
    np.testing.assert_array_equal(gb2, gb)


# ---- 7. errors -----------------------------------------------------------------------------

def test_conv2d_errors(backend):
    x, w = np.zeros((2, 3, 5, 5), np.float32), np.zeros((4, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"x must be 4-D \(N, C, H, W\), got shape \(3, 5, 5\)"):
        F.conv2d(x[0], w)
    with pytest.raises(ValueError, match=r"weight must be 4-D"):
        F.conv2d(x, w[0])
    with pytest.raises(ValueError, match=r"x must have 3 channels \(weight.shape\[1\]\).*got shape \(2, 2, 5, 5\)"):
        F.conv2d(x[:, :2], w)
    with pytest.raises(ValueError, match=r"kernel_size \(3, 3\) is larger than the padded input: x of size \(2, 2\) with padding \(0, 0\) gives 2"):
        F.conv2d(x[:, :, :2, :2], w)
    with pytest.raises(ValueError, match="stride must be >= 1, got 0"):
        F.conv2d(x, w, stride=0)
    with pytest.raises(ValueError, match="stride must be an int or a pair"):
        F.conv2d(x, w, stride=(1, 1, 1))
    with pytest.raises(ValueError, match="padding must be >= 0, got -1"):
        F.conv2d(x, w, padding=(0, -1))
    with pytest.raises(TypeError, match="padding must be an int"):
        F.conv2d(x, w, padding=1.5)
    with pytest.raises(TypeError, match="x must have a floating dtype.*int64"):
        F.conv2d(x.astype(np.int64), w)
    with pytest.raises(TypeError, match="weight must have a floating dtype.*object"):
        F.conv2d(x, w.astype(object))
    with pytest.raises(TypeError, match="x must be a floating numpy array"):
        F.conv2d("image", w)
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\).*got shape \(3,\)"):
        F.conv2d(x, w, np.zeros(3))
    with pytest.raises(TypeError, match="bias must have a floating dtype"):
        F.conv2d(x, w, np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="non-empty H x W"):
        F.conv2d(np.zeros((2, 3, 0, 5)), w, padding=2)
    with pytest.raises(ValueError, match="weight must have no zero-sized dimension"):
        F.conv2d(x, np.zeros((0, 3, 3, 3)))
    out, ctx = F.conv2d_forward(x, w)
    with pytest.raises(ValueError, match=r"grad_output must have the output's shape \(2, 4, 3, 3\), got shape \(2, 4, 3\)"):
        F.conv2d_backward(out[..., 0], ctx)
    with pytest.raises(TypeError, match="grad_output must have a floating dtype"):
        F.conv2d_backward(out.astype(int), ctx)


def test_conv_transpose2d_errors(backend):
    x, w = np.zeros((2, 3, 4, 4)), np.zeros((3, 2, 3, 3))
    with pytest.raises(ValueError, match=r"x must have 3 channels \(weight.shape\[0\]\)"):
        F.conv_transpose2d(x[:, :1], w)
    with pytest.raises(ValueError, match=r"output_padding must be smaller than stride \(2, 2\).*got \(2, 0\)"):
        F.conv_transpose2d(x, w, stride=2, output_padding=(2, 0))
    with pytest.raises(ValueError, match=r"output_padding must be smaller than stride \(1, 1\).*got \(1, 1\)"):
        F.conv_transpose2d(x, w, output_padding=1)
    with pytest.raises(ValueError, match="output_padding must be >= 0"):
        F.conv_transpose2d(x, w, stride=2, output_padding=-1)
    with pytest.raises(ValueError, match="output size must be positive, got"):
        F.conv_transpose2d(x[:, :, :1, :1], w, padding=2)
    with pytest.raises(ValueError, match=r"bias must have shape \(2,\)"):
        F.conv_transpose2d(x, w, np.zeros(3))
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        F.conv_transpose2d(x.astype(bool), w)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        F.conv_transpose2d(x, w, stride=(1, 0))
    out, ctx = F.conv_transpose2d_forward(x, w)
    with pytest.raises(ValueError, match="grad_output must have the output's shape"):
        F.conv_transpose2d_backward(out[:1], ctx)


def test_unfold_fold_errors(backend):
    x = np.zeros((2, 3, 5, 5))
    with pytest.raises(ValueError, match=r"x must be 4-D"):
        F.unfold(x[0], 2)
    with pytest.raises(ValueError, match="kernel_size must be >= 1, got 0"):
        F.unfold(x, 0)
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.unfold(x, 8, padding=1)
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        F.unfold(x.astype(np.int8), 2)
    cols = F.unfold(x, 2)
    with pytest.raises(ValueError, match=r"cols must be 3-D"):
        F.fold(cols[0], 5, 2)
    with pytest.raises(ValueError, match="cols.shape\\[1\\] must be a positive multiple of kH\\*kW = 4"):
        F.fold(cols[:, :5], 5, 2)
    with pytest.raises(ValueError, match=r"cols.shape\[2\] must be the number of window positions 5\*5 = 25"):
        F.fold(cols, 6, 2)
    with pytest.raises(ValueError, match="output_size must be >= 1"):
        F.fold(cols, (0, 5), 2)
    with pytest.raises(TypeError, match="cols must have a floating dtype"):
        F.fold(cols.astype(complex), 5, 2)
