"""Thread policy: how many OpenMP threads a compiled kernel gets, decided in one place.

Every kernel takes ``n_threads`` as its last argument; the functional layer asks this
module for it. The rules, in order:

1. **The request.** :func:`set_num_threads`, else ``DLCORE_NUM_THREADS``, else
   ``OMP_NUM_THREADS`` (first entry of a list), else the usable cores
   (``os.sched_getaffinity``: a ``taskset`` or a container's CPU set counts, not the
   machine's cores). Accepted: integers (Python or NumPy) from 1 to :data:`MAX_THREADS`.
   More than the usable cores is allowed (thread-invariance tests run 3 threads on
   2 cores) but warned about: oversubscribed threads wait for each other at every barrier.
2. **The OpenMP limit.** When something lowered the OpenMP runtime's thread count below its
   start-up value -- ``threadpoolctl.threadpool_limits(1, user_api="openmp")``, a call
   to ``omp_set_num_threads``, ``torch.set_num_threads`` on a shared ``libgomp`` -- the
   kernels use no more than ``omp_get_max_threads()``, read at each call. A kernel's
   explicit ``num_threads`` would otherwise override that limit, so dlcore would ignore a
   limit that scikit-learn honours.
3. **A forked child runs serially.** GNU libgomp's thread pool does not survive
   ``fork()``: the child inherits a pool whose threads do not exist, and its first
   parallel region waits for them forever. After ``os.fork()`` (also ``multiprocessing``'s
   'fork' start method) every kernel in the child gets one thread, which never touches the
   pool. The parent is unaffected. (PyTorch does the same for its intra-op pool.)
4. **A busy machine gets fewer threads** (Linux, :data:`DYNAMIC`): when other processes
   keep cores busy, a parallel region waits at its closing barrier for a thread that
   shares a core with them (and, with sleeping OpenMP workers, for the scheduler to wake
   it), every region, every kernel. The kernels then use at most the cores left free:
   ``usable cores - other runnable tasks``. "Other" is the machine's runnable count (4th
   field of ``/proc/loadavg``, an instantaneous count, not the load averages) minus this
   process's own runnable threads (``/proc/self/task/*/stat``): right after a parallel
   kernel or a BLAS call our own OpenMP/OpenBLAS workers are still spinning, and counting
   them as someone else's load would make a quiet machine look busy and keep us serial
   (measured: 2 of our threads runnable after every 2-thread relu or matmul). The count is
   read at most every 0.1 s; the reduction uses the smallest of the last four readings (a
   short burst does not count, a process that keeps running does; one quiet reading lifts
   it). ``set_num_threads`` is then an upper bound, as with ``OMP_DYNAMIC``. Results do not
   depend on the thread count (every kernel is bitwise thread-invariant; tests/test_threads.py
   checks a LeNet-5 step whose thread count changes from call to call), only the speed
   does. Not applied when the CPU affinity set is smaller than the machine (a container's
   CPU set: the host's other tasks do not run on our cores), nor without ``/proc`` (macOS,
   Windows: the requested threads are used).
5. **Small work runs serially** (:func:`threads_for`): below a few tens of thousands of
   elements, waking a thread team costs more than it saves. Each threshold below says
   what was measured.

Why :data:`MAX_THREADS` is ``max(512, 4 * usable cores)``: libgomp creates every thread a
region asks for, each with its own stack; on the 2-core development machine 40,000 threads
failed with "libgomp: Thread creation failed" and 100,000 crashed the interpreter
(SIGSEGV). 512 is far below that, above any core count a student's machine has, and
still leaves room to oversubscribe for experiments; ``4 * cores`` keeps the same headroom
on very large servers.
"""
import operator
import os
import time
import warnings

__all__ = [
    "MAX_THREADS",
    "SERIAL_BELOW",
    "get_num_threads",
    "kernel_threads",
    "set_num_threads",
    "threads_for",
    "usable_cores",
]


def usable_cores():
    """Cores this process may run on (its CPU affinity set; ``os.cpu_count()`` without one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


MAX_THREADS = max(512, 4 * usable_cores())

# Work below which a kernel runs on one thread, per kind of kernel. Measured on the shared
# 2-core development machine (AMD EPYC), float32, medians of interleaved 1- and 2-thread
# runs; "speed-up" is time(1 thread) / time(2 threads).
SERIAL_BELOW = {
    # Elementwise activations, in relu-element equivalents (an exp-based element of
    # sigmoid/tanh/silu counts 2, a softmax-row element counts 8; activation.pyx applies
    # the same numbers inside the kernels). relu forward: 1.06x at 2**15 elements, 1.6x at
    # 2**16; sigmoid: 0.95x at 2**14, 1.75x at 2**15; 64-wide softmax rows: 1.6x at 2**13.
    "elementwise": 1 << 16,
    # Pooling, input plus output elements: one thread pools 2**16 elements in about
    # 0.04 ms (2x2 windows) to 0.5 ms (3x3 overlapping windows); a woken thread costs
    # microseconds on an idle machine and milliseconds on a loaded one.
    "pool": 1 << 16,
    # im2col/col2im, copied elements: about 10 microseconds of copying at 2**15
    # (conv.pyx applies this number as its _SERIAL_BELOW).
    "copy": 1 << 15,
    # Batch/instance norm, elements of x per kernel call (each call is one or two passes over
    # x, like relu's). Measured moments + affine forward, (16, 16, L) float32, medians of
    # 300 interleaved runs, on the development machine while other jobs loaded it (load 9
    # on 2 cores): 0.49x at 2**15, 0.63x at 2**16, 0.75x at 2**17 -- a woken thread costs
    # ~12 us there. The quiet-machine break-even of a relu-like pass is 2**15..2**16 (above),
    # so norm uses 2**16.
    "norm": 1 << 16,
}


def threads_for(work, kind="elementwise"):
    """Threads for a kernel call doing ``work`` units of ``kind`` (see :data:`SERIAL_BELOW`).

    1 below the kind's threshold, else :func:`kernel_threads`.
    """
    return kernel_threads() if work >= SERIAL_BELOW[kind] else 1


# ---- the request -------------------------------------------------------------------------

def _as_thread_count(n, name):
    """``n`` as an int in [1, MAX_THREADS], or ValueError naming ``name``."""
    if isinstance(n, bool):
        raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    try:
        value = operator.index(n)  # int, numpy.int64, ...; not 2.0 or "2"
    except TypeError:
        raise ValueError(f"{name} must be an integer >= 1, got {n!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value}")
    if value > MAX_THREADS:
        raise ValueError(
            f"{name} must be at most {MAX_THREADS} (dlcore's cap: max(512, 4 x the {usable_cores()} "
            f"usable cores); more threads than that make the OpenMP runtime fail), got {value}"
        )
    return value


def _oversubscription_warning(n, name, stacklevel):
    cores = usable_cores()
    if n > cores:
        warnings.warn(
            f"{name}={n} is more than the {cores} usable cores: the threads will share cores "
            "and wait for each other, usually slower than one thread per core",
            RuntimeWarning,
            stacklevel=stacklevel + 1,
        )


def _from_environment():
    """The request from DLCORE_NUM_THREADS or OMP_NUM_THREADS, else the usable cores."""
    for var in ("DLCORE_NUM_THREADS", "OMP_NUM_THREADS"):
        text = os.environ.get(var, "").strip()
        if not text:
            continue
        try:
            n = _as_thread_count(int(text.split(",")[0]), var)
        except ValueError as exc:
            warnings.warn(f"ignoring {var}={text!r}: {exc}", RuntimeWarning, stacklevel=4)
            continue
        _oversubscription_warning(n, var, stacklevel=4)
        return n
    return usable_cores()


_requested = _from_environment()


def set_num_threads(n):
    """Threads for the compiled kernels: an integer from 1 to :data:`MAX_THREADS`.

    More than the usable cores is allowed, with a warning. The kernels may still use
    fewer: see :func:`get_num_threads`.
    """
    global _requested
    n = _as_thread_count(n, "n (threads)")
    _oversubscription_warning(n, "n (threads)", stacklevel=2)
    if _in_forked_child and n > 1:
        warnings.warn("this process was forked: dlcore's kernels run on one thread in it "
                      "(the OpenMP thread pool does not survive fork())", RuntimeWarning, stacklevel=2)
    _requested = n


def get_num_threads():
    """Threads the compiled kernels use now.

    The request (:func:`set_num_threads`, ``DLCORE_NUM_THREADS``, ``OMP_NUM_THREADS``, the
    usable cores), capped by ``omp_get_max_threads()`` when that was lowered (e.g. by
    ``threadpoolctl.threadpool_limits``), and 1 in a forked child.
    """
    if _in_forked_child:
        return 1
    if _omp_max_threads is not None:
        limit = _omp_max_threads()
        if 1 <= limit < _omp_start_value:  # (libgomp wraps absurd OMP_NUM_THREADS to <= 0)
            return max(1, min(_requested, limit))
    return _requested


def kernel_threads():
    """Threads to give a kernel call now: :func:`get_num_threads`, fewer on a busy machine.

    (Rule 4 of the module docstring. Kept out of :func:`get_num_threads` so that the
    usual ``previous = get_num_threads(); ...; set_num_threads(previous)`` restores the
    setting, not a momentary reduction.)
    """
    n = get_num_threads()
    if DYNAMIC and n > 1:
        free = _free_cores()
        if free is not None:
            n = max(1, min(n, free))
    return n


# ---- a busy machine ----------------------------------------------------------------------

DYNAMIC = True  # rule 4; the test suite turns it off to run exactly the threads it asks for
_LOADAVG = "/proc/loadavg"
# A reading (/proc/loadavg + /proc/self/task/*/stat) took ~0.2 ms on the loaded 2-core
# development machine: at most one per 0.1 s keeps it under 0.2% of any run. Four readings
# (>= 0.3 s of sustained load) before reducing: a LeNet-5 step is ~15 ms quiet, so a burst
# shorter than ~20 steps never costs threads, while a competing process that keeps running
# (the busy-machine case, one CPU-bound process for seconds) is seen within half a second.
_READ_EVERY = 0.1  # seconds
_WINDOW = 4  # readings
_readings: list[int] = []  # the last _WINDOW counts of running threads
_last_read = -1.0


def _runnable_now():
    """Runnable tasks on the machine now (4th field of /proc/loadavg, 'running/total'), or None."""
    try:
        with open(_LOADAVG) as fh:
            return int(fh.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def _own_runnable():
    """This process's runnable threads (state R in /proc/self/task/*/stat), at least 1.

    The calling thread is one of them; spinning OpenMP and BLAS workers are the others.
    About 0.2 ms per reading on the loaded development machine, once per 0.1 s at most.
    """
    count = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:  # the thread ended meanwhile
            continue
        # "pid (comm) S ...": comm may contain spaces and parentheses, the state follows the last ')'
        end = stat.rfind(b")")  # -1 for an empty read of a thread that is ending
        if end >= 0 and stat[end + 2:end + 3] == b"R":
            count += 1
    return max(1, count)


def _others_runnable():
    """Runnable tasks that are not this process's threads, or None without /proc/loadavg."""
    running = _runnable_now()
    if running is None:
        return None
    return max(0, running - _own_runnable())


# The machine's CPUs, read once: os.cpu_count() reads /sys on every call (~6 us measured,
# more than a small kernel), and CPUs are not hot-plugged under a training run.
_MACHINE_CPUS = os.cpu_count()


def _free_cores():
    """Usable cores minus other runnable tasks (>= 1); None (no reduction) on a quiet
    machine or when unknown."""
    global _last_read
    cores = usable_cores()
    if cores < (_MACHINE_CPUS or cores):
        return None  # a CPU set smaller than the machine: the host's load is not ours
    now = time.monotonic()
    if now - _last_read >= _READ_EVERY:
        _last_read = now
        others = _others_runnable()
        if others is not None:
            _readings.append(others)
            del _readings[:-_WINDOW]
    if not _readings or min(_readings) == 0:
        return None  # quiet (or not read yet): the request stands, oversubscribed or not
    return max(1, cores - min(_readings))


# ---- the OpenMP runtime's limit ----------------------------------------------------------

def _openmp_accessor():
    """The compiled ``omp_get_max_threads()``, or None without compiled OpenMP kernels."""
    try:
        from .cython_kernels import _info
    except ImportError:
        return None
    return _info.openmp_max_threads if _info.compiled_info()["openmp"] else None


def _openmp_start_value():
    """nthreads-var as the runtime sets it at start-up: OMP_NUM_THREADS's first entry, else
    the processors available (what libgomp and LLVM's libomp both do). A value dlcore
    refuses (above MAX_THREADS, not an integer) counts as unset: no limit is read from it."""
    try:
        return _as_thread_count(int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0]), "")
    except ValueError:
        pass
    from .cython_kernels import _info

    return _info.openmp_num_procs()


_omp_max_threads = _openmp_accessor()
_omp_start_value = _openmp_start_value() if _omp_max_threads is not None else 1


# ---- fork ---------------------------------------------------------------------------------

_in_forked_child = False


def _after_fork_in_child():
    global _in_forked_child
    _in_forked_child = True


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
