"""``popbatch explain``: parse options, call :func:`~popbatch.batch.explain.selection.explain`,
report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from popbatch.batch.explain.selection import (
    DEFAULT_MAX_ROWS,
    DEFAULT_PERMUTATIONS,
    DEFAULT_TOP,
    SHOWN_TRACKS,
    read_keys,
)
from popbatch.batch.explain.selection import (
    explain as run_explain,
)
from popbatch.batch.explain.space import HEADS
from popbatch.cli.commands.options import input_options, json_option, model_option
from popbatch.cli.commands.progress import Progress
from popbatch.core.features import normalize_column_name

HELP = f"""Explain predictions: which features pushed a track's score up or down.

\b
  popbatch explain catalog.csv -o why.parquet                  # the {DEFAULT_TOP} highest predicted
  popbatch explain catalog.csv --top 5                         # their top reasons, printed
  popbatch explain catalog.csv --top 5 -o why.csv
  popbatch explain catalog.parquet --keys keys.txt -o why.parquet
  popbatch explain catalog.duckdb --table tracks --where "track_genre = 'pop'" -o catalog.duckdb

INPUT is read as by 'popbatch score' (--table, --query, --map, --fill; rows
with an invalid model input are rejected, never explained). Choose the
tracks with one of --top N (highest predicted), --keys FILE (one key per
line) or --where CONDITION (a DuckDB WHERE clause over the input's columns,
model inputs as the model sees them; read-only, no file access).

The output is a long table, one row per track and feature: the key, head,
feature, value (as the model saw it; the genre in category), contribution,
rank (1 = largest |contribution|), base_value, prediction, score, model_id
and background. For each track base_value + sum(contribution) = prediction,
in log-odds of popular (--head popular) or popularity points (--head
popularity). A DuckDB OUTPUT gets table 'explanations' (or --into).

Contributions are Shapley values estimated with {DEFAULT_PERMUTATIONS} feature orders against
background rows: the training sample stored with the model, or else a random
sample of 100 valid input rows (the output's background column says which).
A track costs {DEFAULT_PERMUTATIONS} x (features - 1) x 100 model evaluations
(docs/explain.md, "Cost"); more than --max-rows tracks are refused with an
estimate of the time they would take.
"""


@click.command("explain", help=HELP)
@input_options
@click.option(
    "-o",
    "--output",
    metavar="OUTPUT",
    help="Output .parquet, .csv or .duckdb (default: print the top reasons only).",
)
@model_option
@click.option(
    "--top", type=int, metavar="N", help=f"The N highest predicted (default {DEFAULT_TOP})."
)
@click.option(
    "--keys",
    "keys_file",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Explain the tracks whose keys this file lists, one per line.",
)
@click.option("--where", metavar="CONDITION", help="Explain the rows a DuckDB WHERE clause keeps.")
@click.option(
    "--head",
    type=click.Choice(HEADS),
    default="popular",
    show_default=True,
    help="The model output to explain.",
)
@click.option("--into", metavar="TABLE", help="Table in a DuckDB OUTPUT (default: explanations).")
@click.option(
    "--overwrite-table",
    is_flag=True,
    help="Replace an --into table popbatch did not write (otherwise refused).",
)
@click.option("--key", metavar="COLUMN", help="Key column (default: the model's, track_id).")
@click.option(
    "--max-rows",
    type=int,
    default=DEFAULT_MAX_ROWS,
    show_default=True,
    help="Refuse to explain more tracks than this.",
)
@click.option(
    "--threads", type=click.IntRange(min=1), help="onnxruntime threads (default: all cores)."
)
@json_option("Print the explanation rows (as OUTPUT holds them) as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def explain(
    inputs: tuple[str, ...],
    output: str | None,
    model_dir: Path | None,
    keys_file: Path | None,
    key: str | None,
    as_json: bool,
    quiet: bool,
    **options: Any,
) -> None:
    # The remaining options (reading, selection, head, limits) are explain()'s keywords.
    keys = None
    if keys_file is not None:
        keys = read_keys(keys_file, normalize_column_name(key or "track_id"))
    progress = Progress("explain", quiet)
    try:
        result = run_explain(
            list(inputs), model_dir, keys=keys, key=key, output=output, progress=progress, **options
        )
    finally:
        progress.close()
    if as_json:
        click.echo(json.dumps(result.table.to_pylist(), indent=1, default=str))
    if quiet:
        return
    # The top reasons on the terminal (stderr when stdout carries the JSON).
    for line in result.lines(SHOWN_TRACKS):
        click.echo(line, err=as_json)
    if result.tracks > SHOWN_TRACKS:
        where = f"in {output}" if output is not None else "(write them all with -o OUTPUT)"
        click.echo(f"... and {result.tracks - SHOWN_TRACKS:,} more {where}", err=as_json)
    if result.missing_keys:
        shown = ", ".join(result.missing_keys[:3])
        click.echo(
            f"{len(result.missing_keys)} key(s) not among the valid input rows: {shown}", err=True
        )
    written = f"; written to {output}" if output is not None else ""
    click.echo(result.summary() + written, err=True)
