"""The training loop: :class:`Trainer` (fit / evaluate / predict) and its shorthands.

One optimization step on a mini-batch ``(xb, yb)`` is backpropagation written out::

    optimizer.zero_grad()                 # every param.grad = 0
    out  = model(xb)                      # forward: each layer keeps what backward needs
    loss = criterion(out, yb)             # a Python float
    g    = criterion.backward()           # dLoss/dout
    model.backward(g)                     # chain rule, last layer first; ADDS into .grad
    optimizer.step()                      # e.g. w -= lr * (w.grad + weight_decay * w)

An epoch runs that over every mini-batch of a shuffled :class:`~dlcore.data.DataLoader`,
then (optionally) evaluates on validation data and calls the callbacks.

Norm penalties have one mechanism: the optimizer. The notes' ``J~ = J + alpha * Omega(theta)``
with ``Omega = 1/2 ||w||_2^2`` adds ``alpha * w`` to the gradient, which is the optimizer's
``weight_decay=alpha`` (for SGD, Adagrad, RMSprop and Adam; AdamW's decay is decoupled
and is not this penalty); ``Omega = ||w||_1`` adds ``alpha * sign(w)``, the optimizer's
``l1_decay=alpha``. Both apply to the parameters of the group they are set on. To penalize
the weights only (not biases or normalization scales, the usual choice) give the weights
their own group; :func:`penalize_weights` does that, and ``Trainer(l1=..., l2=...)`` calls
it. The training ``loss`` the Trainer reports then includes the penalty's value (it is
what is minimized); ``val_loss`` is the data loss alone.

Accuracy is computed as ``accuracy=`` says (:data:`ACCURACY_RULES`): ``"argmax"`` for class
scores ``(N, C)`` against int labels, ``"logit"`` (a positive logit means class 1),
``"probability"`` (above 0.5 means class 1), a function ``(out, y) -> number correct``, or
None; ``"auto"`` takes the rule listed for the loss's class and none for other losses.
"""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, TextIO, Tuple, Union
import math
import sys
import time

import numpy as np

from .._checks import check_int, check_number, describe
from .._typing import ArrayLike
from ..data import DataLoader
from ..nn.module import backward_from_data
from ._blas import blas_limit
from .callbacks import Callback
from .history import History
from .progress import ProgressBar, close_epoch_bar, end_bar_line

if TYPE_CHECKING:
    from ..nn import Module
    from ..optim.optimizer import Optimizer

#: ``accuracy=``: a rule's name, a function ``(outputs, targets) -> number right``, or None.
Accuracy = Union[str, Callable[[np.ndarray, np.ndarray], int], None]

__all__ = ["ACCURACY_RULES", "Trainer", "evaluate", "fit", "penalize_weights", "predict"]


# ---- accuracy ------------------------------------------------------------------------------
def _argmax_correct(out, y):
    if out.ndim != 2 or y.shape != out.shape[:1] or y.dtype.kind not in "iu":
        raise ValueError(f'accuracy="argmax" needs outputs (N, C) and int labels (N,), got outputs of '
                         f"shape {out.shape} and targets of shape {y.shape} and dtype {y.dtype}")
    return int(np.sum(np.argmax(out, axis=1) == y))


def _threshold_correct(threshold, name):
    def correct(out, y):
        if out.size != y.size:
            raise ValueError(f'accuracy="{name}" needs one output per target, got outputs of shape '
                             f"{out.shape} and targets of shape {y.shape}")
        return int(np.sum((out.reshape(-1) > threshold) == (y.reshape(-1) > 0.5)))

    return correct


_RULES = {
    "argmax": _argmax_correct,
    "logit": _threshold_correct(0.0, "logit"),
    "probability": _threshold_correct(0.5, "probability"),
}

#: The rule ``accuracy="auto"`` takes for each loss class; other losses get no accuracy.
ACCURACY_RULES = {
    "CrossEntropyLoss": "argmax",
    "NLLLoss": "argmax",
    "MultiMarginLoss": "argmax",
    "BCEWithLogitsLoss": "logit",
    "BCELoss": "probability",
}


def _accuracy_rule(accuracy, loss_fn):
    """The function counting right predictions in a batch, or None."""
    if accuracy == "auto":
        accuracy = ACCURACY_RULES.get(type(loss_fn).__name__)
    if accuracy is None or callable(accuracy):
        return accuracy
    if accuracy not in _RULES:
        raise ValueError(f"accuracy must be 'auto', {', '.join(map(repr, _RULES))}, None or a function, "
                         f"got {accuracy!r}")
    return _RULES[accuracy]


# ---- penalties -----------------------------------------------------------------------------
def _is_weight(param):
    return param.ndim >= 2


def penalize_weights(optimizer: Optimizer, l1: float = 0.0, l2: float = 0.0) -> Optimizer:
    """Add an L1/L2 penalty on the weights (parameters of two or more dimensions) to ``optimizer``.

    Each parameter group is split: its weights move into a copy of the group with
    ``weight_decay`` increased by ``l2`` and ``l1_decay`` increased by ``l1``; biases and
    normalization scales stay where they were. Returns the optimizer.
    """
    from ..optim import AdamW

    l1 = check_number(l1, "l1", 0.0)
    l2 = check_number(l2, "l2", 0.0)
    if l2 and isinstance(optimizer, AdamW):
        raise ValueError("l2 cannot be added to AdamW, whose weight_decay is decoupled decay rather than "
                         "an L2 penalty; use AdamW's weight_decay, or Adam(weight_decay=...)")
    if not (l1 or l2):
        return optimizer
    groups = []
    for group in optimizer.param_groups:
        weights = [p for p in group["params"] if _is_weight(p)]
        others = [p for p in group["params"] if not _is_weight(p)]
        if others:
            groups.append({**group, "params": others})
        if weights:
            groups.append({**group, "params": weights, "weight_decay": group.get("weight_decay", 0.0) + l2,
                           "l1_decay": group.get("l1_decay", 0.0) + l1})
    optimizer.param_groups = []
    for group in groups:
        optimizer.add_param_group(group)
    return optimizer


def _check_optimizer_params(optimizer, model, loss_fn):
    """An optimizer built over another model's parameters would train nothing, silently."""
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list):
        return  # not a dlcore optimizer: nothing to check
    ours = {id(p) for p in model.parameters()} | {id(p) for p in loss_fn.parameters()}
    foreign = sum(1 for g in groups for p in g.get("params", ()) if id(p) not in ours)
    if foreign:
        total = sum(len(g.get("params", ())) for g in groups)
        raise ValueError(
            f"optimizer updates {foreign} of its {total} parameters that are not the model's: build it "
            "over this model's parameters, e.g. optim.Adam(model.parameters())")


class Trainer:
    """Fits a :class:`dlcore.nn.Module` with a loss and an optimizer, batch by batch.

    Args:
        model: the network (an ``nn.Module`` with ``forward``/``backward``).
        loss_fn: a loss Module (default ``nn.CrossEntropyLoss()``).
        optimizer: a :mod:`dlcore.optim` optimizer over ``model.parameters()`` (default
            ``optim.Adam(model.parameters(), lr=1e-3)``).
        callbacks: list of :class:`Callback` (``EarlyStopping``, ``ModelCheckpoint``, ...).
        scheduler: an ``optim.lr_scheduler`` object, stepped after every epoch.
        l1, l2 (float): L1/L2 penalties on the weights, applied by the optimizer: a
            shorthand for :func:`penalize_weights` (see the module docstring).
        accuracy: how to count right predictions: ``"auto"`` (the rule
            :data:`ACCURACY_RULES` gives the loss), ``"argmax"``, ``"logit"``,
            ``"probability"``, a function ``(outputs, targets) -> int``, or None (no accuracy).
        progress (bool): show a per-batch progress bar (tqdm if installed; plain otherwise)
            and a line per epoch.
        stream: where progress goes (default ``sys.stderr``).
        blas_threads: BLAS threads while training/evaluating (see
            :func:`dlcore.train.blas_limit`; None: leave BLAS alone).

    Example::

        trainer = Trainer(LeNet5(), nn.CrossEntropyLoss(), optim.Adam(model.parameters()))
        history = trainer.fit(X_train, y_train, epochs=10, validation_data=(X_val, y_val))
        trainer.evaluate(X_test, y_test)      # {'loss': ..., 'accuracy': ...}
    """

    def __init__(self, model: Module, loss_fn: Optional[Module] = None, optimizer: Optional[Optimizer] = None,
                 callbacks: Sequence[Callback] = (), scheduler: Any = None, l1: float = 0.0, l2: float = 0.0,
                 progress: bool = True, stream: Optional[TextIO] = None,
                 blas_threads: Union[int, str, None] = "auto", accuracy: Accuracy = "auto") -> None:
        from .. import nn, optim

        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a dlcore.nn.Module, got {describe(model)}")
        self.model = model
        self.loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
        if not isinstance(self.loss_fn, nn.Module):
            raise TypeError(f"loss_fn must be a dlcore loss Module, got {describe(self.loss_fn)}")
        self.optimizer = optimizer if optimizer is not None else optim.Adam(model.parameters(), lr=1e-3)
        _check_optimizer_params(self.optimizer, model, self.loss_fn)
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback objects, got {describe(cb)}")
        self.scheduler = scheduler
        self.l1 = check_number(l1, "l1", 0.0)
        self.l2 = check_number(l2, "l2", 0.0)
        penalize_weights(self.optimizer, self.l1, self.l2)
        self.accuracy = _accuracy_rule(accuracy, self.loss_fn)
        self.progress = bool(progress)
        self.stream = stream
        self.blas_threads = blas_threads
        self.stop_training = False
        self.history = History()

    # ---- helpers -------------------------------------------------------------------------
    def _message(self, text):
        stream = self.stream if self.stream is not None else sys.stderr
        print(text, file=stream, flush=True)

    def _call(self, hook, *args):
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def _correct(self, out, yb):
        """Number of right predictions in a batch (None: accuracy is not computed)."""
        return None if self.accuracy is None else self.accuracy(np.asarray(out), np.asarray(yb))

    def _penalty(self):
        """The value of the weight penalty (its gradient is the optimizer's business)."""
        value = 0.0
        for p in self.model.parameters():
            if _is_weight(p) and self.l2:
                value += 0.5 * self.l2 * float(np.sum(p.data.astype(np.float64) ** 2))
            if _is_weight(p) and self.l1:
                value += self.l1 * float(np.sum(np.abs(p.data)))
        return value

    def train_step(self, xb: np.ndarray, yb: np.ndarray) -> Tuple[float, Any]:
        """One optimization step on one batch; returns ``(loss, outputs)``."""
        self.optimizer.zero_grad()
        out = self.model(xb)
        loss = float(self.loss_fn(out, yb))
        grad = self.loss_fn.backward(None)  # None: the loss's default upstream gradient (1)
        backward_from_data(self.model, grad)  # the batch is data: no dL/dinput
        loss += self._penalty()      # before the step: the penalty of the weights the gradient saw
        self.optimizer.step()
        return loss, out

    # ---- public API ----------------------------------------------------------------------
    def fit(self, X: ArrayLike, y: Optional[ArrayLike] = None, epochs: int = 10, batch_size: int = 32,
            validation_data: Optional[Tuple[ArrayLike, ArrayLike]] = None, validation_split: float = 0.0,
            shuffle: bool = True, seed: Optional[int] = None, transform: Optional[Callable[..., Any]] = None,
            progress: Optional[bool] = None) -> History:
        """Train for ``epochs`` passes over ``(X, y)``; returns the :class:`History`.

        Args:
            X, y: training inputs and targets (int class labels for CrossEntropyLoss;
                ``y = X`` (flattened) for an autoencoder).
            epochs (int), batch_size (int).
            validation_data: ``(X_val, y_val)`` evaluated after each epoch.
            validation_split (float): instead, hold out this last fraction of ``(X, y)``.
            shuffle (bool): new order each epoch. seed (int or None): the loader's seed.
            transform: augmentation applied to each training batch.
            progress (bool or None): override the Trainer's setting for this call.

        The model is left in eval mode afterwards (``model.train()`` to continue by hand).
        """
        epochs = check_int(epochs, "epochs", 1)
        batch_size = check_int(batch_size, "batch_size", 1)
        show = self.progress if progress is None else bool(progress)
        X = np.asarray(X)
        if y is None:
            raise ValueError("fit needs targets y (for an autoencoder pass y=X.reshape(len(X), -1))")
        y = np.asarray(y)
        if y.shape[:1] != X.shape[:1]:
            raise ValueError(f"y must have as many samples as X ({X.shape[0]}), got shape {y.shape}")
        validation_split = check_number(validation_split, "validation_split", 0.0, 1.0)
        if validation_data is None and validation_split > 0:
            n_val = int(math.ceil(len(X) * validation_split))
            if not 0 < n_val < len(X):
                raise ValueError(f"validation_split={validation_split} leaves no training or validation data")
            X, validation_data = X[:-n_val], (X[-n_val:], y[-n_val:])
            y = y[:-n_val]
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError(f"validation_data must be a pair (X_val, y_val), got {describe(validation_data)}")
        loader = DataLoader(X, y, batch_size=batch_size, shuffle=shuffle, seed=seed, transform=transform)
        self.stop_training = False
        self.history = History()
        self._call("on_train_begin")
        try:
            with blas_limit(self.blas_threads):
                self._epochs(loader, epochs, validation_data, show)
        except KeyboardInterrupt:
            end_bar_line(getattr(self, "_bar", None))
            raise
        finally:
            self.model.eval()
        self._call("on_train_end")
        return self.history

    def _epochs(self, loader, epochs, validation_data, show):
        for epoch in range(1, epochs + 1):
            logs = self._run_epoch(loader, epoch, epochs, validation_data, show)
            if logs is None:        # stopped inside the epoch (TerminateOnNaN)
                break
            self.history.append(epoch, logs)
            self._call("on_epoch_end", epoch, logs)
            if self.scheduler is not None:
                self.scheduler.step()
            if self.stop_training:
                break

    def _run_epoch(self, loader, epoch, epochs, validation_data, show):
        self.model.train()
        self._call("on_epoch_begin", epoch)
        bar = self._bar = ProgressBar(len(loader), f"Epoch {epoch}/{epochs}", show, self.stream)
        start = time.perf_counter()
        total_loss = 0.0
        seen = 0
        correct = 0
        has_acc = self.accuracy is not None
        for batch, (xb, yb) in enumerate(loader, 1):
            loss, out = self.train_step(xb, yb)
            n = len(xb)
            seen += n
            total_loss += loss * n
            if has_acc:
                correct += self._correct(out, yb)
            self._call("on_batch_end", epoch, batch, {"loss": loss, "batch_size": n})
            elapsed = time.perf_counter() - start
            postfix = f"loss={total_loss / seen:.4f}"
            if has_acc:
                postfix += f" acc={correct / seen:.4f}"
            postfix += f" {seen / max(elapsed, 1e-9):.0f} samples/s"
            bar.update(postfix)
            if self.stop_training:
                bar.close()
                return None
        logs = {"loss": total_loss / max(seen, 1)}
        if has_acc:
            logs["accuracy"] = correct / max(seen, 1)
        if validation_data is not None:
            X_val, y_val = validation_data
            val = self.evaluate(X_val, y_val, batch_size=max(256, loader.batch_size))
            logs.update({f"val_{k}": v for k, v in val.items()})
        lr = getattr(self.optimizer, "lr", None)
        if isinstance(lr, (int, float)):
            logs["lr"] = float(lr)
        logs["time"] = time.perf_counter() - start
        close_epoch_bar(bar, logs, seen)
        return logs

    def evaluate(self, X: ArrayLike, y: ArrayLike, batch_size: int = 256) -> Dict[str, float]:
        """Mean loss (and accuracy when computed) on ``(X, y)``: :func:`evaluate` with this
        trainer's model, loss, accuracy rule and BLAS setting."""
        return evaluate(self.model, X, y, self.loss_fn, batch_size, accuracy=self.accuracy,
                        blas_threads=self.blas_threads)

    def predict(self, X: ArrayLike, batch_size: int = 256) -> np.ndarray:
        """The model's outputs for ``X`` (eval mode), computed in batches and concatenated."""
        return predict(self.model, X, batch_size)

    def predict_classes(self, X: ArrayLike, batch_size: int = 256) -> np.ndarray:
        """``argmax`` of the outputs: predicted class indices (N,)."""
        return np.argmax(self.predict(X, batch_size), axis=1)


def predict(model: Module, X: ArrayLike, batch_size: int = 256) -> np.ndarray:
    """Outputs of ``model`` on ``X`` in eval mode, batch by batch."""
    batch_size = check_int(batch_size, "batch_size", 1)
    X = np.asarray(X)
    was_training = model.training
    model.eval()
    try:
        with blas_limit("auto"):
            outs = [np.asarray(model(xb)) for xb in DataLoader(X, batch_size=batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(outs, axis=0) if outs else np.empty((0,))


def evaluate(model: Module, X: ArrayLike, y: ArrayLike, loss_fn: Optional[Module] = None, batch_size: int = 256,
             accuracy: Accuracy = "auto", blas_threads: Union[int, str, None] = "auto") -> Dict[str, float]:
    """Mean loss (and accuracy, see :class:`Trainer`'s ``accuracy``) of ``model`` on ``(X, y)``.

    Runs in eval mode, batch by batch, without touching the parameters; the model's mode
    is restored afterwards. ``loss_fn`` defaults to ``nn.CrossEntropyLoss()``.
    Returns ``{"loss": float[, "accuracy": float]}``.
    """
    from .. import nn

    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a dlcore.nn.Module, got {describe(model)}")
    if not isinstance(loss_fn, nn.Module):
        raise TypeError(f"loss_fn must be a dlcore loss Module, got {describe(loss_fn)}")
    correct_in = _accuracy_rule(accuracy, loss_fn)
    batch_size = check_int(batch_size, "batch_size", 1)
    X, y = np.asarray(X), np.asarray(y)
    if y.shape[:1] != X.shape[:1]:
        raise ValueError(f"y must have as many samples as X ({X.shape[0]}), got shape {y.shape}")
    was_training = model.training
    model.eval()
    total, correct = 0.0, 0
    try:
        with blas_limit(blas_threads):
            for xb, yb in DataLoader(X, y, batch_size=batch_size):
                out = model(xb)
                total += float(loss_fn(out, yb)) * len(xb)
                if correct_in is not None:
                    correct += correct_in(np.asarray(out), np.asarray(yb))
    finally:
        model.train(was_training)
    result = {"loss": total / max(len(X), 1)}
    if correct_in is not None:
        result["accuracy"] = correct / max(len(X), 1)
    return result


def fit(model: Module, X: ArrayLike, y: ArrayLike, loss_fn: Optional[Module] = None,
        optimizer: Optional[Optimizer] = None, epochs: int = 10, batch_size: int = 32, **kwargs: Any) -> History:
    """Shorthand: ``Trainer(model, loss_fn, optimizer, ...).fit(X, y, epochs, batch_size, ...)``.

    Every other keyword goes to :class:`Trainer` or to :meth:`Trainer.fit`, whichever
    takes it (decided from their signatures); one neither takes raises ``TypeError``.
    """
    trainer_keys = set(inspect.signature(Trainer).parameters)
    fit_keys = set(inspect.signature(Trainer.fit).parameters) - {"self"}
    unknown = sorted(set(kwargs) - trainer_keys - fit_keys)
    if unknown:
        raise TypeError(f"fit() got unexpected keyword arguments {unknown}")
    t_kwargs = {k: v for k, v in kwargs.items() if k in trainer_keys}
    f_kwargs = {k: v for k, v in kwargs.items() if k not in trainer_keys}
    return Trainer(model, loss_fn, optimizer, **t_kwargs).fit(X, y, epochs=epochs, batch_size=batch_size,
                                                              **f_kwargs)
