"""Optimizers compared on one problem: the same MLP, init and batches on the 8x8 digits.

SGD, SGD with momentum, Nesterov, Adagrad, RMSprop, Adam and AdamW each train a copy of
one initial network for the same number of epochs; the table shows the training loss
after each epoch and the final test accuracy.
Run: python examples/optimizers_compared.py
"""
import numpy as np

import dlcore
from dlcore import nn, optim
from dlcore.data import StandardScaler, load_digits, train_test_split
from dlcore.models import MLP
from dlcore.train import Trainer

from _example import epochs as n_epochs, figure, head, save

X, y = load_digits()
X = X.reshape(len(X), -1)
X_tr, X_te, y_tr, y_te = train_test_split(X, y, seed=0, stratify=True)
X_tr, y_tr = head(X_tr, y_tr)
scaler = StandardScaler().fit(X_tr)
X_tr, X_te = scaler.transform(X_tr).astype(np.float32), scaler.transform(X_te).astype(np.float32)

dlcore.manual_seed(0)
initial = MLP([64, 64, 10]).state_dict()
setups = {
    "SGD lr=0.05": lambda p: optim.SGD(p, lr=0.05),
    "SGD+momentum 0.9": lambda p: optim.SGD(p, lr=0.05, momentum=0.9),
    "SGD+Nesterov": lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    "Adagrad lr=0.05": lambda p: optim.Adagrad(p, lr=0.05),
    "RMSprop lr=1e-3": lambda p: optim.RMSprop(p, lr=1e-3),
    "Adam lr=1e-3": lambda p: optim.Adam(p, lr=1e-3),
    "AdamW lr=1e-3": lambda p: optim.AdamW(p, lr=1e-3),
}
epochs = n_epochs(8)
fig, ax = figure(figsize=(7, 4.5))
print(f"{'optimizer':18s} " + " ".join(f"ep{e:<4d}" for e in range(1, epochs + 1)) + " test acc")
for name, make in setups.items():
    model = MLP([64, 64, 10])
    model.load_state_dict(initial)
    trainer = Trainer(model, nn.CrossEntropyLoss(), make(model.parameters()), progress=False)
    history = trainer.fit(X_tr, y_tr, epochs=epochs, batch_size=32, seed=1)
    acc = trainer.evaluate(X_te, y_te)["accuracy"]
    print(f"{name:18s} " + " ".join(f"{v:.3f}" for v in history["loss"]) + f"  {acc:.4f}")
    if fig is not None:
        ax.plot(history.epoch, history["loss"], marker="o", label=f"{name} (test acc {acc:.3f})")
if fig is not None:
    ax.set(title="one initial MLP, seven optimizers", xlabel="epoch", ylabel="training loss", yscale="log")
    ax.legend(fontsize=8)
save(fig)
