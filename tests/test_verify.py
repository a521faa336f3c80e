"""dlcore verify and bring-your-own kernels: register_backend, planted bugs, the exercises."""
import os
import subprocess
import sys

import numpy as np
import pytest

import dlcore
from dlcore import backends
from dlcore.verify import SCENARIOS, kernels_used, load_kernels, verify

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXERCISES = os.path.join(ROOT, "examples", "exercises")
TWIN = backends.backend("numpy")


@pytest.fixture
def registered():
    """Names registered by the test; unregistered afterwards whatever happens."""
    names = []
    yield names
    for name in names:
        if name in backends.user_backends():
            backends.unregister_backend(name)


def wrong_relu_backward(grad_output, output, grad_input, n_threads):
    # Planted bug: passes the gradient where the output is zero too (a leaky "ReLU").
    grad_input[...] = np.where(output > 0, grad_output, 0.5 * grad_output)


def thread_dependent_sgd(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, nesterov,
                         first_step, n_threads):
    TWIN.sgd_step(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, nesterov,
                  first_step, n_threads)
    if n_threads > 1:
        param += 1e-2  # planted: a race-like result that changes with the thread count


def test_register_backend_runs_the_library_on_the_user_kernel(registered):
    calls = []

    def relu_forward(x, out, n_threads):
        calls.append(x.shape)
        np.maximum(x, 0, out=out)

    backends.register_backend("mine", {"relu_forward": relu_forward})
    registered.append("mine")
    assert "mine" in dlcore.available_backends() and backends.user_backends() == ["mine"]
    with dlcore.use_backend("mine"):
        model = dlcore.models.MLP([4, 3, 2])
        out = model(np.ones((2, 4), np.float32))
        model.backward(np.ones_like(out))  # the rest of the kernels fall back to the twin
    assert calls, "the layer did not call the registered kernel"
    backends.unregister_backend("mine")
    assert "mine" not in dlcore.available_backends()


def test_register_backend_rejects_bad_input(registered):
    with pytest.raises(ValueError, match="unknown kernel name 'conv3d_forward'"):
        backends.register_backend("x", {"conv3d_forward": lambda *a: None})
    with pytest.raises(ValueError, match="twin's arguments"):
        backends.register_backend("x", {"relu_forward": lambda x, out: None})
    with pytest.raises(TypeError, match="callable"):
        backends.register_backend("x", {"relu_forward": 3})
    with pytest.raises(ValueError, match="built-in"):
        backends.register_backend("numpy", {})
    with pytest.raises(ValueError, match="registered user backend"):
        backends.unregister_backend("cython")


def test_every_registered_kernel_has_a_generator():
    covered = {k for name in SCENARIOS for k in kernels_used(name)}
    missing = [k for k in backends.KERNEL_NAMES if k not in covered]
    assert not missing, f"add a scenario to dlcore.verify.SCENARIOS for {missing}"


@pytest.mark.torch
def test_verify_passes_every_builtin_kernel():
    pytest.importorskip("torch")
    name = "cython" if "cython" in dlcore.available_backends() else "numpy"
    report = verify(name, timing=False)
    assert report.ok, str(report)
    assert {r["kernel"] for r in report.rows} == set(backends.KERNEL_NAMES)
    for row in report.rows:
        assert row["err_torch"] is not None and row["err_torch"] < 1e-4, row


def test_verify_names_a_planted_wrong_kernel(registered):
    backends.register_backend("planted", {"relu_backward": wrong_relu_backward, "sgd_step": thread_dependent_sgd})
    registered.append("planted")
    report = verify("planted", use_torch=False, timing=False)
    assert report.failed == ["relu_backward", "sgd_step"]
    text = str(report)
    assert "relu_backward: FAIL: differs from the twin" in text
    assert "sgd_step: FAIL: 1 and 2 threads differ" in text
    sgd = next(r for r in report.rows if r["kernel"] == "sgd_step")
    assert sgd["thread_ok"] is False and sgd["err_twin"] < 1e-9


def test_verify_runs_exactly_n_threads_on_a_busy_machine(registered, monkeypatch):
    """The library gives kernels fewer threads on a busy machine (threads.DYNAMIC, which
    the suite turns off); verify must not let that turn its N-thread run into 1 thread."""
    from dlcore.backends import threads

    monkeypatch.setattr(threads, "DYNAMIC", True)
    monkeypatch.setattr(threads, "_free_cores", lambda: 1)  # every other core busy
    assert threads.kernel_threads() == 1 or dlcore.get_num_threads() == 1
    backends.register_backend("planted_busy", {"sgd_step": thread_dependent_sgd})
    registered.append("planted_busy")
    report = verify("planted_busy", use_torch=False, timing=False, n_threads=2)
    assert report.failed == ["sgd_step"] and "1 and 2 threads differ" in str(report)
    assert threads.DYNAMIC is True


def test_verify_reports_kernels_without_a_generator(monkeypatch):
    monkeypatch.setattr("dlcore.verify.SCENARIOS", {k: v for k, v in SCENARIOS.items() if k != "Adam"
                                                    and k != "Adam amsgrad"})
    report = verify("numpy", kernels=["adam_step", "relu_forward"], use_torch=False, timing=False)
    row = report.rows[0]
    assert row["status"] == "no generator" and "no scenario" in row["message"]
    assert report.ok and "1 without a generator" in str(report)


def test_verify_rejects_unknown_kernel():
    with pytest.raises(ValueError, match="conv9d"):
        verify("numpy", kernels=["conv9d"])


EXERCISE_FILES = ["conv2d_naive.py", "max_pool_backward.py", "adam.py"]


@pytest.mark.parametrize("filename", EXERCISE_FILES)
def test_exercise_stub_fails_with_a_readable_message(filename, registered):
    name = load_kernels(os.path.join(EXERCISES, filename), name="stub_" + filename[:-3])
    registered.append(name)
    report = verify(name, use_torch=False, timing=False)
    assert not report.ok
    assert "NotImplementedError: exercise" in str(report)
    assert "see the docstring of examples/exercises/" + filename in str(report)


@pytest.mark.parametrize("filename", EXERCISE_FILES)
def test_exercise_solution_passes(filename, registered):
    name = load_kernels(os.path.join(EXERCISES, "solutions", filename), name="solution_" + filename[:-3])
    registered.append(name)
    report = verify(name, timing=False)
    assert report.ok, str(report)
    assert len(report.rows) == 1 and report.rows[0]["status"] == "ok"


def test_cli_verify_exit_status():
    # the children import the dlcore under test (the install in CI), not the source tree
    parent = os.path.dirname(os.path.dirname(dlcore.__file__))
    env = dict(os.environ, PYTHONPATH=parent + os.pathsep + os.environ.get("PYTHONPATH", ""))
    stub = subprocess.run([sys.executable, "-m", "dlcore", "verify", "--no-torch", "--load",
                           os.path.join(EXERCISES, "adam.py")], capture_output=True, text=True, env=env, cwd=parent)
    assert stub.returncode == 1 and "adam_step: FAIL: raised NotImplementedError" in stub.stdout
    good = subprocess.run([sys.executable, "-m", "dlcore", "verify", "--no-torch", "--kernel", "relu_forward",
                           "--kernel", "adam_step"], capture_output=True, text=True, env=env, cwd=parent)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "2 kernels checked, 0 failed" in good.stdout


def test_training_runs_on_an_exercise_solution(registered):
    """The whole library on a user backend: a few Adam steps of an MLP with the
    solution's adam_step give the twin's parameters."""
    name = load_kernels(os.path.join(EXERCISES, "solutions", "adam.py"), name="solution_adam_train")
    registered.append(name)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 6)).astype(np.float64), rng.integers(0, 3, 32)
    finals = {}
    for backend in (name, "numpy"):
        dlcore.manual_seed(0)
        model = dlcore.models.MLP([6, 8, 3], flatten=False, dtype=np.float64)
        criterion, opt = dlcore.nn.CrossEntropyLoss(), dlcore.optim.Adam(model.parameters(), lr=0.01)
        losses = []
        with dlcore.use_backend(backend):
            for _ in range(20):
                opt.zero_grad()
                losses.append(criterion(model(x), y))
                model.backward(criterion.backward())
                opt.step()
        assert losses[-1] < losses[0]
        finals[backend] = np.concatenate([p.data.ravel() for p in model.parameters()])
    np.testing.assert_allclose(finals[name], finals["numpy"], rtol=1e-9, atol=1e-12)
