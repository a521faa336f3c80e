# Shared declarations for every dlcore kernel; header-only (no module of its own).
#
# * `floating` is Cython's fused float/double: one specialization per dtype.
# * `intp_t` is used for every size and index.
# * OpenMP routines are declared through a guarded C block, never `cimport openmp`:
#   a build without -fopenmp then still imports (the stubs below stand in), where a
#   direct cimport would fail at import with "undefined symbol: omp_get_max_threads".
#   `prange` itself degrades to a serial loop without the flag.

from cython cimport floating

ctypedef Py_ssize_t intp_t

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define DLCORE_OPENMP 1
    #else
    #define DLCORE_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    static int omp_get_thread_num(void) { return 0; }
    static int omp_get_num_procs(void) { return 1; }
    #endif
    """
    bint DLCORE_OPENMP
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
    int omp_get_num_procs() noexcept nogil


# Every kernel's first statement: its team size must be one dlcore.backends.threads could
# have given, 1 to max(512, 4 x cores) (threads.MAX_THREADS). A direct call with another
# value would make libgomp abort (a negative count is a huge unsigned one) or crash the
# interpreter (tens of thousands of threads).
cdef inline int check_threads(int n_threads) except -1:
    cdef int most = max(512, 4 * omp_get_num_procs())
    if n_threads < 1 or n_threads > most:
        raise ValueError(f"n_threads must be in [1, {most}], got {n_threads}")
    return 0
