"""Option groups shared by several commands (``score``, ``drift``, ``train``), so an
option means the same thing everywhere. Each factory returns a decorator.

The CLI's grammar, which every command follows (a new command too):

- Machine-readable output is ``--json`` (:func:`json_option`): one JSON document
  on stdout and nothing else there; human lines, the progress bar and notices go
  to stderr. ``score --json`` is the run summary, ``drift --json`` the report,
  ``explain --json`` the explanation rows, ``model info --json`` the manifest,
  ``sql --json`` the result rows (``--format json``). An older spelling keeps
  working for one release and prints one :func:`deprecated` line on stderr
  (``score --summary FILE``, ``drift --format json``).
- Every error is one line, ``Error: <what, where, fix>``, with the exit codes of
  ``popbatch --help``: click's usage errors too (``Error: Missing option '-o'
  (see popbatch explain --help)``, exit 2), made so in one place
  (:func:`popbatch.cli.main.one_line_usage_error`).
- Long work reports progress through :mod:`popbatch.cli.commands.progress`: a
  bar on a terminal, stage lines when stderr is a log; ``-q/--quiet`` silences it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from popbatch.core import DEFAULT_BATCH_SIZE

F = Callable[..., Any]


def parse_pairs(option: str, values: tuple[str, ...], allow_empty: bool = False) -> dict[str, str]:
    """``("a=b", "c=d")`` -> ``{"a": "b", "c": "d"}``; a malformed pair is a usage error
    (``allow_empty``: ``"a="`` is ``{"a": ""}``, e.g. ``--fill artists=``: unknown)."""
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name.strip() or not (rest.strip() or allow_empty):
            raise click.BadParameter(f"{value!r} is not NAME=VALUE", param_hint=option)
        pairs[name.strip()] = rest.strip()
    return pairs


def _pairs_callback(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict:
    return parse_pairs(f"'{param.opts[0]}'", value)


def _fills_callback(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict:
    return parse_pairs(f"'{param.opts[0]}'", value, allow_empty=True)


def read_options(f: F) -> F:
    """How to read a catalog, the same in every command that reads one (score, drift,
    train): --table/--query, --delimiter, --map, --fill."""
    decorators = [
        click.option(
            "--table",
            metavar="NAME",
            help="Table to read when the input is a DuckDB database.",
        ),
        click.option(
            "--query",
            metavar="SQL",
            help="SELECT to read when the input is a DuckDB database (instead of --table).",
        ),
        click.option(
            "--delimiter",
            default=",",
            show_default=True,
            help="CSV field delimiter (one character).",
        ),
        click.option(
            "--map",
            "maps",
            multiple=True,
            metavar="NEW=OLD",
            callback=_pairs_callback,
            help="Read model column NEW from input column OLD (repeatable).",
        ),
        click.option(
            "--fill",
            "fills",
            multiple=True,
            metavar="COLUMN=VALUE",
            callback=_fills_callback,
            help="Constant for a column the input lacks, or for its empty cells (repeatable; "
            "--fill artists= : no artist known, for a model with catalog priors).",
        ),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def input_options(f: F) -> F:
    """INPUT... plus :func:`read_options` and --batch-size (commands that stream a catalog)."""
    f = click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=DEFAULT_BATCH_SIZE,
        show_default=True,
        help="Rows per batch; memory grows with this, not with the input.",
    )(f)
    f = read_options(f)
    return click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)(f)


def model_option(f: F) -> F:
    """--model MODEL_DIR (default: the embedded model)."""
    return click.option(
        "--model",
        "model_dir",
        type=click.Path(path_type=Path),
        metavar="MODEL_DIR",
        help="Model directory (model.onnx + manifest.json); default: the embedded model.",
    )(f)


def wait_option(help: str) -> Callable[[F], F]:
    """``--wait SECONDS``: how long to wait for another run's lock before exit code 75."""
    return click.option(
        "--wait",
        type=click.FloatRange(min=0),
        default=0,
        show_default=True,
        metavar="SECONDS",
        help=help,
    )


def json_option(help: str) -> Callable[[F], F]:
    """``--json``: print ``help``'s document as JSON on stdout (the CLI's one spelling)."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def deprecated(old: str, new: str) -> None:
    """One line on stderr: ``old`` still works for this release; say what replaces it."""
    click.echo(f"popbatch: {old} is deprecated and goes in the next release; use {new}", err=True)
