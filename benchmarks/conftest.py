"""pytest-benchmark suites over the cases of ``python -m dlcore bench``.

Run them with::

    pytest benchmarks/ --benchmark-only                 # every case x (cython, numpy, torch)
    pytest benchmarks/test_bench_conv.py --benchmark-only --bench-threads 1
    pytest benchmarks/ --benchmark-only -k "relu and 1e7"

They are not part of ``pytest`` (the project's ``testpaths`` is ``tests``). The cases
themselves live in :mod:`dlcore.bench.cases`, shared with the report; each file here
parametrizes one group of them over the implementations. Each benchmark:

* runs under ``dlcore.use_backend`` (or torch) with the thread count fixed for the compiled
  kernels, NumPy's BLAS and torch, recorded in ``extra_info``;
* is grouped by case (``benchmark.group``), so cython / numpy / torch sit side by side;
* checks its result after timing against the NumPy twin (a fast wrong answer fails).
"""
import os

import pytest

import dlcore
from dlcore.bench.cases import Unavailable, to_numpy
from dlcore.bench.report import _compare
from dlcore.bench.timing import impl_settings, run_context

def pytest_addoption(parser):
    parser.addoption(
        "--bench-threads", type=int, default=None,
        help="threads for the compiled kernels, BLAS and torch (default: DLCORE_BENCH_THREADS "
        "or dlcore.get_num_threads())",
    )


@pytest.fixture(scope="session")
def bench_threads(request):
    value = request.config.getoption("--bench-threads") or os.environ.get("DLCORE_BENCH_THREADS")
    threads = int(value) if value else dlcore.get_num_threads()
    if threads < 1:
        raise pytest.UsageError(f"--bench-threads must be an int >= 1, got {threads}")
    return threads


def _build(case, impl):
    kind, backend, _ = impl_settings(impl, 1)
    if kind == "dlcore" and backend not in dlcore.available_backends():
        pytest.skip(f"backend {backend!r} not available: {dlcore.backends.compiled_import_error}")
    try:
        return case.build(kind, False)
    except Unavailable as exc:
        pytest.skip(str(exc))
    except (NotImplementedError, AttributeError, ImportError) as exc:
        pytest.skip(f"{impl}: an API is not there yet: {type(exc).__name__}: {exc}")


@pytest.fixture
def run_case(benchmark, bench_threads):
    """``run_case(case, impl)``: time one implementation of a case, then check it."""

    def run(case, impl):
        bound = _build(case, impl)
        benchmark.group = case.name
        benchmark.extra_info.update(case=case.key, impl=impl, threads=bench_threads,
                                    flops=case.flops, bytes=case.nbytes)
        with run_context(impl, bench_threads):
            try:
                bound.fn()  # warm-up; an API another helper has not landed yet skips
            except (NotImplementedError, AttributeError) as exc:
                pytest.skip(f"{impl}: {type(exc).__name__}: {exc}")
            benchmark(bound.fn)
        stats = getattr(benchmark, "stats", None)
        median = getattr(getattr(stats, "stats", None), "median", None)
        if median:
            if case.flops:
                benchmark.extra_info["gflops"] = case.flops / median / 1e9
            if case.nbytes:
                benchmark.extra_info["gbs"] = case.nbytes / median / 1e9
        _check_against_twin(case, impl, bench_threads)

    return run


def _check_against_twin(case, impl, threads):
    """A fresh build's first result must equal the NumPy twin's (timed calls mutate state)."""
    if impl == "numpy" or case.tol == float("inf"):
        return
    try:
        reference_bound = case.build("dlcore", False)
        with run_context("numpy", threads):
            reference = to_numpy(reference_bound.fn())
    except (NotImplementedError, AttributeError, ImportError) as exc:
        pytest.skip(f"timed, but no NumPy twin to check against: {type(exc).__name__}: {exc}")
    fresh = _build(case, impl)
    with run_context(impl, threads):
        result = to_numpy(fresh.fn())
    _, status = _compare(result, reference, case.tol)
    assert status == "ok", f"{case.name} [{impl}] vs NumPy twin: {status}"
