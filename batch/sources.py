"""Catalog sources: CSV files, Parquet files/globs/directories, DuckDB tables and queries.

Every source streams Arrow record batches of at most ``batch_size`` rows, so a
catalog of any size is scored in bounded memory; nothing here ever holds the
whole input. A source knows its columns (``schema``) before reading any rows,
so a missing column stops a run before any output is written, and knows its
row count where that is cheap (Parquet metadata, a DuckDB table's count).

>>> with open_source(["catalog.parquet"]) as source:          # doctest: +SKIP
...     for batch in source.batches(["track_id", "tempo"], batch_size=32768):
...         ...
"""

from __future__ import annotations

import glob
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from popbatch.batch.duckdb_arrow import arrow_reader

from popbatch.core import DEFAULT_BATCH_SIZE
from popbatch.core.errors import InputError, one_line
from popbatch.core.sqlquote import quote_column, quote_identifier

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".csv.bz2", ".csv.zst", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
DUCKDB_SUFFIXES = (".duckdb", ".ddb", ".db", ".duck")
# pyarrow reads CSV in blocks: 4 MB (~20k catalog rows) measured fastest and
# smallest (16 MB blocks: 1.5x slower, +160 MB); grown on demand up to 1 GB.
CSV_BLOCK_BYTES = 4 << 20
CSV_MAX_BLOCK_BYTES = 1 << 30
GLOB_CHARS = re.compile(r"[*?\[]")
# What a CSV pass-through column may be typed as, most specific first: the first
# type every value of the column parses as wins (text otherwise). A column of 0/1
# is an integer, True/False a boolean, 2024-05-01 a date, 2024-05-01 10:00 a timestamp.
CSV_TYPES = (pa.int64(), pa.float64(), pa.bool_(), pa.date32(), pa.timestamp("us"))
# Numbers written with a leading zero ("007", "01234") are codes, not numbers: text.
_LEADING_ZERO = r"^[-+]?0[0-9]"


def _rows_at_most(batches: Iterator[pa.RecordBatch], batch_size: int) -> Iterator[pa.RecordBatch]:
    """Slice (zero-copy) any batch larger than ``batch_size``; skip empty batches."""
    for batch in batches:
        for start in range(0, batch.num_rows, batch_size):
            yield batch.slice(start, batch_size)


class Source(ABC):
    """A catalog to score: its column schema, its row count if cheap, and its batches."""

    kind: str = "source"
    _total: int | None = None  # set by sources that can count rows cheaply

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    @abstractmethod
    def schema(self) -> pa.Schema:
        """Column names (as in the input) and Arrow types, known before reading rows."""

    @property
    def total_rows(self) -> int | None:
        """Number of rows if known without reading them (None for CSV)."""
        return self._total

    @abstractmethod
    def batches(
        self, columns: Sequence[str] | None = None, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Iterator[pa.RecordBatch]:
        """Yield record batches of at most ``batch_size`` rows with only ``columns``."""

    def column_types(self, columns: Sequence[str]) -> dict[str, pa.DataType]:
        """Types to give pass-through ``columns`` in the output, where they differ from
        :attr:`schema`. Parquet and DuckDB inputs keep their stored types: ``{}``.
        """
        return {}

    def close(self) -> None:  # noqa: B027 (most sources hold nothing to release)
        """Release files and connections (idempotent)."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class CsvSource(Source):
    """One or more CSV files with a header row, streamed with pyarrow's CSV reader.

    Every column is read as text and converted by the preprocessor, so a
    stray word in a numeric column rejects that row instead of failing the
    whole file (a typed reader infers types from the first block only).
    """

    kind = "csv"

    def __init__(self, paths: Sequence[str | Path], delimiter: str = ",") -> None:
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise InputError("no CSV input given")
        if len(delimiter) != 1:
            raise InputError(f"--delimiter must be one character, got {delimiter!r}")
        super().__init__(", ".join(str(p) for p in self.paths))
        self.delimiter = delimiter
        self._names = self._header(self.paths[0])
        for path in self.paths[1:]:
            names = self._header(path)
            if names != self._names:
                raise InputError(
                    f"{path}: columns differ from {self.paths[0]}; CSV inputs scored "
                    "together must share one header"
                )

    def _parse_options(self) -> pacsv.ParseOptions:
        return pacsv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True)

    def _header(self, path: Path) -> list[str]:
        _check_file(path)
        if not _compressed(path) and path.is_file():
            with open(path, "rb") as f:
                if b"\x00" in f.read(1 << 16):
                    raise InputError(
                        f"{path}: holds binary data (NUL bytes), not CSV text; "
                        "check that this is the catalog file"
                    )
        try:
            reader = pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=1 << 20),
                parse_options=self._parse_options(),
            )
        except pa.ArrowInvalid as exc:
            raise InputError(f"{path}: {self._reason(path, exc)}") from None
        names = reader.schema.names
        reader.close()
        _check_header(path, names, self.delimiter)
        return names

    def _reason(self, path: Path, exc: BaseException) -> str:
        """Why a CSV file cannot be read, naming the offending row where it can."""
        return _csv_reason(exc, path, self.delimiter)

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([(n, pa.string()) for n in self._names])

    def batches(
        self, columns: Sequence[str] | None = None, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Iterator[pa.RecordBatch]:
        wanted = list(columns) if columns is not None else list(self._names)
        for path in self.paths:
            yield from _rows_at_most(self._file_batches(path, wanted), batch_size)

    def column_types(self, columns: Sequence[str]) -> dict[str, pa.DataType]:
        """The type of each of ``columns`` that parses cleanly, from a scan of every file.

        CSV is read as text (so a stray word in a model input rejects one row
        instead of failing the file), and pass-through columns get their types
        here: the first of :data:`CSV_TYPES` that every non-null value of the
        column, in every file, parses as with the same Arrow cast the run then
        applies. A column with any value that does not parse (or only nulls)
        stays text. Scanning the whole input first, rather than a sample, means a
        late odd value cannot abort the run or change the output schema mid-run;
        it costs one extra read of these columns only (none for the default
        ``--columns key``, whose key stays text).
        """
        candidates = {c: list(CSV_TYPES) for c in dict.fromkeys(columns)}
        valued: set[str] = set()
        if not candidates:
            return {}
        for batch in self.batches(list(candidates), batch_size=1 << 20):
            for name in list(candidates):
                array = batch.column(name)
                if array.null_count == len(array):
                    continue
                valued.add(name)
                candidates[name] = [t for t in candidates[name] if _parses_as(array, t)]
                if not candidates[name]:
                    del candidates[name]
            if not candidates:
                break
        return {c: types[0] for c, types in candidates.items() if c in valued}

    def _file_batches(self, path: Path, wanted: list[str]) -> Iterator[pa.RecordBatch]:
        """One file's batches, as pyarrow reads them (one per block).

        Small blocks read fastest and keep memory low, but a block must hold a
        whole row: when a row is longer (a 10 MB field), the file is reopened
        with a block four times larger, skipping the rows already yielded.
        """
        block, done = CSV_BLOCK_BYTES, 0
        while True:
            try:
                reader = pacsv.open_csv(
                    path,
                    read_options=pacsv.ReadOptions(block_size=block, skip_rows_after_names=done),
                    parse_options=self._parse_options(),
                    convert_options=pacsv.ConvertOptions(
                        column_types={n: pa.string() for n in wanted},
                        include_columns=wanted,
                        strings_can_be_null=True,
                        null_values=["", "NULL", "null"],
                    ),
                )
                for batch in reader:
                    done += batch.num_rows
                    yield batch
                return
            except (pa.ArrowInvalid, OSError) as exc:
                if "straddl" in str(exc) and block < CSV_MAX_BLOCK_BYTES:
                    block *= 4
                    continue
                raise InputError(f"{path}: {self._reason(path, exc)}") from None


def _parses_as(array: pa.Array, target: pa.DataType) -> bool:
    """Whether every value of a text column casts to ``target`` (numbers: without a
    leading zero, which marks a code such as "007")."""
    try:
        array.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    if pa.types.is_integer(target) or pa.types.is_floating(target):
        return not pc.any(pc.match_substring_regex(array, _LEADING_ZERO)).as_py()
    return True


# Delimiters a one-column header hints at when --delimiter was not given.
_OTHER_DELIMITERS = {";": "';'", "\t": "$'\\t'", "|": "'|'"}


def _check_header(path: Path, names: list[str], delimiter: str) -> None:
    """Refuse headers that cannot be a catalog's, with the fix."""
    if not any(name.strip() for name in names):
        raise InputError(f"{path}: the first line is blank; the file needs a header row")
    if len(names) == 1:
        for other, shell in _OTHER_DELIMITERS.items():
            if other != delimiter and other in names[0]:
                raise InputError(
                    f"{path}: the header is one column holding {other!r}; "
                    f"pass --delimiter {shell} if the file is {other!r}-separated"
                )


def _csv_reason(exc: BaseException, path: Path | None = None, delimiter: str = ",") -> str:
    text = one_line(exc)
    if "Empty CSV file" in text:
        return "the file is empty (no header row)"
    if "UTF8" in text:
        line = _first_non_utf8_line(path) if path is not None else None
        where = f" (line {line})" if line else ""
        return (
            f"the file is not valid UTF-8{where}; re-save it as UTF-8, for example "
            "'iconv -f latin1 -t utf-8 IN.csv > OUT.csv' for a Latin-1 file"
        )
    if "Expected" in text and "columns" in text:
        found = _first_ragged_row(path, delimiter) if path is not None else None
        if found is not None:
            row, fields, expected = found
            return (
                f"row {row} has {fields} fields but the header has {expected}; fix or remove "
                "that row, or check --delimiter and quoting"
            )
        return f"ragged rows ({text[:200]}); check the delimiter (--delimiter) and quoting"
    return f"cannot read as CSV ({text[:300]})"


def _compressed(path: Path) -> bool:
    return str(path).lower().endswith((".gz", ".bz2", ".zst"))


def _first_non_utf8_line(path: Path) -> int | None:
    """1-based line number of the first line that is not UTF-8 (only on the error path)."""
    if _compressed(path):
        return None
    try:
        with open(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    return number
    except OSError:
        return None
    return None


def _first_ragged_row(path: Path, delimiter: str) -> tuple[int, int, int] | None:
    """(data row number, fields, header fields) of the first ragged row, read with
    Python's csv module (quoted newlines respected). Only run on the error path:
    pyarrow does not report the row number when values may hold newlines.
    """
    import csv

    if _compressed(path):
        return None
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            reader = csv.reader(f, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                return None
            for number, record in enumerate(reader, start=1):
                if record and len(record) != len(header):
                    return number, len(record), len(header)
    except (OSError, csv.Error):
        return None
    return None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from None


class ParquetSource(Source):
    """Parquet files, a glob, or a directory (hive partitions such as
    ``track_genre=pop/`` become columns), read with ``pyarrow.dataset``; one file
    is read with ``pyarrow.parquet.ParquetFile``, the same reader without the
    dataset layer (it has no partitions to find).

    The dataset layer is imported only for several files or a directory: by the
    first batch read it held ~110 MB more resident memory than one file's reader
    (its libraries, the scanner's buffers, and pandas, which it imports when
    installed); ``bench/results/ab_6_parquet_reader.json`` has whole runs.
    """

    kind = "parquet"

    def __init__(self, inputs: Sequence[str | Path]) -> None:
        inputs = [str(i) for i in inputs]
        if not inputs:
            raise InputError("no Parquet input given")
        super().__init__(", ".join(inputs))
        self.file = None
        self.dataset = None
        try:
            one = inputs[0]
            if len(inputs) == 1 and not GLOB_CHARS.search(one) and not Path(one).is_dir():
                self.path = Path(one)
                _check_file(self.path)
                self.file = pq.ParquetFile(self.path, pre_buffer=False)
                self._schema = self.file.schema_arrow
                self._total = self.file.metadata.num_rows
                return
            self.dataset = _dataset(inputs)
            self._schema = self.dataset.schema
            self._total = self.dataset.count_rows()
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{self.name}: not readable as Parquet ({one_line(exc)})") from None

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def batches(
        self, columns: Sequence[str] | None = None, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Iterator[pa.RecordBatch]:
        columns = list(columns) if columns is not None else None
        try:
            if self.file is not None:
                if self.file.closed:  # read again after close()
                    self.file = pq.ParquetFile(self.path, pre_buffer=False)
                batches = self.file.iter_batches(batch_size, columns=columns, use_threads=False)
            else:
                # No readahead and no scanner threads: with them the scanner decodes row
                # groups ahead of a slower consumer without bound (a 2M-row file was
                # held almost whole). The job's reader thread already overlaps reading
                # with inference.
                batches = self.dataset.to_batches(
                    columns=columns,
                    batch_size=batch_size,
                    batch_readahead=0,
                    fragment_readahead=0,
                    use_threads=False,
                )
            yield from _rows_at_most(iter(batches), batch_size)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{self.name}: cannot read Parquet ({one_line(exc)})") from None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _dataset(inputs: Sequence[str]):
    """A ``pyarrow.dataset`` of Parquet files, a glob or a directory (hive partitions)."""
    import pyarrow.dataset as ds

    # pre_buffer caches every column chunk read from a file until the file is
    # done: peak memory would grow with the file (a 2M-row file held ~all its
    # compressed bytes). Without it memory stays flat.
    fmt = ds.ParquetFileFormat(
        default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=False)
    )
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        return ds.dataset(inputs[0], format=fmt, partitioning="hive")
    files, base = _expand(inputs)
    return ds.dataset(files, format=fmt, partitioning="hive", partition_base_dir=base)


def _expand(inputs: Sequence[str]) -> tuple[list[str], str | None]:
    """Files named by paths and globs, and the common directory for hive partitions."""
    files: list[str] = []
    for item in inputs:
        if GLOB_CHARS.search(item):
            matches = sorted(p for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not matches:
                raise InputError(f"{item}: the pattern matches no files")
            files += matches
        else:
            path = Path(item)
            if path.is_dir():
                raise InputError(f"{item}: give a directory as the only input")
            _check_file(path)
            files.append(item)
    base = str(Path(_common_dir(files)))
    return files, base


def _common_dir(files: Sequence[str]) -> str:
    import os.path

    return os.path.commonpath([str(Path(f).parent) for f in files]) if files else "."


class DuckDBSource(Source):
    """A table (``--table``) or query (``--query``) of a DuckDB database, opened read-only."""

    kind = "duckdb"

    def __init__(
        self,
        path: str | Path,
        table: str | None = None,
        query: str | None = None,
        wait: float = 0,
    ) -> None:
        import duckdb
        from popbatch.batch.lock import DUCKDB_SCAN_MEMORY_LIMIT, connect_duckdb

        self.path = Path(path)
        if (table is None) == (query is None):
            raise InputError(f"{self.path}: a DuckDB input needs exactly one of --table or --query")
        self.table = table
        self.query = query
        super().__init__(f"{self.path}:{table}" if table else f"{self.path} (query)")
        self._table_sql = quote_identifier(table) if table else None
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such DuckDB database file")
        try:
            # A writer holding the file is a LockError (exit 75) after ``wait`` seconds.
            # A --query may join or sort, which needs memory; a --table is only scanned.
            limit = DUCKDB_SCAN_MEMORY_LIMIT if table else None
            self.con = connect_duckdb(self.path, read_only=True, wait=wait, memory_limit=limit)
        except duckdb.Error as exc:
            raise InputError(f"{self.path}: cannot open as DuckDB ({one_line(exc)})") from None
        try:
            self.relation_sql = self._table_sql if table else f"({query})"
            # The Arrow schema DuckDB will produce, from an empty result (cheap).
            self._schema = (
                self.con.sql(f"SELECT * FROM {self.relation_sql} AS source LIMIT 0")
                .to_arrow_table()
                .schema
            )
            self._total = (
                self.con.sql(f"SELECT count(*) FROM {self._table_sql}").fetchall()[0][0]
                if table
                else None
            )
        except duckdb.CatalogException:
            tables = self.tables()
            self.close()
            raise InputError(
                f"{self.path}: no table {table!r}"
                + (
                    f"; tables present: {', '.join(tables)}"
                    if tables
                    else "; the database has no tables"
                )
            ) from None
        except duckdb.Error as exc:
            self.close()
            what = f"table {table!r}" if table else "--query"
            raise InputError(f"{self.path}: {what} failed ({one_line(exc)})") from None

    def tables(self) -> list[str]:
        rows = self.con.sql(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "ORDER BY table_schema, table_name"
        ).fetchall()
        return [name if schema == "main" else f"{schema}.{name}" for schema, name in rows]

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def batches(
        self, columns: Sequence[str] | None = None, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Iterator[pa.RecordBatch]:
        import duckdb

        select = ", ".join(quote_column(c) for c in columns) if columns is not None else "*"
        try:
            reader = arrow_reader(
                self.con.sql(f"SELECT {select} FROM {self.relation_sql} AS source"), batch_size
            )
            yield from _rows_at_most(iter(reader), batch_size)
        except duckdb.Error as exc:
            raise InputError(f"{self.name}: reading failed ({one_line(exc)})") from None

    def close(self) -> None:
        con = getattr(self, "con", None)
        if con is not None:
            con.close()
            self.con = None


def input_kind(path: str) -> str:
    """``csv``, ``parquet`` or ``duckdb``, from a path's suffix (a directory is Parquet)."""
    lower = path.lower()
    if lower.endswith(CSV_SUFFIXES):
        return "csv"
    if lower.endswith(PARQUET_SUFFIXES) or Path(path).is_dir():
        return "parquet"
    if lower.endswith(DUCKDB_SUFFIXES):
        return "duckdb"
    raise InputError(
        f"{path}: unknown input type; use a .csv, .parquet, a directory of Parquet files, "
        "or a DuckDB file (.duckdb) with --table/--query"
    )


def open_source(
    inputs: Sequence[str | Path] | str | Path,
    *,
    table: str | None = None,
    query: str | None = None,
    delimiter: str = ",",
    wait: float = 0,
) -> Source:
    """Build the right :class:`Source` for the given inputs.

    Parameters
    ----------
    inputs
        One or more paths: CSV files, Parquet files, globs or one directory,
        or one DuckDB file (with ``table`` or ``query``).
    wait
        Seconds to wait for a process writing a DuckDB input to let go.

    Raises
    ------
    InputError
        For unknown or mixed input kinds, missing files, unreadable files,
        unknown tables and invalid table names.
    """
    if isinstance(inputs, str | Path):
        inputs = [inputs]
    inputs = [str(i) for i in inputs]
    if not inputs:
        raise InputError("no input given")
    if table is not None or query is not None:
        if len(inputs) != 1:
            raise InputError("--table/--query read from exactly one DuckDB file")
        return DuckDBSource(inputs[0], table=table, query=query, wait=wait)
    kinds = {input_kind(i) for i in inputs}
    if len(kinds) > 1:
        raise InputError(f"inputs mix {' and '.join(sorted(kinds))}; score one kind at a time")
    kind = kinds.pop()
    if kind == "csv":
        return CsvSource(inputs, delimiter=delimiter)
    if kind == "parquet":
        return ParquetSource(inputs)
    raise InputError(f"{inputs[0]}: a DuckDB input needs --table NAME or --query SQL")
