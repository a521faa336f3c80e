"""Early stopping: stop when the validation loss stops improving, keep the best weights.

A wide MLP on a small training set (200 digits) overfits: the training loss keeps
falling while the validation loss turns up. ``EarlyStopping(patience=5)`` stops 5
epochs after the best validation loss and restores that epoch's weights;
``ModelCheckpoint`` keeps the best model on disk (written atomically).
Run: python examples/early_stopping.py
"""
import os
import tempfile

import numpy as np

import dlcore
from dlcore import nn, optim
from dlcore.data import StandardScaler, load_digits, train_test_split
from dlcore.models import MLP
from dlcore.train import EarlyStopping, ModelCheckpoint, Trainer, load_checkpoint

from _example import QUICK, figure, save

X, y = load_digits()
X = X.reshape(len(X), -1)
X_tr, X_rest, y_tr, y_rest = train_test_split(X, y, test_size=0.5, seed=0, stratify=True)
X_val, X_te, y_val, y_te = train_test_split(X_rest, y_rest, test_size=0.5, seed=0, stratify=True)
X_tr, y_tr = X_tr[:200], y_tr[:200]
max_epochs = 3 if QUICK else 200
scaler = StandardScaler().fit(X_tr)
X_tr, X_val, X_te = (scaler.transform(a).astype(np.float32) for a in (X_tr, X_val, X_te))

dlcore.manual_seed(0)
model = MLP([64, 512, 10])
path = os.path.join(tempfile.mkdtemp(), "best.npz")
stopper = EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)
checkpoint = ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
trainer = Trainer(model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=3e-3),
                  callbacks=[stopper, checkpoint], progress=False)
history = trainer.fit(X_tr, y_tr, epochs=max_epochs, batch_size=32, seed=0, validation_data=(X_val, y_val))

print("epoch  train loss  val loss  val acc")
for e, tl, vl, va in zip(history.epoch, history["loss"], history["val_loss"], history["val_accuracy"]):
    mark = "  <- best" if e == stopper.best_epoch else ""
    print(f"{e:5d}  {tl:10.4f}  {vl:8.4f}  {va:7.4f}{mark}")
print(f"stopped at epoch {stopper.stopped_epoch} of {max_epochs}; best epoch {stopper.best_epoch} "
      f"(val loss {stopper.best:.4f}), weights restored")
print("test accuracy with the restored weights:", round(trainer.evaluate(X_te, y_te)["accuracy"], 4))
fresh = MLP([64, 512, 10])
payload = load_checkpoint(path, fresh)
print(f"checkpoint on disk is epoch {payload['epoch']}; test accuracy "
      f"{Trainer(fresh, progress=False, optimizer=optim.SGD(fresh.parameters(), lr=0.1)).evaluate(X_te, y_te)['accuracy']:.4f}")

fig, ax = figure(figsize=(7, 4))
if fig is not None:
    ax.plot(history.epoch, history["loss"], label="training loss")
    ax.plot(history.epoch, history["val_loss"], label="validation loss")
    ax.axvline(stopper.best_epoch, color="k", linestyle="--", label=f"best epoch {stopper.best_epoch} (restored)")
    ax.set(title="early stopping: patience 5 on the validation loss", xlabel="epoch", ylabel="cross-entropy")
    ax.legend()
save(fig)
