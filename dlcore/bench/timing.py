"""Timing: runners for one implementation of a case, and the interleaved schedule.

A *runner* builds a case for one implementation (``cython``, ``cython@1`` -- the compiled
backend on one thread --, ``numpy``, ``torch``), warms it up, picks how many calls make
one sample, then hands out samples (seconds per call) on request. :func:`time_case`
asks every runner of a case for one sample per round, rotating the order each round, so
all implementations share the machine's noise; it stops after ``max_repeats`` rounds or
when the case's time budget is spent (never before ``min_repeats``).

The torch runner can live in a worker process (:mod:`dlcore.bench._worker`) when torch's
presence slows our kernels (two OpenMP runtimes); it answers the same three requests.
"""
import contextlib
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from .cases import Unavailable, to_numpy

# The folder holding the imported dlcore package (site-packages when installed).
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

__all__ = ["LocalRunner", "Worker", "WorkerRunner", "TorchWorker", "time_case", "impl_settings"]

# A sample lasts at least this long (many calls for a tiny case), so timer resolution and
# per-sample overhead vanish.
MIN_SAMPLE_SECONDS = 0.02
MAX_NUMBER = 10_000
# One call of a long case (an epoch) longer than this is cut down to a fraction (seconds).
QUICK_CALL_CAP = 5.0
FULL_CALL_CAP = 120.0


def impl_settings(impl, threads):
    """(kind, backend, threads) for an implementation name: ``cython@1`` is one thread;
    ``torch@own`` is torch in its own process with its default settings (a Worker)."""
    name, _, forced = impl.partition("@")
    threads = int(forced) if forced.isdigit() else threads
    if name == "torch":
        return "torch", None, threads
    return "dlcore", name, threads


@contextlib.contextmanager
def run_context(impl, threads, training=False):
    """The backend, OpenMP and BLAS thread settings an implementation runs under.

    ``training``: a whole training step or epoch; dlcore's BLAS then gets what its Trainer
    gives it (:func:`dlcore.train.resolve_blas_threads`), so the case times what a user runs,
    busy-machine rule included. A kernel case runs on exactly ``threads`` threads: on a
    loaded machine the rule (``dlcore.backends.threads``, rule 4) would otherwise give it
    fewer than the column header says, and the memory-bound ratios would set a one-thread
    kernel against a two-thread bandwidth floor.
    """
    from dlcore.train import blas_limit, resolve_blas_threads

    kind, backend, n = impl_settings(impl, threads)
    if kind == "torch":
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            with blas_limit(n):
                yield
        finally:
            torch.set_num_threads(previous)
        return
    import dlcore

    from dlcore.backends import threads as thread_policy

    previous, dynamic = dlcore.get_num_threads(), thread_policy.DYNAMIC
    dlcore.set_num_threads(n)
    thread_policy.DYNAMIC = dynamic and training
    try:
        with dlcore.use_backend(backend):
            blas = resolve_blas_threads("auto") if training else None
            with blas_limit(n if blas is None else blas):
                yield
    finally:
        thread_policy.DYNAMIC = dynamic
        dlcore.set_num_threads(previous)


def _time_calls(fn, number):
    """Seconds per call of ``number`` back-to-back calls, garbage collector off (as timeit)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - start) / number
    finally:
        if enabled:
            gc.enable()


class LocalRunner:
    """One implementation of one case, in this process."""

    def __init__(self, case, impl, threads, quick=False):
        self.case, self.impl, self.threads, self.quick = case, impl, threads, quick
        self.kind, self.backend, self.n_threads = impl_settings(impl, threads)
        self.ok, self.reason = False, ""
        self.number, self.first, self.scale, self.note = 1, math.nan, 1.0, ""
        self.times = []
        self._fn = None
        self.default_settings = False  # True: run under the library's own defaults (torch@own)

    def _context(self):
        if self.default_settings:
            return contextlib.nullcontext()
        return run_context(self.impl, self.threads, training=self.case.group == "model")

    def _build(self):
        if self.kind == "dlcore":
            import dlcore

            if self.backend not in dlcore.available_backends():
                raise Unavailable(f"backend {self.backend!r} not available")
        return self.case.build(self.kind, self.quick)

    def start(self):
        """Build, warm up (one call, timed as ``first``), choose calls per sample.
        Returns ``self.ok``; on failure ``self.reason`` says why."""
        try:
            bound = self._build()
            self._fn, self.scale, self.note = bound.fn, bound.scale, bound.note
            with self._context():
                if bound.warmup is not None:  # a long case: warm up on a fraction of it
                    self.first = _time_calls(bound.warmup, 1) / bound.warmup_fraction
                    estimate = _time_calls(bound.warmup, 1) / bound.warmup_fraction
                else:
                    self.first = _time_calls(self._fn, 1)
                    # A second call: caches and allocator warm, a better per-call estimate.
                    estimate = _time_calls(self._fn, 1) if self.first < 0.25 else self.first
        except Unavailable as exc:
            self.reason = str(exc)
            return False
        except Exception as exc:  # noqa: BLE001
            # An API not written yet, or broken: reported in the table, never fatal.
            self.reason = f"{type(exc).__name__}: {exc}"[:200]
            return False
        cap = QUICK_CALL_CAP if self.quick else FULL_CALL_CAP
        if bound.truncate is not None and estimate > cap:
            # A whole epoch on an overloaded machine: time a fraction, scaled up, and say so.
            old_scale = self.scale
            bound = bound.truncate(cap / estimate)
            self._fn, self.scale, self.note = bound.fn, bound.scale, bound.note
            self.first *= old_scale / self.scale  # still an estimate of one (shorter) call
            estimate = cap
        self.estimate = estimate
        self.number = max(1, min(MAX_NUMBER, math.ceil(MIN_SAMPLE_SECONDS / max(estimate, 1e-9))))
        self.ok = True
        return True

    def sample(self):
        with self._context():
            t = _time_calls(self._fn, self.number)
        self.times.append(t)
        return t

    def result(self):
        """The result of one call on a fresh build (same seeded inputs), as float64 arrays."""
        bound = self._build()
        with self._context():
            return to_numpy(bound.fn())

    def close(self):
        self._fn = None


class Worker:
    """A child process running one implementation's runners (``python -m dlcore.bench._worker``).

    Used for the torch column when torch must not share our process, and to time a
    compiled case in a process that never imported torch (the torch-interference probe).
    """

    def __init__(self, threads, impl="torch", with_torch=False, default_threads=False, label=None):
        env = dict(os.environ)
        env.setdefault("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
        command = [sys.executable, "-m", "dlcore.bench._worker", "--threads", str(threads),
                   "--impl", impl] + (["--with-torch"] if with_torch else []) + (
                   ["--default-threads"] if default_threads else [])
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            # `-m` puts the cwd first on sys.path: run beside the dlcore this process
            # imported, never in a source tree whose package has no compiled kernels.
            cwd=_PACKAGE_PARENT,
        )
        self.impl = label or impl
        self.info = self.request({"cmd": "hello"})

    def request(self, message):
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the benchmark worker process exited unexpectedly")
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.request({"cmd": "exit"})
            except (RuntimeError, OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


TorchWorker = Worker  # the usual use


class WorkerRunner:
    """One implementation of a case (the worker's), run by a :class:`Worker`."""

    def __init__(self, worker, case, threads, quick=False):
        self.worker, self.case, self.impl, self.quick = worker, case, worker.impl, quick
        self.ok, self.reason = False, ""
        self.number, self.first, self.scale, self.note = 1, math.nan, 1.0, ""
        self.times = []

    def start(self):
        reply = self.worker.request({"cmd": "start", "key": self.case.key, "quick": self.quick})
        self.ok, self.reason = reply["ok"], reply.get("reason", "")
        if self.ok:
            self.number, self.first, self.estimate = reply["number"], reply["first"], reply["estimate"]
            self.scale, self.note = reply["scale"], reply["note"]
        return self.ok

    def sample(self):
        reply = self.worker.request({"cmd": "sample"})
        if not reply["ok"]:
            raise RuntimeError(f"{self.impl} worker: {reply['reason']}")
        t = reply["t"]
        self.times.append(t)
        return t

    def result(self):
        fd, path = tempfile.mkstemp(suffix=".npz")
        os.close(fd)
        try:
            reply = self.worker.request({"cmd": "result", "path": path})
            if not reply["ok"]:
                raise RuntimeError(reply["reason"])
            with np.load(path) as data:
                return tuple(data[f"r{i}"] for i in range(len(data.files)))
        finally:
            os.unlink(path)

    def close(self):
        self.worker.request({"cmd": "close"})


def time_case(runners, budget, min_repeats=3, max_repeats=25):
    """Interleaved samples of every started runner until the budget (seconds) is spent.

    Returns the number of rounds run. Each runner's ``times`` holds its samples.
    """
    live = [r for r in runners if r.ok]
    if not live:
        return 0
    round_cost = sum(r.estimate * r.number for r in live)
    planned = max(min_repeats, min(max_repeats, int(budget / max(round_cost, 1e-9))))
    start = time.perf_counter()
    rounds = 0
    for i in range(planned):
        shift = i % len(live)
        for runner in live[shift:] + live[:shift]:
            runner.sample()
        rounds += 1
        if rounds >= min_repeats and time.perf_counter() - start > 1.5 * budget:
            break
    return rounds

