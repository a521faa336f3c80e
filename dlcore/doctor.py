"""``dlcore doctor``: what to check when dlcore is slow or wrong on a machine.

Each check prints what it found; each *problem* comes with what to do about it, and the
exit status is 1 when there is one (so ``python -m dlcore doctor`` can run in a CI job).
The checks:

* the compiled backend: present (compiler, flags, OpenMP version) or why not;
* the thread pools loaded in this process -- OpenMP and BLAS runtimes, with their thread
  counts (via ``threadpoolctl`` when installed, else ``/proc/self/maps``) -- and whether
  more than one OpenMP runtime is loaded (each keeps its own pool of threads);
* which library loaded the OpenMP runtime first (a runtime loaded before dlcore has read
  its environment already);
* oversubscription: thread counts versus the cores this process may use (its CPU
  affinity), and the machine's load;
* CPU features (what NumPy's and BLAS's SIMD code can use);
* a health check of a few seconds: a small convolution, a max-pool and an Adam step on
  both backends, which must agree, and the compiled one must not be slower.
"""
import os
import shutil
import sys
import time

import numpy as np

from . import backends

__all__ = ["diagnose", "main", "Finding"]


class Finding:
    """One line of the report: ``level`` is "ok", "note" (worth knowing) or "problem"."""

    def __init__(self, level, topic, text, fix=None):
        self.level, self.topic, self.text, self.fix = level, topic, text, fix

    def __repr__(self):
        return f"Finding({self.level!r}, {self.topic!r}, {self.text!r})"


def usable_cores():
    """Cores this process may run on (its CPU affinity), and the cores the machine has."""
    total = os.cpu_count() or 1
    try:
        return len(os.sched_getaffinity(0)), total
    except AttributeError:  # macOS, Windows: no affinity API
        return total, total


def _mapped_libraries():
    """Shared libraries mapped into this process (Linux), by real path, in map order."""
    try:
        with open("/proc/self/maps") as f:
            paths = [line.split(maxsplit=5)[5].strip() for line in f if len(line.split(maxsplit=5)) == 6]
    except OSError:
        return []
    return list(dict.fromkeys(os.path.realpath(p) for p in paths if ".so" in os.path.basename(p)))


_OPENMP_NAMES = ("libgomp", "libiomp", "libomp", "vcomp")


def thread_pools():
    """``[{"api": "openmp"|"blas", "library", "path", "threads"}]`` for this process.

    From ``threadpoolctl`` when it imports (it knows the thread counts); otherwise the
    OpenMP runtimes among the mapped libraries, with the thread count unknown (None).
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"api": "openmp", "library": os.path.basename(p), "path": p, "threads": None}
                for p in _mapped_libraries() if os.path.basename(p).startswith(_OPENMP_NAMES)]
    return [{"api": info["user_api"], "library": info.get("internal_api", "?"),
             "path": os.path.realpath(info["filepath"]), "threads": info.get("num_threads")}
            for info in threadpool_info()]


def _owner(path, before):
    """The top-level package (imported before dlcore) that ships the library at ``path``."""
    for name in before:
        module = sys.modules.get(name)
        if not getattr(module, "__path__", None) or not getattr(module, "__file__", None):
            continue  # only packages ship shared libraries in their folder
        folder = os.path.dirname(os.path.realpath(module.__file__))
        if folder and (path.startswith(folder + os.sep)
                       or os.path.basename(os.path.dirname(path)) in (f"{name}.libs", f"{name}_libs")):
            return name
    return None


# ---- the checks --------------------------------------------------------------------------

def _check_compiled():
    from ._info import build_info

    info = build_info()
    if "cython" in backends.available_backends():
        found = [Finding("ok", "compiled backend", f"present: {info['compiler']}, flags {info['compile_args']}")]
        if info["openmp"]:
            found.append(Finding("ok", "OpenMP", f"the kernels were built with OpenMP {info['openmp_version']}, "
                                                 f"at most {info.get('openmp_max_threads')} threads"))
        else:
            found.append(Finding("problem", "OpenMP", "the compiled kernels were built WITHOUT OpenMP: "
                                                      "they run on one core",
                                 "install OpenMP for your compiler (gcc: libgomp, part of gcc; clang on "
                                 "macOS: brew install libomp) and reinstall: pip install --force-reinstall ."))
        return found
    compilers = [c for c in ("cc", "gcc", "clang", "cl") if shutil.which(c)]
    fix = ("reinstall so the extensions compile: pip install --force-reinstall . "
           if compilers else "install a C compiler (Debian/Ubuntu: apt install build-essential; macOS: "
                             "xcode-select --install; Windows: Visual Studio Build Tools), then reinstall: "
                             "pip install --force-reinstall .")
    return [Finding("problem", "compiled backend",
                    f"missing, every kernel runs on the NumPy twin (10-100x slower): {info['compiled_error']}; "
                    f"C compilers on PATH: {', '.join(compilers) or 'none'}", fix)]


def _check_threads(pools, usable, total):
    found = []
    if usable < total:
        found.append(Finding("problem", "CPU affinity",
                             f"this process may use {usable} of the machine's {total} cores "
                             f"(cores {sorted(os.sched_getaffinity(0))})",
                             "if that is not deliberate, run without the restriction (taskset, numactl, "
                             "a container's --cpuset-cpus, a job scheduler's CPU binding)"))
    else:
        found.append(Finding("ok", "CPU affinity", f"all {total} cores usable"))
    for var in ("OMP_NUM_THREADS", "DLCORE_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(var)
        if not value:
            continue
        try:
            n = int(value.split(",")[0])
        except ValueError:
            found.append(Finding("problem", var, f"{var}={value!r} is not an integer", f"unset {var} or set it to "
                                                                                        "a whole number"))
            continue
        if n > usable:
            found.append(Finding("problem", "oversubscription",
                                 f"{var}={n} but only {usable} cores are usable: threads will wait for "
                                 "each other (each parallel region runs at the speed of its slowest thread)",
                                 f"export {var}={usable} (or unset it: dlcore uses the usable cores)"))
    n = backends.get_num_threads()
    if n > usable:
        found.append(Finding("problem", "oversubscription",
                             f"dlcore's kernels use {n} threads on {usable} usable cores",
                             f"dlcore.set_num_threads({usable})"))
    else:
        found.append(Finding("ok", "threads", f"dlcore's kernels use {n} thread(s) on {usable} usable core(s)"))
    for pool in pools:
        if pool["api"] == "blas" and pool["threads"] and pool["threads"] > usable:
            found.append(Finding("problem", "oversubscription",
                                 f"BLAS ({pool['library']}) uses {pool['threads']} threads on {usable} usable cores",
                                 f"export OPENBLAS_NUM_THREADS={usable} (or threadpoolctl.threadpool_limits)"))
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = None
    if load is not None and load > total:
        found.append(Finding("note", "machine load",
                             f"load average {load:.1f} on {total} cores: other processes compete for the "
                             "cores, so timings are noisy and slower than on a quiet machine"))
    return found


def _check_openmp_runtimes(pools):
    runtimes = [p for p in pools if p["api"] == "openmp"]
    paths = list(dict.fromkeys(p["path"] for p in runtimes))
    found = []
    listing = "; ".join(f"{p['path']} ({p['threads'] if p['threads'] is not None else '?'} threads)"
                        for p in runtimes) or "none"
    found.append(Finding("ok" if len(paths) <= 1 else "problem", "OpenMP runtimes",
                         f"{len(paths)} loaded: {listing}".replace("(1 threads)", "(1 thread)"),
                         None if len(paths) <= 1 else
                         "two OpenMP runtimes each keep a pool of threads (2x the threads on the same "
                         "cores, and spinning workers of one slow the other); import dlcore first, "
                         "use packages built against one runtime (e.g. all from conda-forge), or "
                         "limit the other library to one thread (threadpoolctl.threadpool_limits)"))
    names = list(sys.modules)
    before = [n for n in names[:names.index("dlcore")] if "." not in n] if "dlcore" in names else []
    owners = [(_owner(p, before), p) for p in paths]
    early = [(o, p) for o, p in owners if o]
    # A note, not a problem: dlcore sets no OpenMP wait policy, so a runtime another package
    # loaded (and configured) first serves dlcore's kernels as well as its own would.
    for owner, path in early:
        found.append(Finding("note", "import order",
                             f"{owner} was imported before dlcore and loaded the OpenMP runtime {path}; "
                             "dlcore's kernels share it"))
    return found


def _parent(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rpartition(")")[2].split()[1])  # the field after the state


def processes_with_dlcore():
    """``(related, others)``: pids of other processes with dlcore's compiled kernels mapped
    (Linux, same user), split into this process's children and siblings (workers of one
    job, e.g. a multiprocessing pool) and the rest of the machine. The parent is left out:
    it usually just waits for this process."""
    related, others = [], []
    try:
        me, uid = os.getpid(), os.getuid()
        parent = os.getppid()
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except (AttributeError, OSError):
        return related, others
    for pid in pids:
        if pid in (me, parent):
            continue
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            with open(f"/proc/{pid}/maps") as f:
                if "cython_kernels" not in f.read():
                    continue
            (related if _parent(pid) in (me, parent) else others).append(pid)
        except (OSError, ValueError, IndexError):  # gone meanwhile, or not ours to read
            continue
    return related, others


def _check_processes(usable):
    if "cython" not in backends.available_backends():
        return []
    related, others = processes_with_dlcore()
    n = backends.get_num_threads()
    found = []
    if related and (len(related) + 1) * n > usable:
        found.append(Finding("problem", "oversubscription",
                             f"{len(related) + 1} processes of this job (this one, its children and siblings) "
                             f"have dlcore's kernels loaded (pids "
                             f"{', '.join(map(str, [os.getpid()] + related[:6]))}{'...' if len(related) > 6 else ''}): "
                             f"at {n} thread(s) each, {(len(related) + 1) * n} threads for {usable} cores",
                             f"give each process {max(1, usable // (len(related) + 1))} thread(s): "
                             "dlcore.set_num_threads(...) in each, or DLCORE_NUM_THREADS in their environment"))
    if others:
        found.append(Finding("note", "other processes",
                             f"{len(others)} other process(es) of yours on this machine use dlcore's kernels too "
                             f"(pids {', '.join(map(str, others[:6]))}{'...' if len(others) > 6 else ''}); "
                             "they share the cores with this one"))
    return found


def _check_cpu():
    try:
        from numpy._core._multiarray_umath import __cpu_features__  # type: ignore[import-not-found]
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__
        except ImportError:
            return [Finding("note", "CPU features", "unknown (NumPy does not report them)")]
    wanted = ["SSE42", "AVX", "FMA3", "AVX2", "AVX512F", "ASIMD", "SVE"]
    have = [f for f in wanted if __cpu_features__.get(f)]
    missing = [f for f in wanted[:5] if f not in have and __cpu_features__.get("SSE2")]
    text = f"{', '.join(have) or 'baseline only'}"
    if missing and "ASIMD" not in have:
        text += f" (no {', '.join(missing)}: BLAS and NumPy fall back to narrower vector code)"
    return [Finding("ok", "CPU features", text)]


def _health_ops(seed=0):
    """``[(name, run)]``: a small conv (forward and backward), a max-pool (forward and
    backward) and an Adam step on fixed random data; ``run()`` returns the outputs."""
    from . import functional as F
    from . import nn, optim

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((8, 8, 32, 32)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.1
    image = rng.standard_normal((8, 16, 32, 32)).astype(np.float32)
    p0, g = rng.standard_normal((2, 200_000)).astype(np.float32)

    def conv():
        out, ctx = F.conv2d_forward(x, w, None, 1, 1)
        gx, gw, _ = F.conv2d_backward(np.ones_like(out), ctx)
        return {"conv": out, "conv grad_input": gx, "conv grad_weight": gw}

    def pool():
        pooled, _, ctx = F.max_pool2d_forward(image, 2)
        return {"pool": pooled, "pool grad": F.max_pool2d_backward(np.ones_like(pooled), ctx)}

    def adam():
        p = nn.Parameter(p0.copy())
        p.grad = g
        optim.Adam([p], lr=1e-3).step()
        return {"adam": p.data}

    return [("conv", conv), ("max-pool", pool), ("Adam", adam)]


def _scaled_error(got, ref):
    return float(np.max(np.abs(got - ref))) / max(1.0, float(np.max(np.abs(ref))))


def _check_health(budget=10.0):
    if "cython" not in backends.available_backends():
        return [Finding("note", "health check", "skipped: no compiled backend to compare with the twin")]
    ops = _health_ops()
    results, best = {"numpy": {}, "cython": {}}, {}
    for name in results:
        with backends.use_backend(name):
            for _, run in ops:
                results[name].update(run())

    def total(name):
        return sum(best[(name, op)] for op, _ in ops)

    def slower():
        return any(best[("cython", op)] > best[("numpy", op)] for op, _ in ops)

    # Each op timed alone, best of at least 7 alternating rounds (more, up to the budget,
    # while the compiled side looks slower): on a shared machine a round can be preempted.
    deadline, rounds = time.perf_counter() + budget, 0
    while rounds < 7 or (time.perf_counter() < deadline and slower()):
        for op, run in ops:
            for name in ("numpy", "cython"):  # alternate, so both see the same machine load
                with backends.use_backend(name):
                    start = time.perf_counter()
                    run()
                    elapsed = time.perf_counter() - start
                best[(name, op)] = min(best.get((name, op), float("inf")), elapsed)
        rounds += 1
        if time.perf_counter() > deadline + budget:  # a pathologically slow machine: stop
            break
    worst = max(_scaled_error(results["cython"][k], results["numpy"][k]) for k in results["numpy"])
    found = []
    if worst > 1e-4:
        found.append(Finding("problem", "health check",
                             f"the compiled kernels disagree with the NumPy twin by {worst:.1e}",
                             "run python -m dlcore verify to see which kernel; reinstall, and report "
                             "it with python -m dlcore info"))
    else:
        found.append(Finding("ok", "health check", f"conv, max-pool and Adam agree on both backends "
                                                   f"(max difference {worst:.1e})"))
    speedups = {op: best[("numpy", op)] / best[("cython", op)] for op, _ in ops}
    speedup = float(np.exp(np.mean(np.log(list(speedups.values())))))  # geometric mean
    per_op = ", ".join(f"{op} {x:.1f}x" for op, x in speedups.items())
    text = (f"compiled vs NumPy twin: {per_op} (geometric mean {speedup:.1f}x; best of {rounds}; "
            f"{total('cython') * 1e3:.1f} ms vs {total('numpy') * 1e3:.1f} ms in all)")
    if speedup < 1 / 1.2:
        found.append(Finding("problem", "health check", f"the compiled kernels are SLOWER: {text}",
                             "look at the thread, load and oversubscription findings above; compare with "
                             "DLCORE_NUM_THREADS=1 python -m dlcore doctor"))
    else:
        found.append(Finding("ok", "health check", text))
        slow = [op for op, x in speedups.items() if x < 1 / 1.2]
        if slow:
            found.append(Finding("note", "health check",
                                 f"{' and '.join(slow)} ran slower compiled than on the twin: with several "
                                 "threads on a loaded machine, OpenMP regions wait for descheduled threads "
                                 "(compare with DLCORE_NUM_THREADS=1)"))
    return found


def diagnose(health=True):
    """Every finding, in report order (a list of :class:`Finding`)."""
    pools = thread_pools()
    usable, total = usable_cores()
    findings = _check_compiled()
    for pool in pools:
        if pool["api"] == "blas":
            findings.append(Finding("ok", "BLAS", f"{pool['library']} at {pool['path']}, "
                                                  f"{pool['threads']} threads"))
    findings += _check_openmp_runtimes(pools)
    findings += _check_threads(pools, usable, total)
    findings += _check_processes(usable)
    findings += _check_cpu()
    if health:
        findings += _check_health()
    return findings


def report(findings):
    lines = []
    width = max(len(f.topic) for f in findings)
    for f in findings:
        mark = {"ok": "  ok   ", "note": " note  ", "problem": "PROBLEM"}[f.level]
        lines.append(f"[{mark}] {f.topic:<{width}}  {f.text}")
        if f.fix:
            lines.append(f"          {'':<{width}}  -> {f.fix}")
    problems = sum(f.level == "problem" for f in findings)
    lines.append(f"{problems} problem{'s' if problems != 1 else ''} found" if problems else "no problems found")
    return "\n".join(lines)


def add_parser(sub):
    p = sub.add_parser("doctor", help="check this machine and process for what makes dlcore slow or wrong")
    p.add_argument("--no-health", action="store_true", help="skip the few-second health check")
    p.set_defaults(func=lambda args: main(no_health=args.no_health))


def main(no_health=False):
    findings = diagnose(health=not no_health)
    print(report(findings))
    return 1 if any(f.level == "problem" for f in findings) else 0
