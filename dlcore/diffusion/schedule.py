r"""Noise schedules, the forward process, its posterior, the ε-prediction loss and the samplers.

Notation (Ho et al. 2020): :math:`α_t = 1 - β_t`, :math:`ᾱ_t = \prod_{s \le t} α_s`.

* Forward process in closed form (eq. 4):
  :math:`x_t = \sqrt{ᾱ_t}\, x_0 + \sqrt{1 - ᾱ_t}\, ε`, :math:`ε \sim \mathcal{N}(0, I)`.
* Posterior (eq. 6-7): :math:`q(x_{t-1} | x_t, x_0) = \mathcal{N}(\tilde μ_t, \tilde β_t I)` with

  .. math::
      \tilde μ_t = \frac{\sqrt{ᾱ_{t-1}}\, β_t}{1 - ᾱ_t} x_0 + \frac{\sqrt{α_t}(1 - ᾱ_{t-1})}{1 - ᾱ_t} x_t,
      \qquad \tilde β_t = \frac{1 - ᾱ_{t-1}}{1 - ᾱ_t} β_t .

* The network predicts the noise, :math:`ε_θ(x_t, t)`; the loss is
  :math:`\lVert ε - ε_θ(\sqrt{ᾱ_t} x_0 + \sqrt{1-ᾱ_t} ε, t) \rVert^2` (eq. 14, "L_simple").
* A reverse step plugs the predicted :math:`\hat x_0 = (x_t - \sqrt{1-ᾱ_t}\, ε_θ) / \sqrt{ᾱ_t}`
  into :math:`\tilde μ_t` (which equals eq. 11's
  :math:`\frac{1}{\sqrt{α_t}}(x_t - \frac{β_t}{\sqrt{1-ᾱ_t}} ε_θ)`) and adds
  :math:`\sqrt{\tilde β_t}\, z`. The samplers clip :math:`\hat x_0` to [-1, 1] by default
  (``clip=1.0``, as Ho et al.'s code does for data in that range); then the step is no
  longer eq. 11 exactly, and ``clip=None`` gives eq. 11.
* DDIM (Song et al. 2021, eq. 12), from step t to an earlier step s:
  :math:`x_s = \sqrt{ᾱ_s}\, \hat x_0 + \sqrt{1 - ᾱ_s - σ^2}\, ε_θ + σ z` with
  :math:`σ = η \sqrt{(1-ᾱ_s)/(1-ᾱ_t)} \sqrt{1 - ᾱ_t/ᾱ_s}`; η = 0 is deterministic.

Arrays are 0-based: index ``t`` here is the paper's ``t + 1``; "before step 0" is
:math:`ᾱ = 1` (clean data).
"""
import math

import numpy as np

from .. import _random
from .._checks import as_floating, check_int, check_number, describe

__all__ = ["GaussianDiffusion", "cosine_schedule", "linear_schedule"]


def linear_schedule(T=1000, beta_start=1e-4, beta_end=0.02):
    """Ho et al.'s schedule: ``T`` values of β evenly spaced from ``beta_start`` to ``beta_end``.

    Returns float64 ``(T,)``. With the defaults, ᾱ_T ≈ 4e-5, so x_T is (very nearly) pure noise.
    """
    T = check_int(T, "T", minimum=1)
    # β = 1 would make ᾱ_t = 0 and the posterior variance 0/0: (0, 1) open, as GaussianDiffusion checks
    beta_start = check_number(beta_start, "beta_start", minimum=0.0, maximum=1.0, min_open=True, max_open=True)
    beta_end = check_number(beta_end, "beta_end", minimum=0.0, maximum=1.0, min_open=True, max_open=True)
    return np.linspace(beta_start, beta_end, T, dtype=np.float64)


def cosine_schedule(T=1000, s=0.008, max_beta=0.999):
    r"""Nichol & Dhariwal's schedule: :math:`ᾱ_t = f(t)/f(0)`, :math:`f(t) = \cos^2\!\big(\frac{t/T + s}{1 + s}\frac{π}{2}\big)`.

    :math:`β_t = \min(1 - ᾱ_t / ᾱ_{t-1}, \text{max\_beta})` for t = 1..T; the clip avoids the
    singularity at t = T. Returns float64 ``(T,)``. ᾱ falls slowly at both ends, so fewer
    steps are wasted on nearly-clean or nearly-pure-noise images than with the linear one.
    """
    T = check_int(T, "T", minimum=1)
    s = check_number(s, "s", minimum=0.0)
    max_beta = check_number(max_beta, "max_beta", minimum=0.0, maximum=1.0, min_open=True, max_open=True)
    steps = np.arange(T + 1, dtype=np.float64) / T
    f = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta)


class GaussianDiffusion:
    r"""A diffusion process with a given β schedule: forward noising, posterior and samplers.

    Args:
        betas: the schedule, a 1-D array of ``T`` values in (0, 1) (``linear_schedule(1000)``
            by default). The derived quantities are kept in float64:
            ``alphas`` (α_t), ``alphas_cumprod`` (ᾱ_t), ``alphas_cumprod_prev`` (ᾱ_{t-1},
            1 for the first step), ``posterior_variance`` (β̃_t) and the two posterior-mean
            coefficients ``posterior_mean_coef1`` (of x_0) and ``posterior_mean_coef2`` (of x_t).

    Models are called as ``model(x_t, t)`` with ``t`` an int64 array ``(N,)`` and return
    :math:`ε_θ`, the predicted noise, of x_t's shape. Random draws use ``rng`` (a
    ``np.random.Generator``) when given, else dlcore's generator (``dlcore.manual_seed``).
    """

    def __init__(self, betas=None):
        betas = linear_schedule() if betas is None else np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0:
            raise ValueError(f"betas must be a non-empty 1-D array, got shape {betas.shape}")
        if not np.all((betas > 0) & (betas < 1)):
            raise ValueError("betas must all lie in (0, 1)")
        self.betas = betas
        self.T = betas.size
        self.alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(self.alphas)
        self.alphas_cumprod_prev = np.concatenate([[1.0], self.alphas_cumprod[:-1]])
        ab, ab_prev = self.alphas_cumprod, self.alphas_cumprod_prev
        self.posterior_variance = betas * (1.0 - ab_prev) / (1.0 - ab)
        self.posterior_mean_coef1 = betas * np.sqrt(ab_prev) / (1.0 - ab)
        self.posterior_mean_coef2 = np.sqrt(self.alphas) * (1.0 - ab_prev) / (1.0 - ab)

    def __repr__(self):
        return f"GaussianDiffusion(T={self.T}, beta_1={self.betas[0]:.3g}, beta_T={self.betas[-1]:.3g})"

    # ---- helpers ------------------------------------------------------------------------
    def _t(self, t, n):
        """``t`` as an int64 array of shape (n,), each in [0, T)."""
        t = np.asarray(t)
        if t.dtype.kind not in "iu":
            raise TypeError(f"t must hold integer time steps, got dtype {t.dtype}")
        t = np.broadcast_to(t, (n,)) if t.ndim == 0 else t
        if t.shape != (n,):
            raise ValueError(f"t must be a scalar or have shape ({n},) (one step per sample), got {t.shape}")
        if t.size and (t.min() < 0 or t.max() >= self.T):
            raise ValueError(f"t must lie in [0, T={self.T}), got values in [{t.min()}, {t.max()}]")
        return t.astype(np.int64)

    @staticmethod
    def _per_sample(values, t, x):
        """``values[t]`` shaped to broadcast over a batch like ``x`` (N, 1, 1, ...), in x's dtype."""
        return values[t].reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)

    @staticmethod
    def _rng(rng):
        if rng is None:
            return _random.generator()
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator or None, got {describe(rng)}")
        return rng

    # ---- forward process ----------------------------------------------------------------
    def q_sample(self, x0, t, noise=None, rng=None):
        r""":math:`x_t = \sqrt{ᾱ_t}\, x_0 + \sqrt{1-ᾱ_t}\, ε`: a draw from q(x_t | x_0) in one step.

        ``t`` is an int or an int array ``(N,)``; ``noise`` (ε, x0's shape) is drawn when None.
        """
        x0 = as_floating(x0, "x0")
        t = self._t(t, x0.shape[0])
        if noise is None:
            noise = self._rng(rng).standard_normal(x0.shape).astype(x0.dtype)
        noise = as_floating(noise, "noise", x0.dtype)
        if noise.shape != x0.shape:
            raise ValueError(f"noise must have x0's shape {x0.shape}, got {noise.shape}")
        ab = self.alphas_cumprod
        return self._per_sample(np.sqrt(ab), t, x0) * x0 + self._per_sample(np.sqrt(1 - ab), t, x0) * noise

    def q_mean_variance(self, x0, t):
        r"""Mean :math:`\sqrt{ᾱ_t} x_0` and variance :math:`1 - ᾱ_t` (per sample, broadcastable) of q(x_t | x_0)."""
        x0 = as_floating(x0, "x0")
        t = self._t(t, x0.shape[0])
        return (self._per_sample(np.sqrt(self.alphas_cumprod), t, x0) * x0,
                self._per_sample(1 - self.alphas_cumprod, t, x0))

    def q_posterior(self, x0, xt, t):
        r"""Mean :math:`\tilde μ_t(x_t, x_0)` and variance :math:`\tilde β_t` of q(x_{t-1} | x_t, x_0) (eq. 6-7).

        At ``t = 0`` the variance is 0 and the mean is ``x0`` (the step to clean data).
        """
        x0 = as_floating(x0, "x0")
        xt = as_floating(xt, "xt", x0.dtype)
        if xt.shape != x0.shape:
            raise ValueError(f"xt must have x0's shape {x0.shape}, got {xt.shape}")
        t = self._t(t, x0.shape[0])
        mean = self._per_sample(self.posterior_mean_coef1, t, x0) * x0 + \
            self._per_sample(self.posterior_mean_coef2, t, x0) * xt
        return mean, self._per_sample(self.posterior_variance, t, x0)

    def predict_x0(self, xt, t, eps):
        r""":math:`\hat x_0 = (x_t - \sqrt{1-ᾱ_t}\, ε) / \sqrt{ᾱ_t}` (the forward formula solved for x_0)."""
        xt = as_floating(xt, "xt")
        t = self._t(t, xt.shape[0])
        eps = as_floating(eps, "eps", xt.dtype)
        ab = self.alphas_cumprod
        return (xt - self._per_sample(np.sqrt(1 - ab), t, xt) * eps) / self._per_sample(np.sqrt(ab), t, xt)

    # ---- training -----------------------------------------------------------------------
    def training_loss(self, model, x0, rng=None, criterion=None):
        r"""One ε-prediction step: draw t ~ U{0..T-1} and ε, compute :math:`\lVert ε_θ(x_t, t) - ε \rVert^2`
        (mean over elements) and backpropagate it into the model's ``.grad``.

        Returns the loss (a float). The caller zeroes the gradients before and steps the
        optimizer after, as with any other loss.
        """
        from ..nn import MSELoss

        x0 = as_floating(x0, "x0")
        rng = self._rng(rng)
        n = x0.shape[0]
        t = rng.integers(0, self.T, size=n)
        eps = rng.standard_normal(x0.shape).astype(x0.dtype)
        xt = self.q_sample(x0, t, eps)
        criterion = MSELoss() if criterion is None else criterion
        loss = criterion(model(xt, t), eps)
        model.backward(criterion.backward())
        return loss

    # ---- reverse process ----------------------------------------------------------------
    def p_mean_variance(self, eps, xt, t, clip=None):
        r"""The reverse step's mean and variance from a noise prediction ``eps``:
        :math:`\tilde μ_t(x_t, \hat x_0)` with :math:`\hat x_0` from :meth:`predict_x0`
        (clipped to ``[-clip, clip]`` when ``clip`` is a number), and :math:`\tilde β_t`.
        With the true ε (and no clipping) this is exactly the posterior mean of eq. 7."""
        x0_hat = self.predict_x0(xt, t, eps)
        if clip is not None:
            x0_hat = np.clip(x0_hat, -clip, clip)
        return self.q_posterior(x0_hat, xt, t)

    def p_sample(self, model, xt, t, rng=None, clip=1.0):
        r"""One ancestral step x_t → x_{t-1} (Algorithm 2, with σ_t² = β̃_t; no noise at t = 0).

        ``t`` is an int (the same step for the whole batch). Returns x_{t-1}.
        """
        xt = as_floating(xt, "xt")
        t = check_int(t, "t", minimum=0)
        ts = self._t(np.full(xt.shape[0], t), xt.shape[0])
        mean, var = self.p_mean_variance(model(xt, ts), xt, ts, clip)
        if t == 0:
            return mean
        z = self._rng(rng).standard_normal(xt.shape).astype(xt.dtype)
        return mean + np.sqrt(var) * z

    def ddpm_sample(self, model, shape, rng=None, clip=1.0, x_T=None, keep=()):
        """Ancestral sampling: x_T ~ N(0, I), then ``p_sample`` for t = T-1 .. 0 (T model calls).

        Returns x_0, or ``(x_0, {k: x_k})`` when ``keep`` lists steps to record, numbered as
        in the paper: ``k = T`` is the starting noise, ``k = 0`` the final sample (the step
        ``p_sample(·, t)`` with 0-based ``t`` produces the paper's x_t).
        """
        rng = self._rng(rng)
        x = rng.standard_normal(tuple(shape)).astype(np.float32) if x_T is None else as_floating(x_T, "x_T")
        record = {}
        keep = set(int(k) for k in keep)
        if self.T in keep:
            record[self.T] = x.copy()
        for t in range(self.T - 1, -1, -1):
            x = self.p_sample(model, x, t, rng=rng, clip=clip)
            if t in keep:
                record[t] = x.copy()
        return (x, record) if keep else x

    def ddim_sample(self, model, shape, steps=50, eta=0.0, rng=None, clip=1.0, x_T=None):
        r"""DDIM sampling on ``steps`` evenly spaced steps of the schedule (Song et al. 2021).

        For consecutive steps t > s (s = −1 means clean data, ᾱ = 1):
        :math:`x_s = \sqrt{ᾱ_s}\, \hat x_0 + \sqrt{1 - ᾱ_s - σ^2}\, ε_θ + σ z`.
        With ``eta=0`` (σ = 0) the map from x_T to x_0 is deterministic; ``eta=1`` with all
        T steps is DDPM with σ_t² = β̃_t. ``clip`` bounds :math:`\hat x_0` (None: no clipping),
        as the data lie in [-1, 1]. Returns x_0.
        """
        steps = check_int(steps, "steps", minimum=1)
        if steps > self.T:
            raise ValueError(f"steps must be <= T={self.T}, got {steps}")
        eta = check_number(eta, "eta", minimum=0.0)
        rng = self._rng(rng)
        x = rng.standard_normal(tuple(shape)).astype(np.float32) if x_T is None else as_floating(x_T, "x_T")
        n = x.shape[0]
        # evenly spaced from T-1 down (so one step starts from pure noise at t = T-1)
        ts = np.unique(np.linspace(self.T - 1, 0, steps).round().astype(np.int64))[::-1]
        for i, t in enumerate(ts):
            s = ts[i + 1] if i + 1 < len(ts) else -1
            ab_t = self.alphas_cumprod[t]
            ab_s = self.alphas_cumprod[s] if s >= 0 else 1.0
            eps = as_floating(model(x, np.full(n, t, dtype=np.int64)), "model output", x.dtype)
            x0_hat = self.predict_x0(x, np.full(n, t, dtype=np.int64), eps)
            if clip is not None:
                x0_hat = np.clip(x0_hat, -clip, clip)
                # keep ε consistent with the clipped x̂_0, so x_s stays on the same line
                eps = (x - math.sqrt(ab_t) * x0_hat) / math.sqrt(1 - ab_t)
            sigma = eta * math.sqrt((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s))
            x = (math.sqrt(ab_s) * x0_hat + math.sqrt(max(1 - ab_s - sigma ** 2, 0.0)) * eps).astype(x.dtype)
            if sigma > 0:
                x = x + (sigma * rng.standard_normal(x.shape)).astype(x.dtype)
        return x
