# Streaming (non-temporal) stores for kernels that write large fresh outputs; header-only.
#
# An ordinary store to a line that is not in the cache first READS the line from memory
# (write-allocate), so a kernel that reads one array and writes another moves 3 bytes per
# byte written instead of 2. A streaming store writes the whole line to memory without
# reading it -- and without keeping it in the cache, so it only pays when the output is
# too large to be in the cache when it is next read. `stream_pays(bytes)` decides that:
# the bytes one call writes must reach 16 MiB (half the dev machine's L3; see below). Measured on the 2-core EPYC (L3 32 MiB, 256 MiB arrays, one thread):
# a copy with ordinary stores 27 GB/s of read+written bytes, with streaming stores 40.
#
# The values written are the same bits either way; only the path to memory differs.
# Non-x86 builds fall back to memcpy.

cdef extern from *:
    """
    #include <string.h>
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    /* dst[0:n] = src[0:n]: plain stores up to a 16-byte boundary of dst, then streaming
       stores 4 floats (2 doubles) at a time, then plain stores for the tail. The caller
       issues dlcore_stream_fence() before any other thread may read dst. */
    static inline void dlcore_stream_f(float *dst, const float *src, Py_ssize_t n) {
    #if defined(__SSE2__)
        Py_ssize_t i = 0;
        for (; i < n && ((size_t)(dst + i) & 15); i++) dst[i] = src[i];
        for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
        for (; i < n; i++) dst[i] = src[i];
    #else
        memcpy(dst, src, (size_t)n * sizeof(float));
    #endif
    }
    static inline void dlcore_stream_d(double *dst, const double *src, Py_ssize_t n) {
    #if defined(__SSE2__)
        Py_ssize_t i = 0;
        for (; i < n && ((size_t)(dst + i) & 15); i++) dst[i] = src[i];
        for (; i + 2 <= n; i += 2) _mm_stream_pd(dst + i, _mm_loadu_pd(src + i));
        for (; i < n; i++) dst[i] = src[i];
    #else
        memcpy(dst, src, (size_t)n * sizeof(double));
    #endif
    }
    /* Streaming stores are weakly ordered: the fence makes them visible before the
       OpenMP barrier that ends a parallel loop lets another thread read them. */
    static inline void dlcore_stream_fence(void) {
    #if defined(__SSE2__)
        _mm_sfence();
    #endif
    }
    /* Per module; read and set with the GIL held. 16 MiB: half the 32 MiB L3 of the dev
       machine; glibc's sysconf(_SC_LEVEL3_CACHE_SIZE) is no help (it reports 320 MiB in
       that VM), and current x86 CPUs have 8-96 MiB per core complex. */
    #define DLCORE_STREAM_MIN_DEFAULT ((Py_ssize_t)16 << 20)
    static Py_ssize_t dlcore_stream_min = DLCORE_STREAM_MIN_DEFAULT;
    static Py_ssize_t dlcore_stream_min_bytes(void) { return dlcore_stream_min; }
    static void dlcore_set_stream_min_bytes(Py_ssize_t v) {
        dlcore_stream_min = v < 0 ? DLCORE_STREAM_MIN_DEFAULT : v;
    }
    """
    void stream_f "dlcore_stream_f"(float* dst, const float* src, Py_ssize_t n) noexcept nogil
    void stream_d "dlcore_stream_d"(double* dst, const double* src, Py_ssize_t n) noexcept nogil
    void stream_fence "dlcore_stream_fence"() noexcept nogil
    Py_ssize_t stream_min_bytes "dlcore_stream_min_bytes"() noexcept
    void set_stream_min_bytes "dlcore_set_stream_min_bytes"(Py_ssize_t v) noexcept


# Call with the GIL held (tests change the threshold through each module's _stream_min_bytes).
cdef inline bint stream_pays(Py_ssize_t written_bytes) noexcept:
    return written_bytes >= stream_min_bytes()
