"""Compiled activation kernels: relu, leaky_relu, sigmoid, tanh, silu, softmax,
log_softmax and the fused softmax-cross-entropy, forward and backward.

The specification is the NumPy twin, ``dlcore/backends/numpy_kernels/activation.py``:
same names, same parameters, same results up to float rounding. The caller validates,
makes every array C-contiguous of one float dtype and allocates every output.

Parallel axes (race-free by construction, so results are bitwise independent of the
thread count):

* elementwise kernels: the flat array is cut into chunks of ``CHUNK`` elements and
  ``prange`` hands whole chunks to threads; each worker is a plain loop over one chunk.
  Static schedule: an A/B against 'dynamic' on the loaded dev machine showed no gain.
  On an oversubscribed machine two threads can be slower than one (measured 2x for
  relu forward+backward+sigmoid at 1e7): a barrier waits for a descheduled thread. The
  caller's thread count (dlcore/backends/threads.py, kernel_threads) then drops to the
  cores left free.
* row-wise kernels (softmax, log_softmax, softmax_cross_entropy): ``prange`` over rows;
  one thread owns a row, so its max and sums are computed in one fixed order.

Float32 exp, sigmoid and tanh are computed by the small branch-free C functions below
(Cephes' polynomials, about 1 ulp, checked against float64 references in the tests)
rather than libm's expf/tanhf, which are one call per element and keep gcc from
vectorizing; the float32 loops of sigmoid, tanh and silu are also compiled for AVX2 and
AVX-512 and picked at load time (see DLCORE_MULTIVERSION). float64 uses libm throughout.

Vectorization: gcc keeps -ftrapping-math by default (we never enable fast-math), so it
will not if-convert a branch that holds a float operation, and it sinks an operation
used by one arm of a select into that arm. So every select below picks between plain
values (loaded or constant) and arithmetic comes after it: leaky_relu is
``pos + neg * slope`` with ``pos = v if v > 0 else 0``, ``neg = 0 if v > 0 else v``.
(``gcc -fopt-info-vec`` on the generated C lists the vectorized loops.)

Float32 row sums accumulate in double. Below ``PARALLEL_MIN`` elements of work (weighted
by cost, see the constants) the kernels run on one thread: waking the OpenMP team costs
more than it saves there.

Index glossary: ``i`` flat element (or row ``i`` of a cross-entropy batch), ``r`` row,
``j`` column/class, ``n`` elements, ``R, C`` rows and columns, ``N`` batch, ``t`` target.
"""
from cython.parallel cimport prange
from libc.math cimport exp, fabs, log, tanh
from libc.stdint cimport int64_t

from dlcore._common cimport check_threads, floating, intp_t
from dlcore._stream cimport (set_stream_min_bytes, stream_d, stream_f, stream_fence,
                             stream_min_bytes, stream_pays)

__all__ = [
    "relu_forward",
    "relu_backward",
    "leaky_relu_forward",
    "leaky_relu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
    "silu_forward",
    "silu_backward",
    "softmax_forward",
    "softmax_backward",
    "log_softmax_forward",
    "log_softmax_backward",
    "softmax_cross_entropy_forward",
    "softmax_cross_entropy_backward",
]

cdef enum:
    # Elements per parallel work item: 64 KiB of float32, big enough to amortize the loop
    # set-up and small enough that two threads still get balanced halves of 1e5 elements.
    CHUNK = 16384
    # Below this much work one thread is faster than waking a team. Work is counted in
    # relu-element equivalents: an exp-based element (sigmoid, tanh, silu) counts 2, a
    # row-kernel element (softmax, log_softmax, cross-entropy: two or three passes, a
    # double accumulation, an exp) counts 8. Measured on the shared 2-core dev machine,
    # float32, medians of interleaved 1- vs 2-thread runs: relu forward 1.06x at 2^15
    # elements and 1.6x at 2^16; sigmoid 0.95x at 2^14 and 1.75x at 2^15; softmax of
    # 64-wide rows 1.6x already at 2^13 elements.
    PARALLEL_MIN = 65536
    EXP_COST = 2
    ROW_COST = 8


cdef inline int _team(intp_t work, int n_threads) noexcept nogil:
    """Threads to use for ``work`` (relu-element equivalents): 1 below PARALLEL_MIN, else n_threads."""
    if work < PARALLEL_MIN or n_threads < 1:
        return 1
    return n_threads


cdef inline intp_t _n_chunks(intp_t n) noexcept nogil:
    return (n + CHUNK - 1) // CHUNK


cdef inline intp_t _chunk_len(intp_t c, intp_t n) noexcept nogil:
    return min(CHUNK, n - c * CHUNK)


# The loops below trust their buffers, so every def checks first, in O(1), that the sizes
# given by all its arguments agree (a short `out` would otherwise be written past its end).
cdef int _check_len(str name, intp_t got, intp_t n) except -1:
    if got != n:
        raise ValueError(f"{name} must have {n} elements (the first argument's), got {got}")
    return 0


cdef int _check_shape(str name, intp_t R, intp_t C, intp_t want_R, intp_t want_C) except -1:
    if R != want_R or C != want_C:
        raise ValueError(f"{name} must have shape ({want_R}, {want_C}) (the first argument's), got ({R}, {C})")
    return 0


cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #include <string.h>
    /* cond ? a : b computed on the bit patterns. A plain `?:` lets gcc fold the operation
       that follows into each arm (e.g. `(c ? 1 : e) / (1 + e)` becomes two divisions, one
       per arm) and then, under -ftrapping-math, refuse to vectorize the branch; a mask
       select stays branch-free. NaN in the chosen operand is kept. */
    static inline float dlcore_selectf(int cond, float a, float b) {
        uint32_t ai, bi, m = (uint32_t)0 - (uint32_t)(cond != 0);
        memcpy(&ai, &a, 4); memcpy(&bi, &b, 4);
        ai = (ai & m) | (bi & ~m);
        memcpy(&a, &ai, 4);
        return a;
    }
    static inline double dlcore_select(int cond, double a, double b) {
        uint64_t ai, bi, m = (uint64_t)0 - (uint64_t)(cond != 0);
        memcpy(&ai, &a, 8); memcpy(&bi, &b, 8);
        ai = (ai & m) | (bi & ~m);
        memcpy(&a, &ai, 8);
        return a;
    }
    /* exp(x) for float32 x <= 0, without calls or branches so that gcc vectorizes the
       loops that use it (libm's expf is a call per element: several times slower).
       Cephes' expf: x = n ln2 + r with |r| <= ln2/2, exp(r) by a degree-6 polynomial,
       2^n written into the exponent bits. About 1 ulp; results below FLT_MIN flush to 0. */
    static inline float dlcore_expf_nonpos(float x) {
        const float lo = -87.33654475f;                      /* ln(FLT_MIN) */
        float xc = dlcore_selectf(x < lo, lo, x);            /* NaN passes through */
        float n = (xc * 1.44269504089f + 12582912.0f) - 12582912.0f;  /* round(x / ln2): 1.5*2^23 trick */
        float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;       /* ln2 in two parts: n*C1 exact */
        float p = 1.9875691500e-4f;
        p = p * r + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = p * r * r + r + 1.0f;
        int32_t bits = ((int32_t)n + 127) << 23;             /* 2^n for n in [-126, 0] */
        float two_n;
        memcpy(&two_n, &bits, 4);
        return p * dlcore_selectf(x < lo, 0.0f, two_n);
    }
    /* tanh(x) for float32, vectorizable: Cephes' tanhf. An odd polynomial for |x| < 0.625
       (where 1 - e would cancel), else sign(x) (1 - e) / (1 + e) with e = exp(-2|x|) <= 0.29.
       Both are computed; the polynomial gets 0 when |x| is large, so it cannot overflow. */
    static inline float dlcore_tanhf(float x) {
        float a = fabsf(x);
        int small = a < 0.625f;
        float xs = dlcore_selectf(small, x, 0.0f);
        float z = xs * xs;
        float p = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z
                    + 1.33314422036e-1f) * z - 3.33332819422e-1f) * z * xs + xs;
        float e = dlcore_expf_nonpos(-2.0f * a);
        float q = copysignf((1.0f - e) / (1.0f + e), x);
        return dlcore_selectf(small, p, q);
    }
    /* sigma(v) = 1 / (1 + e^-v) for v >= 0 and e^v / (1 + e^v) for v < 0, both with
       e = exp(-|v|) <= 1: no overflow for any v, and NaN stays NaN (e is NaN). */
    static inline float dlcore_sigmoidf(float v) {
        float e = dlcore_expf_nonpos(-fabsf(v));
        return dlcore_selectf(v >= 0, 1.0f, e) / (1.0f + e);
    }

    /* The float32 loops of the exp-based activations, compiled three times by gcc's
       target_clones: for AVX-512F (16 floats per instruction), AVX2 (8) and baseline x86-64
       (SSE2, 4); the dynamic linker picks one once, by the CPU (an ifunc), so no binary ever
       executes an instruction its CPU lacks (unlike building for the native CPU). Same
       operations in all and no FMA (enabled by neither "avx2" nor "avx512f"), so all give
       bitwise the same results. Other compilers and platforms get one baseline version.
       The AVX-512 copy measured 2-2.4x faster than the AVX2 one on the EPYC dev machine
       (1e7 float32, one thread: sigmoid forward 7.9 -> 3.4 ms, tanh 11.8 -> 5.0, silu
       backward 8.9 -> 4.3): its mask registers replace the blends of the selects. */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define DLCORE_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
    #else
    #define DLCORE_MULTIVERSION
    #endif
    DLCORE_MULTIVERSION static void dlcore_sigmoid_f32(const float* x, float* out, Py_ssize_t n) {
        for (Py_ssize_t i = 0; i < n; i++) out[i] = dlcore_sigmoidf(x[i]);
    }
    DLCORE_MULTIVERSION static void dlcore_tanh_f32(const float* x, float* out, Py_ssize_t n) {
        for (Py_ssize_t i = 0; i < n; i++) out[i] = dlcore_tanhf(x[i]);
    }
    DLCORE_MULTIVERSION static void dlcore_silu_f32(const float* x, float* out, Py_ssize_t n) {
        for (Py_ssize_t i = 0; i < n; i++) out[i] = x[i] * dlcore_sigmoidf(x[i]);
    }
    DLCORE_MULTIVERSION static void dlcore_silu_bwd_f32(const float* g, const float* x, float* gi, Py_ssize_t n) {
        for (Py_ssize_t i = 0; i < n; i++) {
            float s = dlcore_sigmoidf(x[i]);
            gi[i] = g[i] * (s * (1.0f + x[i] * (1.0f - s)));
        }
    }
    """
    float _expf_nonpos "dlcore_expf_nonpos"(float x) noexcept nogil
    float _selectd "dlcore_select"(bint cond, double a, double b) noexcept nogil
    void _sigmoid_f32 "dlcore_sigmoid_f32"(const float* x, float* out, intp_t n) noexcept nogil
    void _tanh_f32 "dlcore_tanh_f32"(const float* x, float* out, intp_t n) noexcept nogil
    void _silu_f32 "dlcore_silu_f32"(const float* x, float* out, intp_t n) noexcept nogil
    void _silu_bwd_f32 "dlcore_silu_bwd_f32"(const float* g, const float* x, float* gi, intp_t n) noexcept nogil


cdef inline double _sigmoid(double v) noexcept nogil:
    # float64 twin of dlcore_sigmoidf above (libm's exp; the speed targets are float32).
    cdef double e = exp(-fabs(v))
    return _selectd(v >= 0, 1, e) / (1 + e)


# ---- elementwise workers: one chunk of n elements each --------------------------------------

cdef void _relu_fwd(const floating* x, floating* out, intp_t n) noexcept nogil:
    cdef intp_t i
    cdef floating v
    for i in range(n):
        v = x[i]
        # `0 if v <= 0 else v` rather than `v if v > 0 else 0`: NaN propagates, as torch.relu.
        out[i] = 0 if v <= 0 else v


cdef void _relu_bwd(const floating* g, const floating* y, floating* gi, intp_t n) noexcept nogil:
    cdef intp_t i
    cdef floating gv
    for i in range(n):
        gv = g[i]
        gi[i] = gv if y[i] > 0 else 0


cdef void _leaky_fwd(const floating* x, floating* out, floating slope, intp_t n) noexcept nogil:
    cdef intp_t i
    cdef floating v, pos, neg
    for i in range(n):
        v = x[i]
        pos = v if v > 0 else 0
        neg = 0 if v > 0 else v  # NaN goes here and propagates
        out[i] = pos + neg * slope


cdef void _leaky_bwd(const floating* g, const floating* x, floating* gi, floating slope,
                     intp_t n) noexcept nogil:
    cdef intp_t i
    cdef floating d
    for i in range(n):
        d = 1 if x[i] > 0 else slope
        gi[i] = g[i] * d


cdef void _sigmoid_fwd(const floating* x, floating* out, intp_t n) noexcept nogil:
    cdef intp_t i
    if floating is float:
        _sigmoid_f32(x, out, n)  # this loop in C, multiversioned (see above)
    else:
        for i in range(n):
            out[i] = _sigmoid(x[i])


cdef void _sigmoid_bwd(const floating* g, const floating* y, floating* gi, intp_t n) noexcept nogil:
    cdef intp_t i
    for i in range(n):
        # <floating>1: Cython writes a bare 1 as 1.0, a double, which made the float32 loop
        # convert to double and back (measured 1.4x slower) and differ from the twin's float32.
        gi[i] = g[i] * (y[i] * (<floating>1 - y[i]))


cdef void _tanh_fwd(const floating* x, floating* out, intp_t n) noexcept nogil:
    cdef intp_t i
    if floating is float:
        _tanh_f32(x, out, n)
    else:
        for i in range(n):
            out[i] = tanh(x[i])


cdef void _tanh_bwd(const floating* g, const floating* y, floating* gi, intp_t n) noexcept nogil:
    cdef intp_t i
    for i in range(n):
        gi[i] = g[i] * (<floating>1 - y[i] * y[i])  # (<floating>1: see _sigmoid_bwd)


cdef void _silu_fwd(const floating* x, floating* out, intp_t n) noexcept nogil:
    cdef intp_t i
    if floating is float:
        _silu_f32(x, out, n)
    else:
        for i in range(n):
            out[i] = x[i] * _sigmoid(x[i])


cdef void _silu_bwd(const floating* g, const floating* x, floating* gi, intp_t n) noexcept nogil:
    cdef intp_t i
    cdef double s
    if floating is float:
        _silu_bwd_f32(g, x, gi, n)
    else:
        for i in range(n):
            s = _sigmoid(x[i])
            gi[i] = g[i] * (s * (1 + x[i] * (1 - s)))


# ---- one chunk, with plain or streaming stores ------------------------------------------------

cdef enum:
    RELU_F, RELU_B, LEAKY_F, LEAKY_B, SIGMOID_F, SIGMOID_B, TANH_F, TANH_B, SILU_F, SILU_B
    # Elements per streamed tile: 4 KiB of float32 (8 KiB of float64), stays in L1.
    TILE = 256


cdef inline void _apply(int op, const floating* a, const floating* b, floating* out,
                        floating slope, intp_t n) noexcept nogil:
    # `a` is the first input (x or grad_output), `b` the second (unary ops ignore it).
    if op == RELU_F:
        _relu_fwd(a, out, n)
    elif op == RELU_B:
        _relu_bwd(a, b, out, n)
    elif op == LEAKY_F:
        _leaky_fwd(a, out, slope, n)
    elif op == LEAKY_B:
        _leaky_bwd(a, b, out, slope, n)
    elif op == SIGMOID_F:
        _sigmoid_fwd(a, out, n)
    elif op == SIGMOID_B:
        _sigmoid_bwd(a, b, out, n)
    elif op == TANH_F:
        _tanh_fwd(a, out, n)
    elif op == TANH_B:
        _tanh_bwd(a, b, out, n)
    elif op == SILU_F:
        _silu_fwd(a, out, n)
    else:
        _silu_bwd(a, b, out, n)


cdef void _chunk(int op, const floating* a, const floating* b, floating* out, floating slope,
                 intp_t n, bint stream) noexcept nogil:
    """One chunk of an elementwise op. With ``stream`` (outputs larger than the cache, see
    _stream.pxd) each TILE is computed into an L1 buffer and then written with streaming
    stores, which skip the read of `out` that an ordinary store costs: same values, a third
    less memory traffic. Only the memory-bound ops stream. Measured on the 2-core EPYC,
    1e7 float32, medians of 30 interleaved calls at 2 threads, plain -> streaming: relu
    forward+backward 5.71 -> 5.24 ms, leaky_relu 5.73 -> 4.74, sigmoid backward 3.35 ->
    2.87, tanh backward 3.23 -> 2.80; but the exp-bound ops got slower (sigmoid forward
    2.18 -> 3.03 ms, silu backward 3.23 -> 3.56): their compute no longer overlaps the
    writes, which come in bursts."""
    cdef floating tile[TILE]
    cdef intp_t t = 0, m
    if not stream:
        _apply(op, a, b, out, slope, n)
        return
    while t < n:
        m = min(<intp_t>TILE, n - t)
        _apply(op, a + t, b + t, tile, slope, m)
        if floating is float:
            stream_f(out + t, tile, m)
        else:
            stream_d(out + t, tile, m)
        t += m
    stream_fence()


def _stream_min_bytes(value=None):
    """The output size (bytes) from which elementwise kernels use streaming stores; with
    ``value``, set it (tests set 0 to run the streaming path on small arrays, -1 restores
    the default). Returns the setting in force before the call."""
    cdef Py_ssize_t old = stream_min_bytes()
    if value is not None:
        set_stream_min_bytes(value)
    return old


# ---- elementwise kernels: prange over chunks ---------------------------------------------------

def relu_forward(const floating[::1] x,  # IN (n,)
                 floating[::1] out,      # OUT (n,)
                 int n_threads):
    """out = max(x, 0).

    Parameters
    ----------
    x : ndarray of shape (n,), dtype float32 or float64, C-contiguous
    out : ndarray of shape (n,), same dtype, written
    n_threads : int

    Same contract as the NumPy twin. The caller validates and allocates.
    """
    check_threads(n_threads)
    cdef intp_t n = x.shape[0], c
    _check_len("out", out.shape[0], n)
    cdef bint stream = stream_pays(n * sizeof(floating))
    with nogil:
        for c in prange(_n_chunks(n), schedule='static', num_threads=_team(n, n_threads)):
            _chunk(RELU_F, &x[c * CHUNK], &x[c * CHUNK], &out[c * CHUNK], 0,
                   _chunk_len(c, n), stream)


def relu_backward(const floating[::1] grad_output,  # IN (n,)
                  const floating[::1] output,       # IN (n,) relu's result
                  floating[::1] grad_input,         # OUT (n,)
                  int n_threads):
    """grad_input = grad_output * [output > 0]; arrays (n,) of one float dtype. See the twin."""
    check_threads(n_threads)
    cdef intp_t n = grad_output.shape[0], c
    _check_len("output", output.shape[0], n)
    _check_len("grad_input", grad_input.shape[0], n)
    cdef bint stream = stream_pays(n * sizeof(floating))
    with nogil:
        for c in prange(_n_chunks(n), schedule='static', num_threads=_team(n, n_threads)):
            _chunk(RELU_B, &grad_output[c * CHUNK], &output[c * CHUNK], &grad_input[c * CHUNK], 0,
                   _chunk_len(c, n), stream)


def leaky_relu_forward(const floating[::1] x,  # IN (n,)
                       floating[::1] out,      # OUT (n,)
                       double negative_slope,
                       int n_threads):
    """out = x if x > 0 else negative_slope * x; arrays (n,) of one float dtype. See the twin."""
    check_threads(n_threads)
    cdef intp_t n = x.shape[0], c
    _check_len("out", out.shape[0], n)
    cdef floating slope = <floating>negative_slope
    cdef bint stream = stream_pays(n * sizeof(floating))
    with nogil:
        for c in prange(_n_chunks(n), schedule='static', num_threads=_team(n, n_threads)):
            _chunk(LEAKY_F, &x[c * CHUNK], &x[c * CHUNK], &out[c * CHUNK], slope,
                   _chunk_len(c, n), stream)


def leaky_relu_backward(const floating[::1] grad_output,  # IN (n,)
                        const floating[::1] x,            # IN (n,) the forward input
                        floating[::1] grad_input,         # OUT (n,)
                        double negative_slope,
                        int n_threads):
    """grad_input = grad_output * (1 if x > 0 else negative_slope). See the twin."""
    check_threads(n_threads)
    cdef intp_t n = grad_output.shape[0], c
    _check_len("x", x.shape[0], n)
    _check_len("grad_input", grad_input.shape[0], n)
    cdef floating slope = <floating>negative_slope
    cdef bint stream = stream_pays(n * sizeof(floating))
    with nogil:
        for c in prange(_n_chunks(n), schedule='static', num_threads=_team(n, n_threads)):
            _chunk(LEAKY_B, &grad_output[c * CHUNK], &x[c * CHUNK], &grad_input[c * CHUNK], slope,
                   _chunk_len(c, n), stream)


def sigmoid_forward(const floating[::1] x,  # IN (n,)
                    floating[::1] out,      # OUT (n,)
                    int n_threads):
    """out = 1 / (1 + exp(-x)), overflow-free; arrays (n,) of one float dtype. See the twin."""
    check_threads(n_threads)
    cdef intp_t n = x.shape[0], c
    _check_len("out", out.shape[0], n)
    cdef bint stream = False  # exp-bound: streaming measured slower (see _chunk)
    with nogil:
        for c in prange(_n_chunks(n), schedule='static', num_threads=_team(EXP_COST * n, n_threads)):
            _chunk(SIGMOID_F, &x[c * CHUNK], &x[c * CHUNK], &out[c * CHUNK], 0,
                   _chunk_len(c, n), stream)


def sigmoid_backward(const floating[::1] grad_output,  # IN (n,)
                     const floating[::1] output,       # IN (n,) sigmoid's result y
                     floating[::1] grad_input,         # OUT (n,)
                     int n_threads):
    """grad_input = grad_output * y * (1 - y). See the twin."""
    check_threads(n_threads)
    cdef intp_t n = grad_output.shape[0], c
    _check_len("output", output.shape[0], n)
    _check_len("grad_input", grad_input.shape[0], n)
    cdef bint stream = stream_pays(n * sizeof(floating))
    with nogil:
        for c in prange(_n_chunks(n), schedule='static', num_threads=_team(n, n_threads)):
            _chunk(SIGMOID_B, &grad_output[c * CHUNK], &output[c * CHUNK], &grad_input[c * CHUNK], 0,
                   _chunk_len(c, n), stream)


def tanh_forward(const floating[::1] x,  # IN (n,)
                 floating[::1] out,      # OUT (n,)
                 int n_threads):
    """out = tanh(x); arrays (n,) of one float dtype. See the twin."""
    check_threads(n_threads)
    cdef intp_t n = x.shape[0], c
    _check_len("out", out.shape[0], n)
    cdef bint stream = False  # exp-bound: streaming measured slower (see _chunk)
    with nogil:
        for c in prange(_n_chunks(n), schedule='static', num_threads=_team(EXP_COST * n, n_threads)):
            _chunk(TANH_F, &x[c * CHUNK], &x[c * CHUNK], &out[c * CHUNK], 0,
                   _chunk_len(c, n), stream)


def tanh_backward(const floating[::1] grad_output,  # IN (n,)
                  const floating[::1] output,       # IN (n,) tanh's result y
                  floating[::1] grad_input,         # OUT (n,)
                  int n_threads):
    """grad_input = grad_output * (1 - y^2). See the twin."""
    check_threads(n_threads)
    cdef intp_t n = grad_output.shape[0], c
    _check_len("output", output.shape[0], n)
    _check_len("grad_input", grad_input.shape[0], n)
    cdef bint stream = stream_pays(n * sizeof(floating))
    with nogil:
        for c in prange(_n_chunks(n), schedule='static', num_threads=_team(n, n_threads)):
            _chunk(TANH_B, &grad_output[c * CHUNK], &output[c * CHUNK], &grad_input[c * CHUNK], 0,
                   _chunk_len(c, n), stream)


def silu_forward(const floating[::1] x,  # IN (n,)
                 floating[::1] out,      # OUT (n,)
                 int n_threads):
    """out = x * sigmoid(x); arrays (n,) of one float dtype. See the twin."""
    check_threads(n_threads)
    cdef intp_t n = x.shape[0], c
    _check_len("out", out.shape[0], n)
    cdef bint stream = False  # exp-bound: streaming measured slower (see _chunk)
    with nogil:
        for c in prange(_n_chunks(n), schedule='static', num_threads=_team(EXP_COST * n, n_threads)):
            _chunk(SILU_F, &x[c * CHUNK], &x[c * CHUNK], &out[c * CHUNK], 0,
                   _chunk_len(c, n), stream)


def silu_backward(const floating[::1] grad_output,  # IN (n,)
                  const floating[::1] x,            # IN (n,) the forward input
                  floating[::1] grad_input,         # OUT (n,)
                  int n_threads):
    """grad_input = grad_output * s * (1 + x * (1 - s)), s = sigmoid(x). See the twin."""
    check_threads(n_threads)
    cdef intp_t n = grad_output.shape[0], c
    _check_len("x", x.shape[0], n)
    _check_len("grad_input", grad_input.shape[0], n)
    cdef bint stream = False  # exp-bound: streaming measured slower (see _chunk)
    with nogil:
        for c in prange(_n_chunks(n), schedule='static', num_threads=_team(EXP_COST * n, n_threads)):
            _chunk(SILU_B, &grad_output[c * CHUNK], &x[c * CHUNK], &grad_input[c * CHUNK], 0,
                   _chunk_len(c, n), stream)


# ---- row workers: one row of C >= 1 entries each -------------------------------------------------

cdef inline floating _row_max(const floating* x, intp_t C) noexcept nogil:
    # A NaN makes the whole row NaN later (exp(NaN) enters the sum), as torch's.
    cdef floating m = x[0]
    cdef intp_t j
    for j in range(1, C):
        if x[j] > m:
            m = x[j]
    return m


cdef inline double _row_sum_exp(const floating* x, floating m, intp_t C) noexcept nogil:
    # Four partial sums in a fixed order: four independent add chains instead of one
    # (measured ~2x on (1024, 1000) float32), and still the same result at any thread count.
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef intp_t j, C4 = C - C % 4
    for j in range(0, C4, 4):
        if floating is float:
            s0 += _expf_nonpos(x[j] - m)  # x[j] - m <= 0
            s1 += _expf_nonpos(x[j + 1] - m)
            s2 += _expf_nonpos(x[j + 2] - m)
            s3 += _expf_nonpos(x[j + 3] - m)
        else:
            s0 += exp(x[j] - m)
            s1 += exp(x[j + 1] - m)
            s2 += exp(x[j + 2] - m)
            s3 += exp(x[j + 3] - m)
    for j in range(C4, C):
        if floating is float:
            s0 += _expf_nonpos(x[j] - m)
        else:
            s0 += exp(x[j] - m)
    return (s0 + s1) + (s2 + s3)


cdef void _softmax_row(const floating* x, floating* out, intp_t C) noexcept nogil:
    cdef floating m = _row_max(x, C)
    cdef double s = 0
    cdef intp_t j
    for j in range(C):
        if floating is float:
            out[j] = _expf_nonpos(x[j] - m)  # x[j] - m <= 0
        else:
            out[j] = exp(x[j] - m)
        s += out[j]
    for j in range(C):
        out[j] = <floating>(out[j] / s)


cdef void _log_softmax_row(const floating* x, floating* out, intp_t C) noexcept nogil:
    cdef floating m = _row_max(x, C)
    cdef double log_s = log(_row_sum_exp(x, m, C))
    cdef intp_t j
    for j in range(C):
        out[j] = <floating>((x[j] - m) - log_s)


cdef void _softmax_bwd_row(const floating* g, const floating* y, floating* gi, intp_t C) noexcept nogil:
    cdef double dot = 0
    cdef intp_t j
    for j in range(C):
        dot += <double>g[j] * y[j]
    for j in range(C):
        gi[j] = <floating>(y[j] * (g[j] - dot))


cdef void _log_softmax_bwd_row(const floating* g, const floating* y, floating* gi,
                               intp_t C) noexcept nogil:
    cdef double total = 0
    cdef intp_t j
    for j in range(C):
        total += g[j]
    for j in range(C):
        gi[j] = <floating>(g[j] - exp(y[j]) * total)


# ---- row-wise kernels: prange over rows -------------------------------------------------------

def softmax_forward(const floating[:, ::1] x,  # IN (R, C)
                    floating[:, ::1] out,      # OUT (R, C)
                    int n_threads):
    """Softmax over the last axis of each row, with max subtraction.

    Parameters
    ----------
    x : ndarray of shape (R, C), dtype float32 or float64, C-contiguous
    out : ndarray of shape (R, C), same dtype, written
    n_threads : int

    Same contract as the NumPy twin. The caller validates and allocates.
    """
    check_threads(n_threads)
    cdef intp_t R = x.shape[0], C = x.shape[1], r
    _check_shape("out", out.shape[0], out.shape[1], R, C)
    if C == 0:
        return
    with nogil:
        for r in prange(R, schedule='static', num_threads=_team(ROW_COST * R * C, n_threads)):
            _softmax_row(&x[r, 0], &out[r, 0], C)


def softmax_backward(const floating[:, ::1] grad_output,  # IN (R, C)
                     const floating[:, ::1] output,       # IN (R, C) softmax's result y
                     floating[:, ::1] grad_input,         # OUT (R, C)
                     int n_threads):
    """grad_input[r] = y_r * (g_r - <g_r, y_r>). See the twin."""
    check_threads(n_threads)
    cdef intp_t R = grad_output.shape[0], C = grad_output.shape[1], r
    _check_shape("output", output.shape[0], output.shape[1], R, C)
    _check_shape("grad_input", grad_input.shape[0], grad_input.shape[1], R, C)
    if C == 0:
        return
    with nogil:
        for r in prange(R, schedule='static', num_threads=_team(ROW_COST * R * C, n_threads)):
            _softmax_bwd_row(&grad_output[r, 0], &output[r, 0], &grad_input[r, 0], C)


def log_softmax_forward(const floating[:, ::1] x,  # IN (R, C)
                        floating[:, ::1] out,      # OUT (R, C)
                        int n_threads):
    """out[r] = (x_r - max x_r) - log sum exp(x_r - max x_r). See the twin."""
    check_threads(n_threads)
    cdef intp_t R = x.shape[0], C = x.shape[1], r
    _check_shape("out", out.shape[0], out.shape[1], R, C)
    if C == 0:
        return
    with nogil:
        for r in prange(R, schedule='static', num_threads=_team(ROW_COST * R * C, n_threads)):
            _log_softmax_row(&x[r, 0], &out[r, 0], C)


def log_softmax_backward(const floating[:, ::1] grad_output,  # IN (R, C)
                         const floating[:, ::1] output,       # IN (R, C) log_softmax's result y
                         floating[:, ::1] grad_input,         # OUT (R, C)
                         int n_threads):
    """grad_input[r] = g_r - exp(y_r) * sum(g_r). See the twin."""
    check_threads(n_threads)
    cdef intp_t R = grad_output.shape[0], C = grad_output.shape[1], r
    _check_shape("output", output.shape[0], output.shape[1], R, C)
    _check_shape("grad_input", grad_input.shape[0], grad_input.shape[1], R, C)
    if C == 0:
        return
    with nogil:
        for r in prange(R, schedule='static', num_threads=_team(ROW_COST * R * C, n_threads)):
            _log_softmax_bwd_row(&grad_output[r, 0], &output[r, 0], &grad_input[r, 0], C)


cdef int _check_targets(const int64_t[::1] target, intp_t C) except -1:
    # O(N) next to the O(N*C) rows: the loops index logits[i, target[i]] unchecked.
    cdef intp_t i
    for i in range(target.shape[0]):
        if target[i] < 0 or target[i] >= C:
            raise ValueError(f"target must hold class indices in [0, {C}), got {target[i]} at row {i}")
    return 0


def softmax_cross_entropy_forward(const floating[:, ::1] logits,  # IN (N, C)
                                  const int64_t[::1] target,      # IN (N,) int64 in [0, C)
                                  floating[::1] loss,             # OUT (N,)
                                  double[::1] row_max,            # OUT (N,) float64
                                  double[::1] log_sum,            # OUT (N,) float64
                                  int n_threads):
    """Per-row cross-entropy of softmax(logits) against integer targets.

    loss[i] = (m_i - x[i, t_i]) + log_sum[i], with m_i = row_max[i] = max_j x[i, j] and
    log_sum[i] = log sum_j exp(x[i, j] - m_i), both kept in float64 for the backward.
    They are kept apart, not added into one log-sum-exp: log_sum is in [0, log C], and
    m + log_sum would round it away when |m| is large (1e30 + log 2 == 1e30), which makes
    the backward's probabilities of tied maxima 1 each instead of 1/2.

    Parameters
    ----------
    logits : ndarray of shape (N, C), dtype float32 or float64, C-contiguous
    target : ndarray of shape (N,), dtype int64, every entry in [0, C) (else ValueError)
    loss : ndarray of shape (N,), logits' dtype, written
    row_max, log_sum : ndarrays of shape (N,), float64, written
    n_threads : int
    """
    check_threads(n_threads)
    cdef intp_t N = logits.shape[0], C = logits.shape[1], i
    cdef floating m
    cdef double log_s
    _check_len("target", target.shape[0], N)
    _check_len("loss", loss.shape[0], N)
    _check_len("row_max", row_max.shape[0], N)
    _check_len("log_sum", log_sum.shape[0], N)
    _check_targets(target, C)
    if C == 0:
        return
    with nogil:
        for i in prange(N, schedule='static', num_threads=_team(ROW_COST * N * C, n_threads)):
            m = _row_max(&logits[i, 0], C)
            log_s = log(_row_sum_exp(&logits[i, 0], m, C))
            loss[i] = <floating>((m - logits[i, target[i]]) + log_s)
            row_max[i] = m
            log_sum[i] = log_s


def softmax_cross_entropy_backward(const floating[::1] grad_output,  # IN (N,)
                                   const floating[:, ::1] logits,    # IN (N, C)
                                   const int64_t[::1] target,        # IN (N,)
                                   const double[::1] row_max,        # IN (N,) from the forward
                                   const double[::1] log_sum,        # IN (N,) from the forward
                                   floating[:, ::1] grad_input,      # OUT (N, C)
                                   int n_threads):
    """grad_input[i, j] = grad_output[i] * (exp((x[i, j] - m_i) - log_sum[i]) - [j == t_i]). See the twin."""
    check_threads(n_threads)
    cdef intp_t N = logits.shape[0], C = logits.shape[1], i, j
    cdef double g, m, ls
    _check_len("grad_output", grad_output.shape[0], N)
    _check_len("target", target.shape[0], N)
    _check_len("row_max", row_max.shape[0], N)
    _check_len("log_sum", log_sum.shape[0], N)
    _check_shape("grad_input", grad_input.shape[0], grad_input.shape[1], N, C)
    _check_targets(target, C)
    if C == 0:
        return
    with nogil:
        for i in prange(N, schedule='static', num_threads=_team(ROW_COST * N * C, n_threads)):
            g = grad_output[i]
            m = row_max[i]
            ls = log_sum[i]
            for j in range(C):
                if floating is float:  # (x - m) - log_sum <= 0, and the float exp vectorizes where libm's does not
                    grad_input[i, j] = <float>g * _expf_nonpos(<float>((logits[i, j] - m) - ls))
                else:
                    grad_input[i, j] = g * exp((logits[i, j] - m) - ls)
            grad_input[i, target[i]] = <floating>(g * (exp((logits[i, target[i]] - m) - ls) - 1))
