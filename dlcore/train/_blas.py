"""The BLAS thread limit while training (``Trainer(blas_threads=n)``).

One thread pool owns the cores: on a compiled backend that is dlcore's OpenMP pool (the
convolution calls BLAS itself, single-threaded inside its own parallel region). NumPy's
matrix products (the dense layers) would start a second pool, BLAS's, whose threads spin
on the same cores between dlcore's kernels; so ``"auto"`` holds BLAS to one thread there.
Measured on 2 cores with other processes running (AMD EPYC, load 5-6, median of 20 steps,
5 interleaved rounds): LeNet-5 step, batch 64, 22-109 ms with BLAS's own threads against
10-14 ms with one; an MLP 784-512-256-10, batch 128, 31-164 ms against 14-15 ms. On the
NumPy backend BLAS is the only pool, so ``"auto"`` leaves it alone. ``blas_threads=n``
asks for ``n`` BLAS threads, None for no limit.
"""
from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Union

from .._checks import check_int

__all__ = ["blas_limit", "resolve_blas_threads"]


def resolve_blas_threads(n: Union[int, str, None] = "auto") -> Union[int, str, None]:
    """What ``blas_limit(n)`` applies: an int, or None for no limit (see the module docstring).

    ``"auto"``: 1 on a backend with compiled kernels (any but ``"numpy"``), else None.
    """
    if n != "auto":
        return n
    from .. import backends  # the backend active now, when the limit is applied

    return None if backends.get_backend() == "numpy" else 1


def blas_limit(n: Union[int, str, None] = "auto") -> ContextManager[Any]:
    """A context manager limiting BLAS (NumPy's matrix products) to ``n`` threads.

    ``"auto"``: one thread on a compiled backend, no limit on NumPy's; ``None``: no limit
    (see the module docstring). Needs threadpoolctl; without it this does nothing.
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
