"""Adagrad: per-coordinate learning rates from the sum of squared gradients."""
from .optimizer import Params, Optimizer, _buffer, check_hyper, nonnegative


class Adagrad(Optimizer):
    r"""Adagrad (Duchi et al., 2011), as ``torch.optim.Adagrad``.

    .. code-block:: text

        input: gamma (lr), theta (params), lambda (weight_decay), eta (lr_decay),
               delta (eps), r_0 = initial_accumulator_value
        for t = 1, 2, ...:
            g_t <- grad of the loss at theta_{t-1}      (+ l1_decay * sign(theta_{t-1}))
            if lambda != 0:  g_t <- g_t + lambda * theta_{t-1}
            gamma_t <- gamma / (1 + (t - 1) * eta)
            r_t <- r_{t-1} + g_t * g_t
            theta_t <- theta_{t-1} - gamma_t * g_t / (sqrt(r_t) + delta)

    This is the notes' AdaGrad (``theta <- theta - eps / sqrt(delta I + diag(G)) g`` with
    ``G = sum g g^T``) with its diagonal only, as every library implements it, and with
    ``delta`` added after the square root (torch's placement).

    Args:
        params: iterable of Parameters or of param-group dicts.
        lr (float): gamma (default 0.01).
        lr_decay (float): eta (default 0).
        weight_decay (float): lambda (default 0).
        eps (float): delta (default 1e-10).
        initial_accumulator_value (float, keyword-only): r_0 (default 0).
        l1_decay (float, keyword-only): L1 penalty, a dlcore addition (default 0).

    State per parameter (created with the optimizer, as torch): ``step``, ``sum``.
    """

    # buffers a non-empty state must hold
    _state_keys = {"step": None, "sum": None}

    def __init__(self, params: Params, lr: float = 0.01, lr_decay: float = 0, weight_decay: float = 0,
                 eps: float = 1e-10, *, initial_accumulator_value: float = 0, l1_decay: float = 0) -> None:
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                        initial_accumulator_value=initial_accumulator_value, l1_decay=l1_decay)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        check_hyper(group["lr_decay"], "lr_decay", nonnegative)
        check_hyper(group["weight_decay"], "weight_decay", nonnegative)
        check_hyper(group["initial_accumulator_value"], "initial_accumulator_value", nonnegative)
        check_hyper(group["eps"], "eps", nonnegative, "epsilon value")

    def _init_group(self, group):
        for p in group["params"]:
            state = self.state.setdefault(p, {})
            state.setdefault("step", 0)
            _buffer(state, "sum", p.data, float(group["initial_accumulator_value"]))

    def _update(self, backend, n_threads, p, flat, grad, state, group):
        state_sum = _buffer(state, "sum", p.data, float(group["initial_accumulator_value"]))
        state["step"] = state.get("step", 0) + 1
        backend.adagrad_step(flat, grad, state_sum, float(group["lr"]), float(group["lr_decay"]),
                             float(group["weight_decay"]), float(group["eps"]), float(state["step"]),
                             n_threads)
