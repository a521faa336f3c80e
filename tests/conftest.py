"""Shared fixtures: every kernel and layer test runs on every backend, dtype and thread count."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import dlcore
from dlcore import backends

# Compiled first calls and hypothesis' shrinking are slow on a shared 2-core machine.
settings.register_profile(
    "dlcore", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("ci", parent=settings.get_profile("dlcore"), max_examples=60)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dlcore"))

RTOL = {np.float32: 1e-5, np.float64: 1e-10}
ATOL = {np.float32: 1e-6, np.float64: 1e-12}

BACKENDS = dlcore.available_backends()
if os.environ.get("DLCORE_REQUIRE_COMPILED") == "1":
    assert "cython" in BACKENDS, f"compiled backend missing: {backends.compiled_import_error}"


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run the test body with each backend active; yields the backend's name."""
    with dlcore.use_backend(request.param):
        yield request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


@pytest.fixture(params=[1, 2], ids=["1thr", "2thr"])
def n_threads(request):
    previous = dlcore.get_num_threads()
    dlcore.set_num_threads(request.param)
    yield request.param
    dlcore.set_num_threads(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed():
    dlcore.manual_seed(0)


def assert_close(actual, expected, dtype=np.float64, scale=1.0, err_msg=""):
    """Compare with the dtype's tolerance table (scale loosens it for long reductions)."""
    dtype = np.dtype(dtype).type
    np.testing.assert_allclose(
        actual, expected, rtol=RTOL[dtype] * scale, atol=ATOL[dtype] * scale, err_msg=err_msg
    )


torch = None
try:  # the oracle; CI installs it, so these tests run there
    import torch  # noqa: F811

    torch.set_num_threads(2)
except ImportError:
    pass

requires_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


@pytest.fixture
def one_thread():
    """Run dlcore's kernels and torch with one thread (layer tests use it: thread-count
    invariance is the kernel tests' subject, and on a loaded machine each 2-thread OpenMP
    region on tiny arrays costs ~10x more: 8.7 ms vs 0.67 ms per small Conv2d forward)."""
    previous = dlcore.get_num_threads(), torch.get_num_threads() if torch is not None else None
    dlcore.set_num_threads(1)
    if torch is not None:
        torch.set_num_threads(1)
    yield
    dlcore.set_num_threads(previous[0])
    if torch is not None:
        torch.set_num_threads(previous[1])


def numeric_grad(f, x, eps=1e-6):
    """dF/dx by central differences, F = f(x) a scalar; x is perturbed in place and restored."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        hi = f(x)
        x[i] = old - eps
        lo = f(x)
        x[i] = old
        grad[i] = (hi - lo) / (2 * eps)
    return grad


def pytest_collection_finish(session):
    """CI sets DLCORE_MIN_TESTS: collecting fewer tests than that means a broken suite, not a green one."""
    minimum = int(os.environ.get("DLCORE_MIN_TESTS", "0"))
    if len(session.items) < minimum:
        raise pytest.UsageError(f"collected only {len(session.items)} tests, expected at least {minimum}")


@pytest.fixture(autouse=True)
def _exact_threads():
    """Tests run exactly the threads they set: no reduction on a busy machine
    (dlcore.backends.threads.DYNAMIC; tests/test_threads.py tests that rule itself)."""
    from dlcore.backends import threads

    previous, threads.DYNAMIC = threads.DYNAMIC, False
    yield
    threads.DYNAMIC = previous
