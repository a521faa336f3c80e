"""Optimizer updates: sgd_step, adagrad_step, rmsprop_step, adam_step, adamw_step.

Each kernel is ONE pass over memory: for every element ``i`` it reads the gradient,
updates the parameter and its state arrays in place, and never touches another element.
Torch's single-tensor (``foreach=False``) code makes one pass per operation; fusing them
is the whole speed-up. The specification is the NumPy twin,
``dlcore/backends/numpy_kernels/optim.py``; the operations here are the same, in the same
order and the same precision (float32 arrays are updated in float32 arithmetic, as torch
and NumPy do; the double scalars are rounded to the array's dtype first).

Index glossary: ``i`` flat element index, ``n`` elements, ``c`` chunk.

Parallel axis: contiguous chunks of ``_CHUNK`` elements, ``prange(schedule='static')``.
Element ``i``'s new values depend only on element ``i``'s old ones, so the chunks are
independent, there is no race, and the result is bitwise the same for any thread count.
Arrays smaller than two chunks run on one thread (an OpenMP region costs more than the
update; see pitfall 5 in STYLE.md).

Vectorization: the square-root rules (Adagrad, RMSprop, Adam) work in blocks of
``_BLOCK`` elements: one sweep updates the state and leaves the radicands in a stack
buffer, a C helper takes their square roots (SSE2, AVX or AVX-512F, the widest the CPU
has, chosen at run time), a last sweep moves the parameters (for Adam a C loop compiled
for AVX-512F, AVX2 and baseline, picked at load time). gcc vectorizes the sweeps (it
cannot vectorize a loop that calls libm's ``sqrt``, which may set errno); the block stays
in L1, so memory is still crossed once. Measured: the float32 Adam step on 1e6 elements
went from 8 ms to 1.3 ms on one thread; on 1e7 at two threads the wider square roots and
divisions took it from 10.1 to 6.6 ms (EPYC dev machine, best of 15).

Unused state arrays (no momentum, not centered, no amsgrad) are passed as empty arrays
and never read.
"""
from libc.math cimport pow

from cython.parallel cimport prange

from dlcore._common cimport check_threads, floating, intp_t

cdef extern from *:
    """
    /* Square roots of a block, in place. libm's sqrtf may set errno, and that alone stops
       gcc from vectorizing any loop that calls it (we build without -fno-math-errno).
       sqrtps/sqrtpd are the same correctly rounded IEEE square root (NaN below zero, -0
       for -0), 4/2 at a time with SSE2, 8/4 with AVX and 16/8 with AVX-512F; the widest
       the CPU has is chosen at run time. The square roots were 30% of the float32 Adam
       step's time with SSE2 on the EPYC dev machine. */
    #include <math.h>
    #if defined(__GNUC__) && defined(__x86_64__)
    #include <immintrin.h>
    static int dlcore_optim_isa = -1;  /* -1 not asked yet, 0 SSE2, 1 AVX, 2 AVX-512F */
    static int dlcore_optim_get_isa(void) {
        if (dlcore_optim_isa < 0) {     /* a benign race: every thread stores the same value */
            __builtin_cpu_init();
            dlcore_optim_isa = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx") ? 1 : 0;
        }
        return dlcore_optim_isa;
    }
    static void dlcore_optim_set_isa(int best) { dlcore_optim_isa = best ? -1 : 0; }
    __attribute__((target("avx512f"))) static Py_ssize_t dlcore_sqrt16_f(float *x, Py_ssize_t n) {
        Py_ssize_t i = 0;
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_sqrt_ps(_mm512_loadu_ps(x + i)));
        return i;
    }
    __attribute__((target("avx512f"))) static Py_ssize_t dlcore_sqrt8_d(double *x, Py_ssize_t n) {
        Py_ssize_t i = 0;
        for (; i + 8 <= n; i += 8) _mm512_storeu_pd(x + i, _mm512_sqrt_pd(_mm512_loadu_pd(x + i)));
        return i;
    }
    __attribute__((target("avx"))) static Py_ssize_t dlcore_sqrt8_f(float *x, Py_ssize_t n) {
        Py_ssize_t i = 0;
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_sqrt_ps(_mm256_loadu_ps(x + i)));
        return i;
    }
    __attribute__((target("avx"))) static Py_ssize_t dlcore_sqrt4_d(double *x, Py_ssize_t n) {
        Py_ssize_t i = 0;
        for (; i + 4 <= n; i += 4) _mm256_storeu_pd(x + i, _mm256_sqrt_pd(_mm256_loadu_pd(x + i)));
        return i;
    }
    static void dlcore_sqrt_block_f(float *x, Py_ssize_t n) {
        int isa = dlcore_optim_get_isa();
        Py_ssize_t i = isa == 2 ? dlcore_sqrt16_f(x, n) : isa == 1 ? dlcore_sqrt8_f(x, n) : 0;
        for (; i + 4 <= n; i += 4) _mm_storeu_ps(x + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
        for (; i < n; i++) x[i] = sqrtf(x[i]);
    }
    static void dlcore_sqrt_block_d(double *x, Py_ssize_t n) {
        int isa = dlcore_optim_get_isa();
        Py_ssize_t i = isa == 2 ? dlcore_sqrt8_d(x, n) : isa == 1 ? dlcore_sqrt4_d(x, n) : 0;
        for (; i + 2 <= n; i += 2) _mm_storeu_pd(x + i, _mm_sqrt_pd(_mm_loadu_pd(x + i)));
        for (; i < n; i++) x[i] = sqrt(x[i]);
    }
    #else
    static void dlcore_optim_set_isa(int best) {}
    static void dlcore_sqrt_block_f(float *x, Py_ssize_t n) {
        for (Py_ssize_t i = 0; i < n; i++) x[i] = sqrtf(x[i]);
    }
    static void dlcore_sqrt_block_d(double *x, Py_ssize_t n) {
        for (Py_ssize_t i = 0; i < n; i++) x[i] = sqrt(x[i]);
    }
    #endif
    /* The Adam parameter step over a block, compiled for AVX-512F, AVX2 and baseline
       x86-64 (gcc's target_clones, picked at load time): the two divisions per element
       were the other large part of the step. Same operations in every copy, no FMA
       (enabled by neither target), so every copy gives the same bits. */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define DLCORE_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
    #else
    #define DLCORE_MULTIVERSION
    #endif
    DLCORE_MULTIVERSION static void dlcore_adam_param_f(float *p, const float *m,
            const float *root, Py_ssize_t n, float decay, float step_size, float bc2_sqrt, float eps) {
        for (Py_ssize_t i = 0; i < n; i++) p[i] = p[i] * decay - step_size * m[i] / (root[i] / bc2_sqrt + eps);
    }
    DLCORE_MULTIVERSION static void dlcore_adam_param_d(double *p, const double *m,
            const double *root, Py_ssize_t n, double decay, double step_size, double bc2_sqrt, double eps) {
        for (Py_ssize_t i = 0; i < n; i++) p[i] = p[i] * decay - step_size * m[i] / (root[i] / bc2_sqrt + eps);
    }
    """
    void dlcore_sqrt_block_f(float* x, intp_t n) noexcept nogil
    void dlcore_sqrt_block_d(double* x, intp_t n) noexcept nogil
    void dlcore_optim_set_isa(int best) noexcept
    void dlcore_adam_param_f(float* p, const float* m, const float* root, intp_t n, float decay,
                             float step_size, float bc2_sqrt, float eps) noexcept nogil
    void dlcore_adam_param_d(double* p, const double* m, const double* root, intp_t n, double decay,
                             double step_size, double bc2_sqrt, double eps) noexcept nogil


def _set_isa(bint best):
    """Tests: False takes the square roots with SSE2 only, True with the CPU's widest again."""
    dlcore_optim_set_isa(best)


# Elements per parallel task: 64 KiB of float32 per array, large enough to amortize the
# scheduling, small enough to split 1e5-element tensors across two threads.
cdef intp_t _CHUNK = 16384

# Elements per block of the blocked workers (a stack buffer of square roots).
cdef enum:
    _BLOCK = 256


cdef inline void _sqrt_block(floating* x, intp_t n) noexcept nogil:
    if floating is float:
        dlcore_sqrt_block_f(x, n)
    else:
        dlcore_sqrt_block_d(x, n)


cdef inline floating _nan_max(floating a, floating b) noexcept nogil:
    # np.maximum / torch.maximum: a NaN in either argument wins. Selects, not branches,
    # so the loop still vectorizes.
    cdef floating r = b if b > a else a
    return b if b != b else r


def _check_size(name, intp_t size, intp_t n, bint used):
    if used and size != n:
        raise ValueError(f"{name} must have {n} elements (the parameter's), got {size}")


cdef inline intp_t _n_chunks(intp_t n) noexcept nogil:
    return (n + _CHUNK - 1) // _CHUNK


# The workers: one element's update is a `cdef inline` function whose flags are literals
# at each call site, so that gcc removes the branches (and the accesses to unused state
# arrays) and vectorizes every loop. Other options are selects (`x if flag else y`).

cdef inline floating _lerp(floating start, floating end, floating coeff, bint small) noexcept nogil:
    # torch's lerp by w: start + w (end - start) when |w| < 0.5, else end + (w - 1)(end - start),
    # which is exact at w = 1. `coeff` is w or w - 1.
    return (start if small else end) + coeff * (end - start)


# ---- SGD -----------------------------------------------------------------------------------

cdef inline void _sgd_elem(floating* p, const floating* g, floating* buf, intp_t i, floating lr,
                           floating mom, floating one_minus_damp, floating wd, bint use_wd,
                           bint use_mom, bint nesterov, bint first) noexcept nogil:
    cdef floating gi = g[i], b
    gi = gi + wd * p[i] if use_wd else gi
    if use_mom:
        b = gi if first else buf[i] * mom + one_minus_damp * gi
        buf[i] = b
        gi = gi + mom * b if nesterov else b
    p[i] = p[i] - lr * gi


cdef inline void _sgd_loop(floating* p, const floating* g, floating* buf, intp_t start, intp_t stop,
                           floating lr, floating mom, floating one_minus_damp, floating wd,
                           bint use_wd, bint use_mom, bint nesterov, bint first) noexcept nogil:
    cdef intp_t i
    for i in range(start, stop):
        _sgd_elem(p, g, buf, i, lr, mom, one_minus_damp, wd, use_wd, use_mom, nesterov, first)


cdef void _sgd_range(floating* p, const floating* g, floating* buf, intp_t start, intp_t stop,
                     floating lr, floating mom, floating one_minus_damp, floating wd,
                     bint use_wd, bint use_mom, bint nesterov, bint first) noexcept nogil:
    # Every flag a literal in the loops that run at every step (the first momentum step runs
    # once, with runtime flags). With runtime flags in the loop gcc kept it scalar: 21
    # instructions per element (callgrind, float32, steady state with momentum); with
    # literals it vectorizes.
    if not use_mom:
        if use_wd:
            _sgd_loop(p, g, buf, start, stop, lr, mom, one_minus_damp, wd, True, False, False, False)
        else:
            _sgd_loop(p, g, buf, start, stop, lr, mom, one_minus_damp, wd, False, False, False, False)
    elif first:
        _sgd_loop(p, g, buf, start, stop, lr, mom, one_minus_damp, wd, use_wd, True, nesterov, True)
    elif nesterov:
        if use_wd:
            _sgd_loop(p, g, buf, start, stop, lr, mom, one_minus_damp, wd, True, True, True, False)
        else:
            _sgd_loop(p, g, buf, start, stop, lr, mom, one_minus_damp, wd, False, True, True, False)
    elif use_wd:
        _sgd_loop(p, g, buf, start, stop, lr, mom, one_minus_damp, wd, True, True, False, False)
    else:
        _sgd_loop(p, g, buf, start, stop, lr, mom, one_minus_damp, wd, False, True, False, False)


def sgd_step(floating[::1] param,             # IN/OUT
             const floating[::1] grad,        # IN
             floating[::1] momentum_buffer,   # IN/OUT (empty when momentum == 0)
             double lr, double momentum, double dampening, double weight_decay,
             bint nesterov, bint first_step, int n_threads):
    """SGD with momentum, dampening, Nesterov and weight decay, in place.

    Parameters
    ----------
    param : (n,) float32 or float64, updated in place
    grad : (n,) same dtype, read only
    momentum_buffer : (n,) same dtype, updated in place; empty when ``momentum == 0``
    lr, momentum, dampening, weight_decay : float
    nesterov : bool
    first_step : bool
        True when the buffer has no history yet: it is set to the gradient (torch).
    n_threads : int

    Same contract as the NumPy twin. The caller validates and allocates.
    """
    check_threads(n_threads)
    cdef intp_t n = param.shape[0], c
    cdef bint use_mom = momentum != 0
    _check_size("grad", grad.shape[0], n, True)
    _check_size("momentum_buffer", momentum_buffer.shape[0], n, use_mom)
    if n == 0:
        return
    cdef floating* p = &param[0]
    cdef const floating* g = &grad[0]
    cdef floating* buf = &momentum_buffer[0] if use_mom else NULL
    cdef floating lr_ = <floating>lr, mom = <floating>momentum, wd = <floating>weight_decay
    cdef floating omd = <floating>(1 - dampening)
    cdef bint use_wd = weight_decay != 0
    cdef intp_t chunks = _n_chunks(n)
    if n_threads == 1 or chunks < 2:
        with nogil:
            _sgd_range(p, g, buf, 0, n, lr_, mom, omd, wd, use_wd, use_mom, nesterov, first_step)
        return
    for c in prange(chunks, nogil=True, schedule='static', num_threads=n_threads):
        _sgd_range(p, g, buf, c * _CHUNK, min(n, (c + 1) * _CHUNK), lr_, mom, omd, wd,
                   use_wd, use_mom, nesterov, first_step)


# ---- Adagrad -------------------------------------------------------------------------------

cdef inline floating _decayed(const floating* g, floating* p, intp_t i, floating wd,
                              bint use_wd) noexcept nogil:
    # torch's grad.add(param, alpha=weight_decay), skipped (not multiplied by 0) when it is 0.
    return g[i] + wd * p[i] if use_wd else g[i]


cdef void _adagrad_range(floating* p, const floating* g, floating* s, intp_t start, intp_t stop,
                         floating clr, floating wd, floating eps, bint use_wd) noexcept nogil:
    # Blocked like _adam_range: sum of squares, square roots, step.
    cdef floating root[_BLOCK]
    cdef floating gi
    cdef intp_t b0 = start, b1, i
    while b0 < stop:
        b1 = min(b0 + _BLOCK, stop)
        for i in range(b0, b1):
            gi = _decayed(g, p, i, wd, use_wd)
            s[i] = s[i] + gi * gi
            root[i - b0] = s[i]
        _sqrt_block(root, b1 - b0)
        for i in range(b0, b1):
            gi = _decayed(g, p, i, wd, use_wd)
            p[i] = p[i] - clr * gi / (root[i - b0] + eps)
        b0 = b1


def adagrad_step(floating[::1] param,         # IN/OUT
                 const floating[::1] grad,    # IN
                 floating[::1] state_sum,     # IN/OUT
                 double lr, double lr_decay, double weight_decay, double eps, double step,
                 int n_threads):
    """Adagrad with learning-rate decay and weight decay, in place.

    Parameters
    ----------
    param, state_sum : (n,) float32 or float64, updated in place
    grad : (n,) same dtype, read only
    lr, lr_decay, weight_decay, eps : float
    step : float
        This step's number, counting from 1.
    n_threads : int

    Same contract as the NumPy twin. The caller validates and allocates.
    """
    check_threads(n_threads)
    cdef intp_t n = param.shape[0], c
    _check_size("grad", grad.shape[0], n, True)
    _check_size("state_sum", state_sum.shape[0], n, True)
    if n == 0:
        return
    cdef floating* p = &param[0]
    cdef const floating* g = &grad[0]
    cdef floating* s = &state_sum[0]
    cdef floating clr = <floating>(lr / (1 + (step - 1) * lr_decay))
    cdef floating wd = <floating>weight_decay, eps_ = <floating>eps
    cdef bint use_wd = weight_decay != 0
    cdef intp_t chunks = _n_chunks(n)
    if n_threads == 1 or chunks < 2:
        with nogil:
            _adagrad_range(p, g, s, 0, n, clr, wd, eps_, use_wd)
        return
    for c in prange(chunks, nogil=True, schedule='static', num_threads=n_threads):
        _adagrad_range(p, g, s, c * _CHUNK, min(n, (c + 1) * _CHUNK), clr, wd, eps_, use_wd)


# ---- RMSprop -------------------------------------------------------------------------------

cdef inline floating _rmsprop_square(floating* p, const floating* g, floating* sq, floating* ga,
                                    intp_t i, floating alpha, floating one_minus_alpha,
                                    floating coeff, bint small, floating wd, bint use_wd,
                                    bint centered) noexcept nogil:
    # Updates sq[i] (and ga[i]); returns what goes under the square root.
    cdef floating gi = _decayed(g, p, i, wd, use_wd), si, ai
    si = sq[i] * alpha + one_minus_alpha * gi * gi
    sq[i] = si
    if centered:
        ai = _lerp(ga[i], gi, coeff, small)
        ga[i] = ai
        return si - ai * ai
    return si


cdef inline void _rmsprop_update(floating* p, const floating* g, floating* buf, intp_t i,
                                 floating root, floating lr, floating eps, floating wd,
                                 floating mom, bint use_wd, bint use_mom) noexcept nogil:
    cdef floating gi = _decayed(g, p, i, wd, use_wd), avg = root + eps, b
    if use_mom:
        b = buf[i] * mom + gi / avg
        buf[i] = b
        p[i] = p[i] - lr * b
    else:
        p[i] = p[i] - lr * gi / avg


cdef void _rmsprop_range(floating* p, const floating* g, floating* sq, floating* ga, floating* buf,
                         intp_t start, intp_t stop, floating lr, floating alpha,
                         floating one_minus_alpha, floating coeff, bint small, floating eps,
                         floating wd, floating mom, bint use_wd, bint centered,
                         bint use_mom) noexcept nogil:
    # Blocked like _adam_range: averages, square roots, step.
    cdef floating root[_BLOCK]
    cdef intp_t b0 = start, b1, i
    while b0 < stop:
        b1 = min(b0 + _BLOCK, stop)
        if centered:
            for i in range(b0, b1):
                root[i - b0] = _rmsprop_square(p, g, sq, ga, i, alpha, one_minus_alpha, coeff,
                                               small, wd, use_wd, True)
        else:
            for i in range(b0, b1):
                root[i - b0] = _rmsprop_square(p, g, sq, ga, i, alpha, one_minus_alpha, coeff,
                                               small, wd, use_wd, False)
        _sqrt_block(root, b1 - b0)
        if use_mom:
            for i in range(b0, b1):
                _rmsprop_update(p, g, buf, i, root[i - b0], lr, eps, wd, mom, use_wd, True)
        else:
            for i in range(b0, b1):
                _rmsprop_update(p, g, buf, i, root[i - b0], lr, eps, wd, mom, use_wd, False)
        b0 = b1


def rmsprop_step(floating[::1] param,             # IN/OUT
                 const floating[::1] grad,        # IN
                 floating[::1] square_avg,        # IN/OUT
                 floating[::1] grad_avg,          # IN/OUT (empty unless centered)
                 floating[::1] momentum_buffer,   # IN/OUT (empty unless momentum > 0)
                 double lr, double alpha, double eps, double weight_decay, double momentum,
                 bint centered, int n_threads):
    """RMSprop (optionally centered, with momentum and weight decay), in place.

    Parameters
    ----------
    param, square_avg : (n,) float32 or float64, updated in place
    grad : (n,) same dtype, read only
    grad_avg : (n,) same dtype, updated in place; empty unless ``centered``
    momentum_buffer : (n,) same dtype, updated in place; empty unless ``momentum > 0``
    lr, alpha, eps, weight_decay, momentum : float
    centered : bool
    n_threads : int

    Same contract as the NumPy twin. The caller validates and allocates.
    """
    check_threads(n_threads)
    cdef intp_t n = param.shape[0], c
    cdef bint use_mom = momentum > 0
    _check_size("grad", grad.shape[0], n, True)
    _check_size("square_avg", square_avg.shape[0], n, True)
    _check_size("grad_avg", grad_avg.shape[0], n, centered)
    _check_size("momentum_buffer", momentum_buffer.shape[0], n, use_mom)
    if n == 0:
        return
    cdef floating* p = &param[0]
    cdef const floating* g = &grad[0]
    cdef floating* sq = &square_avg[0]
    cdef floating* ga = &grad_avg[0] if centered else NULL
    cdef floating* buf = &momentum_buffer[0] if use_mom else NULL
    cdef floating lr_ = <floating>lr, alpha_ = <floating>alpha, eps_ = <floating>eps
    cdef floating oma = <floating>(1 - alpha), wd = <floating>weight_decay
    cdef floating mom = <floating>momentum
    cdef bint small = (oma if oma >= 0 else -oma) < 0.5
    cdef floating coeff = oma if small else oma - 1
    cdef bint use_wd = weight_decay != 0
    cdef intp_t chunks = _n_chunks(n)
    if n_threads == 1 or chunks < 2:
        with nogil:
            _rmsprop_range(p, g, sq, ga, buf, 0, n, lr_, alpha_, oma, coeff, small, eps_, wd, mom,
                           use_wd, centered, use_mom)
        return
    for c in prange(chunks, nogil=True, schedule='static', num_threads=n_threads):
        _rmsprop_range(p, g, sq, ga, buf, c * _CHUNK, min(n, (c + 1) * _CHUNK), lr_, alpha_, oma,
                       coeff, small, eps_, wd, mom, use_wd, centered, use_mom)


# ---- Adam and AdamW ------------------------------------------------------------------------

cdef inline floating _adam_moments(floating* p, const floating* g, floating* m, floating* v,
                                  floating* vmax, intp_t i, floating coeff, bint small,
                                  floating beta2, floating one_minus_beta2, floating wd,
                                  floating decay, bint use_wd, bint amsgrad) noexcept nogil:
    # Updates m[i], v[i] (and vmax[i]); returns the second moment the step divides by.
    # decay is 1 - lr * weight_decay for AdamW and exactly 1 for Adam (x * 1 == x, always).
    cdef floating gi = g[i], mi, vi
    gi = gi + wd * (p[i] * decay) if use_wd else gi
    mi = _lerp(m[i], gi, coeff, small)
    vi = v[i] * beta2 + one_minus_beta2 * gi * gi
    m[i] = mi
    v[i] = vi
    if amsgrad:
        vi = _nan_max(vmax[i], vi)
        vmax[i] = vi
    return vi


cdef void _adam_range(floating* p, const floating* g, floating* m, floating* v, floating* vmax,
                      intp_t start, intp_t stop, floating coeff, bint small, floating beta2,
                      floating one_minus_beta2, floating step_size, floating bc2_sqrt,
                      floating eps, floating wd, floating decay, bint use_wd,
                      bint amsgrad) noexcept nogil:
    # Blocks of _BLOCK elements, three vectorized sweeps each: the moments (into `root`),
    # their square roots, the parameter step. The block stays in L1 between sweeps, so
    # main memory is still crossed once.
    cdef floating root[_BLOCK]
    cdef intp_t b0 = start, b1, i
    while b0 < stop:
        b1 = min(b0 + _BLOCK, stop)
        if amsgrad:
            for i in range(b0, b1):
                root[i - b0] = _adam_moments(p, g, m, v, vmax, i, coeff, small, beta2,
                                             one_minus_beta2, wd, decay, use_wd, True)
        else:
            for i in range(b0, b1):
                root[i - b0] = _adam_moments(p, g, m, v, vmax, i, coeff, small, beta2,
                                             one_minus_beta2, wd, decay, use_wd, False)
        _sqrt_block(root, b1 - b0)
        # p[i] = p[i] * decay - step_size * m[i] / (root[i - b0] / bc2_sqrt + eps), in C
        if floating is float:
            dlcore_adam_param_f(p + b0, m + b0, root, b1 - b0, decay, step_size, bc2_sqrt, eps)
        else:
            dlcore_adam_param_d(p + b0, m + b0, root, b1 - b0, decay, step_size, bc2_sqrt, eps)
        b0 = b1


cdef void _adam(floating[::1] param, const floating[::1] grad, floating[::1] exp_avg,
                floating[::1] exp_avg_sq, floating[::1] max_exp_avg_sq, double lr, double beta1,
                double beta2, double eps, double weight_decay, bint amsgrad, double step,
                bint decoupled, int n_threads) except *:
    cdef intp_t n = param.shape[0], c
    _check_size("grad", grad.shape[0], n, True)
    _check_size("exp_avg", exp_avg.shape[0], n, True)
    _check_size("exp_avg_sq", exp_avg_sq.shape[0], n, True)
    _check_size("max_exp_avg_sq", max_exp_avg_sq.shape[0], n, amsgrad)
    if n == 0:
        return
    cdef floating* p = &param[0]
    cdef const floating* g = &grad[0]
    cdef floating* m = &exp_avg[0]
    cdef floating* v = &exp_avg_sq[0]
    cdef floating* vmax = &max_exp_avg_sq[0] if amsgrad else NULL
    # The scalar part of torch's update, in double as torch does it in Python.
    cdef double bias_correction1 = 1 - pow(beta1, step)
    cdef double bias_correction2 = 1 - pow(beta2, step)
    cdef floating omb1 = <floating>(1 - beta1)
    cdef bint small = (omb1 if omb1 >= 0 else -omb1) < 0.5
    cdef floating coeff = omb1 if small else omb1 - 1
    cdef floating b2 = <floating>beta2, omb2 = <floating>(1 - beta2)
    cdef floating step_size = <floating>(lr / bias_correction1)
    cdef floating bc2_sqrt = <floating>pow(bias_correction2, 0.5)
    cdef floating eps_ = <floating>eps, wd = <floating>weight_decay
    cdef floating decay = <floating>(1 - lr * weight_decay) if decoupled else 1
    cdef bint use_wd = weight_decay != 0 and not decoupled
    cdef intp_t chunks = _n_chunks(n)
    if n_threads == 1 or chunks < 2:
        with nogil:
            _adam_range(p, g, m, v, vmax, 0, n, coeff, small, b2, omb2, step_size, bc2_sqrt,
                        eps_, wd, decay, use_wd, amsgrad)
        return
    for c in prange(chunks, nogil=True, schedule='static', num_threads=n_threads):
        _adam_range(p, g, m, v, vmax, c * _CHUNK, min(n, (c + 1) * _CHUNK), coeff, small, b2, omb2,
                    step_size, bc2_sqrt, eps_, wd, decay, use_wd, amsgrad)


def adam_step(floating[::1] param,             # IN/OUT
              const floating[::1] grad,        # IN
              floating[::1] exp_avg,           # IN/OUT
              floating[::1] exp_avg_sq,        # IN/OUT
              floating[::1] max_exp_avg_sq,    # IN/OUT (empty unless amsgrad)
              double lr, double beta1, double beta2, double eps, double weight_decay,
              bint amsgrad, double step, int n_threads):
    """Adam (L2 weight decay added to the gradient, optional AMSGrad), in place.

    Parameters
    ----------
    param, exp_avg, exp_avg_sq : (n,) float32 or float64, updated in place
    grad : (n,) same dtype, read only
    max_exp_avg_sq : (n,) same dtype, updated in place; empty unless ``amsgrad``
    lr, beta1, beta2, eps, weight_decay : float
    amsgrad : bool
    step : float
        This step's number t, counting from 1 (for the bias corrections 1 - beta^t).
    n_threads : int

    Same contract as the NumPy twin. The caller validates and allocates.
    """
    check_threads(n_threads)
    _adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
          amsgrad, step, False, n_threads)


def adamw_step(floating[::1] param,             # IN/OUT
               const floating[::1] grad,        # IN
               floating[::1] exp_avg,           # IN/OUT
               floating[::1] exp_avg_sq,        # IN/OUT
               floating[::1] max_exp_avg_sq,    # IN/OUT (empty unless amsgrad)
               double lr, double beta1, double beta2, double eps, double weight_decay,
               bint amsgrad, double step, int n_threads):
    """AdamW: Adam with decoupled weight decay ``param *= 1 - lr * weight_decay``, in place.

    Same arguments as :func:`adam_step`. Same contract as the NumPy twin. The caller
    validates and allocates.
    """
    check_threads(n_threads)
    _adam(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, weight_decay,
          amsgrad, step, True, n_threads)
