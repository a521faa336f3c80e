"""Stochastic gradient descent, with momentum and Nesterov momentum."""
from .optimizer import Params, Optimizer, _buffer, check_hyper, empty, nonnegative


class SGD(Optimizer):
    r"""Stochastic gradient descent (optionally with momentum), as ``torch.optim.SGD``.

    .. code-block:: text

        input: gamma (lr), theta (params), lambda (weight_decay), mu (momentum),
               tau (dampening), nesterov
        for t = 1, 2, ...:
            g_t <- grad of the loss at theta_{t-1}      (+ l1_decay * sign(theta_{t-1}))
            if lambda != 0:  g_t <- g_t + lambda * theta_{t-1}
            if mu != 0:
                if t == 1:   b_t <- g_t
                else:        b_t <- mu * b_{t-1} + (1 - tau) * g_t
                if nesterov: g_t <- g_t + mu * b_t
                else:        g_t <- b_t
            theta_t <- theta_{t-1} - gamma * g_t

    The notes write momentum as a velocity, ``v <- alpha v - eps g``, ``theta <- theta + v``:
    that is the same iteration with ``v = -gamma b`` (alpha = mu, eps = gamma, tau = 0).
    Their other form ``v <- beta v + (1 - beta) g`` (an exponential moving average) is
    ``dampening = momentum`` here, except that torch starts the buffer at ``g_1``, not 0.
    Nesterov's look-ahead gradient (evaluated at ``theta + alpha v`` in the notes) is
    rewritten, as in torch and Sutskever et al. (2013), so that the gradient is taken at
    the current parameters: ``g + mu * b``.

    Args:
        params: iterable of Parameters or of param-group dicts.
        lr (float): learning rate gamma (required).
        momentum (float): mu (default 0).
        dampening (float): tau (default 0).
        weight_decay (float): L2 penalty lambda added to the gradient (default 0).
        nesterov (bool): Nesterov momentum; needs momentum > 0 and dampening 0 (default False).
        l1_decay (float, keyword-only): L1 penalty, a dlcore addition (default 0).

    State per parameter: ``momentum_buffer`` (only when momentum != 0).

    Example::

        >>> opt = SGD(model.parameters(), lr=0.1, momentum=0.9)   # doctest: +SKIP
        >>> opt.zero_grad(); loss_fn.backward(); model.backward(...); opt.step()  # doctest: +SKIP
    """

    def __init__(self, params: Params, lr: float, momentum: float = 0, dampening: float = 0, weight_decay: float = 0,
                 nesterov: bool = False, *, l1_decay: float = 0) -> None:
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, l1_decay=l1_decay)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        check_hyper(group["momentum"], "momentum", nonnegative)
        check_hyper(group["weight_decay"], "weight_decay", nonnegative)
        check_hyper(group["dampening"], "dampening", lambda v: True)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _update(self, backend, n_threads, p, flat, grad, state, group):
        momentum = group["momentum"]
        first = False
        buf = empty(flat)
        if momentum != 0:
            first = "momentum_buffer" not in state
            buf = _buffer(state, "momentum_buffer", p.data)
        backend.sgd_step(flat, grad, buf, float(group["lr"]), float(momentum), float(group["dampening"]),
                         float(group["weight_decay"]), bool(group["nesterov"]), first, n_threads)
