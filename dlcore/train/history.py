"""History: the per-epoch metrics of one ``fit``."""
from __future__ import annotations

import math
from typing import Any, Dict, KeysView, List, Optional, Sequence

import numpy as np

__all__ = ["History"]


class History:
    """Per-epoch metrics of one ``fit``: ``history["loss"]``, ``history["val_accuracy"]``, ...

    Attributes:
        history (dict): metric name -> list with one value per finished epoch. Keys:
            ``loss``, ``accuracy`` (classification), ``val_loss``, ``val_accuracy`` (with
            validation data), ``lr``, ``time`` (seconds the epoch took, validation included).
        epoch (list): epoch numbers (1-based).
    """

    def __init__(self) -> None:
        self.history: Dict[str, List[float]] = {}
        self.epoch: List[int] = []

    def append(self, epoch: int, logs: Dict[str, float]) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            column = self.history.setdefault(key, [math.nan] * (len(self.epoch) - 1))
            column.append(value)
        for key, column in self.history.items():
            if len(column) < len(self.epoch):
                column.append(math.nan)

    def __getitem__(self, key: str) -> List[float]:
        if key not in self.history:
            raise KeyError(f"no metric {key!r} in this History; it has {sorted(self.history)}")
        return self.history[key]

    def __contains__(self, key: object) -> bool:
        return key in self.history

    def __len__(self) -> int:
        return len(self.epoch)

    def keys(self) -> KeysView[str]:
        return self.history.keys()

    def last(self) -> Dict[str, float]:
        """The logs of the last epoch as a dict."""
        return {k: v[-1] for k, v in self.history.items()} if self.epoch else {}

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, metrics={sorted(self.history)})"

    def plot(self, keys: Optional[Sequence[str]] = None, path: Optional[str] = None, ax: Any = None) -> Any:
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
            axes = np.atleast_1d(ax)  # one Axes, or two (losses, accuracies)
            fig = axes[0].figure
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
