"""``popbatch evaluate``: parse options, call :func:`popbatch.batch.evaluate.evaluate`, report.

The library scores and measures; this module turns options into
:class:`~popbatch.batch.evaluate.EvaluateOptions`, prints the summary or the
JSON, writes ``-o`` and chooses the exit code. It imports the scorer inside
the command, so ``popbatch evaluate --help`` loads no polars or onnxruntime.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from popbatch.cli.commands.options import input_options, model_option, parse_pairs, wait_option
from popbatch.cli.commands.progress import bar_and_say
from popbatch.core import files
from popbatch.core.errors import EXIT_BELOW_FLOOR, InputError, OutputError

HELP = f"""Score labelled rows and measure the model against the labels.

\b
  popbatch evaluate labelled.csv
  popbatch evaluate labelled.parquet --model models/live -o report.html
  popbatch evaluate catalog.duckdb --table labelled_last_month --json
  popbatch evaluate labelled.csv --fail-under popular.roc_auc=0.8 --log monitor.duckdb

The rows are scored as popbatch score scores them (same --map, --fill and
rejects). Labels: popularity (0-100) gives the popular label through the
model's own rule (e.g. popularity > 71) and the popularity head's target;
track_genre the genre head's. A head whose label is absent is skipped with
a note; no label at all is an error.

Figures per head: popular: roc_auc, pr_auc (average precision), precision,
recall and f1 at the model's threshold, brier, lift_top_1pct/5pct/10pct;
popularity: r2, mae, rmse; genre: accuracy, top3_accuracy (from the head's
own class probabilities), macro_f1. Main figures carry a 95% bootstrap
interval (--resamples, seeded with --seed). Slices: per genre (the 10 best
and worst groups by the head's main figure) and explicit vs not, with row
counts; small groups are flagged.

Rows whose key is in the model's training-keys fingerprint are counted as
in-sample and left out of the headline figures; a model without one says
the in-sample share is unknown.

Output: a few lines, or --json on stdout; -o FILE.json or FILE.html (a
report with ROC, precision-recall, calibration, predicted-vs-actual and
per-genre plots). Every evaluation is recorded in a log: --log (a .duckdb
file: table popbatch_evaluations; a .jsonl file; or a folder for its
evaluations.jsonl); default beside -o, else in a DuckDB input, else beside
the input. popbatch sql --report evaluations lists them.

--fail-under HEAD.FIGURE=VALUE (repeatable) exits {EXIT_BELOW_FLOOR} when a figure is below
its floor (above it for brier, mae and rmse, where lower is better).
"""

EPILOG = f"""\b
Exit codes: 0 success; {EXIT_BELOW_FLOOR} a figure is below its --fail-under floor;
1 the run failed (model, I/O); 2 usage or input error (no label, bad option);
75 the DuckDB log is locked; 130 interrupted."""

REPORT_SUFFIXES = (".json", ".html")


@click.command("evaluate", help=HELP, epilog=EPILOG)
@input_options
@model_option
@click.option("--key", metavar="COLUMN", help="Key column (default: the model's, track_id).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report to FILE.json or FILE.html.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report on stdout.")
@click.option(
    "--fail-under",
    "floors",
    multiple=True,
    metavar="HEAD.FIGURE=VALUE",
    help=f"Exit {EXIT_BELOW_FLOOR} when the figure is below VALUE (repeatable).",
)
@click.option(
    "--resamples",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Bootstrap resamples per interval (0: no intervals).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option(
    "--log",
    type=click.Path(path_type=Path),
    metavar="PATH",
    help="Evaluation log: a .duckdb or .jsonl file, or a folder (default: see above).",
)
@click.option("--no-log", is_flag=True, help="Record nothing.")
@click.option(
    "--threads", type=click.IntRange(min=1), help="onnxruntime threads (default: all cores)."
)
@wait_option("Wait this long for a DuckDB input or log another process holds, then exit 75.")
@click.option("--quiet", "-q", is_flag=True, help="No progress and no stage lines.")
@click.pass_context
def evaluate(
    ctx: click.Context,
    inputs: tuple[str, ...],
    table: str | None,
    query: str | None,
    delimiter: str,
    maps: dict[str, str],
    fills: dict[str, str],
    batch_size: int,
    model_dir: Path | None,
    key: str | None,
    output: Path | None,
    as_json: bool,
    floors: tuple[str, ...],
    resamples: int,
    seed: int,
    log: Path | None,
    no_log: bool,
    threads: int | None,
    wait: float,
    quiet: bool,
) -> None:
    from popbatch.batch.evaluate import EvaluateOptions
    from popbatch.batch.evaluate import evaluate as run_evaluate

    if output is not None and output.suffix.lower() not in REPORT_SUFFIXES:
        raise InputError(f"-o {output}: the report is written as .json or .html")
    if log is None and output is not None:
        from popbatch.batch.evaluation_log import EVALUATIONS_JSONL

        log = output.parent / EVALUATIONS_JSONL
    options = EvaluateOptions(
        table=table,
        query=query,
        delimiter=delimiter,
        maps=maps,
        fills=fills,
        key=key,
        batch_size=batch_size,
        threads=threads,
        resamples=resamples,
        seed=seed,
        fail_under=parse_pairs("'--fail-under'", floors),
        log=log,
        record=not no_log,
        wait=wait,
    )
    progress, say = bar_and_say(quiet)

    try:
        result = run_evaluate(inputs, model_dir, options, progress=progress, say=say)
    finally:
        progress.close()
    report = result.to_dict()
    if output is not None:
        write_report(output, result)
        say(f"report: {output}")
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo("\n".join(result.lines()))
    if result.failed:
        ctx.exit(EXIT_BELOW_FLOOR)


def write_report(output: Path, result) -> None:
    """``-o``: the JSON report, or the HTML page with its plots."""
    if output.suffix.lower() == ".html":
        from popbatch.batch.evaluate_html import render

        text = render(result.to_dict(), result.plots)
    else:
        text = json.dumps(result.to_dict(), indent=2) + "\n"
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomically(output, text)
    except OSError as exc:
        raise OutputError(f"{output}: cannot write the report ({exc.strerror})") from None
