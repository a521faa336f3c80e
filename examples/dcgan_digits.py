"""DCGAN on the bundled digits at 28x28: a generator and a discriminator trained against each other.

Radford et al.'s recipe, scaled down: G = transposed convolutions + BatchNorm + ReLU with a
Tanh output, D = convolutions + LeakyReLU(0.2); both Adam(lr=2e-4, betas=(0.5, 0.999));
the discriminator and the (non-saturating) generator updates alternate, one each per batch
(dlcore.models.gan_train_step, BCEWithLogitsLoss). The generator's weights are also
averaged (EMA), which steadies the samples of a small GAN; the samples come from that copy.

Saves examples/output/dcgan_samples.png (100 samples) and ends with one summary line
(digits FID against held-out digits, see dlcore.metrics_fid).

Run: python examples/dcgan_digits.py [--steps 1500]
"""
import argparse

import numpy as np

import dlcore
from dlcore import optim
from dlcore.metrics_fid import DigitsFID
from dlcore.models import DCGANDiscriminator, DCGANGenerator, gan_train_step
from dlcore.train import blas_limit

from _digits_common import Timer, judge_options, quick, save_grid

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=quick(1500, 5), help="training rounds (a D step and a G step on 64 images)")
parser.add_argument("--channels", type=int, default=16)
parser.add_argument("--samples", type=int, default=quick(1000, 200), help="samples for the FID")
args = parser.parse_args()

timer = Timer()
print("backend:", dlcore.get_backend(), "| threads:", dlcore.get_num_threads())
# the judge: a LeNet-5 trained on the training split (cached); FID against the held-out digits
judge = DigitsFID(**judge_options(28))
print(f"judge: LeNet-5 test accuracy {judge.accuracy:.3f} ({timer():.0f} s)")
X = judge.X_train * 2 - 1                            # (1347, 1, 28, 28) in G's Tanh range [-1, 1]

dlcore.manual_seed(0)
rng = np.random.default_rng(0)
latent = 64
G, D = DCGANGenerator(latent, args.channels), DCGANDiscriminator(args.channels)
print(f"generator {G.num_parameters():,} parameters, discriminator {D.num_parameters():,}")
g_opt = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
d_opt = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
ema = {k: v.copy() for k, v in G.state_dict().items()}

log = []
with blas_limit("auto"):
    for step in range(1, args.steps + 1):
        real = X[rng.integers(0, len(X), 64)]
        log.append(gan_train_step(G, D, g_opt, d_opt, real, latent, rng=rng))
        decay = min(0.999, (1 + step) / (10 + step))
        for k, v in G.state_dict().items():          # parameters and BatchNorm statistics
            ema[k] = decay * ema[k] + (1 - decay) * v
        if step % 250 == 0 or step == args.steps:
            d_loss, g_loss, d_real, d_fake = np.mean(log[-250:], axis=0)
            print(f"step {step:5d}  D loss {d_loss:.3f}  G loss {g_loss:.3f}  "
                  f"D(x) {d_real:.2f}  D(G(z)) {d_fake:.2f}  ({timer():.0f} s)", flush=True)
train_time = timer()

G.load_state_dict(ema)
G.eval()                                             # BatchNorm with its running statistics
with blas_limit("auto"):
    z = np.random.default_rng(1).standard_normal((args.samples, latent, 1, 1)).astype(np.float32)
    samples = np.concatenate([G(z[i:i + 250]) for i in range(0, len(z), 250)])
samples = (samples + 1) / 2
save_grid(samples[:100], "dcgan_samples.png", nrow=10, figure=True)

print(f"training {train_time:.0f} s, total {timer():.0f} s")
print(judge.summary(samples))
