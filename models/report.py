"""The training report: report.json, report.html and the PNG plots it shows.

Plots use matplotlib's Agg backend (no display needed, safe under cron).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from popbatch.models.cv import lower_is_better
from popbatch.models.evaluate import permutation_importance

from popbatch.core import files
from popbatch.core.features import GENRE_COLUMN, LABEL_COLUMN, NUMERIC_FEATURE_NAMES

PLOTS = {
    "popularity_distribution": "Popularity distribution and the label threshold",
    "class_balance": "Class balance per split",
    "correlation": "Feature correlation (training split)",
    "ann_history": "ANN training history",
    "roc_curves": "ROC curves (test split)",
    "pr_curves": "Precision-recall curves (test split)",
    "confusion_matrix": "Confusion matrix of the stack (test split, chosen threshold)",
    "feature_importance": "Feature importance",
    "popularity_by_genre": "Popularity by genre",
    "shap_bar": "Mean |SHAP| per feature (popular head, log-odds, test sample)",
    "shap_beeswarm": "SHAP values per feature, colour = feature value (popular head)",
    "shap_dependence": "SHAP dependence of the three most important numeric features",
    "cv_boxplot": "Repeated grouped cross-validation: per-fold scores of each model",
    "cv_boxplot_popularity": "Repeated grouped cross-validation of the popularity head",
    "cv_boxplot_genre": "Repeated grouped cross-validation of the genre head",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_json(path: Path, report: dict[str, Any]) -> None:
    files.write_atomically(path, json.dumps(_finite(report), indent=2))


def _finite(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None (never invalid JSON)."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_report(
    out: Path,
    report: dict[str, Any],
    stack: Any,
    splits: Any,
    probabilities: dict[str, dict[str, np.ndarray]],
    history: dict[str, list[float]],
    config: Any,
) -> None:
    """Draw every plot into ``out/plots`` and write ``out/report.html``; adds
    ``plots`` and ``importance`` to ``report``."""
    plt = _pyplot()
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    frames = splits.frames
    drawn: dict[str, str | None] = {}
    drawn["popularity_distribution"] = _popularity(plt, plots, frames, config.popular_above)
    drawn["class_balance"] = _class_balance(plt, plots, report["data"]["splits"])
    drawn["correlation"] = _correlation(plt, plots, frames["train"])
    drawn["ann_history"] = _history(plt, plots, history) if history else None
    y_test = splits.y["test"]
    drawn["roc_curves"] = _curves(plt, plots, y_test, probabilities["test"], "roc")
    drawn["pr_curves"] = _curves(plt, plots, y_test, probabilities["test"], "pr")
    cm = report["metrics"]["test"]["stack"]["at_threshold"]["confusion_matrix"]
    drawn["confusion_matrix"] = _confusion(plt, plots, cm, stack.threshold)
    importance = _importances(stack, splits, config.seed)
    report["importance"] = importance
    drawn["feature_importance"] = _importance_plot(plt, plots, importance)
    drawn["popularity_by_genre"] = _by_genre(plt, plots, frames, config.popular_above)
    from popbatch.models import explain_report

    shap = explain_report.stack_shap(stack, splits, config.seed)
    report["shap"] = {"popular": shap["summary"]}
    drawn.update(explain_report.draw(plt, plots, shap, _save))
    for head, cv in cv_sections(report).items():
        drawn[_cv_plot_name(head)] = _cv_boxplot(plt, plots, cv, _cv_plot_name(head))
    report["plots"] = {k: v for k, v in drawn.items() if v}
    files.write_atomically(out / "report.html", _html(report, drawn))


def _save(plt: Any, fig: Any, plots: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(plots / f"{name}.png", dpi=100)
    plt.close(fig)
    return f"plots/{name}.png"


def _popularity(plt: Any, plots: Path, frames: dict, popular_above: float) -> str:
    values = np.concatenate([f[LABEL_COLUMN].to_numpy() for f in frames.values()])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(values, bins=np.arange(0, 102, 2), color="#4c72b0")
    ax.axvline(popular_above, color="#c44e52", linestyle="--", label=f"popular > {popular_above:g}")
    share = float(np.mean(values > popular_above))
    ax.set(xlabel="popularity", ylabel="rows", title=f"Popularity ({share:.1%} popular)")
    ax.legend()
    return _save(plt, fig, plots, "popularity_distribution")


def _class_balance(plt: Any, plots: Path, per_split: dict) -> str:
    names = list(per_split)
    popular = [per_split[n]["popular"] for n in names]
    other = [per_split[n]["rows"] - per_split[n]["popular"] for n in names]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(names, other, label="not popular", color="#8da0cb")
    ax.bar(names, popular, bottom=other, label="popular", color="#fc8d62")
    for i, n in enumerate(names):
        ax.text(
            i,
            per_split[n]["rows"],
            f"{per_split[n]['share_popular']:.1%}",
            ha="center",
            va="bottom",
        )
    ax.set(ylabel="rows", title="Class balance per split (train_balanced: after --balance)")
    ax.legend()
    return _save(plt, fig, plots, "class_balance")


def _correlation(plt: Any, plots: Path, train: Any) -> str:
    columns = [*NUMERIC_FEATURE_NAMES, LABEL_COLUMN]
    matrix = train.select(columns).to_numpy().astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.nan_to_num(np.corrcoef(matrix, rowvar=False))
    fig, ax = plt.subplots(figsize=(8, 7))
    image = ax.imshow(corr, cmap="coolwarm", vmin=-1, vmax=1)
    ax.set_xticks(range(len(columns)), columns, rotation=90)
    ax.set_yticks(range(len(columns)), columns)
    for i in range(len(columns)):
        for j in range(len(columns)):
            ax.text(j, i, f"{corr[i, j]:.1f}", ha="center", va="center", fontsize=6)
    fig.colorbar(image, ax=ax)
    ax.set_title("Pearson correlation, training split")
    return _save(plt, fig, plots, "correlation")


def _history(plt: Any, plots: Path, history: dict[str, list[float]]) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        epochs = range(1, len(history.get(metric, [])) + 1)
        ax.plot(epochs, history.get(metric, []), label=f"train {metric}")
        ax.plot(epochs, history.get(f"val_{metric}", []), label=f"validation {metric}")
        ax.set(xlabel="epoch", ylabel=metric, title=f"ANN {metric} per epoch")
        ax.legend()
    return _save(plt, fig, plots, "ann_history")


def _curves(plt: Any, plots: Path, y: np.ndarray, probs: dict, kind: str) -> str:
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, p in probs.items():
        if kind == "roc":
            fpr, tpr, _ = roc_curve(y, p)
            ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
        else:
            precision, recall, _ = precision_recall_curve(y, p)
            ax.plot(recall, precision, label=name, drawstyle="steps-post")
    if kind == "roc":
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test split")
    else:
        ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, test split")
    ax.legend(fontsize=8)
    return _save(plt, fig, plots, "roc_curves" if kind == "roc" else "pr_curves")


def _confusion(plt: Any, plots: Path, cm: list[list[int]], threshold: float) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(cm, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(cm[i][j]), ha="center", va="center", fontsize=14)
    ax.set_xticks([0, 1], ["not popular", "popular"])
    ax.set_yticks([0, 1], ["not popular", "popular"])
    ax.set(xlabel="predicted", ylabel="actual", title=f"Stack, threshold {threshold:.3f}")
    return _save(plt, fig, plots, "confusion_matrix")


def _importances(stack: Any, splits: Any, seed: int) -> dict[str, dict[str, float]]:
    names = stack.feature_names
    blocks = {n: [i] for i, n in enumerate(names) if n in NUMERIC_FEATURE_NAMES}
    genre_columns = [i for i, n in enumerate(names) if n not in NUMERIC_FEATURE_NAMES]
    if genre_columns:
        blocks[GENRE_COLUMN] = genre_columns
    permutation = permutation_importance(
        stack.predict_proba, splits.x["validation"], splits.y["validation"], blocks, seed
    )
    importance = {}
    if stack.rf is not None:
        importance["rf"] = dict(zip(names, map(float, stack.rf.feature_importances_), strict=True))
    if stack.xgb is not None:
        xgb_names = names
        if stack.genre_encoding is not None:
            xgb_names = [*names[: stack.n_numeric], f"{GENRE_COLUMN} (target-encoded)"]
        gains = map(float, stack.xgb.feature_importances_)
        importance["xgb"] = dict(zip(xgb_names, gains, strict=True))
    if stack.logistic is not None:
        weights = map(abs, stack.logistic.coef)
        importance["logistic"] = dict(zip(names, weights, strict=True))
    importance["stack_permutation_validation_roc_auc_drop"] = permutation
    return importance


def _importance_plot(plt: Any, plots: Path, importance: dict[str, dict[str, float]]) -> str:
    titles = {
        "rf": "RandomForest impurity importance",
        "xgb": "XGBoost gain importance",
        "logistic": "Logistic regression |weight| (scaled inputs)",
        "stack_permutation_validation_roc_auc_drop": "Stack permutation (ROC-AUC drop, val)",
    }
    titles = {k: v for k, v in titles.items() if k in importance}
    fig, axes = plt.subplots(1, len(titles), figsize=(5 * len(titles), 6), squeeze=False)
    for ax, (key, title) in zip(axes[0], titles.items(), strict=True):
        top = sorted(importance[key].items(), key=lambda kv: kv[1], reverse=True)[:20][::-1]
        ax.barh([k for k, _ in top], [v for _, v in top], color="#55a868")
        ax.set_title(title)
        ax.tick_params(axis="y", labelsize=8)
    return _save(plt, fig, plots, "feature_importance")


def _by_genre(plt: Any, plots: Path, frames: dict, popular_above: float) -> str | None:
    import polars as pl

    if "genre" not in frames["train"].columns:
        return None
    rows = pl.concat([f.select("genre", LABEL_COLUMN) for f in frames.values()])
    table = (
        rows.group_by("genre")
        .agg(
            pl.col(LABEL_COLUMN).mean().alias("mean"),
            (pl.col(LABEL_COLUMN) > popular_above).mean().alias("share"),
            pl.len().alias("rows"),
        )
        .sort("mean", descending=True)
    )
    shown = pl.concat([table.head(15), table.tail(15)]).unique(maintain_order=True)
    fig, axes = plt.subplots(1, 2, figsize=(12, 7), sharey=True)
    labels = shown["genre"].to_list()[::-1]
    axes[0].barh(labels, shown["mean"].to_list()[::-1], color="#4c72b0")
    axes[0].set(xlabel="mean popularity", title="Top and bottom 15 genres by mean popularity")
    axes[1].barh(labels, shown["share"].to_list()[::-1], color="#c44e52")
    axes[1].set(xlabel=f"share with popularity > {popular_above:g}", title="Share popular")
    axes[0].tick_params(axis="y", labelsize=8)
    return _save(plt, fig, plots, "popularity_by_genre")


def add_head_shap(
    out: Path, report: dict[str, Any], predict: Any, feature_names: list[str], splits: Any,
    seed: int, head: str,
) -> None:  # fmt: skip
    """SHAP values of another head (``popularity``: points) beside the popular head's:
    ``report["shap"][head]``, its three plots, and a section of ``out/report.html``."""
    from popbatch.models import explain_report

    plt = _pyplot()
    result = explain_report.head_shap(predict, feature_names, splits, seed, head)
    report.setdefault("shap", {})[head] = result["summary"]
    drawn = explain_report.draw(plt, out / "plots", result, _save, prefix=f"{head}_")
    report.setdefault("plots", {}).update(drawn)
    images = "".join(
        f'<figure><img src="{html.escape(path)}" alt="{html.escape(key)}"></figure>'
        for key, path in drawn.items()
    )
    section = _shap_html({head: result["summary"]}).replace(
        "<h2>Why: SHAP values</h2>", f"<h2>Why: SHAP values of the {html.escape(head)} head</h2>"
    )
    path = out / "report.html"
    page = path.read_text(encoding="utf-8")
    files.write_atomically(path, page.replace("</body>", section + images + "</body>", 1))


def _shap_html(shap: dict[str, Any] | None) -> str:
    if not shap:
        return ""
    parts = []
    for head, summary in shap.items():
        top = ", ".join(f"{k} {v:.3f}" for k, v in list(summary["mean_abs"].items())[:5])
        parts.append(
            f"<p><b>{html.escape(head)} head</b>: {html.escape(summary['meaning'])} "
            f"Mean |SHAP| on {summary['rows']} test rows against {summary['background_rows']} "
            f"training rows ({summary['permutations']} feature orders, "
            f"{summary['seconds']} s): {html.escape(top)}. The genre one-hot block is one "
            "feature, 'genre'. The same values per track: <code>popbatch explain</code>.</p>"
        )
    return "<h2>Why: SHAP values</h2>" + "".join(parts)


def cv_sections(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Head -> CV section of a report (a report from before the heads were
    cross-validated has the popular head's only, as ``cv``)."""
    if "cv_heads" in report:
        return report["cv_heads"]
    return {"popular": report["cv"]} if "cv" in report else {}


def _cv_plot_name(head: str) -> str:
    return "cv_boxplot" if head == "popular" else f"cv_boxplot_{head}"


def _cv_boxplot(plt: Any, plots: Path, cv: dict[str, Any], name: str) -> str:
    models = list(cv["models"])
    metrics = list(cv["models"][models[0]])
    lower = lower_is_better(cv)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        ax.boxplot([cv["models"][m][metric]["folds"] for m in models], showmeans=True)
        ax.set_xticks(range(1, len(models) + 1), models, rotation=30)
        label = f"{metric} (lower is better)" if metric in lower else metric
        head = cv.get("head", "popular")
        ax.set(ylabel=label, title=f"{head}: {metric}, {cv['folds']}x{cv['repeats']} folds")
        ax.grid(axis="y", alpha=0.3)
    return _save(plt, fig, plots, name)


def _cv_html(sections: dict[str, dict[str, Any]]) -> str:
    """One CV table per head, after what every head's folds share."""
    if not sections:
        return ""
    first = next(iter(sections.values()))
    return f"""<h2>Cross-validation ({html.escape(first["spec"])})</h2>
<p>Each head's whole training recipe (inner train/validation cut, balancing, genre encoding,
out-of-fold stacking, early stopping, thresholds and weights) ran inside each of
{first["folds"]} folds x {first["repeats"]} repeats, grouped by track_id, over the
{first["rows"]} rows ({first["positives"]} popular) outside the test split, every head on the
same folds; {first["seconds"]:.0f} s for all heads with {first["n_jobs"]} processes.
Mean ± standard deviation over folds.</p>
{"".join(_cv_head_html(head, cv) for head, cv in sections.items())}"""


def _cv_head_html(head: str, cv: dict[str, Any]) -> str:
    """A head's table (mean ± std per model and metric), paired differences, per-fold values."""
    models = cv["models"]
    metrics = list(next(iter(models.values())))
    lower = lower_is_better(cv)
    combined = html.escape(cv.get("combined", "stack"))
    header = "<tr><th>model</th>" + "".join(
        f"<th>{html.escape(m)}{' (lower is better)' if m in lower else ''}</th>" for m in metrics
    )
    rows = "".join(
        f"<tr><td>{html.escape(model)}</td>"
        + "".join(f"<td>{v[m]['mean']:.4f} ± {v[m]['std']:.4f}</td>" for m in metrics)
        + "</tr>"
        for model, v in models.items()
    )
    paired = "".join(
        f"<li>{html.escape(metric)}: {combined} − {html.escape(d['best_single'])} = "
        f"{d['mean']:+.4f} ± {d['std']:.4f} (per-fold std); {combined} better in "
        f"{d['stack_better_folds']} of {d['folds_compared']} folds</li>"
        for metric, d in cv["stack_vs_best_single"].items()
    )
    fold_header = "<tr><th>model</th><th>metric</th>" + "".join(
        f"<th>r{f['repeat'] + 1}f{f['fold'] + 1}</th>" for f in cv["per_fold"]
    )
    fold_rows = "".join(
        f"<tr><td>{html.escape(model)}</td><td>{html.escape(m)}</td>"
        + "".join(f"<td>{value:.3f}</td>" for value in v[m]["folds"])
        + "</tr>"
        for model, v in models.items()
        for m in metrics
    )
    cost = (
        f" Fitting and scoring it took {cv['seconds_per_fold']:.0f} s per fold."
        if ("seconds_per_fold" in cv)
        else ""
    )
    return f"""<h3>Cross-validation ({html.escape(cv["spec"])}): {html.escape(head)} head</h3>
<p>Scored: {html.escape(cv.get("description", head))}.{cost}</p>
<table>{header}</tr>{rows}</table>
<p>Paired per-fold difference of {combined} to the best single model (trivial baselines
excluded):</p><ul>{paired}</ul>
<details><summary>Per-fold values</summary><table>{fold_header}</tr>{fold_rows}</table>
</details>
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _html(report: dict[str, Any], drawn: dict[str, str | None]) -> str:
    test = report["metrics"]["test"]
    rows = []
    for name, m in test.items():
        t, h = m["at_threshold"], m["at_0.5"]
        cells = [
            name,
            m["roc_auc"],
            m["pr_auc"],
            t["threshold"],
            t["accuracy"],
            t["precision"],
            t["recall"],
            t["f1"],
            h["precision"],
            h["recall"],
            h["f1"],
        ]
        rows.append("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in cells) + "</tr>")
    header = (
        "<tr><th>model</th><th>ROC-AUC</th><th>PR-AUC</th><th>threshold</th><th>accuracy</th>"
        "<th>precision</th><th>recall</th><th>F1</th><th>precision@0.5</th><th>recall@0.5</th>"
        "<th>F1@0.5</th></tr>"
    )
    data = report["data"]
    splits = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v['rows']}</td><td>{v['popular']}</td>"
        f"<td>{v['share_popular']:.2%}</td></tr>"
        for k, v in data["splits"].items()
    )
    figures = "".join(
        f"<figure><img src='{html.escape(path)}' alt='{html.escape(PLOTS[key])}'>"
        f"<figcaption>{html.escape(PLOTS[key])}</figcaption></figure>"
        for key, path in drawn.items()
        if path
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.get("notes", []))
    rows_text = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in data["rows"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>popbatch training report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1200px; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
figure {{ display: inline-block; margin: 1em; vertical-align: top; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
</style></head><body>
<h1>popbatch training report</h1>
<p>Data: {html.escape(str(data["file"]))}; rows: {html.escape(rows_text)}.
Genres in training: {data["genres"] if data["genres"] is not None else "not used"}.</p>
<h2>Splits</h2>
<table><tr><th>split</th><th>rows</th><th>popular</th><th>share</th></tr>{splits}</table>
<h2>Test metrics</h2>
<p>Thresholds are chosen on the validation split (best F1 of the positive class);
the majority baseline uses 0.5. Stack threshold: {report["metrics"]["threshold"]:.4f}.</p>
<table>{header}{"".join(rows)}</table>
<ul>{notes}</ul>
{_shap_html(report.get("shap"))}
{_cv_html(cv_sections(report))}
<h2>Plots</h2>
{figures}
</body></html>
"""
