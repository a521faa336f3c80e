"""LeNet-5 on the handwritten digits resized to 28x28, with the compiled kernels.

Shows the model summary (61,706 parameters), trains with Adam, a cosine learning-rate
schedule and random shifts of up to 2 pixels (augmentation), with a progress bar, then
prints the test accuracy, the confusion matrix and the time per epoch.
(The same recipe as ``python -m dlcore train``, written out.)
Run: python examples/lenet5_digits.py
"""
import numpy as np

import dlcore
from dlcore import metrics, nn, optim
from dlcore.data import RandomShift, load_digits, train_test_split
from dlcore.models import LeNet5
from dlcore.train import Trainer

from _example import epochs, figure, head, save

print("backend:", dlcore.get_backend(), "| threads:", dlcore.get_num_threads())
X, y = load_digits(size=28)                          # (1797, 1, 28, 28) in [0, 1]
X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, seed=0, stratify=True)
X_tr, y_tr, X_te, y_te = head(X_tr, y_tr, X_te, y_te)
mean, std = X_tr.mean(), X_tr.std()                  # one mean/std: keeps the images' structure
X_tr, X_te = (X_tr - mean) / std, (X_te - mean) / std

dlcore.manual_seed(0)
model = LeNet5()
model.summary((1, 28, 28))
optimizer = optim.Adam(model.parameters(), lr=2e-3)
scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=12)
trainer = Trainer(model, nn.CrossEntropyLoss(), optimizer, scheduler=scheduler)
history = trainer.fit(X_tr, y_tr, epochs=epochs(12), batch_size=32, seed=0, validation_data=(X_te, y_te),
                      transform=RandomShift(2))

y_pred = trainer.predict_classes(X_te)
print(f"test accuracy: {metrics.accuracy_score(y_te, y_pred):.4f}")
print(metrics.confusion_matrix(y_te, y_pred))
print(f"seconds per epoch (median): {np.median(history['time']):.2f}")

fig, (ax_loss, ax_acc, ax_cm) = figure(1, 3, figsize=(13, 3.8))
if fig is not None:
    history.plot(ax=(ax_loss, ax_acc))
    cm = metrics.confusion_matrix(y_te, y_pred)
    ax_cm.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax_cm.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > cm.max() / 2 else "black")
    ax_cm.set(title="test confusion matrix", xlabel="predicted", ylabel="true", xticks=range(10), yticks=range(10))
    fig.suptitle("LeNet-5 on the digits (28x28)")
save(fig)
