"""The per-batch progress display of :class:`~dlcore.train.Trainer`."""
from __future__ import annotations

import shutil
import sys
from typing import Any, Optional, TextIO
import time

__all__ = ["ProgressBar", "close_epoch_bar", "end_bar_line"]


class ProgressBar:
    """A per-batch progress bar: tqdm when installed, else one updating plain-text line."""

    def __init__(self, total: int, desc: str, enabled: bool, stream: Optional[TextIO] = None) -> None:
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

    def update(self, postfix: str) -> None:
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

    def close(self, postfix: Optional[str] = None) -> None:
        if self.enabled:
            self._close(postfix)
        self.closed = True  # last: a Ctrl-C inside _close leaves it False (see end_bar_line)

    def _close(self, postfix: Optional[str]) -> None:
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix_str(postfix, refresh=True)
            self.bar.close()
            return
        line = postfix if postfix else self._postfix
        self.stream.write(f"\r{self.desc} [{'=' * 20}] {self.count}/{self.total} {line}\n")
        self.stream.flush()


def close_epoch_bar(bar, logs, seen):
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


def end_bar_line(bar):
    """After Ctrl-C inside an epoch: close its bar so that what follows starts a new line."""
    if bar is None or not bar.enabled or getattr(bar, "closed", False):
        return  # no bar, or it closed already (interrupted after the epoch)
    if bar.bar is not None and not bar.bar.disable:  # (tqdm sets disable once it starts closing)
        bar.bar.close()
    else:
        bar.stream.write("\n")
        bar.stream.flush()
