"""Softmax regression on the 8x8 digits: one linear layer, softmax, cross-entropy.

W -= eta (1/n) X^T (softmax(XW + b) - onehot(y)) on mini-batches; about 97 % test
accuracy, and the confusion matrix shows which digits it mixes up.
Run: python examples/softmax_regression_digits.py
"""
import numpy as np

from dlcore import metrics
from dlcore.data import StandardScaler, load_digits, train_test_split
from dlcore.models import SoftmaxRegression

from _example import epochs, figure, save

X, y = load_digits()
X = X.reshape(len(X), -1)                       # (1797, 64)
X_tr, X_te, y_tr, y_te = train_test_split(X, y, seed=0, stratify=True)
scaler = StandardScaler().fit(X_tr)
X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)

for lr in (0.01, 0.1):
    model = SoftmaxRegression(lr=lr, epochs=epochs(50), seed=0).fit(X_tr, y_tr)
    print(f"lr={lr:<4}: loss epoch 1 {model.losses_[0]:.3f} -> epoch {len(model.losses_)} {model.losses_[-1]:.3f}, "
          f"test accuracy {model.score(X_te, y_te):.4f}")
y_pred = model.predict(X_te)
print("macro F1", round(metrics.f1_score(y_te, y_pred, average="macro"), 4))
print("confusion matrix (rows: true digit, columns: predicted):")
print(metrics.confusion_matrix(y_te, y_pred))
proba = model.predict_proba(X_te[:1])[0]
print("first test digit:", y_te[0], "probabilities:", np.round(proba, 3))

# Each class's weight vector w_k, shown as an 8x8 image: the template its score z_k = w_k.x + b_k
# matches (red: pixels that raise the score, blue: pixels that lower it).
fig, axes = figure(2, 5, figsize=(9, 4))
if fig is not None:
    W = model.coef_.reshape(-1, 8, 8) if model.coef_.shape[0] == 10 else model.coef_.T.reshape(-1, 8, 8)
    for k, ax in enumerate(axes.ravel()):
        lim = np.abs(W[k]).max()
        ax.imshow(W[k], cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"class {k}")
        ax.axis("off")
    fig.suptitle("softmax regression: the weights of each class")
save(fig)
