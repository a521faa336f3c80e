"""Shared by the example scripts (not part of dlcore): quick mode and figure saving.

* ``DLCORE_EXAMPLE_QUICK=1`` -- every example trains for at most two epochs on a small
  slice of its data (a smoke run: CI runs all examples this way in well under 2 minutes).
  Its numbers are then meaningless; only that it runs is checked.
* ``DLCORE_EXAMPLE_FIGURES=DIR`` -- every example saves its figure as ``DIR/<example>.png``
  (the documentation's tutorial pages show them). Without it no file is written.
"""
import os
import sys

QUICK = os.environ.get("DLCORE_EXAMPLE_QUICK", "") not in ("", "0")
FIGURES = os.environ.get("DLCORE_EXAMPLE_FIGURES") or None


def epochs(n):
    """``n`` epochs, or at most two in quick mode."""
    return min(n, 2) if QUICK else n


def head(*arrays, n=120):
    """The arrays unchanged, or their first ``n`` rows in quick mode."""
    out = tuple(a[:n] for a in arrays) if QUICK else arrays
    return out if len(out) > 1 else out[0]


def figure(*args, **kwargs):
    """A matplotlib figure that is drawn off-screen (``plt.subplots`` arguments), or
    ``(None, None)`` when no figure is wanted."""
    if FIGURES is None:
        return None, None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save(fig):
    """Save ``fig`` as ``$DLCORE_EXAMPLE_FIGURES/<script name>.png`` (when set)."""
    if fig is None:
        return
    os.makedirs(FIGURES, exist_ok=True)
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0]
    path = os.path.join(FIGURES, f"{name}.png")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print("figure saved to", path)
