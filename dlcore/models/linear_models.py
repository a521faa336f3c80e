"""Single-layer classifiers trained by their own NumPy learning rules (no autograd, no nn).

Notation as in the notes: a sample ``x`` (m features), weights ``w``, bias ``b``, the net
input ``z = w^T x + b``, a label ``y``, the learning rate ``eta``. Each model keeps
``w`` in ``coef_`` and ``b`` in ``intercept_`` and a per-epoch record of its training
(``errors_`` or ``losses_``) so that a student can plot how it learns.

==================  ============================  =========================================
model               output used by the rule       update
==================  ============================  =========================================
Perceptron          y_hat = 1[z >= 0]             w += eta (y - y_hat) x      (per sample)
Adaline             z (linear, before threshold)  w += eta (2/n) X^T (y - z)  (batch GD on MSE)
LogisticRegression  y_hat = sigmoid(z)            w -= eta (1/n) X^T (y_hat - y)
SoftmaxRegression   Y_hat = softmax(Z)            W -= eta (1/n) X^T (Y_hat - onehot(y))
==================  ============================  =========================================

Images ``(N, C, H, W)`` are flattened to ``(N, C*H*W)``. Labels of the binary models
may be any two values (``classes_``, sorted); internally the second one is 1.
"""
import numpy as np

from .._checks import check_int, check_number, describe

__all__ = ["Adaline", "LogisticRegression", "Perceptron", "SoftmaxRegression"]


def _as_features(X, name="X"):
    X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be numeric, got dtype {X.dtype}")
    if X.ndim < 2:
        raise ValueError(f"{name} must be 2-D (samples, features) or images, got shape {X.shape}")
    return np.ascontiguousarray(X.reshape(X.shape[0], -1), dtype=np.float64)


def _rng(seed):
    from .. import _random

    return np.random.default_rng(check_int(seed, "seed", 0)) if seed is not None else _random.generator()


class _LinearBase:
    """Shared plumbing: input checks, the net input ``z = X w + b`` and labels."""

    def _check_fit_input(self, X, y):
        X = _as_features(X)
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"y must be 1-D with {X.shape[0]} labels (one per row of X), got shape {y.shape}")
        if X.shape[0] == 0:
            raise ValueError("X must contain at least one sample")
        return X, y

    def _check_predict_input(self, X):
        if not hasattr(self, "coef_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit(X, y) first")
        X = _as_features(X)
        if X.shape[1] != self.coef_.shape[0]:
            raise ValueError(
                f"X must have {self.coef_.shape[0]} features as in fit, got {X.shape[1]}")
        return X

    def _binary_targets(self, y):
        classes = np.unique(y)
        if len(classes) > 2:
            raise ValueError(
                f"{type(self).__name__} is a binary classifier: y must have at most 2 distinct labels, "
                f"got {len(classes)} ({classes[:5].tolist()}...)")
        if len(classes) == 1:
            # One class seen: treat it as the positive class of {0, 1} when it is 0 or 1.
            only = classes[0]
            classes = np.array([0, 1], dtype=y.dtype) if only in (0, 1) else np.array([only, only])
        self.classes_ = classes
        return (y == classes[1]).astype(np.float64)

    def net_input(self, X):
        """``z = X w + b`` for every sample."""
        X = self._check_predict_input(X)
        return X @ self.coef_ + self.intercept_

    def score(self, X, y):
        """Accuracy of ``predict(X)`` against ``y``."""
        return float(np.mean(self.predict(X) == np.asarray(y)))


class Perceptron(_LinearBase):
    """Rosenblatt's perceptron: a threshold unit trained one sample at a time.

    For each sample in (shuffled) order::

        y_hat = 1 if w^T x + b >= 0 else 0
        e     = y - y_hat                    # 0 when right, +1 or -1 when wrong
        w    += eta * e * x ;  b += eta * e

    Weights start at zero, as in the notes. On linearly separable data the rule stops
    making mistakes after finitely many updates (Novikoff's bound); training stops at the
    first epoch without a mistake. Otherwise it never settles, and ``epochs`` bounds it.

    Args:
        lr (float): eta (with zero initial weights it only scales w, so 1.0 is fine).
        epochs (int): maximum passes over the data.
        shuffle (bool): visit the samples in a new random order each epoch.
        seed (int or None): for the shuffling (None: dlcore's generator).

    Attributes:
        ``coef_`` (m,), ``intercept_`` (float), ``errors_`` (list: mistakes per epoch), ``classes_``.
    """

    def __init__(self, lr=1.0, epochs=100, shuffle=True, seed=None):
        self.lr = check_number(lr, "lr", 0.0, min_open=True)
        self.epochs = check_int(epochs, "epochs", 1)
        self.shuffle = bool(shuffle)
        self.seed = seed

    def fit(self, X, y):
        X, y = self._check_fit_input(X, y)
        t = self._binary_targets(y)
        rng = _rng(self.seed)
        n, m = X.shape
        w = np.zeros(m)
        b = 0.0
        self.errors_ = []
        for _ in range(self.epochs):
            order = rng.permutation(n) if self.shuffle else range(n)
            mistakes = 0
            for i in order:
                y_hat = 1.0 if X[i] @ w + b >= 0.0 else 0.0
                e = t[i] - y_hat
                if e != 0.0:
                    w += self.lr * e * X[i]
                    b += self.lr * e
                    mistakes += 1
            self.errors_.append(mistakes)
            if mistakes == 0:
                break
        self.coef_, self.intercept_ = w, float(b)
        return self

    def predict(self, X):
        z = self.net_input(X)
        return self.classes_[(z >= 0.0).astype(np.intp)]


class Adaline(_LinearBase):
    """ADALINE (Widrow and Hoff): a linear unit trained on the mean squared error of ``z``.

    The rule uses the net input ``z`` itself, before any threshold; only ``predict``
    thresholds it. With targets ``y`` in {0, 1} (the notes' convention)::

        L(w, b) = (1/n) sum_j (y_j - z_j)^2
        w += eta * (2/n) * sum_j (y_j - z_j) x_j        # = -eta * dL/dw  (batch GD)
        b += eta * (2/n) * sum_j (y_j - z_j)
        predict: 1 if z >= 1/2 else 0                   # the midpoint of the targets

    ``unit_norm=True`` is the notes' normalized (NLMS) variant: each sample's
    contribution uses ``x_j / ||x_j||`` (norm of the augmented vector ``[x_j, 1]``), which
    makes the step size independent of the scale of the inputs.
    ``online=True`` applies the rule per sample in shuffled order instead of once per
    epoch (the original Widrow-Hoff delta rule, ``w += eta (y_j - z_j) x_j``).

    For batch GD and ``lr < 1 / lambda_max((2/n) [X 1]^T [X 1])`` the loss decreases at
    every epoch (it is a convex quadratic); ``losses_`` records it before each update.

    Args:
        lr (float): eta. epochs (int). unit_norm (bool). online (bool).
        seed (int or None): shuffling for ``online``.
    """

    def __init__(self, lr=0.01, epochs=100, unit_norm=False, online=False, seed=None):
        self.lr = check_number(lr, "lr", 0.0, min_open=True)
        self.epochs = check_int(epochs, "epochs", 1)
        self.unit_norm = bool(unit_norm)
        self.online = bool(online)
        self.seed = seed

    def fit(self, X, y):
        X, y = self._check_fit_input(X, y)
        t = self._binary_targets(y)
        n, m = X.shape
        Xa = np.hstack([X, np.ones((n, 1))])           # augmented: the bias is w[m]
        if self.unit_norm:
            norms = np.linalg.norm(Xa, axis=1, keepdims=True)
            step_X = Xa / norms
        else:
            step_X = Xa
        W = np.zeros(m + 1)
        rng = _rng(self.seed)
        self.losses_ = []
        for _ in range(self.epochs):
            with np.errstate(over="ignore", invalid="ignore"):   # divergence is reported below
                e = t - Xa @ W
                self.losses_.append(float(np.mean(e * e)))
                if self.online:
                    for j in rng.permutation(n):
                        ej = t[j] - Xa[j] @ W
                        W += self.lr * ej * step_X[j]
                else:
                    W += self.lr * (2.0 / n) * (step_X.T @ e)
            # Targets are 0/1, so an MSE this large can only mean the steps grow each epoch.
            if not np.all(np.isfinite(W)) or self.losses_[-1] > 1e30:
                raise FloatingPointError(
                    f"Adaline diverged at lr={self.lr}: lower the learning rate or standardize X")
        self.coef_, self.intercept_ = W[:m], float(W[m])
        return self

    def predict(self, X):
        z = self.net_input(X)
        return self.classes_[(z >= 0.5).astype(np.intp)]


def _sigmoid(z):
    # exp of a non-positive argument only: no overflow for large |z|.
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def _softmax(Z):
    Z = Z - Z.max(axis=1, keepdims=True)      # S(z - c) = S(z): no overflow
    E = np.exp(Z)
    return E / E.sum(axis=1, keepdims=True)


class _GDClassifier(_LinearBase):
    """Mini-batch gradient descent on a cross-entropy, shared by the two probabilistic models."""

    def __init__(self, lr, epochs, batch_size, l2, seed):
        self.lr = check_number(lr, "lr", 0.0, min_open=True)
        self.epochs = check_int(epochs, "epochs", 1)
        self.batch_size = None if batch_size is None else check_int(batch_size, "batch_size", 1)
        self.l2 = check_number(l2, "l2", 0.0)
        self.seed = seed

    def _run(self, X, T, W, b, probs, loss):
        """GD loop; ``T`` are targets shaped like ``probs(X)``; returns ``W, b``."""
        n = X.shape[0]
        bs = n if self.batch_size is None else min(self.batch_size, n)
        rng = _rng(self.seed)
        self.losses_ = []
        for _ in range(self.epochs):
            order = rng.permutation(n) if bs < n else np.arange(n)
            for start in range(0, n, bs):
                idx = order[start:start + bs]
                P = probs(X[idx] @ W + b)
                G = (P - T[idx]) / len(idx)          # dJ/dz for the mean cross-entropy
                W -= self.lr * (X[idx].T @ G + self.l2 * W)
                b -= self.lr * G.sum(axis=0)
            self.losses_.append(loss(probs(X @ W + b), T) + 0.5 * self.l2 * float(np.sum(W * W)))
        return W, b


class LogisticRegression(_GDClassifier):
    """Binary logistic regression: ``P(y = 1 | x) = sigmoid(w^T x + b)``.

    Minimizes the mean binary cross-entropy (plus ``l2/2 ||w||^2``) by (mini-batch)
    gradient descent::

        J(w, b) = -(1/n) sum_i [y_i log y_hat_i + (1 - y_i) log(1 - y_hat_i)]
        dJ/dw   = (1/n) sum_i (y_hat_i - y_i) x_i ,   dJ/db = (1/n) sum_i (y_hat_i - y_i)

    Weights start at zero. Labels are {0, 1} (any two values are accepted; the larger
    one is the positive class). ``predict_proba`` returns ``[P(y=0), P(y=1)]`` per row.

    Args:
        lr (float): eta (default 0.1). epochs (int): passes over the data (default 200).
        batch_size (int or None): None for full-batch gradient descent (default).
        l2 (float): L2 penalty on w (not b). seed (int or None): mini-batch shuffling.
    """

    def __init__(self, lr=0.1, epochs=200, batch_size=None, l2=0.0, seed=None):
        super().__init__(lr, epochs, batch_size, l2, seed)

    def fit(self, X, y):
        X, y = self._check_fit_input(X, y)
        t = self._binary_targets(y)[:, None]

        def loss(p, T):
            p = np.clip(p, 1e-12, 1 - 1e-12)
            return float(-np.mean(T * np.log(p) + (1 - T) * np.log(1 - p)))

        W, b = self._run(X, t, np.zeros((X.shape[1], 1)), np.zeros(1), _sigmoid, loss)
        self.coef_, self.intercept_ = W[:, 0], float(b[0])
        return self

    def predict_proba(self, X):
        p1 = _sigmoid(self.net_input(X))
        return np.stack([1.0 - p1, p1], axis=1)

    def predict(self, X):
        z = self.net_input(X)
        return self.classes_[(z >= 0.0).astype(np.intp)]


class SoftmaxRegression(_GDClassifier):
    """Multinomial logistic regression: ``P(y = k | x) = softmax(W^T x + b)_k``.

    Minimizes the mean categorical cross-entropy against the one-hot labels ``Y`` (plus
    ``l2/2 ||W||_F^2``) by mini-batch gradient descent::

        J(W, b) = -(1/n) sum_i sum_k Y_ik log Y_hat_ik
        dJ/dW   = (1/n) X^T (Y_hat - Y) ,   dJ/db = (1/n) sum_i (Y_hat_i - Y_i)

    Softmax is computed as ``softmax(z - max z)`` (same value, no overflow).

    Args:
        lr (float): eta (default 0.1). epochs (int): default 50.
        batch_size (int or None): default 32; None for full-batch GD.
        l2 (float): L2 penalty on W. seed (int or None): mini-batch shuffling.
        num_classes (int or None): K; default ``max(y) + 1``.

    Labels are integers 0..K-1; ``predict_proba`` has shape (N, K).
    """

    def __init__(self, lr=0.1, epochs=50, batch_size=32, l2=0.0, seed=None, num_classes=None):
        super().__init__(lr, epochs, batch_size, l2, seed)
        self.num_classes = None if num_classes is None else check_int(num_classes, "num_classes", 2)

    def fit(self, X, y):
        X, y = self._check_fit_input(X, y)
        if y.dtype.kind not in "iu":
            raise TypeError(f"y must hold integer class labels 0..K-1, got {describe(y)}")
        if y.min() < 0:
            raise ValueError(f"y must hold labels 0..K-1, got a label {int(y.min())}")
        k = self.num_classes if self.num_classes is not None else max(int(y.max()) + 1, 2)
        if y.max() >= k:
            raise ValueError(f"y must lie in [0, {k}), got a label {int(y.max())}")
        Y = np.zeros((len(y), k))
        Y[np.arange(len(y)), y] = 1.0

        def loss(P, T):
            return float(-np.mean(np.sum(T * np.log(np.clip(P, 1e-12, None)), axis=1)))

        W, b = self._run(X, Y, np.zeros((X.shape[1], k)), np.zeros(k), _softmax, loss)
        self.coef_, self.intercept_ = W, b
        self.classes_ = np.arange(k)
        return self

    def predict_proba(self, X):
        return _softmax(self.net_input(X))

    def predict(self, X):
        return np.argmax(self.net_input(X), axis=1)
