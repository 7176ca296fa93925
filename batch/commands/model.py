"""``popbatch model info [MODEL_DIR]``: what a model is, read from its manifest only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from batch.manifest import default_model_dir, load_model


@click.group("model")
def model() -> None:
    """Inspect exported models (model.onnx + manifest.json)."""


@model.command("info")
@click.argument("model_dir", required=False, type=click.Path(path_type=Path), metavar="[MODEL_DIR]")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
def info(model_dir: Path | None, as_json: bool) -> None:
    """Show a model's id, label, threshold, features, metrics, size and speed.

    MODEL_DIR defaults to the embedded default model. The model file is
    verified against the manifest's sha256 first, as the scorer does.
    """
    bundle = load_model(model_dir)
    if as_json:
        click.echo(json.dumps(bundle.manifest, indent=2))
        return
    click.echo("\n".join(summary_lines(bundle.manifest, bundle.directory, len(bundle.onnx_bytes))))


def summary_lines(manifest: dict[str, Any], directory: Path, size: int) -> list[str]:
    label = manifest.get("label", {})
    data = manifest.get("training_data", {})
    names = [f["name"] for f in manifest["features"]]
    genre = manifest.get("genre")
    genres = "not used"
    if genre is not None:
        genres = f"{len(genre['vocabulary'])} genres + {genre['other']}"
    default = " (embedded default)" if directory == default_model_dir() else ""
    lines = [
        f"model       {directory}{default}",
        f"id          {manifest['model_id']}",
        f"created     {manifest.get('created_at', '?')} by popbatch "
        f"{manifest.get('popbatch_version', '?')}",
        f"trained on  {data.get('file', '?')} ({data.get('rows', '?')} rows, "
        f"sha256 {str(data.get('sha256', '?'))[:12]})",
        f"label       popular = {label.get('definition', '?')}",
        f"threshold   {manifest['threshold']:.6g} (probability >= threshold is popular)",
        f"features    {len(names)}: {', '.join(names[:14])}"
        + (f", ... {len(names) - 14} more" if len(names) > 14 else ""),
        f"genre       {genres}",
        f"size        {size:,} bytes",
    ]
    throughput = manifest.get("throughput")
    if throughput:
        lines.append(
            f"throughput  {throughput['rows_per_second']:,} rows/s "
            f"({throughput['threads']} threads, batch {throughput['batch_size']:,})"
        )
    for model_name, values in manifest.get("metrics", {}).items():
        if isinstance(values, dict):
            shown = ", ".join(
                f"{k} {v:.4f}" for k, v in values.items() if isinstance(v, int | float)
            )
            lines.append(f"metrics     {model_name}: {shown}")
    return lines
