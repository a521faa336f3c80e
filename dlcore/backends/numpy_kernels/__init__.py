"""The NumPy twins: the readable specification of every kernel.

Each submodule matches one compiled stem in ``src/dlcore`` and defines the same names
with the same signatures (``n_threads`` is accepted and ignored).
"""
from .activation import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
