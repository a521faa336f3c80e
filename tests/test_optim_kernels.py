"""Optimizer kernels: hand-computed steps, compiled == NumPy twin, thread-count invariance."""
import numpy as np
import pytest
from helpers import assert_close
from hypothesis import given, settings
from hypothesis import strategies as st

import dlcore
from dlcore import backends

OPTIM_KERNELS = backends.KERNELS["optim"]
HAS_CYTHON = "cython" in dlcore.available_backends()
requires_cython = pytest.mark.skipif(not HAS_CYTHON, reason="compiled backend not built")
CHUNK = 16384  # src/dlcore/optim.pyx's _CHUNK: sizes around its multiples cross task borders


# ---- 1. tiny hand-computed cases -----------------------------------------------------------

def test_sgd_momentum_by_hand(backend, dtype):
    be = backends.kernels()
    p = np.array([1.0, 2.0], dtype)
    g = np.array([0.5, -1.0], dtype)
    buf = np.zeros(2, dtype)
    be.sgd_step(p, g, buf, 0.1, 0.9, 0.0, 0.0, False, True, 1)  # first step: buf = g
    assert_close(buf, [0.5, -1.0], dtype)
    assert_close(p, [0.95, 2.1], dtype)
    be.sgd_step(p, g, buf, 0.1, 0.9, 0.0, 0.0, False, False, 1)  # buf = 0.9 buf + g = 1.9 g
    assert_close(buf, [0.95, -1.9], dtype)
    assert_close(p, [0.855, 2.29], dtype)


def test_adam_first_step_by_hand(backend, dtype):
    # Step 1: m_hat = g and v_hat = g^2, so theta moves by lr * g / (|g| + eps) ~ lr * sign(g).
    be = backends.kernels()
    p0 = np.array([1.0, -1.0, 0.5])
    g = np.array([0.5, -2.0, 0.25], dtype)
    p = p0.astype(dtype)
    m, v = np.zeros(3, dtype), np.zeros(3, dtype)
    be.adam_step(p, g, m, v, np.zeros(0, dtype), 0.1, 0.9, 0.999, 1e-8, 0.0, False, 1.0, 1)
    assert_close(m, 0.1 * g, dtype)
    assert_close(v, 0.001 * g * g, dtype)
    assert_close(p, p0 - 0.1 * g / (np.abs(g) + 1e-8), dtype)


def test_adagrad_and_rmsprop_by_hand(backend):
    be = backends.kernels()
    p, g, s = np.array([1.0]), np.array([2.0]), np.array([5.0])
    be.adagrad_step(p, g, s, 0.3, 0.5, 0.0, 0.0, 3.0, 1)  # lr_t = 0.3 / (1 + 2 * 0.5) = 0.15
    assert_close(s, [9.0])
    assert_close(p, [1.0 - 0.15 * 2.0 / 3.0])
    p, sq, ga = np.array([1.0]), np.array([4.0]), np.array([1.0])
    be.rmsprop_step(p, g, sq, ga, np.zeros(0), 0.1, 0.5, 0.0, 0.0, 0.0, True, 1)
    assert_close(sq, [0.5 * 4 + 0.5 * 4])          # 4
    assert_close(ga, [0.5 * 1 + 0.5 * 2])          # 1.5
    assert_close(p, [1.0 - 0.1 * 2.0 / np.sqrt(4.0 - 1.5**2)])


def test_adamw_decays_before_the_step(backend):
    be = backends.kernels()
    p, g = np.array([2.0]), np.array([0.0])
    m, v = np.zeros(1), np.zeros(1)
    be.adamw_step(p, g, m, v, np.zeros(0), 0.1, 0.9, 0.999, 1e-8, 0.5, False, 1.0, 1)
    assert_close(p, [2.0 * (1 - 0.1 * 0.5)])  # zero gradient: only the decoupled decay acts


def test_amsgrad_keeps_the_maximum_and_propagates_nan(backend):
    be = backends.kernels()
    p, g = np.zeros(3), np.zeros(3)
    m, v = np.zeros(3), np.array([1.0, 4.0, np.nan])
    vmax = np.array([2.0, 3.0, 1.0])
    be.adam_step(p, g, m, v, vmax, 0.1, 0.9, 0.5, 1e-8, 0.0, True, 1.0, 1)
    np.testing.assert_array_equal(vmax[:2], [2.0, 3.0])  # v became [0.5, 2.0]
    assert np.isnan(vmax[2]) and np.isnan(p[2])


# ---- 2./3. compiled == twin on drawn sizes and hyperparameters ----------------------------

def make_case(name, n, dtype, rng):
    """Arrays and scalars for one call of kernel ``name`` (without n_threads)."""
    def arr(scale=1.0):
        return (scale * rng.standard_normal(n)).astype(dtype)

    def pos():
        return (np.abs(rng.standard_normal(n)) + 0.01).astype(dtype)

    def coin():
        return bool(rng.integers(2))

    empty = np.zeros(0, dtype)
    lr = float(rng.uniform(0, 1))
    wd = float(rng.uniform(0, 0.1)) if coin() else 0.0
    eps = float(10 ** rng.uniform(-10, -3))
    if name == "sgd_step":
        momentum = float(rng.uniform(0, 0.99)) if coin() else 0.0
        nesterov = momentum > 0 and coin()
        dampening = 0.0 if nesterov else float(rng.uniform(0, 1))
        buf = arr() if momentum else empty
        return [arr(), arr(), buf], (lr, momentum, dampening, wd, nesterov, coin())
    if name == "adagrad_step":
        return [arr(), arr(), pos()], (lr, float(rng.uniform(0, 0.1)), wd, eps, float(rng.integers(1, 100)))
    if name == "rmsprop_step":
        centered, momentum = coin(), (float(rng.uniform(0, 0.99)) if coin() else 0.0)
        grad_avg = arr(0.1) if centered else empty
        square_avg = (grad_avg * grad_avg + pos()).astype(dtype) if centered else pos()
        buf = arr() if momentum > 0 else empty
        alpha = float(rng.uniform(0, 0.999))  # 1 - alpha on both sides of torch's lerp switch at 0.5
        return [arr(), arr(), square_avg, grad_avg, buf], (lr, alpha, eps, wd, momentum, centered)
    amsgrad = coin()
    v = pos()
    vmax = (v + pos() * dtype(coin())).astype(dtype) if amsgrad else empty
    betas = float(rng.uniform(0, 0.99)), float(rng.uniform(0.5, 0.9999))
    return [arr(), arr(), arr(0.1), v, vmax], (lr * 0.01, *betas, eps, wd, amsgrad, float(rng.integers(1, 1000)))


def run(backend_name, name, arrays, scalars, n_threads):
    out = [a.copy() for a in arrays]
    grad = out[1]
    grad.flags.writeable = False  # kernels only read the gradient
    getattr(backends.backend(backend_name), name)(*out, *scalars, n_threads)
    return out


SIZES = st.integers(0, 300) | st.sampled_from([CHUNK - 1, CHUNK, 2 * CHUNK, 2 * CHUNK + 5, 3 * CHUNK + 257])


@requires_cython
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", OPTIM_KERNELS)
@settings(max_examples=25)
@given(n=SIZES, seed=st.integers(0, 2**32 - 1), n_threads=st.sampled_from([1, 2]))
def test_compiled_matches_twin(name, dtype, n, seed, n_threads):
    arrays, scalars = make_case(name, n, dtype, np.random.default_rng(seed))
    expected = run("numpy", name, arrays, scalars, 1)
    actual = run("cython", name, arrays, scalars, n_threads)
    for which, (a, e) in enumerate(zip(actual, expected)):
        assert_close(a, e, dtype, err_msg=f"{name} array {which}, scalars {scalars}")
    np.testing.assert_array_equal(actual[1], arrays[1])  # grad untouched


@requires_cython
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", OPTIM_KERNELS)
def test_thread_count_invariance_is_bitwise(name, dtype):
    rng = np.random.default_rng(7)
    arrays, scalars = make_case(name, 3 * CHUNK + 1001, dtype, rng)
    one = run("cython", name, arrays, scalars, 1)
    for n_threads in (2, 3):
        for a, b in zip(one, run("cython", name, arrays, scalars, n_threads)):
            np.testing.assert_array_equal(a, b)


@requires_cython
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", ["adagrad_step", "rmsprop_step", "adam_step", "adamw_step"])
def test_square_roots_bitwise_on_every_instruction_set(name, dtype):
    """The square-root rules take their roots 16/8 at a time with AVX-512F or AVX when the
    CPU has them, else with SSE2 (a run-time choice): the SSE2-only run gives the same bits,
    on a size with ragged vector tails."""
    from dlcore.backends.cython_kernels import optim as mod

    arrays, scalars = make_case(name, 2 * CHUNK + 263, dtype, np.random.default_rng(11))
    best = run("cython", name, arrays, scalars, 2)
    mod._set_isa(False)
    try:
        sse2 = run("cython", name, arrays, scalars, 2)
    finally:
        mod._set_isa(True)
    for a, b in zip(best, sse2):
        np.testing.assert_array_equal(a, b)


@requires_cython
@pytest.mark.parametrize("name", OPTIM_KERNELS)
def test_several_steps_agree(name):
    # State written by one step is read by the next: run both backends five steps.
    rng = np.random.default_rng(3)
    arrays, scalars = make_case(name, 1000, np.float64, rng)
    ours = [a.copy() for a in arrays]
    twin = [a.copy() for a in arrays]
    for _ in range(5):
        getattr(backends.backend("cython"), name)(*ours, *scalars, 2)
        getattr(backends.backend("numpy"), name)(*twin, *scalars, 1)
    for a, b in zip(ours, twin):
        assert_close(a, b, np.float64)


@requires_cython
def test_compiled_rejects_wrong_state_sizes():
    cy = backends.backend("cython")
    p, g = np.zeros(4), np.zeros(4)
    with pytest.raises(ValueError, match="exp_avg_sq must have 4 elements"):
        cy.adam_step(p, g, np.zeros(4), np.zeros(3), np.zeros(0), 0.1, 0.9, 0.99, 1e-8, 0.0, False, 1.0, 1)
    with pytest.raises(ValueError, match="max_exp_avg_sq"):
        cy.adamw_step(p, g, np.zeros(4), np.zeros(4), np.zeros(0), 0.1, 0.9, 0.99, 1e-8, 0.0, True, 1.0, 1)
    with pytest.raises(ValueError, match="grad must have 4"):
        cy.sgd_step(p, np.zeros(5), np.zeros(0), 0.1, 0.0, 0.0, 0.0, False, False, 1)
    with pytest.raises(ValueError, match="momentum_buffer"):
        cy.rmsprop_step(p, g, np.zeros(4), np.zeros(0), np.zeros(0), 0.1, 0.9, 1e-8, 0.0, 0.5, False, 1)
    with pytest.raises(ValueError, match="state_sum"):
        cy.adagrad_step(p, g, np.zeros(2), 0.1, 0.0, 0.0, 1e-10, 1.0, 1)


@requires_cython
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("wd", [0.0, 0.01])
@pytest.mark.parametrize("first", [True, False])
def test_sgd_every_specialized_loop_matches_twin(momentum, nesterov, wd, first, dtype):
    # optim.pyx runs a separate loop per flag combination (literal flags vectorize): each one here.
    rng = np.random.default_rng(3)
    n = 2 * CHUNK + 37
    buf = rng.standard_normal(n).astype(dtype) if momentum else np.zeros(0, dtype)
    arrays = [rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype), buf]
    scalars = (0.1, momentum, 0.0 if nesterov else 0.25, wd, nesterov, first)
    expected = run("numpy", "sgd_step", arrays, scalars, 1)
    for n_threads in (1, 2):
        for a, e in zip(run("cython", "sgd_step", arrays, scalars, n_threads), expected):
            assert_close(a, e, dtype)
