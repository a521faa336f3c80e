"""Compile-time facts about this build, read by dlcore.build_info().

The compiler and its flags reach us as C macros set by setup.py (define_macros);
OpenMP is what the compiler says through _OPENMP, not what setup.py hoped for.
"""
from dlcore._common cimport DLCORE_OPENMP, omp_get_max_threads, omp_get_num_procs

cdef extern from *:
    """
    #ifndef DLCORE_COMPILER
    #define DLCORE_COMPILER "unknown"
    #endif
    #ifndef DLCORE_CYTHON_VERSION
    #define DLCORE_CYTHON_VERSION "unknown"
    #endif
    #ifndef DLCORE_COMPILE_ARGS
    #define DLCORE_COMPILE_ARGS "unknown"
    #endif
    #ifdef _OPENMP
    #define DLCORE_OPENMP_VERSION _OPENMP
    #else
    #define DLCORE_OPENMP_VERSION 0
    #endif
    """
    const char* DLCORE_COMPILER
    const char* DLCORE_COMPILE_ARGS
    const char* DLCORE_CYTHON_VERSION
    int DLCORE_OPENMP_VERSION

def compiled_info():
    """Dict of the facts fixed when this extension was compiled."""
    return {
        "openmp": bool(DLCORE_OPENMP),
        "openmp_version": int(DLCORE_OPENMP_VERSION),
        "compiler": DLCORE_COMPILER.decode("utf-8", "replace"),
        "compile_args": DLCORE_COMPILE_ARGS.decode("utf-8", "replace"),
        "cython": DLCORE_CYTHON_VERSION.decode("ascii", "replace"),
    }


def openmp_max_threads():
    """omp_get_max_threads() of the OpenMP runtime (1 without OpenMP)."""
    return omp_get_max_threads()


def openmp_num_procs():
    """omp_get_num_procs(): processors available to this process (1 without OpenMP)."""
    return omp_get_num_procs()
