"""An autoencoder against PCA (via NumPy's SVD) on the 8x8 digits, code size k = 8.

A linear autoencoder x' = W2 (W1 x + b1) + b2 trained on the MSE spans the same
subspace as the top-k principal components (the notes: "PCA without an orthogonality
restriction"): its reconstruction error approaches PCA's, and the principal angles
between the two subspaces approach 0. A non-linear (ReLU) autoencoder can do better
than any linear projection on the training data.
Run: python examples/autoencoder_vs_pca.py
"""
import numpy as np

import dlcore
from dlcore import nn, optim
from dlcore.data import load_digits, train_test_split
from dlcore.models import Autoencoder
from dlcore.train import Trainer

from _example import epochs as n_epochs, figure, head, save

k = 8
X, y = load_digits()
X = X.reshape(len(X), -1)                        # (1797, 64) in [0, 1]
X_tr, X_te = train_test_split(X, seed=0)
X_tr = head(X_tr)

# PCA: the top-k right singular vectors of the centred data.
mean = X_tr.mean(axis=0)
_, s, Vt = np.linalg.svd(X_tr - mean, full_matrices=False)
V = Vt[:k].T                                     # (64, k), orthonormal columns


def pca_mse(data):
    code = (data - mean) @ V
    return float(np.mean((code @ V.T + mean - data) ** 2))


print(f"PCA (k={k}): explained variance {np.sum(s[:k] ** 2) / np.sum(s ** 2):.3f}, "
      f"train MSE {pca_mse(X_tr):.5f}, test MSE {pca_mse(X_te):.5f}")

models = {}
for name, kwargs, epochs in (("linear AE", dict(activation=None, out_activation=None), 60),
                             ("ReLU AE 64-32-8", dict(activation="relu", out_activation="sigmoid"), 60)):
    dlcore.manual_seed(0)
    sizes = [64, k] if kwargs["activation"] is None else [64, 32, k]
    ae = Autoencoder(sizes, **kwargs)
    trainer = Trainer(ae, nn.MSELoss(), optim.Adam(ae.parameters(), lr=3e-3), progress=False)
    history = trainer.fit(X_tr, X_tr, epochs=n_epochs(epochs), batch_size=32, seed=0)
    models[name] = ae
    test_mse = trainer.evaluate(X_te, X_te)["loss"]
    print(f"{name:16s}: train MSE epoch 1 {history['loss'][0]:.5f} -> {history['loss'][-1]:.5f}, "
          f"test MSE {test_mse:.5f}")
    if kwargs["activation"] is None:
        # The decoder's weight columns span the AE's subspace; compare it with PCA's.
        Q, _ = np.linalg.qr(ae.decoder[0].weight.data.astype(np.float64))
        cosines = np.linalg.svd(V.T @ Q, compute_uv=False)
        angles = np.degrees(np.arccos(np.clip(cosines, -1, 1)))
        print(f"{'':16s}  principal angles to the PCA subspace (degrees): {np.round(angles, 1)}")
        print(f"{'':16s}  (the direction of least variance is learned last: its gradient is the smallest)")
        W = ae.decoder[0].weight.data
        print(f"{'':16s}  decoder columns orthonormal? max |W^T W - I| = "
              f"{np.abs(W.T @ W - np.eye(k)).max():.3f} (PCA's are; the AE's need not be)")

# Eight test digits: the originals, PCA's reconstructions and each autoencoder's.
fig, axes = figure(2 + len(models), 8, figsize=(8, 1.1 * (2 + len(models)) + 0.4))
if fig is not None:
    samples = X_te[:8]
    rows = {"original": samples, f"PCA k={k}": ((samples - mean) @ V) @ V.T + mean}
    rows.update({name: ae.eval()(samples.astype(np.float32)) for name, ae in models.items()})
    for r, (label, images) in enumerate(rows.items()):
        for c in range(8):
            axes[r, c].imshow(np.asarray(images[c]).reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"reconstructions through an {k}-number code")
save(fig)
