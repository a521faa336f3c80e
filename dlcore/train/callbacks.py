"""Callbacks: code the :class:`~dlcore.train.Trainer` runs at fixed points of training.

Each hook receives the trainer; ``trainer.stop_training = True`` ends training after the
current batch or epoch, and ``trainer.model`` / ``trainer.optimizer`` are the objects
being trained.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Union
import os

from .._checks import check_int, check_number

if TYPE_CHECKING:
    from ..nn import Module
    from ..optim.optimizer import Optimizer
    from .loop import Trainer

__all__ = ["Callback", "EarlyStopping", "LambdaCallback", "ModelCheckpoint", "TerminateOnNaN", "load_checkpoint"]


class Callback:
    """Hooks the Trainer calls; override the ones you need. ``trainer.stop_training = True``
    ends training after the current batch/epoch. Epochs and batches are 1-based."""

    def on_train_begin(self, trainer: Trainer) -> None:
        pass

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        pass

    def on_batch_end(self, trainer: Trainer, epoch: int, batch: int, logs: Dict[str, float]) -> None:
        pass

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Dict[str, float]) -> None:
        pass

    def on_train_end(self, trainer: Trainer) -> None:
        pass


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=lambda t, e, logs: ...)``."""

    def __init__(self, on_train_begin: Optional[Callable[..., Any]] = None,
                 on_epoch_begin: Optional[Callable[..., Any]] = None, on_batch_end: Optional[Callable[..., Any]] = None,
                 on_epoch_end: Optional[Callable[..., Any]] = None,
                 on_train_end: Optional[Callable[..., Any]] = None) -> None:
        for name, fn in list(locals().items()):
            if name != "self" and fn is not None:
                setattr(self, name, fn)


def _resolve_mode(mode, monitor):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if ("acc" in monitor or monitor.endswith(("f1", "precision", "recall"))) else "min"
    return mode


def _monitored(logs, monitor, who):
    if monitor not in logs:
        raise ValueError(
            f"{who}: monitor={monitor!r} is not among this epoch's metrics {sorted(logs)}"
            + ("; pass validation_data (or validation_split) to fit" if monitor.startswith("val_") else ""))
    return float(logs[monitor])


class EarlyStopping(Callback):
    """Stop when the monitored metric has not improved for ``patience`` epochs.

    The notes' early stopping: keep the parameters with the best validation error seen
    so far and stop once ``patience`` epochs in a row failed to beat it by more than
    ``min_delta``. With ``restore_best_weights=True`` the model gets the best epoch's
    parameters and buffers back when training ends, whether this callback stopped it or
    the epochs ran out.

    Args:
        monitor (str): a key of the epoch logs (default ``"val_loss"``).
        patience (int): epochs without improvement before stopping (default 5).
        min_delta (float): smallest change that counts as an improvement.
        restore_best_weights (bool): default True.
        mode (str): ``"min"``, ``"max"`` or ``"auto"`` (max for accuracies, else min).
        verbose (bool): print a line when it stops.

    Attributes: ``best``, ``best_epoch``, ``stopped_epoch`` (0 if it never stopped training).
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 restore_best_weights: bool = True,
                 mode: str = "auto", verbose: bool = True) -> None:
        self.monitor = str(monitor)
        self.patience = check_int(patience, "patience", 0)
        self.min_delta = abs(check_number(min_delta, "min_delta"))
        self.restore_best_weights = bool(restore_best_weights)
        self.mode = _resolve_mode(mode, self.monitor)
        self.verbose = bool(verbose)

    def on_train_begin(self, trainer):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = 0
        self.stopped_epoch = 0
        self.wait = 0
        self.best_state = None

    def _improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, trainer, epoch, logs):
        value = _monitored(logs, self.monitor, "EarlyStopping")
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_state = trainer.model.state_dict()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            trainer.stop_training = True
            if self.verbose:
                trainer._message(
                    f"EarlyStopping: {self.monitor} has not improved for {self.patience} epochs; "
                    f"stopping at epoch {epoch} (best {self.best:.4f} at epoch {self.best_epoch})")

    def on_train_end(self, trainer):
        if self.restore_best_weights and self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)
            if self.verbose:
                trainer._message(f"EarlyStopping: restored the weights of epoch {self.best_epoch}")


class ModelCheckpoint(Callback):
    """Save the model (and optionally the optimizer) with :func:`dlcore.save` after epochs.

    ``path`` may contain ``{epoch}`` and any log key as format fields, e.g.
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"``. ``dlcore.save`` writes atomically (temporary
    file, then rename), so an interrupted run never leaves a half-written checkpoint.
    The file holds ``{"model": state_dict, "epoch": int, "logs": {...}[, "optimizer": ...]}``;
    :func:`load_checkpoint` reads it back into a model.

    Args:
        path (str or PathLike): where to write.
        monitor (str): metric deciding "best" for ``save_best_only`` (default ``"val_loss"``).
        save_best_only (bool): write only when ``monitor`` improves.
        mode (str): ``"min"``, ``"max"`` or ``"auto"``.
        save_optimizer (bool): include ``optimizer.state_dict()``.
    """

    def __init__(self, path: Union[str, os.PathLike], monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto",
                 save_optimizer: bool = False, verbose: bool = False) -> None:
        self.path = os.fspath(path)
        self.monitor = str(monitor)
        self.save_best_only = bool(save_best_only)
        self.mode = _resolve_mode(mode, self.monitor)
        self.save_optimizer = bool(save_optimizer)
        self.verbose = bool(verbose)
        self.saved: List[str] = []

    def on_train_begin(self, trainer):
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, trainer, epoch, logs):
        from ..serialization import save

        if self.save_best_only:
            value = _monitored(logs, self.monitor, "ModelCheckpoint")
            better = value < self.best if self.mode == "min" else value > self.best
            if not better:
                return
            self.best = value
        path = self.path.format(epoch=epoch, **logs)
        payload = {
            "model": dict(trainer.model.state_dict()),
            "epoch": int(epoch),
            "logs": {k: float(v) for k, v in logs.items()},
        }
        if self.save_optimizer and trainer.optimizer is not None:
            payload["optimizer"] = trainer.optimizer.state_dict()
        save(payload, path)
        self.saved.append(path)
        if self.verbose:
            trainer._message(f"ModelCheckpoint: saved epoch {epoch} to {path}")


def load_checkpoint(path: Union[str, os.PathLike], model: Module, optimizer: Optional[Optimizer] = None) -> dict:
    """Load a :class:`ModelCheckpoint` file into ``model`` (and ``optimizer``); returns its dict."""
    from ..serialization import load

    payload = load(path)
    if not isinstance(payload, dict) or "model" not in payload:
        raise ValueError(f"{os.fspath(path)!r} is not a dlcore checkpoint (no 'model' entry)")
    model.load_state_dict(payload["model"])
    if optimizer is not None:
        if "optimizer" not in payload:
            raise KeyError(f"{os.fspath(path)!r} holds no optimizer state (save_optimizer=False)")
        optimizer.load_state_dict(payload["optimizer"])
    return payload


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch's loss is NaN or infinite.

    A diverging run (learning rate too high, say) otherwise keeps going with NaN weights.
    The message, printed and kept in ``message``, names the epoch and the batch.
    """

    def on_train_begin(self, trainer):
        self.message = None

    def on_batch_end(self, trainer, epoch, batch, logs):
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(loss):
            self.message = (f"TerminateOnNaN: the loss became {loss} at epoch {epoch}, batch {batch}; "
                            "training stopped (lower the learning rate?)")
            trainer.stop_training = True
            trainer._message(self.message)
