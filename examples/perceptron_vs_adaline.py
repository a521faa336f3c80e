"""Perceptron vs ADALINE: the two delta rules of the notes on the same data.

Perceptron: w += eta (y - y_hat) x with y_hat = 1[z >= 0]   (learns only from mistakes)
ADALINE:    w += eta (2/n) X^T (y - z)                      (gradient descent on the MSE of z)

On linearly separable data the perceptron stops at zero mistakes; ADALINE's MSE falls
smoothly and its boundary sits where the squared error is smallest. On data that is not
separable the perceptron never settles, while ADALINE still converges.
Run: python examples/perceptron_vs_adaline.py
"""
import numpy as np

from dlcore.data import StandardScaler, load_breast_cancer, train_test_split
from dlcore.models import Adaline, Perceptron

from _example import epochs, figure, head, save

rng = np.random.default_rng(0)

# 1. Two separable blobs.
X = np.vstack([rng.normal([-2, -2], 0.8, (100, 2)), rng.normal([2, 2], 0.8, (100, 2))])
y = np.repeat([0, 1], 100)
p = Perceptron(seed=0).fit(X, y)
a = Adaline(lr=0.01, epochs=epochs(50)).fit(X, y)
fig, (ax_blobs, ax_loss) = figure(1, 2, figsize=(10, 4))
if fig is not None:
    ax_blobs.scatter(X[:, 0], X[:, 1], c=y, cmap="coolwarm", s=12)
    xs = np.linspace(X[:, 0].min(), X[:, 0].max(), 2)
    # perceptron: w.x + b = 0; ADALINE: w.x + b = 0.5 (its threshold)
    ax_blobs.plot(xs, -(p.coef_[0] * xs + p.intercept_) / p.coef_[1], "k-", label="perceptron")
    ax_blobs.plot(xs, (0.5 - a.coef_[0] * xs - a.intercept_) / a.coef_[1], "g--", label="ADALINE")
    ax_blobs.set(title="separable blobs: decision boundaries", xlabel="$x_1$", ylabel="$x_2$")
    ax_blobs.legend()
print("separable blobs")
print(f"  perceptron: mistakes per epoch {p.errors_} -> training accuracy {p.score(X, y):.3f}")
print(f"  ADALINE:    MSE epoch 1 {a.losses_[0]:.3f} -> epoch 50 {a.losses_[-1]:.3f}, "
      f"monotone: {bool(np.all(np.diff(a.losses_) < 0))}, training accuracy {a.score(X, y):.3f}")
print(f"  boundaries: perceptron w={np.round(p.coef_, 2)}, b={p.intercept_:.2f}; "
      f"ADALINE w={np.round(a.coef_, 3)}, b={a.intercept_:.3f} (threshold z = 0.5)")

# 2. A real, not separable problem: breast cancer (30 standardized features).
X, y = load_breast_cancer()
X_tr, X_te, y_tr, y_te = train_test_split(X, y, seed=0, stratify=True)
X_tr, y_tr = head(X_tr, y_tr)
scaler = StandardScaler().fit(X_tr)
X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
p = Perceptron(epochs=epochs(50), seed=0).fit(X_tr, y_tr)
print("\nbreast cancer (not separable)")
print(f"  perceptron: mistakes in the last 5 epochs {p.errors_[-5:]} (never reaches 0), "
      f"test accuracy {p.score(X_te, y_te):.3f}")
for lr in (0.001, 0.01, 0.05):
    a = Adaline(lr=lr, epochs=epochs(100)).fit(X_tr, y_tr)
    if fig is not None:
        ax_loss.plot(range(1, len(a.losses_) + 1), a.losses_, label=f"ADALINE lr={lr}")
    print(f"  ADALINE lr={lr:<5}: final MSE {a.losses_[-1]:.4f}, test accuracy {a.score(X_te, y_te):.3f}")
a = Adaline(lr=0.05, epochs=epochs(100), unit_norm=True).fit(X_tr, y_tr)
print(f"  ADALINE unit-norm rule (x/||x||), lr=0.05: final MSE {a.losses_[-1]:.4f}, "
      f"test accuracy {a.score(X_te, y_te):.3f}")
try:
    Adaline(lr=1.0, epochs=100).fit(X_tr, y_tr)
except FloatingPointError as exc:
    print(f"  ADALINE lr=1.0: {exc}")
if fig is not None:
    ax_loss.set(title="breast cancer: ADALINE's mean squared error", xlabel="epoch", ylabel="MSE", yscale="log")
    ax_loss.legend()
save(fig)
