"""The LeNet-5 step in fresh processes: import order, and a busy machine.

Each is one pedantic round (the cases time the step themselves, in child processes); the
ratios are in ``extra_info``: ``ratio`` (torch imported first / dlcore first) and
``cython_ratio`` / ``torch_ratio`` (with one extra CPU-bound process / quiet).
"""
import pytest

from dlcore.bench import process


def test_import_order(benchmark, bench_threads):
    pytest.importorskip("torch")
    result = benchmark.pedantic(process.import_order, args=(bench_threads,), rounds=1, iterations=1)
    benchmark.extra_info.update(threads=bench_threads, ratio=result["ratio"],
                                dlcore_first_s=result["dlcore_first_s"], torch_first_s=result["torch_first_s"])
    assert result["ratio"] is not None, result["reason"]


def test_busy_machine(benchmark, bench_threads):
    try:
        import torch  # noqa: F401
        with_torch = True
    except ImportError:
        with_torch = False
    result = benchmark.pedantic(process.busy_machine, args=(bench_threads,),
                                kwargs={"with_torch": with_torch}, rounds=1, iterations=1)
    benchmark.extra_info.update(threads=bench_threads, cython_ratio=result["cython"]["ratio"],
                                torch_ratio=(result.get("torch") or {}).get("ratio"))
    assert result["cython"]["ratio"] is not None, result["cython"]["reason"]
