"""dlcore: an educational deep-learning framework with readable NumPy twins and fast
Cython+OpenMP kernels behind a PyTorch-like API.

    >>> import dlcore
    >>> dlcore.available_backends()        # doctest: +SKIP
    ['cython', 'numpy']
"""
from ._version import __version__
from .backends import (
    available_backends,
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
    use_backend,
)
from ._info import build_info
from ._random import manual_seed
from .serialization import load, save
from .gradcheck import gradcheck
from . import functional, nn, optim, data, metrics, models  # noqa: E402

__all__ = [
    "__version__",
    "available_backends",
    "build_info",
    "data",
    "functional",
    "get_backend",
    "get_num_threads",
    "gradcheck",
    "load",
    "manual_seed",
    "metrics",
    "models",
    "nn",
    "optim",
    "save",
    "set_backend",
    "set_num_threads",
    "use_backend",
]

# Tools for learners: a divergence locator, a per-layer profiler, export (dlcore.export),
# and the kernel checker dlcore.verify (imported on use).
from .compare import compare_with_torch  # noqa: E402
from .profiling import profile  # noqa: E402
from . import export  # noqa: E402

__all__ += ["compare_with_torch", "export", "profile"]
