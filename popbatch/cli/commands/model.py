"""``popbatch model info [MODEL_DIR]``: what a model is, read from its manifest only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from popbatch.core import identity
from popbatch.core.bundle import default_model_dir, load_model


@click.group("model")
def model() -> None:
    """Inspect exported models (model.onnx + manifest.json)."""


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
    throughput = manifest.get("throughput")
    if throughput:
        lines.append(
            f"throughput  {throughput['rows_per_second']:,} rows/s "
            f"({throughput['threads']} threads, batch {throughput['batch_size']:,})"
        )
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
