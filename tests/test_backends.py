"""The registry: every kernel in every backend, same signatures; threads; fallback."""
import inspect
import os
import subprocess
import sys

import pytest

import dlcore
from dlcore import backends


@pytest.mark.parametrize("name", dlcore.available_backends())
def test_every_kernel_present(name):
    # Each registered kernel must be the implementation module's own function, not the
    # placeholder the registry installs for a missing one (which raises when called).
    module = backends.numpy_kernels if name == "numpy" else backends.cython_kernels
    be = backends.backend(name)
    missing = [k for k in backends.KERNEL_NAMES if getattr(module, k, None) is None]
    assert missing == [], f"{name} backend lacks {missing}"
    replaced = [k for k in backends.KERNEL_NAMES if getattr(be, k) is not getattr(module, k)]
    assert replaced == [], f"{name} backend registers placeholders for {replaced}"


def test_a_missing_kernel_is_detected_and_raises():
    # the check above can fail: a namespace lacking a kernel gets a raising placeholder
    import types

    namespace = types.SimpleNamespace(**{k: getattr(backends.numpy_kernels, k) for k in backends.KERNEL_NAMES[1:]})
    be = backends.Backend("partial", namespace, openmp=False)
    first = backends.KERNEL_NAMES[0]
    assert getattr(be, first) is not getattr(backends.numpy_kernels, first)
    with pytest.raises(NotImplementedError, match=first):
        getattr(be, first)()


@pytest.mark.skipif("cython" not in dlcore.available_backends(), reason="compiled backend not built")
@pytest.mark.parametrize("kernel", backends.KERNEL_NAMES)
def test_signatures_match(kernel):
    twin = inspect.signature(getattr(backends.backend("numpy"), kernel))
    compiled = inspect.signature(getattr(backends.backend("cython"), kernel))
    assert list(twin.parameters) == list(compiled.parameters)
    assert list(twin.parameters)[-1] == "n_threads"


def test_set_backend_and_context():
    default = dlcore.get_backend()
    with dlcore.use_backend("numpy"):
        assert dlcore.get_backend() == "numpy"
    assert dlcore.get_backend() == default
    with pytest.raises(ValueError, match="backend must be one of"):
        dlcore.set_backend("fortran")
    with pytest.raises(ValueError, match="numpy"):
        with dlcore.use_backend("nope"):
            pass


def test_num_threads():
    previous = dlcore.get_num_threads()
    try:
        dlcore.set_num_threads(3)
        assert dlcore.get_num_threads() == 3
        for bad in (0, -1, 1.5, "2", True):
            with pytest.raises(ValueError):
                dlcore.set_num_threads(bad)
    finally:
        dlcore.set_num_threads(previous)


def test_build_info_keys():
    info = dlcore.build_info()
    for key in ("version", "backend", "openmp", "num_threads", "compiler", "compile_args", "numpy", "cython"):
        assert key in info
    assert info["version"] == dlcore.__version__
    if os.environ.get("DLCORE_REQUIRE_COMPILED") == "1":
        assert info["openmp"] is True, "CI requires an OpenMP build"
        args = info["compile_args"].split()
        # -O3, except the AddressSanitizer build of .ci/sanitize (-O1 -g: readable reports)
        assert ("-O1" if "-fsanitize=address" in args else "-O3") in args
        assert "-ffast-math" not in args


def _run(code, **env):
    full_env = {**os.environ, **env}
    full_env.pop("DLCORE_REQUIRE_COMPILED", None)
    full_env.update(env)
    # cwd outside the source tree, so the child imports the same dlcore as this process.
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env,
                          timeout=120, cwd=os.path.dirname(os.path.dirname(dlcore.__file__)))


BLOCK_COMPILED = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith("dlcore.backends.cython_kernels"):
            raise ImportError("blocked by the test")
sys.meta_path.insert(0, Block())
"""


def test_numpy_fallback_when_extension_blocked():
    code = BLOCK_COMPILED + """
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import dlcore
assert dlcore.available_backends() == ["numpy"], dlcore.available_backends()
assert dlcore.get_backend() == "numpy"
assert "blocked by the test" in dlcore.build_info()["compiled_error"]
assert sum("compiled kernels unavailable" in str(w.message) for w in caught) == 1
import numpy as np
x = np.arange(-3, 3, dtype=np.float32)
assert (dlcore.functional.relu(x) == np.maximum(x, 0)).all()
print("ok")
"""
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_require_compiled_turns_fallback_into_error():
    result = _run(BLOCK_COMPILED + "import dlcore", DLCORE_REQUIRE_COMPILED="1")
    assert result.returncode != 0
    assert "DLCORE_REQUIRE_COMPILED" in result.stderr


def test_env_backend_and_threads():
    result = _run("import dlcore; print(dlcore.get_backend(), dlcore.get_num_threads())",
                  DLCORE_BACKEND="numpy", DLCORE_NUM_THREADS="3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["numpy", "3"]


def test_info_command():
    result = subprocess.run([sys.executable, "-m", "dlcore", "info"], capture_output=True, text=True, timeout=120,
                            cwd=os.path.dirname(os.path.dirname(dlcore.__file__)))
    assert result.returncode == 0, result.stderr
    assert "openmp" in result.stdout and "num_threads" in result.stdout
