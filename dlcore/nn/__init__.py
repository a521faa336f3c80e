"""Layers, losses, containers and initializers with torch.nn's names and layouts."""
from .module import Module, Parameter  # noqa: F401
from . import init  # noqa: F401
from .layers import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
