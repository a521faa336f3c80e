"""The fuzz suite (tests/fuzz_cases.py) in one subprocess: a segfault, an abort or a hang
there fails this test, with faulthandler's traceback and the failing example, instead of
killing the test run. Every example of every case runs in that one process, which keeps
the cost to one interpreter start (about 10 s in all with the default 25 examples per
case; ``DLCORE_FUZZ_EXAMPLES=500`` for a long run, about a minute on 2 cores).
"""
import os
import subprocess
import sys

import pytest

import dlcore

pytest.importorskip("torch")
pytest.importorskip("sklearn")

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.torch
def test_fuzz_cases_in_a_subprocess():
    examples = int(os.environ.get("DLCORE_FUZZ_EXAMPLES", "25"))
    timeout = 300 + 2 * examples  # seconds; a hang fails the test instead of blocking CI
    cmd = [sys.executable, "-X", "faulthandler", "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "-W", "ignore::RuntimeWarning", os.path.join(HERE, "fuzz_cases.py")]
    try:
        proc = subprocess.run(cmd, cwd=os.path.dirname(os.path.dirname(dlcore.__file__)),  # the dlcore under test
                               capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the fuzz suite hung (no result in {timeout} s):\n{(exc.stdout or '')[-3000:]}")
    report = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode >= 0, f"the fuzz process died by signal {-proc.returncode}:\n{report}"
    assert proc.returncode == 0, report
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1], report
