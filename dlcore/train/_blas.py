"""BLAS thread limit while training (kept in one place so it can be removed in one place).

Code that alternates OpenMP regions (dlcore's kernels) with BLAS calls (NumPy's matrix
products) can oversubscribe the cores when OpenMP's idle workers spin; this module limits
BLAS to one thread in that case. It becomes unnecessary once the kernels and the GEMMs
share one thread pool.
"""
from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Union

from .._checks import check_int

__all__ = ["blas_limit", "resolve_blas_threads"]


def resolve_blas_threads(n: Union[int, str, None] = "auto") -> Union[int, str, None]:
    """What ``blas_limit(n)`` applies: an int, or None for no limit (see :func:`blas_limit`)."""
    if n == "auto":
        from ..backends import OPENMP_WORKERS_SLEEP, get_backend

        return None if get_backend() == "numpy" or OPENMP_WORKERS_SLEEP else 1
    return n


def blas_limit(n: Union[int, str, None] = "auto") -> ContextManager[Any]:
    """A context manager limiting BLAS (NumPy's matrix products) to ``n`` threads.

    ``"auto"`` means no limit, except on the compiled backend when the user made OpenMP's
    workers spin (``OMP_WAIT_POLICY=ACTIVE``; dlcore sets PASSIVE otherwise): spinning
    workers next to a BLAS pool oversubscribe the cores. Measured on
    the shared 2-core machine with spinning workers, one training step of
    ``MLP([64, 256, 256, 10])`` on a batch of 32 took 0.226 s with the default BLAS pool
    and 0.028 s with one BLAS thread; a LeNet-5 step 0.57 s and 0.20 s. With sleeping
    workers the default pool is faster (LeNet-5 on digits: 0.30 s per epoch vs 0.36 s).
    Needs threadpoolctl; without it this does nothing. ``None`` also does nothing.
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
