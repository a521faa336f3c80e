"""Installing without a working C compiler, and the hints the package gives (issue 9,
items 9 and 10); the AddressSanitizer build switch (item 11).

The full check, ``CC=/bin/false pip install .`` in a scratch virtual environment, takes
about a minute; it was run by hand (see the report of issue 9). These tests run the same
build step, ``setup.py build_ext``, into a temporary folder, and import a copy of the
package the way an install without compiled kernels looks.
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

import dlcore

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_SOURCE = os.path.exists(os.path.join(ROOT, "setup.py")) and os.path.exists(
    os.path.join(ROOT, "src", "dlcore", "conv.pyx"))
needs_source = pytest.mark.skipif(not HAS_SOURCE or importlib.util.find_spec("Cython") is None,
                                  reason="needs the source checkout (setup.py) and Cython")


def _build_ext(tmp_path, **env):
    cmd = [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
           "--build-temp", str(tmp_path / "tmp")]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DLCORE_")}
    full_env.update(env, DLCORE_ONLY="_info")  # one small stem: the probe decides before it
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=600)


@needs_source
@pytest.mark.skipif(not os.path.exists("/bin/false"), reason="needs /bin/false")
def test_broken_compiler_builds_nothing_and_leaves_a_note(tmp_path):
    proc = _build_ext(tmp_path, CC="/bin/false")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("dlcore:")]
    assert len(lines) == 1, proc.stderr
    assert "C compiler (/bin/false) does not work" in lines[0] and "NumPy-only" in lines[0]
    assert "brew" not in proc.stderr and "libomp" not in proc.stderr  # no macOS hint first
    kernels = tmp_path / "lib" / "dlcore" / "backends" / "cython_kernels"
    assert not list(kernels.glob("*.so")) and not list(kernels.glob("*.pyd"))
    assert "/bin/false" in (kernels / "NOT_BUILT.txt").read_text()


@needs_source
@pytest.mark.parametrize("strict", ["DLCORE_REQUIRE_COMPILED", "DLCORE_FAIL_NO_OPENMP"])
def test_broken_compiler_is_an_error_when_ci_asks(tmp_path, strict):
    proc = _build_ext(tmp_path, CC="/bin/false", **{strict: "1"})
    assert proc.returncode != 0 and "does not work" in proc.stderr


def _libasan():
    try:
        path = subprocess.run([os.environ.get("CC", "gcc"), "-print-file-name=libasan.so"], capture_output=True,
                              text=True, timeout=30).stdout.strip()
    except OSError:
        return None
    return path if os.path.isabs(path) and os.path.exists(path) else None


@needs_source
@pytest.mark.skipif(_libasan() is None, reason="needs gcc with libasan")
def test_sanitize_address_build_keeps_openmp(tmp_path):
    """Item 11: with DLCORE_SANITIZE=address the OpenMP probe is built with the sanitizer
    too, so the build keeps OpenMP (DLCORE_FAIL_NO_OPENMP=1 would fail it otherwise)."""
    proc = _build_ext(tmp_path, DLCORE_SANITIZE="address", DLCORE_FAIL_NO_OPENMP="1")
    assert proc.returncode == 0, proc.stderr
    built = list((tmp_path / "lib" / "dlcore" / "backends" / "cython_kernels").glob("_info*.so"))
    assert len(built) == 1, proc.stderr
    code = ("import importlib.machinery as m, importlib.util as u; "
            f"loader = m.ExtensionFileLoader('dlcore.backends.cython_kernels._info', {str(built[0])!r}); "
            "mod = u.module_from_spec(u.spec_from_loader(loader.name, loader)); loader.exec_module(mod); "
            "i = mod.compiled_info(); print(i['openmp'], i['compile_args'])")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLCORE_")}
    env.update(LD_PRELOAD=_libasan(), ASAN_OPTIONS="detect_leaks=0")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    openmp, args = run.stdout.split(" ", 1)
    assert openmp == "True" and "-fsanitize=address" in args.split() and "-fopenmp" in args.split(), run.stdout


@needs_source
def test_sanitize_accepts_only_address(tmp_path):
    proc = _build_ext(tmp_path, DLCORE_SANITIZE="thread")
    assert proc.returncode != 0 and "DLCORE_SANITIZE='thread'" in proc.stderr


def _package_copy(tmp_path, note):
    """dlcore's Python files without compiled kernels, as an install without a compiler leaves it."""
    src = os.path.dirname(dlcore.__file__)
    dst = tmp_path / "site" / "dlcore"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__", "NOT_BUILT.txt"))
    if note:
        (dst / "backends" / "cython_kernels" / "NOT_BUILT.txt").write_text(note)
    return tmp_path / "site"


def _import_info(site):
    code = "import dlcore; i = dlcore.build_info(); print(i['available_backends']); print(i['compiled_error'])"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLCORE_")}
    env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, "-c", code], cwd=site, env=env, capture_output=True, text=True,
                          timeout=120)


def test_build_info_says_why_after_an_install_without_compiler(tmp_path):
    note = "not compiled when dlcore was installed: the C compiler (/bin/false) does not work: ..."
    proc = _import_info(_package_copy(tmp_path, note))
    assert proc.returncode == 0, proc.stderr
    backends_line, error_line = proc.stdout.strip().splitlines()
    assert backends_line == "['numpy']"
    assert error_line.startswith(note[:60]) and "install a working C compiler" in error_line
    assert "pip install" not in proc.stderr  # one fix, and no command that could fetch a stranger's package


def test_source_tree_warning_gives_one_accurate_fix(tmp_path):
    site = _package_copy(tmp_path, None)
    (tmp_path / "site" / "src" / "dlcore").mkdir(parents=True)
    (tmp_path / "site" / "src" / "dlcore" / "conv.pyx").write_text("")
    proc = _import_info(site)
    warning = proc.stderr
    assert "source tree" in warning and "python setup.py build_ext --inplace" in warning
    assert "Reinstall" not in warning and "pip install" not in warning


def test_no_hint_points_at_the_dlcore_name_on_the_package_index():
    # The name "dlcore" on PyPI belongs to an unrelated project: hints name real packages
    # (pip install scikit-learn) or the local checkout (pip install ".[examples]").
    bad = re.compile(r"pip install\s+(-U\s+)?['\"]?dlcore\b")
    roots = [os.path.dirname(dlcore.__file__)] + ([os.path.join(ROOT, "README.md"), os.path.join(ROOT, "examples")]
                                                  if HAS_SOURCE else [])
    offenders = []
    for root in roots:
        paths = [root] if os.path.isfile(root) else [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
        for path in paths:
            if path.endswith((".py", ".md", ".txt", ".pyx")):
                with open(path, encoding="utf-8", errors="replace") as fh:
                    offenders += [f"{path}: {m.group(0)}" for m in bad.finditer(fh.read())]
    assert not offenders, offenders


def test_load_digits_hint_names_scikit_learn(monkeypatch):
    import builtins

    from dlcore.data import load_digits

    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(ImportError) as exc:
        load_digits()
    assert "pip install scikit-learn" in str(exc.value) and "dlcore[" not in str(exc.value)
