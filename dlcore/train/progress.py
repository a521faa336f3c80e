"""The per-batch progress display of :class:`~dlcore.train.Trainer`."""
from __future__ import annotations

import sys
from typing import Any, Optional, TextIO
import time

__all__ = ["ProgressBar"]


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
        if not self.enabled:
            return
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix_str(postfix, refresh=True)
            self.bar.close()
            return
        line = postfix if postfix else self._postfix
        self.stream.write(f"\r{self.desc} [{'=' * 20}] {self.count}/{self.total} {line}\n")
        self.stream.flush()
