"""Where a run writes when the user names no output, and which outputs it refuses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from popbatch.batch.sinks import DuckDBSink, DuckDBWriteBack, FileSink, Sink, is_duckdb_path
from popbatch.batch.sources import GLOB_CHARS

from popbatch.core.errors import InputError


def default_output(
    inputs: Sequence[str | Path] | str | Path, table: str | None = None, query: str | None = None
) -> Path:
    """Where scores go without ``-o``: ``<input stem>.scored.parquet`` beside the input.

    ``catalog.csv`` -> ``catalog.scored.parquet``; a directory ``catalog/`` ->
    ``catalog.scored.parquet`` beside it; a DuckDB table ``db.duckdb --table
    tracks`` -> ``db.tracks.scored.parquet``.

    Raises
    ------
    InputError
        For several inputs, a glob or a ``--query``: there is no obvious name.
    """
    if isinstance(inputs, str | Path):
        inputs = [inputs]
    if len(inputs) != 1 or query is not None or GLOB_CHARS.search(str(inputs[0])):
        raise InputError("give -o OUTPUT when scoring several inputs, a glob or a --query")
    path = Path(inputs[0])
    stem = path.name.rstrip("/")
    for suffix in (".gz", ".bz2", ".zst"):
        stem = stem.removesuffix(suffix)
    stem = Path(stem).stem if not path.is_dir() else stem
    if table is not None:
        stem = f"{stem}.{table}"
    return path.parent / f"{stem}.scored.parquet"


def refuse_overwriting_input(
    inputs: Sequence[str | Path], output: str | Path, table: str | None, query: str | None
) -> None:
    """Raise :class:`InputError` when ``output`` is one of the input files.

    A DuckDB input read with ``table`` or ``query`` may also be the target
    database (its scores go into another table), so it is allowed.
    """
    if table is not None or query is not None:
        return
    target = Path(output).resolve()
    for item in inputs:
        if Path(item).resolve() == target:
            raise InputError(f"{output}: the output would overwrite the input; choose another -o")


def _table_name(table: str) -> str:
    """A table name as DuckDB resolves it in its own database: case-insensitive, ``main.``
    being the default schema."""
    return table.lower().removeprefix("main.")


def refuse_writing_input(
    inputs: Sequence[str | Path], table: str | None, output: Sink, rejects: Sink | None = None
) -> None:
    """Raise :class:`InputError` when the scores or the rejects would go into an input.

    The input ``--table`` of a DuckDB input is never a target (``--write-back`` is the
    way to put scores into it), whatever ``--overwrite-table`` says; a rejects file is
    neither an input nor the output.
    """
    resolved = {Path(item).resolve() for item in inputs}
    for sink in (output, rejects or output):
        if isinstance(sink, DuckDBWriteBack) or not isinstance(sink, DuckDBSink):
            continue
        same_database = len(inputs) == 1 and is_duckdb_path(inputs[0])
        if (
            table is not None
            and same_database
            and sink.path.resolve() in resolved
            and _table_name(sink.table) == _table_name(table)
        ):
            raise InputError(
                f"{sink.path}: {sink.option} {sink.table} is the input table (--table "
                f"{table}); popbatch never replaces its input: use --write-back to add the "
                f"scores to {table}, or write to another {sink.option} TABLE"
            )
    if isinstance(rejects, FileSink):
        target = rejects.path.resolve()
        if target in resolved:
            raise InputError(
                f"{rejects.path}: the rejects output would overwrite the input; "
                "choose another --rejects"
            )
        if isinstance(output, FileSink | DuckDBSink) and output.target.resolve() == target:
            raise InputError(
                f"{rejects.path}: the rejects output would overwrite the scores; "
                "choose another --rejects"
            )
