"""Where scores go: Parquet or CSV files, DuckDB tables, or back into the source table.

Nothing a sink writes becomes visible until :meth:`Sink.commit`:

- file sinks write a hidden temporary file in the target directory and rename
  it over the target at the end (``os.replace``, atomic on POSIX), so a failed
  or interrupted run leaves no partial file and never clobbers a good one;
- DuckDB sinks stage the rows in a temporary Parquet file beside the database
  and apply them in ONE transaction at commit (replace, append, upsert by
  key, or write-back into the source table by key), so a failure leaves the
  tables as they were. The database is only opened for writing at commit,
  after the source (which may be the same file) has been closed.

:func:`commit_all` commits a run's sinks (scores and rejects) together: DuckDB
sinks on the same file share one transaction.
"""

from __future__ import annotations

import contextlib
import glob
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from popbatch.batch.duckdb_arrow import arrow_reader
from popbatch.batch.incremental import CarryOver
from popbatch.batch.lock import DUCKDB_COPY_MEMORY_LIMIT, connect_duckdb, quiet
from popbatch.batch.sources import DUCKDB_SUFFIXES

from popbatch.core import WRITE_MODES, files
from popbatch.core.errors import InputError, OutputError, PopbatchError, one_line
from popbatch.core.scored import (
    ALL_HEAD_COLUMNS,
    BY_NAME,
    HASH_COLUMN,
    INPUT_ROW_COLUMN,
    SCORE_FIELDS,
    SQL_TYPES,
    is_rejects_table,
    is_scored_table,
)
from popbatch.core.sqlquote import quote_column, quote_identifier, quote_string

# A reader (popbatch sql) may hold the database for a moment: the final commit
# waits at least this long for it to let go before giving up with exit code 75.
COMMIT_WAIT_SECONDS = 10.0
MODES = WRITE_MODES


class Sink(ABC):
    """A target for one run's rows: ``open``, ``write`` batches, then ``commit`` or ``abort``."""

    #: what the summary calls this target, e.g. ``scored.parquet`` or ``catalog.duckdb:scores``
    name: str
    #: the file that holds the target (for locks and messages)
    target: Path
    #: only written when it has rows or replaces an earlier version (rejects outputs)
    only_if_rows: bool = False
    #: incremental runs: keeps the stored rows of skipped input rows at commit
    carry_over: CarryOver | None = None

    def __init__(self) -> None:
        self.rows = 0
        self.rows_written: int | None = None

    @abstractmethod
    def open(self, schema: pa.Schema, input_names: Mapping[str, str] | None = None) -> None:
        """Start a run writing ``schema``; ``input_names`` maps output to input column names."""

    def write(self, batch: pa.RecordBatch) -> None:
        """Append one batch (invisible until commit)."""
        self.rows += batch.num_rows
        self._write(batch)

    @abstractmethod
    def _write(self, batch: pa.RecordBatch) -> None: ...

    @abstractmethod
    def finish(self) -> None:
        """Close staging files; after this only commit or abort."""

    @abstractmethod
    def abort(self) -> None:
        """Drop everything written; the target stays as it was (idempotent)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


# ------------------------------------------------------------------- files
class FileSink(Sink):
    """A file written to a hidden temporary name in its directory, renamed at commit."""

    suffix = ""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.target = self.path
        self.name = str(self.path)
        self.tmp: Path | None = None
        self._writer: pq.ParquetWriter | pacsv.CSVWriter | None = None

    def open(self, schema: pa.Schema, input_names: Mapping[str, str] | None = None) -> None:
        directory = self.path.parent
        if self.path.is_dir():
            raise OutputError(f"{self.path}: is a directory; give a file name for the output")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            # mkdir says "File exists" when a file sits where the directory should be.
            raise OutputError(
                f"{directory}: a file is in the way of the output directory; choose another -o"
            ) from None
        except OSError as exc:
            raise OutputError(
                f"{directory}: cannot create the output directory ({exc.strerror})"
            ) from None
        self.schema = schema
        _remove_stale_temps(directory, self.path.name)
        self.tmp = directory / f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            self._open_writer()
        except OSError as exc:
            self.abort()
            raise OutputError(
                f"{self.path}: cannot write in {directory} ({_reason(exc)})"
            ) from None
        except pa.ArrowException as exc:  # e.g. a list column passed through to CSV
            self.abort()
            raise InputError(_unwritable(self.path, exc)) from None

    @abstractmethod
    def _open_writer(self) -> None:
        """Set ``self._writer``: a pyarrow writer (``write_batch``, ``close``) on ``self.tmp``."""

    def _close_writer(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def _write(self, batch: pa.RecordBatch) -> None:
        try:
            self._write_batch(batch)
        except OSError as exc:
            raise OutputError(f"{self.path}: writing failed ({_reason(exc)})") from None
        except pa.ArrowException as exc:
            raise InputError(_unwritable(self.path, exc)) from None

    def _write_batch(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def finish(self) -> None:
        try:
            if self.carry_over is not None:
                self._write_kept_rows()
            self._close_writer()
        except OSError as exc:
            raise OutputError(f"{self.path}: writing failed ({_reason(exc)})") from None

    def _write_kept_rows(self) -> None:
        """Append the previous output's rows that this incremental run left up to date."""
        import duckdb

        query = self.carry_over.sql(f"read_parquet({quote_string(str(self.path))})")
        try:
            with quiet(duckdb.connect()) as con:
                for batch in arrow_reader(con.sql(query), 65536):
                    if batch.num_rows:
                        self._write_batch(
                            pa.Table.from_batches([batch]).cast(self.schema).to_batches()[0]
                        )
                        self.carry_over.kept += batch.num_rows
        except duckdb.Error as exc:
            raise OutputError(
                f"{self.path}: cannot carry over the up-to-date rows ({one_line(exc)})"
            ) from None

    def commit(self) -> None:
        """Rename the finished temporary file over the target."""
        if self.only_if_rows and self.rows == 0 and not self.path.exists():
            self.abort()
            return
        try:
            files.replace(self.tmp, self.path)
        except OSError as exc:
            self.abort()
            raise OutputError(f"{self.path}: cannot replace the output ({_reason(exc)})") from None
        self.tmp = None
        self.rows_written = self.rows + (self.carry_over.kept if self.carry_over else 0)

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # the run already failed; the temp file goes anyway
            self._close_writer()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None


class ParquetSink(FileSink):
    """A zstd-compressed Parquet file, written incrementally (one row group per batch).

    ``unique`` names columns whose values are (nearly) all different, such as
    the key: they skip dictionary encoding, as do floats, ``features_hash`` and
    ``input_row``.
    Trying a dictionary on a unique key and then falling back made writing 2.6x
    slower (65,536-row batches of key + scores: 3.2M -> 8.4M rows/s, 11 -> 8 MB);
    on the hash it cost 30% of the writer's CPU and 10% more bytes (1M rows).
    """

    def __init__(
        self, path: str | Path, compression: str = "zstd", unique: Sequence[str] = ()
    ) -> None:
        super().__init__(path)
        self.compression = compression
        self.unique = set(unique)

    def _open_writer(self) -> None:
        unique = self.unique | {HASH_COLUMN, INPUT_ROW_COLUMN}
        dictionary = [
            f.name for f in self.schema if f.name not in unique and not pa.types.is_floating(f.type)
        ]
        self._writer = pq.ParquetWriter(
            self.tmp, self.schema, compression=self.compression, use_dictionary=dictionary
        )


class CsvSink(FileSink):
    """A CSV file with a header row (``popular`` as true/false, ``scored_at`` ISO 8601)."""

    def __init__(self, path: str | Path, delimiter: str = ",") -> None:
        super().__init__(path)
        self.delimiter = delimiter

    def _open_writer(self) -> None:
        self._writer = pacsv.CSVWriter(
            self.tmp, self.schema, write_options=pacsv.WriteOptions(delimiter=self.delimiter)
        )


def _remove_stale_temps(directory: Path, name: str) -> None:
    """Delete temporary files of ``name`` left by runs that were killed (SIGKILL, power
    loss): their process id, in the name, no longer runs. A live run's file is kept.
    """
    for stale in directory.glob(f".{glob.escape(name)}.*.tmp"):
        parts = stale.name[len(name) + 2 :].split(".")
        if len(parts) != 3 or not parts[0].isdigit() or _running(int(parts[0])):
            continue
        with contextlib.suppress(OSError):
            stale.unlink()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _unwritable(path: Path, exc: BaseException) -> str:
    return (
        f"{path}: cannot write these columns as {path.suffix or 'this type'} "
        f"({one_line(exc)[:200]}); pass fewer --columns or write .parquet"
    )


def _reason(exc: OSError) -> str:
    return exc.strerror or one_line(exc)


# ------------------------------------------------------------------ DuckDB
class DuckDBSink(Sink):
    """Rows into a DuckDB table, applied in one transaction at commit.

    Parameters
    ----------
    path
        The database file (created if missing).
    table
        Target table; validated and quoted (``schema.table`` allowed).
    mode
        ``replace`` (drop and recreate), ``append``, or ``upsert`` (rows whose
        ``key`` is already in the table are replaced; within one run the last
        row for a key wins, so re-running never duplicates keys).
    key
        Key column for ``upsert`` (an output column name).
    overwrite
        Replace an existing table popbatch did not write (``--overwrite-table``).
        Without it such a table is refused (:class:`~popbatch.core.errors.InputError`):
        ``replace`` only replaces a table ``written_by_popbatch`` recognises or the run
        log names as a target, and ``append``/``upsert`` only write into a table whose
        columns fit the rows.
    written_by_popbatch
        ``{column: DuckDB type} -> bool``: whether an existing table has the shape
        popbatch writes here (default: a scored table).
    option
        The option that names the table, for messages (``--into``, ``--rejects``).
    """

    def __init__(
        self,
        path: str | Path,
        table: str,
        mode: str = "replace",
        key: str = "track_id",
        *,
        overwrite: bool = False,
        written_by_popbatch: Callable[[Mapping[str, str]], bool] = is_scored_table,
        option: str = "--into",
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise InputError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.path = Path(path)
        self.target = self.path
        self.table = table
        self.table_sql = quote_identifier(table, f"{option} table")
        self.mode = mode
        self.key = key
        self.overwrite = overwrite
        self.written_by_popbatch = written_by_popbatch
        self.option = option
        self.name = f"{self.path}:{table}"
        self.stage: ParquetSink | None = None

    def open(self, schema: pa.Schema, input_names: Mapping[str, str] | None = None) -> None:
        if self.mode == "upsert" and self.key not in schema.names:
            raise InputError(
                f"--mode upsert needs the key column {self.key!r} in the output; "
                "keep it with --columns or name the key with --key"
            )
        if self.path.is_dir():
            raise OutputError(f"{self.path}: is a directory, not a DuckDB database file")
        self.schema = schema
        stage_name = f".{self.path.name}.{self.table}.stage.parquet"
        # Staging is read back once at commit, so it is not compressed: 10M rows table
        # to table in 0.95x the wall time of lz4 (the writer thread's compression saved,
        # DuckDB's copy as fast) for 73 bytes of temporary disk a row instead of 55
        # (bench/results/ab_15_stage_uncompressed.json)
        self.stage = ParquetSink(
            self.path.parent / stage_name, compression="none", unique=[self.key]
        )
        self.stage.open(schema)

    def _write(self, batch: pa.RecordBatch) -> None:
        self.stage.write(batch)

    def finish(self) -> None:
        self.stage.finish()

    def abort(self) -> None:
        if self.stage is not None:
            self.stage.abort()

    def _source(self, dedupe: bool) -> str:
        """SQL reading the staged rows (deduplicated by key: last row wins)."""
        staged = quote_string(str(self.stage.tmp))
        if not dedupe:
            return f"SELECT * FROM read_parquet({staged})"
        return (
            f"SELECT * EXCLUDE (file_row_number) FROM read_parquet({staged}, file_row_number=true) "
            f"QUALIFY row_number() OVER (PARTITION BY {quote_column(self.key)} "
            "ORDER BY file_row_number DESC) = 1"
        )

    @property
    def copies_only(self) -> bool:
        """Whether the commit only copies the staged rows into a new table (no join, no
        dedupe, no existing table to alter)."""
        return self.mode == "replace" and self.carry_over is None

    def check_table(self, con) -> None:
        """Raise :class:`InputError` when this run may not write the existing table.

        ``replace`` replaces only a table popbatch wrote (``written_by_popbatch``, or
        named by the run log as a target) unless ``overwrite``; ``append`` and
        ``upsert`` need every column of the rows, typed so that they fit.
        """
        columns = table_columns(con, self.table)
        if columns is None:
            return
        shown = ", ".join(f"{name} {kind}" for name, kind in columns.items())
        if self.mode == "replace":
            if self.overwrite or self.written_by_popbatch(columns):
                return
            if named_in_run_log(con, self.table):
                return
            raise InputError(
                f"{self.path}: table {self.table} exists and popbatch did not write it "
                f"(columns {shown}); write to another {self.option} TABLE, or pass "
                "--overwrite-table to replace it"
            )
        # A table popbatch wrote gains the columns this run writes and it lacks: score or
        # head columns added to popbatch since, and pass-through columns an earlier run
        # did not write (it ran without --columns all). Another table must fit as it is.
        have = {name.lower(): kind for name, kind in columns.items()}
        written = duckdb_types(con, self.schema)
        addable = set(written) if self.written_by_popbatch(columns) else set()
        missing = [n for n in written if n.lower() not in have and n not in addable]
        mistyped = [
            f"{n} ({have[n.lower()]}, popbatch writes {kind})"
            for n, kind in written.items()
            if n.lower() in have and not type_fits(kind, have[n.lower()])
        ]
        if missing or mistyped:
            problems = []
            if missing:
                problems.append(f"it lacks {', '.join(missing)}")
            if mistyped:
                problems.append(f"mistyped {', '.join(mistyped)}")
            raise InputError(
                f"{self.path}: --mode {self.mode} into table {self.table} does not fit: "
                f"{'; '.join(problems)} (it has {shown}); write to another {self.option} "
                "TABLE, or fix the table's columns"
            )

    def apply(self, con) -> None:
        """Run this sink's statements inside the caller's open transaction."""
        self.check_table(con)
        exists = table_exists(con, self.table)
        if self.only_if_rows and self.rows == 0 and not exists:
            return
        if self.carry_over is not None and exists:
            # Incremental: keep the rows of skipped input rows, replace the rest.
            kept = self.carry_over.sql(self.table_sql, rowids=True)
            con.execute(f"DELETE FROM {self.table_sql} WHERE rowid NOT IN ({kept})")
            self.carry_over.kept = _count(con, self.table_sql)
            con.execute(f"INSERT INTO {self.table_sql} BY NAME " + self._source(dedupe=False))
            self.rows_written = _count(con, self.table_sql)
            return
        if self.mode == "replace" or not exists:
            con.execute(
                f"CREATE OR REPLACE TABLE {self.table_sql} AS "
                + self._source(dedupe=self.mode == "upsert")
            )
            self.rows_written = _count(con, self.table_sql)
            return
        self._add_missing_columns(con)
        if self.mode == "upsert":
            key = quote_column(self.key)
            con.execute(
                f"DELETE FROM {self.table_sql} WHERE {key} IN "
                f"(SELECT {key} FROM read_parquet({quote_string(str(self.stage.tmp))}))"
            )
        before = _count(con, self.table_sql)
        con.execute(
            f"INSERT INTO {self.table_sql} BY NAME " + self._source(dedupe=self.mode == "upsert")
        )
        self.rows_written = _count(con, self.table_sql) - before

    def _add_missing_columns(self, con) -> None:
        """Give the existing table the columns this run writes and it lacks (NULL in
        its old rows): a score or head column added to popbatch since it was written,
        typed as popbatch.core.scored says; a pass-through column an earlier run did
        not write (it ran without ``--columns all``), typed as this run's rows are.
        """
        present = {row[0].lower() for row in con.execute(f"DESCRIBE {self.table_sql}").fetchall()}
        staged = quote_string(str(self.stage.tmp))
        types = dict(
            con.execute(
                "SELECT column_name, column_type FROM "
                f"(DESCRIBE SELECT * FROM read_parquet({staged}))"
            ).fetchall()
        )
        for name in self.schema.names:
            if name.lower() not in present:
                sql_type = BY_NAME[name].sql_type if name in BY_NAME else types[name]
                con.execute(
                    f"ALTER TABLE {self.table_sql} ADD COLUMN IF NOT EXISTS "
                    f"{quote_column(name)} {sql_type}"
                )


class DuckDBWriteBack(DuckDBSink):
    """Add or update ``popularity_prob``, ``popular``, ``model_id``, ``scored_at`` on the
    source table, matching rows by key, in one transaction at commit.

    Rows rejected in this run keep whatever scores they had (their ``scored_at``
    says how old those are). When the key is not unique in the table, every row
    with that key gets the score of the last such row read.
    """

    #: the score columns and their DuckDB types (popbatch.core.scored)
    SQL_TYPES: ClassVar[dict[str, str]] = SQL_TYPES

    def __init__(self, path: str | Path, table: str, key: str = "track_id") -> None:
        super().__init__(path, table, mode="upsert", key=key)
        self.name = f"{self.path}:{table} (write-back)"

    def open(self, schema: pa.Schema, input_names: Mapping[str, str] | None = None) -> None:
        if self.key not in schema.names:
            raise InputError(
                f"--write-back needs the key column {self.key!r}; name it with --key COLUMN"
            )
        # The table's own name for the key (e.g. "Track ID" read as track_id).
        self.table_key = (input_names or {}).get(self.key, self.key)
        # The extra heads' columns this run scores (popularity_pred, genre_pred, ...).
        self.columns = {
            **self.SQL_TYPES,
            **{c.name: c.sql_type for c in ALL_HEAD_COLUMNS if c.name in schema.names},
        }
        fields = [
            *SCORE_FIELDS,
            *(schema.field(n) for n in self.columns if n not in self.SQL_TYPES),
        ]
        key_schema = pa.schema([schema.field(self.key), *fields])
        super().open(key_schema, input_names)

    def _write(self, batch: pa.RecordBatch) -> None:
        self.stage.write(batch.select([self.key, *self.columns]))

    def check_table(self, con) -> None:
        """The write-back changes only its score columns of the input table: nothing to refuse."""

    def apply(self, con) -> None:
        for column, sql_type in self.columns.items():
            con.execute(
                f"ALTER TABLE {self.table_sql} ADD COLUMN IF NOT EXISTS "
                f"{quote_column(column)} {sql_type}"
            )
        # The alias must not be a table's name: "scores" (the default --into) was ambiguous.
        new = "popbatch_new_scores"
        sets = ", ".join(f"{quote_column(c)} = {new}.{quote_column(c)}" for c in self.columns)
        # A head this run does not score loses its old answer: the row's model_id and
        # scored_at would otherwise vouch for a value another run wrote.
        present = {row[0] for row in con.execute(f"DESCRIBE {self.table_sql}").fetchall()}
        for column in ALL_HEAD_COLUMNS:
            if column.name in present and column.name not in self.columns:
                sets += f", {quote_column(column.name)} = NULL"
        result = con.execute(
            f"UPDATE {self.table_sql} SET {sets} FROM ({self._source(dedupe=True)}) AS {new} "
            f"WHERE {self.table_sql}.{quote_column(self.table_key)} "
            f"= {new}.{quote_column(self.key)}"
        ).fetchall()
        self.rows_written = int(result[0][0]) if result else None


def table_exists(con, table: str) -> bool:
    """Whether a (validated) table name exists, asked without raising: inside a
    DuckDB transaction any error aborts it, and a later COMMIT silently rolls back.
    """
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE " + _NAMED, _name_parts(table)
    ).fetchall()
    return bool(found[0][0])


# Matches a table of duckdb_tables() or duckdb_columns() by the parameters of _name_parts.
_NAMED = (
    "lower(table_name) = ? AND lower(schema_name) = ? AND (? IS NULL OR lower(database_name) = ?)"
)


def _name_parts(table: str) -> list[str | None]:
    """``[table, schema, database, database]`` of ``[database.][schema.]table``."""
    parts = table.lower().split(".")
    database = parts[0] if len(parts) == 3 else None
    return [parts[-1], parts[-2] if len(parts) > 1 else "main", database, database]


def table_columns(con, table: str) -> dict[str, str] | None:
    """``{column: DuckDB type}`` of a (validated) table name in column order; None when
    there is no such table. Asked without raising (see :func:`table_exists`)."""
    if not table_exists(con, table):
        return None
    rows = con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE "
        + _NAMED
        + " ORDER BY column_index",
        _name_parts(table),
    ).fetchall()
    return {name: kind for name, kind in rows}


def named_in_run_log(con, table: str) -> bool:
    """Whether the database's run log records a successful run that wrote ``table``."""
    from popbatch.batch.runlog import RUNS_TABLE

    columns = table_columns(con, RUNS_TABLE) or {}
    if not {"output", "status"} <= {name.lower() for name in columns}:
        return False  # no run log, or a table of that name popbatch did not make
    found = con.execute(
        f"SELECT count(*) FROM {RUNS_TABLE} WHERE status = 'success' "
        "AND ends_with(lower(CAST(output AS VARCHAR)), ?)",
        [f":{table.lower()}"],
    ).fetchall()
    return bool(found[0][0])


def duckdb_types(con, schema: pa.Schema) -> dict[str, str]:
    """The DuckDB type of each column of an Arrow schema, as DuckDB reads it (asked on
    ``con`` without changing its database)."""
    relation = con.from_arrow(schema.empty_table())
    return {name: str(kind) for name, kind in zip(relation.columns, relation.types, strict=True)}


def check_tables(sinks: Sequence[Sink]) -> None:
    """Refuse, before any row is scored, an existing table a run's DuckDB sinks may not
    write (:meth:`DuckDBSink.check_table`; their commit checks again). One read-only
    connection per database; a database that is busy or unreadable is left to the commit.
    """
    import duckdb

    groups: dict[Path, list[DuckDBSink]] = {}
    for sink in sinks:
        if isinstance(sink, DuckDBSink) and sink.path.is_file():
            groups.setdefault(sink.path.resolve(), []).append(sink)
    for path, group in groups.items():
        try:
            con = connect_duckdb(path, read_only=True, wait=COMMIT_WAIT_SECONDS)
        except (duckdb.Error, PopbatchError):
            continue
        try:
            for sink in group:
                sink.check_table(con)
        finally:
            con.close()


_INTEGERS = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
    "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
}  # fmt: skip


def _family(kind: str) -> str:
    kind = kind.upper()
    if kind in _INTEGERS:
        return "integer"
    if kind in ("FLOAT", "DOUBLE") or kind.startswith("DECIMAL"):
        return "fraction"
    if kind.startswith("TIMESTAMP"):
        return "timestamp"
    return kind


def type_fits(written: str, column: str) -> bool:
    """Whether values of DuckDB type ``written`` go into a column of type ``column``
    without losing what they say: the same kind (integers, fractions, timestamps),
    integers into a fraction column, anything into text."""
    family, into = _family(written), _family(column)
    if family == into or column.upper() == "VARCHAR":
        return True
    return (family, into) == ("integer", "fraction")


def _count(con, table_sql: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM {table_sql}").fetchall()[0][0])


# ------------------------------------------------------------------ commit
def commit_all(
    sinks: Sequence[Sink],
    wait: float = 0,
    in_transaction: Callable[[Any], None] | None = None,
) -> None:
    """Commit a run's sinks; DuckDB sinks on one file share one transaction.

    ``in_transaction(con)`` runs inside the transaction on the first sink's
    database (the run log row of a successful run), so it commits or rolls
    back with the scores. Opening a database waits up to
    ``max(wait, COMMIT_WAIT_SECONDS)`` for other processes (readers) to let go.

    On any failure every sink not yet committed is aborted and the DuckDB
    transaction rolled back, then :class:`~popbatch.core.errors.OutputError` (or
    :class:`~popbatch.core.errors.LockError`) is raised.
    """
    try:
        for sink in sinks:
            sink.finish()
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    groups: dict[Path, list[DuckDBSink]] = {}
    for sink in sinks:
        if isinstance(sink, DuckDBSink):
            groups.setdefault(sink.path.resolve(), []).append(sink)
    try:
        main = sinks[0].path.resolve() if isinstance(sinks[0], DuckDBSink) else None
        for path, group in groups.items():
            hook = in_transaction if path == main else None
            _commit_duckdb(path, group, max(wait, COMMIT_WAIT_SECONDS), hook)
        for sink in sinks:
            if isinstance(sink, FileSink):
                sink.commit()
    finally:
        for sink in sinks:
            sink.abort()  # removes staging files; no-op for committed file sinks


def _commit_duckdb(
    path: Path,
    sinks: Sequence[DuckDBSink],
    wait: float,
    in_transaction: Callable[[Any], None] | None,
) -> None:
    import duckdb

    copies_only = all(sink.copies_only for sink in sinks)
    try:
        con = connect_duckdb(
            path, wait=wait, memory_limit=DUCKDB_COPY_MEMORY_LIMIT if copies_only else None
        )
    except duckdb.Error as exc:
        raise OutputError(
            f"{path}: cannot open the database for writing ({one_line(exc)})"
        ) from None
    try:
        # Tables have no row order (ORDER BY input_row gives the input's). Letting DuckDB
        # write the staged rows in any order lets it write them in parallel, in less
        # memory (bench/results/ab_5_duckdb.json).
        con.execute("SET preserve_insertion_order = false")
        con.begin()
        failing: Sequence[DuckDBSink] = sinks
        for sink in sinks:
            failing = [sink]  # name the table that failed, not one that was never made
            sink.apply(con)
        failing = sinks
        if in_transaction is not None:
            in_transaction(con)
        con.commit()
    except duckdb.Error as exc:
        with contextlib.suppress(duckdb.Error):
            con.rollback()
        names = ", ".join(s.table for s in failing)
        if isinstance(exc, duckdb.OutOfMemoryException):
            raise OutputError(_out_of_memory(path, names, exc, failing)) from None
        raise OutputError(
            f"{path}: writing {names} failed ({one_line(exc)}); the database is unchanged"
        ) from None
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.rollback()
        raise
    finally:
        con.close()


def _out_of_memory(path: Path, names: str, exc: BaseException, sinks: Sequence[DuckDBSink]) -> str:
    """The one line for a commit DuckDB could not fit in its memory limit: DuckDB's own
    advice (threads, insertion order, memory limit) names settings popbatch chooses."""
    what = one_line(exc).split(" Possible solutions")[0].rstrip(" .")
    if any(isinstance(sink, DuckDBWriteBack) for sink in sinks):
        fix = (
            "--write-back changes every scored row in place, and DuckDB holds those "
            "changes in memory until the commit; for a table this large, write the scores "
            "to a table of their own (-o DATABASE --into TABLE) and join them on the key"
        )
    else:
        fix = "score the catalog in parts (--query with a WHERE), or write to a Parquet file"
    return f"{path}: writing {names} failed ({what}); the database is unchanged; {fix}"


# ----------------------------------------------------------------- factory
def is_duckdb_path(path: str | Path) -> bool:
    return str(path).lower().endswith(DUCKDB_SUFFIXES)


def open_sink(
    output: str | Path,
    *,
    into: str | None = None,
    mode: str = "replace",
    key: str = "track_id",
    delimiter: str = ",",
    overwrite: bool = False,
) -> Sink:
    """The sink for an output path: ``.parquet``/``.csv`` files or a DuckDB database.

    ``overwrite`` (``--overwrite-table``) lets ``mode="replace"`` replace a DuckDB
    table popbatch did not write.

    Raises
    ------
    InputError
        For an unknown extension, ``--into`` with a file output, a bad mode, or
        ``overwrite`` with another mode or a file output.
    """
    text = str(output)
    lower = text.lower()
    if overwrite and mode != "replace":
        raise InputError(f"--overwrite-table replaces a table; it does not go with --mode {mode}")
    if is_duckdb_path(text):
        return DuckDBSink(text, into or "scores", mode=mode, key=key, overwrite=overwrite)
    if into is not None:
        raise InputError(f"--into {into}: writes to a DuckDB database; give -o FILE.duckdb")
    if mode != "replace":
        raise InputError(f"--mode {mode} applies to DuckDB outputs (-o FILE.duckdb --into TABLE)")
    if overwrite:
        raise InputError("--overwrite-table applies to DuckDB outputs (-o FILE.duckdb)")
    if lower.endswith((".parquet", ".pq")):
        return ParquetSink(text, unique=[key])
    if lower.endswith(".csv"):
        return CsvSink(text, delimiter=delimiter)
    raise InputError(
        f"{output}: unknown output type; use .parquet, .csv or a DuckDB file (.duckdb)"
    )


def rejects_sink_for(sink: Sink, rejects: str | Path | None = None) -> Sink:
    """Where rejected rows go: ``rejects`` (a file, or a table name beside a DuckDB
    target), or by default ``<output stem>.rejects.<ext>`` / table ``<table>_rejects``.
    """
    if rejects is None:
        if isinstance(sink, DuckDBSink):
            base = sink.table.split(".")[-1]
            result: Sink = _rejects_table(sink, f"{base}_rejects")
        else:
            path = sink.path
            result = type(sink)(path.with_name(f"{path.stem}.rejects{path.suffix}"))
    else:
        text = str(rejects)
        if text.lower().endswith((".parquet", ".pq")):
            result = ParquetSink(text)
        elif text.lower().endswith(".csv"):
            result = CsvSink(text)
        elif isinstance(sink, DuckDBSink):
            result = _rejects_table(sink, text)
        else:
            raise InputError(
                f"--rejects {text}: give a .parquet or .csv file (a table name only "
                "works with a DuckDB output)"
            )
    result.only_if_rows = True
    return result


def _rejects_table(sink: DuckDBSink, table: str) -> DuckDBSink:
    """The rejects table beside ``sink``'s: replaced, and guarded as the scores table is."""
    return DuckDBSink(
        sink.path,
        table,
        mode="replace",
        overwrite=sink.overwrite,
        written_by_popbatch=is_rejects_table,
        option="--rejects",
    )
