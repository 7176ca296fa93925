"""``popbatch sql``: DuckDB SQL over scored tables and files, and the named reports."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click
import duckdb

from popbatch.batch import sqlrun
from popbatch.cli.commands.options import wait_option
from popbatch.core import files
from popbatch.core.errors import InputError, OutputError

HELP = """Run DuckDB SQL over scored tables, or a named report.

\b
  popbatch sql "SELECT count(*) FROM scores" --db catalog.duckdb
  popbatch sql --scored 'out/*.parquet' --report popular_by_genre
  popbatch sql --db catalog.duckdb --report top_predicted --param table=scores --param limit=5
  popbatch sql --runs out/runs.jsonl --report runs
  popbatch sql --list

--scored exposes Parquet or CSV outputs (a file, glob or directory) as a
view named `scored`, which the reports read by default; --runs exposes a
runs.jsonl run log as `popbatch_runs`; --explanations exposes the output of
popbatch explain as `explanations`. A database opens READ-ONLY and
statements that write (CREATE, INSERT, COPY, ATTACH, ...) are refused
unless --write is given.

Output: an aligned table when stdout is a terminal, CSV otherwise; with -o
the format follows the file's extension (.csv, .json, .parquet). DuckDB
errors are shown as one line with the query position (exit code 2).

While popbatch score commits into the database (a few seconds at the end of
a run) DuckDB lets no other process open it: the command exits 75, or with
--wait SECONDS retries until the commit is over. It then sees the tables
before or after the run, never half-written.
"""


def _list_reports() -> None:
    for report in sqlrun.list_reports():
        click.echo(f"{report.name}: {report.description}")
        for p in report.params:
            click.echo(f"    --param {p.name}={p.default}  ({p.kind}) {p.help}")


def _write(result: duckdb.DuckDBPyRelation | None, sql: str, fmt: str, output: Path | None) -> None:
    """Stream the result to ``output`` (via a temporary file renamed at the end) or stdout."""
    schema, batches = sqlrun.record_batches(result, sql)
    if output is None:
        if fmt == "parquet" and sys.stdout.isatty():
            raise InputError("--format parquet writes binary data; pass -o FILE.parquet")
        sys.stdout.flush()
        sqlrun.write_result(schema, batches, fmt, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    tmp = files.temporary_path(output)
    try:
        with open(tmp, "wb") as stream:
            sqlrun.write_result(schema, batches, fmt, stream)
        files.replace(tmp, output)
    except OSError as exc:
        raise OutputError(f"{output}: cannot write ({exc.strerror})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@click.command("sql", help=HELP)
@click.argument("query", required=False)
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), help="DuckDB database file.")
@click.option("--scored", metavar="PATH_OR_GLOB", help="Parquet/CSV outputs as view `scored`.")
@click.option("--runs", metavar="RUNS_JSONL", help="A runs.jsonl run log as view `popbatch_runs`.")
@click.option(
    "--explanations",
    metavar="PATH_OR_GLOB",
    help="Parquet/CSV outputs of popbatch explain as view `explanations`.",
)
@click.option("--report", "report", metavar="NAME", help="Run a named report (see --list).")
@click.option(
    "--param", "params", multiple=True, metavar="NAME=VALUE", help="Report parameter (repeat)."
)
@click.option("--list", "list_", is_flag=True, help="List the named reports and their parameters.")
@click.option(
    "--format", "fmt", type=click.Choice(sqlrun.FORMATS), help="Output format (see above)."
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE."
)
@click.option("--write", is_flag=True, help="Open the database read-write and allow writes.")
@wait_option("Wait this long while popbatch score commits into --db, then exit 75.")
def sql(
    query: str | None,
    db: Path | None,
    scored: str | None,
    runs: str | None,
    explanations: str | None,
    report: str | None,
    params: tuple[str, ...],
    list_: bool,
    fmt: str | None,
    output: Path | None,
    write: bool,
    wait: float,
) -> None:
    if list_:
        _list_reports()
        return
    if (query is None) == (report is None):
        raise InputError("give either a SQL query or --report NAME (popbatch sql --list)")
    if params and report is None:
        raise InputError("--param is for --report; a query takes its values inline")
    fmt = sqlrun.choose_format(fmt, output, sys.stdout.isatty())
    con = sqlrun.connect(db, write=write, wait=wait)
    try:
        if scored is not None:
            sqlrun.attach_scored(con, scored)
        if runs is not None:
            sqlrun.attach_runs(con, runs)
        if explanations is not None:
            sqlrun.attach_scored(con, explanations, sqlrun.EXPLANATIONS_VIEW)
        if report is not None:
            result, text = sqlrun.run_report(con, report, sqlrun.parse_params(params))
        else:
            result, text = sqlrun.execute(con, query, write=write), query
        _write(result, sqlrun.last_statement(con, text), fmt, output)
    finally:
        con.close()
