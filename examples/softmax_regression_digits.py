"""Softmax regression on the 8x8 digits: one linear layer, softmax, cross-entropy.

W -= eta (1/n) X^T (softmax(XW + b) - onehot(y)) on mini-batches; about 97 % test
accuracy, and the confusion matrix shows which digits it mixes up.
Run: python examples/softmax_regression_digits.py
"""
import numpy as np

from dlcore import metrics
from dlcore.data import StandardScaler, load_digits, train_test_split
from dlcore.models import SoftmaxRegression

X, y = load_digits()
X = X.reshape(len(X), -1)                       # (1797, 64)
X_tr, X_te, y_tr, y_te = train_test_split(X, y, seed=0, stratify=True)
scaler = StandardScaler().fit(X_tr)
X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)

for lr in (0.01, 0.1):
    model = SoftmaxRegression(lr=lr, epochs=50, seed=0).fit(X_tr, y_tr)
    print(f"lr={lr:<4}: loss epoch 1 {model.losses_[0]:.3f} -> epoch 50 {model.losses_[-1]:.3f}, "
          f"test accuracy {model.score(X_te, y_te):.4f}")
y_pred = model.predict(X_te)
print("macro F1", round(metrics.f1_score(y_te, y_pred, average="macro"), 4))
print("confusion matrix (rows: true digit, columns: predicted):")
print(metrics.confusion_matrix(y_te, y_pred))
proba = model.predict_proba(X_te[:1])[0]
print("first test digit:", y_te[0], "probabilities:", np.round(proba, 3))
