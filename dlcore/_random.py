"""One source of randomness for everything dlcore draws (init, dropout, shuffling, augmentation).

``dlcore.manual_seed(seed)`` reseeds it; code that needs random numbers calls
:func:`generator` each time (never caches it), so a reseed reaches every user.
"""
import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed):
    """Seed every random choice dlcore makes; ``seed`` is a non-negative int."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    _generator = np.random.default_rng(int(seed))


def generator():
    """The shared ``numpy.random.Generator``."""
    return _generator
