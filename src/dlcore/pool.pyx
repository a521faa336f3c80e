"""Max / average pooling and max unpooling: the compiled half.

The specification is the NumPy twin, ``dlcore/backends/numpy_kernels/pool.py``: same
names, same parameters, same results (bitwise for every kernel here). The caller
(``dlcore.functional.pooling``) validates, computes the output sizes, checks that every
index lies inside its plane and allocates the outputs. The kernels still check, cheaply,
that their buffers agree (see "argument checks"), so no call can read or write out of bounds.

Parallel axis: every kernel runs ``prange`` over the N*C planes. A plane's outputs
depend only on that plane's inputs, and the backward kernels scatter into overlapping
windows of *one* plane, so no two threads ever write the same element: no races, and
results independent of the thread count.

Index glossary: ``p`` plane (n*C + c), ``oh, ow`` output row and column, ``ih, iw``
input row and column, ``h0, h1`` / ``w0, w1`` a window clipped to the plane
(half-open), ``i`` a flat index in a plane. Workers get raw pointers to the start of
their plane, so inner loops do no memoryview arithmetic.
"""
from cython.parallel cimport prange
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset

from dlcore._common cimport check_threads, floating, intp_t

cdef enum:
    _CHUNK = 64  # windows scanned together in the max-pool loops (stack buffers of this size)


cdef inline intp_t _imin(intp_t a, intp_t b) noexcept nogil:
    return a if a < b else b


cdef inline intp_t _imax(intp_t a, intp_t b) noexcept nogil:
    return a if a > b else b


# ---- argument checks ---------------------------------------------------------------------
# The loops trust their buffers, so every def first checks, in O(1), that the sizes of all
# its arguments agree with each other and with the pooling geometry (a short `out` or a
# geometry that does not fit would read or write past the end). Indices that come from the
# caller (max-pool backward, unpooling) are range-checked where they are used: one compare
# per element, next to a scatter or gather that does not vectorize anyway.

cdef int _check_shape(str name, const intp_t* got, intp_t n, intp_t c, intp_t h, intp_t w) except -1:
    if got[0] != n or got[1] != c or got[2] != h or got[3] != w:
        raise ValueError(f"{name} must have shape {(n, c, h, w)}, got {(got[0], got[1], got[2], got[3])}")
    return 0


cdef int _check_geometry(str in_name, const intp_t* in_shape, str out_name, const intp_t* out_shape,
                         intp_t KH, intp_t KW, intp_t SH, intp_t SW, intp_t PH, intp_t PW) except -1:
    # the functional layer's rules: kernel and stride >= 1, 0 <= pad <= kernel // 2, a
    # non-empty output of (H + 2 PH - KH) // SH + 1 rows (likewise columns)
    cdef intp_t H = in_shape[2], W = in_shape[3]
    if KH < 1 or KW < 1 or SH < 1 or SW < 1 or PH < 0 or PW < 0 or PH > KH // 2 or PW > KW // 2:
        raise ValueError(f"kernel {(KH, KW)} and stride {(SH, SW)} must be >= 1 and padding {(PH, PW)} "
                         f"in [0, kernel // 2]")
    if H + 2 * PH < KH or W + 2 * PW < KW:
        raise ValueError(f"kernel {(KH, KW)} must fit in {in_name}'s padded size {(H + 2 * PH, W + 2 * PW)}")
    _check_shape(out_name, out_shape, in_shape[0], in_shape[1],
                 (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1)
    return 0


cdef int _check_indices(intp_t bad, intp_t n) except -1:
    if bad:
        raise ValueError(f"indices must lie in [0, {n}) (a flat position in one plane): "
                         f"{bad} plane(s) hold an index outside")
    return 0


# ---- max pooling -------------------------------------------------------------------------

cdef extern from *:
    """
    #include <stdint.h>
    /* Max pooling 2x2, stride 2, no padding, float32: one plane of OH x OW windows. Each
       window's four elements are scanned in row-major order (as the general loop does):
       a later element wins if it is greater or NaN, so the first maximum wins and a NaN
       always does. `k` is the winner's offset in the plane from the window's first
       element (0, 1, W or W + 1); maxima and int64 indices are written in one pass.
       x86-64 takes eight windows per step with AVX2 when the CPU has it (chosen at run
       time, as in conv.pyx), then four with SSE2 (every x86-64 CPU has it): rows are
       short in small networks (LeNet: 14 and 5 windows), where gcc's auto-vectorized
       loop spent most of its time in set-up and scalar tails. Measured at one thread on
       the EPYC dev machine (median CPU time of 3000 calls): (64, 6, 28, 28) 147 -> 56 us,
       (64, 16, 10, 10) 77 -> 39 us. Compares and selects
       only, so the vector and scalar steps give the same bits. A step reads 2 x 8 (16)
       floats of each row, all inside the windows. */
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    static inline void dlcore_max_window_2x2(const float* r0, const float* r1, float* out,
                                             int64_t* idx, int64_t start, int64_t W) {
        float m = r0[0], v;
        int64_t k = 0;
        v = r0[1]; if ((v > m) | (v != v)) { m = v; k = 1; }
        v = r1[0]; if ((v > m) | (v != v)) { m = v; k = W; }
        v = r1[1]; if ((v > m) | (v != v)) { m = v; k = W + 1; }
        *out = m;
        *idx = start + k;
    }
    #if defined(__GNUC__) && defined(__x86_64__)
    #include <immintrin.h>
    static int dlcore_pool_avx2 = -1;  /* -1: not asked yet; tests set 0 to run the SSE2 steps */
    static int dlcore_pool_have_avx2(void) {
        if (dlcore_pool_avx2 < 0) {     /* a benign race: every thread stores the same value */
            __builtin_cpu_init();
            dlcore_pool_avx2 = __builtin_cpu_supports("avx2");
        }
        return dlcore_pool_avx2;
    }
    static void dlcore_pool_set_isa(int avx2) { dlcore_pool_avx2 = avx2 ? -1 : 0; }
    #define DLCORE_SEL8(t, a, b) _mm256_blendv_ps((b), (a), (t))  /* t ? a : b, bit for bit */
    /* A row of OW >= 8 windows, eight per step with AVX2 (a run-time choice: called only
       when the CPU has it). A ragged row ends with a step over its last eight windows,
       which redoes a few with the same result, instead of a scalar tail. */
    __attribute__((target("avx2"))) static void dlcore_max_pool_row_avx2(
            const float* r0, const float* r1, float* out, int64_t* idx, int64_t base,
            int32_t W, Py_ssize_t OW) {
        const __m256i kw = _mm256_set1_epi32(W), kw1 = _mm256_set1_epi32(W + 1);
        const __m256i one = _mm256_set1_epi32(1), step = _mm256_set_epi64x(6, 4, 2, 0);
        for (Py_ssize_t next = 0; next < OW; next += 8) {
            const Py_ssize_t ow = next + 8 <= OW ? next : OW - 8;
            /* even / odd columns of 16 floats; the shuffle works per 128-bit half, the
               permute puts the 64-bit pairs back in order */
            __m256 lo = _mm256_loadu_ps(r0 + 2 * ow), hi = _mm256_loadu_ps(r0 + 2 * ow + 8);
            __m256 a = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
            __m256 b = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
            lo = _mm256_loadu_ps(r1 + 2 * ow); hi = _mm256_loadu_ps(r1 + 2 * ow + 8);
            __m256 c = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
            __m256 d = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
            __m256 t = _mm256_or_ps(_mm256_cmp_ps(b, a, _CMP_GT_OQ), _mm256_cmp_ps(b, b, _CMP_UNORD_Q));
            __m256 m = DLCORE_SEL8(t, b, a);
            __m256i k = _mm256_and_si256(_mm256_castps_si256(t), one);
            t = _mm256_or_ps(_mm256_cmp_ps(c, m, _CMP_GT_OQ), _mm256_cmp_ps(c, c, _CMP_UNORD_Q));
            m = DLCORE_SEL8(t, c, m);
            k = _mm256_castps_si256(DLCORE_SEL8(t, _mm256_castsi256_ps(kw), _mm256_castsi256_ps(k)));
            t = _mm256_or_ps(_mm256_cmp_ps(d, m, _CMP_GT_OQ), _mm256_cmp_ps(d, d, _CMP_UNORD_Q));
            m = DLCORE_SEL8(t, d, m);
            k = _mm256_castps_si256(DLCORE_SEL8(t, _mm256_castsi256_ps(kw1), _mm256_castsi256_ps(k)));
            _mm256_storeu_ps(out + ow, m);
            __m256i s0 = _mm256_add_epi64(_mm256_set1_epi64x(base + 2 * ow), step);
            __m256i s1 = _mm256_add_epi64(s0, _mm256_set1_epi64x(8));
            _mm256_storeu_si256((__m256i*)(idx + ow), _mm256_add_epi64(s0, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(k))));
            _mm256_storeu_si256((__m256i*)(idx + ow + 4), _mm256_add_epi64(s1, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(k, 1))));
        }
    }
    #else
    static void dlcore_pool_set_isa(int avx2) {}
    #endif
    static void dlcore_max_pool_2x2_f32(const float* x, float* out, int64_t* idx,
                                        Py_ssize_t W, Py_ssize_t OH, Py_ssize_t OW) {
    #if defined(__GNUC__) && defined(__x86_64__)
        const int avx2 = OW >= 8 && dlcore_pool_have_avx2();
    #endif
        for (Py_ssize_t oh = 0; oh < OH; oh++) {
            const float* r0 = x + 2 * oh * W;
            const float* r1 = r0 + W;
            const int64_t base = 2 * oh * W;  /* the row's first window's first element */
            Py_ssize_t ow = 0;
    #if defined(__GNUC__) && defined(__x86_64__)
            if (avx2) {
                dlcore_max_pool_row_avx2(r0, r1, out, idx, base, (int32_t)W, OW);
                ow = OW;
            }
    #endif
    #if defined(__SSE2__)
            const __m128i kw = _mm_set1_epi32((int32_t)W), kw1 = _mm_set1_epi32((int32_t)W + 1);
            const __m128i one = _mm_set1_epi32(1), zero = _mm_setzero_si128();
            for (; ow + 4 <= OW; ow += 4) {  /* (overlapping last steps measured slower here) */
                __m128 lo = _mm_loadu_ps(r0 + 2 * ow), hi = _mm_loadu_ps(r0 + 2 * ow + 4);
                __m128 a = _mm_shuffle_ps(lo, hi, 0x88), b = _mm_shuffle_ps(lo, hi, 0xDD);
                lo = _mm_loadu_ps(r1 + 2 * ow); hi = _mm_loadu_ps(r1 + 2 * ow + 4);
                __m128 c = _mm_shuffle_ps(lo, hi, 0x88), d = _mm_shuffle_ps(lo, hi, 0xDD);
                __m128 t = _mm_or_ps(_mm_cmpgt_ps(b, a), _mm_cmpunord_ps(b, b));
                __m128 m = _mm_or_ps(_mm_and_ps(t, b), _mm_andnot_ps(t, a));
                __m128i k = _mm_and_si128(_mm_castps_si128(t), one);
                t = _mm_or_ps(_mm_cmpgt_ps(c, m), _mm_cmpunord_ps(c, c));
                m = _mm_or_ps(_mm_and_ps(t, c), _mm_andnot_ps(t, m));
                k = _mm_or_si128(_mm_and_si128(_mm_castps_si128(t), kw), _mm_andnot_si128(_mm_castps_si128(t), k));
                t = _mm_or_ps(_mm_cmpgt_ps(d, m), _mm_cmpunord_ps(d, d));
                m = _mm_or_ps(_mm_and_ps(t, d), _mm_andnot_ps(t, m));
                k = _mm_or_si128(_mm_and_si128(_mm_castps_si128(t), kw1), _mm_andnot_si128(_mm_castps_si128(t), k));
                _mm_storeu_ps(out + ow, m);
                /* k >= 0: widening to int64 is interleaving with zeros */
                __m128i s0 = _mm_set_epi64x(base + 2 * ow + 2, base + 2 * ow);
                __m128i s1 = _mm_set_epi64x(base + 2 * ow + 6, base + 2 * ow + 4);
                _mm_storeu_si128((__m128i*)(idx + ow), _mm_add_epi64(s0, _mm_unpacklo_epi32(k, zero)));
                _mm_storeu_si128((__m128i*)(idx + ow + 2), _mm_add_epi64(s1, _mm_unpackhi_epi32(k, zero)));
            }
    #endif
            for (; ow < OW; ow++)
                dlcore_max_window_2x2(r0 + 2 * ow, r1 + 2 * ow, out + ow, idx + ow, base + 2 * ow, W);
            out += OW;
            idx += OW;
        }
    }
    """
    void _max_pool_2x2_f32 "dlcore_max_pool_2x2_f32"(const float* x, float* out, int64_t* idx,
                                                     intp_t W, intp_t OH, intp_t OW) noexcept nogil
    void _pool_set_isa "dlcore_pool_set_isa"(int avx2) noexcept


def _set_isa(bint avx2):
    """Tests: False runs the 2x2 max-pool's SSE2 steps only, True the CPU's best again."""
    _pool_set_isa(avx2)


cdef inline void _max_pool_plane_2x2(const floating* x, floating* out, int64_t* idx,
                                     intp_t W, intp_t OH, intp_t OW) noexcept nogil:
    if floating is float:  # (float64 never comes here)
        _max_pool_2x2_f32(x, out, idx, W, OH, OW)


cdef inline void _max_window(const floating* x, floating* out, int64_t* idx, intp_t W,
                             intp_t h0, intp_t h1, intp_t w0, intp_t w1) noexcept nogil:
    # One window clipped to the plane, [h0, h1) x [w0, w1), scanned in row-major order.
    # It starts from its first in-plane element, so an all -inf window selects that one,
    # as PyTorch's does; `v != v` is the NaN test: a NaN always wins (so the last one).
    cdef intp_t ih, iw, best = h0 * W + w0
    cdef const floating* row
    cdef floating m = x[best], v
    for ih in range(h0, h1):
        row = x + ih * W
        for iw in range(w0, w1):
            v = row[iw]
            if (v > m) | (v != v):
                m = v
                best = ih * W + iw
    out[0] = m
    idx[0] = best


cdef inline void _max_scan(const floating* p, intp_t SW, intp_t n, floating* m, int32_t* off,
                           int32_t o) noexcept nogil:
    # One element of n side-by-side windows (element q at p[q*SW], offset o in its
    # window) against the running maxima m[q]. Unconditional stores of selected values,
    # so that gcc vectorizes the loop.
    cdef intp_t q
    cdef floating v, mq
    cdef bint take
    for q in range(n):
        v = p[q * SW]
        mq = m[q]
        take = (v > mq) | (v != v)
        m[q] = v if take else mq
        off[q] = o if take else off[q]


cdef void _max_pool_plane(const floating* x, floating* out, int64_t* idx,
                          intp_t H, intp_t W, intp_t OH, intp_t OW,
                          intp_t KH, intp_t KW, intp_t SH, intp_t SW,
                          intp_t PH, intp_t PW) noexcept nogil:
    # Any geometry. Rows are clipped per output row. Columns [owa, owb) have windows
    # entirely inside the plane; there the windows of a chunk are scanned together,
    # element by element in row-major window order (the same order as _max_window, so
    # the same winner), which vectorizes across windows. Border columns and planes too
    # wide for int32 window offsets take the scalar _max_window.
    cdef floating m[_CHUNK]
    cdef int32_t off[_CHUNK]
    cdef intp_t oh, ow, h0, h1, w0, s, n, q, r, kw, base
    cdef const floating* p0
    cdef intp_t owa = _imin((PW + SW - 1) // SW, OW)
    cdef intp_t owb = owa
    if W + PW >= KW and KH * W < 2147483647:
        owb = _imax(_imin(OW, (W + PW - KW) // SW + 1), owa)
    for oh in range(OH):
        h0 = oh * SH - PH
        h1 = _imin(h0 + KH, H)
        h0 = _imax(h0, 0)
        for ow in range(OW):
            if ow == owa:  # the interior, in chunks
                s = owa
                while s < owb:
                    n = _imin(owb - s, _CHUNK)
                    base = h0 * W + s * SW - PW  # the first window's first element
                    p0 = x + base
                    for q in range(n):
                        m[q] = p0[q * SW]
                        off[q] = 0
                    for r in range(h1 - h0):
                        for kw in range(KW):
                            if r > 0 or kw > 0:
                                _max_scan(p0 + r * W + kw, SW, n, m, off, <int32_t>(r * W + kw))
                    for q in range(n):
                        out[s + q] = m[q]
                        idx[s + q] = base + q * SW + off[q]
                    s += n
            if ow < owa or ow >= owb:
                w0 = ow * SW - PW
                _max_window(x, out + ow, idx + ow, W, h0, h1, _imax(w0, 0), _imin(w0 + KW, W))
        out += OW
        idx += OW


def max_pool2d_forward(const floating[:, :, :, ::1] x,  # IN
                       floating[:, :, :, ::1] out,  # OUT
                       int64_t[:, :, :, ::1] indices,  # OUT
                       intp_t kernel_h, intp_t kernel_w, intp_t stride_h, intp_t stride_w,
                       intp_t pad_h, intp_t pad_w, int n_threads):
    """Max pooling with argmax indices (flat index within each H*W plane).

    Parameters
    ----------
    x : ndarray (N, C, H, W), float32 or float64   # IN
    out : ndarray (N, C, OH, OW), x's dtype        # OUT
    indices : ndarray (N, C, OH, OW), int64        # OUT
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w : int (pad <= kernel // 2)
    n_threads : int

    Same contract as the NumPy twin. The caller validates and allocates.
    """
    check_threads(n_threads)
    cdef intp_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef intp_t OH = out.shape[2], OW = out.shape[3], p
    _check_geometry("x", x.shape, "out", out.shape, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w)
    _check_shape("indices", indices.shape, N, C, OH, OW)
    # The 2x2 loop is float32's (its int32 offsets match float32 lanes); float64 does
    # better in the general loop, which vectorizes for both. (W fits the int32 offsets.)
    cdef bint fast = (floating is float and kernel_h == 2 and kernel_w == 2 and stride_h == 2
                      and stride_w == 2 and pad_h == 0 and pad_w == 0 and W < 2147483647)
    if N * C == 0:
        return
    with nogil:
        for p in prange(N * C, schedule='static', num_threads=n_threads):
            if fast:
                _max_pool_plane_2x2(&x[0, 0, 0, 0] + p * H * W, &out[0, 0, 0, 0] + p * OH * OW,
                                    &indices[0, 0, 0, 0] + p * OH * OW, W, OH, OW)
            else:
                _max_pool_plane(&x[0, 0, 0, 0] + p * H * W, &out[0, 0, 0, 0] + p * OH * OW,
                                &indices[0, 0, 0, 0] + p * OH * OW, H, W, OH, OW,
                                kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w)


cdef intp_t _scatter_add_plane(const floating* grad_output, const int64_t* idx, floating* grad_input,
                               intp_t n_in, intp_t n_out) noexcept nogil:
    # In output order, so overlapping windows add up in the twin's (np.add.at) order.
    # Returns 1 (and stops) at an index outside the plane.
    cdef intp_t i
    memset(grad_input, 0, n_in * sizeof(floating))
    for i in range(n_out):
        if <size_t>idx[i] >= <size_t>n_in:  # also catches negative indices
            return 1
        grad_input[idx[i]] += grad_output[i]
    return 0


def max_pool2d_backward(const floating[:, :, :, ::1] grad_output,  # IN
                        const int64_t[:, :, :, ::1] indices,  # IN
                        floating[:, :, :, ::1] grad_input,  # OUT
                        int n_threads):
    """Scatter each window's gradient to its argmax: grad_input.flat[indices] += grad_output.

    Parameters
    ----------
    grad_output : ndarray (N, C, OH, OW), float32 or float64   # IN
    indices : ndarray (N, C, OH, OW), int64, each in [0, H*W)   # IN
    grad_input : ndarray (N, C, H, W), grad_output's dtype      # OUT (every element written)
    n_threads : int

    Same contract as the NumPy twin. The caller validates and allocates.
    """
    check_threads(n_threads)
    cdef intp_t NC = grad_input.shape[0] * grad_input.shape[1]
    cdef intp_t HW = grad_input.shape[2] * grad_input.shape[3]
    cdef intp_t OHW = grad_output.shape[2] * grad_output.shape[3], p, bad = 0
    _check_shape("grad_output", grad_output.shape, grad_input.shape[0], grad_input.shape[1],
                 grad_output.shape[2], grad_output.shape[3])
    _check_shape("indices", indices.shape, grad_output.shape[0], grad_output.shape[1],
                 grad_output.shape[2], grad_output.shape[3])
    if NC == 0:
        return
    with nogil:
        for p in prange(NC, schedule='static', num_threads=n_threads):
            bad += _scatter_add_plane(&grad_output[0, 0, 0, 0] + p * OHW, &indices[0, 0, 0, 0] + p * OHW,
                                      &grad_input[0, 0, 0, 0] + p * HW, HW, OHW)
    _check_indices(bad, HW)


# ---- average pooling ---------------------------------------------------------------------

cdef void _avg_pool_plane(const floating* x, floating* out,
                          intp_t H, intp_t W, intp_t OH, intp_t OW,
                          intp_t KH, intp_t KW, intp_t SH, intp_t SW,
                          intp_t PH, intp_t PW) noexcept nogil:
    # Padding counts in the divisor (count_include_pad=True) but adds nothing to the sum.
    # float32 sums accumulate in double, rounded once.
    cdef intp_t oh, ow, ih, iw, h0, h1, w0, w1
    cdef const floating* row
    cdef double s, area = <double>(KH * KW)
    for oh in range(OH):
        h0 = oh * SH - PH
        h1 = _imin(h0 + KH, H)
        h0 = _imax(h0, 0)
        for ow in range(OW):
            w0 = ow * SW - PW
            w1 = _imin(w0 + KW, W)
            w0 = _imax(w0, 0)
            s = 0.0
            for ih in range(h0, h1):
                row = x + ih * W
                for iw in range(w0, w1):
                    s += row[iw]
            out[oh * OW + ow] = <floating>(s / area)


cdef void _avg_pool_plane_2x2(const floating* x, floating* out,
                              intp_t W, intp_t OH, intp_t OW) noexcept nogil:
    # kernel 2, stride 2, no padding: the general loop's sum, in the same order
    # (((0 + a) + b) + c) + d, without the clipping logic, which lets gcc vectorize it.
    cdef intp_t oh, ow
    cdef const floating* r0
    cdef const floating* r1
    cdef double s
    for oh in range(OH):
        r0 = x + 2 * oh * W
        r1 = r0 + W
        for ow in range(OW):
            s = 0.0
            s += r0[2 * ow]
            s += r0[2 * ow + 1]
            s += r1[2 * ow]
            s += r1[2 * ow + 1]
            out[ow] = <floating>(s / 4.0)
        out += OW


def avg_pool2d_forward(const floating[:, :, :, ::1] x,  # IN
                       floating[:, :, :, ::1] out,  # OUT
                       intp_t kernel_h, intp_t kernel_w, intp_t stride_h, intp_t stride_w,
                       intp_t pad_h, intp_t pad_w, int n_threads):
    """Average pooling, zero padding counted in the divisor KH*KW.

    Parameters
    ----------
    x : ndarray (N, C, H, W), float32 or float64   # IN
    out : ndarray (N, C, OH, OW), x's dtype        # OUT
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w : int (pad <= kernel // 2)
    n_threads : int

    Same contract as the NumPy twin. The caller validates and allocates.
    """
    check_threads(n_threads)
    cdef intp_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef intp_t OH = out.shape[2], OW = out.shape[3], p
    _check_geometry("x", x.shape, "out", out.shape, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w)
    cdef bint fast = (kernel_h == 2 and kernel_w == 2 and stride_h == 2 and stride_w == 2
                      and pad_h == 0 and pad_w == 0)
    if N * C == 0:
        return
    with nogil:
        for p in prange(N * C, schedule='static', num_threads=n_threads):
            if fast:
                _avg_pool_plane_2x2(&x[0, 0, 0, 0] + p * H * W, &out[0, 0, 0, 0] + p * OH * OW, W, OH, OW)
            else:
                _avg_pool_plane(&x[0, 0, 0, 0] + p * H * W, &out[0, 0, 0, 0] + p * OH * OW,
                                H, W, OH, OW, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w)


cdef void _avg_pool_backward_plane(const floating* grad_output, floating* grad_input,
                                   intp_t H, intp_t W, intp_t OH, intp_t OW,
                                   intp_t KH, intp_t KW, intp_t SH, intp_t SW,
                                   intp_t PH, intp_t PW) noexcept nogil:
    # Overlapping windows: the twin's scatter, in a double buffer of the padded plane
    # (thread-private, small enough for L1/L2): for each kernel offset (kh, kw), in
    # ascending order, add every window's gradient at its (kh, kw) element; then crop,
    # divide and round. Each element receives its terms in the twin's order, so both
    # round identically. The inner loop is a plain strided add, about 3x faster than
    # gathering the covering windows element by element (kept below for when the buffer
    # cannot be allocated).
    cdef intp_t PHH = H + 2 * PH, PWW = W + 2 * PW, kh, kw, oh, ow, ih, iw
    cdef double area = <double>(KH * KW)
    cdef double* g = <double*>malloc(PHH * PWW * sizeof(double))
    cdef double* grow
    cdef const floating* orow
    if g != NULL:
        memset(g, 0, PHH * PWW * sizeof(double))
        for kh in range(KH):
            for kw in range(KW):
                for oh in range(OH):
                    grow = g + (oh * SH + kh) * PWW + kw
                    orow = grad_output + oh * OW
                    for ow in range(OW):
                        grow[ow * SW] += orow[ow]
        for ih in range(H):
            grow = g + (ih + PH) * PWW + PW
            for iw in range(W):
                grad_input[ih * W + iw] = <floating>(grow[iw] / area)
        free(g)
        return
    _avg_pool_backward_gather(grad_output, grad_input, H, W, OH, OW, KH, KW, SH, SW, PH, PW)


cdef void _avg_pool_backward_gather(const floating* grad_output, floating* grad_input,
                                    intp_t H, intp_t W, intp_t OH, intp_t OW,
                                    intp_t KH, intp_t KW, intp_t SH, intp_t SW,
                                    intp_t PH, intp_t PW) noexcept nogil:
    # A gather rather than a scatter: each input element sums the outputs whose windows
    # cover it, in double, and is written once. The windows covering padded row
    # ph = ih + PH are oh in [oh0, oh1] with oh*SH <= ph <= oh*SH + KH - 1. Terms are
    # added from the last window to the first: the twin's order (kernel offsets
    # ascending), so both round identically.
    cdef intp_t ih, iw, ph, pw, oh, ow, oh0, oh1, ow0, ow1
    cdef const floating* row
    cdef double s, area = <double>(KH * KW)
    for ih in range(H):
        ph = ih + PH
        oh0 = 0 if ph < KH else (ph - KH + SH) // SH
        oh1 = _imin(ph // SH, OH - 1)
        # Column window range, advanced incrementally along the row (no division per element).
        ow0 = 0
        ow1 = -1
        for iw in range(W):
            pw = iw + PW
            while ow1 + 1 < OW and (ow1 + 1) * SW <= pw:
                ow1 += 1
            while ow0 * SW + KW <= pw:
                ow0 += 1
            s = 0.0
            oh = oh1
            while oh >= oh0:
                row = grad_output + oh * OW
                ow = ow1
                while ow >= ow0:
                    s += row[ow]
                    ow -= 1
                oh -= 1
            grad_input[ih * W + iw] = <floating>(s / area)


cdef void _avg_pool_backward_plane_tiled(const floating* grad_output, floating* grad_input,
                                         intp_t H, intp_t W, intp_t OH, intp_t OW,
                                         intp_t KH, intp_t KW, intp_t SH, intp_t SW,
                                         intp_t PH, intp_t PW) noexcept nogil:
    # Windows that do not overlap (stride >= kernel, e.g. kernel 2 stride 2): each input
    # element is in at most one window, so it gets that window's gradient / (KH*KW), or
    # 0. The same value as the general loop computes (0.0 + g, divided in double).
    cdef intp_t ih, ph, oh, ow, iw, kw
    cdef floating v
    cdef floating* row
    cdef double area = <double>(KH * KW)
    for ih in range(H):
        row = grad_input + ih * W
        memset(row, 0, W * sizeof(floating))
        ph = ih + PH
        oh = ph // SH
        if oh >= OH or ph - oh * SH >= KH:
            continue
        for ow in range(OW):
            v = <floating>(grad_output[oh * OW + ow] / area)
            for kw in range(KW):
                iw = ow * SW - PW + kw
                if 0 <= iw < W:
                    row[iw] = v


def avg_pool2d_backward(const floating[:, :, :, ::1] grad_output,  # IN
                        floating[:, :, :, ::1] grad_input,  # OUT
                        intp_t kernel_h, intp_t kernel_w, intp_t stride_h, intp_t stride_w,
                        intp_t pad_h, intp_t pad_w, int n_threads):
    """Spread each window's gradient evenly, 1/(KH*KW) to each of its elements.

    Parameters
    ----------
    grad_output : ndarray (N, C, OH, OW), float32 or float64   # IN
    grad_input : ndarray (N, C, H, W), grad_output's dtype      # OUT (every element written)
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w : int
    n_threads : int

    Same contract as the NumPy twin. The caller validates and allocates.
    """
    check_threads(n_threads)
    cdef intp_t N = grad_input.shape[0], C = grad_input.shape[1]
    cdef intp_t H = grad_input.shape[2], W = grad_input.shape[3]
    cdef intp_t OH = grad_output.shape[2], OW = grad_output.shape[3], p
    _check_geometry("grad_input", grad_input.shape, "grad_output", grad_output.shape,
                    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w)
    cdef bint tiled = stride_h >= kernel_h and stride_w >= kernel_w
    if N * C == 0:
        return
    with nogil:
        for p in prange(N * C, schedule='static', num_threads=n_threads):
            if tiled:
                _avg_pool_backward_plane_tiled(&grad_output[0, 0, 0, 0] + p * OH * OW,
                                               &grad_input[0, 0, 0, 0] + p * H * W,
                                               H, W, OH, OW, kernel_h, kernel_w, stride_h, stride_w,
                                               pad_h, pad_w)
            else:
                _avg_pool_backward_plane(&grad_output[0, 0, 0, 0] + p * OH * OW,
                                     &grad_input[0, 0, 0, 0] + p * H * W,
                                     H, W, OH, OW, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w)


# ---- max unpooling -----------------------------------------------------------------------

cdef intp_t _scatter_plane(const floating* x, const int64_t* idx, floating* out,
                           intp_t n_in, intp_t n_out) noexcept nogil:
    # In input order: a repeated index keeps the last value, as the twin and PyTorch.
    # Returns 1 (and stops) at an index outside the plane.
    cdef intp_t i
    memset(out, 0, n_out * sizeof(floating))
    for i in range(n_in):
        if <size_t>idx[i] >= <size_t>n_out:
            return 1
        out[idx[i]] = x[i]
    return 0


def max_unpool2d_forward(const floating[:, :, :, ::1] x,  # IN
                         const int64_t[:, :, :, ::1] indices,  # IN
                         floating[:, :, :, ::1] out,  # OUT
                         int n_threads):
    """Place x[n,c,i,j] at out[n,c].flat[indices[n,c,i,j]]; zeros elsewhere.

    Parameters
    ----------
    x : ndarray (N, C, H, W), float32 or float64                # IN
    indices : ndarray (N, C, H, W), int64, each in [0, OH*OW)    # IN
    out : ndarray (N, C, OH, OW), x's dtype                      # OUT (every element written)
    n_threads : int

    Same contract as the NumPy twin. The caller validates and allocates.
    """
    check_threads(n_threads)
    cdef intp_t NC = x.shape[0] * x.shape[1], HW = x.shape[2] * x.shape[3]
    cdef intp_t OHW = out.shape[2] * out.shape[3], p, bad = 0
    _check_shape("indices", indices.shape, x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    _check_shape("out", out.shape, x.shape[0], x.shape[1], out.shape[2], out.shape[3])
    if NC == 0:
        return
    with nogil:
        for p in prange(NC, schedule='static', num_threads=n_threads):
            bad += _scatter_plane(&x[0, 0, 0, 0] + p * HW, &indices[0, 0, 0, 0] + p * HW,
                                  &out[0, 0, 0, 0] + p * OHW, HW, OHW)
    _check_indices(bad, OHW)


cdef intp_t _gather_plane(const floating* grad_output, const int64_t* idx, floating* grad_input,
                          intp_t n, intp_t n_out) noexcept nogil:
    # Returns 1 (and stops) at an index outside the plane of n_out elements.
    cdef intp_t i
    for i in range(n):
        if <size_t>idx[i] >= <size_t>n_out:
            return 1
        grad_input[i] = grad_output[idx[i]]
    return 0


def max_unpool2d_backward(const floating[:, :, :, ::1] grad_output,  # IN
                          const int64_t[:, :, :, ::1] indices,  # IN
                          floating[:, :, :, ::1] grad_input,  # OUT
                          int n_threads):
    """Gather: grad_input[n,c,i,j] = grad_output[n,c].flat[indices[n,c,i,j]].

    Parameters
    ----------
    grad_output : ndarray (N, C, OH, OW), float32 or float64    # IN
    indices : ndarray (N, C, H, W), int64, each in [0, OH*OW)    # IN
    grad_input : ndarray (N, C, H, W), grad_output's dtype       # OUT
    n_threads : int

    Same contract as the NumPy twin. The caller validates and allocates.
    """
    check_threads(n_threads)
    cdef intp_t NC = grad_input.shape[0] * grad_input.shape[1]
    cdef intp_t HW = grad_input.shape[2] * grad_input.shape[3]
    cdef intp_t OHW = grad_output.shape[2] * grad_output.shape[3], p, bad = 0
    _check_shape("indices", indices.shape, grad_input.shape[0], grad_input.shape[1],
                 grad_input.shape[2], grad_input.shape[3])
    _check_shape("grad_output", grad_output.shape, grad_input.shape[0], grad_input.shape[1],
                 grad_output.shape[2], grad_output.shape[3])
    if NC == 0:
        return
    with nogil:
        for p in prange(NC, schedule='static', num_threads=n_threads):
            bad += _gather_plane(&grad_output[0, 0, 0, 0] + p * OHW, &indices[0, 0, 0, 0] + p * HW,
                                 &grad_input[0, 0, 0, 0] + p * HW, HW, OHW)
    _check_indices(bad, OHW)
