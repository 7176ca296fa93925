"""``popbatch model info [MODEL_DIR]``: what a model is, read from its manifest only;
``popbatch model compare A B --data INPUT``: which of two models is better on labelled rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from popbatch.cli.commands.options import read_options
from popbatch.cli.commands.progress import bar_and_say
from popbatch.core import DEFAULT_BATCH_SIZE, identity
from popbatch.core.bundle import default_model_dir, load_model
from popbatch.core.errors import EXIT_B_WORSE, EXIT_NO_DIFFERENCE, EXIT_OK


@click.group("model")
def model() -> None:
    """Inspect exported models (model.onnx + manifest.json), or compare two."""


@model.command("info")
@click.argument("model_dir", required=False, type=click.Path(path_type=Path), metavar="[MODEL_DIR]")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
def info(model_dir: Path | None, as_json: bool) -> None:
    """Show a model's id and what it covers, label, threshold, features, metrics, size, speed.

    MODEL_DIR defaults to the embedded default model. The model is verified
    first, as the scorer does: model.onnx and the manifest's scoring contract
    must be what the model id was made from.
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
        f"id covers   {covers_text(manifest)}",
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
    lines += prior_lines(manifest)
    lines += throughput_lines(manifest.get("throughput"))
    lines += metric_lines(manifest.get("metrics", {}))
    lines += cv_lines(manifest.get("cv"))
    lines += head_lines(manifest)
    lines += evaluation_lines(manifest.get("cv_evaluations"))
    return lines


EVALUATIONS = {"known": "known catalog", "new_release": "new release", "debut": "debut"}


def prior_lines(manifest: dict[str, Any]) -> list[str]:
    """The catalog priors a model reads (none: no line)."""
    priors = manifest.get("priors")
    if not priors:
        return []
    extra = priors.get("extra") or {}
    keys = ", ".join(f"{n:,} {c}" for c, n in (extra.get("keys") or {}).items())
    return [
        f"priors      {', '.join(priors['columns'])}: {', '.join(priors['statistics'])}, "
        f"smoothing {priors['smoothing']:g}; table {priors['table_file']} ({keys} keys)"
    ]


def evaluation_lines(evaluations: dict[str, Any] | None) -> list[str]:
    """The honest evaluations (``--cv`` with priors): per evaluation and head, the
    combined model's figures with priors and audio-only."""
    lines = []
    for evaluation, recipes in (evaluations or {}).items():
        for head, cv in (recipes.get("priors") or {}).items():
            audio = (recipes.get("audio_only") or {}).get(head)
            shown = []
            for label, section in (("priors", cv), ("audio only", audio)):
                if not isinstance(section, dict):
                    continue
                values = section["models"].get(section.get("combined", "stack"), {})
                cells = ", ".join(f"{m} {v['mean']:.3f}" for m, v in values.items())
                shown.append(f"{label} {cells}")
            lines.append(
                f"evaluation  {EVALUATIONS.get(evaluation, evaluation)} {head}: {'; '.join(shown)}"
            )
    return lines


def throughput_lines(throughput: dict[str, Any] | None) -> list[str]:
    """The model-only speed measured at export, naming the heads each figure covers.

    The figure for the popular head alone is not the command's speed: ``popbatch score``
    runs every head the model has, and reads and writes too. So the line leads with all
    heads (what the default command runs), then the popular head alone, and says that
    reading, preprocessing and writing are not counted.
    """
    if not isinstance(throughput, dict) or not _number(throughput.get("rows_per_second")):
        return []
    by_heads = throughput.get("by_heads") or {"popular": throughput["rows_per_second"]}
    ordered = sorted(by_heads.items(), key=lambda item: -len(item[0].split(",")))
    shown = "; ".join(f"{heads.replace(',', '+')} {rate:,}" for heads, rate in ordered)
    return [
        f"throughput  model only, rows/s by heads: {shown} ({throughput['threads']} threads, "
        f"batch {throughput['batch_size']:,}, in memory: reading, preprocessing and writing "
        "not counted)"
    ]


def cv_lines(cv: dict[str, Any] | None) -> list[str]:
    """The cross-validation estimate, one line per model (mean ± std over the folds)."""
    if not isinstance(cv, dict) or not isinstance(cv.get("models"), dict):
        return []
    lines = [f"cv          {cv.get('spec', '?')} grouped folds over {cv.get('rows', '?')} rows"]
    for name, values in cv["models"].items():
        shown = [
            f"{k} {v['mean']:.4f} ± {v['std']:.4f}"
            for k, v in values.items()
            if k in ("roc_auc", "pr_auc") and _number(v.get("mean")) and _number(v.get("std"))
        ]
        if shown:
            lines.append(f"metrics     cv {name}: {', '.join(shown)}")
    for metric, d in (cv.get("stack_vs_best_single") or {}).items():
        if metric in ("roc_auc", "pr_auc") and _number(d.get("mean")):
            lines.append(
                f"metrics     cv stack - {d['best_single']} {metric}: {d['mean']:+.4f} ± "
                f"{d['std']:.4f}, better in {d['stack_better_folds']}/{d['folds_compared']} folds"
            )
    return lines


def head_cv_lines(name: str, cv: dict[str, Any] | None) -> list[str]:
    """A head's cross-validation estimate: its combined model's mean ± std of each metric,
    and the paired difference to the best single model of each."""
    if not isinstance(cv, dict) or not isinstance(cv.get("models"), dict):
        return []
    from popbatch.models.cv import lower_is_better  # numpy only: fine without the train extra

    combined = cv.get("combined", "stack")
    lower = lower_is_better(cv)
    values = cv["models"].get(combined, {})
    shown = [
        f"{k} {v['mean']:.4f} ± {v['std']:.4f}" + (" (lower is better)" if k in lower else "")
        for k, v in values.items()
        if _number(v.get("mean")) and _number(v.get("std"))
    ]
    lines = [f"metrics     cv {cv.get('spec', '?')} {name} {combined}: {', '.join(shown)}"]
    for metric, d in (cv.get("stack_vs_best_single") or {}).items():
        if _number(d.get("mean")):
            lines.append(
                f"metrics     cv {name} {combined} - {d['best_single']} {metric}: "
                f"{d['mean']:+.4f} ± {d['std']:.4f}, better in "
                f"{d['stack_better_folds']}/{d['folds_compared']} folds"
            )
    return lines


def head_lines(manifest: dict[str, Any]) -> list[str]:
    """One line per extra head: its file, size, columns and headline test metrics, then
    its cross-validation estimate when the run had ``--cv``."""
    heads = manifest.get("heads") or {}
    cv_heads = manifest.get("cv_heads") or {}
    lines = [f"heads       {', '.join(heads) if heads else 'popular (exported before heads)'}"]
    for name, entry in heads.items():
        if name == "popular":
            continue
        test = entry.get("metrics", {}).get("test", {})
        best = test.get("stack") or test.get("combined") or {}
        shown = [f"{k} {best[k]:.4f}" for k in ("r2", "mae", "accuracy", "top3_accuracy")
                 if _number(best.get(k))]  # fmt: skip
        lines.append(
            f"head        {name}: {entry['file']} ({entry['bytes']:,} bytes) -> "
            f"{', '.join(entry['columns'])}" + (f"; test {', '.join(shown)}" if shown else "")
        )
        lines += head_cv_lines(name, cv_heads.get(name))
    return lines


def covers_text(manifest: dict[str, Any]) -> str:
    """What the model id covers, in one line (docs/model-file.md, "Identity")."""
    fields = ", ".join(identity.covered_fields(manifest))
    if manifest.get("format_version") == 1:
        return (
            f"model.onnx (format 1: id = its sha256) + scoring contract ({fields}) "
            "checked against popbatch's record of this model; descriptive fields not covered"
        )
    return (
        f"model.onnx (sha256 {manifest['identity']['model_sha256'][:12]}…) + scoring contract "
        f"({fields}); descriptive fields (metrics, training data, created) not covered"
    )


def metric_lines(metrics: dict[str, Any], path: str = "") -> list[str]:
    """One line per model that has ROC-AUC/PR-AUC, test split first if the report nests splits."""
    if "test" in metrics and isinstance(metrics["test"], dict):
        return metric_lines(metrics["test"], "test ")
    lines = []
    for name, values in metrics.items():
        if not isinstance(values, dict):
            continue
        shown = [f"{k} {values[k]:.4f}" for k in ("roc_auc", "pr_auc") if _number(values.get(k))]
        at_threshold = values.get("at_threshold")
        if isinstance(at_threshold, dict) and _number(at_threshold.get("f1")):
            shown.append(f"f1 at threshold {at_threshold['f1']:.4f}")
        elif _number(values.get("f1")):
            shown.append(f"f1 {values['f1']:.4f}")
        if shown:
            lines.append(f"metrics     {path}{name}: {', '.join(shown)}")
    return lines


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


COMPARE_HELP = f"""Compare models A and B on the same labelled rows: which is better?

\b
  popbatch model compare models/live runs/new/model --data labelled.csv
  popbatch model compare default runs/new/model --data catalog.duckdb --table labelled --json

Both models score --data as popbatch evaluate does (same --map, --fill,
rejects); only rows both scored and neither was trained on (by their
training-keys fingerprints) are compared. Per head both models have and the
input labels: each figure for A and B, B - A and its 95% paired bootstrap
interval (the same resampled rows for both), and a verdict on the head's main
figure (popular: roc_auc, popularity: mae, genre: accuracy): B better, no
measurable difference, or B worse. A or B may be "default", the embedded model.

Exit code: {EXIT_OK} B better (promote it), {EXIT_NO_DIFFERENCE} no measurable difference,
{EXIT_B_WORSE} B worse; 2 usage or input error, 1 a model cannot be used.
"""


def _model_argument(value: str) -> Path | None:
    """A model directory, or None for ``default`` (the embedded model)."""
    path = Path(value)
    return None if value == "default" and not path.exists() else path


@model.command("compare", help=COMPARE_HELP)
@click.argument("model_a", metavar="A")
@click.argument("model_b", metavar="B")
@click.option(
    "--data",
    "inputs",
    multiple=True,
    required=True,
    metavar="INPUT",
    help="Labelled rows (as popbatch score's INPUT; repeat for several files).",
)
@read_options
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Rows per batch; memory grows with this, not with the input.",
)
@click.option("--key", metavar="COLUMN", help="Key column (default: the model's, track_id).")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option(
    "--resamples",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Paired bootstrap resamples (0: no intervals, so no measurable difference).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--quiet", "-q", is_flag=True, help="No progress and no stage lines.")
@click.pass_context
def compare(
    ctx: click.Context,
    model_a: str,
    model_b: str,
    inputs: tuple[str, ...],
    table: str | None,
    query: str | None,
    delimiter: str,
    maps: dict[str, str],
    fills: dict[str, str],
    batch_size: int,
    key: str | None,
    as_json: bool,
    resamples: int,
    seed: int,
    quiet: bool,
) -> None:
    from popbatch.batch.compare import compare as run_compare
    from popbatch.batch.evaluate import EvaluateOptions

    options = EvaluateOptions(
        table=table,
        query=query,
        delimiter=delimiter,
        maps=maps,
        fills=fills,
        key=key,
        batch_size=batch_size,
        resamples=resamples,
        seed=seed,
        record=False,
    )
    progress, say = bar_and_say(quiet)

    try:
        result = run_compare(
            list(inputs),
            _model_argument(model_a),
            _model_argument(model_b),
            options,
            progress=progress,
            say=say,
        )
    finally:
        progress.close()
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo("\n".join(result.lines()))
    ctx.exit(result.exit_code)
