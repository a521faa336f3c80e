"""A denoising diffusion model (DDPM) on the bundled digits (8x8, or 16x16), with the compiled kernels.

The forward process adds Gaussian noise in T = 1000 steps (Ho et al.'s linear schedule,
β from 1e-4 to 0.02); a small U-Net learns ε_θ(x_t, t), the noise in x_t, by the
ε-prediction loss; samples are drawn by DDIM (50 deterministic steps) for the FID and by
DDPM's ancestral sampler (all 1000 steps) for the reverse-process strip. An exponential
moving average (EMA) of the weights is what samples (it smooths the last steps' noise).

Saves examples/output/diffusion_samples.png (100 samples), diffusion_forward.png (x_0 → x_T
for a few training digits) and diffusion_reverse.png (x_T → x_0 by ancestral sampling),
and ends with one summary line (digits FID against held-out digits, see dlcore.metrics_fid).

Run: python examples/diffusion_digits.py [--steps 2000] [--size 8] [--channels 16]
"""
import argparse

import numpy as np

import dlcore
from dlcore import optim
from dlcore.diffusion import GaussianDiffusion, UNet, linear_schedule
from dlcore.metrics_fid import DigitsFID
from dlcore.train import blas_limit

from _digits_common import Timer, judge_options, quick, save_grid

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=quick(2000, 5), help="training steps (batches of 64)")
parser.add_argument("--size", type=int, default=8, help="image side: 8 (the digits' own), or 16 (4x the work)")
parser.add_argument("--channels", type=int, default=16, help="U-Net width C (2C at half resolution)")
parser.add_argument("--samples", type=int, default=quick(1000, 200), help="samples for the FID")
parser.add_argument("--ddim-steps", type=int, default=quick(50, 5))
args = parser.parse_args()

timer = Timer()
print("backend:", dlcore.get_backend(), "| threads:", dlcore.get_num_threads())
# the judge: a LeNet-5 trained on the training split (cached); FID against the held-out digits
judge = DigitsFID(**judge_options(args.size))
print(f"judge: LeNet-5 test accuracy {judge.accuracy:.3f} ({timer():.0f} s)")
X0 = judge.X_train * 2 - 1                           # (1347, 1, size, size) in [-1, 1]
S = args.size

dlcore.manual_seed(0)
rng = np.random.default_rng(0)
diffusion = GaussianDiffusion(linear_schedule(1000, 1e-4, 0.02))
model = UNet(in_channels=1, channels=args.channels, emb_dim=64)
params = list(model.parameters())
print(f"U-Net: {model.num_parameters():,} parameters")
optimizer = optim.Adam(params, lr=2e-3)
scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps, eta_min=1e-4)
ema = [p.data.copy() for p in params]

losses = []
with blas_limit("auto"):
    for step in range(1, args.steps + 1):
        batch = X0[rng.integers(0, len(X0), 64)]
        optimizer.zero_grad()
        losses.append(diffusion.training_loss(model, batch, rng=rng))
        optimizer.step()
        scheduler.step()
        decay = min(0.995, (1 + step) / (10 + step))     # EMA with a warm-up
        for e, p in zip(ema, params):
            e *= decay
            e += (1 - decay) * p.data
        if step % 250 == 0 or step == args.steps:
            print(f"step {step:5d}  loss {np.mean(losses[-250:]):.4f}  ({timer():.0f} s)", flush=True)
train_time = timer()

for e, p in zip(ema, params):                       # sample with the averaged weights
    p.data[...] = e
model.eval()

with blas_limit("auto"):
    # the paper's step numbers: x_0 (data) ... x_1000 (noise); q_sample's 0-based t = k - 1
    ks = [0, 50, 100, 200, 300, 400, 500, 600, 700, 800, 1000]
    x = X0[:6]
    strip = [x if k == 0 else diffusion.q_sample(x, k - 1, rng=rng) for k in ks]
    strip = np.stack(strip, axis=1).reshape(-1, 1, S, S)
    save_grid((strip + 1) / 2, "diffusion_forward.png", nrow=len(ks), zoom=48 // S)

    # reverse process: ancestral sampling over all 1000 steps, recorded at the same steps
    keys = ks[::-1]
    _, record = diffusion.ddpm_sample(model, (6, 1, S, S), rng=rng, keep=keys)
    strip = np.stack([record[k] for k in keys], axis=1).reshape(-1, 1, S, S)
    save_grid((strip + 1) / 2, "diffusion_reverse.png", nrow=len(keys), zoom=48 // S)

    # samples for the FID: DDIM, deterministic given x_T
    samples = []
    for i in range(0, args.samples, 250):
        n = min(250, args.samples - i)
        samples.append(diffusion.ddim_sample(model, (n, 1, S, S), steps=args.ddim_steps, rng=rng))
    samples = (np.concatenate(samples) + 1) / 2
save_grid(samples[:100], "diffusion_samples.png", nrow=10, zoom=48 // S, figure=True)

print(f"training {train_time:.0f} s, total {timer():.0f} s")
print(judge.summary(samples))
