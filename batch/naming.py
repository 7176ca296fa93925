"""Where a run writes when the user names no output, and which outputs it refuses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
