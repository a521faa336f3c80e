"""Network builders: ready-made ``nn.Module`` objects for the classic architectures.

Every builder returns an ordinary :class:`dlcore.nn.Module` (mostly an ``nn.Sequential``),
so ``print(model)``, ``model.summary(shape)``, ``state_dict()`` and the training loop in
:mod:`dlcore.train` work on it like on a hand-built one.
"""
import numpy as np

from .. import nn
from .._checks import check_int, check_number, describe

__all__ = ["Autoencoder", "GlobalAvgPool2d", "LeNet5", "MLP", "ResNet"]

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
}


def _activation(name, arg="activation"):
    if name is None:
        return None
    if isinstance(name, str) and name.lower() in _ACTIVATIONS:
        return _ACTIVATIONS[name.lower()]()
    if isinstance(name, type) and issubclass(name, nn.Module):
        return name()
    raise ValueError(f"{arg} must be one of {sorted(_ACTIVATIONS)} or None, got {name!r}")


def _check_sizes(sizes, minimum=2):
    try:
        sizes = [check_int(s, "sizes[i]", 1) for s in sizes]
    except TypeError:
        raise TypeError(f"sizes must be a sequence of ints, got {describe(sizes)}") from None
    if len(sizes) < minimum:
        raise ValueError(f"sizes needs at least {minimum} layer widths, got {sizes}")
    return sizes


def MLP(sizes, activation="relu", dropout=0.0, batch_norm=False, flatten=True, dtype=np.float32):
    """A multilayer perceptron (fully connected network) as an ``nn.Sequential``.

    ``sizes = [d_0, d_1, ..., d_L]`` gives L ``Linear`` layers ``d_{l-1} -> d_l``; between
    them (not after the last, which outputs logits) come ``[BatchNorm1d,] activation
    [, Dropout]``. With ``flatten=True`` the first module is ``Flatten()``, so images
    ``(N, C, H, W)`` can be fed directly (it is a no-op on ``(N, d_0)``); the Linear
    layers are then children ``"1"``, ``"3"``, ...

    Args:
        sizes: layer widths, input first, e.g. ``[64, 128, 10]``.
        activation: ``"relu"`` (default), ``"leaky_relu"``, ``"tanh"``, ``"sigmoid"``, ``"silu"``.
        dropout (float): drop probability after each hidden activation (0 = none).
        batch_norm (bool): ``BatchNorm1d`` after each hidden Linear, before the activation.
        flatten (bool): start with ``Flatten()``.

    Example::

        >>> model = MLP([64, 32, 10])
        >>> model(np.zeros((5, 1, 8, 8), np.float32)).shape
        (5, 10)
    """
    sizes = _check_sizes(sizes)
    dropout = check_number(dropout, "dropout", 0.0, 1.0)
    _activation(activation)  # validate early
    layers = [nn.Flatten()] if flatten else []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(d_in, d_out, dtype=dtype))
        if i < len(sizes) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(d_out, dtype=dtype))
            layers.append(_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def LeNet5(in_channels=1, num_classes=10, dtype=np.float32):
    """LeNet-5 (LeCun et al., 1998) in its modern form: ReLU and max pooling.

    ::

        (N, C, 28, 28) -Conv2d(C, 6, 5, padding=2)-ReLU-MaxPool2d(2)-> (N, 6, 14, 14)
                       -Conv2d(6, 16, 5)-ReLU-MaxPool2d(2)->            (N, 16, 5, 5)
                       -Flatten-> (N, 400) -Linear(400, 120)-ReLU-Linear(120, 84)-ReLU
                       -Linear(84, num_classes)->                        (N, num_classes)

    61,706 parameters for one input channel and 10 classes. The input must be 28x28
    (32x32 inputs would need ``Linear(576, 120)``). The original used tanh/sigmoid
    units, average ("subsampling") pooling and a partially connected C3 layer; the version
    here is the one the notes and most courses use.
    """
    in_channels = check_int(in_channels, "in_channels", 1)
    num_classes = check_int(num_classes, "num_classes", 1)
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=2, dtype=dtype),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, dtype=dtype),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120, dtype=dtype),
        nn.ReLU(),
        nn.Linear(120, 84, dtype=dtype),
        nn.ReLU(),
        nn.Linear(84, num_classes, dtype=dtype),
    )


class Autoencoder(nn.Module):
    """A fully connected autoencoder: ``x' = decoder(encoder(x))``, trained to give ``x' ~ x``.

    ``sizes = [D, h_1, ..., k]`` describes the encoder ``D -> ... -> k`` (``k`` the
    bottleneck, ``k < D`` for an undercomplete code); the decoder mirrors it,
    ``k -> ... -> D``. Hidden layers use ``activation``; the code layer is linear; the
    output uses ``out_activation`` (``"sigmoid"`` for data in [0, 1], None for linear).

    With ``activation=None`` and ``out_activation=None`` and MSE loss, the optimal
    autoencoder spans the same subspace as the top-``k`` principal components (PCA),
    but without PCA's orthogonality: see ``examples/autoencoder_vs_pca.py``.

    Input ``(N, D)`` or images (flattened by the encoder's first ``Flatten``); the output
    is ``(N, D)``, so compare it with ``x.reshape(N, -1)``.

    Children: ``encoder`` and ``decoder`` (both ``nn.Sequential``); ``encode(x)`` and
    ``decode(z)`` run one half. Backward is the chain rule through both halves:
    ``encoder.backward(decoder.backward(grad))``.
    """

    def __init__(self, sizes, activation="relu", out_activation="sigmoid", dtype=np.float32):
        super().__init__()
        sizes = _check_sizes(sizes)
        _activation(activation)
        _activation(out_activation, "out_activation")
        enc = [nn.Flatten()]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            enc.append(nn.Linear(a, b, dtype=dtype))
            if i < len(sizes) - 2 and activation is not None:
                enc.append(_activation(activation))
        rev = sizes[::-1]
        dec = []
        for i, (a, b) in enumerate(zip(rev[:-1], rev[1:])):
            dec.append(nn.Linear(a, b, dtype=dtype))
            if i < len(rev) - 2 and activation is not None:
                dec.append(_activation(activation))
        if out_activation is not None:
            dec.append(_activation(out_activation, "out_activation"))
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.sizes = sizes

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x):
        return self.decoder(self.encoder(x))

    def backward(self, grad_output):
        return self.encoder.backward(self.decoder.backward(grad_output))

    def extra_repr(self):
        return f"sizes={self.sizes}"


class GlobalAvgPool2d(nn.Module):
    """Average over each whole feature map: ``(N, C, H, W) -> (N, C)``.

    Forward: ``y[n, c] = (1 / (H W)) sum_{i,j} x[n, c, i, j]``.
    Backward: ``dL/dx[n, c, i, j] = dL/dy[n, c] / (H W)`` (the gradient spread evenly).
    """

    def forward(self, x):
        x = self._as_input(x)
        if x.ndim != 4:
            raise ValueError(f"GlobalAvgPool2d input must be 4-D (N, C, H, W), got shape {x.shape}")
        out = x.mean(axis=(2, 3))
        self._save_for_backward(out, x.shape)
        return out

    def backward(self, grad_output):
        grad, shape = self._saved_for_backward(grad_output)
        scale = 1.0 / (shape[2] * shape[3])
        return np.broadcast_to((grad * scale)[:, :, None, None], shape).copy()


def _basic_block(c_in, c_out, stride, dtype):
    block = nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False, dtype=dtype),
        nn.BatchNorm2d(c_out, dtype=dtype),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False, dtype=dtype),
        nn.BatchNorm2d(c_out, dtype=dtype),
    )
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False, dtype=dtype),
            nn.BatchNorm2d(c_out, dtype=dtype),
        )
    return nn.Residual(block, shortcut)


def ResNet(in_channels=1, num_classes=10, channels=(16, 32), blocks=(1, 1), dtype=np.float32):
    """A small residual network (He et al., 2016) from ``nn.Residual`` basic blocks.

    ::

        stem:   Conv2d(in, c_0, 3, padding=1) - BatchNorm2d - ReLU
        stage s (channels c_s, blocks[s] blocks; the first block of every stage after the
                 first halves H and W with stride 2 and a 1x1 Conv+BN shortcut):
                Residual(Conv3x3 - BN - ReLU - Conv3x3 - BN, shortcut) - ReLU
        head:   GlobalAvgPool2d - Linear(c_last, num_classes)

    Works for any input size (global pooling). The default has about 24k parameters and
    trains on the 28x28 digits in a few epochs.
    """
    in_channels = check_int(in_channels, "in_channels", 1)
    num_classes = check_int(num_classes, "num_classes", 1)
    channels = _check_sizes(channels, 1)
    blocks = _check_sizes(blocks, 1)
    if len(blocks) != len(channels):
        raise ValueError(f"blocks must give one count per stage ({len(channels)}), got {blocks}")
    layers = [
        nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False, dtype=dtype),
        nn.BatchNorm2d(channels[0], dtype=dtype),
        nn.ReLU(),
    ]
    c_prev = channels[0]
    for s, (c, count) in enumerate(zip(channels, blocks)):
        for b in range(count):
            stride = 2 if (s > 0 and b == 0) else 1
            layers.append(_basic_block(c_prev, c, stride, dtype))
            layers.append(nn.ReLU())
            c_prev = c
    layers += [GlobalAvgPool2d(), nn.Linear(c_prev, num_classes, dtype=dtype)]
    return nn.Sequential(*layers)
