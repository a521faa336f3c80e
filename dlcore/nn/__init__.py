"""Layers, losses, containers and initializers with torch.nn's names and layouts.

Every module has an explicit ``backward``: ``model.backward(criterion.backward())`` is
backpropagation, written out layer by layer (see :mod:`dlcore.nn.module`).

* base: :class:`Module`, :class:`Parameter`
* layers: ``Linear``, ``Conv2d``, ``ConvTranspose2d``, ``MaxPool2d``, ``AvgPool2d``,
  ``MaxUnpool2d``, ``Flatten``, ``Dropout``, ``BatchNorm1d``, ``BatchNorm2d``,
  ``InstanceNorm2d``, ``Identity``
* activations: ``ReLU``, ``LeakyReLU``, ``Sigmoid``, ``Tanh``, ``SiLU``, ``Softmax``, ``LogSoftmax``
* containers: ``Sequential``, ``Residual``
* losses: ``MSELoss``, ``L1Loss``, ``BCELoss``, ``BCEWithLogitsLoss``, ``CrossEntropyLoss``,
  ``NLLLoss``, ``MultiMarginLoss``
* :mod:`dlcore.nn.init` (weight initializations), :func:`dlcore.nn.summary.summary`
  (also ``model.summary(input_shape)``)
"""
from .module import Module, Parameter  # noqa: F401
from . import init  # noqa: F401
from .layers import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .upsample import *  # noqa: F401,F403  (Upsample, Concat: what a U-Net adds)
