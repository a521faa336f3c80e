"""dlcore doctor finds problems planted in a child process, and passes a clean one."""
import glob
import os
import subprocess
import sys

import pytest

import dlcore
from dlcore import backends

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(dlcore.__file__)))
CORES = os.cpu_count() or 1


def doctor(prelude="", args=("--no-health",), **env_changes):
    """Run ``prelude`` then ``dlcore doctor`` in a fresh interpreter; (exit status, stdout)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "DLCORE_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                        "DLCORE_REQUIRE_COMPILED", "DLCORE_BACKEND", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = PACKAGE_PARENT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_changes)
    code = f"{prelude}\nimport sys\nfrom dlcore.__main__ import main\nsys.exit(main(['doctor', *{list(args)!r}]))"
    run = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, env=env,
                         timeout=120, cwd=PACKAGE_PARENT)  # not the source tree, when run from the checkout
    assert "Traceback" not in run.stderr, run.stderr
    return run.returncode, run.stdout


def usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return CORES


COMPILED = pytest.mark.skipif("cython" not in dlcore.available_backends(), reason="needs the compiled backend")


def problems(out):
    return [line for line in out.splitlines() if line.startswith("[PROBLEM]")]


@COMPILED
def test_clean_process_has_no_problems():
    if usable_cores() < CORES:
        pytest.skip("this test process is itself limited to fewer cores than the machine has")
    status, out = doctor()
    assert "[  ok   ] compiled backend" in out
    assert status == 0 and out.rstrip().endswith("no problems found"), out


@COMPILED
def test_clean_process_passes_the_health_check():
    """The kernels must agree on every run. The speed verdict is a timing on a machine shared
    with other jobs, so a run whose only problem is "SLOWER" is repeated, up to three runs:
    a compiled backend that really is slower fails all three."""
    if usable_cores() < CORES:
        pytest.skip("this test process is itself limited to fewer cores than the machine has")
    runs = []
    for _ in range(3):
        status, out = doctor(args=())
        runs.append(out)
        assert "health check      conv, max-pool and Adam agree on both backends" in out, out
        assert "compiled vs NumPy twin: conv" in out, out
        found = problems(out)
        assert all("the compiled kernels are SLOWER" in line for line in found), out
        assert status == (1 if found else 0), out
        if not found:
            return
    pytest.fail("the compiled kernels were slower than the NumPy twin in 3 runs:\n" + "\n".join(runs))


@COMPILED
def test_health_check_finds_a_compiled_kernel_that_disagrees():
    # Planted after dlcore imports: the compiled adam_step, then a shift of 1e-2.
    prelude = (
        "from dlcore import backends\n"
        "compiled = backends.backend('cython')\n"
        "original = compiled.adam_step\n"
        "def adam_step(param, *args):\n"
        "    original(param, *args)\n"
        "    param += 1e-2\n"
        "compiled.adam_step = adam_step\n"
    )
    status, out = doctor(prelude, args=())
    assert status == 1, out
    assert "[PROBLEM] health check      the compiled kernels disagree with the NumPy twin by " in out, out
    assert "python -m dlcore verify" in out


@COMPILED
def test_health_check_finds_compiled_kernels_slower_than_the_twin():
    # Every compiled kernel sleeps 0.2 s per call: each op of the check then takes several
    # times the twin's time, however loaded the machine is.
    prelude = (
        "import functools, time\n"
        "from dlcore import backends\n"
        "compiled = backends.backend('cython')\n"
        "def slowed(kernel):\n"
        "    @functools.wraps(kernel)\n"
        "    def run(*args):\n"
        "        time.sleep(0.2)\n"
        "        return kernel(*args)\n"
        "    return run\n"
        "for name in backends.KERNEL_NAMES:\n"
        "    setattr(compiled, name, slowed(getattr(compiled, name)))\n"
    )
    status, out = doctor(prelude, args=())
    assert status == 1, out
    assert "[PROBLEM] health check      the compiled kernels are SLOWER" in out, out
    assert "agree on both backends" in out


def test_finds_a_blocked_compiled_backend():
    status, out = doctor("import sys; sys.modules['dlcore.backends.cython_kernels'] = None")
    assert status == 1
    assert "[PROBLEM] compiled backend  missing, every kernel runs on the NumPy twin" in out
    assert "-> " in out and "pip install --force-reinstall ." in out


def test_finds_omp_num_threads_larger_than_the_cores():
    status, out = doctor(OMP_NUM_THREADS=str(usable_cores() + 2))
    assert status == 1
    assert f"OMP_NUM_THREADS={usable_cores() + 2} but only {usable_cores()} cores are usable" in out
    assert f"export OMP_NUM_THREADS={usable_cores()}" in out


@pytest.mark.skipif(CORES < 2 or not hasattr(os, "sched_setaffinity"), reason="needs 2 cores and Linux affinity")
def test_finds_affinity_limited_to_one_core():
    core = min(os.sched_getaffinity(0))
    status, out = doctor(f"import os; os.sched_setaffinity(0, {{{core}}})")
    assert status == 1
    assert f"[PROBLEM] CPU affinity      this process may use 1 of the machine's {CORES} cores" in out


@pytest.mark.torch
def test_finds_torch_imported_first():
    pytest.importorskip("torch")
    status, out = doctor("import torch")
    assert "torch was imported before dlcore and loaded the OpenMP runtime" in out or \
        "OpenMP runtimes   2 loaded" in out, out
    # one runtime shared is a note; two runtimes (a second libgomp copy) is a problem
    assert "[ note  ] import order" in out or (status == 1 and "[PROBLEM] OpenMP runtimes" in out), out


def test_finds_two_openmp_runtimes():
    sklearn = pytest.importorskip("sklearn")
    vendored = glob.glob(os.path.join(os.path.dirname(sklearn.__file__), "..", "scikit_learn.libs", "libgomp*"))
    if not vendored:
        pytest.skip("no second OpenMP runtime (scikit-learn's vendored libgomp) on this machine")
    if "cython" not in dlcore.available_backends():
        pytest.skip("dlcore's own OpenMP runtime comes with the compiled backend")
    status, out = doctor(f"import ctypes; ctypes.CDLL({os.path.realpath(vendored[0])!r})")
    assert status == 1
    assert "[PROBLEM] OpenMP runtimes   2 loaded" in out and "libgomp-" in out


def test_works_without_threadpoolctl():
    status, out = doctor("import sys; sys.modules['threadpoolctl'] = None")
    assert "OpenMP runtimes" in out
    if "cython" in dlcore.available_backends():
        assert "(? threads)" in out  # found in /proc/self/maps, thread count unknown


@pytest.mark.skipif("cython" not in dlcore.available_backends() or not os.path.isdir("/proc"),
                    reason="needs the compiled backend and Linux /proc")
def test_finds_processes_of_one_job_oversubscribing_the_cores():
    # Two workers of the child's own process group load dlcore and wait; with dlcore's
    # default thread count each, three processes want more threads than there are cores.
    prelude = (
        "import subprocess, sys, time\n"
        "workers = [subprocess.Popen([sys.executable, '-c', "
        "'import dlcore, sys; print(1, flush=True); sys.stdin.read()'], "
        "stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(2)]\n"
        "for w in workers: w.stdout.readline()\n"
        "import atexit\n"
        "atexit.register(lambda: [w.kill() for w in workers])\n"
    )
    status, out = doctor(prelude)
    assert status == 1
    assert "[PROBLEM] oversubscription  3 processes of this job (this one, its children and siblings) have dlcore's kernels loaded" in out, out
