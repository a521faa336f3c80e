"""Helpers shared by the generative examples (vae_digits, dcgan_digits, diffusion_digits):
a PNG grid of images, and a timer. Not part of the library.

Like the other examples (see ``_example.py``): ``DLCORE_EXAMPLE_QUICK=1`` makes a smoke
run (a few steps, a one-epoch judge, no judge cache) whose meaningless grids go to
examples/output/quick/ (ignored by git), not over the committed ones in examples/output/
that the README shows; ``DLCORE_EXAMPLE_FIGURES=DIR`` saves the main sample grid also as
``DIR/<example>.png`` (the documentation's figure).
"""
import os
import sys
import time

import numpy as np

OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "output")
QUICK = os.environ.get("DLCORE_EXAMPLE_QUICK", "") not in ("", "0")
GRIDS = os.path.join(OUTPUT, "quick") if QUICK else OUTPUT  # where save_grid writes
FIGURES = os.environ.get("DLCORE_EXAMPLE_FIGURES") or None


def quick(full, small):
    """``small`` in a quick run (DLCORE_EXAMPLE_QUICK=1), else ``full``."""
    return small if QUICK else full


def judge_options(size):
    """Keyword arguments for DigitsFID: the cached 10-epoch judge, or a one-epoch judge
    that is not cached in a quick run (it would replace the real one's cache file)."""
    if QUICK:
        return {"size": size, "epochs": 1}
    return {"size": size, "cache": os.path.join(OUTPUT, f"judge_{size}.npz")}


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


def save_grid(images, name, nrow, zoom=2, figure=False):
    """Save ``image_grid(images, nrow)`` as ``<GRIDS>/<name>`` (a grey-scale PNG); returns the path.
    ``figure=True``: the example's main figure, also saved as ``$DLCORE_EXAMPLE_FIGURES/<example>.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(GRIDS, exist_ok=True)
    path = os.path.join(GRIDS, name)
    grid = image_grid(images, nrow, zoom=zoom)
    plt.imsave(path, grid, cmap="gray", vmin=0.0, vmax=1.0)
    if figure and FIGURES:
        os.makedirs(FIGURES, exist_ok=True)
        example = os.path.splitext(os.path.basename(sys.argv[0]))[0]
        plt.imsave(os.path.join(FIGURES, example + ".png"), grid, cmap="gray", vmin=0.0, vmax=1.0)
    return path


class Timer:
    """Seconds since creation: ``timer()``."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self):
        return time.perf_counter() - self.start
