"""An optional BLAS thread limit while training (``Trainer(blas_threads=n)``).

The compiled convolution calls BLAS itself, single-threaded inside its own OpenMP region,
so dlcore needs no limit on NumPy's BLAS: ``"auto"`` applies none. A user who wants
NumPy's matrix products (dense layers, the NumPy backend) on ``n`` threads can still ask.
"""
from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Union

from .._checks import check_int

__all__ = ["blas_limit", "resolve_blas_threads"]


def resolve_blas_threads(n: Union[int, str, None] = "auto") -> Union[int, str, None]:
    """What ``blas_limit(n)`` applies: an int, or None for no limit (see :func:`blas_limit`)."""
    return None if n == "auto" else n


def blas_limit(n: Union[int, str, None] = "auto") -> ContextManager[Any]:
    """A context manager limiting BLAS (NumPy's matrix products) to ``n`` threads.

    ``"auto"`` and ``None`` mean no limit (see the module docstring). Needs threadpoolctl;
    without it this does nothing.
    """
    n = resolve_blas_threads(n)
    if n is None:
        return contextlib.nullcontext()
    n = check_int(n, "blas_threads", 1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")
