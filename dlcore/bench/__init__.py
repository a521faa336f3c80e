"""Benchmarks: the cases, the timing harness and the report behind ``python -m dlcore bench``.

* :mod:`dlcore.bench.cases` -- every case once (convolution, pooling, activations, loss,
  optimizer steps, LeNet-5), built for the compiled backend, the NumPy twin or torch;
  ``benchmarks/`` (pytest-benchmark) uses the same definitions.
* :mod:`dlcore.bench.timing` -- warm-up, samples, interleaved rounds, a budget per case.
* :mod:`dlcore.bench.machine` -- the header (CPU, build, runtimes) and the machine's
  limits measured in the same run (GEMM GFLOP/s, memory bandwidth).
* :mod:`dlcore.bench.report` -- ``run_bench`` and the table, JSON and plot.

The project's own speed targets are not part of the tool: ``benchmarks/targets.py``
checks them against a saved JSON report.

Importing this package imports neither torch nor matplotlib.
"""
from .cases import CASES, IMPLS, Case, all_cases, get_case
from .report import format_report, plot_ratios, run_bench, write_json

__all__ = ["CASES", "IMPLS", "Case", "all_cases", "format_report", "get_case", "plot_ratios",
           "run_bench", "write_json"]
