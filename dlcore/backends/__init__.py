"""The kernel registry: which kernels exist, who computes them, with how many threads.

Every hot loop of dlcore is a *kernel* with one name and two implementations of the same
signature and semantics:

* ``numpy``  -- :mod:`dlcore.backends.numpy_kernels`, short vectorized NumPy written to be
  read next to the math. Always there; it is the specification.
* ``cython`` -- :mod:`dlcore.backends.cython_kernels`, compiled from ``src/dlcore/*.pyx``
  with OpenMP. The default whenever it imports.

Contract for every kernel (both backends):

* arguments are already validated by the caller (``dlcore.functional`` / ``dlcore.optim``):
  C-contiguous arrays of one floating dtype, sizes computed, outputs allocated;
* results go into ``out`` arrays given by the caller (or are returned, as documented per
  kernel), and the last argument is always ``n_threads`` (ignored by the NumPy twin);
* results do not depend on ``n_threads`` beyond float rounding.
"""
import contextlib
import os
import warnings

from . import numpy_kernels


# One tuple of kernel names per compiled stem (src/dlcore/<stem>.pyx). Both backends
# must provide every name; tests/test_backends.py checks names and signatures.
KERNELS = {
    "conv": (
        "im2col",
        "col2im",
        "conv2d_forward",
        "conv2d_backward",
        "conv_transpose2d_forward",
        "conv_transpose2d_backward",
    ),
    "pool": (
        "max_pool2d_forward",
        "max_pool2d_backward",
        "avg_pool2d_forward",
        "avg_pool2d_backward",
        "max_unpool2d_forward",
        "max_unpool2d_backward",
    ),
    "activation": (
        "relu_forward",
        "relu_backward",
        "leaky_relu_forward",
        "leaky_relu_backward",
        "sigmoid_forward",
        "sigmoid_backward",
        "tanh_forward",
        "tanh_backward",
        "silu_forward",
        "silu_backward",
        "softmax_forward",
        "softmax_backward",
        "log_softmax_forward",
        "log_softmax_backward",
        "softmax_cross_entropy_forward",
        "softmax_cross_entropy_backward",
    ),
    "optim": (
        "sgd_step",
        "adagrad_step",
        "rmsprop_step",
        "adam_step",
        "adamw_step",
    ),
    "norm": (
        "norm_moments",
        "norm_grad_sums",
        "norm_affine_forward",
        "norm_affine_backward",
    ),
}
KERNEL_NAMES = tuple(name for names in KERNELS.values() for name in names)


class Backend:
    """A named set of kernels: ``backend.im2col(...)`` and so on."""

    def __init__(self, name, namespace, openmp):
        self.name = name
        self.openmp = openmp
        for kernel in KERNEL_NAMES:
            # A missing kernel raises when called; tests/test_backends.py requires none missing.
            setattr(self, kernel, getattr(namespace, kernel, None) or _missing_kernel(kernel, name))

    def __repr__(self):
        return f"<dlcore backend {self.name!r}>"


def _missing_kernel(name, backend):
    def missing(*args, **kwargs):
        raise NotImplementedError(f"kernel {name!r} is not built in the {backend!r} backend")

    missing.__name__ = name
    return missing


def _load_cython():
    """The compiled backend, or (None, reason) when it cannot be used; the reason ends with one fix."""
    try:
        from . import cython_kernels
    except ImportError as exc:  # no compiler at install time, a broken build, ...
        return None, _why_not_compiled(exc)
    missing = [k for k in KERNEL_NAMES if not hasattr(cython_kernels, k)]
    if missing:
        if os.environ.get("DLCORE_PARTIAL_BACKEND") != "1":
            return None, f"the compiled extension lacks kernels {missing}"
        # Developers building one stem at a time: missing kernels raise when called.
    return Backend("cython", cython_kernels, cython_kernels.compiled_info()["openmp"]), None


def _why_not_compiled(exc):
    here = os.path.dirname(os.path.abspath(__file__))
    package_root = os.path.dirname(here)
    source_root = os.path.dirname(package_root)
    if os.path.exists(os.path.join(source_root, "src", "dlcore", "conv.pyx")):
        return (f"dlcore was imported from its source tree ({package_root}), whose extensions are not "
                f"built ({type(exc).__name__}: {exc}); build them in place: "
                f"cd {source_root} && python setup.py build_ext --inplace")
    try:  # left by setup.py when the install had no working C compiler
        with open(os.path.join(here, "cython_kernels", "NOT_BUILT.txt"), encoding="utf-8") as fh:
            note = fh.read().strip()
    except OSError:
        note = f"{type(exc).__name__}: {exc}"
    return f"{note}; install a working C compiler, then reinstall dlcore from its source folder"


_backends = {"numpy": Backend("numpy", numpy_kernels, openmp=False)}
_cython, compiled_import_error = _load_cython()
if _cython is not None:
    _backends["cython"] = _cython
elif os.environ.get("DLCORE_REQUIRE_COMPILED") == "1":
    raise ImportError(f"DLCORE_REQUIRE_COMPILED=1 but dlcore's compiled kernels are unusable: {compiled_import_error}")
else:
    warnings.warn(
        f"dlcore: compiled kernels unavailable, using the NumPy backend: {compiled_import_error}",
        RuntimeWarning,
        stacklevel=2,
    )


def available_backends():
    """Names of the usable backends, the default first."""
    return sorted(_backends, key=lambda name: name != "cython")


def _check_name(name):
    if name not in _backends:
        raise ValueError(f"backend must be one of {available_backends()}, got {name!r}")
    return name


def _default_backend():
    """DLCORE_BACKEND if it names a usable backend; else a warning and the default (import never fails)."""
    wanted = os.environ.get("DLCORE_BACKEND", "").strip()
    if wanted and wanted not in _backends:
        warnings.warn(f"ignoring DLCORE_BACKEND={wanted!r}: expected one of {available_backends()}; "
                      f"using {available_backends()[0]!r}", RuntimeWarning, stacklevel=3)
        wanted = ""
    return wanted or available_backends()[0]


_active = _default_backend()


def set_backend(name):
    """Make ``name`` (``"cython"`` or ``"numpy"``) the backend for every later kernel call."""
    global _active
    _active = _check_name(name)


def get_backend():
    """The name of the active backend."""
    return _active


def kernels():
    """The active :class:`Backend`; ``kernels().relu_forward(...)``."""
    return _backends[_active]


def backend(name):
    """The :class:`Backend` called ``name`` (for tests and benchmarks that compare them)."""
    return _backends[_check_name(name)]


@contextlib.contextmanager
def use_backend(name):
    """``with use_backend("numpy"):`` -- the backend inside the block only."""
    global _active
    previous, _active = _active, _check_name(name)
    try:
        yield _backends[_active]
    finally:
        _active = previous


# ---- threads (the policy lives in threads.py) -----------------------------------------------

from .threads import get_num_threads, kernel_threads, set_num_threads, threads_for  # noqa: E402,F401


# ---- bring your own kernel (dlcore/backends/user.py) --------------------------------------
import sys  # noqa: E402

from . import user as _user  # noqa: E402

_user.attach(sys.modules[__name__])  # user.py reaches the registry through this, not an import
from .user import register_backend, unregister_backend, user_backends  # noqa: E402,F401
