"""Mini-batches: the ``DataLoader`` that feeds every training loop.

One epoch is one pass over the data. With ``shuffle=True`` each pass draws a fresh
permutation of the sample indices, so every sample is seen exactly once per epoch but
in a new order (the "stochastic" in stochastic gradient descent); batches are then
consecutive slices of that permutation::

    perm = rng.permutation(N)                 # once per epoch (identity without shuffle)
    for k in range(len(loader)):
        idx = perm[k * B : (k + 1) * B]       # the last batch may be shorter
        yield X[idx], y[idx]
"""
import numpy as np

from .. import _random
from .._checks import check_int, describe

__all__ = ["DataLoader"]


class DataLoader:
    """Iterate over ``(xb, yb)`` mini-batches of ``(X, y)`` (or over ``xb`` when ``y`` is None).

    Args:
        X: array whose first axis indexes samples, e.g. images ``(N, C, H, W)``.
        y: optional targets with the same first dimension ``N``.
        batch_size (int): samples per batch (default 32).
        shuffle (bool): draw a new permutation at every ``iter()`` (every epoch).
        drop_last (bool): drop the last, shorter batch when ``N % batch_size != 0``.
        seed (int or None): seeds the loader's own generator, so the whole sequence of
            epochs is reproducible; with ``None`` the permutations come from dlcore's
            shared generator (``dlcore.manual_seed``).
        transform (callable or None): applied to each ``xb`` (e.g. an augmentation from
            :mod:`dlcore.data.transforms`); never to ``X`` itself.

    ``len(loader)`` is the number of batches per epoch. Inputs are never modified.

    Example::

        >>> loader = DataLoader(np.arange(10.0), batch_size=4)
        >>> [xb.tolist() for xb in loader]
        [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0], [8.0, 9.0]]
    """

    def __init__(self, X, y=None, batch_size=32, shuffle=False, drop_last=False, seed=None,
                 transform=None):
        if not hasattr(X, "shape") or not hasattr(X, "__getitem__"):
            X = np.asarray(X)
        if X.ndim == 0:
            raise ValueError(f"X must have a sample axis (at least 1-D), got {describe(X)}")
        if y is not None:
            if not hasattr(y, "shape"):
                y = np.asarray(y)
            if y.ndim == 0 or y.shape[0] != X.shape[0]:
                raise ValueError(
                    f"y must have as many samples as X ({X.shape[0]}), got shape {y.shape}")
        self.X = X
        self.y = y
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if seed is not None:
            seed = check_int(seed, "seed", 0)
        self.seed = seed
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable or None, got {describe(transform)}")
        self.transform = transform
        self._rng = np.random.default_rng(seed) if seed is not None else None

    @property
    def num_samples(self):
        return self.X.shape[0]

    def __len__(self):
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _generator(self):
        return self._rng if self._rng is not None else _random.generator()

    def __iter__(self):
        n, b = self.num_samples, self.batch_size
        perm = self._generator().permutation(n) if self.shuffle else None
        for k in range(len(self)):
            if perm is None:
                idx = slice(k * b, min((k + 1) * b, n))
            else:
                idx = perm[k * b:(k + 1) * b]
            xb = self.X[idx]
            if self.transform is not None:
                xb = self.transform(xb)
            if self.y is None:
                yield xb
            else:
                yield xb, self.y[idx]

    def __repr__(self):
        return (f"DataLoader(num_samples={self.num_samples}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed})")
