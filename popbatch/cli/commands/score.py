"""``popbatch score``: parse options, build the library objects, report.

The work is done by :func:`batch.score.score`; this module only turns options
into a source, a sink and a model, and prints the summary. It imports the scorer
inside the command, so ``popbatch score --help`` loads no polars, pyarrow or
onnxruntime.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from popbatch.cli.commands.options import (
    deprecated,
    input_options,
    json_option,
    model_option,
    wait_option,
)
from popbatch.cli.commands.progress import ProgressBar
from popbatch.core import WRITE_MODES, files
from popbatch.core.errors import OutputError

HELP = """Score catalogs: predict which tracks will be popular.

\b
  popbatch score catalog.csv -o scored.parquet
  popbatch score 'catalog/*.parquet' -o scored.csv --columns all
  popbatch score catalog.duckdb --table tracks -o catalog.duckdb --into scores --mode upsert
  popbatch score catalog.duckdb --table tracks --write-back
  popbatch score catalog.parquet -o scored.parquet --incremental --wait 600

INPUT is CSV files, Parquet files, a glob or a directory of Parquet files
(hive partitions included), or a DuckDB database with --table or --query.
Rows stream through in batches of --batch-size, so memory does not grow with
the catalog. Column names are normalised as in training ("Duration (ms)" ->
duration_ms).

The output holds the key column (--columns: key, all, or a comma list) then
popularity_prob, popular, model_id, scored_at (UTC, one time per run) and
features_hash (a stable hash of the row's model inputs), then one set of
columns per extra head the model has (--heads chooses): popularity_pred
(0-100) for the popularity head, genre_pred and genre_prob for the genre head.
Other columns keep their types (CSV: inferred from the whole file); input
columns named like these are replaced by the new scores.
Without -o it is <input stem>.scored.parquet beside the input. Files are
written to a temporary name and renamed at the end; DuckDB targets change in
one transaction at the end: a failed run writes nothing. A table popbatch did
not write is never replaced without --overwrite-table, and --into never names
the input --table (--write-back adds the scores to it).

Rows with a missing, non-numeric, NaN/inf or out-of-range model input are
written with their row number, reason and original values to --rejects
(default <output stem>.rejects.<ext>, or table <table>_rejects in a DuckDB
target), or stop the run with --on-invalid fail. A run that rejects every row
fails, naming the most common reason, and writes nothing.

--incremental scores only rows that are new, whose feature values changed
(features_hash) or that another model scored, and carries the others over
from the existing Parquet output or DuckDB table: the result equals a full
run. One run at a time per target: a lock file <target>.lock makes a second
run wait up to --wait seconds, then exit 75 naming the holder. Every run is
recorded in table popbatch_runs of a DuckDB target, or in runs.jsonl beside
a file output.
"""

EPILOG = """\b
Exit codes: 0 success; 1 the run failed (I/O, model); 2 usage or input error
(bad option, missing file, column or table, invalid row with --on-invalid fail,
every row rejected); 75 another run (or a DuckDB writer) holds the target: try
again later; 130 interrupted. Nothing is written unless the run succeeds (the run log
records failures too)."""


def _columns(value: str) -> str | list[str]:
    value = value.strip()
    if value in ("key", "all"):
        return value
    names = [c.strip() for c in value.split(",") if c.strip()]
    if not names:
        raise click.BadParameter("give key, all, or a comma-separated list", param_hint="--columns")
    return names


@click.command("score", help=HELP, epilog=EPILOG)
@input_options
@click.option(
    "-o",
    "--output",
    metavar="OUTPUT",
    help="Output .parquet, .csv or .duckdb (default: <input stem>.scored.parquet beside it).",
)
@model_option
@click.option(
    "--into", metavar="TABLE", help="Table to write in a DuckDB OUTPUT (default: scores)."
)
@click.option(
    "--mode",
    type=click.Choice(WRITE_MODES),
    help="How --into changes an existing table: replace (default), append, or upsert by --key.",
)
@click.option(
    "--overwrite-table",
    is_flag=True,
    help="Let --mode replace replace a table (or rejects table) popbatch did not write; "
    "without it such a table is refused.",
)
@click.option(
    "--write-back",
    is_flag=True,
    help="Add/update popularity_prob, popular, model_id, scored_at on --table itself, by --key.",
)
@click.option("--key", metavar="COLUMN", help="Key column (default: the model's, track_id).")
@click.option(
    "--columns",
    default="key",
    show_default=True,
    metavar="key|all|LIST",
    help="Input columns to keep beside the scores: the key, all, or a comma list.",
)
@click.option(
    "--on-invalid",
    type=click.Choice(["reject", "fail"]),
    default="reject",
    show_default=True,
    help="Invalid rows: write them to --rejects and go on, or stop the run.",
)
@click.option(
    "--rejects",
    metavar="PATH",
    help="Rejected rows: a .parquet/.csv file, or a table name with a DuckDB output.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="onnxruntime threads (default: all cores but one, which reads and preprocesses).",
)
@json_option("Print the run summary as JSON on stdout.")
@click.option(
    "--summary",
    "summary_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Deprecated (use --json > FILE): also write the run summary as JSON here.",
)
@click.option(
    "--incremental",
    is_flag=True,
    help="Score only new or changed rows (or rows of an older model); keep the rest.",
)
@click.option(
    "--heads",
    metavar="LIST",
    help="Heads to score, e.g. popular,genre (default: every head the model has; "
    "popular is always scored).",
)
@wait_option("Wait this long for another run holding the target, then exit 75.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary line.")
def score(
    inputs: tuple[str, ...],
    table: str | None,
    query: str | None,
    delimiter: str,
    maps: dict[str, str],
    fills: dict[str, str],
    batch_size: int,
    output: str | None,
    model_dir: Path | None,
    into: str | None,
    mode: str | None,
    overwrite_table: bool,
    write_back: bool,
    key: str | None,
    columns: str,
    on_invalid: str,
    rejects: str | None,
    threads: int | None,
    as_json: bool,
    summary_path: Path | None,
    incremental: bool,
    heads: str | None,
    wait: float,
    quiet: bool,
) -> None:
    # Imported here, not at the top: the scorer brings polars, pyarrow and
    # onnxruntime (~0.6 s), which `popbatch score --help` does not need.
    from popbatch.batch.score import ScoreOptions
    from popbatch.batch.score import score as run_score

    options = ScoreOptions(
        table=table,
        query=query,
        delimiter=delimiter,
        into=into,
        mode=mode,
        write_back=write_back,
        overwrite_table=overwrite_table,
        key=key,
        columns=_columns(columns),
        maps=maps,
        fills=fills,
        on_invalid=on_invalid,
        rejects=rejects,
        batch_size=batch_size,
        threads=threads,
        incremental=incremental,
        wait=wait,
        heads=heads,
    )
    if summary_path is not None:  # never over the input or the output
        from popbatch.batch.naming import refuse_overwriting_input

        refuse_overwriting_input([*inputs, *([output] if output else [])], summary_path, None, None)
    progress = ProgressBar(enabled=False if quiet else None)
    try:
        summary = run_score(inputs, output, model_dir, options, progress=progress)
    finally:
        progress.close()
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, default=str))
    if summary_path is not None:
        deprecated("--summary FILE", "--json > FILE")
        try:
            files.write_atomically(
                summary_path, json.dumps(summary.to_dict(), indent=2, default=str) + "\n"
            )
        except OSError as exc:
            raise OutputError(
                f"{summary_path}: cannot write the summary ({exc.strerror})"
            ) from None
    if not quiet:
        click.echo(summary.line(), err=True)
