"""``popbatch export RUN_DIR --out MODEL_DIR``: the trained stack as one ONNX graph + manifest."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from popbatch.core.errors import InputError

# What export imports beyond the scoring install (the [train] extra).
TRAINING_MODULES = {
    "tensorflow",
    "keras",
    "sklearn",
    "xgboost",
    "joblib",
    "onnx",
    "skl2onnx",
    "onnxmltools",
    "tf2onnx",
}


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Model directory to write (model.onnx + manifest.json).",
)
@click.option(
    "--no-throughput",
    is_flag=True,
    help="Skip the ~2 s onnxruntime throughput measurement written to the manifest.",
)
@click.option(
    "--quiet", "-q", is_flag=True, help="No progress lines on stderr (off anyway when not a TTY)."
)
def export(run_dir: Path, out_dir: Path, no_throughput: bool, quiet: bool) -> None:
    """Export the stack trained into RUN_DIR to one ONNX graph plus its manifest.

    Converts the scaler, the Keras network, the RandomForest, XGBoost and the
    meta learner into MODEL_DIR/model.onnx, proves on the test split that the
    graph gives the native stack's probabilities (max |diff| <= 1e-5, labels
    identical) and only then writes model.onnx and manifest.json. A run trained
    with the popularity or genre head also gets popularity.onnx / genre.onnx,
    each with its own parity proof (popularity within 1e-3 points; genres
    identical, probabilities within 1e-5). Needs the training extras.
    """
    show_progress = not quiet and sys.stderr.isatty()

    def progress(line: str) -> None:
        if show_progress:
            click.echo(line, err=True)

    export_and_report(run_dir, out_dir, measure_throughput=not no_throughput, progress=progress)


def export_and_report(
    run_dir: Path, out_dir: Path, *, measure_throughput: bool, progress: Callable[[str], None]
) -> dict:
    """Run :func:`export.build.export_run` and print its parity proof and result lines.

    Shared by ``popbatch export`` and the end of ``popbatch train``.
    """
    # Heavy imports (TensorFlow, converters) only when the command runs.
    try:
        from popbatch.exporter.build import export_run

        summary = export_run(
            run_dir, out_dir, measure_throughput=measure_throughput, progress=progress
        )
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in TRAINING_MODULES:
            raise
        raise InputError(
            f"export needs the training extras ({exc.name} is not installed); "
            "install them with: pip install 'popbatch[train]'"
        ) from None
    click.echo(summary["parity_line"])
    for line in summary.get("head_parity_lines", []):
        click.echo(line)
    for warning in summary["warnings"]:
        click.echo(f"Warning: {warning}", err=True)
    throughput = summary["rows_per_second"]
    heads = "".join(
        f", {name}.onnx {size:,} bytes" for name, size in summary.get("head_bytes", {}).items()
    )
    click.echo(
        f"wrote {out_dir / 'model.onnx'} ({summary['model_bytes']:,} bytes{heads}, "
        f"id {summary['model_id'][:12]})"
        + (f", {throughput:,} rows/s on 2 threads" if throughput else "")
    )
    return summary
