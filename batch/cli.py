"""The ``popbatch`` command: a thin click layer over the library.

Commands are loaded lazily, each from its own module, so ``popbatch --help``
stays fast and the scoring commands never import the training stack.
Every :class:`~batch.errors.PopbatchError` raised below is turned into a
one-line message and its exit code here, in one place.
"""

from __future__ import annotations

import importlib

import click

from batch import __version__
from batch.errors import EXIT_INTERRUPTED, PopbatchError

# name -> "module:attribute"; each module owns its options and help text.
COMMANDS: dict[str, str] = {
    "drift": "batch.commands.drift:drift",
    "sql": "batch.commands.sql:sql",
    "export": "batch.commands.export:export",
    "model": "batch.commands.model:model",
    "score": "batch.commands.score:score",
    "train": "batch.commands.train:train",
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

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PopbatchError as exc:
            raise UserFacingError(one_line(exc), exc.exit_code) from exc
        except KeyboardInterrupt:
            raise UserFacingError(
                "interrupted; nothing partial was written", EXIT_INTERRUPTED
            ) from None


def one_line(exc: BaseException) -> str:
    """Collapse an error message to one line, as promised to cron users."""
    return " ".join(str(exc).split()) or type(exc).__name__


@click.group(cls=LazyGroup, epilog=EPILOG)
@click.version_option(__version__, prog_name="popbatch")
def cli() -> None:
    """Predict which music tracks will be popular, in batch.

    Train a stacked model, export it to ONNX, score catalogs from CSV,
    Parquet or DuckDB, and query the scores with SQL.
    """
