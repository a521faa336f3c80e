"""Run the benchmark cases and report: terminal table, JSON, PNG plot.

The report answers three questions, each measured within one run (the machines are
shared and noisy, so only ratios measured side by side mean something):

1. *How much does the compiled backend buy?* -- ``cython/numpy``, the time ratio of the
   compiled backend over the NumPy twin (0.25 means 4x faster), and ``cython/torch``.
2. *How close to the machine is it?* -- achieved GFLOP/s against the measured BLAS GEMM
   roof (convolutions, models), or achieved GB/s against the measured memory bandwidth
   (memory-bound ops). ``x floor`` is the time over the best time the bytes allow, at
   the bandwidth the probe measured in turn with the case (``machine.FloorProbe``).
3. *Do threads help?* -- ``1thr/Nthr``: the compiled backend at one thread over all
   threads (2.0 means perfect scaling on two cores).

Where the torch column runs (several OpenMP runtimes in one process can fight over the cores).
torch's Linux wheels vendor their own ``libgomp.so.1``; dlcore's extensions link the
compiler's. Both carry the same soname, so the dynamic loader serves both from whichever
loaded first: ``threadpoolctl`` lists one OpenMP runtime in either import order (checked
with torch 2.13 and gcc 12's libgomp), hence no two thread pools fighting. The torch
column therefore runs in this process, interleaved with ours so that all share the
machine's noise -- but every run checks it first: :func:`probe_torch_interference` times
a compiled case in a worker process that imported torch (its pools started) against one
that never did, alternating samples, and the torch column moves to a worker process
(this one never importing torch) when ours is more than ``INTERFERENCE_LIMIT`` slower
with torch. The header shows the
runtimes and the probe, and a warning appears when more than one OpenMP runtime is loaded.
"""
import importlib.util
import json
import math
import os
import statistics
import sys
import time

import numpy as np

from . import machine
from .cases import all_cases, get_case
from .process import PROCESS_CASES, format_process_cases, run_process_cases
from .timing import LocalRunner, TorchWorker, Worker, WorkerRunner, time_case

__all__ = ["run_bench", "format_report", "write_json", "plot_ratios", "PlotUnavailable"]

QUICK_BUDGET = 2.0  # seconds of timing per case
FULL_BUDGET = 9.0
QUICK_MINUTES = 1.5  # whole-run targets: budgets shrink when a run falls behind
FULL_MINUTES = 13.0
INTERFERENCE_LIMIT = 1.25  # torch moves out of process above this slowdown of our kernels
PROBE_KEYS = ("relu.fb.1e6", "adam.step.1e6", "conv2d.fb.lenet2", "max_pool2d.fb.c64")


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed: the plot cannot be drawn."""


class _Progress:
    """One status line on stderr, rewritten in place on a terminal."""

    def __init__(self, stream, enabled):
        self.stream, self.enabled = stream, enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.start = time.perf_counter()
        self.width = 0

    def __call__(self, text):
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        line = f"[{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}] {text}"
        if self.tty:
            cols = 120
            line = line[:cols]
            self.stream.write("\r" + line.ljust(self.width))
            self.width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self):
        if self.enabled and self.tty:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()


def _torch_installed():
    return importlib.util.find_spec("torch") is not None


def probe_torch_interference(threads, quick):
    """Does torch in the process slow the compiled OpenMP kernels? (two OpenMP runtimes)

    One compiled case is timed in two worker processes, one that imported torch and runs
    a torch op before each sample (its thread pools started, as when the columns
    interleave) and one that never imports torch, one sample each in turn so that both
    share the machine's noise. This process stays free of torch until the decision.
    ``ratio`` is the median with torch over the median without (about 1.0: no
    interference); None when it cannot be measured (no compiled backend).
    """
    info = {"case": None, "with_torch_s": None, "without_torch_s": None, "ratio": None,
            "note": ""}
    import dlcore

    if "cython" not in dlcore.available_backends():
        info["note"] = "no compiled backend to probe"
        return info
    workers = []
    try:
        workers = [Worker(threads, impl="cython", with_torch=True), Worker(threads, impl="cython")]
        pair = None
        for key in PROBE_KEYS:
            pair = [WorkerRunner(w, get_case(key), threads, quick) for w in workers]
            if all(r.start() for r in pair):
                break
            pair = None
        if pair is None:
            info["note"] = "no compiled OpenMP case available to probe"
            return info
        for _ in range(7 if quick else 11):
            for runner in pair:
                runner.sample()
    finally:
        for w in workers:
            w.close()
    with_torch, without = (statistics.median(r.times) for r in pair)
    best_with, best_without = (min(r.times) for r in pair)
    # A real interference slows every sample; noise from other processes mostly the median.
    # The smaller of the two ratios decides, so a noisy machine does not flip the column.
    info.update(case=pair[0].case.key, with_torch_s=with_torch, without_torch_s=without,
                ratio_median=with_torch / without, ratio_best=best_with / best_without,
                ratio=min(with_torch / without, best_with / best_without))
    return info


def _spread(times):
    """Interquartile range over the median: how noisy the repeats were."""
    if len(times) < 2:
        return 0.0
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    return float((q3 - q1) / med) if med > 0 else 0.0


def _compare(result, reference, tol):
    """Largest |difference| relative to the reference's largest magnitude; None = skipped."""
    if not math.isfinite(tol):
        return None, "not checked"
    if len(result) != len(reference):
        return math.inf, f"returned {len(result)} arrays, NumPy twin {len(reference)}"
    worst = 0.0
    for r, ref in zip(result, reference):
        if r.shape != ref.shape:
            return math.inf, f"shape {r.shape} vs NumPy twin {ref.shape}"
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        err = float(np.max(np.abs(r - ref))) if ref.size else 0.0
        if not np.all(np.isfinite(r) == np.isfinite(ref)):
            return math.inf, "non-finite values differ"
        worst = max(worst, err / max(scale, 1e-30))
    return worst, "ok" if worst <= tol else f"FAIL: relative error {worst:.2e} > {tol:.0e}"


def _impl_result(runner):
    if not runner.ok:
        return {"ok": False, "reason": runner.reason}
    times = [t * runner.scale for t in runner.times]
    out = {
        "ok": True,
        "median_s": statistics.median(times) if times else None,
        "min_s": min(times) if times else None,
        "times_s": times,
        "repeats": len(times),
        "calls_per_repeat": runner.number,
        "first_call_s": runner.first * runner.scale,
        "spread": _spread(times),
    }
    if runner.note:
        out["note"] = runner.note
    return out


def _case_metrics(case, impls, limits, floor_gbs=None):
    """Ratios, rates and fractions of the machine's limits for one case.

    ``floor_gbs``: the bandwidth probe timed in turn with this case (memory-bound cases),
    used instead of the start-of-run ``limits["bandwidth_gbs"]`` when given.
    """
    def med(name):
        r = impls.get(name)
        return r["median_s"] if r and r.get("ok") and r.get("median_s") else None

    cy, npy, cy1 = med("cython"), med("numpy"), med("cython@1")
    # torch twice: in this process at the run's threads, and in its own process with its
    # default settings (as a user runs it); compiled is compared with the faster of the two.
    th_in, th_own = med("torch"), med("torch@own")
    th = min((t for t in (th_in, th_own) if t), default=None)
    m = {
        "cython/numpy": cy / npy if cy and npy else None,
        "cython/torch": cy / th if cy and th else None,
        "cython/torch_in_process": cy / th_in if cy and th_in else None,
        "cython/torch_own_process": cy / th_own if cy and th_own else None,
        "faster_torch": None if th is None else ("torch@own" if th == th_own else "torch"),
        "1thr/Nthr": cy1 / cy if cy and cy1 else None,
    }
    for name, r in impls.items():
        t = med(name)
        if t is None:
            continue
        if case.flops:
            r["gflops"] = case.flops / t / 1e9
        if case.nbytes:
            r["gbs"] = case.nbytes / t / 1e9
    if cy:
        if case.flops and limits.get("gemm_gflops"):
            m["gflops"] = case.flops / cy / 1e9
            m["fraction_of_gemm"] = m["gflops"] / limits["gemm_gflops"]
        bandwidth = floor_gbs or limits.get("bandwidth_gbs")
        if case.nbytes and bandwidth:
            m["gbs"] = case.nbytes / cy / 1e9
            m["floor_gbs"] = bandwidth
            m["floor_measured"] = "with the case" if floor_gbs else "at the start of the run"
            m["fraction_of_bandwidth"] = m["gbs"] / bandwidth
            m["floor_s"] = case.nbytes / (bandwidth * 1e9)
            m["times_floor"] = cy / m["floor_s"]
            if floor_gbs and limits.get("bandwidth_gbs"):
                m["times_floor_start"] = cy * limits["bandwidth_gbs"] * 1e9 / case.nbytes
    return m


def _impls_for(threads, torch_mode, thread_column):
    import dlcore

    impls = []
    if "cython" in dlcore.available_backends():
        impls.append("cython")
        if thread_column and threads > 1:
            impls.append("cython@1")
    impls.append("numpy")
    if torch_mode != "off":
        impls += ["torch", "torch@own"]
    return impls


def run_bench(quick=False, filter=None, threads=None, torch_mode="auto", budget=None,
              thread_column=True, progress=True, stream=None, limits=True, max_minutes=None,
              process_cases=None):
    """Run the cases and return the report as a JSON-serializable dict.

    ``torch_mode``: ``"auto"`` (in this process unless importing torch measurably slows
    the compiled kernels, then a worker process), ``"inprocess"``, ``"subprocess"`` or
    ``"off"``. ``budget`` is the timing budget per case in seconds; ``max_minutes`` the
    whole run's (default 13 full, 1.5 quick): when the run falls behind, later cases get
    a smaller budget (never fewer than 3 repeats, 1 for the epoch). ``process_cases``: run
    the LeNet-5 import-order and busy-machine cases (fresh processes, about a minute);
    default: in a full run, and when ``filter`` names one of them.
    """
    import dlcore

    stream = sys.stderr if stream is None else stream
    threads = threads or dlcore.get_num_threads()
    budget = budget or (QUICK_BUDGET if quick else FULL_BUDGET)
    max_minutes = max_minutes or (QUICK_MINUTES if quick else FULL_MINUTES)
    show = _Progress(stream, progress)
    cases = all_cases(quick=quick, filter=filter)
    process_names = [n for n in PROCESS_CASES if not filter or filter.lower() in n]
    if process_cases is None:
        process_cases = bool(process_names) and (not quick or bool(filter))
    if not cases and not (process_cases and process_names):
        raise ValueError(f"no benchmark case name contains {filter!r}; see --list")

    report = {"header": machine.header(threads), "mode": "quick" if quick else "full",
              "filter": filter, "budget_per_case_s": budget, "max_minutes": max_minutes,
              "warnings": []}
    report["header"]["torch"] = None
    show("measuring machine limits (GEMM, memory bandwidth)")
    report["limits"] = machine.measure_limits(threads, quick) if limits else {}

    torch_available = torch_mode != "off" and _torch_installed()
    if torch_mode != "off" and not torch_available:
        report["warnings"].append("torch is not installed: no torch column")
        torch_mode = "off"
    interference = None
    if torch_available and torch_mode == "auto":
        show("checking whether importing torch slows the compiled kernels")
        interference = probe_torch_interference(threads, quick)
        slow = interference["ratio"] is not None and interference["ratio"] > INTERFERENCE_LIMIT
        torch_mode = "subprocess" if slow else "inprocess"
    report["torch_interference"] = interference
    report["torch_mode"] = torch_mode
    worker = own_worker = None
    if torch_mode != "off" and cases:
        own_worker = Worker(threads, impl="torch", default_threads=True, label="torch@own")
        report["header"]["torch_own_process_threads"] = own_worker.info.get("threads")
    if torch_mode == "subprocess":
        worker = TorchWorker(threads)
        report["header"]["torch"] = worker.info.get("torch")
    elif torch_mode == "inprocess":
        import torch

        torch.set_num_threads(threads)
        report["header"]["torch"] = torch.__version__
        report["header"]["torch_threads"] = torch.get_num_threads()
        if limits:
            report["limits"]["torch_gemm_gflops"] = machine.torch_gemm_gflops(threads)
    report["header"]["threadpool_info"] = machine.threadpool_summary()

    impls = _impls_for(threads, torch_mode, thread_column)
    report["impls"] = impls
    results = []
    try:
        for i, case in enumerate(cases):
            prefix = f"[{i + 1}/{len(cases)}] {case.name}"
            case_start = time.perf_counter()
            runners = []
            # The one-thread column of a whole epoch would cost minutes; the step has it.
            for impl in [name for name in impls if not (case.full_only and name == "cython@1")]:
                show(f"{prefix}: warming up {impl}")
                if impl == "torch@own":
                    runner = WorkerRunner(own_worker, case, threads, quick)
                elif impl == "torch" and worker is not None:
                    runner = WorkerRunner(worker, case, threads, quick)
                else:
                    runner = LocalRunner(case, impl, threads, quick)
                runner.start()
                runners.append(runner)
            show(f"{prefix}: timing {', '.join(r.impl for r in runners if r.ok) or 'nothing available'}")
            # Behind schedule (a slow or busy machine): share what is left among the rest.
            left = max_minutes * 60 - (time.perf_counter() - show.start)
            case_budget = max(0.2, min(budget, left / (len(cases) - i) * 0.6))
            # A memory-bound case's floor is measured in turn with it (machine.FloorProbe).
            probe = (machine.FloorProbe(threads, quick)
                     if case.target == "bandwidth" and report["limits"] else None)
            try:
                rounds = time_case(runners + ([probe] if probe else []), case_budget,
                                   min_repeats=1 if case.full_only else 3)
                floor_gbs = probe.gbs() if probe else None
            finally:
                if probe:
                    probe.close()
            show(f"{prefix}: checking results against the NumPy twin")
            entry = {"key": case.key, "name": case.name, "group": case.group,
                     "flops": case.flops, "bytes": case.nbytes, "target": case.target,
                     "rounds": rounds, "budget_s": case_budget, "impls": {}, "checks": {}}
            entry["impls"] = {r.impl: _impl_result(r) for r in runners}
            entry["checks"] = _check(case, runners)
            entry["metrics"] = _case_metrics(case, entry["impls"], report["limits"], floor_gbs)
            entry["wall_s"] = time.perf_counter() - case_start
            results.append(entry)
            for r in runners:
                r.close()
        if process_cases:
            report["process_cases"] = run_process_cases(threads, quick, filter, torch_mode != "off", show)
    finally:
        for w in (worker, own_worker):
            if w is not None:
                w.close()
        show.done()
    report["cases"] = results
    report["header"]["load_average_end"] = machine.load_average()
    report["header"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    report["header"]["elapsed_s"] = time.perf_counter() - show.start
    report["warnings"] += _warnings(report)
    return report


def _check(case, runners):
    """Compare every implementation's result with the NumPy twin's (after timing)."""
    by_impl = {r.impl: r for r in runners if r.ok}
    if not math.isfinite(case.tol):
        return {impl: "not checked" for impl in by_impl}
    if "numpy" not in by_impl:
        return {impl: "no NumPy reference" for impl in by_impl}
    checks = {}
    try:
        reference = by_impl["numpy"].result()
    except Exception as exc:  # noqa: BLE001
        return {impl: f"reference failed: {exc}" for impl in by_impl}
    for impl, runner in by_impl.items():
        if impl == "numpy":
            continue
        try:
            _, status = _compare(runner.result(), reference, case.tol)
        except Exception as exc:  # noqa: BLE001
            status = f"FAIL: {type(exc).__name__}: {exc}"
        checks[impl] = status
    return checks


def _warnings(report):
    out = []
    header = report["header"]
    cores = header.get("usable_cpus") or 1
    start, end = header.get("load_average_start"), header.get("load_average_end")
    if start is not None and start > 0.5:
        out.append(f"machine busy: load average {start:.2f} on {cores} CPUs before the run "
                   "(other processes share the cores; trust the ratios more than the times; "
                   + ("with the cores oversubscribed, multi-threaded OpenMP/BLAS times collapse: "
                      "compare with --threads 1)" if start > cores else ")"))
    if end is not None and end > header["threads"] + 0.75:
        out.append(f"machine busy: load average {end:.2f} at the end with {header['threads']} "
                   "benchmark threads")
    noisy = [c["name"] for c in report["cases"]
             if any(r.get("ok") and r.get("spread", 0) > 0.10 for r in c["impls"].values())]
    if noisy:
        out.append(f"{len(noisy)} of {len(report['cases'])} cases had a repeat spread "
                   f"(IQR/median) above 10%: {', '.join(noisy[:4])}{' ...' if len(noisy) > 4 else ''}")
    slower = [c["name"] for c in report["cases"]
              if (c["metrics"].get("1thr/Nthr") or 1.0) < 0.8]
    if slower:
        out.append(f"{len(slower)} cases ran slower on {header['threads']} threads than on one "
                   f"({', '.join(slower[:3])}{' ...' if len(slower) > 3 else ''}): an oversubscribed "
                   "machine (see the load average) or a workload too small to pay for starting threads")
    failed = [f"{c['name']} [{impl}]: {s}" for c in report["cases"]
              for impl, s in c["checks"].items() if str(s).startswith("FAIL")]
    out += [f"wrong result: {f}" for f in failed]
    pools = header.get("threadpool_info") or []
    omp = [p.get("filepath") for p in pools if p.get("user_api") == "openmp"]
    if len(omp) > 1:
        out.append(f"{len(omp)} OpenMP runtimes are loaded in one process ({', '.join(omp)}): "
                   "their thread pools can fight over the cores")
    inter = report.get("torch_interference")
    if inter and inter.get("ratio") and inter["ratio"] > INTERFERENCE_LIMIT:
        out.append(f"importing torch slowed the compiled probe {inter['ratio']:.2f}x: torch ran "
                   "in a worker process")
    return out


# ---- formatting --------------------------------------------------------------------------

def _fmt_time(t):
    if t is None:
        return "n/a"
    if t < 1e-3:
        return f"{t * 1e6:.1f} us"
    if t < 1:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.2f} s"


def _fmt_ratio(r, digits=2):
    return "-" if r is None else f"{r:.{digits}f}"


def _impl_cell(entry, impl):
    r = entry["impls"].get(impl)
    if r is None:
        return "-"
    if not r.get("ok"):
        return "n/a"
    cell = _fmt_time(r["median_s"])
    check = str(entry["checks"].get(impl, ""))
    if check.startswith("FAIL"):
        cell += "!"
    if r.get("note"):
        cell += "*"
    return cell


def format_report(report):
    """The report as text: header, limits, the table, warnings, footnotes."""
    h, lim = report["header"], report["limits"]
    b = h["build_info"]
    lines = [
        f"dlcore {b.get('version')} benchmark ({report['mode']} run"
        + (f", filter {report['filter']!r}" if report.get("filter") else "") + ")",
        f"CPU      {h['cpu']} | {h['logical_cpus']} logical CPUs, {h['usable_cpus']} usable | "
        f"benchmark threads {h['threads']}",
        f"build    compiler {b.get('compiler')} | flags {b.get('compile_args')} | OpenMP "
        f"{b.get('openmp')} ({b.get('openmp_version')}) | compiled backend "
        f"{'yes' if 'cython' in (b.get('available_backends') or '') else 'NO: ' + str(b.get('compiled_error'))}",
        f"versions python {h['python']} | numpy {h['numpy']} | torch {h.get('torch') or 'not used'} "
        f"({report.get('torch_mode')}) | cython {b.get('cython')}",
    ]
    pools = h.get("threadpool_info")
    if pools is None:
        lines.append("runtimes threadpoolctl not installed (BLAS/OpenMP runtimes unknown)")
    else:
        for p in pools:
            lines.append(f"runtimes {p.get('user_api')}: {p.get('internal_api')} {p.get('version') or ''} "
                         f"{p.get('num_threads')} threads ({os.path.basename(p.get('filepath', ''))})")
    inter = report.get("torch_interference")
    if inter and inter.get("ratio"):
        lines.append(f"torch?   compiled {inter['case']} in a process with torch / without: "
                     f"{_fmt_time(inter['with_torch_s'])} / {_fmt_time(inter['without_torch_s'])} "
                     f"(median x{inter['ratio_median']:.2f}, best x{inter['ratio_best']:.2f}; "
                     f"limit x{INTERFERENCE_LIMIT}) -> torch {report['torch_mode']}")
    elif inter:
        lines.append(f"torch?   {inter['note']} -> torch {report['torch_mode']}")
    la0, la1 = h.get("load_average_start"), h.get("load_average_end")
    if la0 is not None:
        lines.append(f"load     average {la0:.2f} at start, {la1:.2f} at end; "
                     f"{h.get('elapsed_s', 0):.0f} s elapsed")
    if lim:
        extra = (f" | torch GEMM {lim['torch_gemm_gflops']:.1f} GFLOP/s"
                 if lim.get("torch_gemm_gflops") else "")
        lines.append(
            f"limits   NumPy BLAS float32 GEMM {lim['gemm_gflops']:.1f} GFLOP/s (n={lim['gemm_n']}){extra} | "
            f"copy {lim['copy_gbs']:.1f} GB/s, in-place a+=b {lim['update_gbs']:.1f} GB/s"
            + (f", one-thread copy {lim['copy_gbs_1thread']:.1f} GB/s" if lim.get("copy_gbs_1thread") else "")
            + f" (best of repeats; read+write bytes; {lim['threads']} threads)"
            + (f"; floor: a+=b median {lim['bandwidth_gbs']:.1f} GB/s, re-measured alongside each "
               "memory-bound case" if lim.get("bandwidth_gbs") else ""))
    lines.append("")

    impls = report["impls"]
    scaling = "cython@1" in impls  # the thread column only when there is a second thread count
    head = ["case"] + impls + ["cy/np", "cy/torch", "compiled rate", "of limit"] + (
        ["1thr/Nthr"] if scaling else []) + ["spread"]
    rows = []
    group = None
    for c in report["cases"]:
        if c["group"] != group:
            if group is not None:
                rows.append(None)
            group = c["group"]
        m = c["metrics"]
        if m.get("gflops") is not None:
            rate = f"{m['gflops']:.1f} GFLOP/s"
            frac = f"{100 * m['fraction_of_gemm']:.0f}% GEMM"
        elif m.get("gbs") is not None:
            rate = f"{m['gbs']:.1f} GB/s"
            frac = f"{100 * m['fraction_of_bandwidth']:.0f}% BW"
        else:
            rate = frac = "-"
        spread = max((r.get("spread", 0) for r in c["impls"].values() if r.get("ok")), default=None)
        rows.append([c["name"]] + [_impl_cell(c, i) for i in impls] + [
            _fmt_ratio(m.get("cython/numpy")), _fmt_ratio(m.get("cython/torch")), rate, frac]
            + ([_fmt_ratio(m.get("1thr/Nthr")) + ("x" if m.get("1thr/Nthr") else "")] if scaling else [])
            + ["-" if spread is None else f"{100 * spread:.0f}%"])
    widths = [max(len(str(r[k])) for r in [head] + [r for r in rows if r]) for k in range(len(head))]
    widths[0] = min(widths[0], 56)

    def fmt(row):
        cells = [str(row[0])[:widths[0]].ljust(widths[0])]
        cells += [str(v).rjust(w) for v, w in zip(row[1:], widths[1:])]
        return "  ".join(cells)

    lines.append(fmt(head))
    lines.append("-" * len(fmt(head)))
    lines += ["" if r is None else fmt(r) for r in rows]
    lines.append("")
    lines.append("times are medians per call; torch runs in this process at the run's threads, "
                 "torch@own in its own process with its default settings; cy/np and cy/torch are "
                 "compiled time over the other, against the faster torch "
                 "(< 1 means compiled is faster); 'compiled rate' is the compiled backend's GFLOP/s "
                 "or GB/s (bytes that must move), 'of limit' its fraction of the GEMM rate or of "
                 "the a+=b bandwidth timed in turn with the case"
                 + (f"; '1thr/Nthr' is compiled one-thread time over {h['threads']}-thread time"
                    if scaling else "")
                 + "; spread = IQR/median of the repeats; n/a = not available here.")
    notes = sorted({f"{c['name']}: {r['note']}" for c in report["cases"]
                    for r in c["impls"].values() if r.get("note")})
    for n in notes:
        lines.append(f"* {n}")
    reasons = {}
    for c in report["cases"]:
        for impl, r in c["impls"].items():
            if not r.get("ok"):
                reasons.setdefault(f"{impl}: {r.get('reason')}", []).append(c["key"])
    for reason, keys in list(reasons.items())[:12]:
        lines.append(f"n/a {reason} ({len(keys)} case{'s' if len(keys) > 1 else ''})")
    process_lines = format_process_cases(report.get("process_cases") or [])
    if process_lines:
        lines.append("")
        lines += process_lines
    if report["warnings"]:
        lines.append("")
        for w in report["warnings"]:
            lines.append(f"WARNING: {w}")
    return "\n".join(lines)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # strict JSON has no inf/nan
    return obj


def write_json(report, path):
    with open(path, "w") as fh:
        json.dump(_jsonable(report), fh, indent=1)


def plot_ratios(report, path):
    """A PNG bar chart of compiled/NumPy and compiled/torch time ratios (log scale)."""
    fig = ratio_figure(report)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def ratio_figure(report):
    """The matplotlib Figure :func:`plot_ratios` saves (raises PlotUnavailable without matplotlib)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        raise PlotUnavailable("matplotlib is not installed (pip install matplotlib); "
                              "the plot was skipped") from None
    rows = [c for c in report["cases"]
            if c["metrics"].get("cython/numpy") or c["metrics"].get("cython/torch")]
    fig = Figure(figsize=(11, 1.6 + 0.36 * max(len(rows), 1)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(len(rows))
    series = [("cython/numpy", "compiled / NumPy twin", "tab:blue", -0.2),
              ("cython/torch", "compiled / torch", "tab:orange", 0.2)]
    # a series with no value at all (no torch column) gets no bars and no legend entry
    series = [s for s in series if any(c["metrics"].get(s[0]) for c in rows)]
    if len(series) == 1:
        series = [(key, label, color, 0.0) for key, label, color, _ in series]
    shown = [1.0]
    for key, label, color, dy in series:
        vals = [c["metrics"].get(key) or np.nan for c in rows]
        ax.barh(y + dy, vals, height=0.38, label=label, color=color)
        for yi, v in zip(y, vals):
            if np.isfinite(v):
                shown.append(v)
                ax.text(v, yi + dy, f" {v:.2f}", va="center", fontsize=6)
    ax.axvline(1.0, color="k", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlim(min(shown) / 1.5, max(shown) * 2.0)
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_yticks(y)
    ax.set_yticklabels([c["name"] for c in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time ratio (< 1: compiled faster)")
    h = report["header"]
    ax.set_title(f"dlcore {report['mode']} benchmark: {h['cpu']}, {h['threads']} threads",
                 fontsize=9, loc="right")
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, frameon=False)
    return fig


def list_cases(quick=False, filter=None):
    lines = []
    for c in all_cases(quick=quick, filter=filter):
        tags = [t for t, on in (("quick", c.quick), ("full only", c.full_only), (c.target, c.target)) if on]
        lines.append(f"{c.key:<28} {c.name}" + (f"  [{', '.join(tags)}]" if tags else ""))
    return "\n".join(lines)

