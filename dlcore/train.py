"""The training loop: :class:`Trainer` (fit / evaluate / predict), :class:`History`, callbacks.

One optimization step on a mini-batch ``(xb, yb)`` is backpropagation written out::

    optimizer.zero_grad()                 # every param.grad = 0
    out  = model(xb)                      # forward: each layer keeps what backward needs
    loss = criterion(out, yb)             # a Python float
    g    = criterion.backward()           # dLoss/dout
    model.backward(g)                     # chain rule, last layer first; ADDS into .grad
    (+ penalty gradients, see below)
    optimizer.step()                      # e.g. w -= lr * w.grad

An epoch runs that over every mini-batch of a shuffled :class:`~dlcore.data.DataLoader`,
then (optionally) evaluates on validation data and calls the callbacks.

Parameter norm penalties (the notes' ``J~ = J + alpha * Omega(theta)``) apply to the
weights (parameters with two or more dimensions; biases and norm-layer scales are not
penalized, the usual choice)::

    l2:  Omega = 1/2 ||w||_2^2 -> grad += l2 * w          ("weight decay")
    l1:  Omega = ||w||_1       -> grad += l1 * sign(w)

The reported training ``loss`` includes the penalty (it is what is minimized);
``val_loss`` is the data loss alone.
"""
import math
import os
import shutil
import sys
import time

import numpy as np

from ._checks import check_int, check_number, describe
from .data import DataLoader

__all__ = [
    "Callback",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "ModelCheckpoint",
    "TerminateOnNaN",
    "Trainer",
    "blas_limit",
    "evaluate",
    "fit",
    "load_checkpoint",
    "predict",
    "resolve_blas_threads",
]


# ---------------------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------------------
class History:
    """Per-epoch metrics of one ``fit``: ``history["loss"]``, ``history["val_accuracy"]``, ...

    Attributes:
        history (dict): metric name -> list with one value per finished epoch. Keys:
            ``loss``, ``accuracy`` (classification), ``val_loss``, ``val_accuracy`` (with
            validation data), ``lr``, ``time`` (seconds the epoch took, validation included).
        epoch (list): epoch numbers (1-based).
    """

    def __init__(self):
        self.history = {}
        self.epoch = []

    def append(self, epoch, logs):
        self.epoch.append(epoch)
        for key, value in logs.items():
            column = self.history.setdefault(key, [math.nan] * (len(self.epoch) - 1))
            column.append(value)
        for key, column in self.history.items():
            if len(column) < len(self.epoch):
                column.append(math.nan)

    def __getitem__(self, key):
        if key not in self.history:
            raise KeyError(f"no metric {key!r} in this History; it has {sorted(self.history)}")
        return self.history[key]

    def __contains__(self, key):
        return key in self.history

    def __len__(self):
        return len(self.epoch)

    def keys(self):
        return self.history.keys()

    def last(self):
        """The logs of the last epoch as a dict."""
        return {k: v[-1] for k, v in self.history.items()} if self.epoch else {}

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, metrics={sorted(self.history)})"

    def plot(self, keys=None, path=None, ax=None):
        """Plot metrics against epochs (needs matplotlib): losses on the left axes,
        accuracies on the right. Saves to ``path`` when given; returns the figure."""
        try:
            import matplotlib

            if path is not None and ax is None:
                matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError("History.plot needs matplotlib: pip install matplotlib") from exc
        if keys is None:
            keys = [k for k in self.history if k not in ("time", "lr")]
        losses = [k for k in keys if "acc" not in k]
        accs = [k for k in keys if "acc" in k]
        if ax is None:
            fig, axes = plt.subplots(1, 2 if accs and losses else 1, figsize=(10 if accs and losses else 5, 3.5))
            axes = np.atleast_1d(axes)
        else:
            fig, axes = ax.figure, np.atleast_1d(ax)
        for group, a, label in ((losses, axes[0], "loss"), (accs, axes[-1], "accuracy")):
            for k in group:
                a.plot(self.epoch, self.history[k], marker="o", label=k)
            if group:
                a.set_xlabel("epoch")
                a.set_ylabel(label)
                a.legend()
        fig.tight_layout()
        if path is not None:
            fig.savefig(path)
        return fig


# ---------------------------------------------------------------------------------------
# Callbacks
# ---------------------------------------------------------------------------------------
class Callback:
    """Hooks the Trainer calls; override the ones you need. ``trainer.stop_training = True``
    ends training after the current batch/epoch. Epochs and batches are 1-based."""

    def on_train_begin(self, trainer):
        pass

    def on_epoch_begin(self, trainer, epoch):
        pass

    def on_batch_end(self, trainer, epoch, batch, logs):
        pass

    def on_epoch_end(self, trainer, epoch, logs):
        pass

    def on_train_end(self, trainer):
        pass


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=lambda t, e, logs: ...)``."""

    def __init__(self, on_train_begin=None, on_epoch_begin=None, on_batch_end=None,
                 on_epoch_end=None, on_train_end=None):
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

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, restore_best_weights=True,
                 mode="auto", verbose=True):
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

    def __init__(self, path, monitor="val_loss", save_best_only=False, mode="auto",
                 save_optimizer=False, verbose=False):
        self.path = os.fspath(path)
        self.monitor = str(monitor)
        self.save_best_only = bool(save_best_only)
        self.mode = _resolve_mode(mode, self.monitor)
        self.save_optimizer = bool(save_optimizer)
        self.verbose = bool(verbose)
        self.saved = []

    def on_train_begin(self, trainer):
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, trainer, epoch, logs):
        from .serialization import save

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


def load_checkpoint(path, model, optimizer=None):
    """Load a :class:`ModelCheckpoint` file into ``model`` (and ``optimizer``); returns its dict."""
    from .serialization import load

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


# ---------------------------------------------------------------------------------------
# Progress display
# ---------------------------------------------------------------------------------------
class _Progress:
    """A per-batch progress bar: tqdm when installed, else one updating plain-text line."""

    def __init__(self, total, desc, enabled, stream=None):
        self.enabled = enabled
        self.total = total
        self.desc = desc
        self.stream = stream if stream is not None else sys.stderr
        self.count = 0
        self.bar = None
        self._last = 0.0
        self._postfix = ""
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="batch", leave=True, file=self.stream,
                            dynamic_ncols=True, mininterval=0.2)
        except ImportError:
            self.bar = None

    def update(self, postfix):
        self.count += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.update(1)
            return
        self._postfix = postfix
        now = time.perf_counter()
        if now - self._last > 0.2 or self.count == self.total:
            self._last = now
            width = 20
            done = int(width * self.count / max(self.total, 1))
            bar = "=" * done + (">" if done < width else "") + " " * max(width - done - 1, 0)
            self.stream.write(f"\r{self.desc} [{bar}] {self.count}/{self.total} {postfix}")
            self.stream.flush()

    def close(self, postfix=None):
        if self.enabled:
            self._close(postfix)
        self.closed = True  # last: a Ctrl-C inside _close leaves it False (see _end_bar_line)

    def _close(self, postfix):
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix_str(postfix, refresh=True)
            self.bar.close()
            return
        line = postfix if postfix else self._postfix
        self.stream.write(f"\r{self.desc} [{'=' * 20}] {self.count}/{self.total} {line}\n")
        self.stream.flush()


def _close_epoch_bar(bar, logs, seen):
    """End an epoch's bar with its metrics: on the bar's line when that fits the terminal,
    else on a line of their own (a terminal or tqdm would cut the end of a long line,
    which is where the validation metrics are)."""
    rate = f"{seen / logs['time']:.0f} samples/s {logs['time']:.2f}s"
    summary = " ".join(f"{k}={v:.4f}" for k, v in logs.items() if k not in ("lr", "time"))
    # the plain bar's line; tqdm's adds a percentage, times and brackets (about 40 more)
    line = f"{bar.desc} [{'=' * 20}] {bar.count}/{bar.total} {summary} {rate}"
    if len(line) + (40 if bar.bar is not None else 0) < shutil.get_terminal_size((80, 24)).columns:
        bar.close(f"{summary} {rate}")
        return
    bar.close(rate)
    if bar.enabled:
        print(f"  {summary}", file=bar.stream, flush=True)


def _end_bar_line(bar):
    """After Ctrl-C inside an epoch: close its bar so that what follows starts a new line."""
    if bar is None or not bar.enabled or getattr(bar, "closed", False):
        return  # no bar, or it closed already (interrupted after the epoch)
    if bar.bar is not None and not bar.bar.disable:  # (tqdm sets disable once it starts closing)
        bar.bar.close()
    else:
        bar.stream.write("\n")
        bar.stream.flush()


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


# ---------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------
def _is_weight(name, param):
    return param.ndim >= 2


def resolve_blas_threads(n="auto"):
    """What ``blas_limit(n)`` applies: an int, or None for no limit (see :func:`blas_limit`)."""
    if n == "auto":
        from .backends import OPENMP_WORKERS_SLEEP, get_backend

        return None if get_backend() == "numpy" or OPENMP_WORKERS_SLEEP else 1
    return n


def blas_limit(n="auto"):
    """A context manager limiting BLAS (NumPy's matrix products) to ``n`` threads.

    ``"auto"`` means no limit, except on the compiled backend when the user made OpenMP's
    workers spin (``OMP_WAIT_POLICY=ACTIVE``; dlcore sets PASSIVE otherwise): spinning
    workers next to a BLAS pool oversubscribe the cores (STYLE.md pitfall 4). Measured on
    the shared 2-core machine with spinning workers, one training step of
    ``MLP([64, 256, 256, 10])`` on a batch of 32 took 0.226 s with the default BLAS pool
    and 0.028 s with one BLAS thread; a LeNet-5 step 0.57 s and 0.20 s. With sleeping
    workers the default pool is faster (LeNet-5 on digits: 0.30 s per epoch vs 0.36 s).
    Needs threadpoolctl; without it this does nothing. ``None`` also does nothing.
    """
    import contextlib

    n = resolve_blas_threads(n)
    if n is None:
        return contextlib.nullcontext()
    n = check_int(n, "blas_threads", 1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


class Trainer:
    """Fits a :class:`dlcore.nn.Module` with a loss and an optimizer, batch by batch.

    Args:
        model: the network (an ``nn.Module`` with ``forward``/``backward``).
        loss_fn: a loss Module (default ``nn.CrossEntropyLoss()``).
        optimizer: a :mod:`dlcore.optim` optimizer over ``model.parameters()`` (default
            ``optim.Adam(model.parameters(), lr=1e-3)``).
        callbacks: list of :class:`Callback` (``EarlyStopping``, ``ModelCheckpoint``, ...).
        scheduler: an ``optim.lr_scheduler`` object, stepped after every epoch.
        l1, l2 (float): penalty weights on the weights (see the module docstring).
        progress (bool): show a per-batch progress bar (tqdm if installed; plain otherwise)
            and a line per epoch.
        stream: where progress goes (default ``sys.stderr``).
        blas_threads: BLAS threads while training/evaluating (see :func:`blas_limit`;
            ``"auto"``: 1 on the compiled backend; None: leave BLAS alone).

    Accuracy is computed when it makes sense: class-index targets with ``(N, C)`` outputs
    (argmax), or a single-logit output with ``BCEWithLogitsLoss`` (threshold 0) /
    ``BCELoss`` (threshold 0.5).

    Example::

        trainer = Trainer(LeNet5(), nn.CrossEntropyLoss(), optim.Adam(model.parameters()))
        history = trainer.fit(X_train, y_train, epochs=10, validation_data=(X_val, y_val))
        trainer.evaluate(X_test, y_test)      # {'loss': ..., 'accuracy': ...}
    """

    def __init__(self, model, loss_fn=None, optimizer=None, callbacks=(), scheduler=None,
                 l1=0.0, l2=0.0, progress=True, stream=None, blas_threads="auto"):
        from . import nn, optim

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
        """Number of right predictions in a batch, or None when accuracy does not apply."""
        from . import nn

        yb = np.asarray(yb)
        out = np.asarray(out)
        if out.ndim == 2 and out.shape[1] > 1 and yb.ndim == 1 and yb.dtype.kind in "iu":
            return int(np.sum(np.argmax(out, axis=1) == yb))
        if isinstance(self.loss_fn, (nn.BCEWithLogitsLoss, nn.BCELoss)) and out.size == yb.size:
            threshold = 0.0 if isinstance(self.loss_fn, nn.BCEWithLogitsLoss) else 0.5
            return int(np.sum((out.reshape(-1) > threshold) == (yb.reshape(-1) > 0.5)))
        return None

    def _penalty(self):
        """Adds the penalty gradients into ``.grad``; returns the penalty's value."""
        if not (self.l1 or self.l2):
            return 0.0
        value = 0.0
        for name, p in self.model.named_parameters():
            if not _is_weight(name, p):
                continue
            if self.l2:
                value += 0.5 * self.l2 * float(np.sum(p.data.astype(np.float64) ** 2))
                p.accumulate_grad(self.l2 * p.data)
            if self.l1:
                value += self.l1 * float(np.sum(np.abs(p.data)))
                p.accumulate_grad(self.l1 * np.sign(p.data))
        return value

    def train_step(self, xb, yb):
        """One optimization step on one batch; returns ``(loss, outputs)``."""
        self.optimizer.zero_grad()
        out = self.model(xb)
        loss = float(self.loss_fn(out, yb))
        grad = self.loss_fn.backward()
        self.model.backward(grad)
        loss += self._penalty()
        self.optimizer.step()
        return loss, out

    # ---- public API ----------------------------------------------------------------------
    def fit(self, X, y=None, epochs=10, batch_size=32, validation_data=None, validation_split=0.0,
            shuffle=True, seed=None, transform=None, progress=None):
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
            with blas_limit(getattr(self, "blas_threads", "auto")):
                self._epochs(loader, epochs, validation_data, show)
        except KeyboardInterrupt:
            _end_bar_line(getattr(self, "_bar", None))
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
        bar = self._bar = _Progress(len(loader), f"Epoch {epoch}/{epochs}", show, self.stream)
        start = time.perf_counter()
        total_loss = 0.0
        seen = 0
        correct = 0
        has_acc = True
        for batch, (xb, yb) in enumerate(loader, 1):
            loss, out = self.train_step(xb, yb)
            n = len(xb)
            seen += n
            total_loss += loss * n
            c = self._correct(out, yb) if has_acc else None
            if c is None:
                has_acc = False
            else:
                correct += c
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
            val = self.evaluate(*validation_data, batch_size=max(256, loader.batch_size))
            logs.update({f"val_{k}": v for k, v in val.items()})
        lr = getattr(self.optimizer, "lr", None)
        if isinstance(lr, (int, float)):
            logs["lr"] = float(lr)
        logs["time"] = time.perf_counter() - start
        _close_epoch_bar(bar, logs, seen)
        return logs

    def evaluate(self, X, y, batch_size=256):
        """Mean loss (and accuracy when it applies) on ``(X, y)``, in eval mode, no updates."""
        X, y = np.asarray(X), np.asarray(y)
        if y.shape[:1] != X.shape[:1]:
            raise ValueError(f"y must have as many samples as X ({X.shape[0]}), got shape {y.shape}")
        was_training = self.model.training
        self.model.eval()
        total, correct, has_acc = 0.0, 0, True
        try:
            with blas_limit(getattr(self, "blas_threads", "auto")):
                for xb, yb in DataLoader(X, y, batch_size=batch_size):
                    out = self.model(xb)
                    total += float(self.loss_fn(out, yb)) * len(xb)
                    c = self._correct(out, yb) if has_acc else None
                    if c is None:
                        has_acc = False
                    else:
                        correct += c
        finally:
            self.model.train(was_training)
        result = {"loss": total / max(len(X), 1)}
        if has_acc:
            result["accuracy"] = correct / max(len(X), 1)
        return result

    def predict(self, X, batch_size=256):
        """The model's outputs for ``X`` (eval mode), computed in batches and concatenated."""
        return predict(self.model, X, batch_size)

    def predict_classes(self, X, batch_size=256):
        """``argmax`` of the outputs: predicted class indices (N,)."""
        return np.argmax(self.predict(X, batch_size), axis=1)


def predict(model, X, batch_size=256):
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


def fit(model, X, y, loss_fn=None, optimizer=None, epochs=10, batch_size=32, **kwargs):
    """Shorthand: ``Trainer(model, loss_fn, optimizer, ...).fit(X, y, epochs, batch_size, ...)``.

    Keyword arguments of :class:`Trainer` (``callbacks``, ``scheduler``, ``l1``, ``l2``,
    ``progress``) and of :meth:`Trainer.fit` are both accepted.
    """
    trainer_keys = {"callbacks", "scheduler", "l1", "l2", "progress", "stream"}
    t_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in trainer_keys}
    return Trainer(model, loss_fn, optimizer, **t_kwargs).fit(X, y, epochs=epochs, batch_size=batch_size, **kwargs)


def evaluate(model, X, y, loss_fn=None, batch_size=256):
    """Shorthand for ``Trainer(model, loss_fn, optimizer=...).evaluate(X, y)`` without an optimizer."""
    trainer = Trainer.__new__(Trainer)
    from . import nn

    trainer.model = model
    trainer.loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    return Trainer.evaluate(trainer, X, y, batch_size)
