"""A progress line on stderr: rows done (of the total when known), rate and ETA.

Only drawn on a terminal; cron logs and pipes get nothing from it.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Callable as ``progress(rows_done, total_or_None)``; redraws at most 10 times a second."""

    WIDTH = 30

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.started = time.perf_counter()
        self.last_draw = 0.0
        self.drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last_draw < 0.1 and (total is None or done < total):
            return
        self.last_draw = now
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        if total:
            share = min(done / total, 1.0)
            filled = int(share * self.WIDTH)
            eta = (total - done) / rate if rate else 0.0
            text = (
                f"[{'#' * filled}{'-' * (self.WIDTH - filled)}] {share:4.0%} "
                f"{done:,}/{total:,} rows  {rate:,.0f} rows/s  ETA {eta:,.0f} s"
            )
        else:
            text = f"{done:,} rows  {rate:,.0f} rows/s"
        self.stream.write("\r" + text + "\033[K")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """End the progress line so the next message starts on a clean line."""
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.drawn = False
