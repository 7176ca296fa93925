"""The ``popbatch`` command: a thin click layer over the library.

Commands are loaded lazily, each from its own module, so ``popbatch --help``
stays fast and the scoring commands never import the training stack.
Every :class:`~batch.errors.PopbatchError` raised below is turned into a
one-line message and its exit code here, in one place.
"""

from __future__ import annotations

import importlib
import signal
import threading

import click

from popbatch.core import __version__
from popbatch.core.errors import EXIT_INTERRUPTED, PopbatchError, one_line

# name -> "module:attribute"; each module owns its options and help text.
COMMANDS: dict[str, str] = {
    "app": "popbatch.batch.commands.app:app",
    "drift": "popbatch.batch.commands.drift:drift",
    "sql": "popbatch.batch.commands.sql:sql",
    "explain": "popbatch.batch.commands.explain:explain",
    "export": "popbatch.batch.commands.export:export",
    "model": "popbatch.batch.commands.model:model",
    "score": "popbatch.batch.commands.score:score",
    "train": "popbatch.batch.commands.train:train",
}

EPILOG = """\b
Exit codes: 0 success, 1 run failed (I/O, model), 2 usage or input error,
3 drift detected, 75 target locked by another run, 130 interrupted."""


class UserFacingError(click.ClickException):
    """A popbatch error shown as ``Error: <one line>`` with its own exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class LazyGroup(click.Group):
    """A group whose commands are imported only when they are used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def main(self, *args, **kwargs):
        # Remember that Ctrl-C was pressed: a native extension imported at that
        # moment (onnxruntime) turns the KeyboardInterrupt into an ImportError
        # ("initialization failed"), which must still end as "interrupted", 130.
        previous = _install_interrupt_flag()
        try:
            return super().main(*args, **kwargs)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def make_context(self, *args, **kwargs) -> click.Context:
        # Ctrl-C while options are parsed: 130 like everywhere else, not click's
        # "Aborted!" with exit code 1.
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:
            raise UserFacingError(
                "interrupted; nothing partial was written", EXIT_INTERRUPTED
            ) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PopbatchError as exc:
            raise UserFacingError(one_line(exc), exc.exit_code) from exc
        except KeyboardInterrupt:
            raise UserFacingError(
                "interrupted; nothing partial was written", EXIT_INTERRUPTED
            ) from None
        except Exception:
            if _interrupted.is_set():  # an error caused by the interrupt
                raise UserFacingError(
                    "interrupted; nothing partial was written", EXIT_INTERRUPTED
                ) from None
            raise


_interrupted = threading.Event()


def _on_sigint(signum: int, frame: object) -> None:
    _interrupted.set()
    raise KeyboardInterrupt


def _install_interrupt_flag():
    """Handle SIGINT as Python does, but remember it; returns the previous handler
    (None when not in the main thread, where handlers cannot be set)."""
    _interrupted.clear()
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        return None  # SIGINT ignored or handled by an embedding program: leave it
    signal.signal(signal.SIGINT, _on_sigint)
    return previous


@click.group(cls=LazyGroup, epilog=EPILOG)
@click.version_option(__version__, prog_name="popbatch")
def cli() -> None:
    """Predict which music tracks will be popular, in batch.

    Train a stacked model, export it to ONNX, score catalogs from CSV,
    Parquet or DuckDB, and query the scores with SQL.
    """
