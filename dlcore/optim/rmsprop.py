"""RMSprop: gradients divided by a running root mean square."""
from .optimizer import Params, Optimizer, _buffer, check_hyper, empty, nonnegative


class RMSprop(Optimizer):
    r"""RMSprop (Hinton's lecture 6e; centered: Graves, 2013), as ``torch.optim.RMSprop``.

    .. code-block:: text

        input: gamma (lr), theta (params), alpha (smoothing), eps, lambda (weight_decay),
               mu (momentum), centered;  v_0 = 0, g_ave_0 = 0, b_0 = 0
        for t = 1, 2, ...:
            g_t <- grad of the loss at theta_{t-1}      (+ l1_decay * sign(theta_{t-1}))
            if lambda != 0:  g_t <- g_t + lambda * theta_{t-1}
            v_t <- alpha * v_{t-1} + (1 - alpha) * g_t^2
            s_t <- v_t
            if centered:
                g_ave_t <- alpha * g_ave_{t-1} + (1 - alpha) * g_t
                s_t <- v_t - g_ave_t^2
            if mu > 0:
                b_t <- mu * b_{t-1} + g_t / (sqrt(s_t) + eps)
                theta_t <- theta_{t-1} - gamma * b_t
            else:
                theta_t <- theta_{t-1} - gamma * g_t / (sqrt(s_t) + eps)

    Note on the notes: one set writes RMSProp with AdaGrad's accumulator
    ``r <- r + g * g``; that is AdaGrad. RMSProp's point is the exponentially decaying
    average ``v <- alpha v + (1 - alpha) g^2`` above, which forgets the distant past. Other
    notes call the decay beta (or beta_2) and put eps = 1e-5 or 1e-7; torch's defaults
    are alpha = 0.99 and eps = 1e-8, added after the square root.

    Args:
        params: iterable of Parameters or of param-group dicts.
        lr (float): gamma (default 0.01).
        alpha (float): smoothing constant (default 0.99).
        eps (float): added to the denominator (default 1e-8).
        weight_decay (float): lambda (default 0).
        momentum (float): mu (default 0).
        centered (bool): divide by an estimate of the gradient's variance (default False).
        l1_decay (float, keyword-only): L1 penalty, a dlcore addition (default 0).

    State per parameter: ``step``, ``square_avg``, ``momentum_buffer`` (momentum > 0),
    ``grad_avg`` (centered).
    """

    # buffers a non-empty state must hold (None: always; else the group option enabling it)
    _state_keys = {"step": None, "square_avg": None, "momentum_buffer": "momentum", "grad_avg": "centered"}

    def __init__(self, params: Params, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False, *, l1_decay: float = 0) -> None:
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, l1_decay=l1_decay)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        check_hyper(group["eps"], "eps", nonnegative, "epsilon value")
        check_hyper(group["momentum"], "momentum", nonnegative)
        check_hyper(group["weight_decay"], "weight_decay", nonnegative)
        check_hyper(group["alpha"], "alpha", nonnegative)

    def _update(self, backend, n_threads, p, flat, grad, state, group):
        momentum, centered = group["momentum"], bool(group["centered"])
        square_avg = _buffer(state, "square_avg", p.data)
        buf = _buffer(state, "momentum_buffer", p.data) if momentum > 0 else empty(flat)
        grad_avg = _buffer(state, "grad_avg", p.data) if centered else empty(flat)
        state["step"] = state.get("step", 0) + 1
        backend.rmsprop_step(flat, grad, square_avg, grad_avg, buf, float(group["lr"]), float(group["alpha"]),
                             float(group["eps"]), float(group["weight_decay"]), float(momentum), centered,
                             n_threads)
