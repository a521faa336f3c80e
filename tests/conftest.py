"""Shared fixtures (every kernel and layer test runs on every backend, dtype and thread count)
and the suite's hooks: the ``torch`` marker, and CI's check that the oracle tests ran.

Helpers that test files import (tolerances, finite differences, the torch module) are in
``helpers.py``; test files never import this file.
"""
import os
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import dlcore
from dlcore import backends
from helpers import torch

# Compiled first calls and hypothesis' shrinking are slow on a shared 2-core machine.
settings.register_profile(
    "dlcore", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("ci", parent=settings.get_profile("dlcore"), max_examples=60)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dlcore"))

BACKENDS = dlcore.available_backends()
if os.environ.get("DLCORE_REQUIRE_COMPILED") == "1":
    assert "cython" in BACKENDS, f"compiled backend missing: {backends.compiled_import_error}"


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run the test body with each backend active; yields the backend's name."""
    with dlcore.use_backend(request.param):
        yield request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


@pytest.fixture(params=[1, 2], ids=["1thr", "2thr"])
def n_threads(request):
    previous = dlcore.get_num_threads()
    dlcore.set_num_threads(request.param)
    yield request.param
    dlcore.set_num_threads(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed():
    dlcore.manual_seed(0)


@pytest.fixture
def one_thread():
    """Run dlcore's kernels and torch with one thread (layer tests use it: thread-count
    invariance is the kernel tests' subject, and on a loaded machine each 2-thread OpenMP
    region on tiny arrays costs ~10x more: 8.7 ms vs 0.67 ms per small Conv2d forward)."""
    previous = dlcore.get_num_threads(), torch.get_num_threads() if torch is not None else None
    dlcore.set_num_threads(1)
    if torch is not None:
        torch.set_num_threads(1)
    yield
    dlcore.set_num_threads(previous[0])
    if torch is not None:
        torch.set_num_threads(previous[1])


@pytest.fixture(name="torch")
def torch_fixture():
    """The torch module (tests using this fixture are marked ``torch`` and skipped without it)."""
    return torch


# ---- the torch marker ----------------------------------------------------------------------------
def _mentions_torch(code):
    """True when a code object (or one nested in it: a lambda, a comprehension) names ``torch``."""
    if "torch" in code.co_names:
        return True
    return any(_mentions_torch(c) for c in code.co_consts if isinstance(c, types.CodeType))


def pytest_collection_modifyitems(config, items):
    """Mark every torch test ``torch`` (explicitly marked, using the fixture, or naming the
    module in its body) and skip those tests when torch is absent."""
    skip = pytest.mark.skip(reason="torch is not installed")
    for item in items:
        function = getattr(item, "function", None)
        uses = "torch" in getattr(item, "fixturenames", ()) or (
            function is not None and _mentions_torch(function.__code__)
        )
        if uses and item.get_closest_marker("torch") is None:
            item.add_marker(pytest.mark.torch)
        if torch is None and item.get_closest_marker("torch") is not None:
            item.add_marker(skip)


# ---- CI: tests must have run, the oracle's among them --------------------------------------------
_oracle = {"passed": 0, "skipped": 0}
_passed = {"count": 0}  # tests of any kind


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed:
        _passed["count"] += 1
    if "torch" in report.keywords and (report.when == "call" or report.skipped):
        if report.passed:
            _oracle["passed"] += 1
        elif report.skipped and "torch" in str(report.longrepr):
            _oracle["skipped"] += 1


def pytest_sessionfinish(session, exitstatus):
    """In CI (DLCORE_REQUIRE_COMPILED=1 or DLCORE_REQUIRE_ORACLE=1) a run in which every test
    was skipped fails (pytest itself fails one that collects none: exit code 5).
    With DLCORE_REQUIRE_ORACLE=1, a run where no torch-marked test passed, or where
    any was skipped, fails: a green suite that never compared against torch proves little."""
    ci = "1" in (os.environ.get("DLCORE_REQUIRE_COMPILED"), os.environ.get("DLCORE_REQUIRE_ORACLE"))
    if ci and exitstatus == 0 and session.testscollected and not _passed["count"]:
        _oracle["failure"] = f"CI: {session.testscollected} tests collected and none passed (all skipped?)"
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return
    if os.environ.get("DLCORE_REQUIRE_ORACLE") != "1" or exitstatus not in (0,):
        return
    if _oracle["passed"] == 0 or _oracle["skipped"]:
        _oracle["failure"] = (f"DLCORE_REQUIRE_ORACLE=1: {_oracle['passed']} torch-oracle tests passed "
                              f"and {_oracle['skipped']} were skipped for lack of torch; every one must run")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if "failure" in _oracle or os.environ.get("DLCORE_REQUIRE_ORACLE") == "1":
        if "failure" in _oracle:
            terminalreporter.write_line(_oracle["failure"], red=True)
        else:
            terminalreporter.write_line(f"torch oracle: {_oracle['passed']} tests passed")


@pytest.fixture(autouse=True)
def _exact_threads():
    """Tests run exactly the threads they set: no reduction on a busy machine
    (dlcore.backends.threads.DYNAMIC; tests/test_threads.py tests that rule itself)."""
    from dlcore.backends import threads

    previous, threads.DYNAMIC = threads.DYNAMIC, False
    yield
    threads.DYNAMIC = previous
