"""Backpropagation through an MLP, one layer at a time, then training it on the digits.

Forward:  a_0 = x,  z_l = a_{l-1} W_l^T + b_l,  a_l = relu(z_l),  logits = z_L
Backward: delta_L = dLoss/dlogits = (softmax(logits) - onehot(y)) / N
          dW_l = delta_l^T a_{l-1},  db_l = sum_n delta_l,  delta_{l-1} = (delta_l W_l) * relu'(z_{l-1})
Each layer's ``backward`` does exactly its part of that; ``Sequential.backward`` calls them
last to first. A finite difference checks one weight's gradient.
Run: python examples/mlp_backprop.py
"""
import numpy as np

import dlcore
from dlcore import nn, optim
from dlcore.data import StandardScaler, load_digits, train_test_split
from dlcore.models import MLP
from dlcore.train import Trainer

from _example import epochs, figure, head, save

dlcore.manual_seed(0)
X, y = load_digits()
X = X.reshape(len(X), -1)
X_tr, X_te, y_tr, y_te = train_test_split(X, y, seed=0, stratify=True)
X_tr, y_tr = head(X_tr, y_tr)
scaler = StandardScaler().fit(X_tr)
X_tr, X_te = scaler.transform(X_tr).astype(np.float32), scaler.transform(X_te).astype(np.float32)

# ---- one batch by hand, in float64 ------------------------------------------------------
model = MLP([64, 32, 16, 10], flatten=False).double()
loss_fn = nn.CrossEntropyLoss()
xb, yb = X_tr[:8].astype(np.float64), y_tr[:8]
print("forward, layer by layer:")
a = xb
for name, layer in model.named_children():
    a = layer(a)
    print(f"  {name}: {type(layer).__name__:7s} -> {a.shape}, mean {a.mean():+.4f}, std {a.std():.4f}")
loss = loss_fn(a, yb)
print(f"loss = {loss:.5f}")

model.zero_grad()
delta = loss_fn.backward()
print("backward, last layer first (delta = dLoss/d(layer output)):")
for name, layer in reversed(list(model.named_children())):
    delta_in = layer.backward(delta)
    extra = ""
    if isinstance(layer, nn.Linear):
        extra = f", |dW| = {np.linalg.norm(layer.weight.grad):.5f}, |db| = {np.linalg.norm(layer.bias.grad):.5f}"
    print(f"  {name}: {type(layer).__name__:7s} delta {delta.shape} -> {delta_in.shape}{extra}")
    delta = delta_in

# ---- finite-difference check of one weight -------------------------------------------------
w = model[0].weight
i, j, eps = 3, 17, 1e-6
analytic = w.grad[i, j]
w.data[i, j] += eps
up = loss_fn(model(xb), yb)
w.data[i, j] -= 2 * eps
down = loss_fn(model(xb), yb)
w.data[i, j] += eps
print(f"dLoss/dW1[{i},{j}]: backprop {analytic:.8f}, finite difference {(up - down) / (2 * eps):.8f}")
print("gradcheck of the whole model:", dlcore.gradcheck(model, xb[:3]))

# ---- training with the Trainer ------------------------------------------------------------
model = MLP([64, 128, 64, 10])
trainer = Trainer(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-3), progress=False)
history = trainer.fit(X_tr, y_tr, epochs=epochs(20), batch_size=32, seed=0, validation_data=(X_te, y_te))
for e in sorted({1, 5, 10, len(history)} & set(history.epoch)):
    print(f"epoch {e:2d}: loss {history['loss'][e - 1]:.4f}, test accuracy {history['val_accuracy'][e - 1]:.4f}")

fig, ax = figure(1, 2, figsize=(10, 3.5))
if fig is not None:
    history.plot(ax=ax)
    fig.suptitle("MLP 64-128-64-10 on the digits: loss and accuracy per epoch")
save(fig)
