"""Training: the :class:`Trainer` loop, :class:`History`, callbacks, shorthands.

The package's modules, each small enough to read in one sitting:

* :mod:`dlcore.train.loop` -- :class:`Trainer` and :func:`fit`, :func:`evaluate`,
  :func:`predict`, :func:`penalize_weights` (the one L1/L2 mechanism, through the optimizer);
* :mod:`dlcore.train.callbacks` -- :class:`Callback`, :class:`EarlyStopping`,
  :class:`ModelCheckpoint`, :class:`TerminateOnNaN`, :class:`LambdaCallback`;
* :mod:`dlcore.train.history` -- :class:`History`;
* :mod:`dlcore.train.progress` -- the per-batch progress bar.
"""
from ._blas import blas_limit, resolve_blas_threads
from .callbacks import Callback, EarlyStopping, LambdaCallback, ModelCheckpoint, TerminateOnNaN, load_checkpoint
from .history import History
from .loop import ACCURACY_RULES, Trainer, evaluate, fit, penalize_weights, predict
from .progress import ProgressBar

__all__ = [
    "ACCURACY_RULES",
    "Callback",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "ModelCheckpoint",
    "ProgressBar",
    "TerminateOnNaN",
    "Trainer",
    "blas_limit",
    "evaluate",
    "fit",
    "load_checkpoint",
    "penalize_weights",
    "predict",
    "resolve_blas_threads",
]
