r"""Exercise 3: one Adam step (Kingma & Ba, 2015), in place.

Task: write ``adam_step`` below. With ``g = grad + weight_decay * param`` (when
``weight_decay != 0``) and t = ``step`` (1 for the first update):

    m = beta1 * m + (1 - beta1) * g                  exp_avg, the first moment
    v = beta2 * v + (1 - beta2) * g**2               exp_avg_sq, the second moment
    m_hat = m / (1 - beta1**t)                       bias corrections: m and v start at 0
    v_hat = v / (1 - beta2**t)
    param = param - lr * m_hat / (sqrt(v_hat) + eps)

With ``amsgrad`` True, keep the running maximum ``max_exp_avg_sq = max(max_exp_avg_sq, v)``
and use it instead of v in v_hat (otherwise ``max_exp_avg_sq`` is an empty array: leave it).

Update ``param``, ``exp_avg``, ``exp_avg_sq`` (and ``max_exp_avg_sq``) IN PLACE
(``param -= ...``, ``exp_avg[...] = ...``): the optimizer keeps these very arrays. ``grad``
is read-only. All arrays have the parameter's shape and dtype; lr, beta1, beta2, eps,
weight_decay are floats, amsgrad a bool, step an int; ignore ``n_threads``.

Check::

    python -m dlcore verify --load examples/exercises/adam.py

(torch.optim.Adam is the reference too; the table's "vs torch" column shows how close
you are to it.)
"""
import numpy as np


def adam_step(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, beta1, beta2, eps,
              weight_decay, amsgrad, step, n_threads):
    # YOUR CODE HERE
    raise NotImplementedError("exercise 3: adam_step is not written yet -- "
                              "see the docstring of examples/exercises/adam.py")


KERNELS = {"adam_step": adam_step}
