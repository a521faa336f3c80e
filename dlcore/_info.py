"""build_info(): what this installation of dlcore was built with and runs on."""
import platform

import numpy as np

from . import backends
from ._version import __version__


def build_info():
    """Dict describing the build: version, backend, OpenMP, threads, compiler, flags, versions.

    ``compiled_error`` is None when the compiled kernels import, else the reason they do not.
    """
    info = {
        "version": __version__,
        "backend": backends.get_backend(),
        "available_backends": backends.available_backends(),
        "openmp": False,
        "openmp_version": 0,
        "num_threads": backends.get_num_threads(),
        "compiler": None,
        "compile_args": None,
        "numpy": np.__version__,
        "cython": None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "compiled_error": backends.compiled_import_error,
    }
    if "cython" in backends.available_backends():
        from .backends import cython_kernels

        info.update(cython_kernels.compiled_info())
        info["openmp_max_threads"] = cython_kernels.openmp_max_threads()
    return info
