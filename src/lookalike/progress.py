"""Progress reporting: a live bar on a terminal, plain log lines otherwise (CI, pipes)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """A callable ``(done, total)`` that shows the rate (``unit``/s) and the time left.

    On a terminal it draws a tqdm bar; elsewhere it prints one line every ``interval``
    seconds, so logs stay readable.
    """

    def __init__(
        self, label: str = "indexing", *, unit: str = "files", stream: TextIO | None = None,
        interval: float = 5.0,
    ):
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.interval = interval
        self._bar = None
        self._start = time.perf_counter()
        self._last = self._start
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        if total == 0:
            return
        if self._tty:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=self.label, unit=self.unit, file=self.stream, smoothing=0.1)
            self._bar.update(done - self._bar.n)
            return
        now = time.perf_counter()
        if done == 0 or (done != total and now - self._last < self.interval):
            return
        self._last = now
        elapsed = now - self._start
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("nan")
        print(
            f"{self.label}: {done}/{total} {self.unit}, {rate:.1f} {self.unit}/s, ETA {eta:.0f} s",
            file=self.stream,
            flush=True,
        )

    def stage(self, label: str, unit: str) -> None:
        """Start a new stage of the same work (e.g. linking neighbours after indexing files):
        the next calls count ``unit`` under ``label``."""
        self.close()
        self._bar = None
        self.label, self.unit = label, unit
        self._start = self._last = time.perf_counter()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
