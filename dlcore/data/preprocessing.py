"""Preprocessing: label encodings, train/test splits, standardization, image resizing.

These follow scikit-learn's definitions (same outputs for the same inputs) so that a
student can swap one for the other.
"""
import math

import numpy as np

from .. import _random
from .._checks import as_int_labels, check_int, describe

__all__ = [
    "LabelBinarizer",
    "StandardScaler",
    "one_hot",
    "resize_images",
    "train_test_split",
]


def one_hot(labels, num_classes=None):
    """One-hot encode integer labels: ``out[i, labels[i]] = 1``.

    Args:
        labels: 1-D integer array of class indices in ``[0, num_classes)``.
        num_classes (int or None): number of columns; default ``labels.max() + 1``.

    Returns:
        float32 array of shape ``(N, num_classes)``.

    Example (from the notes)::

        >>> one_hot([3, 0, 2])
        array([[0., 0., 0., 1.],
               [1., 0., 0., 0.],
               [0., 0., 1., 0.]], dtype=float32)
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise TypeError(f"labels must hold integer class indices, got dtype {y.dtype}")
    if num_classes is None:
        if y.size and y.min() < 0:
            raise ValueError(f"labels must be non-negative, got a label {int(y.min())}")
        num_classes = int(y.max()) + 1 if y.size else 0
    num_classes = check_int(num_classes, "num_classes", 0)
    y = as_int_labels(y, "labels", num_classes)
    out = np.zeros((y.shape[0], num_classes), dtype=np.float32)
    out[np.arange(y.shape[0]), y] = 1.0
    return out


def _as_1d_labels(y, name):
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of labels, got shape {y.shape}")
    return y


class LabelBinarizer:
    """Turn arbitrary class labels into indicator columns (scikit-learn's ``LabelBinarizer``).

    ``classes_`` are the sorted distinct labels seen by ``fit``. ``transform`` gives one
    column per class with ``pos_label`` where the sample has that class and ``neg_label``
    elsewhere; with exactly two classes it gives a single column (1 for ``classes_[1]``),
    and with one class a single column of ``neg_label``. Labels not seen by ``fit`` give a
    row of ``neg_label`` (multiclass) or raise ``ValueError`` (two classes).

    Example (the notes' example; the notes print the last row wrongly as ``[0 1 0]``)::

        >>> lb = LabelBinarizer().fit(['dog', 'cat', 'dog', 'horse'])
        >>> lb.classes_.tolist()
        ['cat', 'dog', 'horse']
        >>> lb.transform(['dog', 'cat', 'dog', 'horse']).tolist()
        [[0, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    """

    def __init__(self, neg_label=0, pos_label=1):
        if neg_label >= pos_label:
            raise ValueError(f"neg_label must be < pos_label, got {neg_label} and {pos_label}")
        self.neg_label = neg_label
        self.pos_label = pos_label

    def fit(self, y):
        y = _as_1d_labels(y, "y")
        if y.size == 0:
            raise ValueError("y must contain at least one label, got an empty array")
        self.classes_ = np.unique(y)
        return self

    def _check_fitted(self):
        if not hasattr(self, "classes_"):
            raise RuntimeError("this LabelBinarizer is not fitted yet: call fit(y) first")

    def transform(self, y):
        self._check_fitted()
        y = _as_1d_labels(y, "y")
        k = len(self.classes_)
        pos = np.searchsorted(self.classes_, y)
        pos_clipped = np.minimum(pos, k - 1)
        known = self.classes_[pos_clipped] == y
        if k <= 2:
            if not known.all():
                bad = y[~known][0]
                raise ValueError(
                    f"y contains a label {bad!r} not seen in fit (classes {self.classes_.tolist()})")
            col = np.where(pos_clipped == 1, self.pos_label, self.neg_label) if k == 2 else \
                np.full(len(y), self.neg_label)
            return col.astype(np.int64).reshape(-1, 1)
        out = np.full((len(y), k), self.neg_label, dtype=np.int64)
        rows = np.nonzero(known)[0]
        out[rows, pos_clipped[known]] = self.pos_label
        return out

    def fit_transform(self, y):
        return self.fit(y).transform(y)

    def inverse_transform(self, Y, threshold=None):
        """Labels back from indicator rows: argmax per row, or a threshold for one column
        (default the midpoint of ``neg_label`` and ``pos_label``, as scikit-learn)."""
        self._check_fitted()
        Y = np.asarray(Y)
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
        k = len(self.classes_)
        if Y.ndim != 2 or Y.shape[1] != (1 if k <= 2 else k):
            raise ValueError(
                f"Y must have shape (N, {1 if k <= 2 else k}) for {k} classes, got {Y.shape}")
        if k <= 2:
            if threshold is None:
                threshold = (self.neg_label + self.pos_label) / 2.0
            if k == 1:
                return np.repeat(self.classes_, len(Y))
            return self.classes_[(Y[:, 0] > threshold).astype(np.intp)]
        return self.classes_[np.argmax(Y, axis=1)]


def _split_counts(n, test_size):
    if isinstance(test_size, (float, np.floating)) and not isinstance(test_size, bool):
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size as a float must lie in (0, 1), got {test_size}")
        n_test = math.ceil(test_size * n)
    else:
        n_test = check_int(test_size, "test_size", 1)
    if not 0 < n_test < n:
        raise ValueError(
            f"test_size={test_size!r} leaves an empty train or test split for {n} samples")
    return n_test


def train_test_split(X, y=None, test_size=0.25, seed=None, stratify=False):
    """Split ``(X, y)`` at random into train and test parts.

    Args:
        X: array with samples on the first axis.
        y: labels or targets of the same length (or None: only X is split).
        test_size: a float in (0, 1), the fraction of samples for the test split
            (rounded *up*, as scikit-learn's), or an int count.
        seed: int for a reproducible split; None draws from dlcore's generator.
        stratify (bool): keep the class proportions of ``y`` in both splits: each class
            gets ``floor(n_test * n_c / N)`` test samples, and the remaining test slots go
            to the classes with the largest remainders, so every class's count is within
            one of its proportional share.

    Returns:
        ``X_train, X_test, y_train, y_test`` (``X_train, X_test`` when y is None).
    """
    if not hasattr(X, "shape"):
        X = np.asarray(X)
    n = X.shape[0] if X.ndim else 0
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 0 or y.shape[0] != n:
            raise ValueError(f"y must have as many samples as X ({n}), got shape {y.shape}")
    if n < 2:
        raise ValueError(f"X must have at least 2 samples to split, got {describe(X)}")
    n_test = _split_counts(n, test_size)
    rng = np.random.default_rng(check_int(seed, "seed", 0)) if seed is not None else _random.generator()
    if stratify:
        if y is None:
            raise ValueError("stratify=True needs the labels y")
        classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        share = n_test * counts / n
        take = np.floor(share).astype(np.int64)
        remainder = share - take
        leftover = n_test - int(take.sum())
        # Ties broken at random so that no class is favoured systematically.
        order = np.lexsort((rng.random(len(classes)), -remainder))
        for c in order:
            if leftover == 0:
                break
            if take[c] < counts[c]:
                take[c] += 1
                leftover -= 1
        test_parts = []
        for c in range(len(classes)):
            members = np.nonzero(inverse == c)[0]
            test_parts.append(rng.permutation(members)[:take[c]])
        test_idx = rng.permutation(np.concatenate(test_parts))
        mask = np.ones(n, dtype=bool)
        mask[test_idx] = False
        train_idx = rng.permutation(np.nonzero(mask)[0])
    else:
        perm = rng.permutation(n)
        test_idx, train_idx = perm[:n_test], perm[n_test:]
    if y is None:
        return X[train_idx], X[test_idx]
    return X[train_idx], X[test_idx], y[train_idx], y[test_idx]


class StandardScaler:
    """Standardize features: ``z = (x - mean_) / scale_`` (scikit-learn's ``StandardScaler``).

    ``mean_`` and ``var_`` are taken over axis 0 (the samples); ``scale_`` is the
    population standard deviation ``sqrt(var_)`` (divisor N, not N - 1), set to 1 for
    constant features so they become 0 instead of NaN. Input with more than two dimensions
    (images ``(N, C, H, W)``) is standardized per element of its trailing shape, i.e. per
    pixel. Floating input keeps its dtype; integer input gives float64.
    """

    def __init__(self, with_mean=True, with_std=True):
        self.with_mean = bool(with_mean)
        self.with_std = bool(with_std)

    @staticmethod
    def _as_array(X):
        X = np.asarray(X)
        if X.dtype.kind not in "fiub":
            raise TypeError(f"X must be numeric, got dtype {X.dtype}")
        if X.ndim < 2:
            raise ValueError(f"X must be at least 2-D (samples, features...), got shape {X.shape}")
        if X.dtype.kind != "f":
            X = X.astype(np.float64)
        return X

    def fit(self, X):
        X = self._as_array(X)
        if X.shape[0] == 0:
            raise ValueError("X must contain at least one sample")
        work = X.astype(np.float64)
        self.n_samples_seen_ = X.shape[0]
        self.mean_ = work.mean(axis=0)
        self.var_ = work.var(axis=0)
        scale = np.sqrt(self.var_)
        # Variance this close to 0 is rounding noise of a constant feature (scikit-learn
        # uses the same kind of bound): such a feature is left unscaled.
        tiny = 10 * np.finfo(X.dtype).eps * np.maximum(1.0, np.abs(self.mean_))
        scale[scale <= tiny] = 1.0
        self.scale_ = scale
        self._dtype = X.dtype
        return self

    def _check(self, X):
        if not hasattr(self, "mean_"):
            raise RuntimeError("this StandardScaler is not fitted yet: call fit(X) first")
        X = self._as_array(X)
        if X.shape[1:] != self.mean_.shape:
            raise ValueError(
                f"X must have per-sample shape {self.mean_.shape} as in fit, got {X.shape[1:]}")
        return X

    def transform(self, X):
        X = self._check(X)
        out = X.astype(np.float64)
        if self.with_mean:
            out = out - self.mean_
        if self.with_std:
            out = out / self.scale_
        return out.astype(X.dtype, copy=False)

    def fit_transform(self, X):
        return self.fit(X).transform(X)

    def inverse_transform(self, Z):
        Z = self._check(Z)
        out = Z.astype(np.float64)
        if self.with_std:
            out = out * self.scale_
        if self.with_mean:
            out = out + self.mean_
        return out.astype(Z.dtype, copy=False)


def _interp_matrix(n_in, n_out):
    """(n_out, n_in) bilinear weights with half-pixel centres (``align_corners=False``)."""
    scale = n_in / n_out
    src = (np.arange(n_out) + 0.5) * scale - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    A = np.zeros((n_out, n_in))
    A[np.arange(n_out), lo] += 1.0 - frac
    A[np.arange(n_out), hi] += frac
    return A


def resize_images(X, size):
    """Resize images ``(N, C, H, W)`` to ``(N, C, size, size)`` by bilinear interpolation.

    Sample positions use half-pixel centres, as ``torch.nn.functional.interpolate(...,
    mode="bilinear", align_corners=False)`` when upsampling: output pixel ``i`` reads the
    input at ``(i + 0.5) * H / size - 0.5``, clamped to the image. Being separable, the
    whole resize is two small matrix products, ``A_h @ image @ A_w.T``. Each output is a
    convex combination of inputs, so values in [0, 1] stay in [0, 1]. ``size`` may be an
    int or a pair ``(height, width)``. The dtype is kept.
    """
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(f"X must be 4-D (N, C, H, W), got shape {X.shape}")
    if X.dtype.kind != "f":
        raise TypeError(f"X must be floating, got dtype {X.dtype}")
    if isinstance(size, (tuple, list)):
        out_h, out_w = (check_int(s, "size", 1) for s in size)
    else:
        out_h = out_w = check_int(size, "size", 1)
    A_h = _interp_matrix(X.shape[2], out_h)
    A_w = _interp_matrix(X.shape[3], out_w)
    out = np.einsum("ih,nchw,jw->ncij", A_h, X.astype(np.float64), A_w, optimize=True)
    return out.astype(X.dtype)
