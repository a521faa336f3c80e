r"""Judging generated digits: a Fréchet distance on LeNet-5 features, mode coverage, confidence.

The Fréchet Inception Distance (Heusel et al. 2017) fits a Gaussian to a classifier's
penultimate-layer features of real images, :math:`\mathcal{N}(μ_r, Σ_r)`, and one to those
of generated images, :math:`\mathcal{N}(μ_g, Σ_g)`, and reports the Fréchet (2-Wasserstein)
distance between the two Gaussians:

.. math:: d^2 = \lVert μ_r - μ_g \rVert^2 + \operatorname{Tr}\big(Σ_r + Σ_g - 2 (Σ_r Σ_g)^{1/2}\big).

Inception-v3 is far too big for 8×8 digits, so :class:`DigitsFID` swaps it for a LeNet-5
trained on the bundled digits and uses its 84 penultimate features (after the last ReLU).
Its numbers are comparable only with each other (same classifier, same reference set):
that is why every report also gives the FID of a per-pixel Gaussian fitted to the training
digits (:func:`pixel_gaussian_samples`), a baseline that knows each pixel's mean and spread
but nothing about strokes.

The same classifier also gives the class histogram of the samples (do all ten digits
appear? a collapsed GAN makes a few) and the mean confidence (max softmax probability:
do the samples look like *some* digit?).
"""
import numpy as np

from ._checks import as_floating, check_int

__all__ = ["DigitsFID", "frechet_distance", "pixel_gaussian_samples", "trace_sqrt_product"]


def _sqrt_psd(a):
    """Symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues, rounding, -> 0)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1, sigma2, method="auto"):
    r""":math:`\operatorname{Tr}\,(Σ_1 Σ_2)^{1/2}` for two covariance matrices.

    ``method="eigh"`` (NumPy only): with :math:`A = Σ_1^{1/2}`, the matrix :math:`A Σ_2 A`
    is symmetric PSD and similar to :math:`Σ_1 Σ_2`, so the trace of the square root is
    :math:`\sum_i \sqrt{λ_i(A Σ_2 A)}` (eigenvalues clipped at 0). ``method="sqrtm"`` uses
    ``scipy.linalg.sqrtm`` on the product (the usual FID code); ``"auto"`` takes SciPy when
    it is installed and its result is finite, else the eigen route.
    """
    if method not in ("auto", "eigh", "sqrtm"):
        raise ValueError(f"method must be 'auto', 'eigh' or 'sqrtm', got {method!r}")
    if method in ("auto", "sqrtm"):
        try:
            from scipy.linalg import sqrtm
        except ImportError:
            if method == "sqrtm":
                raise
        else:
            import warnings

            with warnings.catch_warnings():  # singular covariances (dead ReLU features) are expected
                warnings.simplefilter("ignore")
                root = sqrtm(sigma1 @ sigma2)
            value = float(np.real(np.trace(root)))
            if np.isfinite(value) or method == "sqrtm":
                return value
    a = _sqrt_psd(sigma1)
    w = np.linalg.eigvalsh((a @ sigma2 @ a + (a @ sigma2 @ a).T) / 2)
    return float(np.sum(np.sqrt(np.clip(w, 0, None))))


def frechet_distance(mu1, sigma1, mu2, sigma2, method="auto"):
    r"""Squared Fréchet distance between :math:`\mathcal{N}(μ_1, Σ_1)` and :math:`\mathcal{N}(μ_2, Σ_2)`.

    .. math:: d^2 = \lVert μ_1 - μ_2 \rVert^2 + \operatorname{Tr} Σ_1 + \operatorname{Tr} Σ_2
              - 2 \operatorname{Tr}\,(Σ_1 Σ_2)^{1/2}

    (what FID reports, without a square root). Zero for identical Gaussians; for
    commuting covariances it is :math:`\lVert μ_1 - μ_2 \rVert^2 + \lVert Σ_1^{1/2} - Σ_2^{1/2} \rVert_F^2`.

    Args:
        mu1, mu2: means, shape ``(d,)``.
        sigma1, sigma2: covariances, shape ``(d, d)``, symmetric positive semi-definite.
        method: how to take the matrix square root, see :func:`trace_sqrt_product`.

    Returns:
        float (clipped at 0 against rounding).
    """
    mu1 = np.asarray(as_floating(mu1, "mu1"), dtype=np.float64)
    mu2 = np.asarray(as_floating(mu2, "mu2"), dtype=np.float64)
    sigma1 = np.asarray(as_floating(sigma1, "sigma1"), dtype=np.float64)
    sigma2 = np.asarray(as_floating(sigma2, "sigma2"), dtype=np.float64)
    if mu1.ndim != 1:
        raise ValueError(f"mu1 must be 1-D (d,), got shape {mu1.shape}")
    d = mu1.shape[0]
    if mu2.shape != (d,):
        raise ValueError(f"mu2 must have mu1's shape ({d},), got {mu2.shape}")
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        if s.shape != (d, d):
            raise ValueError(f"{name} must have shape ({d}, {d}), got {s.shape}")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"{name} must be finite")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2, method)
    return float(max(value, 0.0))


def pixel_gaussian_samples(X_train, n, rng=None):
    """The baseline generator: each pixel drawn independently from N(mean, std²) of that pixel
    in ``X_train``, clipped to [0, 1]. Returns float32 ``(n, *X_train.shape[1:])``."""
    X_train = as_floating(X_train, "X_train")
    n = check_int(n, "n", 1)
    rng = np.random.default_rng(0) if rng is None else rng
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    samples = mean + std * rng.standard_normal((n,) + X_train.shape[1:])
    return np.clip(samples, 0.0, 1.0).astype(np.float32)


class DigitsFID:
    """A LeNet-5 trained on the bundled digits, used to judge generated digits.

    ``DigitsFID(size)`` loads :func:`dlcore.data.load_digits` at the generator's ``size``,
    splits it (75 % train / 25 % held out, stratified, ``seed=0``: the generators should
    train on ``X_train`` only), and trains a LeNet-5 on the training part (upsampled to
    28×28) for ``epochs`` epochs (or loads it from ``cache``, a file path, when an
    earlier run with the same size, epochs and seed saved it there). Images are judged at 28×28: other sizes are resized
    bilinearly first, the real reference digits by the same route.

    Attributes:
        X_train, y_train, X_test, y_test: the split, at ``size``, float32 in [0, 1].
        accuracy (float): the classifier's accuracy on ``X_test``.

    Methods:
        ``features(X)`` (N, 84); ``evaluate(X)`` -> dict with ``fid``, ``class_shares``,
        ``classes_covered``, ``min_share``, ``mean_confidence``; ``baseline_fid(n)``;
        ``summary(X)`` -> the one-line report the examples print.
    """

    def __init__(self, size=28, epochs=10, seed=0, verbose=False, cache=None):
        import os

        from . import _random, load, nn, optim, save
        from .data import RandomShift, load_digits, resize_images, train_test_split
        from .models import LeNet5
        from .train import Trainer

        self.size = check_int(size, "size", 4)
        self._resize = resize_images
        X, y = load_digits(size=self.size)
        self.X_train, self.X_test, self.y_train, self.y_test = train_test_split(
            X, y, test_size=0.25, seed=0, stratify=True)
        X28 = self._to28(self.X_train)
        self._mean, self._std = float(X28.mean()), float(X28.std())
        key = {"size": self.size, "epochs": epochs, "seed": seed}
        stored = load(cache) if cache is not None and os.path.exists(cache) else None
        saved = _random._generator
        _random.manual_seed(seed)  # the classifier is the same every run; the caller's stream is untouched
        try:
            self.model = LeNet5()
            if stored is not None and stored.get("key") == key:
                self.model.load_state_dict(stored["state"])
            else:
                optimizer = optim.Adam(self.model.parameters(), lr=2e-3)
                scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
                trainer = Trainer(self.model, nn.CrossEntropyLoss(), optimizer, scheduler=scheduler,
                                  progress=verbose)
                trainer.fit(self._norm(X28), self.y_train, epochs=epochs, batch_size=32, seed=seed,
                            transform=RandomShift(2))
                if cache is not None:
                    save({"key": key, "state": dict(self.model.state_dict())}, cache)
        finally:
            _random._generator = saved
        self.model.eval()
        self._features = self.model[:-1]  # up to the last ReLU: the 84 penultimate features
        probs = self.predict_proba(self.X_test)
        self.accuracy = float(np.mean(probs.argmax(axis=1) == self.y_test))
        f = self.features(self.X_test)
        self.mu_real, self.sigma_real = f.mean(axis=0), np.cov(f, rowvar=False)
        self._baseline = None

    def _to28(self, X):
        X = as_floating(X, "X")
        if X.ndim != 4 or X.shape[1] != 1:
            raise ValueError(f"images must be (N, 1, H, W), got shape {X.shape}")
        return X if X.shape[2:] == (28, 28) else np.clip(self._resize(X, 28), 0, 1).astype(np.float32)

    def _norm(self, X28):
        return ((X28 - self._mean) / self._std).astype(np.float32)

    def _batched(self, module, X, batch=250):
        X = self._norm(self._to28(X))
        return np.concatenate([np.asarray(module(X[i:i + batch]), np.float64) for i in range(0, len(X), batch)])

    def features(self, X):
        """The classifier's 84 penultimate features (after the last ReLU) of images in [0, 1]."""
        return self._batched(self._features, X)

    def predict_proba(self, X):
        """Softmax class probabilities ``(N, 10)`` of images in [0, 1]."""
        logits = self._batched(self.model, X)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def fid(self, X):
        """Fréchet distance between the features of ``X`` and of the held-out real digits."""
        f = self.features(X)
        return frechet_distance(f.mean(axis=0), np.cov(f, rowvar=False), self.mu_real, self.sigma_real)

    def baseline_fid(self, n=1000):
        """FID of ``n`` samples of the per-pixel Gaussian fitted to ``X_train`` (computed once)."""
        if self._baseline is None:
            self._baseline = self.fid(pixel_gaussian_samples(self.X_train, n, np.random.default_rng(0)))
        return self._baseline

    def evaluate(self, X):
        """FID, baseline FID and ratio, class shares, classes covered (share ≥ 1 %), min share, mean confidence."""
        X = as_floating(X, "X")
        probs = self.predict_proba(X)
        shares = np.bincount(probs.argmax(axis=1), minlength=10) / len(X)
        fid, base = self.fid(X), self.baseline_fid(max(len(X), 2))
        return {
            "fid": fid, "baseline_fid": base, "ratio": fid / base,
            "class_shares": shares, "classes_covered": int(np.sum(shares >= 0.01)),
            "min_share": float(shares.min()), "mean_confidence": float(probs.max(axis=1).mean()),
        }

    def summary(self, X):
        """The one-line report: ``digits FID … (per-pixel Gaussian baseline …, ratio …); classes covered …``."""
        r = self.evaluate(X)
        return (f"digits FID {r['fid']:.1f} (per-pixel Gaussian baseline {r['baseline_fid']:.1f}, "
                f"ratio {r['ratio']:.2f}); classes covered {r['classes_covered']}/10, "
                f"min share {100 * r['min_share']:.1f}%, mean confidence {r['mean_confidence']:.2f}")
