"""Build dlcore's compiled kernels: one Cython extension per stem in src/dlcore.

Build policy (all from the environment, so CI and users can steer it):

* The C compiler is probed first (compile and link a tiny program that includes
  Python.h). When it does not work -- none installed, ``CC=/bin/false``, no Python
  headers -- or an extension fails to build, the build says so in one line and installs
  the NumPy-only package; ``build_info()["compiled_error"]`` then gives the reason.
  ``DLCORE_REQUIRE_COMPILED=1`` (or ``DLCORE_FAIL_NO_OPENMP=1``) makes that an error (CI).
* OpenMP is probed by compiling, linking and running a tiny C program. When the probe
  fails the build warns and continues serial; ``DLCORE_NO_OPENMP=1`` forces serial and
  ``DLCORE_FAIL_NO_OPENMP=1`` turns a failed probe into an error (CI uses it).
* Flags are safe ones: ``-O3`` and ``-g0``. Never fast-math (it breaks NaN/Inf and
  sets flush-to-zero for the whole process) and never march=native (SIGILL on
  another CPU). ``DLCORE_DEBUG_SYMBOLS=1`` keeps ``-g``.
* ``DLCORE_CYTHON_DEBUG=1`` turns bounds and wraparound checks back on.
* ``DLCORE_SANITIZE=address`` builds with AddressSanitizer (``-O1 -g``), OpenMP kept: the
  OpenMP probe is built with the same flags. ``.ci/sanitize`` runs the kernel tests on it.
* ``DLCORE_ONLY=stem1,stem2`` builds a subset (handy while developing one kernel).
* The generated C is never committed, and an sdist ships only .pyx/.pxd sources.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import warnings

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError, LinkError

# One compiled module per stem: src/dlcore/<stem>.pyx -> dlcore.backends.cython_kernels.<stem>
KERNEL_STEMS = ["_info", "conv", "pool", "activation", "optim", "norm"]

CYTHON_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "initializedcheck": False,
    "nonecheck": False,
    "cdivision": True,
    "binding": True,  # so inspect.signature works on compiled kernels (the registry test uses it)
    "embedsignature": True,
}
if os.environ.get("DLCORE_CYTHON_DEBUG") == "1":
    CYTHON_DIRECTIVES.update(boundscheck=True, wraparound=True, initializedcheck=True)


def _flag(name):
    return os.environ.get(name, "") not in ("", "0")


def _openmp_flags(compiler_type):
    """(compile_args, link_args) to try for this compiler."""
    if compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        # Apple clang has no -fopenmp; libomp (e.g. from Homebrew) is used through the preprocessor.
        prefix = None
        for candidate in (os.environ.get("LIBOMP_PREFIX"), "/opt/homebrew/opt/libomp", "/usr/local/opt/libomp"):
            if candidate and os.path.isdir(candidate):
                prefix = candidate
                break
        compile_args, link_args = ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
        if prefix:
            compile_args.append(f"-I{prefix}/include")
            link_args += [f"-L{prefix}/lib", f"-Wl,-rpath,{prefix}/lib"]
        return compile_args, link_args
    return ["-fopenmp"], ["-fopenmp"]


PROBE_SOURCE = textwrap.dedent(
    """
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d\\n", n);
        return n >= 1 ? 0 : 1;
    }
    """
)


def probe_openmp(compiler, compile_args, link_args):
    """Compile, link and run PROBE_SOURCE; True when all three work."""
    tmp = tempfile.mkdtemp(prefix="dlcore-omp-")
    cwd = os.getcwd()
    try:
        os.chdir(tmp)
        with open("probe.c", "w") as fh:
            fh.write(PROBE_SOURCE)
        objects = compiler.compile(["probe.c"], extra_postargs=compile_args)
        compiler.link_executable(objects, "probe", extra_postargs=link_args)
        exe = os.path.join(tmp, "probe" + (".exe" if sys.platform == "win32" else ""))
        out = subprocess.run([exe], capture_output=True, text=True, timeout=60)
        return out.returncode == 0 and out.stdout.strip().isdigit()
    except Exception:  # any failure (missing header, link error, crash) means "no OpenMP"
        return False
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)


COMPILER_PROBE_SOURCE = textwrap.dedent(
    """
    #include <Python.h>
    int main(void) { PyObject *none = NULL; return (none == NULL && PY_VERSION_HEX > 0) ? 0 : 1; }
    """
)

# Written into the package when the kernels could not be built; dlcore.backends reads it.
NOT_BUILT_FILE = os.path.join("dlcore", "backends", "cython_kernels", "NOT_BUILT.txt")


def probe_compiler(compiler):
    """None when ``compiler`` compiles and links a C program using Python.h, else why not."""
    tmp = tempfile.mkdtemp(prefix="dlcore-cc-")
    cwd = os.getcwd()
    try:
        os.chdir(tmp)
        with open("probe.c", "w") as fh:
            fh.write(COMPILER_PROBE_SOURCE)
        objects = compiler.compile(["probe.c"])
        compiler.link_executable(objects, "probe")
        return None
    except Exception as exc:  # CompileError, LinkError, a missing executable, ...
        return f"compiling a test program that includes Python.h failed ({_short_error(exc)})"
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)


def _short_error(exc):
    """The gist of a compiler error: not the whole command line that setuptools puts in it."""
    text = " ".join(str(exc).split())
    match = re.search(r"""[Cc]ommand '\[?'?([^',\]]+).*?(exit (?:status|code) -?\d+)""", text)
    if match:
        return f"{type(exc).__name__}: {match.group(1)} {match.group(2)}"
    return f"{type(exc).__name__}: {text[:200]}"


def _compiler_name(compiler):
    return " ".join((getattr(compiler, "compiler_so", None) or [compiler.compiler_type])[:1])


class BuildExt(build_ext):
    """Adds OpenMP and optimization flags once the compiler is known; without a working
    compiler, builds nothing and leaves a note saying why (see the module docstring)."""

    def build_extensions(self):
        problem = probe_compiler(self.compiler)
        if problem is None:
            try:
                self._build_compiled()
            except (CompileError, LinkError) as exc:
                problem = f"building the extensions failed ({_short_error(exc)})"
        if problem is None:
            self._write_not_built(None)
            return
        why = f"the C compiler ({_compiler_name(self.compiler)}) does not work: {problem}"
        if _flag("DLCORE_REQUIRE_COMPILED") or _flag("DLCORE_FAIL_NO_OPENMP"):
            raise RuntimeError(f"dlcore: {why} (DLCORE_REQUIRE_COMPILED/DLCORE_FAIL_NO_OPENMP is set)")
        sys.stderr.write(f"dlcore: {why}; installing the NumPy-only package (dlcore.build_info() says why)\n")
        for ext in self.extensions:  # nothing half-built goes into the package
            try:
                os.remove(self.get_ext_fullpath(ext.name))
            except OSError:
                pass
        self._write_not_built(why)

    def _write_not_built(self, why):
        """Leave (or, after a good build, remove) the note read by dlcore.backends."""
        if self.inplace:
            return  # a developer's tree: the build's own error output says it
        path = os.path.join(self.build_lib, NOT_BUILT_FILE)
        if why is None:
            if os.path.exists(path):
                os.remove(path)
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(f"not compiled when dlcore was installed: {why}\n")

    def _build_compiled(self):
        ctype = self.compiler.compiler_type
        san_compile, san_link = _sanitizer_flags(ctype)
        if ctype == "msvc":
            base = ["/O2"]
        elif san_compile:  # -O1 -g: readable ASan reports (line numbers, frames)
            base = ["-O1", "-g", "-Wno-unused-function", "-Wno-unreachable-code"]
        else:
            base = ["-O3"] + ([] if _flag("DLCORE_DEBUG_SYMBOLS") else ["-g0"])
            base += ["-Wno-unused-function", "-Wno-unreachable-code"]
        omp_compile, omp_link = _openmp_flags(ctype)
        use_openmp = False
        if _flag("DLCORE_NO_OPENMP"):
            warnings.warn("DLCORE_NO_OPENMP is set: building dlcore's kernels serial (no OpenMP).")
        # The probe gets the sanitizer flags too: compiled with -fsanitize=address but linked
        # without it (CFLAGS alone), the probe fails to link and the build would go serial.
        elif probe_openmp(self.compiler, omp_compile + san_compile, omp_link + san_link):
            use_openmp = True
        else:
            msg = (
                f"OpenMP probe failed with {ctype} and flags {omp_compile} {omp_link}: "
                "building dlcore's kernels serial."
                + (" On macOS install libomp (brew install libomp)." if sys.platform == "darwin" else "")
            )
            if _flag("DLCORE_FAIL_NO_OPENMP"):
                raise RuntimeError(msg)
            warnings.warn(msg)
        from Cython import __version__ as cython_version

        compiler_name = _compiler_version((getattr(self.compiler, "compiler_so", None) or [ctype])[0])
        for ext in self.extensions:
            ext.extra_compile_args = base + san_compile + (omp_compile if use_openmp else [])
            ext.extra_link_args = san_link + (omp_link if use_openmp else [])
            ext.define_macros += [
                ("DLCORE_COMPILER", _c_string(compiler_name)),
                ("DLCORE_COMPILE_ARGS", _c_string(" ".join(ext.extra_compile_args))),
                ("DLCORE_CYTHON_VERSION", _c_string(cython_version)),
            ]
        super().build_extensions()


def _sanitizer_flags(compiler_type):
    """(compile, link) flags for ``DLCORE_SANITIZE=address`` (gcc or clang); none when unset.

    Such a build is for testing: run Python with the sanitizer's runtime preloaded,
    ``LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0`` (see .ci/sanitize).
    """
    kind = os.environ.get("DLCORE_SANITIZE", "").strip()
    if not kind:
        return [], []
    if kind != "address" or compiler_type == "msvc":
        raise RuntimeError(f"DLCORE_SANITIZE={kind!r}: only 'address' with gcc or clang is supported")
    flags = ["-fsanitize=address", "-fno-omit-frame-pointer"]
    return flags, flags


def _compiler_version(executable):
    """'gcc (Debian 12.2.0-14) 12.2.0' -- the first line of ``executable --version``."""
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0].strip() or executable
    except (OSError, IndexError, subprocess.SubprocessError):
        return executable


def _c_string(text):
    """A C string literal usable as a -D macro value."""
    return '"' + text.replace("\\", "\\\\").replace('"', "'") + '"'


def _check_scipy_blas(stems):
    """conv.pyx calls BLAS through scipy.linalg.cython_blas: SciPy is a build dependency."""
    if "conv" not in stems:
        return
    try:
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(f"building dlcore's convolution needs SciPy (for scipy.linalg.cython_blas): "
                           f"pip install scipy ({exc})") from None


def extensions():
    only = [s for s in os.environ.get("DLCORE_ONLY", "").split(",") if s]
    stems = [s for s in KERNEL_STEMS if not only or s in only]
    _check_scipy_blas(stems)
    exts = [
        Extension(f"dlcore.backends.cython_kernels.{stem}", [f"src/dlcore/{stem}.pyx"])
        for stem in stems
    ]
    from Cython.Build import cythonize

    return cythonize(
        exts,
        include_path=["src"],
        compiler_directives=CYTHON_DIRECTIVES,
        quiet=True,
        # A relative cache keeps parallel developer builds of different stems apart.
        nthreads=1,
    )


def _building_extensions():
    # No cythonize for sdists and metadata-only commands: the sdist ships .pyx, not C.
    meta_only = {"sdist", "egg_info", "--help", "-h", "--version", "clean", "dist_info"}
    return not (set(sys.argv[1:]) & meta_only) or "bdist_wheel" in sys.argv


setup(
    ext_modules=extensions() if _building_extensions() else [],
    cmdclass={"build_ext": BuildExt},
)
