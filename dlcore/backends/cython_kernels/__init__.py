"""The compiled kernels: one extension module per stem, built from ``src/dlcore/<stem>.pyx``.

Importing this package fails (ImportError) when the extensions were not built; the
registry in :mod:`dlcore.backends` then falls back to the NumPy twins and says why.
"""
import importlib
import os

from ._info import compiled_info, openmp_max_threads, openmp_num_procs  # noqa: F401

_STEMS = ("conv", "pool", "activation", "optim", "norm")


def _export(stem):
    module = importlib.import_module(f".{stem}", __name__)
    names = getattr(module, "__all__", [n for n in dir(module) if not n.startswith("_")])
    globals().update({name: getattr(module, name) for name in names})


for _stem in _STEMS:
    try:
        _export(_stem)
    except ImportError:
        if os.environ.get("DLCORE_PARTIAL_BACKEND") != "1":
            raise
