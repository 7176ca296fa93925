"""Running SQL over scored tables: ad-hoc queries and the named reports in ``sql/``.

The library behind ``popbatch sql``. Databases open read-only unless the
caller asks to write; statements that would write are refused up front, so a
nightly target is never changed by a query typed to look at it. DuckDB errors
become one-line :class:`~popbatch.core.errors.InputError` messages with the query
position; DuckDB's file lock becomes a :class:`~popbatch.core.errors.LockError`.

Reports are ``.sql`` files under ``sql/reports/`` (package ``popbatch.sql`` when
installed). Each starts with a comment header::

    -- One-line description.
    -- param: table = scored (identifier) what it names
    -- param: limit = 20 (integer) what it means

Identifier parameters are validated (:func:`popbatch.core.sqlquote.quote_identifier`) and put into
the text where it says ``{name}``; every other parameter is bound as a DuckDB
prepared parameter ``$name``. Nothing a user types is pasted into SQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from popbatch.batch.lock import connect_duckdb, quiet

from popbatch.core.errors import InputError, one_line
from popbatch.core.sqlquote import quote_identifier, quote_string

SQL_PACKAGE = "popbatch.sql"
REPORTS_DIR = "reports"
SCORED_VIEW = "scored"
EXPLANATIONS_VIEW = "explanations"
RUNS_VIEW = "popbatch_runs"

# Statement types that only read (or set session options); anything else
# (CREATE, INSERT, COPY, ATTACH, INSTALL, ...) needs --write.
READ_ONLY_STATEMENTS = frozenset({"SELECT", "EXPLAIN", "PRAGMA", "CALL", "SET"})

_PARAM_LINE = re.compile(
    r"^--\s*param:\s*(?P<name>[A-Za-z_]\w*)\s*=\s*(?P<default>\S+)\s*"
    r"\((?P<kind>identifier|integer|number|text)\)\s*(?P<help>.*)$"
)


# ---------------------------------------------------------------------------
# Finding the SQL files


def sql_dir() -> Traversable:
    """The folder holding popbatch's ``.sql`` files: the ``popbatch.sql`` package
    (the repository's ``sql/``, mapped in pyproject.toml)."""
    return resources.files(SQL_PACKAGE)


def read_sql(name: str) -> str:
    """The text of ``sql/<name>`` (for example ``"popbatch_runs.sql"``)."""
    node = sql_dir()
    for part in name.split("/"):
        node = node / part
    return node.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------
# Identifiers


def scored_table_ddl(table: str, key: str = "track_id") -> str:
    """``CREATE TABLE IF NOT EXISTS`` for a scored table, from ``sql/scored_table.sql``."""
    text = read_sql("scored_table.sql")
    return text.replace("{table}", quote_identifier(table, "table")).replace(
        "{key}", quote_identifier(key, "key column")
    )


def runs_table_ddl() -> str:
    """``CREATE TABLE IF NOT EXISTS popbatch_runs``, from ``sql/popbatch_runs.sql``."""
    return read_sql("popbatch_runs.sql")


# ---------------------------------------------------------------------------
# Reports


@dataclass(frozen=True)
class ReportParam:
    """One parameter of a named report, as declared in its header."""

    name: str
    default: str
    kind: str  # identifier | integer | number | text
    help: str

    def convert(self, raw: str, report: str) -> Any:
        """The value to use for ``raw`` (a quoted identifier, int, float or str)."""
        where = f"report {report!r}, --param {self.name}"
        if self.kind == "identifier":
            return quote_identifier(raw, where)
        if self.kind == "integer":
            try:
                value = int(raw)
            except ValueError:
                raise InputError(f"{where}: {raw!r} is not a whole number") from None
            if value < 1:
                raise InputError(f"{where}: must be at least 1, got {value}")
            return value
        if self.kind == "number":
            try:
                return float(raw)
            except ValueError:
                raise InputError(f"{where}: {raw!r} is not a number") from None
        return raw


@dataclass(frozen=True)
class Report:
    """A named report: ``sql/reports/<name>.sql`` and its header."""

    name: str
    description: str
    params: tuple[ReportParam, ...]
    text: str = field(repr=False)

    def render(self, overrides: Mapping[str, str] | None = None) -> tuple[str, dict[str, Any]]:
        """The SQL with identifiers in place, and the prepared parameters to bind.

        Raises
        ------
        InputError
            For an unknown parameter name or a value of the wrong kind.
        """
        overrides = dict(overrides or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise InputError(
                f"report {self.name!r} has no parameter {', '.join(unknown)}; "
                f"its parameters are {', '.join(known) or 'none'}"
            )
        sql, bound = self.text, {}
        for param in self.params:
            value = param.convert(overrides.get(param.name, param.default), self.name)
            if param.kind == "identifier":
                sql = sql.replace("{" + param.name + "}", value)
            elif f"${param.name}" in sql:
                bound[param.name] = value
        return sql, bound


def parse_report(name: str, text: str) -> Report:
    """Read a report's header: the first comment line, then ``-- param:`` lines."""
    lines = [line.strip() for line in text.splitlines()]
    if not lines or not lines[0].startswith("--"):
        raise ValueError(f"report {name}: the first line must be a '-- description' comment")
    description = lines[0].lstrip("-").strip()
    params = []
    for line in lines[1:]:
        if not line.startswith("--"):
            break
        if line.lstrip("-").strip().startswith("param:"):
            match = _PARAM_LINE.match(line)
            if match is None:
                raise ValueError(f"report {name}: malformed parameter line {line!r}")
            params.append(ReportParam(**match.groupdict()))
    return Report(name=name, description=description, params=tuple(params), text=text)


def list_reports() -> list[Report]:
    """Every named report, sorted by name."""
    folder = sql_dir() / REPORTS_DIR
    reports = [
        parse_report(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(reports, key=lambda r: r.name)


def get_report(name: str) -> Report:
    """The report called ``name``; InputError naming the known ones if there is none."""
    reports = {r.name: r for r in list_reports()}
    if name not in reports:
        raise InputError(
            f"no report named {name!r}; known reports: {', '.join(reports)} "
            "(popbatch sql --list describes them)"
        )
    return reports[name]


def parse_params(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["limit=5", "key=id"]`` -> ``{"limit": "5", "key": "id"}``."""
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--param {pair!r}: expected NAME=VALUE, for example limit=10")
        params[name.strip()] = value.strip()
    return params


# ---------------------------------------------------------------------------
# Connections and views


def connect(
    db: Path | str | None = None, write: bool = False, wait: float = 0
) -> duckdb.DuckDBPyConnection:
    """Open ``db`` (read-only unless ``write``) or an in-memory database.

    While ``popbatch score`` commits into ``db`` (DuckDB lets no other process
    open the file then, not even to read) this retries for up to ``wait``
    seconds before raising the LockError.

    Raises
    ------
    InputError
        If a read-only ``db`` does not exist or is not a DuckDB database.
    LockError
        If another process holds DuckDB's lock on the file.
    """
    if db is None:
        con = quiet(duckdb.connect())
    else:
        path = Path(db)
        if not write and not path.exists():
            raise InputError(f"{path}: no such database (pass --write to create one)")
        try:
            con = connect_duckdb(path, read_only=not write, wait=wait)
        except duckdb.Error as exc:
            raise InputError(f"{path}: not a DuckDB database ({one_line(exc)})") from None
    # Errors as JSON carry the query position, which the message reports.
    con.execute("SET errors_as_json = true")
    return con


def _scored_source(path_or_glob: str, option: str = "--scored") -> str:
    """The table function reading scored Parquet or CSV files."""
    path = Path(path_or_glob)
    if path.is_dir():
        pattern = str(path / "**" / "*.parquet")
        return f"read_parquet({quote_string(pattern)}, union_by_name = true, hive_partitioning = 1)"
    lower = path_or_glob.lower()
    if lower.endswith(".parquet"):
        return f"read_parquet({quote_string(path_or_glob)}, union_by_name = true)"
    if lower.endswith((".csv", ".csv.gz")):
        return f"read_csv({quote_string(path_or_glob)}, union_by_name = true, header = true)"
    raise InputError(
        f"{option} {path_or_glob}: expected .parquet or .csv files (a path, glob or directory)"
    )


def attach_scored(
    con: duckdb.DuckDBPyConnection, path_or_glob: str, view: str = SCORED_VIEW
) -> None:
    """Expose scored Parquet/CSV outputs as the temporary view ``scored`` (or ``view``:
    ``explanations`` for the output of ``popbatch explain``)."""
    source = _scored_source(path_or_glob, f"--{view}")
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {source}")
        con.execute(f"SELECT * FROM {view} LIMIT 0")
    except duckdb.Error as exc:
        raise InputError(f"--{view} {path_or_glob}: cannot read ({error_text(exc)})") from None


def runs_columns() -> dict[str, str]:
    """Column names and types of ``popbatch_runs``, read from its one definition."""
    with duckdb.connect() as scratch:
        scratch.execute(runs_table_ddl())
        return {row[0]: row[1] for row in scratch.sql(f"DESCRIBE {RUNS_VIEW}").fetchall()}


def attach_runs(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """Expose a ``runs.jsonl`` run log as the temporary view ``popbatch_runs``."""
    if not Path(path).is_file():
        raise InputError(f"--runs {path}: no such file (runs.jsonl sits beside a file output)")
    columns = "{" + ", ".join(f"{k!r}: {v!r}" for k, v in runs_columns().items()) + "}"
    source = f"read_json({quote_string(path)}, format = 'newline_delimited', columns = {columns})"
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {RUNS_VIEW} AS SELECT * FROM {source}")
        con.execute(f"SELECT * FROM {RUNS_VIEW} LIMIT 0")
    except duckdb.Error as exc:
        raise InputError(f"--runs {path}: cannot read ({error_text(exc)})") from None


# ---------------------------------------------------------------------------
# Running


def error_text(exc: duckdb.Error, sql: str | None = None) -> str:
    """DuckDB's error as one line, with ``line L, column C`` when it has a position."""
    raw = str(exc)
    kind, _, payload = raw.partition(": ")
    try:
        info = json.loads(payload)
    except (json.JSONDecodeError, ValueError):
        return one_line(raw)
    message = f"{kind}: {one_line(info.get('exception_message', payload))}"
    position = info.get("position")
    if sql is not None and position is not None and str(position).isdigit():
        offset = int(position)
        line = sql.count("\n", 0, offset) + 1
        column = offset - (sql.rfind("\n", 0, offset) + 1) + 1
        return f"{message} (at line {line}, column {column})"
    return message


def check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse statements that write (CREATE, INSERT, COPY, ATTACH, ...).

    Raises
    ------
    InputError
        Naming the first writing statement and the ``--write`` fix.
    """
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise InputError(f"SQL error: {error_text(exc, sql)}") from None
    for number, statement in enumerate(statements, start=1):
        kind = statement.type.name
        if kind not in READ_ONLY_STATEMENTS:
            raise InputError(
                f"statement {number} is {kind}, which writes; popbatch sql is read-only "
                "unless --write is given"
            )


def execute(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: Mapping[str, Any] | None = None,
    write: bool = False,
) -> duckdb.DuckDBPyRelation | None:
    """Run ``sql`` (one or more statements); the last statement's result as a relation.

    Statements before the last run now; a reading last statement runs as the
    relation is read (:func:`record_batches`), so its rows stream instead of
    being materialised (``con.execute`` + Arrow would copy the whole result).

    Raises
    ------
    InputError
        For a writing statement without ``write``, or any DuckDB error (one
        line with the query position).
    """
    if not sql.strip():
        raise InputError("no SQL given; pass a query, --report NAME or --list")
    if not write:
        check_read_only(con, sql)
    values = dict(params) if params else None
    try:
        return con.sql(sql, params=values)
    except duckdb.Error as exc:
        error = exc
    if not write and not _has_position(error):
        # con.sql binds the last statement apart and drops DuckDB's position;
        # binding the same read-only text through con.execute fails again,
        # before any row is read, and keeps it.
        try:
            con.execute(sql, values)
        except duckdb.Error as located:
            error = located
    raise sql_error(error, sql)


def _has_position(exc: duckdb.Error) -> bool:
    return '"position":' in str(exc)


def sql_error(exc: BaseException, sql: str | None = None) -> InputError:
    """The InputError to raise for a DuckDB error met while running ``sql``."""
    if "read-only mode" in str(exc):
        return InputError(
            f"{error_text(exc)}; the database is opened read-only, pass --write to change it"
        )
    return InputError(f"SQL error: {error_text(exc, sql)}")


def last_statement(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """The text of the last statement: positions of errors met while reading rows count from it."""
    try:
        return con.extract_statements(sql)[-1].query
    except (duckdb.Error, IndexError):
        return sql


def record_batches(
    result: duckdb.DuckDBPyRelation | None, sql: str | None = None, batch_size: int = 65_536
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """A result's Arrow schema and a stream of its batches (nothing for no result).

    An error met while rows are produced (a bad cast in row 10 million) is
    raised as InputError from the iterator, not as the OSError Arrow wraps it in.
    """
    if result is None:
        return pa.schema([]), iter(())
    try:
        reader = result.to_arrow_reader(batch_size)
    except duckdb.Error as exc:
        raise sql_error(exc, sql) from None

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from reader
        except (duckdb.Error, pa.ArrowException, OSError) as exc:  # Arrow raises OSError
            raise sql_error(exc, sql) from None

    return reader.schema, batches()


def run_report(
    con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, str] | None = None
) -> tuple[duckdb.DuckDBPyRelation | None, str]:
    """Run the named report with ``params`` (raw strings, as from ``--param``).

    Returns the result and the SQL that ran (for error positions).
    """
    sql, bound = get_report(name).render(params)
    return execute(con, sql, bound), sql


# ---------------------------------------------------------------------------
# Output

FORMATS = ("table", "csv", "json", "parquet")
_SUFFIX_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".txt": "table"}


def choose_format(fmt: str | None, output: Path | None, is_tty: bool) -> str:
    """The output format: as given; else from ``-o``'s extension; else table on a
    terminal and CSV when piped or redirected (so scripts get parseable rows)."""
    if fmt is not None:
        return fmt
    if output is not None:
        return _SUFFIX_FORMATS.get(output.suffix.lower(), "csv")
    return "table" if is_tty else "csv"


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def format_table(schema: pa.Schema, batches: Iterator[pa.RecordBatch]) -> str:
    """An aligned text table (numbers right-aligned), with a row count line."""
    names = list(schema.names)
    rows = [[_cell(v) for v in row.values()] for batch in batches for row in batch.to_pylist()]
    numeric = [
        pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
        for f in schema
    ]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]

    def line(cells: list[str]) -> str:
        parts = [
            c.rjust(w) if right else c.ljust(w)
            for c, w, right in zip(cells, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(names), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out) + "\n"


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    try:
        return float(value)  # Decimal
    except (TypeError, ValueError):
        return str(value)


def write_result(
    schema: pa.Schema, batches: Iterator[pa.RecordBatch], fmt: str, stream: Any
) -> None:
    """Write the result to a binary ``stream`` in ``fmt``, batch by batch (except table)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if fmt == "table":
        stream.write(format_table(schema, batches).encode())
    elif fmt == "csv":
        with pacsv.CSVWriter(stream, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
    elif fmt == "json":
        stream.write(b"[")
        first = True
        for batch in batches:
            for row in batch.to_pylist():
                stream.write((b"" if first else b",") + b"\n")
                stream.write(json.dumps(row, default=_json_default).encode())
                first = False
        stream.write(b"\n]\n")
    elif fmt == "parquet":
        with pq.ParquetWriter(stream, schema, compression="zstd") as writer:
            for batch in batches:
                writer.write_batch(batch)
    else:
        raise InputError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
