"""Helpers shared by the generative examples (vae_digits, dcgan_digits, diffusion_digits):
a PNG grid of images, a timer, and quick mode. Not part of the library.

The grids go to examples/output/ (committed: the README shows them), except in quick mode
(``DLCORE_EXAMPLE_QUICK=1``, CI's smoke run), which trains for a few steps only and saves
its meaningless grids to examples/output/quick/ (ignored by git) instead.
"""
import os
import time

import numpy as np

from _example import QUICK

OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "output")
FIGURES = os.path.join(OUTPUT, "quick") if QUICK else OUTPUT
JUDGE_EPOCHS = 1 if QUICK else 10                    # the LeNet-5 judge's training epochs
os.makedirs(FIGURES, exist_ok=True)                 # the judge's cache goes there too


def image_grid(images, nrow, pad=1, zoom=2):
    """Tile ``(N, 1, H, W)`` images in [0, 1] into one 2-D array, ``nrow`` per row, each
    enlarged ``zoom`` times (nearest) and separated by ``pad`` mid-grey pixels."""
    images = np.clip(np.asarray(images, dtype=np.float32)[:, 0], 0, 1)
    images = images.repeat(zoom, axis=1).repeat(zoom, axis=2)
    n, h, w = images.shape
    ncol = nrow
    rows = -(-n // ncol)
    grid = np.full((rows * (h + pad) + pad, ncol * (w + pad) + pad), 0.5, dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, ncol)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = img
    return grid


def save_grid(images, name, nrow, zoom=2):
    """Save ``image_grid(images, nrow)`` as ``<FIGURES>/<name>`` (a grey-scale PNG); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(FIGURES, exist_ok=True)
    path = os.path.join(FIGURES, name)
    plt.imsave(path, image_grid(images, nrow, zoom=zoom), cmap="gray", vmin=0.0, vmax=1.0)
    return path


class Timer:
    """Seconds since creation: ``timer()``."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self):
        return time.perf_counter() - self.start


def quick(value, small):
    """``value``, or ``min(value, small)`` in quick mode."""
    return min(value, small) if QUICK else value
