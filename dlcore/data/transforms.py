"""Data augmentation: random, label-preserving changes of training images.

The notes' "dataset augmentation": more (fake) training data from the data we have.
Each transform takes a batch ``(N, C, H, W)`` (or one image ``(C, H, W)``), draws an
independent random choice per image from dlcore's shared generator (so
``dlcore.manual_seed`` makes it reproducible), and returns a new array; the input is
never modified. Pass one to ``DataLoader(..., transform=...)`` to augment every batch.
"""
import numpy as np

from .. import _random
from .._checks import check_int, check_number, describe, pair

__all__ = ["Compose", "GaussianNoise", "RandomCrop", "RandomHorizontalFlip", "RandomShift"]


def _as_batch(x):
    x = np.asarray(x)
    if x.ndim == 3:
        return x[None], True
    if x.ndim != 4:
        raise ValueError(f"x must be an image (C, H, W) or a batch (N, C, H, W), got shape {x.shape}")
    return x, False


class Compose:
    """Apply transforms one after the other: ``Compose([RandomShift(2), GaussianNoise(0.05)])``."""

    def __init__(self, transforms):
        transforms = list(transforms)
        for t in transforms:
            if not callable(t):
                raise TypeError(f"every transform must be callable, got {describe(t)}")
        self.transforms = transforms

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self):
        return f"Compose({self.transforms!r})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p`` (not for digits: a flipped 2 is no 2)."""

    def __init__(self, p=0.5):
        self.p = check_number(p, "p", 0.0, 1.0)

    def __call__(self, x):
        batch, single = _as_batch(x)
        flip = _random.generator().random(batch.shape[0]) < self.p
        out = batch.copy()
        out[flip] = batch[flip][..., ::-1]
        return out[0] if single else out

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop:
    """Zero-pad each image by ``padding`` pixels, then cut a random ``size`` window.

    ``size`` is an int or ``(h, w)``; with ``size`` equal to the image size this is a
    random translation by up to ``padding`` pixels (the classic CIFAR augmentation).
    """

    def __init__(self, size, padding=0):
        self.size = pair(size, "size", 1)
        self.padding = check_int(padding, "padding", 0)

    def __call__(self, x):
        batch, single = _as_batch(x)
        n, c, h, w = batch.shape
        p = self.padding
        ch, cw = self.size
        if ch > h + 2 * p or cw > w + 2 * p:
            raise ValueError(
                f"crop size {self.size} is larger than the padded image {(h + 2 * p, w + 2 * p)}")
        padded = np.zeros((n, c, h + 2 * p, w + 2 * p), dtype=batch.dtype)
        padded[:, :, p:p + h, p:p + w] = batch
        rng = _random.generator()
        tops = rng.integers(0, h + 2 * p - ch + 1, size=n)
        lefts = rng.integers(0, w + 2 * p - cw + 1, size=n)
        out = np.empty((n, c, ch, cw), dtype=batch.dtype)
        for i in range(n):
            out[i] = padded[i, :, tops[i]:tops[i] + ch, lefts[i]:lefts[i] + cw]
        return out[0] if single else out

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomShift:
    """Translate each image by a random whole number of pixels in ``[-max_shift, max_shift]``
    along each axis, filling the uncovered border with zeros (a same-size ``RandomCrop``)."""

    def __init__(self, max_shift=2):
        self.max_shift = check_int(max_shift, "max_shift", 0)

    def __call__(self, x):
        batch, single = _as_batch(x)
        out = RandomCrop(batch.shape[2:], padding=self.max_shift)(batch)
        return out[0] if single else out

    def __repr__(self):
        return f"RandomShift(max_shift={self.max_shift})"


class GaussianNoise:
    """Add ``N(0, std^2)`` noise to every pixel; ``clip=(lo, hi)`` keeps the value range."""

    def __init__(self, std=0.1, clip=None):
        self.std = check_number(std, "std", 0.0)
        self.clip = None if clip is None else (float(clip[0]), float(clip[1]))

    def __call__(self, x):
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise TypeError(f"x must be floating, got dtype {x.dtype}")
        noise = _random.generator().standard_normal(x.shape) * self.std
        out = (x + noise).astype(x.dtype)
        if self.clip is not None:
            np.clip(out, self.clip[0], self.clip[1], out=out)
        return out

    def __repr__(self):
        return f"GaussianNoise(std={self.std}, clip={self.clip})"
