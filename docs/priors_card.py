"""The catalog-priors card of the embedded default model, generated (never typed).

``docs/generate.py`` fills docs/training.md's ``priors-card`` block with this rendering of
``popbatch/default_model/manifest.json`` (the honest evaluations, test-split figures,
the priors' definition and parity) and ``bench/results/heads_default.json``
(the output of ``python bench/heads.py popbatch/default_model batch/sample/catalog.csv``:
microseconds of inference CPU per row per head). ``tests/test_docs.py`` fails
when the page and this rendering differ (``python docs/generate.py`` rewrites it).
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COST = ROOT / "bench" / "results" / "heads_default.json"
EVALUATIONS = {
    "known": "known catalog (folds by track_id)",
    "new_release": "new release (folds by album)",
    "debut": "debut (folds by primary artist)",
}
HEAD_METRICS = {
    "popular": (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC")),
    "popularity": (("r2", "R²"), ("mae", "MAE")),
    "genre": (("accuracy", "top-1"), ("top3_accuracy", "top-3")),
}


def _cell(section: dict | None, head: str) -> str:
    if not section or head not in section:
        return "n/a"
    cv = section[head]
    model = cv["models"][cv.get("combined", "stack")]
    return ", ".join(
        f"{label} {model[m]['mean']:.3f} ± {model[m]['std']:.3f}"
        for m, label in HEAD_METRICS[head]
        if m in model
    )


def render(manifest: dict, cost: dict | None) -> str:
    lines = []
    priors = manifest.get("priors")
    if priors:
        extra = priors.get("extra", {})
        keys = ", ".join(f"{k:,} {c}" for c, k in extra.get("keys", {}).items())
        lines += [
            f"The embedded default model (`{manifest['model_id'][:12]}…`) reads priors of "
            f"{', '.join(f'`{c}`' for c in priors['columns'])} (statistics "
            f"{', '.join(priors['statistics'])}; smoothing {priors['smoothing']:g} pseudo-tracks, "
            f"combine `{priors['combine']}`); its table holds {keys} keys, "
            f"{extra.get('fitted_on', 'the labelled rows')}. "
            f"{extra.get('parity', {}).get('line', '')}.",
            "",
        ]
    else:
        lines += [
            f"The embedded default model (`{manifest['model_id'][:12]}…`) reads no catalog "
            "priors: it was trained before them.",
            "",
        ]
    evaluations = manifest.get("cv_evaluations") or {}
    if evaluations:
        spec = next(iter(next(iter(evaluations.values())).values()))["popular"]["spec"]
        lines += [
            f"Honest evaluations, `--cv {spec}` on the rows outside the test split (mean ± std "
            "over the folds; every fold fits its own priors), each beside the same recipe "
            "without priors:",
            "",
            "| evaluation | head | with priors | audio only |",
            "| --- | --- | --- | --- |",
        ]
        for evaluation, label in EVALUATIONS.items():
            recipes = evaluations.get(evaluation, {})
            for head in HEAD_METRICS:
                if head in recipes.get("priors", {}):
                    lines.append(
                        f"| {label} | {head} | {_cell(recipes.get('priors'), head)} | "
                        f"{_cell(recipes.get('audio_only'), head)} |"
                    )
        lines.append("")
    test = manifest.get("metrics", {}).get("test", {}).get("stack", {})
    heads = manifest.get("heads") or {}
    figures = []
    if test:
        figures.append(f"popular ROC-AUC {test['roc_auc']:.3f}, PR-AUC {test['pr_auc']:.3f}")
    pop = heads.get("popularity", {}).get("metrics", {}).get("test", {}).get("stack")
    if pop:
        figures.append(f"popularity R² {pop['r2']:.3f}, MAE {pop['mae']:.2f}")
    genre = heads.get("genre", {}).get("metrics", {}).get("test", {}).get("combined")
    if genre:
        figures.append(f"genre top-1 {genre['accuracy']:.3f}, top-3 {genre['top3_accuracy']:.3f}")
    if figures:
        lines += [f"Test split (the manifest's `metrics`): {'; '.join(figures)}.", ""]
    if cost:
        us = cost["us_per_row_cpu"]
        per_head = ", ".join(f"{h} {v:.2f}" for h, v in us["heads"].items())
        lines += [
            f"Inference CPU per row (`python bench/heads.py popbatch/default_model "
            f"batch/sample/catalog.csv`, {cost['threads']} threads, batches of "
            f"{cost['batch_size']:,}, load average {cost['load_average']:.1f} while it ran): "
            f"{per_head} µs; all heads together, in one graph (`all_heads.onnx`), "
            f"{us['all']:.2f} µs.",
            "",
        ]
    return "\n".join(lines)


def current(manifest: dict) -> str:
    cost = json.loads(COST.read_text(encoding="utf-8")) if COST.exists() else None
    if cost and cost["model_bytes"] != manifest["model_bytes"]:
        # a retrained default must not ship the old model's cost
        raise ValueError(
            f"{COST.name} measured another model ({cost['model_bytes']:,} bytes, the "
            f"default's are {manifest['model_bytes']:,}): rerun bench/heads.py on it"
        )
    return render(manifest, cost)
