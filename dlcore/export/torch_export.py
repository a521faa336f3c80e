"""``to_torch(model)``: the equivalent ``torch.nn`` module, with the same weights.

The translation is layer by layer (a table from dlcore class to torch class); containers
keep their children's names, so the torch model's ``state_dict`` keys equal dlcore's and
the weights are copied by name. Layers torch has no class for (``Residual``,
``GlobalAvgPool2d``, the ``Autoencoder``, the ``VAE``) become the small torch modules
defined in :func:`torch_classes`.
"""
import functools

import numpy as np

from .. import nn
from ..models import generative, networks

__all__ = ["to_torch", "torch_classes"]


def _import_torch():
    try:
        import torch
    except ImportError:
        raise ImportError("dlcore.export.to_torch needs PyTorch: pip install torch") from None
    return torch


@functools.lru_cache(maxsize=None)
def torch_classes():
    """torch counterparts of the dlcore containers torch lacks (defined once torch imports)."""
    torch = _import_torch()

    class Residual(torch.nn.Module):
        """``block(x) + shortcut(x)``; children named as dlcore's (``block``, ``shortcut``)."""

        def __init__(self, block, shortcut=None):
            super().__init__()
            self.block = block
            self.shortcut = shortcut

        def forward(self, x):
            return self.block(x) + (x if self.shortcut is None else self.shortcut(x))

    class GlobalAvgPool2d(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    class Autoencoder(torch.nn.Module):
        def __init__(self, encoder, decoder):
            super().__init__()
            self.encoder, self.decoder = encoder, decoder

        def forward(self, x):
            return self.decoder(self.encoder(x))

    class VAE(torch.nn.Module):
        """dlcore's VAE in torch: ``vae(x)`` is the per-sample negative ELBO (one draw of ε,
        from torch's generator unless ``eps`` is given); autograd gives what dlcore's
        ``backward`` spells out. ``encode``, ``decode``, ``reconstruct`` and ``sample`` as in dlcore."""

        def __init__(self, encoder, fc_mu, fc_logvar, decoder, image_shape):
            super().__init__()
            self.encoder, self.fc_mu, self.fc_logvar, self.decoder = encoder, fc_mu, fc_logvar, decoder
            self.image_shape = tuple(image_shape)

        def encode(self, x):
            h = self.encoder(x)
            return self.fc_mu(h), self.fc_logvar(h)

        def decode(self, z):
            return torch.sigmoid(self.decoder(z)).reshape((-1,) + self.image_shape)

        def reconstruct(self, x):
            return self.decode(self.encode(x)[0])

        def sample(self, n):
            return self.decode(torch.randn(n, self.fc_mu.out_features, dtype=self.fc_mu.weight.dtype))

        def forward(self, x, eps=None):
            mu, logvar = self.encode(x)
            eps = torch.randn_like(mu) if eps is None else eps
            logits = self.decoder(mu + torch.exp(0.5 * logvar) * eps)
            reconstruction = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, x.reshape(len(x), -1), reduction="none").sum(dim=1)
            kl = 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar).sum(dim=1)
            return reconstruction + kl

    return {"Residual": Residual, "GlobalAvgPool2d": GlobalAvgPool2d, "Autoencoder": Autoencoder, "VAE": VAE}


def _conv_options(m):
    # dilation / groups exist only in newer dlcore layers; torch's defaults otherwise.
    return {"dilation": getattr(m, "dilation", 1), "groups": getattr(m, "groups", 1),
            "bias": m.bias is not None}


def _translate(m, path):
    """One dlcore module -> a torch module of the same architecture (weights not yet copied)."""
    torch = _import_torch()
    tnn = torch.nn
    own = torch_classes()
    kind = type(m)
    if kind is nn.Sequential:
        return tnn.Sequential(*[_translate(c, f"{path}.{name}" if path else name)
                                for name, c in m.named_children()])
    if kind is nn.Residual:
        shortcut = None if m.shortcut is None else _translate(m.shortcut, f"{path}.shortcut")
        return own["Residual"](_translate(m.block, f"{path}.block"), shortcut)
    if kind is networks.Autoencoder:
        return own["Autoencoder"](_translate(m.encoder, "encoder"), _translate(m.decoder, "decoder"))
    if kind is generative.VAE:
        return own["VAE"](_translate(m.encoder, "encoder"), _translate(m.fc_mu, "fc_mu"),
                          _translate(m.fc_logvar, "fc_logvar"), _translate(m.decoder, "decoder"), m.image_shape)
    if kind is networks.GlobalAvgPool2d:
        return own["GlobalAvgPool2d"]()
    if kind is nn.Linear:
        return tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    if kind is nn.Conv2d:
        return tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                          **_conv_options(m))
    if kind is nn.ConvTranspose2d:
        return tnn.ConvTranspose2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                                   m.output_padding, **_conv_options(m))
    if kind is nn.MaxPool2d:
        return tnn.MaxPool2d(m.kernel_size, m.stride, m.padding, return_indices=m.return_indices)
    if kind is nn.AvgPool2d:
        return tnn.AvgPool2d(m.kernel_size, m.stride, m.padding)
    if kind in (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d):
        return getattr(tnn, kind.__name__)(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                                           track_running_stats=m.track_running_stats)
    if kind is getattr(nn, "Upsample", None):
        return tnn.Upsample(scale_factor=tuple(float(f) for f in m.scale_factor), mode=m.mode)
    if kind is nn.Flatten:
        return tnn.Flatten(m.start_dim, m.end_dim)
    if kind is nn.Dropout:
        return tnn.Dropout(m.p)
    if kind is nn.LeakyReLU:
        return tnn.LeakyReLU(m.negative_slope)
    if kind in (nn.Softmax, nn.LogSoftmax):
        return getattr(tnn, kind.__name__)(m.dim)
    if kind in (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.SiLU, nn.Identity):
        return getattr(tnn, kind.__name__)()
    raise TypeError(f"to_torch: no torch equivalent known for {kind.__name__} at "
                    f"{path or 'the top level'!r}; supported: Sequential, Residual, Autoencoder, VAE, "
                    "Linear, Conv2d, ConvTranspose2d, MaxPool2d, AvgPool2d, GlobalAvgPool2d, Upsample, "
                    "BatchNorm1d/2d, InstanceNorm2d, Flatten, Dropout and the activations")


def to_torch(model):
    """The ``torch.nn.Module`` equivalent to ``model``, with copies of its weights and buffers.

    Same architecture, same ``state_dict`` keys and values, same dtype, same train/eval
    mode: ``to_torch(model)(torch.from_numpy(x))`` equals ``model(x)`` within float
    rounding. Continue training it with ``torch.optim`` (and torch's distributed tools)
    once a model outgrows one machine.

    Args:
        model: a dlcore ``nn.Module`` built from the supported layers (see the error
            message for the list), e.g. any model from :mod:`dlcore.models`.

    Raises:
        ImportError: torch is not installed.
        TypeError: a layer has no torch equivalent (the message names it and its path).
    """
    torch = _import_torch()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a dlcore nn.Module, got {type(model).__name__}")
    tmodel = _translate(model, "")
    dtype = model.dtype if list(model.parameters()) else np.dtype(np.float32)
    tmodel = tmodel.to({np.dtype(np.float64): torch.float64}.get(np.dtype(dtype), torch.float32))
    state = model.state_dict()
    target = tmodel.state_dict()
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    extra = [k for k in state if k not in target]
    if missing or extra:  # a translation bug, not a user error
        raise RuntimeError(f"to_torch: state_dict keys differ: torch only {missing}, dlcore only {extra}")
    with torch.no_grad():
        for key, value in target.items():
            if key in state and state[key] is not None:
                source = np.ascontiguousarray(state[key]).reshape(tuple(value.shape))
                value.copy_(torch.from_numpy(source).to(value.dtype))
    modes = dict(model.named_modules())
    for name, tm in tmodel.named_modules():
        if name in modes:
            tm.train(modes[name].training)
    return tmodel
