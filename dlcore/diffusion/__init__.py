r"""Denoising diffusion (Ho et al. 2020, "DDPM"; Song et al. 2021, "DDIM"), written out in NumPy.

The forward process destroys data with Gaussian noise in ``T`` small steps,
:math:`q(x_t | x_{t-1}) = \mathcal{N}(\sqrt{1-β_t}\, x_{t-1}, β_t I)`; a network learns
to undo one step at a time. In this package (Ho et al.'s notation, α_t = 1 − β_t,
ᾱ_t = ∏_{s≤t} α_s):

* :func:`linear_schedule` (β from 1e-4 to 0.02, Ho et al.) and :func:`cosine_schedule`
  (Nichol & Dhariwal 2021);
* :class:`GaussianDiffusion`: ``q_sample`` (the closed form
  :math:`q(x_t|x_0) = \mathcal{N}(\sqrt{ᾱ_t} x_0, (1-ᾱ_t) I)`), ``q_posterior`` (the mean
  and variance of :math:`q(x_{t-1}|x_t, x_0)`, eq. 6-7), ``training_loss`` (the
  ε-prediction loss, eq. 14), ``p_sample`` / ``ddpm_sample`` (ancestral sampling,
  Algorithm 2) and ``ddim_sample`` (deterministic DDIM for ``eta=0``);
* :class:`UNet`: a small U-Net denoiser :math:`ε_θ(x_t, t)` with a sinusoidal time
  embedding, built from dlcore.nn layers with an explicit backward.

Indexing: arrays are 0-based, so ``t = 0 .. T-1`` here is the paper's ``t = 1 .. T``
(``alphas_cumprod[0] = ᾱ_1 = 1 − β_1``).
"""
from .schedule import GaussianDiffusion, cosine_schedule, linear_schedule
from .unet import ResBlock, UNet, timestep_embedding

__all__ = ["GaussianDiffusion", "ResBlock", "UNet", "cosine_schedule", "linear_schedule", "timestep_embedding"]
