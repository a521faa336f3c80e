r"""Generative models with explicit backward passes: a variational autoencoder and DCGAN.

VAE (Kingma & Welling 2014; the notes' amortized variational inference). An encoder
gives :math:`q_φ(z|x) = \mathcal{N}(μ_φ(x), \operatorname{diag} σ_φ^2(x))`, a decoder gives
:math:`p_θ(x|z)` (independent Bernoulli pixels), the prior is :math:`p(z) = \mathcal{N}(0, I)`,
and training maximizes the evidence lower bound

.. math:: \log p(x) \ge \text{ELBO} = \mathbb{E}_{q_φ(z|x)}[\log p_θ(x|z)] - D_{KL}(q_φ(z|x) \,\|\, p(z)),

estimated with one draw :math:`z = μ + σ ⊙ ε`, :math:`ε \sim \mathcal{N}(0, I)` (the
reparameterization trick: the randomness sits in ε, so z is a differentiable function of
μ and σ).

DCGAN (Radford et al. 2016). A generator G maps noise z to an image through transposed
convolutions, BatchNorm and ReLU, with a Tanh output; a discriminator D (convolutions and
LeakyReLU(0.2)) outputs a logit for "real". Goodfellow et al.'s minimax game
:math:`\min_G \max_D \mathbb{E}[\log D(x)] + \mathbb{E}[\log(1 - D(G(z)))]` is trained by
alternating one step of D (:math:`-\log D(x) - \log(1 - D(G(z)))`) and one step of G on
the non-saturating loss :math:`-\log D(G(z))`, both as ``BCEWithLogitsLoss``
(:func:`gan_train_step`).
"""
import numpy as np

from .. import _random, nn
from .._checks import as_floating, check_int, describe
from .linear_models import _sigmoid  # overflow-free σ, shared with the logistic models

__all__ = [
    "DCGANDiscriminator",
    "DCGANGenerator",
    "GaussianKL",
    "Reparameterize",
    "VAE",
    "gan_train_step",
]


class Reparameterize(nn.Module):
    r"""The reparameterization trick: :math:`z = μ + σ ⊙ ε` with :math:`σ = e^{\text{logvar}/2}`.

    ``forward(mu, logvar)`` draws :math:`ε \sim \mathcal{N}(0, I)` from dlcore's generator
    (``dlcore.manual_seed``) and keeps it. Backward, with :math:`δ = ∂L/∂z` (ε is a constant):

    .. math:: ∂L/∂μ = δ, \qquad ∂L/∂\text{logvar} = δ ⊙ ε ⊙ \tfrac12 e^{\text{logvar}/2} = \tfrac12\, δ ⊙ (z - μ).

    ``backward`` returns ``(∂L/∂μ, ∂L/∂logvar)``. Predicting log σ² rather than σ keeps σ
    positive without a constraint.
    """

    def forward(self, mu, logvar):
        mu = as_floating(mu, "mu")
        logvar = as_floating(logvar, "logvar", mu.dtype)
        if logvar.shape != mu.shape:
            raise ValueError(f"logvar must have mu's shape {mu.shape}, got {logvar.shape}")
        eps = _random.generator().standard_normal(mu.shape).astype(mu.dtype)
        sigma = np.exp(0.5 * logvar)
        z = mu + sigma * eps
        self._save_for_backward(z, (eps, sigma))
        return z

    def backward(self, grad_output):
        g, (eps, sigma) = self._saved_for_backward(grad_output)
        return g.copy(), g * eps * sigma * 0.5


class GaussianKL(nn.Module):
    r"""Per-sample :math:`D_{KL}(\mathcal{N}(μ, \operatorname{diag} σ^2) \,\|\, \mathcal{N}(0, I))`, in closed form:

    .. math:: \text{KL}_n = \tfrac12 \sum_j \big(μ_{nj}^2 + e^{\text{logvar}_{nj}} - 1 - \text{logvar}_{nj}\big)

    ``forward(mu, logvar)`` returns the ``(N,)`` vector. Backward, with :math:`δ_n = ∂L/∂\text{KL}_n`:

    .. math:: ∂L/∂μ_{nj} = δ_n μ_{nj}, \qquad ∂L/∂\text{logvar}_{nj} = \tfrac12 δ_n (e^{\text{logvar}_{nj}} - 1).

    It is zero exactly when μ = 0 and σ = 1: the term pulls every code toward the prior.
    ``backward`` returns ``(∂L/∂μ, ∂L/∂logvar)``.
    """

    def forward(self, mu, logvar):
        mu = as_floating(mu, "mu")
        logvar = as_floating(logvar, "logvar", mu.dtype)
        if logvar.shape != mu.shape or mu.ndim != 2:
            raise ValueError(f"mu and logvar must both be (N, latent_dim), got {mu.shape} and {logvar.shape}")
        var = np.exp(logvar)
        kl = 0.5 * np.sum(mu * mu + var - 1.0 - logvar, axis=1)
        self._save_for_backward(kl, (mu, var))
        return kl

    def backward(self, grad_output):
        g, (mu, var) = self._saved_for_backward(grad_output)
        g = g[:, None]
        return g * mu, 0.5 * g * (var - 1.0)


def _bce_with_logits(logits, x):
    """Per-element ``-[x log σ(l) + (1-x) log(1-σ(l))]``, stably: ``max(l,0) - l x + log(1+e^{-|l|})``."""
    return np.maximum(logits, 0) - logits * x + np.log1p(np.exp(-np.abs(logits)))


class VAE(nn.Module):
    r"""A fully connected variational autoencoder for images in [0, 1] with Bernoulli pixels.

    Encoder ``Flatten → Linear(D, h) → ReLU`` followed by two heads ``Linear(h, k)`` for
    μ and logvar; decoder ``Linear(k, h) → ReLU → Linear(h, D)`` giving pixel logits ``l``.

    ``vae(x)`` returns the per-sample negative ELBO estimate (one draw of ε), shape ``(N,)``:

    .. math::
        \mathcal{L}_n = \underbrace{\sum_j \text{BCE}(l_{nj}, x_{nj})}_{-\log p_θ(x_n|z_n)}
        + \underbrace{\text{KL}_n}_{D_{KL}(q_φ(z|x_n) \| p(z))}

    so training is ``loss = vae(x).mean()`` then ``vae.backward(np.full(N, 1 / N))``.
    ``last_terms`` holds the batch means of the two terms of the last forward.

    Backward, with :math:`δ_n = ∂L/∂\mathcal{L}_n`:

    1. :math:`∂L/∂l_{nj} = δ_n (σ(l_{nj}) - x_{nj})` → ``decoder.backward`` → :math:`∂L/∂z`;
    2. :class:`Reparameterize` turns it into :math:`∂L/∂μ` and :math:`∂L/∂\text{logvar}`;
    3. :class:`GaussianKL` adds :math:`δ_n μ` and :math:`\tfrac12 δ_n (σ^2 - 1)`;
    4. both heads' input gradients add up at the shared hidden layer → ``encoder.backward``.

    The returned gradient with respect to x also includes x's role as the BCE target
    (:math:`-δ_n l_{nj}`), so ``dlcore.gradcheck(vae, x)`` checks the whole chain.

    Args:
        image_shape (tuple): ``(C, H, W)`` of the images (default ``(1, 28, 28)``).
        hidden (int): width ``h`` of the hidden layers (default 400).
        latent_dim (int): ``k``, the size of z (default 16).
        dtype: ``np.float32`` (default) or ``np.float64``.

    Methods: ``encode(x) -> (mu, logvar)``, ``decode(z)`` (pixel probabilities, image-shaped),
    ``reconstruct(x)`` (decode the posterior mean μ), ``sample(n, rng=None)`` (decode
    z ~ N(0, I)), ``elbo(x)`` (the per-sample ELBO, i.e. ``-vae(x)``; nats).
    """

    def __init__(self, image_shape=(1, 28, 28), hidden=400, latent_dim=16, dtype=np.float32):
        super().__init__()
        if not isinstance(image_shape, (tuple, list)) or len(image_shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {image_shape!r}")
        self.image_shape = tuple(check_int(s, "image_shape[i]", 1) for s in image_shape)
        self.hidden = check_int(hidden, "hidden", 1)
        self.latent_dim = check_int(latent_dim, "latent_dim", 1)
        D = int(np.prod(self.image_shape))
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(D, hidden, dtype=dtype), nn.ReLU())
        self.fc_mu = nn.Linear(hidden, latent_dim, dtype=dtype)
        self.fc_logvar = nn.Linear(hidden, latent_dim, dtype=dtype)
        self.reparameterize = Reparameterize()
        self.kl = GaussianKL()
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden, dtype=dtype), nn.ReLU(),
                                     nn.Linear(hidden, D, dtype=dtype))
        self.last_terms = None

    def _images(self, x):
        x = self._as_input(x, "x")
        if x.shape[1:] != self.image_shape:
            raise ValueError(f"x must have shape (N, {', '.join(map(str, self.image_shape))}), got {x.shape}")
        return x

    def encode(self, x):
        """``(mu, logvar)`` of q(z|x), each ``(N, latent_dim)``."""
        h = self.encoder(self._images(x))
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z):
        """Pixel probabilities σ(decoder(z)), shaped as images ``(N, C, H, W)``.

        Like ``reconstruct`` and ``sample``, this runs the decoder's layers, which replaces
        what ``vae(x)`` saved for ``backward``: call ``backward`` first.
        """
        z = self._as_input(z, "z")
        logits = self.decoder(z)
        return _sigmoid(logits).reshape((-1,) + self.image_shape)

    def forward(self, x):
        x = self._images(x)
        target = x.reshape(len(x), -1)
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        logits = self.decoder(z)
        rec = _bce_with_logits(logits, target).sum(axis=1)
        kl = self.kl(mu, logvar)
        self.last_terms = {"reconstruction": float(rec.mean()), "kl": float(kl.mean())}
        loss = rec + kl
        self._save_for_backward(loss, (x.shape, target, logits))
        return loss

    def backward(self, grad_output):
        g, (x_shape, target, logits) = self._saved_for_backward(grad_output)
        gcol = g[:, None]
        grad_logits = gcol * (_sigmoid(logits) - target)
        grad_mu, grad_logvar = self.reparameterize.backward(self.decoder.backward(grad_logits))
        kl_mu, kl_logvar = self.kl.backward(g)
        grad_h = self.fc_mu.backward(grad_mu + kl_mu) + self.fc_logvar.backward(grad_logvar + kl_logvar)
        grad_x = self.encoder.backward(grad_h)
        return grad_x - (gcol * logits).reshape(x_shape)  # x is also the BCE target

    def elbo(self, x):
        """The per-sample ELBO estimate (nats, one draw of ε): ``-vae(x)``."""
        return -self.forward(x)

    def reconstruct(self, x):
        """Decode the posterior mean: ``decode(mu(x))``, images in [0, 1]."""
        mu, _ = self.encode(x)
        return self.decode(mu)

    def sample(self, n, rng=None):
        """``n`` images ``decode(z)``, z ~ N(0, I) (from ``rng`` or dlcore's generator)."""
        n = check_int(n, "n", 1)
        rng = _random.generator() if rng is None else rng
        z = rng.standard_normal((n, self.latent_dim)).astype(self.dtype)
        return self.decode(z)

    def extra_repr(self):
        return f"image_shape={self.image_shape}, hidden={self.hidden}, latent_dim={self.latent_dim}"


def DCGANGenerator(latent_dim=64, channels=32, dtype=np.float32):
    """DCGAN's generator for 28×28 images: z ``(N, latent_dim, 1, 1)`` → image ``(N, 1, 28, 28)`` in [-1, 1].

    ::

        ConvTranspose2d(latent_dim, 2c, 7)          → (2c, 7, 7)    BatchNorm2d, ReLU
        ConvTranspose2d(2c, c, 4, stride 2, pad 1)  → (c, 14, 14)   BatchNorm2d, ReLU
        ConvTranspose2d(c, 1, 4, stride 2, pad 1)   → (1, 28, 28)   Tanh

    (Radford et al.'s recipe: no pooling or dense layers, BatchNorm except at the output,
    ReLU inside, Tanh out; weights N(0, 0.02), BatchNorm scales N(1, 0.02).)
    """
    latent_dim = check_int(latent_dim, "latent_dim", 1)
    c = check_int(channels, "channels", 1)
    model = nn.Sequential(
        nn.ConvTranspose2d(latent_dim, 2 * c, 7, bias=False, dtype=dtype), nn.BatchNorm2d(2 * c, dtype=dtype), nn.ReLU(),
        nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1, bias=False, dtype=dtype), nn.BatchNorm2d(c, dtype=dtype),
        nn.ReLU(),
        nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1, dtype=dtype), nn.Tanh(),
    )
    return _dcgan_init(model)


def DCGANDiscriminator(channels=32, dtype=np.float32):
    """DCGAN's discriminator for 28×28 images: ``(N, 1, 28, 28)`` → one logit per image ``(N, 1)``.

    ::

        Conv2d(1, c, 4, stride 2, pad 1)    → (c, 14, 14)   LeakyReLU(0.2)
        Conv2d(c, 2c, 4, stride 2, pad 1)   → (2c, 7, 7)    BatchNorm2d, LeakyReLU(0.2)
        Conv2d(2c, 1, 7)                    → (1, 1, 1)     Flatten → logit

    The logit goes to ``BCEWithLogitsLoss`` (sigmoid inside, numerically stable).
    """
    c = check_int(channels, "channels", 1)
    model = nn.Sequential(
        nn.Conv2d(1, c, 4, stride=2, padding=1, dtype=dtype), nn.LeakyReLU(0.2),
        nn.Conv2d(c, 2 * c, 4, stride=2, padding=1, bias=False, dtype=dtype), nn.BatchNorm2d(2 * c, dtype=dtype),
        nn.LeakyReLU(0.2),
        nn.Conv2d(2 * c, 1, 7, dtype=dtype), nn.Flatten(),
    )
    return _dcgan_init(model)


def _dcgan_init(model):
    """Radford et al.: conv weights ~ N(0, 0.02); BatchNorm weight ~ N(1, 0.02), bias 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return model


def gan_train_step(generator, discriminator, g_optimizer, d_optimizer, real, latent_dim, rng=None,
                   criterion=None):
    r"""One round of the GAN game: a discriminator step, then a generator step.

    1. ``fake = G(z)``, z ~ N(0, I) of shape ``(N, latent_dim, 1, 1)``.
    2. D step: :math:`L_D = \text{BCE}(D(x), 1) + \text{BCE}(D(\text{fake}), 0)` — two forward /
       backward passes (real and fake batches separately, so each BatchNorm batch is pure),
       then ``d_optimizer.step()``. ``fake`` is a plain array here: no gradient reaches G.
    3. G step (non-saturating): :math:`L_G = \text{BCE}(D(\text{fake}), 1) = -\log σ(D(G(z)))`;
       its gradient flows back through D (whose ``.grad`` it also fills — cleared at the next
       D step, never applied) into ``generator.backward``, then ``g_optimizer.step()``.

    Maximizing :math:`\log D(G(z))` instead of minimizing :math:`\log(1 - D(G(z)))` has the
    same fixed point but a strong gradient early on, when D easily rejects the fakes.

    Args:
        real: a batch of real images in [-1, 1] (G's Tanh range), ``(N, 1, 28, 28)``.
        rng: ``np.random.Generator`` for z (dlcore's generator when None).

    Returns:
        ``(d_loss, g_loss, d_real, d_fake)``: the two losses and the mean D probabilities
        σ(D(x)) and σ(D(G(z))) before the D step (0.5 each at equilibrium).
    """
    criterion = nn.BCEWithLogitsLoss() if criterion is None else criterion
    real = as_floating(real, "real")
    if real.ndim != 4:
        raise ValueError(f"real must be a batch of images (N, C, H, W), got shape {real.shape}")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator or None, got {describe(rng)}")
    rng = _random.generator() if rng is None else rng
    n = len(real)
    ones, zeros = np.ones((n, 1), real.dtype), np.zeros((n, 1), real.dtype)
    generator.train()
    discriminator.train()
    z = rng.standard_normal((n, latent_dim, 1, 1)).astype(real.dtype)
    fake = generator(z)

    d_optimizer.zero_grad()
    logits_real = discriminator(real)
    loss_real = criterion(logits_real, ones)
    discriminator.backward(criterion.backward())
    logits_fake = discriminator(fake)
    loss_fake = criterion(logits_fake, zeros)
    discriminator.backward(criterion.backward())
    d_optimizer.step()

    g_optimizer.zero_grad()
    g_loss = criterion(discriminator(fake), ones)
    generator.backward(discriminator.backward(criterion.backward()))
    g_optimizer.step()
    sig = lambda v: float(np.mean(_sigmoid(v)))  # noqa: E731
    return loss_real + loss_fake, g_loss, sig(logits_real), sig(logits_fake)
