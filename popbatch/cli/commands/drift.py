"""``popbatch drift``: compare a catalog with the model's training statistics."""

from __future__ import annotations

import json
from pathlib import Path

import click

from popbatch.batch.drift import THRESHOLDS, check_drift, format_report
from popbatch.cli.commands.options import deprecated, input_options, json_option, model_option
from popbatch.cli.commands.progress import Progress
from popbatch.core.bundle import default_model_dir, read_manifest, read_prior_table
from popbatch.core.errors import EXIT_DRIFT

HELP = f"""Check a catalog for drift from the data the model was trained on.

\b
  popbatch drift catalog.parquet
  popbatch drift catalog.duckdb --table tracks --model exported/ --json

Per numeric feature: the population stability index (PSI) of the catalog's
values binned on the training deciles stored in the manifest, and the share
of values outside the training range [min, max]; for the genre, the share of
genres the model never saw. A check drifts at {THRESHOLDS.describe()}.
A feature the catalog lacks is reported as missing, not as drift. The
catalog is read in bounded batches (--batch-size rows); --map and --fill
work as in 'popbatch score'.

Exit code 0 when nothing drifted, {EXIT_DRIFT} when something did (so cron can
trigger retraining), 2 for an unreadable input, 1 for a bad model.
"""


@click.command("drift", help=HELP)
@input_options
@model_option
@json_option("Print the report as JSON on stdout.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    help="Deprecated: --format json is --json.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@click.pass_context
def drift(
    ctx: click.Context,
    inputs: tuple[str, ...],
    table: str | None,
    query: str | None,
    delimiter: str,
    maps: dict[str, str],
    fills: dict[str, str],
    batch_size: int,
    model_dir: Path | None,
    as_json: bool,
    fmt: str | None,
    quiet: bool,
) -> None:
    if fmt is not None:
        deprecated(
            f"--format {fmt}", "--json" if fmt == "json" else "no option (a table is the default)"
        )
        as_json = as_json or fmt == "json"
    directory = model_dir if model_dir is not None else default_model_dir()
    manifest = read_manifest(directory)
    read_prior_table(directory, manifest)  # verified; the known-artist check reads it
    progress = Progress("drift", quiet)
    report = check_drift(
        inputs,
        manifest,
        table=table,
        query=query,
        delimiter=delimiter,
        maps=maps,
        fills=fills,
        batch_size=batch_size,
        progress=progress,
    )
    progress.close()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(format_report(report), nl=False)
    if report.drifted:
        ctx.exit(EXIT_DRIFT)
