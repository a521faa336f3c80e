"""A variational autoencoder on the bundled digits at 28x28, trained on its ELBO.

The encoder maps an image to q(z|x) = N(mu, sigma^2) over a 16-dimensional code; a draw
z = mu + sigma * eps (the reparameterization trick) is decoded into Bernoulli pixel
probabilities; the loss is the negative ELBO = reconstruction (binary cross-entropy,
summed over pixels) + KL(q(z|x) || N(0, I)). Every gradient is written out in
dlcore.models.generative (VAE.backward, Reparameterize, GaussianKL).

Prints the held-out ELBO as training goes (it must rise), saves
examples/output/vae_samples.png (100 decoded z ~ N(0, I)) and vae_reconstructions.png
(held-out digits, odd rows, above their reconstructions, even rows), and ends with one
summary line (digits FID against held-out digits, see dlcore.metrics_fid).

Run: python examples/vae_digits.py [--epochs 150]
"""
import argparse

import numpy as np

import dlcore
from dlcore import optim
from dlcore.data import DataLoader
from dlcore.metrics_fid import DigitsFID
from dlcore.models import VAE
from dlcore.train import blas_limit

from _digits_common import Timer, judge_options, quick, save_grid

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=quick(150, 1))
parser.add_argument("--samples", type=int, default=quick(1000, 200), help="samples for the FID")
args = parser.parse_args()

timer = Timer()
print("backend:", dlcore.get_backend(), "| threads:", dlcore.get_num_threads())
# the judge: a LeNet-5 trained on the training split (cached); FID against the held-out digits
judge = DigitsFID(**judge_options(28))
print(f"judge: LeNet-5 test accuracy {judge.accuracy:.3f} ({timer():.0f} s)")
X_tr, X_te = judge.X_train, judge.X_test             # (1347 / 450, 1, 28, 28) in [0, 1]

dlcore.manual_seed(0)
vae = VAE(image_shape=(1, 28, 28), hidden=400, latent_dim=16)
print(f"VAE: {vae.num_parameters():,} parameters")
optimizer = optim.Adam(vae.parameters(), lr=1e-3)


def held_out_elbo():
    dlcore.manual_seed(1)                            # the same ε every time: a fair comparison
    return float(np.mean(vae.elbo(X_te)))


print(f"epoch   0  held-out ELBO {held_out_elbo():9.2f} nats per image")
with blas_limit("auto"):
    for epoch in range(1, args.epochs + 1):
        for xb in DataLoader(X_tr, batch_size=64, shuffle=True, seed=epoch):
            optimizer.zero_grad()
            loss = vae(xb)                           # per-sample negative ELBO
            vae.backward(np.full(len(xb), 1.0 / len(xb), dtype=np.float32))
            optimizer.step()
        if epoch % 25 == 0 or epoch == args.epochs:
            terms = vae.last_terms
            print(f"epoch {epoch:3d}  held-out ELBO {held_out_elbo():9.2f}  (last batch: reconstruction "
                  f"{terms['reconstruction']:.1f}, KL {terms['kl']:.1f})  ({timer():.0f} s)", flush=True)
train_time = timer()

samples = vae.sample(args.samples, rng=np.random.default_rng(0))
save_grid(samples[:100], "vae_samples.png", nrow=10, figure=True)
pairs = np.concatenate([X_te[:10], vae.reconstruct(X_te[:10]), X_te[10:20], vae.reconstruct(X_te[10:20])])
save_grid(pairs, "vae_reconstructions.png", nrow=10)

print(f"training {train_time:.0f} s, total {timer():.0f} s")
print(judge.summary(samples))
