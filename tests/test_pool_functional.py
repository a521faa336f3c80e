"""dlcore.functional pooling ops: torch oracle, finite differences, input layouts, errors."""
import numpy as np
import pytest
from helpers import assert_close, numeric_grad, requires_torch, torch

import dlcore
import dlcore.functional as F

GEOMETRIES = [
    # (N, C, H, W), kernel_size, stride, padding  (as passed to F / torch)
    ((2, 3, 8, 8), 2, None, 0),
    ((2, 3, 9, 7), 2, 2, 0),
    ((1, 2, 9, 9), 3, 2, 1),
    ((2, 1, 7, 6), (3, 2), (1, 2), (1, 1)),
    ((1, 2, 5, 5), 1, 3, 0),
    ((2, 2, 10, 9), 2, 3, 1),
    ((3, 4, 6, 6), 4, 1, 2),
]


def tied_input(shape, dtype, seed=0):
    return np.random.default_rng(seed).integers(-3, 4, shape).astype(dtype)


# ---- torch oracle ------------------------------------------------------------------------

@requires_torch
@pytest.mark.parametrize("shape,k,s,p", GEOMETRIES)
def test_max_pool_matches_torch(backend, dtype, shape, k, s, p):
    x = tied_input(shape, dtype)
    x[0, 0, 0, 0] = np.nan  # NaN propagates as the max, like torch
    out, idx, ctx = F.max_pool2d_forward(x, k, s, p)
    g = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    ot, it = torch.nn.functional.max_pool2d(xt, k, s, p, return_indices=True)
    ot.backward(torch.tensor(g))
    assert out.dtype == dtype and idx.dtype == np.int64
    np.testing.assert_array_equal(out, ot.detach().numpy())
    np.testing.assert_array_equal(idx, it.numpy())
    assert_close(F.max_pool2d_backward(g, ctx), xt.grad.numpy(), dtype)


@requires_torch
@pytest.mark.parametrize("shape,k,s,p", GEOMETRIES)
def test_avg_pool_matches_torch(backend, dtype, shape, k, s, p):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    out, ctx = F.avg_pool2d_forward(x, k, s, p)
    g = np.random.default_rng(1).standard_normal(out.shape).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    ot = torch.nn.functional.avg_pool2d(xt, k, s, p)
    ot.backward(torch.tensor(g))
    assert out.dtype == dtype
    assert_close(out, ot.detach().numpy(), dtype)
    assert_close(F.avg_pool2d_backward(g, ctx), xt.grad.numpy(), dtype)


@requires_torch
@pytest.mark.parametrize("shape,k,s,p", GEOMETRIES)
@pytest.mark.parametrize("size_form", ["default", "hw", "nchw"])
def test_max_unpool_matches_torch(backend, dtype, shape, k, s, p, size_form):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    pooled, idx = F.max_pool2d(x, k, s, p, return_indices=True)
    xt = torch.tensor(x)
    _, it = torch.nn.functional.max_pool2d(xt, k, s, p, return_indices=True)
    if size_form == "default":
        size = None
        kk = k if isinstance(k, tuple) else (k, k)
        ss = kk if s is None else (s if isinstance(s, tuple) else (s, s))
        pp = p if isinstance(p, tuple) else (p, p)
        default = [(pooled.shape[2 + d] - 1) * ss[d] - 2 * pp[d] + kk[d] for d in range(2)]
        if idx.max() >= default[0] * default[1]:
            # The default plane can be smaller than the pooled input's: both refuse.
            with pytest.raises(ValueError, match="indices must lie in"):
                F.max_unpool2d(pooled, idx, k, s, p)
            with pytest.raises(RuntimeError):
                torch.nn.functional.max_unpool2d(torch.tensor(pooled), it, k, s, p)
            return
    else:
        size = shape[2:] if size_form == "hw" else shape
    out, ctx = F.max_unpool2d_forward(pooled, idx, k, s, p, size)
    pt = torch.tensor(pooled, requires_grad=True)
    ot = torch.nn.functional.max_unpool2d(pt, it, k, s, p, size)
    np.testing.assert_array_equal(out, ot.detach().numpy())
    g = np.random.default_rng(2).standard_normal(out.shape).astype(dtype)
    ot.backward(torch.tensor(g))
    np.testing.assert_array_equal(F.max_unpool2d_backward(g, ctx), pt.grad.numpy())


# ---- finite differences (float64) --------------------------------------------------------

@pytest.mark.parametrize("shape,k,s,p", [GEOMETRIES[2], GEOMETRIES[3], ((1, 2, 4, 5), 2, None, 0)])
def test_max_pool_backward_finite_differences(backend, shape, k, s, p):
    rng = np.random.default_rng(0)
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.1  # distinct: no ties to flip
    out, _, ctx = F.max_pool2d_forward(x, k, s, p)
    g = rng.standard_normal(out.shape)
    numeric = numeric_grad(lambda z: float(np.sum(g * F.max_pool2d(z, k, s, p))), x.copy())
    np.testing.assert_allclose(F.max_pool2d_backward(g, ctx), numeric, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("shape,k,s,p", [GEOMETRIES[2], GEOMETRIES[3], GEOMETRIES[5]])
def test_avg_pool_backward_finite_differences(backend, shape, k, s, p):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    out, ctx = F.avg_pool2d_forward(x, k, s, p)
    g = rng.standard_normal(out.shape)
    numeric = numeric_grad(lambda z: float(np.sum(g * F.avg_pool2d(z, k, s, p))), x.copy())
    np.testing.assert_allclose(F.avg_pool2d_backward(g, ctx), numeric, rtol=1e-7, atol=1e-8)


# Non-overlapping windows: distinct indices. (With repeated indices only the last value
# reaches the output, yet the backward gathers for every element, as torch's does.)
@pytest.mark.parametrize("shape,k,s,p", [GEOMETRIES[1], ((1, 2, 6, 5), 3, 3, 1)])
def test_max_unpool_backward_finite_differences(backend, shape, k, s, p):
    rng = np.random.default_rng(0)
    pooled, idx = F.max_pool2d(rng.standard_normal(shape), k, s, p, return_indices=True)
    out, ctx = F.max_unpool2d_forward(pooled, idx, k, s, p, shape[2:])
    g = rng.standard_normal(out.shape)
    unpool = lambda z: F.max_unpool2d(z, idx, k, s, p, shape[2:])  # noqa: E731
    numeric = numeric_grad(lambda z: float(np.sum(g * unpool(z))), pooled.copy())
    np.testing.assert_allclose(F.max_unpool2d_backward(g, ctx), numeric, rtol=1e-7, atol=1e-8)


# ---- layouts, dtypes, threads ------------------------------------------------------------

LAYOUTS = {
    "read-only": lambda a: _read_only(a.copy()),
    "fortran": np.asfortranarray,
    "transposed": lambda a: np.ascontiguousarray(a.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2),
    "sliced": lambda a: np.repeat(a, 2, axis=3)[:, :, :, ::2],
}


def _read_only(a):
    a.setflags(write=False)
    return a


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layouts_equal_contiguous(backend, layout):
    x = tied_input((2, 3, 9, 8), np.float32)
    g = np.random.default_rng(1).standard_normal((2, 3, 4, 4)).astype(np.float32)
    xl, gl = LAYOUTS[layout](x), LAYOUTS[layout](g)
    x0, g0 = xl.copy(), gl.copy()
    np.testing.assert_array_equal(xl, x)
    out, idx, ctx = F.max_pool2d_forward(x, 2)
    outl, idxl, ctxl = F.max_pool2d_forward(xl, 2)
    np.testing.assert_array_equal(outl, out)
    np.testing.assert_array_equal(idxl, idx)
    np.testing.assert_array_equal(F.max_pool2d_backward(gl, ctxl), F.max_pool2d_backward(g, ctx))
    a, actx = F.avg_pool2d_forward(x, 3, 2, 1)
    al, actxl = F.avg_pool2d_forward(xl, 3, 2, 1)
    np.testing.assert_array_equal(al, a)
    ga = np.random.default_rng(2).standard_normal(a.shape).astype(np.float32)
    gal = LAYOUTS[layout](ga)
    np.testing.assert_array_equal(F.avg_pool2d_backward(gal, actxl), F.avg_pool2d_backward(ga, actx))
    np.testing.assert_array_equal(gal, ga)
    il = LAYOUTS[layout](idx)
    u, uctx = F.max_unpool2d_forward(g, idx, 2, output_size=(9, 8))
    ul, uctxl = F.max_unpool2d_forward(gl, il, 2, output_size=(9, 8))
    np.testing.assert_array_equal(ul, u)
    gx = LAYOUTS[layout](x)
    np.testing.assert_array_equal(F.max_unpool2d_backward(gx, uctxl), F.max_unpool2d_backward(x, uctx))
    # inputs untouched
    np.testing.assert_array_equal(xl, x0)
    np.testing.assert_array_equal(gl, g0)


def test_threads_equal_through_functional(backend, n_threads):
    # large enough for the functional layer to use the threads (see _MIN_PARALLEL_ELEMENTS)
    x = np.random.default_rng(0).standard_normal((4, 16, 32, 32)).astype(np.float32)
    out, idx, ctx = F.max_pool2d_forward(x, 3, 2, 1)
    grad = F.max_pool2d_backward(np.ones_like(out), ctx)
    with dlcore.use_backend("numpy"):
        ref_out, ref_idx, ref_ctx = F.max_pool2d_forward(x, 3, 2, 1)
        ref_grad = F.max_pool2d_backward(np.ones_like(out), ref_ctx)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(grad, ref_grad)


def test_dtypes(backend):
    x16 = tied_input((1, 2, 4, 4), np.float16)
    assert F.max_pool2d(x16, 2).dtype == np.float32  # float16 computes in float32
    x = tied_input((1, 2, 4, 4), np.float64)
    out, ctx = F.avg_pool2d_forward(x, 2)
    assert out.dtype == np.float64
    # grad_output of the other precision is cast to the forward's dtype
    assert F.avg_pool2d_backward(np.ones(out.shape, np.float32), ctx).dtype == np.float64


def test_unbatched_chw_input(backend):
    x = tied_input((3, 7, 6), np.float32)
    out, idx, ctx = F.max_pool2d_forward(x, 2)
    out4, idx4, ctx4 = F.max_pool2d_forward(x[None], 2)
    assert out.shape == (3, 3, 3) and idx.shape == (3, 3, 3)
    np.testing.assert_array_equal(out, out4[0])
    np.testing.assert_array_equal(idx, idx4[0])
    g = np.ones_like(out)
    np.testing.assert_array_equal(F.max_pool2d_backward(g, ctx), F.max_pool2d_backward(g[None], ctx4)[0])
    a, actx = F.avg_pool2d_forward(x, 3, 1, 1)
    assert a.shape == (3, 7, 6)
    assert F.avg_pool2d_backward(a, actx).shape == x.shape
    u, uctx = F.max_unpool2d_forward(out, idx, 2, output_size=(7, 6))
    assert u.shape == (3, 7, 6)
    assert F.max_unpool2d_backward(u, uctx).shape == out.shape
    with pytest.raises(ValueError, match="grad_output"):
        F.max_pool2d_backward(g[None], ctx)


def test_empty_batch(backend):
    x = np.zeros((0, 3, 4, 4), np.float32)
    out, idx, ctx = F.max_pool2d_forward(x, 2)
    assert out.shape == (0, 3, 2, 2) and idx.shape == (0, 3, 2, 2)
    assert F.max_pool2d_backward(out, ctx).shape == x.shape
    assert F.avg_pool2d(x, 2).shape == (0, 3, 2, 2)
    assert F.max_unpool2d(out, idx, 2).shape == (0, 3, 4, 4)


def test_return_indices_and_defaults(backend):
    x = tied_input((2, 2, 6, 6), np.float32)
    out = F.max_pool2d(x, 2)
    out2, idx = F.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(out, out2)
    np.testing.assert_array_equal(F.max_pool2d(x, (2, 2), (2, 2), (0, 0)), out)
    # default unpool size (H_in - 1) * stride - 2 * padding + kernel, as torch
    assert F.max_unpool2d(out, idx, 2).shape == (2, 2, 6, 6)
    assert F.max_unpool2d(out, idx, 2, stride=3).shape == (2, 2, 8, 8)


# ---- errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(kernel_size=3, padding=2), ValueError, "padding must be at most half"),
    (dict(kernel_size=(4, 2), padding=(2, 2)), ValueError, "padding must be at most half"),
    (dict(kernel_size=6), ValueError, "kernel_size"),
    (dict(kernel_size=0), ValueError, "kernel_size must be >= 1"),
    (dict(kernel_size=2, stride=0), ValueError, "stride must be >= 1"),
    (dict(kernel_size=2, padding=-1), ValueError, "padding must be >= 0"),
    (dict(kernel_size=1.5), TypeError, "kernel_size must be an int"),
    (dict(kernel_size=(2, 2, 2)), ValueError, "kernel_size must be an int or a pair"),
    (dict(kernel_size="2"), TypeError, "kernel_size"),
])
@pytest.mark.parametrize("op", ["max", "avg"])
def test_bad_geometry(kwargs, exc, match, op):
    x = np.zeros((1, 1, 5, 5), np.float32)
    fn = F.max_pool2d if op == "max" else F.avg_pool2d
    with pytest.raises(exc, match=match):
        fn(x, **kwargs)


@pytest.mark.parametrize("x,exc,match", [
    (np.zeros((1, 1, 4, 4), np.int64), TypeError, "floating dtype"),
    (np.zeros((1, 1, 4, 4), bool), TypeError, "floating dtype"),
    (np.zeros((4, 4), np.float32), ValueError, r"4-D \(N, C, H, W\)"),
    (np.zeros((1, 1, 1, 4, 4), np.float32), ValueError, "3-D or 4-D"),
    (np.zeros((1, 0, 4, 4), np.float32), ValueError, "non-zero C, H and W"),
    ("x", TypeError, "floating numpy array"),
])
@pytest.mark.parametrize("op", ["max", "avg"])
def test_bad_input(x, exc, match, op):
    fn = F.max_pool2d if op == "max" else F.avg_pool2d
    with pytest.raises(exc, match=match):
        fn(x, 2)


def test_bad_backward_arguments():
    x = np.zeros((1, 2, 4, 4), np.float32)
    _, _, mctx = F.max_pool2d_forward(x, 2)
    _, actx = F.avg_pool2d_forward(x, 2)
    with pytest.raises(ValueError, match=r"grad_output must have the forward output's shape \(1, 2, 2, 2\)"):
        F.max_pool2d_backward(np.zeros((1, 2, 2, 3), np.float32), mctx)
    with pytest.raises(ValueError, match="grad_output"):
        F.avg_pool2d_backward(np.zeros((2, 2), np.float32), actx)
    with pytest.raises(TypeError, match="grad_output must have a floating dtype"):
        F.max_pool2d_backward(np.zeros((1, 2, 2, 2), np.int32), mctx)
    with pytest.raises(TypeError, match="ctx must be the ctx returned by max_pool2d_forward"):
        F.max_pool2d_backward(np.zeros((1, 2, 2, 2), np.float32), actx)
    with pytest.raises(TypeError, match="ctx must be the ctx returned by avg_pool2d_forward"):
        F.avg_pool2d_backward(np.zeros((1, 2, 2, 2), np.float32), None)


def test_unpool_errors():
    x = np.ones((1, 1, 2, 2), np.float32)
    good = np.array([[[[0, 3], [8, 15]]]])
    assert F.max_unpool2d(x, good, 2).shape == (1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 16\).*got 16"):
        F.max_unpool2d(x, good + 1, 2)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 16\).*got -1"):
        F.max_unpool2d(x, good - 1, 2)
    with pytest.raises(ValueError, match="indices must lie in"):  # fits 5x5 but not 4x4
        F.max_unpool2d(x, np.array([[[[0, 0], [0, 20]]]]), 2)
    assert F.max_unpool2d(x, np.array([[[[0, 0], [0, 20]]]]), 2, output_size=(5, 5)).shape == (1, 1, 5, 5)
    with pytest.raises(TypeError, match="indices must have an integer dtype"):
        F.max_unpool2d(x, good.astype(np.float64), 2)
    with pytest.raises(TypeError, match="indices must be an integer numpy array"):
        F.max_unpool2d(x, [[[[0, 3], [8, 15]]]], 2)
    with pytest.raises(ValueError, match=r"indices must have x's shape \(1, 1, 2, 2\)"):
        F.max_unpool2d(x, good[..., :1], 2)
    with pytest.raises(ValueError, match="output_size must lie strictly between"):
        F.max_unpool2d(x, good, 2, output_size=(6, 4))
    with pytest.raises(ValueError, match="output_size must lie strictly between"):
        F.max_unpool2d(x, good, 2, output_size=(2, 4))
    with pytest.raises(ValueError, match=r"output_size must be \(OH, OW\) or \(N, C, OH, OW\)"):
        F.max_unpool2d(x, good, 2, output_size=(1, 4, 4))
    with pytest.raises(ValueError, match="unpooled size"):
        F.max_unpool2d(np.ones((1, 1, 1, 1), np.float32), np.zeros((1, 1, 1, 1), np.int64), 2, padding=1)
    _, ctx = F.max_unpool2d_forward(x, good, 2)
    with pytest.raises(ValueError, match="grad_output"):
        F.max_unpool2d_backward(np.zeros((1, 1, 2, 2), np.float32), ctx)


def test_saved_indices_cannot_change(backend):
    """The backward kernels index with saved indices unchecked: callers cannot alter them."""
    x = tied_input((2, 3, 6, 6), np.float32)
    out, idx, ctx = F.max_pool2d_forward(x, 2)
    with pytest.raises(ValueError, match="read-only"):
        idx[...] = 10**9
    with pytest.raises(ValueError):
        idx.setflags(write=True)
    mine = np.array(idx)  # a writable copy, given to unpool
    u, uctx = F.max_unpool2d_forward(out, mine, 2)
    expected = F.max_unpool2d_backward(u, uctx)
    mine[...] = 10**9  # after the forward: the ctx holds its own copy
    np.testing.assert_array_equal(F.max_unpool2d_backward(u, uctx), expected)
    np.testing.assert_array_equal(expected, out)
