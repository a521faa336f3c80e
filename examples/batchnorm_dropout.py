"""BatchNorm and dropout on and off: the same MLP on the 8x8 digits, four ways.

BatchNorm normalizes each hidden unit over the batch (then scales and shifts), which
lets a larger learning rate train quickly; dropout zeroes hidden units at random in
training (scaled by 1/(1-p)) and is switched off by ``model.eval()``, which narrows the
gap between training and test accuracy. The training set is kept small (300 samples)
so that overfitting shows.
Run: python examples/batchnorm_dropout.py
"""
import numpy as np

import dlcore
from dlcore import nn, optim
from dlcore.data import StandardScaler, load_digits, train_test_split
from dlcore.models import MLP
from dlcore.train import Trainer

from _example import epochs, figure, head, save

X, y = load_digits()
X = X.reshape(len(X), -1)
X_tr, X_te, y_tr, y_te = train_test_split(X, y, seed=0, stratify=True)
X_tr, y_tr = head(X_tr[:300], y_tr[:300])
scaler = StandardScaler().fit(X_tr)
X_tr, X_te = scaler.transform(X_tr).astype(np.float32), scaler.transform(X_te).astype(np.float32)

fig, ax = figure(figsize=(7, 4.5))
print(f"{'batch_norm':>10} {'dropout':>8}  {'loss ep1':>8} {'loss last':>9}  {'train acc':>9} {'test acc':>8}")
for batch_norm in (False, True):
    for dropout in (0.0, 0.5):
        dlcore.manual_seed(0)
        model = MLP([64, 256, 256, 10], dropout=dropout, batch_norm=batch_norm)
        trainer = Trainer(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
                          progress=False)
        history = trainer.fit(X_tr, y_tr, epochs=epochs(30), batch_size=32, seed=0)
        train_acc = trainer.evaluate(X_tr, y_tr)["accuracy"]     # eval mode: dropout off, BN running stats
        test_acc = trainer.evaluate(X_te, y_te)["accuracy"]
        print(f"{str(batch_norm):>10} {dropout:>8}  {history['loss'][0]:8.4f} {history['loss'][-1]:9.4f}  "
              f"{train_acc:9.4f} {test_acc:8.4f}")
        if fig is not None:
            ax.plot(history.epoch, history["loss"],
                    label=f"batch norm {batch_norm}, dropout {dropout}: test acc {test_acc:.3f}")
if fig is not None:
    ax.set(title="300 training digits, MLP 64-256-256-10", xlabel="epoch", ylabel="training loss", yscale="log")
    ax.legend(fontsize=8)
save(fig)

# Dropout in train vs eval mode on one input: random masks vs the identity.
drop = nn.Dropout(0.5)
x = np.ones((1, 8), np.float32)
print("Dropout(0.5) train mode:", drop(x)[0], "| eval mode:", drop.eval()(x)[0])
