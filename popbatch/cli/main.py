"""The ``popbatch`` command: a thin click layer over the library.

Commands are loaded lazily, each from its own module, so ``popbatch --help``
imports none of them (it lists them from :data:`COMMANDS`) and the scoring
commands never import the training stack.
Every :class:`~popbatch.core.errors.PopbatchError` raised below is turned into a
one-line message and its exit code here, in one place.
"""

from __future__ import annotations

import importlib
import signal
import threading
from typing import NamedTuple

import click

from popbatch.core import __version__
from popbatch.core.errors import EXIT_INTERRUPTED, PopbatchError, one_line


class Entry(NamedTuple):
    """Where a command lives, and the line ``popbatch --help`` shows for it."""

    target: str
    """``module:attribute`` of the click command; each module owns its options and help."""
    short_help: str
    """The first sentence of the command's help, kept here so listing the commands
    imports none of them (``tests/test_cli_basics.py`` checks it matches the command)."""


COMMANDS: dict[str, Entry] = {
    "app": Entry(
        "popbatch.cli.commands.app:app",
        "Try the model in a browser: type in a track, upload a file, read the model card.",
    ),
    "drift": Entry(
        "popbatch.cli.commands.drift:drift",
        "Check a catalog for drift from the data the model was trained on.",
    ),
    "sql": Entry(
        "popbatch.cli.commands.sql:sql",
        "Run DuckDB SQL over scored tables, or a named report.",
    ),
    "explain": Entry(
        "popbatch.cli.commands.explain:explain",
        "Explain predictions: which features pushed a track's score up or down.",
    ),
    "export": Entry(
        "popbatch.cli.commands.export:export",
        "Export the stack trained into RUN_DIR to one ONNX graph plus its manifest.",
    ),
    "model": Entry(
        "popbatch.cli.commands.model:model",
        "Inspect exported models (model.onnx + manifest.json).",
    ),
    "score": Entry(
        "popbatch.cli.commands.score:score",
        "Score catalogs: predict which tracks will be popular.",
    ),
    "train": Entry(
        "popbatch.cli.commands.train:train",
        "Train the stacked popularity model (and its heads) and write the report and stack.",
    ),
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
        module_name, attr = target.target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own version asks every command for its short help, which imports
        # every command module and with them polars, onnxruntime and the training
        # stack's defaults: ~1 s for a list of eight lines. The registry has each
        # line; a stand-in command shortens it to the width exactly as click would.
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [
            (name, click.Command(name, help=COMMANDS[name].short_help).get_short_help_str(limit))
            for name in names
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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
