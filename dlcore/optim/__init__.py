"""Optimizers and learning-rate schedules, with torch.optim's names, defaults and numbers.

    >>> from dlcore import optim
    >>> opt = optim.Adam(model.parameters(), lr=1e-3)          # doctest: +SKIP
    >>> sched = optim.lr_scheduler.StepLR(opt, step_size=10)    # doctest: +SKIP

Each ``step()`` runs one fused update kernel per parameter (``sgd_step``, ``adam_step``,
...) from the active backend: compiled Cython+OpenMP by default, or the NumPy twins in
``dlcore.backends.numpy_kernels.optim``, which are the readable specification.
"""
from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "lr_scheduler"]
