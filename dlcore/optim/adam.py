"""Adam and AdamW: momentum plus RMSprop scaling, with bias correction."""
from typing import Tuple

from .optimizer import Params, Optimizer, _buffer, check_hyper, empty, nonnegative


def _unit_interval(value):
    return 0.0 <= value < 1.0


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015), with AMSGrad (Reddi et al., 2018), as ``torch.optim.Adam``.

    .. code-block:: text

        input: gamma (lr), beta_1, beta_2 (betas), theta (params), lambda (weight_decay),
               eps, amsgrad;  m_0 = 0 (first moment), v_0 = 0 (second moment), v_max_0 = 0
        for t = 1, 2, ...:
            g_t <- grad of the loss at theta_{t-1}      (+ l1_decay * sign(theta_{t-1}))
            if lambda != 0:  g_t <- g_t + lambda * theta_{t-1}        (L2, "coupled")
            m_t <- beta_1 * m_{t-1} + (1 - beta_1) * g_t               (momentum)
            v_t <- beta_2 * v_{t-1} + (1 - beta_2) * g_t^2             (RMSprop)
            m_hat <- m_t / (1 - beta_1^t)                              (bias corrections)
            v_hat <- v_t / (1 - beta_2^t)
            if amsgrad:
                v_max_t <- max(v_max_{t-1}, v_t);  v_hat <- v_max_t / (1 - beta_2^t)
            theta_t <- theta_{t-1} - gamma * m_hat / (sqrt(v_hat) + eps)

    One set of notes stops its "Adam" section at RMSProp (with AdaGrad's accumulator);
    the rule above is the paper's and torch's. Notes that put eps = 1e-5 or 1e-7 differ
    from torch's default 1e-8 only in that constant. As in torch the bias corrections
    are applied to the step size and to ``sqrt(v_t)``, not stored.

    Args:
        params: iterable of Parameters or of param-group dicts.
        lr (float): gamma (default 0.001).
        betas (tuple of 2 floats): beta_1, beta_2, each in [0, 1) (default (0.9, 0.999)).
        eps (float): added to the denominator (default 1e-8).
        weight_decay (float): L2 penalty lambda added to the gradient (default 0).
        amsgrad (bool): use the running maximum of v (default False).
        l1_decay (float, keyword-only): L1 penalty, a dlcore addition (default 0).

    State per parameter: ``step``, ``exp_avg`` (m), ``exp_avg_sq`` (v), ``max_exp_avg_sq``
    (amsgrad).
    """

    _kernel = "adam_step"

    # buffers a non-empty state must hold (None: always; else the group option enabling it)
    _state_keys = {"step": None, "exp_avg": None, "exp_avg_sq": None, "max_exp_avg_sq": "amsgrad"}

    def __init__(self, params: Params, lr: float = 0.001, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, l1_decay: float = 0) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        l1_decay=l1_decay)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        check_hyper(group["eps"], "eps", nonnegative, "epsilon value")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair of floats, got {betas!r}")
        group["betas"] = tuple(betas)
        check_hyper(betas[0], "betas[0]", _unit_interval, "beta parameter at index 0")
        check_hyper(betas[1], "betas[1]", _unit_interval, "beta parameter at index 1")
        check_hyper(group["weight_decay"], "weight_decay", nonnegative)

    def _update(self, backend, n_threads, p, flat, grad, state, group):
        amsgrad = bool(group["amsgrad"])
        exp_avg = _buffer(state, "exp_avg", p.data)
        exp_avg_sq = _buffer(state, "exp_avg_sq", p.data)
        max_exp_avg_sq = _buffer(state, "max_exp_avg_sq", p.data) if amsgrad else empty(flat)
        state["step"] = state.get("step", 0) + 1
        beta1, beta2 = group["betas"]
        getattr(backend, self._kernel)(
            flat, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, float(group["lr"]), float(beta1), float(beta2),
            float(group["eps"]), float(group["weight_decay"]), amsgrad, float(state["step"]), n_threads,
        )


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay, as ``torch.optim.AdamW``.

    .. code-block:: text

        for t = 1, 2, ...:
            g_t <- grad of the loss at theta_{t-1}      (+ l1_decay * sign(theta_{t-1}))
            theta_{t-1} <- theta_{t-1} * (1 - gamma * lambda)          (decoupled decay)
            m_t, v_t, v_max_t, theta_t: as in Adam, with no lambda in g_t

    With Adam's coupled L2 term, large-gradient coordinates are decayed less (the decay
    is divided by sqrt(v) too); decoupling shrinks every weight by the same factor.

    Args: as :class:`Adam`, but ``weight_decay`` defaults to 0.01.
    """

    _kernel = "adamw_step"

    def __init__(self, params: Params, lr: float = 0.001, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, amsgrad: bool = False, *, l1_decay: float = 0) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         l1_decay=l1_decay)
