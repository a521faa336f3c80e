"""The machine: what it is (the report header) and what it can do (limits measured in
the same run as the cases).

Limits at the run's thread count, each the best of several repeats (what the machine
*can* do) with the median kept as ``*_median``:

* ``gemm_gflops`` -- float32 GFLOP/s of a large square matmul through NumPy's BLAS
  (``2*n**3`` flops): the roof for convolution, which is GEMMs plus im2col/col2im;
* ``update_gbs`` -- an in-place update ``a += b`` on two 256 MiB float32 arrays, counted
  as 3 bytes moved per byte of ``a`` (read ``a``, read ``b``, write ``a`` back). This
  count is the real DRAM traffic whatever the CPU does with stores: every line of ``a``
  is read before it is written, so a write costs one line written back and nothing else;
* ``copy_gbs`` -- ``np.copyto(b, a)`` on the same arrays, counted as 2 bytes (read
  ``a``, write ``b``): what a plain copy *achieves*. With ordinary stores the CPU reads
  every line of ``b`` before overwriting it (write-allocate), so the traffic is really 3
  bytes and ``copy_gbs`` comes out near 2/3 of ``update_gbs``; it nears ``update_gbs``
  only if the copy uses streaming (non-temporal) stores, as glibc's memcpy does above
  a size threshold on some CPUs. Reported for context, not used as the floor.

``bandwidth_gbs`` is ``update_gbs_median``: the DRAM traffic rate, as a median because
the cases it is compared with are timed as medians (on the shared 2-core dev machine
the best of 7 repeats of the probe ranged over 37-75 GB/s within minutes, while the
cases' medians saw the average load; best against median made the ratios swing with one
lucky repeat). The floor of a memory-bound
case is ``bytes / bandwidth_gbs`` where ``bytes`` counts each array read once and each
array written once (``dlcore/bench/cases.py``). A kernel that writes fresh output reaches
it only with streaming stores (otherwise its writes cost double: a copy-like kernel with
ordinary stores sits at 1.5x the floor); an in-place update reaches it with plain stores.

Measured on the 2-core EPYC dev machine (one thread, 256 MiB arrays, a C probe, best of
7): memcpy 27.2 GB/s counted as 2 bytes (40.8 as 3), a streaming-store copy 39.5 GB/s
counted as 2, ``a += b`` 42.6 GB/s counted as 3 -- the copy's missing third is its
write-allocate, and a streaming copy reaches the update's rate. The old probe took the
larger of ``copy_gbs`` and ``update_gbs`` as if both were counted right (77.9 against
41 GB/s in one run); it now takes the one that is. The arrays are 256 MiB, eight times
that machine's 32 MiB L3, so no repeat is served from the cache, and NumPy's (which asks
Linux for huge pages on large arrays, as for the kernels' arrays: without them the same
loops ran about 30% slower in that VM).

The host's bandwidth also drifts while a run goes on: on that VM the two-thread probe gave
76 GB/s at the start of one run and 47 GB/s twenty minutes later, as the neighbours' load
changed. So a memory-bound case is not judged against the start-of-run floor alone:
:class:`FloorProbe` times the same probe *interleaved* with the case's own samples, and
the case's ratio uses that floor (``floor_gbs`` in the report; the start-of-run
``bandwidth_gbs`` stays in the header, and ``times_floor_start`` in the case's metrics).
"""
import os
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["cpu_model", "header", "measure_limits", "threadpool_summary", "load_average", "FloorProbe"]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average():
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return None


def threadpool_summary():
    """threadpoolctl's view of the BLAS and OpenMP runtimes loaded, or None without it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    keep = ("user_api", "internal_api", "prefix", "version", "num_threads", "threading_layer",
            "architecture", "filepath")
    return [{k: info.get(k) for k in keep if k in info} for info in threadpool_info()]


def header(threads):
    """Everything the reader needs to judge the numbers (JSON-serializable)."""
    import dlcore

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "threads": threads,
        "build_info": {k: (v if isinstance(v, (str, int, float, bool, type(None))) else str(v))
                       for k, v in dlcore.build_info().items()},
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_start": load_average(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def _threaded(pool, threads, op, arrays):
    """Run ``op`` on ``threads`` equal slices of the arrays, in parallel."""
    n = arrays[0].size
    bounds = [(i * n // threads, (i + 1) * n // threads) for i in range(threads)]

    def part(lo_hi):
        lo, hi = lo_hi
        op(*(a[lo:hi] for a in arrays))

    return lambda: list(pool.map(part, bounds))


def _add(x, y):
    """The floor's probe: an in-place update, 2 reads and 1 write per element."""
    x += y


def measure_limits(threads, quick=False):
    """Measure GEMM GFLOP/s and memory bandwidth now, with ``threads`` threads."""
    from ..train import blas_limit  # NumPy's BLAS held to the run's threads

    repeats = 3 if quick else 9
    limits = {"threads": threads}
    n = 1536 if quick else 2048
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    with blas_limit(threads):
        np.matmul(a, b, out=c)  # warm up the BLAS thread pool
        t, times = _median_time(lambda: np.matmul(a, b, out=c), repeats)
    flops = 2.0 * n ** 3
    limits["gemm_n"] = n
    limits["gemm_gflops"] = flops / min(times) / 1e9
    limits["gemm_gflops_median"] = flops / t / 1e9
    del a, b, c

    # 64 Mi float32 = 256 MiB per array: eight times a 32 MiB last-level cache.
    numel = (32 if quick else 64) * 2 ** 20
    src = np.ones(numel, dtype=np.float32)
    dst = np.zeros(numel, dtype=np.float32)
    limits["stream_mb"] = src.nbytes / 1e6
    with ThreadPoolExecutor(max_workers=threads) as pool:
        copy = _threaded(pool, threads, np.copyto, (dst, src))
        copy()
        t, times = _median_time(copy, repeats)
        limits["copy_gbs"] = 2 * src.nbytes / min(times) / 1e9
        limits["copy_gbs_median"] = 2 * src.nbytes / t / 1e9

        update = _threaded(pool, threads, _add, (dst, src))
        update()
        t, times = _median_time(update, repeats)
        limits["update_gbs"] = 3 * src.nbytes / min(times) / 1e9
        limits["update_gbs_median"] = 3 * src.nbytes / t / 1e9
    if threads > 1:  # how much one thread alone gets (context for the thread column)
        _, times = _median_time(lambda: np.copyto(dst, src), repeats)
        limits["copy_gbs_1thread"] = 2 * src.nbytes / min(times) / 1e9
        # The floor's probe on one thread: on a busy machine the kernels may run on fewer
        # threads than asked (dlcore.backends.threads.kernel_threads), the probe does not.
        t, _ = _median_time(lambda: _add(dst, src), repeats)
        limits["update_gbs_1thread_median"] = 3 * src.nbytes / t / 1e9
    del src, dst
    # exact traffic count, median as the cases' times; see the docstring
    limits["bandwidth_gbs"] = limits["update_gbs_median"]
    return limits


def torch_gemm_gflops(threads, n=1536, repeats=3):
    """torch's float32 matmul GFLOP/s (context: its BLAS may differ from NumPy's)."""
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    torch.mm(a, b)
    _, times = _median_time(lambda: torch.mm(a, b), repeats)
    return 2.0 * n ** 3 / min(times) / 1e9


class FloorProbe:
    """The floor's ``a += b`` probe as a runner of ``timing.time_case``: sampled in turn
    with a memory-bound case's implementations, so the case and its floor are measured at
    the same moments of a shared machine. ``gbs()`` is the median rate, counted as in
    :func:`measure_limits` (3 bytes per byte of ``a``)."""

    impl = "floor"
    SETTLE = 0.02  # seconds of idleness before each timed probe

    def __init__(self, threads, quick=False):
        numel = (32 if quick else 64) * 2 ** 20
        self._src = np.ones(numel, dtype=np.float32)
        self._dst = np.zeros(numel, dtype=np.float32)
        self._pool = ThreadPoolExecutor(max_workers=threads)
        self._fn = _threaded(self._pool, threads, _add, (self._dst, self._src))
        self._fn()  # the pages mapped and the threads started before any timed call
        self.estimate, _ = _median_time(self._fn, 1)
        self.ok, self.number, self.times = True, 1, []

    def sample(self):
        # Let the thread pools of the call before (OpenMP workers spin a while after a
        # parallel region) go idle first: measured, a probe right after a 2-thread relu
        # got 39 GB/s where one 50 ms later got 48, the same as back-to-back probes.
        time.sleep(self.SETTLE)
        start = time.perf_counter()
        self._fn()
        self.times.append(time.perf_counter() - start)

    def gbs(self):
        if not self.times:
            return None
        return 3 * self._src.nbytes / statistics.median(self.times) / 1e9

    def close(self):
        self._pool.shutdown()
        self._fn = self._src = self._dst = None
