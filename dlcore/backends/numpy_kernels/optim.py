"""NumPy twins of src/dlcore/optim.pyx: one optimizer update rule per function.

Each kernel updates ``param`` and its state arrays IN PLACE from a read-only ``grad``;
all arrays have the parameter's shape and dtype (float32 or float64). The code follows
torch's single-tensor (``foreach=False``) implementation operation by operation, so the
numbers agree with ``torch.optim`` (bitwise up to fused multiply-adds). A Python float
times a float32 array stays float32 (NumPy 2's scalar rule), exactly as in torch.

The loop nest of every kernel is the same::

    for i in range(param.size):          # every element is independent
        g = grad[i] (+ weight_decay * param[i])
        update the state at i from g
        param[i] -= lr * (a step built from the state at i)

Unused state arrays (no momentum, not centered, no amsgrad) are passed as empty arrays.
``n_threads`` is accepted and ignored.
"""
import numpy as np

__all__ = ["sgd_step", "adagrad_step", "rmsprop_step", "adam_step", "adamw_step"]


def _lerp_(start, end, weight):
    """``start += weight * (end - start)`` in place, as torch's ``lerp_`` rounds it.

    Torch rounds the weight to the array's dtype and, for ``|weight| >= 0.5``, uses the
    form anchored at ``end`` so that ``weight = 1`` gives ``end`` exactly.
    """
    w = start.dtype.type(weight)
    if abs(w) < 0.5:
        start += w * (end - start)
    else:
        start[...] = end + (w - 1) * (end - start)


def sgd_step(param, grad, momentum_buffer, lr, momentum, dampening, weight_decay, nesterov,
             first_step, n_threads):
    """SGD with momentum (buffer ``b``), dampening ``d`` and weight decay ``lambda``.

    .. math::
        g = \\nabla + \\lambda\\theta, \\quad
        b = g \\text{ (first step) else } \\mu b + (1 - d) g, \\quad
        \\theta \\mathrel{-}= \\gamma\\,(g + \\mu b \\text{ if nesterov else } b)

    Shapes: every array is the parameter's shape; ``momentum_buffer`` is empty when
    ``momentum == 0`` (then the step is ``theta -= lr * g``).
    """
    g = grad + weight_decay * param if weight_decay != 0 else grad
    if momentum != 0:
        if first_step:
            momentum_buffer[...] = g
        else:
            momentum_buffer *= momentum
            momentum_buffer += (1 - dampening) * g
        g = g + momentum * momentum_buffer if nesterov else momentum_buffer
    param -= lr * g


def adagrad_step(param, grad, state_sum, lr, lr_decay, weight_decay, eps, step, n_threads):
    """Adagrad: ``r += g**2``; ``theta -= lr_t * g / (sqrt(r) + eps)``.

    ``lr_t = lr / (1 + (step - 1) * lr_decay)``, ``step`` counting from 1;
    ``g = grad + weight_decay * theta``. Shapes: every array is the parameter's shape.
    """
    g = grad + weight_decay * param if weight_decay != 0 else grad
    clr = lr / (1 + (step - 1) * lr_decay)
    state_sum += g * g
    param -= clr * g / (np.sqrt(state_sum) + eps)


def rmsprop_step(param, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
                 momentum, centered, n_threads):
    """RMSprop: ``v = alpha v + (1 - alpha) g**2``; ``theta -= lr * g / (sqrt(v) + eps)``.

    Centered: also ``a = alpha a + (1 - alpha) g`` (``grad_avg``) and ``v - a**2`` under
    the root. Momentum: ``b = momentum b + g / (sqrt(.) + eps)``; ``theta -= lr * b``.
    Shapes: every array is the parameter's shape; ``grad_avg`` is empty unless
    ``centered``, ``momentum_buffer`` is empty unless ``momentum > 0``.
    """
    g = grad + weight_decay * param if weight_decay != 0 else grad
    square_avg *= alpha
    square_avg += (1 - alpha) * g * g
    if centered:
        _lerp_(grad_avg, g, 1 - alpha)
        avg = np.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        avg = np.sqrt(square_avg) + eps
    if momentum > 0:
        momentum_buffer *= momentum
        momentum_buffer += g / avg
        param -= lr * momentum_buffer
    else:
        param -= lr * g / avg


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps,
              weight_decay, amsgrad, step, n_threads):
    """Adam at step ``t = step`` (from 1), weight decay added to the gradient.

    .. math::
        m = \\beta_1 m + (1 - \\beta_1) g, \\quad v = \\beta_2 v + (1 - \\beta_2) g^2, \\quad
        \\theta \\mathrel{-}= \\frac{\\gamma}{1 - \\beta_1^t}\\,
            \\frac{m}{\\sqrt{v} / \\sqrt{1 - \\beta_2^t} + \\epsilon}

    With ``amsgrad`` the running maximum of ``v`` (``max_exp_avg_sq``, else empty)
    replaces ``v`` in the denominator. Shapes: every array is the parameter's shape.
    """
    g = grad + weight_decay * param if weight_decay != 0 else grad
    _lerp_(exp_avg, g, 1 - beta1)
    exp_avg_sq *= beta2
    exp_avg_sq += (1 - beta2) * g * g
    if amsgrad:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
    v = max_exp_avg_sq if amsgrad else exp_avg_sq
    denom = np.sqrt(v) / (1 - beta2**step) ** 0.5 + eps
    param -= lr / (1 - beta1**step) * exp_avg / denom


def adamw_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps,
               weight_decay, amsgrad, step, n_threads):
    """AdamW: decoupled decay ``theta *= 1 - lr * weight_decay``, then Adam without decay.

    Same arguments and shapes as :func:`adam_step`.
    """
    param *= 1 - lr * weight_decay
    adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps, 0.0,
              amsgrad, step, n_threads)
