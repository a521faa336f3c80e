"""The norm_* kernels (src/dlcore/norm.pyx and its NumPy twin) and the batch/instance norm ops on them.

Twin against compiled on hypothesis shapes, bitwise thread invariance at 1/2/3 threads,
finite differences in float64 and torch as the oracle (training and eval, running stats).
"""
import warnings

import numpy as np
import pytest
from helpers import assert_close, numeric_grad, requires_torch, torch
from hypothesis import given
from hypothesis import strategies as st

import dlcore

BACKENDS = dlcore.available_backends()
from dlcore import backends
from dlcore import functional as F

COMPILED = "cython" in BACKENDS
needs_compiled = pytest.mark.skipif(not COMPILED, reason="compiled backend not built")

shapes = st.tuples(st.integers(0, 5), st.integers(1, 5), st.integers(0, 19))  # (N, C, L)


def _inputs(shape, per_plane, dtype, seed):
    rng = np.random.default_rng(seed)
    n, c, _ = shape
    rows = n if per_plane else 1
    x = (3 + 2 * rng.standard_normal(shape)).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    shift = rng.standard_normal((rows, c))
    coef = [rng.standard_normal((rows, c)).astype(dtype) for _ in range(3)]
    return x, g, shift, coef


def _run_all(kernels, x, g, shift, coef, n_threads):
    rows, c = shift.shape
    s = [np.empty((rows, c)) for _ in range(4)]
    kernels.norm_moments(x, shift, s[0], s[1], n_threads)
    kernels.norm_grad_sums(g, x, shift, s[2], s[3], n_threads)
    y = np.full_like(x, np.nan)
    kernels.norm_affine_forward(x, coef[0], coef[1], y, n_threads)
    d = np.full_like(x, np.nan)
    kernels.norm_affine_backward(g, x, coef[0], coef[1], coef[2], d, n_threads)
    return s + [y, d]


@needs_compiled
@given(shape=shapes, per_plane=st.booleans(), f64=st.booleans(), seed=st.integers(0, 2**16))
def test_compiled_matches_twin(shape, per_plane, f64, seed):
    dtype = np.float64 if f64 else np.float32
    x, g, shift, coef = _inputs(shape, per_plane, dtype, seed)
    want = _run_all(backends.backend("numpy"), x, g, shift, coef, 1)
    got = _run_all(backends.backend("cython"), x, g, shift, coef, 2)
    for name, a, b in zip(["sum1", "sum2", "sum_g", "sum_gx"], got[:4], want[:4]):
        # float64 sums of the same values in another order
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(b).max(initial=0)), err_msg=name)
    assert_close(got[4], want[4], dtype, err_msg="affine forward")
    assert_close(got[5], want[5], dtype, err_msg="affine backward")


@needs_compiled
@pytest.mark.parametrize("shape", [(1, 3, 37), (2, 5, 1), (9, 4, 30), (64, 7, 1), (3, 2, 0), (0, 3, 4)])
@pytest.mark.parametrize("per_plane", [True, False])
def test_compiled_bitwise_thread_invariant(shape, per_plane, dtype):
    x, g, shift, coef = _inputs(shape, per_plane, dtype, 1)
    cy = backends.backend("cython")
    ref = _run_all(cy, x, g, shift, coef, 1)
    for n_threads in (2, 3):
        for a, b in zip(_run_all(cy, x, g, shift, coef, n_threads), ref):
            np.testing.assert_array_equal(a, b)


def _bn_all(x, g, training, instance):
    c = x.shape[1]
    w = np.linspace(0.5, 2, c).astype(x.dtype)
    b = np.linspace(-1, 1, c).astype(x.dtype)
    rm, rv = np.linspace(-0.5, 0.5, c).astype(x.dtype), np.linspace(0.5, 1.5, c).astype(x.dtype)
    if instance:
        y, ctx = F.instance_norm_forward(x, rm, rv, w, b, use_input_stats=training, momentum=0.2)
        return (y, *F.instance_norm_backward(g, ctx), rm, rv)
    y, ctx = F.batch_norm_forward(x, rm, rv, w, b, training=training, momentum=0.2)
    return (y, *F.batch_norm_backward(g, ctx), rm, rv)


def _with_instance(shapes):
    """(shape, instance) pairs: batch norm on every shape, instance norm where it has spatial dims."""
    return [(shape, False) for shape in shapes] + [(shape, True) for shape in shapes if len(shape) >= 3]


@needs_compiled
@pytest.mark.parametrize("shape, instance", _with_instance([(64, 16, 8, 8), (3, 4, 50), (300, 5), (1, 3, 40, 40),
                                                               (2, 8, 64, 64)]))
@pytest.mark.parametrize("training", [True, False])
def test_ops_bitwise_thread_invariant(shape, training, instance, dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    previous = dlcore.get_num_threads()
    results = []
    try:
        with dlcore.use_backend("cython"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # 3 threads on 2 cores
            for n_threads in (1, 2, 3):
                dlcore.set_num_threads(n_threads)
                results.append(_bn_all(x, g, training, instance))
    finally:
        dlcore.set_num_threads(previous)
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            np.testing.assert_array_equal(a, b)


def test_large_shapes_go_parallel():
    # the thread-invariance shapes above include work over the serial threshold
    assert 2 * 8 * 64 * 64 >= backends.threads.SERIAL_BELOW["norm"]


@pytest.mark.parametrize("shape, instance", _with_instance([(4, 3), (3, 2, 5), (2, 3, 3, 2)]))
@pytest.mark.parametrize("training", [True, False])
def test_functional_gradcheck_float64(backend, shape, training, instance):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape) * 2 + 1
    g = rng.standard_normal(shape)
    c = shape[1]
    w, b = rng.uniform(0.5, 2, c), rng.standard_normal(c)
    stats = rng.standard_normal(c), rng.uniform(0.5, 2, c)

    def forward(x_, w_=w, b_=b):
        rm, rv = stats[0].copy(), stats[1].copy()
        if instance:
            return F.instance_norm_forward(x_, rm, rv, w_, b_, use_input_stats=training)
        return F.batch_norm_forward(x_, rm, rv, w_, b_, training=training)

    y, ctx = forward(x)
    backward = F.instance_norm_backward if instance else F.batch_norm_backward
    gx, gw, gb = backward(g, ctx)
    assert_close(gx, numeric_grad(lambda v: float((forward(v)[0] * g).sum()), x.copy()), scale=1e4)
    assert_close(gw, numeric_grad(lambda v: float((forward(x, v, b)[0] * g).sum()), w.copy()), scale=1e4)
    assert_close(gb, numeric_grad(lambda v: float((forward(x, w, v)[0] * g).sum()), b.copy()), scale=1e4)


@requires_torch
@given(n=st.integers(2, 6), c=st.integers(1, 4), spatial=st.lists(st.integers(1, 5), min_size=0, max_size=2),
       training=st.booleans(), instance=st.booleans(), affine=st.booleans(), seed=st.integers(0, 2**16))
def test_matches_torch(n, c, spatial, training, instance, affine, seed):
    shape = (n, c, *spatial)
    length = int(np.prod(spatial)) if spatial else 1
    if instance and (not spatial or (training and length < 2)):
        return  # torch and dlcore both refuse these
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3 + 2
    g = rng.standard_normal(shape)
    w, b = (rng.uniform(0.5, 2, c), rng.standard_normal(c)) if affine else (None, None)
    rm, rv = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    for name in BACKENDS:
        with dlcore.use_backend(name):
            rm_d, rv_d = rm.copy(), rv.copy()
            if instance:
                y, ctx = F.instance_norm_forward(x, rm_d, rv_d, w, b, use_input_stats=training, momentum=0.3)
                gx, gw, gb = F.instance_norm_backward(g, ctx)
            else:
                y, ctx = F.batch_norm_forward(x, rm_d, rv_d, w, b, training=training, momentum=0.3)
                gx, gw, gb = F.batch_norm_backward(g, ctx)
        tx = torch.tensor(x, requires_grad=True)
        tw = torch.tensor(w, requires_grad=True) if affine else None
        tb = torch.tensor(b, requires_grad=True) if affine else None
        trm, trv = torch.tensor(rm), torch.tensor(rv)
        if instance:
            ty = torch.nn.functional.instance_norm(tx, trm, trv, tw, tb, use_input_stats=training, momentum=0.3)
        else:
            ty = torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, training=training, momentum=0.3)
        ty.backward(torch.tensor(g))
        assert_close(y, ty.detach().numpy(), err_msg=f"{name} output")
        assert_close(gx, tx.grad.numpy(), scale=10, err_msg=f"{name} grad_input")
        assert_close(rm_d, trm.numpy(), err_msg=f"{name} running_mean")
        assert_close(rv_d, trv.numpy(), err_msg=f"{name} running_var")
        if affine:
            assert_close(gw, tw.grad.numpy(), scale=10, err_msg=f"{name} grad_weight")
            assert_close(gb, tb.grad.numpy(), err_msg=f"{name} grad_bias")
        else:
            assert gw is None and gb is None
