"""Compiled convolutions: one OpenMP parallel region over batch tiles, BLAS inside it.

The specification is the NumPy twin, ``dlcore/backends/numpy_kernels/conv.py``: same
names, same parameters, same results up to float rounding (im2col and col2im alone are
bitwise equal to the twin's).

Index glossary: ``n`` image, ``c`` input channel, ``f`` output channel, ``kh, kw`` offset
inside the window, ``oh, ow`` output row and column, ``j`` image inside a tile, ``t`` tile,
``g`` group. Sizes: ``N, C, H, W`` input, ``F`` output channels, ``KH, KW`` window,
``SH, SW`` stride, ``PH, PW`` padding, ``DH, DW`` dilation, ``G`` groups, ``OH, OW`` output
positions, ``L = OH*OW``, ``K = C*KH*KW`` rows of the column matrix (``Kg = K/G`` per group).

How a convolution runs (forward; the backward and the transposed ones are built the same way)
----------------------------------------------------------------------------------------------
The batch is cut into *tiles* of ``T`` whole images; ``T`` depends only on the layer's
shape (its column matrix fills about ``TILE_BYTES``, and among sizes down to half of that
the one two threads finish soonest: see ``_tile_images``), never on the thread count. One
parallel region hands the tiles to the threads, and a thread, for each of its tiles:

1. unfolds the tile's images into its private column buffer ``cols`` (K, T*L) -- im2col,
   written into memory that stays in the core's cache for step 2;
2. multiplies ``W2 (F, K) @ cols`` with a single-threaded BLAS GEMM called from this
   nogil code (``scipy.linalg.cython_blas``), one GEMM per group;
3. writes its images' slice of the output, adding the bias.

So one pool of threads does everything. BLAS must not start threads of its own inside
the region: SciPy's bundled OpenBLAS uses pthreads, and called from two OpenMP threads at
once with its default thread count it serializes the calls on a global lock and prints
"Detect OpenMP Loop and this application may hang". :class:`_OneBlasThread` therefore
holds *SciPy's* BLAS (never NumPy's, which is a separate library) to one thread while a
kernel runs, and restores the user's setting afterwards.

Gradients of the weight are sums over the whole batch. Each tile writes its own partial
sum into row ``t`` of a (n_tiles, ...) buffer, and after the tile loop the rows are added
in tile order -- the same additions in the same order whatever the thread count, so the
results are bitwise independent of it (tests/test_conv.py checks 1, 2 and 3 threads).

Each kernel checks every argument's size against the others (O(1), before any loop):
the loops run with bounds checks off. The scratch memory (``cols`` and the partial sums)
comes from a few buffers kept between calls (``_scratch``).
"""
import ctypes
import threading

import numpy as np

from cython.parallel cimport parallel, prange, threadid
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm, sgemm

from dlcore._common cimport check_threads, floating, intp_t

__all__ = [
    "im2col",
    "col2im",
    "conv2d_forward",
    "conv2d_backward",
    "conv_transpose2d_forward",
    "conv_transpose2d_backward",
]

# Bytes of one tile's column matrix plus its small (F, T*L) companion: about half of a
# core's L2 cache, so im2col's writes are still cached when the GEMM reads them.
TILE_BYTES = 1 << 19
# About 10 microseconds of copying: smaller unfold/fold jobs run on one thread.
cdef intp_t _SERIAL_BELOW = 1 << 15
cdef intp_t _INT_MAX = 2147483647


# ---- SciPy's BLAS held to one thread ---------------------------------------------------

def _find_blas_thread_setter():
    """(get, set) for the thread count of the BLAS behind scipy.linalg.cython_blas, or None.

    dlsym on the handle of the cython_blas extension searches that module's own dependencies
    first, so this finds SciPy's OpenBLAS even when NumPy's OpenBLAS (another library, with
    other symbol names) is loaded too. Other BLAS libraries need nothing: MKL and OpenMP
    builds of OpenBLAS run one thread when called inside an OpenMP parallel region.
    """
    from scipy.linalg import cython_blas

    try:
        lib = ctypes.CDLL(cython_blas.__file__)
    except OSError:
        return None
    for prefix in ("scipy_openblas", "openblas"):
        for suffix in ("", "64_"):
            try:
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}")
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}")
            except AttributeError:
                continue
            get.restype, get.argtypes = ctypes.c_int, []
            set_.restype, set_.argtypes = None, [ctypes.c_int]
            return get, set_
    return None


class _OneBlasThread:
    """``with _ONE_BLAS_THREAD:`` -- SciPy's BLAS runs one thread inside the block.

    Nested and concurrent uses (two Python threads running kernels) share one counter:
    the first to enter saves the user's setting, the last to leave restores it.
    """

    def __init__(self):
        self.functions = _find_blas_thread_setter()
        self.lock = threading.Lock()
        self.users = 0
        self.saved = 1

    def __enter__(self):
        if self.functions is not None:
            get, set_ = self.functions
            with self.lock:
                if self.users == 0:
                    self.saved = get()
                    if self.saved != 1:
                        set_(1)
                self.users += 1
        return self

    def __exit__(self, *exc):
        if self.functions is not None:
            get, set_ = self.functions
            with self.lock:
                self.users -= 1
                if self.users == 0 and self.saved != 1:
                    set_(self.saved)
        return False


_ONE_BLAS_THREAD = _OneBlasThread()


# ---- scratch memory kept between calls ----------------------------------------------------
# A fresh np.empty of a few hundred KiB gets fresh pages from the system on every call, and
# their page faults (the kernel maps and zeroes each 4 KiB page) cost about 8% of LeNet
# conv2's forward+backward (perf). So the kernels' scratch (per-thread work, per-tile
# partial sums) comes from a few buffers kept here. A buffer is out of the list while a call
# uses it, so two Python threads never share one; at most _SPARE stay, the largest.
_SPARE = 4
_spare = []
_spare_lock = threading.Lock()


def _scratch(shape, dtype):
    """An uninitialized C-contiguous array, in a kept buffer when one is large enough."""
    dtype = np.dtype(dtype)
    cdef Py_ssize_t n = max(1, int(np.prod(shape))) * dtype.itemsize, i, best = -1
    with _spare_lock:
        for i in range(len(_spare)):
            if _spare[i].nbytes >= n and (best < 0 or _spare[i].nbytes < _spare[best].nbytes):
                best = i
        buf = _spare.pop(best) if best >= 0 else None
    if buf is None:
        buf = np.empty(n, np.uint8)
    return buf[:n].view(dtype).reshape(shape)


def _give_back(*arrays):
    """Return _scratch arrays' buffers for the next call (the caller no longer uses them)."""
    with _spare_lock:
        for a in arrays:
            while a.base is not None:
                a = a.base
            _spare.append(a)
        _spare.sort(key=lambda b: b.nbytes)
        del _spare[:max(0, len(_spare) - _SPARE)]


# ---- GEMM -------------------------------------------------------------------------------

cdef inline void _gemm(bint trans_a, bint trans_b, intp_t M, intp_t N, intp_t K,
                       const floating* A, intp_t lda, const floating* B, intp_t ldb,
                       floating beta, floating* C, intp_t ldc) noexcept nogil:
    """Row-major ``C (M, N) = op(A) @ op(B) + beta*C``; op transposes when asked.

    BLAS is column-major, and a row-major matrix read column-major is its transpose, so
    this asks BLAS for ``C.T = op(B).T @ op(A).T``: the operands swap places.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef int m = <int> M, n = <int> N, k = <int> K
    cdef int la = <int> lda, lb = <int> ldb, lc = <int> ldc
    cdef floating one = 1
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &one, <float*> B, &lb, <float*> A, &la, &beta, C, &lc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &one, <double*> B, &lb, <double*> A, &la, &beta, C, &lc)


# ---- direct convolution for few input channels (float32) -------------------------------
# A layer like LeNet's (one or six input channels, 5x5 windows) does little arithmetic per
# column entry, so im2col and BLAS's packing of the columns -- both copies -- cost about as
# much as the products. The forward pass reads a zero-padded copy of the image instead,
# with 4 output channels x 16 output columns of accumulators: two loads and eight
# multiply-adds per tap. The weight gradient has direct loops too (dlc_direct_gw: 3 output
# channels x 3 taps, six loads per nine multiply-adds; a 4-channel, one-tap version did ten
# loads per eight and measured slower than im2col + GEMM). GNU C vector types keep the
# accumulators in registers; on x86-64 the loops are compiled twice, for the baseline ISA
# and for AVX2+FMA, and the copy is picked at run time from the CPU's features (never built
# for the build machine's CPU alone: the module runs on any x86-64 CPU).
cdef extern from *:
    """
    /* Row copies and row sums for im2col / col2im. restrict tells the compiler the two rows
       never overlap, so it vectorizes without a run-time overlap test per row. Measured (one
       core): im2col 0.37 vs 0.43 ns per number on LeNet conv2's rows of 10, no change on
       rows of 32 -- a small gain, kept because it costs nothing. */
    #if defined(_MSC_VER)
    #define DLC_RESTRICT __restrict
    #else
    #define DLC_RESTRICT restrict
    #endif
    static inline void dlc_copy_f(float* DLC_RESTRICT d, const float* DLC_RESTRICT s, long n)
    { for (long i = 0; i < n; i++) d[i] = s[i]; }
    static inline void dlc_copy_d(double* DLC_RESTRICT d, const double* DLC_RESTRICT s, long n)
    { for (long i = 0; i < n; i++) d[i] = s[i]; }
    static inline void dlc_add_f(float* DLC_RESTRICT d, const float* DLC_RESTRICT s, long n)
    { for (long i = 0; i < n; i++) d[i] += s[i]; }
    static inline void dlc_add_d(double* DLC_RESTRICT d, const double* DLC_RESTRICT s, long n)
    { for (long i = 0; i < n; i++) d[i] += s[i]; }
    /* stride 2 along the row (a stride-2 layer): a constant stride the compiler vectorizes */
    static inline void dlc_copy2_f(float* DLC_RESTRICT d, const float* DLC_RESTRICT s, long n)
    { for (long i = 0; i < n; i++) d[i] = s[2 * i]; }
    static inline void dlc_add2_f(float* DLC_RESTRICT d, const float* DLC_RESTRICT s, long n)
    { for (long i = 0; i < n; i++) d[2 * i] += s[i]; }

    #if defined(__GNUC__)
    typedef float dlc_v8 __attribute__((vector_size(32)));
    /* a macro, not a function: a function returning a 32-byte vector changes the ABI without AVX */
    #define dlc_load8(p) ({ dlc_v8 v_; __builtin_memcpy(&v_, (p), sizeof v_); v_; })
    #define DLC_DIRECT 1
    #else
    #define DLC_DIRECT 0
    #endif

    #if defined(__GNUC__) && defined(__x86_64__)
    static int dlc_avx2 = -1;   /* -1: not asked yet; tests set 0 to run the baseline copy */
    static int dlc_have_avx2(void) {
        if (dlc_avx2 < 0) {     /* a benign race: every thread stores the same value */
            __builtin_cpu_init();
            dlc_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        }
        return dlc_avx2;
    }
    static void dlc_set_isa(int avx2) { dlc_avx2 = avx2 ? -1 : 0; }
    #else
    static void dlc_set_isa(int avx2) {}
    #endif
    #if defined(__GNUC__) && defined(__x86_64__)
    #define DLC_TWO_COPIES(name, params, args) \\
        __attribute__((target("avx2,fma"))) static void name##_avx2 params { name##_body args; } \\
        static void name##_base params { name##_body args; } \\
        static void name params { if (dlc_have_avx2()) name##_avx2 args; else name##_base args; }
    #else
    #define DLC_TWO_COPIES(name, params, args) static void name params { name##_body args; }
    #endif

    #if DLC_DIRECT
    /* out[f, oh, ow] = bias[f] + sum over (c, kh, kw) of w[f, c, kh, kw] * xp[c, oh*SH + kh*DH, ow + kw*DW]
       xp: (C, HP, WP) zero-padded image with WP >= 16*ceil(OW/16) + (KW-1)*DW;
       wp: (FB, C, KH, KW, 4) weights, 4 output channels per block (zeros past F).
       8 accumulators (4 channels x 16 columns): enough independent multiply-adds in flight
       to hide their latency. */
    static inline __attribute__((always_inline)) void dlc_direct_fwd_body(
            const float* xp, long C, long HP, long WP, const float* wp, long FB, long F, long KH,
            long KW, long SH, long DH, long DW, long OH, long OW, const float* bias, float* out)
    {
        for (long fb = 0; fb < FB; fb++)
            for (long oh = 0; oh < OH; oh++)
                for (long ow0 = 0; ow0 < OW; ow0 += 16) {
                    dlc_v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
                    const float* wq = wp + fb * C * KH * KW * 4;
                    for (long c = 0; c < C; c++)
                        for (long kh = 0; kh < KH; kh++) {
                            const float* row = xp + (c * HP + oh * SH + kh * DH) * WP + ow0;
                            for (long kw = 0; kw < KW; kw++, wq += 4) {
                                dlc_v8 s = dlc_load8(row + kw * DW), t = dlc_load8(row + kw * DW + 8);
                                a0 += s * wq[0]; b0 += t * wq[0];
                                a1 += s * wq[1]; b1 += t * wq[1];
                                a2 += s * wq[2]; b2 += t * wq[2];
                                a3 += s * wq[3]; b3 += t * wq[3];
                            }
                        }
                    float acc[4][16];
                    __builtin_memcpy(acc[0], &a0, 32); __builtin_memcpy(acc[0] + 8, &b0, 32);
                    __builtin_memcpy(acc[1], &a1, 32); __builtin_memcpy(acc[1] + 8, &b1, 32);
                    __builtin_memcpy(acc[2], &a2, 32); __builtin_memcpy(acc[2] + 8, &b2, 32);
                    __builtin_memcpy(acc[3], &a3, 32); __builtin_memcpy(acc[3] + 8, &b3, 32);
                    long n = OW - ow0 < 16 ? OW - ow0 : 16;
                    for (int f = 0; f < 4 && fb * 4 + f < F; f++) {
                        float b = bias ? bias[fb * 4 + f] : 0.0f;
                        float* d = out + ((fb * 4 + f) * OH + oh) * OW + ow0;
                        for (long j = 0; j < n; j++) d[j] = acc[f][j] + b;
                    }
                }
    }

    DLC_TWO_COPIES(dlc_direct_fwd,
                   (const float* xp, long C, long HP, long WP, const float* wp, long FB, long F, long KH,
                    long KW, long SH, long DH, long DW, long OH, long OW, const float* bias, float* out),
                   (xp, C, HP, WP, wp, FB, F, KH, KW, SH, DH, DW, OH, OW, bias, out))

    /* The weight gradient of NT images, directly:
       gw[f, c, kh, kw] = sum over j, oh, ow of g[j, f, oh, ow] * xp[j, c, oh*SH + kh*DH, ow + kw*DW]
       xp: padded images, image j's channel c at xp + j*XS + c*CS, rows WP apart;
       gp: upstream gradients, image j's channel f at gp + j*GS + f*GC, walked as R runs of
       LR numbers (LR a multiple of 8), run r at x offset r*XR and g offset r*GR: one run per
       output row (r = oh), or for stride 1 one run over all rows, the gradient stored with
       x's row length WP, so a run covers whole rows without a loop per row of 10 or 14
       columns. gp is zero wherever no output is (past OW in a row, past the last row), so
       what x holds there never counts. gw: (F, C, KH, KW), overwritten.
       Blocks of up to 3 channels x 3 taps: 9 accumulators, and per 8 columns 6 loads for 9
       multiply-adds. The blocks split F and KW exactly (a remainder of 4 as 2 + 2), so no
       lane works on a channel or tap that does not exist. Each accumulator's 8 lanes are
       added in a fixed order. */
    static inline __attribute__((always_inline)) float dlc_hsum8(dlc_v8 v) {  /* no 32-byte by-value ABI edge */
        float a[8];
        __builtin_memcpy(a, &v, 32);
        return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    }
    /* One block: NF channels from g0, NK taps from x0; d = gw's first entry, fs its step
       from one channel to the next. NF and NK are constants, so the compiler unrolls the
       small loops and keeps the accumulators in registers. */
    #define DLC_GW_BLOCK(NF, NK) \\
    static inline __attribute__((always_inline)) void dlc_gw_##NF##NK( \\
            const float* x0, long XS, const float* g0, long GS, long GC, long NT, long R, long LR, \\
            long XR, long GR, long DW, float* d, long fs) \\
    { \\
        dlc_v8 a[NF][NK]; \\
        for (int i = 0; i < NF; i++) for (int k = 0; k < NK; k++) a[i][k] = (dlc_v8){0}; \\
        for (long j = 0; j < NT; j++) \\
            for (long r = 0; r < R; r++) { \\
                const float* xr = x0 + j * XS + r * XR; \\
                const float* gr = g0 + j * GS + r * GR; \\
                for (long q = 0; q < LR; q += 8) { \\
                    dlc_v8 u[NF]; \\
                    for (int i = 0; i < NF; i++) u[i] = dlc_load8(gr + i * GC + q); \\
                    for (int k = 0; k < NK; k++) { \\
                        dlc_v8 s = dlc_load8(xr + q + k * DW); \\
                        for (int i = 0; i < NF; i++) a[i][k] += u[i] * s; \\
                    } \\
                } \\
            } \\
        for (int i = 0; i < NF; i++) for (int k = 0; k < NK; k++) d[i * fs + k] = dlc_hsum8(a[i][k]); \\
    }
    DLC_GW_BLOCK(1, 1) DLC_GW_BLOCK(1, 2) DLC_GW_BLOCK(1, 3)
    DLC_GW_BLOCK(2, 1) DLC_GW_BLOCK(2, 2) DLC_GW_BLOCK(2, 3)
    DLC_GW_BLOCK(3, 1) DLC_GW_BLOCK(3, 2) DLC_GW_BLOCK(3, 3)

    static inline long dlc_block3(long left) { return left == 4 ? 2 : (left < 3 ? left : 3); }

    static inline __attribute__((always_inline)) void dlc_direct_gw_body(
            const float* xp, long NT, long XS, long C, long CS, long WP, const float* gp, long GS,
            long GC, long R, long LR, long XR, long GR, long F, long KH, long KW, long DH, long DW,
            float* gw)
    {
        long fs = C * KH * KW, nf, nk;   /* fs: from channel f to f + 1 in gw */
        for (long f = 0; f < F; f += nf) {
            nf = dlc_block3(F - f);
            for (long c = 0; c < C; c++)
                for (long kh = 0; kh < KH; kh++)
                    for (long kw = 0; kw < KW; kw += nk) {
                        nk = dlc_block3(KW - kw);
                        const float* x0 = xp + c * CS + kh * DH * WP + kw * DW;
                        const float* g0 = gp + f * GC;
                        float* d = gw + ((f * C + c) * KH + kh) * KW + kw;
                        #define DLC_GW_CALL(NF, NK) case NF * 4 + NK: \\
                            dlc_gw_##NF##NK(x0, XS, g0, GS, GC, NT, R, LR, XR, GR, DW, d, fs); break;
                        switch (nf * 4 + nk) {
                            DLC_GW_CALL(1, 1) DLC_GW_CALL(1, 2) DLC_GW_CALL(1, 3)
                            DLC_GW_CALL(2, 1) DLC_GW_CALL(2, 2) DLC_GW_CALL(2, 3)
                            DLC_GW_CALL(3, 1) DLC_GW_CALL(3, 2) DLC_GW_CALL(3, 3)
                        }
                        #undef DLC_GW_CALL
                    }
        }
    }

    DLC_TWO_COPIES(dlc_direct_gw,
                   (const float* xp, long NT, long XS, long C, long CS, long WP, const float* gp, long GS,
                    long GC, long R, long LR, long XR, long GR, long F, long KH, long KW, long DH, long DW,
                    float* gw),
                   (xp, NT, XS, C, CS, WP, gp, GS, GC, R, LR, XR, GR, F, KH, KW, DH, DW, gw))

    /* The fold of one image's channel (the direct backward, stride 1), as col2im:
       out[h, w] (H, W) = sum over (kh, kw), in that order, of rows[(kh*KW + kw)*rs + oh*OW + ow]
       with oh = h + PH - kh*DH, ow = w + PW - kw*DW, the terms outside the (OH, OW) output
       left out. Two image rows x 16 columns in registers, each term a shifted load of one
       output row with the columns outside [0, OW) masked to 0: the loads may reach up to
       (KW-1)*DW + 16 numbers before or after the rows, which the caller keeps readable. */
    typedef int dlc_v8i __attribute__((vector_size(32)));
    #define dlc_masked8(p, o, OW) ({ dlc_v8i i_ = {0, 1, 2, 3, 4, 5, 6, 7}; i_ += (int)(o); \\
        (dlc_v8)((dlc_v8i)dlc_load8(p) & ((i_ >= 0) & (i_ < (int)(OW)))); })
    static inline __attribute__((always_inline)) void dlc_fold_rows_body(
            const float* rows, long rs, long KH, long KW, long DH, long DW, long PH, long PW,
            long OH, long OW, long H, long W, float* out)
    {
        for (long h = 0; h < H; h += 2)
            for (long w0 = 0; w0 < W; w0 += 16) {
                dlc_v8 a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0};
                const float* row = rows;
                for (long kh = 0; kh < KH; kh++) {
                    long oh = h + PH - kh * DH;   /* the output row of image row h; h + 1: oh + 1 */
                    int ok0 = oh >= 0 && oh < OH, ok1 = h + 1 < H && oh + 1 >= 0 && oh + 1 < OH;
                    for (long kw = 0; kw < KW; kw++, row += rs) {
                        long o = w0 + PW - kw * DW;   /* the output column of lane 0 */
                        const float* r0 = row + oh * OW + o;
                        if (ok0) { a0 += dlc_masked8(r0, o, OW); a1 += dlc_masked8(r0 + 8, o + 8, OW); }
                        if (ok1) { b0 += dlc_masked8(r0 + OW, o, OW); b1 += dlc_masked8(r0 + OW + 8, o + 8, OW); }
                    }
                }
                float t[2][16];
                __builtin_memcpy(t[0], &a0, 32); __builtin_memcpy(t[0] + 8, &a1, 32);
                __builtin_memcpy(t[1], &b0, 32); __builtin_memcpy(t[1] + 8, &b1, 32);
                long n = W - w0 < 16 ? W - w0 : 16;
                dlc_copy_f(out + h * W + w0, t[0], n);   /* a few numbers: no call to memcpy */
                if (h + 1 < H) dlc_copy_f(out + (h + 1) * W + w0, t[1], n);
            }
    }
    DLC_TWO_COPIES(dlc_fold_rows,
                   (const float* rows, long rs, long KH, long KW, long DH, long DW, long PH, long PW,
                    long OH, long OW, long H, long W, float* out),
                   (rows, rs, KH, KW, DH, DW, PH, PW, OH, OW, H, W, out))

    /* *out = the sum of s[0..n) in float64, for the bias gradient: 8 running sums (lanes
       l mod 8, two vectors of 4 doubles), added in a fixed order. */
    typedef float dlc_v4f __attribute__((vector_size(16)));
    typedef double dlc_v4d __attribute__((vector_size(32)));
    static inline __attribute__((always_inline)) void dlc_sum_body(const float* s, long n, double* out) {
        dlc_v4d a = {0}, b = {0};
        long l = 0;
        for (; l + 8 <= n; l += 8) {
            dlc_v4f u, v;
            __builtin_memcpy(&u, s + l, 16);
            __builtin_memcpy(&v, s + l + 4, 16);
            a += __builtin_convertvector(u, dlc_v4d);
            b += __builtin_convertvector(v, dlc_v4d);
        }
        a += b;
        double r = (a[0] + a[1]) + (a[2] + a[3]);
        for (; l < n; l++) r += s[l];
        *out = r;
    }
    DLC_TWO_COPIES(dlc_sum, (const float* s, long n, double* out), (s, n, out))
    #else
    static void dlc_sum(const float* s, long n, double* out) {
        double r = 0;
        for (long l = 0; l < n; l++) r += s[l];
        *out = r;
    }
    static void dlc_direct_fwd(const float* xp, long C, long HP, long WP, const float* wp, long FB, long F,
                               long KH, long KW, long SH, long DH, long DW, long OH, long OW,
                               const float* bias, float* out) {}
    static void dlc_fold_rows(const float* rows, long rs, long KH, long KW, long DH, long DW, long PH, long PW,
                              long OH, long OW, long H, long W, float* out) {}
    static void dlc_direct_gw(const float* xp, long NT, long XS, long C, long CS, long WP, const float* gp,
                              long GS, long GC, long R, long LR, long XR, long GR, long F, long KH, long KW,
                              long DH, long DW, float* gw) {}
    #endif
    """
    bint DLC_DIRECT
    void dlc_copy_f(float* d, const float* s, long n) noexcept nogil
    void dlc_copy_d(double* d, const double* s, long n) noexcept nogil
    void dlc_add_f(float* d, const float* s, long n) noexcept nogil
    void dlc_add_d(double* d, const double* s, long n) noexcept nogil
    void dlc_copy2_f(float* d, const float* s, long n) noexcept nogil
    void dlc_add2_f(float* d, const float* s, long n) noexcept nogil
    void dlc_set_isa(int avx2) noexcept nogil
    void dlc_direct_fwd(const float* xp, long C, long HP, long WP, const float* wp, long FB, long F,
                        long KH, long KW, long SH, long DH, long DW, long OH, long OW,
                        const float* bias, float* out) noexcept nogil
    void dlc_sum(const float* s, long n, double* out) noexcept nogil
    void dlc_fold_rows(const float* rows, long rs, long KH, long KW, long DH, long DW, long PH, long PW,
                       long OH, long OW, long H, long W, float* out) noexcept nogil
    void dlc_direct_gw(const float* xp, long NT, long XS, long C, long CS, long WP, const float* gp,
                       long GS, long GC, long R, long LR, long XR, long GR, long F, long KH, long KW,
                       long DH, long DW, float* gw) noexcept nogil


def _direct_isa(bint avx2):
    """For tests: False runs the direct loops' baseline copy, True the best the CPU supports."""
    dlc_set_isa(avx2)


# ---- im2col / col2im of one plane -----------------------------------------------------

cdef inline void _valid_range(intp_t offset, intp_t stride, intp_t size, intp_t n_out,
                              intp_t* lo, intp_t* hi) noexcept nogil:
    """Output positions o in [lo, hi) whose input index o*stride + offset lies in [0, size)."""
    cdef intp_t first = 0, last
    if offset < 0:
        first = (-offset + stride - 1) // stride
    if size - 1 - offset < 0:
        last = 0
    else:
        last = (size - 1 - offset) // stride + 1
    if last > n_out:
        last = n_out
    if first > last:
        first = last
    lo[0] = first
    hi[0] = last


cdef struct Window:
    intp_t H, W, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW


cdef inline void _copy_strided(floating* d, const floating* s, intp_t n, intp_t SW) noexcept nogil:
    """d[i] = s[i*SW] for i < n."""
    cdef intp_t i
    if floating is float:
        if SW == 2:
            dlc_copy2_f(d, s, n)
            return
    for i in range(n):
        d[i] = s[i * SW]


cdef inline void _add_strided(floating* d, const floating* s, intp_t n, intp_t SW) noexcept nogil:
    """d[i*SW] += s[i] for i < n."""
    cdef intp_t i
    if floating is float:
        if SW == 2:
            dlc_add2_f(d, s, n)
            return
    for i in range(n):
        d[i * SW] += s[i]


cdef void _im2col_plane(const floating* src, floating* dst, intp_t row_stride,
                        const Window* w) noexcept nogil:
    """Fill the KH*KW column rows of one plane; row (kh, kw) starts at dst + (kh*KW + kw)*row_stride.

    For a fixed (kh, kw, oh) the positions ow that read inside the image form one interval,
    so the hot loop is a plain strided copy; the rest of the row is zero padding.
    """
    cdef intp_t kh, kw, oh, ow, oh_lo, oh_hi, ow_lo, ow_hi, OW = w.OW, SW = w.SW
    cdef intp_t oy, ox
    cdef floating* row
    cdef const floating* s
    for kh in range(w.KH):
        oy = kh * w.DH - w.PH
        _valid_range(oy, w.SH, w.H, w.OH, &oh_lo, &oh_hi)
        for kw in range(w.KW):
            ox = kw * w.DW - w.PW
            _valid_range(ox, SW, w.W, OW, &ow_lo, &ow_hi)
            row = dst + (kh * w.KW + kw) * row_stride
            if oh_lo > 0:
                memset(row, 0, oh_lo * OW * sizeof(floating))
            for oh in range(oh_lo, oh_hi):
                if ow_lo > 0:
                    memset(row + oh * OW, 0, ow_lo * sizeof(floating))
                s = src + (oh * w.SH + oy) * w.W + (ow_lo * SW + ox)
                if SW == 1:
                    if floating is float:
                        dlc_copy_f(row + oh * OW + ow_lo, s, ow_hi - ow_lo)
                    else:
                        dlc_copy_d(row + oh * OW + ow_lo, s, ow_hi - ow_lo)
                else:
                    _copy_strided(row + oh * OW + ow_lo, s, ow_hi - ow_lo, SW)
                if ow_hi < OW:
                    memset(row + oh * OW + ow_hi, 0, (OW - ow_hi) * sizeof(floating))
            if oh_hi < w.OH:
                memset(row + oh_hi * OW, 0, (w.OH - oh_hi) * OW * sizeof(floating))


cdef void _col2im_plane(const floating* src, floating* dst, intp_t row_stride,
                        const Window* w) noexcept nogil:
    """Overwrite one H x W plane with the sum of its KH*KW column rows, added in (kh, kw) order."""
    cdef intp_t kh, kw, oh, ow, oh_lo, oh_hi, ow_lo, ow_hi, n_ow, OW = w.OW, SW = w.SW
    cdef intp_t oy, ox
    cdef const floating* s
    cdef floating* d
    memset(dst, 0, w.H * w.W * sizeof(floating))
    for kh in range(w.KH):
        oy = kh * w.DH - w.PH
        _valid_range(oy, w.SH, w.H, w.OH, &oh_lo, &oh_hi)
        for kw in range(w.KW):
            ox = kw * w.DW - w.PW
            _valid_range(ox, SW, w.W, OW, &ow_lo, &ow_hi)
            n_ow = ow_hi - ow_lo
            for oh in range(oh_lo, oh_hi):
                s = src + (kh * w.KW + kw) * row_stride + oh * OW + ow_lo
                d = dst + (oh * w.SH + oy) * w.W + (ow_lo * SW + ox)
                if SW == 1:
                    if floating is float:
                        dlc_add_f(d, s, n_ow)
                    else:
                        dlc_add_d(d, s, n_ow)
                else:
                    _add_strided(d, s, n_ow, SW)


cdef void _im2col_tile(const floating* x, intp_t n_img, intp_t C, floating* cols,
                       const Window* w) noexcept nogil:
    """Columns of n_img consecutive images (C channels each) as one (C*KH*KW, n_img*L) matrix."""
    cdef intp_t j, c, KK = w.KH * w.KW, L = w.OH * w.OW, plane = w.H * w.W
    cdef intp_t rs = n_img * L
    for j in range(n_img):
        for c in range(C):
            _im2col_plane(x + (j * C + c) * plane, cols + c * KK * rs + j * L, rs, w)


cdef void _col2im_tile(const floating* cols, intp_t n_img, intp_t C, floating* x,
                       const Window* w) noexcept nogil:
    """Fold a (C*KH*KW, n_img*L) matrix back into n_img images (overwritten)."""
    cdef intp_t j, c, KK = w.KH * w.KW, L = w.OH * w.OW, plane = w.H * w.W
    cdef intp_t rs = n_img * L
    for j in range(n_img):
        for c in range(C):
            _col2im_plane(cols + c * KK * rs + j * L, x + (j * C + c) * plane, rs, w)


cdef void _images_to_rows(const floating* a, intp_t n_img, intp_t R, intp_t L,
                          floating* m) noexcept nogil:
    """(n_img, R, L) images -> an (R, n_img*L) matrix: image j in columns j*L .. (j+1)*L."""
    cdef intp_t j, r
    for j in range(n_img):
        for r in range(R):
            memcpy(m + r * n_img * L + j * L, a + (j * R + r) * L, L * sizeof(floating))


cdef void _rows_to_images(const floating* m, intp_t n_img, intp_t R, intp_t L,
                          const floating* bias, floating* a) noexcept nogil:
    """The inverse of _images_to_rows, adding bias[r] to row r when bias is not NULL."""
    cdef intp_t j, r, l
    cdef const floating* s
    cdef floating* d
    cdef floating b
    for j in range(n_img):
        for r in range(R):
            s = m + r * n_img * L + j * L
            d = a + (j * R + r) * L
            if bias == NULL:
                memcpy(d, s, L * sizeof(floating))
            else:
                b = bias[r]
                for l in range(L):
                    d[l] = s[l] + b


cdef void _channel_sums(const floating* a, intp_t n_img, intp_t R, intp_t L,
                        double* out) noexcept nogil:
    """out[r] = sum over images j and positions l of a[j, r, l], in float64.

    Several running sums (positions l mod 4; float32: l mod 8, vectorized in dlc_sum)
    instead of one: a single chain of dependent adds waits for each add's latency. The order
    is fixed, so the result is too.
    """
    cdef intp_t j, r, l, L4 = L - L % 4
    cdef const floating* s
    cdef double a0, a1, a2, a3
    for r in range(R):
        out[r] = 0
    for j in range(n_img):
        for r in range(R):
            s = a + (j * R + r) * L
            if floating is float:
                dlc_sum(s, L, &a0)
                out[r] += a0
            else:
                a0 = a1 = a2 = a3 = 0
                for l in range(0, L4, 4):
                    a0 += s[l]
                    a1 += s[l + 1]
                    a2 += s[l + 2]
                    a3 += s[l + 3]
                for l in range(L4, L):
                    a0 += s[l]
                out[r] += (a0 + a1) + (a2 + a3)


# ---- geometry and checks (Python level, O(1)) ---------------------------------------------

cdef intp_t _out_size(intp_t size, intp_t k, intp_t s, intp_t p, intp_t d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


cdef _check_window(tuple image, intp_t KH, intp_t KW, intp_t SH, intp_t SW, intp_t PH, intp_t PW,
                   intp_t DH, intp_t DW):
    """(OH, OW) of the window sweep over an (H, W) image, after checking every number."""
    H, W = image
    if min(KH, KW, SH, SW, DH, DW) < 1 or min(PH, PW) < 0:
        raise ValueError(f"kernel {(KH, KW)}, stride {(SH, SW)} and dilation {(DH, DW)} must be >= 1 "
                         f"and padding {(PH, PW)} >= 0")
    if H + 2 * PH < DH * (KH - 1) + 1 or W + 2 * PW < DW * (KW - 1) + 1:
        raise ValueError(f"the dilated kernel {(DH * (KH - 1) + 1, DW * (KW - 1) + 1)} does not fit "
                         f"the padded image {(H + 2 * PH, W + 2 * PW)}")
    return _out_size(H, KH, SH, PH, DH), _out_size(W, KW, SW, PW, DW)


cdef _expect(name, tuple got, tuple want):
    if got != want:
        raise ValueError(f"{name} must have shape {want}, got {got}")


cdef tuple _shape(a, int ndim):
    return tuple(a.shape[i] for i in range(ndim))


cdef intp_t _tile_images(intp_t N, intp_t per_image, intp_t itemsize):
    """Images per tile: about TILE_BYTES of workspace, at least one image.

    Among tile sizes from that most down to half of it, the one that two threads finish
    soonest (the one with the most tiles does ceil(n_tiles/2) of them; larger on a tie):
    64 images at most 6 a tile make 11 tiles, where one thread idles through the last
    one, and 16 tiles of 4 none. The choice depends on the shape only, never on the
    thread count, so the per-tile sums and results do not either.
    """
    cdef intp_t most = max(1, TILE_BYTES // max(1, per_image * itemsize))
    if most >= N:
        return max(N, 1)
    cdef intp_t T, best = most, cost, best_cost = ((N + most - 1) // most + 1) // 2 * most
    for T in range(most - 1, (most + 1) // 2 - 1, -1):
        cost = ((N + T - 1) // T + 1) // 2 * T
        if cost < best_cost:
            best, best_cost = T, cost
    cdef intp_t n_tiles = (N + best - 1) // best
    return (N + n_tiles - 1) // n_tiles   # as many tiles, as equal as they can be


def _check_ints(*sizes):
    # BLAS takes 32-bit ints: every matrix dimension and leading dimension must fit.
    if max(sizes) > _INT_MAX:
        raise ValueError(f"a matrix dimension {max(sizes)} exceeds BLAS's 32-bit int range")


# ---- im2col / col2im kernels (unfold / fold) --------------------------------------------

cdef Window _window(intp_t H, intp_t W, intp_t KH, intp_t KW, intp_t SH, intp_t SW, intp_t PH, intp_t PW,
                    intp_t DH, intp_t DW, intp_t OH, intp_t OW):
    cdef Window w
    w.H, w.W, w.KH, w.KW, w.SH, w.SW = H, W, KH, KW, SH, SW
    w.PH, w.PW, w.DH, w.DW, w.OH, w.OW = PH, PW, DH, DW, OH, OW
    return w


def im2col(const floating[:, :, :, ::1] x,   # IN  (N, C, H, W)
           floating[:, :, ::1] cols,          # OUT (N, C*KH*KW, OH*OW)
           intp_t kernel_h, intp_t kernel_w, intp_t stride_h, intp_t stride_w,
           intp_t pad_h, intp_t pad_w, intp_t dilation_h, intp_t dilation_w, int n_threads):
    """Unfold every window of ``x`` into a column of ``cols`` (torch's ``F.unfold`` layout).

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64, C-contiguous (IN)
    cols : ndarray of shape (N, C*KH*KW, OH*OW), same dtype, C-contiguous (OUT, every entry
        overwritten)
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w : int
    n_threads : int
        OpenMP threads for the loop over the N*C planes.

    Same contract as the NumPy twin; bitwise the same result.
    """
    check_threads(n_threads)
    cdef intp_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef intp_t KK = kernel_h * kernel_w, p, n, c
    OH, OW = _check_window((H, W), kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                           dilation_h, dilation_w)
    _expect("cols", _shape(cols, 3), (N, C * KK, OH * OW))
    cdef Window w = _window(H, W, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                            dilation_h, dilation_w, OH, OW)
    cdef intp_t L = w.OH * w.OW
    if N * C * L == 0:
        return
    if N * C * KK * L < _SERIAL_BELOW:
        n_threads = 1
    with nogil:
        for p in prange(N * C, schedule='static', num_threads=n_threads):
            n = p // C
            c = p - n * C
            _im2col_plane(&x[n, c, 0, 0], &cols[n, c * KK, 0], L, &w)


def col2im(const floating[:, :, ::1] cols,     # IN  (N, C*KH*KW, OH*OW)
           floating[:, :, :, ::1] x,           # OUT (N, C, H, W)
           intp_t kernel_h, intp_t kernel_w, intp_t stride_h, intp_t stride_w,
           intp_t pad_h, intp_t pad_w, intp_t dilation_h, intp_t dilation_w, int n_threads):
    """Fold columns back into images, summing overlapping windows (torch's ``F.fold``).

    Parameters
    ----------
    cols : ndarray of shape (N, C*KH*KW, OH*OW), float32 or float64, C-contiguous (IN)
    x : ndarray of shape (N, C, H, W), same dtype, C-contiguous (OUT, every entry overwritten)
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w : int
    n_threads : int
        OpenMP threads for the loop over the N*C planes (planes never share a pixel, so the
        sums are race-free and each pixel adds its terms in the twin's (kh, kw) order).
    """
    check_threads(n_threads)
    cdef intp_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef intp_t KK = kernel_h * kernel_w, p, n, c
    OH, OW = _check_window((H, W), kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                           dilation_h, dilation_w)
    _expect("cols", _shape(cols, 3), (N, C * KK, OH * OW))
    cdef Window w = _window(H, W, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                            dilation_h, dilation_w, OH, OW)
    cdef intp_t L = w.OH * w.OW
    if N * C * H * W == 0:
        return
    if N * C * KK * L < _SERIAL_BELOW:
        n_threads = 1
    with nogil:
        for p in prange(N * C, schedule='static', num_threads=n_threads):
            n = p // C
            c = p - n * C
            _col2im_plane(&cols[n, c * KK, 0], &x[n, c, 0, 0], L, &w)


# ---- conv2d -------------------------------------------------------------------------------

cdef struct Conv:
    # one convolution's sizes: x (N, C, H, W), weight (F, C/G, KH, KW), L positions per image
    intp_t N, C, F, G, K, L, T, n_tiles
    bint has_bias, want_input
    # the direct forward (few input channels): padded image (C, HP, WP), FB blocks of 4
    # output channels, output rows rounded up to whole 16-column blocks (OWP); or, flat,
    # all LQ = OH*WP outputs of a channel as one row (see _direct_setup)
    bint direct, flat
    intp_t HP, WP, FB, OWP, LQ


cdef Conv _conv(intp_t N, intp_t C, intp_t F, intp_t G, intp_t KK, intp_t L, intp_t per_image,
                intp_t itemsize, bint has_bias, bint want_input):
    cdef Conv p
    p.N, p.C, p.F, p.G, p.K, p.L = N, C, F, G, C * KK, L
    p.T = _tile_images(N, per_image, itemsize) if N > 0 else 1
    p.n_tiles = (N + p.T - 1) // p.T
    p.has_bias, p.want_input = has_bias, want_input
    p.direct = False
    return p


# Layers with at most this many numbers per receptive field (C*KH*KW) take the direct loops
# above for the forward pass instead of im2col + GEMM (float32, stride 1 along W, one
# group). Measured on one core (CPU time, batch 64, float32): LeNet conv1 (K = 25) 0.33 ms
# direct vs 0.50 ms im2col + GEMM, LeNet conv2 (K = 150) 0.56 ms vs 1.4 ms; the 64-channel
# 3x3 layer (K = 576) stays with BLAS, which reuses each column entry 64 times.
DIRECT_MAX_K = 160
# ... and the weight gradient with at most this many (float32, stride 1 along W, one group).
# Measured on one core (CPU time, batch 64, AMD EPYC, best of 15), direct vs im2col + GEMM:
# LeNet conv1 backward without input gradient 0.36 vs 0.46 ms, with it 0.67 vs 0.87 ms;
# LeNet conv2 (K = 150) with input gradient 1.27 vs 1.60 ms, without 0.83 vs 0.97 ms.
DIRECT_GW_MAX_K = 160


cdef void _direct_setup(Conv* p, const Window* w, intp_t itemsize, intp_t groups):
    p.OWP = (w.OW + 15) // 16 * 16
    p.FB = (p.F + 3) // 4
    p.HP = w.H + 2 * w.PH
    p.WP = max(w.W + 2 * w.PW, p.OWP + (w.KW - 1) * w.DW)
    p.direct = DLC_DIRECT and itemsize == 4 and groups == 1 and w.SW == 1 and p.K <= DIRECT_MAX_K
    # Stride 1: output (oh, ow) at oh*WP + ow of one long row reads the padded image at the
    # fixed distance kh*DH*WP + kw*DW, so a channel's outputs fill whole 16-lane blocks with
    # only the rows' last KW-1 columns wasted: LeNet conv2, 9 blocks instead of 10 rows of
    # 16 lanes for 10 outputs. Taken when it means fewer blocks.
    p.LQ = w.OH * (w.W + 2 * w.PW)
    p.flat = w.SH == 1 and (p.LQ + 15) // 16 < w.OH * (p.OWP // 16)
    if p.flat:
        p.WP = w.W + 2 * w.PW


cdef intp_t _round16(intp_t n) noexcept nogil:
    return (n + 15) // 16 * 16


cdef intp_t _direct_scratch(const Conv* p, const Window* w) noexcept nogil:
    """Floats of thread-private scratch for the direct loops: one padded image; flat, with
    room for the last block's overshoot, then the (F, LQ) outputs."""
    if p.flat:
        return _round16(p.C * p.HP * p.WP + (w.KW - 1) * w.DW + 16) + p.F * p.LQ
    return _round16(p.C * p.HP * p.WP)


cdef void _pad_image(const float* x, intp_t C, const Window* w, intp_t HP, intp_t WP,
                     float* xp) noexcept nogil:
    """xp (C, HP, WP) = the image (C, H, W) with PH zero rows above, PW zero columns left, zeros after."""
    cdef intp_t c, h
    memset(xp, 0, C * HP * WP * sizeof(float))
    for c in range(C):
        for h in range(w.H):
            dlc_copy_f(xp + (c * HP + h + w.PH) * WP + w.PW, x + (c * w.H + h) * w.W, w.W)


cdef void _direct_forward_tile(const float* x, const float* wp, const float* bias, float* out,
                               float* xp, intp_t t, const Conv* p, const Window* win) noexcept nogil:
    cdef intp_t n0 = t * p.T, nt = min(p.T, p.N - n0), j, plane = win.H * win.W
    cdef intp_t f, oh, size = p.C * p.HP * p.WP, room = _round16(size + (win.KW - 1) * win.DW + 16)
    cdef float* flat_out = xp + room
    for j in range(nt):
        _pad_image(x + (n0 + j) * p.C * plane, p.C, win, p.HP, p.WP, xp)
        if not p.flat:
            dlc_direct_fwd(xp, p.C, p.HP, p.WP, wp, p.FB, p.F, win.KH, win.KW, win.SH, win.DH, win.DW,
                           win.OH, win.OW, bias, out + (n0 + j) * p.F * p.L)
            continue
        memset(xp + size, 0, (room - size) * sizeof(float))
        dlc_direct_fwd(xp, p.C, p.HP, p.WP, wp, p.FB, p.F, win.KH, win.KW, 1, win.DH, win.DW,
                       1, p.LQ, bias, flat_out)
        for f in range(p.F):   # the OW real outputs of each WP
            for oh in range(win.OH):
                dlc_copy_f(out + ((n0 + j) * p.F + f) * p.L + oh * win.OW, flat_out + f * p.LQ + oh * p.WP,
                           win.OW)


def _direct_weights(weight, intp_t FB):
    """weight (F, C, KH, KW) -> (FB, C, KH, KW, 4): 4 output channels side by side, zeros past F."""
    F = weight.shape[0]
    packed = np.zeros((FB * 4,) + tuple(weight.shape[1:]), dtype=np.float32)
    packed[:F] = weight
    return np.ascontiguousarray(packed.reshape((FB, 4) + tuple(weight.shape[1:])).transpose(0, 2, 3, 4, 1))


cdef void _add_bias(floating* out, intp_t N, intp_t C, intp_t plane, const floating* bias) noexcept nogil:
    cdef intp_t n, c, i
    cdef floating* d
    for n in range(N):
        for c in range(C):
            d = out + (n * C + c) * plane
            for i in range(plane):
                d[i] += bias[c]


cdef void _conv2d_forward_tile(const floating* x, const floating* w2, const floating* bias,
                               floating* out, floating* cols, floating* res, intp_t t,
                               const Conv* p, const Window* win) noexcept nogil:
    cdef intp_t n0 = t * p.T, nt = min(p.T, p.N - n0), M = nt * p.L, g
    cdef intp_t Fg = p.F // p.G, Kg = p.K // p.G
    cdef floating* dst = out + n0 * p.F * p.L if nt == 1 else res   # one image: out[n] is the matrix
    _im2col_tile(x + n0 * p.C * win.H * win.W, nt, p.C, cols, win)
    for g in range(p.G):   # dst[g's rows] = W2[g's rows] @ cols[g's rows]
        _gemm(False, False, Fg, M, Kg, w2 + g * Fg * Kg, Kg, cols + g * Kg * M, M,
              0, dst + g * Fg * M, M)
    if nt > 1:
        _rows_to_images(res, nt, p.F, p.L, bias if p.has_bias else NULL, out + n0 * p.F * p.L)
    elif p.has_bias:
        _add_bias(dst, 1, p.F, p.L, bias)


def conv2d_forward(const floating[:, :, :, ::1] x,        # IN  (N, C, H, W)
                   const floating[:, :, :, ::1] weight,   # IN  (F, C/G, KH, KW)
                   bias,                                   # IN  (F,) or None
                   floating[:, :, :, ::1] out,             # OUT (N, F, OH, OW)
                   intp_t stride_h, intp_t stride_w, intp_t pad_h, intp_t pad_w,
                   intp_t dilation_h, intp_t dilation_w, intp_t groups, int n_threads):
    """``out[n] = W2 @ im2col(x)[n] + bias`` per group, tile by tile (see the module docstring).

    Same contract as the NumPy twin.
    """
    check_threads(n_threads)
    cdef intp_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef intp_t F = weight.shape[0], KH = weight.shape[2], KW = weight.shape[3]
    cdef const floating[::1] b
    OH, OW = _check_window((H, W), KH, KW, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w)
    if groups < 1 or C % groups or F % groups:
        raise ValueError(f"groups={groups} must divide the {C} input and {F} output channels")
    _expect("weight", _shape(weight, 4), (F, C // groups, KH, KW))
    _expect("out", _shape(out, 4), (N, F, OH, OW))
    if bias is not None:
        b = bias
        _expect("bias", _shape(bias, 1), (F,))
    cdef Window win = _window(H, W, KH, KW, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
                              OH, OW)
    cdef intp_t L = win.OH * win.OW
    cdef Conv p = _conv(N, C, F, groups, KH * KW, L, (C * KH * KW + F) * L, sizeof(floating),
                        bias is not None, True)
    if N == 0:
        return
    _check_ints(p.K, p.T * L)
    _direct_setup(&p, &win, sizeof(floating), groups)
    cdef intp_t stride = _direct_scratch(&p, &win) if p.direct else p.T * (p.K + F) * L
    n_threads = max(1, min(n_threads, p.n_tiles))
    work = _scratch((n_threads, stride), np.asarray(out).dtype)
    cdef floating[:, ::1] ws = work
    cdef const floating* bp = &b[0] if p.has_bias else NULL
    cdef const float[:, :, :, :, ::1] wp
    if p.direct:
        wp = _direct_weights(weight, p.FB)
    cdef intp_t t
    cdef floating* mine = NULL   # each thread sets its own; NULL keeps gcc from warning
    with _ONE_BLAS_THREAD:
        with nogil, parallel(num_threads=n_threads):
            mine = &ws[threadid(), 0]
            for t in prange(p.n_tiles, schedule='dynamic'):
                if floating is float:
                    if p.direct:
                        _direct_forward_tile(&x[0, 0, 0, 0], &wp[0, 0, 0, 0, 0], bp, &out[0, 0, 0, 0],
                                             mine, t, &p, &win)
                        continue
                _conv2d_forward_tile(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], bp, &out[0, 0, 0, 0],
                                     mine, mine + p.T * p.K * L, t, &p, &win)
    _give_back(work)


cdef void _conv2d_backward_tile(const floating* x, const floating* w2, const floating* gout,
                                floating* gin, floating* gw_part, floating gw_beta, double* gb_part,
                                floating* cols, floating* gt, intp_t t,
                                const Conv* p, const Window* win) noexcept nogil:
    """One tile's gradients; its weight gradient goes into gw_part (gw_beta 1: added to it)."""
    cdef intp_t n0 = t * p.T, nt = min(p.T, p.N - n0), M = nt * p.L, g
    cdef intp_t Fg = p.F // p.G, Kg = p.K // p.G, plane = win.H * win.W
    _im2col_tile(x + n0 * p.C * plane, nt, p.C, cols, win)
    if nt == 1:   # one image: its upstream gradient already is the (F, L) matrix g_t
        gt = <floating*> gout + n0 * p.F * p.L
    else:
        _images_to_rows(gout + n0 * p.F * p.L, nt, p.F, p.L, gt)
    if p.has_bias:
        _channel_sums(gout + n0 * p.F * p.L, nt, p.F, p.L, gb_part)
    for g in range(p.G):   # this tile's dL/dW2 = g_t @ cols.T
        _gemm(False, True, Fg, Kg, M, gt + g * Fg * M, M, cols + g * Kg * M, M,
              gw_beta, gw_part + g * Fg * Kg, Kg)
    if not p.want_input:
        return
    for g in range(p.G):   # the columns are spent: cols now holds their gradient W2.T @ g_t
        _gemm(True, False, Kg, M, Fg, w2 + g * Fg * Kg, Kg, gt + g * Fg * M, M,
              0, cols + g * Kg * M, M)
    _col2im_tile(cols, nt, p.C, gin + n0 * p.C * plane, win)


# ---- the direct backward (few input channels, float32) -------------------------------------
# LeNet's conv1 (one input channel, K = 25): im2col copies every pixel 25 times and BLAS
# packs the copies again, for a product of only 6 rows. The direct loops (dlc_direct_gw)
# read a padded copy of each image and of its upstream gradient instead. With stride 1 the
# upstream gradient is stored with the padded image's row length WP ("flat": output
# (oh, ow) at oh*WP + ow, zeros in between), so pixel (oh + kh*DH, ow + kw*DW) sits at the
# fixed distance kh*DH*WP + kw*DW from it and the weight gradient runs over all of an
# image's rows at once (LeNet conv2: 144 numbers, against 10 rows of 16 lanes for 10
# outputs each). The input gradient is W2.T @ g as in im2col's path, then with stride 1
# dlc_fold_rows instead of col2im. The tiles depend on the shape only, never on whether
# the input gradient is asked, so neither does the weight gradient.

cdef struct DirectGrad:
    # padded image: channel stride CS, image stride XS, rows WP apart, HP rows;
    # upstream gradient gp (T, F, R*LR): walked as R runs of LR numbers, XR and GR apart
    # in x and gp; flat (stride 1): one run per image; guard: room dlc_fold_rows may read
    # around the columns
    intp_t HP, WP, CS, XS, GS, GC, R, LR, XR, GR, gp_size, guard
    bint flat


cdef DirectGrad _direct_grad_setup(Conv* p, const Window* w):
    """The direct backward's geometry; sets the tiles (p.T, p.n_tiles) for its workspace."""
    cdef DirectGrad d
    cdef intp_t OWP = (w.OW + 7) // 8 * 8
    d.flat = w.SH == 1
    d.HP = w.H + 2 * w.PH
    if d.flat:
        d.WP = w.W + 2 * w.PW
        d.R, d.LR, d.XR, d.GR = 1, (w.OH * d.WP + 7) // 8 * 8, 0, 0
        d.CS = d.HP * d.WP
        # a run reads up to (KW-1)*DW + 7 numbers past a channel: room after the last one
        d.XS = _round16(p.C * d.CS + (w.KW - 1) * w.DW + 8)
    else:
        d.WP = max(w.W + 2 * w.PW, OWP + (w.KW - 1) * w.DW)
        d.R, d.LR, d.XR, d.GR = w.OH, OWP, w.SH * d.WP, OWP
        d.CS = d.HP * d.WP
        d.XS = p.C * d.CS
    d.GC = d.R * d.LR
    d.GS = p.F * d.GC
    d.guard = _round16((w.KW - 1) * w.DW + 16)
    p.T = _tile_images(p.N, d.XS + d.GS + (p.K + p.F) * p.L, sizeof(float))
    p.n_tiles = (p.N + p.T - 1) // p.T
    d.gp_size = p.T * d.GS
    return d


cdef intp_t _direct_grad_scratch(const Conv* p, const DirectGrad* d) noexcept nogil:
    """xp, gp, then the input gradient's columns (K, T*L) with guards, and its rows of g (F, T*L)."""
    return (_round16(p.T * d.XS) + _round16(d.gp_size) + _round16(p.T * p.K * p.L) + 2 * d.guard
            + p.T * p.F * p.L)


cdef void _direct_backward_tile(const float* x, const float* w2, const float* gout, float* gin,
                                float* gw_part, double* gb_part, float* scratch, intp_t t,
                                const Conv* p, const DirectGrad* d, const Window* win) noexcept nogil:
    cdef intp_t n0 = t * p.T, nt = min(p.T, p.N - n0), M = nt * p.L, plane = win.H * win.W
    cdef intp_t j, f, oh
    cdef float* xp = scratch
    cdef float* gp = xp + _round16(p.T * d.XS)
    cdef float* cols = gp + _round16(d.gp_size) + d.guard   # dlc_fold_rows reads around it
    cdef float* gt = cols + _round16(p.T * p.K * p.L) + d.guard
    cdef float* g
    memset(gp, 0, d.gp_size * sizeof(float))
    for j in range(nt):
        _pad_image(x + (n0 + j) * p.C * plane, p.C, win, d.HP, d.WP, xp + j * d.XS)
        memset(xp + j * d.XS + p.C * d.CS, 0, (d.XS - p.C * d.CS) * sizeof(float))   # the runs' overshoot
        for f in range(p.F):
            g = gp + j * d.GS + f * d.GC
            for oh in range(win.OH):
                dlc_copy_f(g + oh * (d.WP if d.flat else d.LR),   # zeros after each row
                           gout + ((n0 + j) * p.F + f) * p.L + oh * win.OW, win.OW)
    dlc_direct_gw(xp, nt, d.XS, p.C, d.CS, d.WP, gp, d.GS, d.GC, d.R, d.LR, d.XR, d.GR, p.F,
                  win.KH, win.KW, win.DH, win.DW, gw_part)
    if p.has_bias:
        _channel_sums(gout + n0 * p.F * p.L, nt, p.F, p.L, gb_part)
    if not p.want_input:
        return
    if nt == 1:
        gt = <float*> gout + n0 * p.F * p.L
    else:
        _images_to_rows(gout + n0 * p.F * p.L, nt, p.F, p.L, gt)
    _gemm(True, False, p.K, M, p.F, w2, p.K, gt, M, 0, cols, M)
    if not d.flat:
        _col2im_tile(cols, nt, p.C, gin + n0 * p.C * plane, win)
        return
    cdef intp_t c, KK = win.KH * win.KW
    for j in range(nt):   # col2im's sums, from registers
        for c in range(p.C):
            dlc_fold_rows(cols + c * KK * M + j * p.L, M, win.KH, win.KW, win.DH, win.DW, win.PH, win.PW,
                          win.OH, win.OW, win.H, win.W, gin + ((n0 + j) * p.C + c) * plane)


# Elements per block of the tile sums: a thread adds whole rows of a block, tile after tile.
cdef intp_t _SUM_BLOCK = 4096


cdef inline intp_t _sum_blocks(intp_t size) noexcept nogil:
    """Blocks of the tile sums: the weight's, then one for the bias."""
    return (size + _SUM_BLOCK - 1) // _SUM_BLOCK + 1


cdef inline void _sum_tiles(const floating* parts, intp_t n_tiles, intp_t size, floating* out,
                            const double* bparts, intp_t n_bparts, intp_t bsize, floating* bout,
                            intp_t blk) noexcept nogil:
    """Block blk of ``out = sum over t of parts[t]`` (the last block: the bias sums over its
    n_bparts rows), tile 0 first.

    The caller splits the blocks over the threads; each element still adds its tiles in
    order, so the sums do not depend on the thread count. A block runs along each tile's
    row, not down a column of tiles one page apart.
    """
    cdef intp_t t, e, e0 = blk * _SUM_BLOCK, n = min(_SUM_BLOCK, size - e0)
    cdef double d
    if e0 < size:
        memcpy(out + e0, parts + e0, n * sizeof(floating))
        for t in range(1, n_tiles):
            if floating is float:
                dlc_add_f(out + e0, parts + t * size + e0, n)
            else:
                dlc_add_d(out + e0, parts + t * size + e0, n)
    else:
        for e in range(bsize):
            d = 0
            for t in range(n_bparts):
                d = d + bparts[t * bsize + e]
            bout[e] = <floating> d


def conv2d_backward(const floating[:, :, :, ::1] x,            # IN  (N, C, H, W)
                    const floating[:, :, :, ::1] weight,       # IN  (F, C/G, KH, KW)
                    const floating[:, :, :, ::1] grad_output,  # IN  (N, F, OH, OW)
                    grad_input,                                # OUT (N, C, H, W) or None
                    floating[:, :, :, ::1] grad_weight,        # OUT (F, C/G, KH, KW)
                    grad_bias,                                 # OUT (F,) or None
                    intp_t stride_h, intp_t stride_w, intp_t pad_h, intp_t pad_w,
                    intp_t dilation_h, intp_t dilation_w, intp_t groups, int n_threads):
    """Gradients of conv2d_forward, tile by tile; grad_input None skips the input gradient.

    Same contract as the NumPy twin.
    """
    check_threads(n_threads)
    cdef intp_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef intp_t F = weight.shape[0], KH = weight.shape[2], KW = weight.shape[3]
    cdef floating[:, :, :, ::1] gi
    cdef floating[::1] gb
    OH, OW = _check_window((H, W), KH, KW, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w)
    if groups < 1 or C % groups or F % groups:
        raise ValueError(f"groups={groups} must divide the {C} input and {F} output channels")
    _expect("weight", _shape(weight, 4), (F, C // groups, KH, KW))
    _expect("grad_output", _shape(grad_output, 4), (N, F, OH, OW))
    _expect("grad_weight", _shape(grad_weight, 4), _shape(weight, 4))
    if grad_input is not None:
        gi = grad_input
        _expect("grad_input", _shape(grad_input, 4), (N, C, H, W))
    if grad_bias is not None:
        gb = grad_bias
        _expect("grad_bias", _shape(grad_bias, 1), (F,))
    cdef Window win = _window(H, W, KH, KW, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
                              OH, OW)
    cdef intp_t L = win.OH * win.OW
    cdef Conv p = _conv(N, C, F, groups, KH * KW, L, (C * KH * KW + F) * L, sizeof(floating),
                        grad_bias is not None, grad_input is not None)
    cdef intp_t wsize = grad_weight.size
    if N == 0:
        np.asarray(grad_weight)[...] = 0
        if grad_bias is not None:
            grad_bias[...] = 0
        return
    _direct_setup(&p, &win, sizeof(floating), groups)
    cdef bint direct = p.direct and p.K <= DIRECT_GW_MAX_K
    cdef DirectGrad dg
    dg.flat = False
    if direct:
        dg = _direct_grad_setup(&p, &win)
    _check_ints(p.K, p.T * L)
    cdef intp_t stride = _direct_grad_scratch(&p, &dg) if direct else p.T * (p.K + F) * L
    # im2col's path adds the weight gradients of CH consecutive tiles in one partial sum
    # (GEMM with beta 1), a chunk handed to one thread: a quarter of the partial sums to
    # write and add up (the stride-2 layer's are 295 KB each). CH depends on the shape only.
    cdef intp_t CH = 1 if direct else max(1, p.n_tiles // 8)
    cdef intp_t n_chunks = (p.n_tiles + CH - 1) // CH, ch
    n_threads = max(1, min(n_threads, n_chunks))
    dtype = np.asarray(grad_weight).dtype
    work = _scratch((n_threads, stride), dtype)
    parts = _scratch((n_chunks, wsize), dtype)
    bparts = np.empty((p.n_tiles, F if p.has_bias else 0), dtype=np.float64)
    bsum = np.empty(F if p.has_bias else 0, dtype=dtype)
    cdef floating[:, ::1] ws = work, pw = parts
    cdef double[:, ::1] pb = bparts
    cdef floating[::1] bs = bsum
    cdef floating* gip = &gi[0, 0, 0, 0] if p.want_input else NULL
    cdef intp_t t, e, bsize = F if p.has_bias else 0
    cdef floating* mine = NULL   # each thread sets its own; NULL keeps gcc from warning
    with _ONE_BLAS_THREAD:
        with nogil, parallel(num_threads=n_threads):
            mine = &ws[threadid(), 0]
            for ch in prange(n_chunks, schedule='dynamic'):
                if floating is float:
                    if direct:   # CH = 1: chunk ch is tile ch
                        _direct_backward_tile(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], &grad_output[0, 0, 0, 0],
                                              gip, &pw[ch, 0], &pb[ch, 0] if p.has_bias else NULL,
                                              mine, ch, &p, &dg, &win)
                        continue
                for t in range(ch * CH, min(ch * CH + CH, p.n_tiles)):
                    _conv2d_backward_tile(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], &grad_output[0, 0, 0, 0],
                                          gip, &pw[ch, 0], 0 if t == ch * CH else 1,
                                          &pb[t, 0] if p.has_bias else NULL,
                                          mine, mine + p.T * p.K * L, t, &p, &win)
            for e in prange(_sum_blocks(wsize), schedule='static'):
                _sum_tiles(&pw[0, 0], n_chunks, wsize, &grad_weight[0, 0, 0, 0],
                           &pb[0, 0] if p.has_bias else NULL, p.n_tiles, bsize,
                           &bs[0] if p.has_bias else NULL, e)
    _give_back(work, parts)
    if p.has_bias:
        grad_bias[...] = bsum


# ---- conv_transpose2d -----------------------------------------------------------------------
# x (N, C_in, H, W), weight (C_in, C_out/G, KH, KW), out (N, C_out, HO, WO). The "image"
# that im2col/col2im sweep is the output (HO x WO); the window positions are x's H x W pixels.
# In the Conv struct: C = C_out (rows of the column matrix are (c_out, kh, kw)), F = C_in.

cdef void _conv_transpose2d_forward_tile(const floating* x, const floating* w2, floating* out,
                                         floating* cols, floating* xt, intp_t t,
                                         const Conv* p, const Window* win) noexcept nogil:
    cdef intp_t n0 = t * p.T, nt = min(p.T, p.N - n0), M = nt * p.L, g
    cdef intp_t Fg = p.F // p.G, Kg = p.K // p.G
    _images_to_rows(x + n0 * p.F * p.L, nt, p.F, p.L, xt)
    for g in range(p.G):   # cols[g's rows] = W2[g's rows].T @ x_t[g's rows]
        _gemm(True, False, Kg, M, Fg, w2 + g * Fg * Kg, Kg, xt + g * Fg * M, M,
              0, cols + g * Kg * M, M)
    _col2im_tile(cols, nt, p.C, out + n0 * p.C * win.H * win.W, win)


def conv_transpose2d_forward(const floating[:, :, :, ::1] x,        # IN  (N, C_in, H, W)
                             const floating[:, :, :, ::1] weight,   # IN  (C_in, C_out/G, KH, KW)
                             bias,                                   # IN  (C_out,) or None
                             floating[:, :, :, ::1] out,             # OUT (N, C_out, HO, WO)
                             intp_t stride_h, intp_t stride_w, intp_t pad_h, intp_t pad_w,
                             intp_t dilation_h, intp_t dilation_w, intp_t groups, int n_threads):
    """``out = col2im(W2.T @ x[n]) + bias`` per group, tile by tile. Same contract as the twin."""
    check_threads(n_threads)
    cdef intp_t N = x.shape[0], C_in = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef intp_t KH = weight.shape[2], KW = weight.shape[3]
    cdef intp_t HO = out.shape[2], WO = out.shape[3], C_out = out.shape[1]
    cdef const floating[::1] b
    if groups < 1 or C_in % groups or C_out % groups:
        raise ValueError(f"groups={groups} must divide the {C_in} input and {C_out} output channels")
    _expect("weight", _shape(weight, 4), (C_in, C_out // groups, KH, KW))
    OH, OW = _check_window((HO, WO), KH, KW, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w)
    # The windows must cover x's H x W positions; with output_padding they may cover more
    # (rows and columns that only receive the bias).
    if OH < H or OW < W or out.shape[0] != N:
        raise ValueError(f"out of shape {_shape(out, 4)} does not fit x of shape {_shape(x, 4)}: "
                         f"its windows give {(OH, OW)} positions")
    if bias is not None:
        b = bias
        _expect("bias", _shape(bias, 1), (C_out,))
    cdef Window win = _window(HO, WO, KH, KW, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
                              H, W)
    cdef intp_t L = H * W
    cdef Conv p = _conv(N, C_out, C_in, groups, KH * KW, L, (C_out * KH * KW + C_in) * L,
                        sizeof(floating), bias is not None, True)
    if N == 0:
        return
    _check_ints(p.K, p.T * L)
    cdef intp_t stride = p.T * (p.K + C_in) * L
    n_threads = max(1, min(n_threads, p.n_tiles))
    work = _scratch((n_threads, stride), np.asarray(out).dtype)
    cdef floating[:, ::1] ws = work
    cdef intp_t t
    cdef floating* mine = NULL   # each thread sets its own; NULL keeps gcc from warning
    with _ONE_BLAS_THREAD:
        with nogil, parallel(num_threads=n_threads):
            mine = &ws[threadid(), 0]
            for t in prange(p.n_tiles, schedule='dynamic'):
                _conv_transpose2d_forward_tile(&x[0, 0, 0, 0], &weight[0, 0, 0, 0], &out[0, 0, 0, 0],
                                               mine, mine + p.T * p.K * L, t, &p, &win)
                if p.has_bias:
                    _add_bias(&out[t * p.T, 0, 0, 0], min(p.T, N - t * p.T), C_out, HO * WO, &b[0])
    _give_back(work)


cdef void _conv_transpose2d_backward_tile(const floating* x, const floating* w2, const floating* gout,
                                          floating* gin, floating* gw_part, double* gb_part,
                                          floating* cols, floating* xt, intp_t t,
                                          const Conv* p, const Window* win) noexcept nogil:
    cdef intp_t n0 = t * p.T, nt = min(p.T, p.N - n0), M = nt * p.L, g
    cdef intp_t Fg = p.F // p.G, Kg = p.K // p.G, plane = win.H * win.W
    _im2col_tile(gout + n0 * p.C * plane, nt, p.C, cols, win)
    if p.has_bias:
        _channel_sums(gout + n0 * p.C * plane, nt, p.C, plane, gb_part)
    _images_to_rows(x + n0 * p.F * p.L, nt, p.F, p.L, xt)
    for g in range(p.G):   # this tile's dL/dW2 = x_t @ cols.T
        _gemm(False, True, Fg, Kg, M, xt + g * Fg * M, M, cols + g * Kg * M, M,
              0, gw_part + g * Fg * Kg, Kg)
    if not p.want_input:
        return
    for g in range(p.G):   # x_t is spent: it now holds dL/dx = W2 @ cols
        _gemm(False, False, Fg, M, Kg, w2 + g * Fg * Kg, Kg, cols + g * Kg * M, M,
              0, xt + g * Fg * M, M)
    _rows_to_images(xt, nt, p.F, p.L, NULL, gin + n0 * p.F * p.L)


def conv_transpose2d_backward(const floating[:, :, :, ::1] x,            # IN  (N, C_in, H, W)
                              const floating[:, :, :, ::1] weight,       # IN  (C_in, C_out/G, KH, KW)
                              const floating[:, :, :, ::1] grad_output,  # IN  (N, C_out, HO, WO)
                              grad_input,                                # OUT (N, C_in, H, W) or None
                              floating[:, :, :, ::1] grad_weight,        # OUT like weight
                              grad_bias,                                 # OUT (C_out,) or None
                              intp_t stride_h, intp_t stride_w, intp_t pad_h, intp_t pad_w,
                              intp_t dilation_h, intp_t dilation_w, intp_t groups, int n_threads):
    """Gradients of conv_transpose2d_forward, tile by tile; grad_input None skips dL/dx."""
    check_threads(n_threads)
    cdef intp_t N = x.shape[0], C_in = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef intp_t KH = weight.shape[2], KW = weight.shape[3]
    cdef intp_t HO = grad_output.shape[2], WO = grad_output.shape[3], C_out = grad_output.shape[1]
    cdef floating[:, :, :, ::1] gi
    cdef floating[::1] gb
    if groups < 1 or C_in % groups or C_out % groups:
        raise ValueError(f"groups={groups} must divide the {C_in} input and {C_out} output channels")
    _expect("weight", _shape(weight, 4), (C_in, C_out // groups, KH, KW))
    _expect("grad_weight", _shape(grad_weight, 4), _shape(weight, 4))
    OH, OW = _check_window((HO, WO), KH, KW, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w)
    if OH < H or OW < W or grad_output.shape[0] != N:
        raise ValueError(f"grad_output of shape {_shape(grad_output, 4)} does not fit x of shape "
                         f"{_shape(x, 4)}: its windows give {(OH, OW)} positions")
    if grad_input is not None:
        gi = grad_input
        _expect("grad_input", _shape(grad_input, 4), (N, C_in, H, W))
    if grad_bias is not None:
        gb = grad_bias
        _expect("grad_bias", _shape(grad_bias, 1), (C_out,))
    cdef Window win = _window(HO, WO, KH, KW, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
                              H, W)
    cdef intp_t L = H * W
    cdef Conv p = _conv(N, C_out, C_in, groups, KH * KW, L, (C_out * KH * KW + C_in) * L,
                        sizeof(floating), grad_bias is not None, grad_input is not None)
    cdef intp_t wsize = grad_weight.size
    if N == 0:
        np.asarray(grad_weight)[...] = 0
        if grad_bias is not None:
            grad_bias[...] = 0
        return
    _check_ints(p.K, p.T * L)
    cdef intp_t stride = p.T * (p.K + C_in) * L
    n_threads = max(1, min(n_threads, p.n_tiles))
    dtype = np.asarray(grad_weight).dtype
    work = _scratch((n_threads, stride), dtype)
    parts = _scratch((p.n_tiles, wsize), dtype)
    bparts = np.empty((p.n_tiles, C_out if p.has_bias else 0), dtype=np.float64)
    bsum = np.empty(C_out if p.has_bias else 0, dtype=dtype)
    cdef floating[:, ::1] ws = work, pw = parts
    cdef double[:, ::1] pb = bparts
    cdef floating[::1] bs = bsum
    cdef floating* gip = &gi[0, 0, 0, 0] if p.want_input else NULL
    cdef intp_t t, e, bsize = C_out if p.has_bias else 0
    cdef floating* mine = NULL   # each thread sets its own; NULL keeps gcc from warning
    with _ONE_BLAS_THREAD:
        with nogil, parallel(num_threads=n_threads):
            mine = &ws[threadid(), 0]
            for t in prange(p.n_tiles, schedule='dynamic'):
                _conv_transpose2d_backward_tile(&x[0, 0, 0, 0], &weight[0, 0, 0, 0],
                                                &grad_output[0, 0, 0, 0], gip, &pw[t, 0],
                                                &pb[t, 0] if p.has_bias else NULL,
                                                mine, mine + p.T * p.K * L, t, &p, &win)
            for e in prange(_sum_blocks(wsize), schedule='static'):
                _sum_tiles(&pw[0, 0], p.n_tiles, wsize, &grad_weight[0, 0, 0, 0],
                           &pb[0, 0] if p.has_bias else NULL, p.n_tiles, bsize,
                           &bs[0] if p.has_bias else NULL, e)
    _give_back(work, parts)
    if p.has_bias:
        grad_bias[...] = bsum
