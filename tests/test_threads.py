"""The thread policy (dlcore/backends/threads.py): bounds, the OpenMP limit, fork safety."""
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import dlcore
import dlcore.functional as F
from dlcore.backends import threads

COMPILED_OPENMP = "cython" in dlcore.available_backends() and dlcore.build_info()["openmp"]


@pytest.fixture
def restore_threads():
    previous = threads._requested
    yield
    threads._requested = previous


def _run(code, timeout=120, **env):
    full_env = {**os.environ, **env}
    for var in ("DLCORE_NUM_THREADS", "OMP_NUM_THREADS"):
        if var not in env:
            full_env.pop(var, None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, timeout=timeout,
                          cwd=os.path.dirname(os.path.dirname(dlcore.__file__)))


def test_accepts_python_and_numpy_integers(restore_threads):
    for n in (1, np.int64(1), np.int32(1), np.uint8(1)):
        dlcore.set_num_threads(n)
        assert dlcore.get_num_threads() == 1
        assert type(threads._requested) is int


@pytest.mark.parametrize("bad", [0, -1, np.int64(0), 1.5, 2.0, "2", True, None, np.float64(2)])
def test_rejects_non_positive_and_non_integers(bad, restore_threads):
    with pytest.raises(ValueError, match=r"n \(threads\) must be an integer >= 1"):
        dlcore.set_num_threads(bad)


@pytest.mark.parametrize("huge", [threads.MAX_THREADS + 1, 100_000, 2**31, 2**70, np.int64(2**40)])
def test_rejects_counts_above_the_cap_naming_the_value(huge, restore_threads):
    before = dlcore.get_num_threads()
    with pytest.raises(ValueError, match=rf"n \(threads\) must be at most {threads.MAX_THREADS}.*got {int(huge)}"):
        dlcore.set_num_threads(huge)
    assert dlcore.get_num_threads() == before  # unchanged by the refused call


def test_cap_documented_value():
    assert threads.MAX_THREADS == max(512, 4 * threads.usable_cores())
    assert threads.MAX_THREADS < 40_000  # where libgomp starts failing to create threads


def test_warns_above_usable_cores(restore_threads):
    n = threads.usable_cores() + 1
    with pytest.warns(RuntimeWarning, match=f"more than the {threads.usable_cores()} usable cores"):
        dlcore.set_num_threads(n)
    assert threads._requested == n
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dlcore.set_num_threads(threads.usable_cores())  # no warning at the core count


def test_threads_for_is_serial_below_threshold(restore_threads):
    dlcore.set_num_threads(2)
    for kind, threshold in threads.SERIAL_BELOW.items():
        assert threads.threads_for(threshold - 1, kind) == 1
        assert threads.threads_for(threshold, kind) == dlcore.get_num_threads()


@pytest.mark.parametrize("var", ["DLCORE_NUM_THREADS", "OMP_NUM_THREADS"])
@pytest.mark.parametrize("value", ["100000", "0", "abc", "2147483648"])
def test_bad_environment_values_warn_and_fall_back(var, value):
    result = _run(f"""
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import dlcore
        import numpy as np, dlcore.functional as F
        from dlcore.backends.threads import usable_cores
        assert dlcore.get_num_threads() == usable_cores(), dlcore.get_num_threads()
        assert any("ignoring {var}" in str(w.message) for w in caught), [str(w.message) for w in caught]
        F.relu(np.ones(10**6, np.float32))
        print("ok")
        """, **{var: value})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_environment_above_cores_warns_but_is_used():
    n = threads.usable_cores() + 1
    result = _run("""
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import dlcore
        print(dlcore.get_num_threads(), any("usable cores" in str(w.message) for w in caught))
        """, DLCORE_NUM_THREADS=str(n))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(n), "True"]


@pytest.mark.skipif(not COMPILED_OPENMP, reason="needs the compiled OpenMP kernels")
def test_threadpoolctl_limits_dlcore(restore_threads, monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    dlcore.set_num_threads(2)
    seen = []
    backend = dlcore.backends.backend("cython")
    real = backend.relu_forward

    def spy(x, out, n_threads):
        seen.append(n_threads)
        return real(x, out, n_threads)

    monkeypatch.setattr(backend, "relu_forward", spy)
    x = np.ones(1 << 20, np.float32)
    with dlcore.use_backend("cython"):
        with threadpoolctl.threadpool_limits(1, user_api="openmp"):
            assert dlcore.get_num_threads() == 1
            F.relu(x)
        assert dlcore.get_num_threads() == 2
        F.relu(x)
    assert seen == [1, 2]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
def test_forked_child_does_not_hang(how):
    # The parent runs parallel kernels first: that is what starts libgomp's thread pool,
    # which a forked child inherits without its threads. Before the fix the child hung.
    code = """
        import os, warnings, numpy as np, dlcore, dlcore.functional as F, dlcore.nn as nn
        warnings.simplefilter("ignore", RuntimeWarning)
        dlcore.backends.threads.DYNAMIC = False
        dlcore.set_num_threads(2)
        x = np.random.default_rng(0).standard_normal((8, 4, 64, 64)).astype(np.float32)
        conv = nn.Conv2d(4, 8, 3)
        def work():
            y = F.relu(x.reshape(-1))
            out, _, ctx = F.max_pool2d_forward(x, 2)
            F.max_pool2d_backward(np.ones_like(out), ctx)
            conv(x)
            return float(y.sum()) + float(out.sum())
        expected = work()
    """
    if how == "os.fork":
        code += """
        pid = os.fork()
        if pid == 0:
            ok = work() == expected and dlcore.get_num_threads() == 1
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert dlcore.get_num_threads() == 2  # the parent keeps its threads
        print("ok")
        """
    else:
        code += """
        import multiprocessing as mp
        def child(_):
            return work(), dlcore.get_num_threads()
        with mp.get_context("fork").Pool(2) as pool:
            results = pool.map(child, range(2))
        assert results == [(expected, 1)] * 2, results
        print("ok")
        """
    result = _run(code, timeout=90)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.fixture
def dynamic(monkeypatch):
    """DYNAMIC on, with a fake runnable-task count; yields the list of counts to return."""
    counts = []
    monkeypatch.setattr(threads, "DYNAMIC", True)
    monkeypatch.setattr(threads, "_readings", [])
    monkeypatch.setattr(threads, "_last_read", -1.0)
    monkeypatch.setattr(threads, "_READ_EVERY", 0.0)  # a new reading at every call
    monkeypatch.setattr(threads, "_runnable_now", lambda: counts.pop(0) if counts else None)
    monkeypatch.setattr(threads, "_own_runnable", lambda: 1)  # only the calling thread
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "_MACHINE_CPUS", 4)
    monkeypatch.setattr(threads, "_requested", 4)
    monkeypatch.setattr(threads, "_omp_max_threads", None)
    return counts


def test_busy_machine_gets_the_free_cores(dynamic):
    dynamic += [1, 3, 3, 3, 3]  # quiet (only us), then two other tasks keep running
    assert threads.get_num_threads() == 4  # the setting itself never moves
    assert threads.kernel_threads() == 4
    assert threads.kernel_threads() == 4  # min of the window still sees the quiet reading
    for _ in range(3):
        threads.kernel_threads()
    assert threads.kernel_threads() == 2  # 4 cores - 2 others
    dynamic += [9] * 4
    for _ in range(4):
        threads.kernel_threads()
    assert threads.kernel_threads() == 1  # never below one


def test_short_burst_does_not_reduce(dynamic):
    dynamic += [1, 1, 6, 1]
    assert [threads.kernel_threads() for _ in range(4)] == [4, 4, 4, 4]


def test_no_reduction_inside_a_smaller_cpu_set(dynamic, monkeypatch):
    monkeypatch.setattr(threads, "_MACHINE_CPUS", 64)  # a container's 4 of 64 CPUs
    dynamic += [50] * 5
    assert [threads.kernel_threads() for _ in range(5)] == [4] * 5


def test_no_reduction_when_switched_off(dynamic, monkeypatch):
    monkeypatch.setattr(threads, "DYNAMIC", False)
    dynamic += [50] * 5
    assert [threads.kernel_threads() for _ in range(5)] == [4] * 5


def test_runnable_count_is_read_on_linux():
    if not os.path.exists("/proc/loadavg"):
        pytest.skip("no /proc/loadavg")
    assert threads._runnable_now() >= 1  # at least this process


def test_own_spinning_workers_are_not_someone_elses_load(dynamic, monkeypatch):
    # Right after a parallel kernel our OpenMP/BLAS workers still spin: the machine's runnable
    # count includes them. Before the fix they counted as other load and a quiet machine
    # looked busy, so dlcore stayed serial.
    monkeypatch.setattr(threads, "_own_runnable", lambda: 3)  # us + two spinning workers
    dynamic += [3] * 5  # nobody else
    assert [threads.kernel_threads() for _ in range(5)] == [4] * 5
    dynamic += [5] * 5  # two other tasks as well
    assert [threads.kernel_threads() for _ in range(5)][-1] == 2


@pytest.mark.skipif(not COMPILED_OPENMP or not os.path.exists("/proc/self/task"),
                    reason="needs the compiled OpenMP kernels and /proc")
def test_quiet_machine_keeps_all_threads_after_parallel_work(monkeypatch):
    """The real /proc/self/task reading, on a machine made to look quiet (runnable tasks = ours)."""
    monkeypatch.setattr(threads, "DYNAMIC", True)
    monkeypatch.setattr(threads, "_readings", [])
    monkeypatch.setattr(threads, "_last_read", -1.0)
    monkeypatch.setattr(threads, "_READ_EVERY", 0.0)
    monkeypatch.setattr(threads, "_runnable_now", threads._own_runnable)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "_MACHINE_CPUS", 2)
    monkeypatch.setattr(threads, "_requested", 2)
    monkeypatch.setattr(threads, "_omp_max_threads", None)
    x = np.ones(1 << 20, np.float32)
    m = np.ones((256, 256), np.float32)
    seen = []
    with dlcore.use_backend("cython"):
        for _ in range(20):
            F.relu(x)  # 2 threads: a worker spins afterwards
            m @ m  # BLAS workers too
            seen.append(threads.kernel_threads())
    assert seen == [2] * 20


def test_own_runnable_counts_this_thread():
    if not os.path.exists("/proc/self/task"):
        pytest.skip("no /proc")
    assert 1 <= threads._own_runnable() <= len(os.listdir("/proc/self/task"))
    assert threads._others_runnable() >= 0


@pytest.mark.skipif(not COMPILED_OPENMP, reason="needs the compiled OpenMP kernels")
def test_lenet_step_bitwise_whatever_the_thread_count_per_call(monkeypatch):
    """A busy machine changes the thread count from one kernel call to the next; the result
    of a LeNet-5 training step (forward, cross-entropy, backward, Adam) must not change."""
    from dlcore import nn, optim
    from dlcore.models import LeNet5

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 64)

    def train(free_cores):
        monkeypatch.setattr(threads, "_free_cores", free_cores)
        dlcore.manual_seed(0)
        model = LeNet5()
        criterion = nn.CrossEntropyLoss()
        optimizer = optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(2):
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            model.backward(criterion.backward())
            optimizer.step()
        return loss, [p.data.copy() for p in model.parameters()]

    monkeypatch.setattr(threads, "DYNAMIC", True)
    monkeypatch.setattr(threads, "_requested", 3)
    calls = []

    def varying():
        calls.append(None)
        return 1 + len(calls) % 3  # 2, 3, 1, 2, ...
    with warnings.catch_warnings(), dlcore.use_backend("cython"):
        warnings.simplefilter("ignore", RuntimeWarning)  # 3 threads on 2 cores
        loss_1, params_1 = train(lambda: 1)
        loss_n, params_n = train(varying)
    assert len(calls) > 10  # the varying count was really asked for
    assert loss_1 == loss_n
    for a, b in zip(params_1, params_n):
        np.testing.assert_array_equal(a, b)
