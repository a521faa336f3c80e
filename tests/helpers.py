"""Helpers shared by the test files: tolerances, the torch oracle, finite differences.

Test files import this as a plain module (``from helpers import assert_close``; pytest's
``pythonpath`` setting puts ``tests/`` on ``sys.path``), never ``conftest`` or another
test file, so the suite also runs under ``--import-mode=importlib``. Fixtures live in
``conftest.py``.
"""
import importlib.util

import numpy as np
import pytest

import dlcore

RTOL = {np.float32: 1e-5, np.float64: 1e-10}
ATOL = {np.float32: 1e-6, np.float64: 1e-12}


def assert_close(actual, expected, dtype=np.float64, scale=1.0, err_msg=""):
    """Compare with the dtype's tolerance table (scale loosens it for long reductions)."""
    dtype = np.dtype(dtype).type
    np.testing.assert_allclose(
        actual, expected, rtol=RTOL[dtype] * scale, atol=ATOL[dtype] * scale, err_msg=err_msg
    )


# ---- the torch oracle ----------------------------------------------------------------------------
torch = None
try:  # CI installs it, so the oracle tests run there (and DLCORE_REQUIRE_ORACLE=1 checks they did)
    import torch  # noqa: F811

    torch.set_num_threads(2)
except ImportError:
    pass

# Marks a test that compares against torch. conftest.py skips it when torch is absent, and
# marks every test whose code mentions ``torch`` automatically, so forgetting it is harmless.
requires_torch = pytest.mark.torch

HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None
requires_sklearn = pytest.mark.skipif(not HAVE_SKLEARN, reason="scikit-learn is not installed")


def tdtype(dtype):
    """The torch dtype matching a NumPy floating dtype."""
    return torch.float64 if dtype == np.float64 else torch.float32


def torch_state(module):
    """A torch module's state dict as NumPy arrays (for ``load_state_dict``)."""
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


# ---- finite differences --------------------------------------------------------------------------
def numeric_grad(f, x, eps=1e-6):
    """dF/dx by central differences, F = f(x) a scalar.

    For functional ops (modules use :func:`dlcore.gradcheck`). ``x`` is perturbed in place,
    entry by entry, and restored, so ``f`` may also read ``x`` through a closure.
    """
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


def layer_gradcheck(layer, *inputs, atol=1e-6, rtol=1e-5, seed=0):
    """:func:`dlcore.gradcheck` at layer-test tolerances; returns the analytic gradients.

    After the check, one forward and backward with the same seeded upstream gradient give
    the gradients (floating inputs first, then parameters) for callers' extra assertions.
    """
    assert dlcore.gradcheck(layer, *inputs, atol=atol, rtol=rtol, seed=seed)
    inputs = [np.array(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else a for a in inputs]
    out = layer(*inputs)
    out = out[0] if isinstance(out, tuple) else out
    layer.zero_grad()
    grads = layer.backward(np.random.default_rng(seed).standard_normal(out.shape))
    grads = list(grads) if isinstance(grads, tuple) else [grads]
    return grads + [p.grad.copy() for _, p in layer.named_parameters()]
