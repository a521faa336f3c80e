"""NumPy twins for ``src/dlcore/activation.pyx``: activations, softmax, softmax-cross-entropy.

These functions are the specification of the compiled kernels: same names, same
parameters, same results (up to float rounding). The caller (``dlcore.functional``)
validates, makes every array C-contiguous of one float dtype, flattens elementwise
inputs to 1-D and allocates the outputs; ``n_threads`` is accepted and ignored here.

Shapes
------
* elementwise kernels: every array is 1-D ``(n,)`` (the caller passes ``x.reshape(-1)``);
* softmax / log_softmax: ``(R, C)``, normalized over the last axis (C) of each row;
* softmax_cross_entropy: ``logits (N, C)``, ``target (N,)`` int64 in ``[0, C)``,
  ``loss (N,)``, ``row_max (N,)`` and ``log_sum (N,)`` float64 (each row's maximum and
  log-sum-exp after subtracting it, kept for backward).

Every backward kernel receives ``grad_output`` = dL/d(out) and writes
``grad_input`` = dL/d(x). Where the derivative is a function of the forward result
(sigmoid, tanh, relu, softmax), the backward takes that result as ``output`` so the
input need not be kept -- as torch's ``sigmoid_backward(grad, output)`` does.
"""
import numpy as np

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


# ---- elementwise: for i in range(n): out[i] = f(x[i]) --------------------------------------

def relu_forward(x, out, n_threads):
    """out = max(x, 0)   (NaN stays NaN, as torch.relu).  x, out: (n,)."""
    np.maximum(x, 0, out=out)


def relu_backward(grad_output, output, grad_input, n_threads):
    """grad_input = grad_output * [output > 0]   (the subgradient at 0 is 0, as torch).

    ``output`` is relu's result: output > 0 exactly where x > 0.
    """
    np.multiply(grad_output, output > 0, out=grad_input)


def leaky_relu_forward(x, out, negative_slope, n_threads):
    """out = x if x > 0 else negative_slope * x."""
    np.copyto(out, np.where(x > 0, x, x * negative_slope))


def leaky_relu_backward(grad_output, x, grad_input, negative_slope, n_threads):
    """grad_input = grad_output * (1 if x > 0 else negative_slope)   (slope at x == 0)."""
    np.multiply(grad_output, np.where(x > 0, 1, negative_slope).astype(x.dtype), out=grad_input)


def _sigmoid(x):
    # sigma(x) = 1 / (1 + e^-x) = e^x / (1 + e^x): with e = exp(-|x|) <= 1 neither form overflows.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_forward(x, out, n_threads):
    """out = sigma(x) = 1 / (1 + exp(-x)), computed without overflow for large |x|."""
    np.copyto(out, _sigmoid(x))


def sigmoid_backward(grad_output, output, grad_input, n_threads):
    """grad_input = grad_output * y * (1 - y), with y = sigma(x) = ``output``."""
    np.multiply(grad_output, output * (1 - output), out=grad_input)


def tanh_forward(x, out, n_threads):
    """out = tanh(x) = (e^x - e^-x) / (e^x + e^-x)."""
    np.tanh(x, out=out)


def tanh_backward(grad_output, output, grad_input, n_threads):
    """grad_input = grad_output * (1 - y^2), with y = tanh(x) = ``output``."""
    np.multiply(grad_output, 1 - output * output, out=grad_input)


def silu_forward(x, out, n_threads):
    """out = silu(x) = swish(x) = x * sigma(x)."""
    np.multiply(x, _sigmoid(x), out=out)


def silu_backward(grad_output, x, grad_input, n_threads):
    """grad_input = grad_output * s * (1 + x * (1 - s)), with s = sigma(x).

    (d/dx of x*s is s + x*s*(1 - s).)
    """
    s = _sigmoid(x)
    np.multiply(grad_output, s * (1 + x * (1 - s)), out=grad_input)


# ---- row-wise: for r in range(R): out[r, :] = f(x[r, :]) -----------------------------------

def softmax_forward(x, out, n_threads):
    """out[r, j] = exp(x[r, j] - m_r) / sum_k exp(x[r, k] - m_r),  m_r = max_k x[r, k].

    Subtracting the row maximum changes nothing mathematically and keeps exp <= 1.
    x, out: (R, C)::

        for r in range(R):
            m = max(x[r]); e = exp(x[r] - m); out[r] = e / sum(e)
    """
    if out.size == 0:
        return
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.divide(e, e.sum(axis=1, keepdims=True), out=out)


def softmax_backward(grad_output, output, grad_input, n_threads):
    """grad_input[r] = y_r * (g_r - <g_r, y_r>), with y = softmax(x) = ``output``, g = grad_output.

    (The Jacobian of softmax is diag(y) - y y^T.)
    """
    dot = (grad_output * output).sum(axis=1, keepdims=True)
    np.multiply(output, grad_output - dot, out=grad_input)


def log_softmax_forward(x, out, n_threads):
    """out[r, j] = (x[r, j] - m_r) - log sum_k exp(x[r, k] - m_r)   (the stable log-softmax)."""
    if out.size == 0:
        return
    z = x - x.max(axis=1, keepdims=True)
    np.subtract(z, np.log(np.exp(z).sum(axis=1, keepdims=True)), out=out)


def log_softmax_backward(grad_output, output, grad_input, n_threads):
    """grad_input[r] = g_r - exp(y_r) * sum_j g_r[j], with y = log_softmax(x) = ``output``."""
    total = grad_output.sum(axis=1, keepdims=True)
    np.subtract(grad_output, np.exp(output) * total, out=grad_input)


def _check_targets(target, C):
    # The compiled kernel indexes with the targets unchecked, so both backends refuse them alike.
    bad = (target < 0) | (target >= C)
    if bad.any():
        raise ValueError(f"target must hold class indices in [0, {C}), got {target[bad][0]} at row {np.argmax(bad)}")


def softmax_cross_entropy_forward(logits, target, loss, row_max, log_sum, n_threads):
    """Per-row cross-entropy of softmax(logits) against integer targets, fused.

    loss[i]    = -log softmax(x_i)[t_i] = (m_i - x[i, t_i]) + log_sum[i]
    row_max[i] = m_i = max_j x[i, j]                          (float64, reused by backward)
    log_sum[i] = log sum_j exp(x[i, j] - m_i), in [0, log C]  (float64, reused by backward)

    logits: (N, C); target: (N,) int64 in [0, C); the outputs (N,). Written as
    (m - x_t) + log(sum) rather than lse - x_t so that a confident, correct prediction
    keeps a small loss accurate; m and log(sum) are kept apart because m + log(sum) loses
    log(sum) when |m| is huge (1e30 + log 2 == 1e30)::

        for i in range(N):
            m = max(x[i]); s = sum(exp(x[i] - m))
            loss[i] = (m - x[i, t[i]]) + log(s); row_max[i] = m; log_sum[i] = log(s)
    """
    _check_targets(target, logits.shape[1])
    if logits.size == 0:
        return
    m = logits.max(axis=1)
    log_s = np.log(np.exp(logits - m[:, None]).sum(axis=1))
    loss[:] = (m - logits[np.arange(len(target)), target]) + log_s
    row_max[:] = m
    log_sum[:] = log_s


def softmax_cross_entropy_backward(grad_output, logits, target, row_max, log_sum, grad_input, n_threads):
    """grad_input[i, j] = grad_output[i] * (softmax(x_i)[j] - [j == t_i]).

    softmax(x_i)[j] = exp((x[i, j] - m_i) - log_sum[i]). grad_output: (N,) (the upstream
    gradient of each row's loss); the other shapes as in the forward::

        for i in range(N):
            grad_input[i] = grad_output[i] * exp((x[i] - m[i]) - log_sum[i])
            grad_input[i, t[i]] -= grad_output[i]
    """
    _check_targets(target, logits.shape[1])
    p = np.exp((logits - row_max[:, None]) - log_sum[:, None])
    p[np.arange(len(target)), target] -= 1
    np.multiply(p, grad_output[:, None], out=grad_input, casting="unsafe")
