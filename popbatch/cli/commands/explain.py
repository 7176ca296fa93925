"""``popbatch explain``: parse options, call :func:`~popbatch.batch.explain.selection.explain`,
report."""

from __future__ import annotations

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
from popbatch.cli.commands.options import input_options, model_option
from popbatch.core.features import normalize_column_name

HELP = f"""Explain predictions: which features pushed a track's score up or down.

\b
  popbatch explain catalog.csv -o why.parquet                  # the {DEFAULT_TOP} highest predicted
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
Explaining 1,000 tracks takes 20-50 s on 2 cores; more than
--max-rows tracks are refused with an estimate of the time they would take.
"""


@click.command("explain", help=HELP)
@input_options
@click.option(
    "-o", "--output", required=True, metavar="OUTPUT", help="Output .parquet, .csv or .duckdb."
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
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def explain(
    inputs: tuple[str, ...],
    output: str,
    model_dir: Path | None,
    keys_file: Path | None,
    key: str | None,
    quiet: bool,
    **options: Any,
) -> None:
    # The remaining options (reading, selection, head, limits) are explain()'s keywords.
    keys = None
    if keys_file is not None:
        keys = read_keys(keys_file, normalize_column_name(key or "track_id"))
    result = run_explain(list(inputs), model_dir, keys=keys, key=key, output=output, **options)
    if quiet:
        return
    for line in result.lines(SHOWN_TRACKS):
        click.echo(line)
    if result.tracks > SHOWN_TRACKS:
        click.echo(f"... and {result.tracks - SHOWN_TRACKS:,} more in {output}")
    if result.missing_keys:
        shown = ", ".join(result.missing_keys[:3])
        click.echo(
            f"{len(result.missing_keys)} key(s) not among the valid input rows: {shown}", err=True
        )
    click.echo(result.summary() + f"; written to {output}", err=True)
