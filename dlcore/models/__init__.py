"""Models: classic single-layer learners (own NumPy learning rules) and network builders.

* :class:`Perceptron`, :class:`Adaline`, :class:`LogisticRegression`,
  :class:`SoftmaxRegression` -- ``fit(X, y)`` / ``predict(X)`` (/ ``predict_proba``).
* :func:`MLP`, :func:`LeNet5`, :class:`Autoencoder`, :func:`ResNet` -- ``nn.Module`` objects to
  train with :class:`dlcore.train.Trainer`.
* Generative models: :class:`VAE` (with :class:`Reparameterize`, :class:`GaussianKL`),
  :func:`DCGANGenerator`, :func:`DCGANDiscriminator` and :func:`gan_train_step`; the
  diffusion model lives in :mod:`dlcore.diffusion`.
"""
from .linear_models import Adaline, LogisticRegression, Perceptron, SoftmaxRegression

__all__ = ["Adaline", "LogisticRegression", "Perceptron", "SoftmaxRegression"]

try:  # the builders need dlcore.nn's layers
    from .networks import MLP, Autoencoder, GlobalAvgPool2d, LeNet5, ResNet  # noqa: F401

    __all__ += ["Autoencoder", "GlobalAvgPool2d", "LeNet5", "MLP", "ResNet"]
except ImportError:  # pragma: no cover - only while the layers are missing
    pass

try:  # generative models: VAE and DCGAN (see dlcore.models.generative; diffusion is dlcore.diffusion)
    from .generative import (  # noqa: F401
        VAE, DCGANDiscriminator, DCGANGenerator, GaussianKL, Reparameterize, gan_train_step)

    __all__ += ["DCGANDiscriminator", "DCGANGenerator", "GaussianKL", "Reparameterize", "VAE", "gan_train_step"]
except ImportError:  # pragma: no cover - only while the layers are missing
    pass
