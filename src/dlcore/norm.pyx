"""Compiled normalization kernels (batch norm, instance norm): per-plane sums and affine maps.

The specification is the NumPy twin, ``dlcore/backends/numpy_kernels/norm.py``: same names,
same parameters, same results up to the order of float additions. The input is ``x`` of
shape ``(N, C, L)``; per-group arrays have shape ``(S, C)``: ``S = N`` for one value per
plane (instance norm), ``S = 1`` for one value per channel (batch norm). The caller
(``dlcore.functional.normalization``) turns sums into statistics and statistics into
coefficients.

Parallel axes: per-plane sums run a ``prange`` over the N*C planes, per-channel sums a
``prange`` over the C channels (one thread adds all N planes of its channel, in n order);
the affine maps run over samples (or planes, see there). Every sum is computed by one thread in one fixed order,
so results are bitwise the same for any thread count.

Sums accumulate in double. A single double accumulator is one long chain of dependent adds
(4 cycles each); eight partial sums in a fixed pattern are eight independent chains the compiler can also pack into SIMD registers.
Under strict IEEE semantics (our build flags) the compiler may not reorder a sum itself, so the partial sums are
written out.

Index glossary: ``n`` sample, ``c`` channel, ``l`` position in a plane, ``p = n * C + c``
plane, ``r`` row of a per-group array (``n``, or 0 when ``S = 1``).
"""
from cython.parallel cimport prange

from dlcore._common cimport check_threads, floating, intp_t

__all__ = ["norm_moments", "norm_grad_sums", "norm_affine_forward", "norm_affine_backward"]

# The loops below index every array by the sizes of x, unchecked, so each def first checks
# in O(1) that all its arguments agree (a short sum or coefficient array would otherwise be
# read or written past its end).
cdef int _check_like_x(str name, tuple got, intp_t N, intp_t C, intp_t L) except -1:
    if got != (N, C, L):
        raise ValueError(f"{name} must have x's shape {(N, C, L)}, got {got}")
    return 0


cdef int _check_groups(str name, tuple got, intp_t N, intp_t C, intp_t S) except -1:
    """A per-group array: (S, C), with S = N (per plane) or 1 (per channel), as the first one's."""
    if got[1] != C or got[0] != S or (S != N and S != 1):
        want = f"({S}, {C})" if S in (N, 1) else f"({N}, {C}) or (1, {C})"
        raise ValueError(f"{name} must have shape {want} for x of shape (N, C, L) = "
                         f"({N}, {C}, L), got {got}")
    return 0


cdef inline double _total(const double* a) noexcept nogil:
    # The eight partial sums in one fixed order.
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))


cdef void _moments(const floating* x, intp_t planes, intp_t stride, intp_t L, double k,
                   double* s1, double* s2) noexcept nogil:
    """s1 = sum(x - k), s2 = sum((x - k)^2) over ``planes`` planes of L values, plane i at
    x + i * stride, in eight partial sums (position l of plane i goes to sum l % 8, the
    last L % 8 positions to sum (i + l) % 8, so that short planes still use all eight)."""
    cdef double a[8]
    cdef double q[8]
    cdef double d
    cdef const floating* xp
    cdef intp_t i, l, j, L8 = L - L % 8
    for j in range(8):
        a[j] = 0
        q[j] = 0
    for i in range(planes):
        xp = x + i * stride
        for l in range(0, L8, 8):
            for j in range(8):
                d = <double>xp[l + j] - k
                a[j] += d
                q[j] += d * d
        for l in range(L8, L):
            d = <double>xp[l] - k
            j = (i + l) & 7
            a[j] += d
            q[j] += d * d
    s1[0] = _total(a)
    s2[0] = _total(q)


cdef void _grad_sums(const floating* g, const floating* x, intp_t planes, intp_t stride, intp_t L,
                     double mu, double* t1, double* t2) noexcept nogil:
    """t1 = sum(g), t2 = sum(g * (x - mu)) over ``planes`` planes, as :func:`_moments`."""
    cdef double a[8]
    cdef double q[8]
    cdef double gv
    cdef const floating* gp
    cdef const floating* xp
    cdef intp_t i, l, j, L8 = L - L % 8
    for j in range(8):
        a[j] = 0
        q[j] = 0
    for i in range(planes):
        gp = g + i * stride
        xp = x + i * stride
        for l in range(0, L8, 8):
            for j in range(8):
                gv = gp[l + j]
                a[j] += gv
                q[j] += gv * (<double>xp[l + j] - mu)
        for l in range(L8, L):
            gv = gp[l]
            j = (i + l) & 7
            a[j] += gv
            q[j] += gv * (<double>xp[l] - mu)
    t1[0] = _total(a)
    t2[0] = _total(q)


def norm_moments(const floating[:, :, ::1] x,  # IN (N, C, L)
                 const double[:, ::1] shift,   # IN (S, C), S = N or 1
                 double[:, ::1] sum1,          # OUT (S, C)
                 double[:, ::1] sum2,          # OUT (S, C)
                 int n_threads):
    """sum1 = sum (x - shift), sum2 = sum (x - shift)^2 per plane (S = N) or channel (S = 1).

    Parameters
    ----------
    x : ndarray of shape (N, C, L), float32 or float64, C-contiguous
    shift : ndarray of shape (S, C), float64; S = N sums over each plane's L values,
        S = 1 over each channel's N * L values
    sum1, sum2 : ndarray of shape (S, C), float64, written
    n_threads : int

    Same contract as the NumPy twin. The caller validates and allocates.
    """
    check_threads(n_threads)
    cdef intp_t N = x.shape[0], C = x.shape[1], L = x.shape[2], p, c
    _check_groups("shift", (shift.shape[0], shift.shape[1]), N, C, shift.shape[0])
    _check_groups("sum1", (sum1.shape[0], sum1.shape[1]), N, C, shift.shape[0])
    _check_groups("sum2", (sum2.shape[0], sum2.shape[1]), N, C, shift.shape[0])
    if N == 0 or L == 0:
        sum1[:, :] = 0
        sum2[:, :] = 0
        return
    with nogil:
        if shift.shape[0] == N:
            for p in prange(N * C, schedule='static', num_threads=n_threads):
                _moments(&x[p // C, p % C, 0], 1, 0, L, shift[p // C, p % C],
                         &sum1[p // C, p % C], &sum2[p // C, p % C])
        else:
            for c in prange(C, schedule='static', num_threads=n_threads):
                _moments(&x[0, c, 0], N, C * L, L, shift[0, c], &sum1[0, c], &sum2[0, c])


def norm_grad_sums(const floating[:, :, ::1] g,  # IN (N, C, L) dL/dy
                   const floating[:, :, ::1] x,  # IN (N, C, L) the forward input
                   const double[:, ::1] mean,    # IN (S, C)
                   double[:, ::1] sum_g,         # OUT (S, C)
                   double[:, ::1] sum_gx,        # OUT (S, C)
                   int n_threads):
    """sum_g = sum g, sum_gx = sum g * (x - mean) per plane (S = N) or channel (S = 1). See the twin."""
    check_threads(n_threads)
    cdef intp_t N = x.shape[0], C = x.shape[1], L = x.shape[2], p, c
    _check_like_x("g", (g.shape[0], g.shape[1], g.shape[2]), N, C, L)
    _check_groups("mean", (mean.shape[0], mean.shape[1]), N, C, mean.shape[0])
    _check_groups("sum_g", (sum_g.shape[0], sum_g.shape[1]), N, C, mean.shape[0])
    _check_groups("sum_gx", (sum_gx.shape[0], sum_gx.shape[1]), N, C, mean.shape[0])
    if N == 0 or L == 0:
        sum_g[:, :] = 0
        sum_gx[:, :] = 0
        return
    with nogil:
        if mean.shape[0] == N:
            for p in prange(N * C, schedule='static', num_threads=n_threads):
                _grad_sums(&g[p // C, p % C, 0], &x[p // C, p % C, 0], 1, 0, L, mean[p // C, p % C],
                           &sum_g[p // C, p % C], &sum_gx[p // C, p % C])
        else:
            for c in prange(C, schedule='static', num_threads=n_threads):
                _grad_sums(&g[0, c, 0], &x[0, c, 0], N, C * L, L, mean[0, c], &sum_g[0, c], &sum_gx[0, c])


cdef void _affine_sample(const floating* x, const floating* a, const floating* b, floating* out,
                         intp_t C, intp_t L) noexcept nogil:
    """out = a[c] * x + b[c] over the C planes of one sample (a, b: that sample's row)."""
    cdef intp_t c, l
    cdef floating ac, bc
    if L == 1:  # (N, C) input: run along the channels, which the compiler vectorizes
        for c in range(C):
            out[c] = a[c] * x[c] + b[c]
        return
    for c in range(C):
        ac = a[c]
        bc = b[c]
        for l in range(L):
            out[c * L + l] = ac * x[c * L + l] + bc


cdef void _affine2_sample(const floating* g, const floating* x, const floating* a, const floating* b,
                          const floating* k, floating* out, intp_t C, intp_t L) noexcept nogil:
    """out = a[c] * g + b[c] * x + k[c] over the C planes of one sample."""
    cdef intp_t c, l
    cdef floating ac, bc, kc
    if L == 1:
        for c in range(C):
            out[c] = (a[c] * g[c] + b[c] * x[c]) + k[c]
        return
    for c in range(C):
        ac = a[c]
        bc = b[c]
        kc = k[c]
        for l in range(L):
            out[c * L + l] = (ac * g[c * L + l] + bc * x[c * L + l]) + kc


# The affine maps split the work over samples when there are enough of them (no index
# arithmetic per plane, and (N, C) input runs along its rows), else over single planes
# (few large images: N = 1 in style transfer).

def norm_affine_forward(const floating[:, :, ::1] x,  # IN (N, C, L)
                        const floating[:, ::1] a,     # IN (S, C), S = N or 1
                        const floating[:, ::1] b,     # IN (S, C)
                        floating[:, :, ::1] out,      # OUT (N, C, L)
                        int n_threads):
    """out[n, c] = a[r, c] * x[n, c] + b[r, c], r = n (S = N) or 0 (S = 1). See the twin."""
    check_threads(n_threads)
    cdef intp_t N = x.shape[0], C = x.shape[1], L = x.shape[2], n, p, r
    _check_groups("a", (a.shape[0], a.shape[1]), N, C, a.shape[0])
    _check_groups("b", (b.shape[0], b.shape[1]), N, C, a.shape[0])
    _check_like_x("out", (out.shape[0], out.shape[1], out.shape[2]), N, C, L)
    cdef bint per_plane = a.shape[0] == N
    if N == 0 or L == 0:
        return
    with nogil:
        if N >= 2 * n_threads:
            for n in prange(N, schedule='static', num_threads=n_threads):
                r = n if per_plane else 0
                _affine_sample(&x[n, 0, 0], &a[r, 0], &b[r, 0], &out[n, 0, 0], C, L)
        else:
            for p in prange(N * C, schedule='static', num_threads=n_threads):
                r = p // C if per_plane else 0
                _affine_sample(&x[p // C, p % C, 0], &a[r, p % C], &b[r, p % C],
                               &out[p // C, p % C, 0], 1, L)


def norm_affine_backward(const floating[:, :, ::1] g,  # IN (N, C, L)
                         const floating[:, :, ::1] x,  # IN (N, C, L)
                         const floating[:, ::1] a,     # IN (S, C), S = N or 1
                         const floating[:, ::1] b,     # IN (S, C)
                         const floating[:, ::1] c,     # IN (S, C)
                         floating[:, :, ::1] grad_input,  # OUT (N, C, L)
                         int n_threads):
    """grad_input[n, c] = a[r, c] * g[n, c] + b[r, c] * x[n, c] + c[r, c], r as the forward. See the twin."""
    check_threads(n_threads)
    cdef intp_t N = x.shape[0], C = x.shape[1], L = x.shape[2], n, p, r
    _check_like_x("g", (g.shape[0], g.shape[1], g.shape[2]), N, C, L)
    _check_groups("a", (a.shape[0], a.shape[1]), N, C, a.shape[0])
    _check_groups("b", (b.shape[0], b.shape[1]), N, C, a.shape[0])
    _check_groups("c", (c.shape[0], c.shape[1]), N, C, a.shape[0])
    _check_like_x("grad_input", (grad_input.shape[0], grad_input.shape[1], grad_input.shape[2]), N, C, L)
    cdef bint per_plane = a.shape[0] == N
    if N == 0 or L == 0:
        return
    with nogil:
        if N >= 2 * n_threads:
            for n in prange(N, schedule='static', num_threads=n_threads):
                r = n if per_plane else 0
                _affine2_sample(&g[n, 0, 0], &x[n, 0, 0], &a[r, 0], &b[r, 0], &c[r, 0],
                                &grad_input[n, 0, 0], C, L)
        else:
            for p in prange(N * C, schedule='static', num_threads=n_threads):
                r = p // C if per_plane else 0
                _affine2_sample(&g[p // C, p % C, 0], &x[p // C, p % C, 0], &a[r, p % C], &b[r, p % C],
                                &c[r, p % C], &grad_input[p // C, p % C, 0], 1, L)
