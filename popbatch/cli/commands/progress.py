"""Progress on stderr for long work, the same in every command.

:class:`ProgressBar` is a redrawn line: rows done (of the total when known),
rate and ETA, only on a terminal. :class:`Progress` is what a command that
takes a while (explain, drift, train, ...) uses: a line per stage with the
elapsed time, and for counted work the bar on a terminal or, in a log (stderr
not a terminal: cron, CI), a count line at most every ``LOG_SECONDS``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

import click


class ProgressBar:
    """Callable as ``progress(rows_done, total_or_None)``; redraws at most 10 times a second."""

    WIDTH = 30

    def __init__(
        self, stream: TextIO | None = None, enabled: bool | None = None, unit: str = "rows"
    ) -> None:
        self.stream = stream or sys.stderr
        self.unit = unit
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
                f"{done:,}/{total:,} {self.unit}  {rate:,.0f} {self.unit}/s  ETA {eta:,.0f} s"
            )
        else:
            text = f"{done:,} {self.unit}  {rate:,.0f} {self.unit}/s"
        self.stream.write("\r" + text + "\033[K")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """End the progress line so the next message starts on a clean line."""
        if self.drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.drawn = False


class Progress:
    """A command's progress: :meth:`stage` lines, and counted work by calling it.

    ``progress("rows read", done, total_or_None)``: on a terminal a bar (one per
    ``what``); in a log a count line every :data:`LOG_SECONDS`, so work shorter
    than that adds nothing to the log. ``quiet`` silences everything but warnings.
    """

    LOG_SECONDS = 10.0

    def __init__(
        self,
        command: str,
        quiet: bool = False,
        stream: TextIO | None = None,
        terminal: bool | None = None,
    ) -> None:
        self.command = command
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.started = time.perf_counter()
        self.bar: ProgressBar | None = None
        self.what: str | None = None
        self.logged = self.started

    def stage(self, message: str) -> None:
        """``<command>: [  12.3 s] <message>`` (warnings are shown even when quiet)."""
        if self.quiet and not message.startswith("warning:"):
            return
        self._end_bar()
        elapsed = time.perf_counter() - self.started
        self.stream.write(f"{self.command}: [{elapsed:7.1f} s] {message}\n")
        self.stream.flush()

    def __call__(self, what: str, done: int, total: int | None = None) -> None:
        if self.quiet:
            return
        new = what != self.what
        self.what = what
        if self.terminal:
            if new:
                self._end_bar()
                self.bar = ProgressBar(self.stream, enabled=True, unit=what)
            self.bar(done, total)
            return
        now = time.perf_counter()
        if now - self.logged >= self.LOG_SECONDS:
            self.logged = now
            of = f" of {total:,}" if total is not None else ""
            self.stage(f"{done:,}{of} {what}")

    def close(self) -> None:
        self._end_bar()

    def _end_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def bar_and_say(quiet: bool) -> tuple[ProgressBar, Callable[[str], None]]:
    """A bar for counted work and a stage-line printer that ends the bar first, so a
    line never lands in the middle of it (evaluate, model compare)."""
    progress = ProgressBar(enabled=False if quiet else None)

    def say(line: str) -> None:
        if not quiet:
            progress.close()
            click.echo(line, err=True)

    return progress, say
