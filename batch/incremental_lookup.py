"""An incremental run's side of the target: which rows it already holds, up to date.

:mod:`popbatch.batch.incremental` defines the hash and the lookup structures;
this module reads them from the previous output (a Parquet file or a DuckDB
table) and stages the rows a run skips, so the sink can carry them over.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
from popbatch.batch.duckdb_arrow import arrow_reader
from popbatch.batch.incremental import HASH_COLUMN, CarryOver, SkippedRows, UpToDate
from popbatch.batch.lock import connect_duckdb
from popbatch.batch.sinks import (
    COMMIT_WAIT_SECONDS,
    DuckDBSink,
    DuckDBWriteBack,
    ParquetSink,
    Sink,
    table_exists,
)

from popbatch.core.errors import InputError, OutputError, one_line
from popbatch.core.scored import MODEL_ID_COLUMN
from popbatch.core.sqlquote import quote_column, quote_string


def check_incremental(sink: Sink) -> None:
    """Refuse --incremental for a target it cannot keep equal to a full run."""
    if isinstance(sink, DuckDBWriteBack) or not isinstance(sink, ParquetSink | DuckDBSink):
        raise InputError(
            "--incremental needs a Parquet output or a DuckDB table (-o FILE.parquet, "
            "or -o FILE.duckdb --into TABLE)"
        )
    if isinstance(sink, DuckDBSink) and sink.mode != "replace":
        raise InputError(
            f"--incremental keeps the target equal to a full --mode replace run; drop --mode "
            f"{sink.mode}"
        )


class IncrementalRun:
    """An incremental run's lookup of up-to-date rows and its staged skipped rows."""

    def __init__(self, lookup: UpToDate, skipped: SkippedRows, key: str) -> None:
        self.lookup = lookup
        self.skipped = skipped
        self.key = key

    @classmethod
    def load(
        cls, sink: Sink, schema: pa.Schema, key: str, model_id: str, wait: float
    ) -> IncrementalRun | None:
        """Read the target's (key, features_hash) of ``model_id``; None when there is
        nothing to compare with (no target yet, or its columns differ from this run's:
        then every row is scored, which is what a full run would write).
        """
        if key not in schema.names:
            raise InputError(
                f"--incremental matches rows by the key column {key!r}; keep it with --columns"
            )
        if isinstance(sink, DuckDBSink):
            lookup = _duckdb_lookup(sink, schema, key, model_id, wait)
        else:
            lookup = _parquet_lookup(sink.path, schema, key, model_id)
        if lookup is None:
            return None
        target = sink.target
        staged = target.parent / f".{target.name}.{os.getpid()}.skipped.parquet"
        skipped = SkippedRows(staged, schema.field(key))
        sink.carry_over = CarryOver(skipped, key, model_id)
        return cls(lookup, skipped, key)


def _parquet_lookup(path: Path, schema: pa.Schema, key: str, model_id: str) -> UpToDate | None:
    import pyarrow.dataset as ds

    if not path.is_file():
        return None
    try:
        stored = ds.dataset(path, format="parquet")
        if not stored.schema.remove_metadata().equals(schema.remove_metadata()):
            return None
        batches = stored.to_batches(
            columns=[key, HASH_COLUMN], filter=ds.field(MODEL_ID_COLUMN) == model_id
        )
        return UpToDate.from_batches(batches, key)
    except (pa.ArrowException, OSError) as exc:
        raise OutputError(
            f"{path}: cannot read the previous output for --incremental "
            f"({one_line(exc, 200)}); remove it or run without --incremental"
        ) from None


def _duckdb_lookup(
    sink: DuckDBSink, schema: pa.Schema, key: str, model_id: str, wait: float
) -> UpToDate | None:
    import duckdb

    if not sink.path.is_file():
        return None
    # Read-only: analysts' readers may stay; a writer makes this wait, then exit 75.
    con = None
    try:
        con = connect_duckdb(sink.path, read_only=True, wait=max(wait, COMMIT_WAIT_SECONDS))
        if not table_exists(con, sink.table):
            return None
        columns = [row[0] for row in con.sql(f"DESCRIBE {sink.table_sql}").fetchall()]
        if columns != schema.names:
            return None
        model = quote_string(model_id)
        reader = arrow_reader(
            con.sql(
                f"SELECT {quote_column(key)}, {HASH_COLUMN} FROM {sink.table_sql} "
                f"WHERE {MODEL_ID_COLUMN} = {model}"
            ),
            1 << 16,
        )
        return UpToDate.from_batches(reader, key)
    except duckdb.Error as exc:
        raise OutputError(
            f"{sink.name}: cannot read the stored scores for --incremental "
            f"({one_line(exc, 200)}); run once without --incremental"
        ) from None
    finally:
        if con is not None:
            con.close()
