"""Binary logistic regression on the Wisconsin breast-cancer data, with the notes' metrics.

P(y=1|x) = sigmoid(w^T x + b), trained by gradient descent on the mean binary
cross-entropy; then precision, recall, F1 and the confusion matrix of the test split.
Run: python examples/logistic_regression_breast_cancer.py
"""
import numpy as np

from dlcore import metrics
from dlcore.data import StandardScaler, load_breast_cancer, train_test_split
from dlcore.models import LogisticRegression

from _example import epochs, figure, save

X, y = load_breast_cancer()                     # y = 1: benign, 0: malignant
X_tr, X_te, y_tr, y_te = train_test_split(X, y, seed=0, stratify=True)
scaler = StandardScaler().fit(X_tr)             # GD needs features on one scale
X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)

model = LogisticRegression(lr=0.1, epochs=epochs(200)).fit(X_tr, y_tr)
print(f"cross-entropy: epoch 1 {model.losses_[0]:.4f}, epoch {min(50, len(model.losses_))} "
      f"{model.losses_[min(49, len(model.losses_) - 1)]:.4f}, epoch {len(model.losses_)} {model.losses_[-1]:.4f}")
y_pred = model.predict(X_te)
print(f"test accuracy {metrics.accuracy_score(y_te, y_pred):.4f}")
for label, name in ((1, "benign"), (0, "malignant")):
    print(f"  positive = {name:9s}: precision {metrics.precision_score(y_te, y_pred, pos_label=label):.3f}, "
          f"recall {metrics.recall_score(y_te, y_pred, pos_label=label):.3f}, "
          f"F1 {metrics.f1_score(y_te, y_pred, pos_label=label):.3f}")
print("confusion matrix (rows: true 0/1, columns: predicted 0/1):")
print(metrics.confusion_matrix(y_te, y_pred))
proba = model.predict_proba(X_te[:5])
print("P(malignant), P(benign) of the first 5 test samples:")
print(np.round(proba, 3))
names = __import__("sklearn.datasets", fromlist=["x"]).load_breast_cancer().feature_names
top = np.argsort(-np.abs(model.coef_))[:5]
print("largest weights:", ", ".join(f"{names[i]} {model.coef_[i]:+.2f}" for i in top))

fig, (ax_loss, ax_w) = figure(1, 2, figsize=(10, 4))
if fig is not None:
    ax_loss.plot(range(1, len(model.losses_) + 1), model.losses_)
    ax_loss.set(title="training cross-entropy", xlabel="epoch", ylabel="loss")
    order = np.argsort(model.coef_)
    ax_w.barh(range(len(order)), model.coef_[order], color=np.where(model.coef_[order] > 0, "tab:blue", "tab:red"))
    ax_w.set_yticks(range(len(order)))
    ax_w.set_yticklabels([names[i] for i in order], fontsize=6)
    ax_w.set(title="weights (standardized features; > 0 favours benign)", xlabel="w")
save(fig)
