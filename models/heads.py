"""``popbatch train --heads``: the popularity and genre heads beside the popular stack.

Every head uses the same cleaned rows, the same grouped 70/15/15 split and the
same seed as the popular stack (:func:`models.pipeline.make_splits`), so no
track leaks between the heads' splits either. :func:`train_heads` fits and
evaluates the requested heads; the result is saved beside the stack
(``stack/popularity/``, ``stack/genre/``), reported in ``report.json`` under
``heads`` and drawn into ``report.html``.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from popbatch.models.genre import TOP_CONFUSION

from popbatch.core.errors import InputError
from popbatch.core.features import LABEL_COLUMN
from popbatch.core.heads import HEADS, parse_heads

__all__ = ["HEADS", "HeadsResult", "parse_heads", "train_heads"]

PLOTS = {
    "popularity_pred_vs_actual": "Popularity head: predicted vs actual (test split)",
    "popularity_residuals_by_genre": "Popularity head: residuals by genre (test split)",
    "genre_confusion_matrix": (
        f"Genre head: confusion matrix of the {TOP_CONFUSION} most frequent genres (test)"
    ),
}
Progress = Callable[[str], None]


@dataclass
class HeadsResult:
    """The fitted heads, their report section and what the plots need."""

    heads: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    plot_data: dict[str, Any] = field(default_factory=dict)

    def save(self, stack_dir: Path) -> None:
        for name, head in self.heads.items():
            head.save(Path(stack_dir) / name)


def train_heads(
    config: Any,
    splits: Any,
    stack: Any,
    train_rows: np.ndarray,
    progress: Progress,
) -> HeadsResult:
    """Fit and evaluate the popularity and genre heads ``config.heads`` asks for.

    ``splits`` and ``stack`` are the popular head's (``models.pipeline``);
    ``train_rows`` selects the training rows it kept (``--outliers drop``).
    """
    result = HeadsResult()
    x_train = splits.x["train"][train_rows]
    groups = splits.groups["train"][train_rows]
    if "popularity" in config.heads:
        start = time.perf_counter()
        _popularity(config, splits, stack, x_train, groups, train_rows, progress, result)
        result.report["popularity"]["seconds"] = round(time.perf_counter() - start, 1)
    if "genre" in config.heads:
        start = time.perf_counter()
        _genre(config, splits, stack, x_train, train_rows, progress, result)
        result.report["genre"]["seconds"] = round(time.perf_counter() - start, 1)
    return result


def popularity_params(config: Any):
    """The popularity head's learner sizes for a run (``popbatch train`` and each
    cross-validation fold alike): the defaults, ``--epochs`` (when given) capping the
    network."""
    from popbatch.models import popularity

    return _capped(popularity.RegressorParams(), config)


def genre_params(config: Any):
    """The genre head's learner sizes for a run, as :func:`popularity_params`."""
    from popbatch.models import genre

    return _capped(genre.ClassifierParams(), config)


def _capped(params: Any, config: Any) -> Any:
    if config.learners.max_epochs is not None:  # --epochs given: a quick run
        params.epochs = min(params.epochs, config.learners.max_epochs)
    return params


def _popularity(config, splits, stack, x_train, groups, train_rows, progress, result) -> None:
    from popbatch.models import popularity

    targets = {k: f[LABEL_COLUMN].to_numpy().astype(np.float64) for k, f in splits.frames.items()}
    y_train = targets["train"][train_rows]
    params = popularity_params(config)
    tuning = None
    if config.tune:
        tuning = popularity.tune(
            stack, x_train, y_train, groups, splits, targets, params, config, progress
        )
    if len(params.learners) > 1:
        progress(f"popularity: {config.folds}-fold out-of-fold predictions")
    else:
        progress(f"popularity: {', '.join(params.learners)} alone, no meta learner")
    head, history = popularity.fit_head(
        stack,
        x_train,
        y_train,
        groups,
        splits.x["validation"],
        targets["validation"],
        params,
        config.seed,
        config.folds,
        progress,
    )
    metrics, test_predictions = popularity.evaluate_head(head, x_train, y_train, splits.x, targets)
    head.info = {**head.info, "metrics": {"test": metrics["test"]}}
    result.heads["popularity"] = head
    result.report["popularity"] = {
        "target": f"{LABEL_COLUMN} (0-100), clipped to [0, 100]",
        "metrics": metrics,
        "meta": {
            "coef": head.meta_coef,
            "intercept": head.meta_intercept,
            "order": list(head.learners),
        },
        "params": {
            "learners": list(head.learners),
            "rf": params.rf,
            "xgb": params.xgb,
            "xgb_rounds": int(head.xgb.n_estimators) if head.xgb is not None else None,
            "epochs": len(history.get("loss", [])),
            "unseen_copies": head.info["unseen_copies"],
            "fit_rows": head.info["fit_rows"],
        },
        "tuning": tuning,
    }
    result.plot_data["popularity"] = (targets["test"], test_predictions, splits.frames["test"])
    test = metrics["test"]["stack"]
    progress(f"popularity: test R² {test['r2']:.3f}, MAE {test['mae']:.2f}")


def _genre(config, splits, stack, x_train, train_rows, progress, result) -> None:
    from popbatch.models import genre

    if "genre" not in splits.frames["train"].columns:
        raise InputError(
            "--heads genre needs the track_genre column as its target; drop --no-genre"
        )
    genres = {k: f["genre"].to_list() for k, f in splits.frames.items()}
    genres_train = [genres["train"][i] for i in np.flatnonzero(train_rows)]
    params = genre_params(config)
    head, info = genre.fit_head(
        stack,
        x_train,
        genres_train,
        splits.x["validation"],
        genres["validation"],
        params,
        config.seed,
        progress,
    )
    metrics, test_probabilities = genre.evaluate_head(head, splits.x, genres, genres_train)
    head.info = {"metrics": {"test": _without_table(metrics["test"])}}
    result.heads["genre"] = head
    result.report["genre"] = {
        "classes": len(head.classes),
        "metrics": metrics,
        "design": params.design,
        "params": {"design": params.design},
    }
    if head.softmax is not None:
        result.report["genre"]["params"].update(
            l2=params.softmax_l2, iterations=head.softmax["iterations"]
        )
        result.report["genre"]["validation"] = info["validation"]
    else:
        result.report["genre"].update(
            ann_weight=head.ann_weight, validation_by_weight=info["weights"]
        )
        result.report["genre"]["params"].update(
            rf=params.rf, hidden=params.hidden, epochs=len(info["history"].get("loss", []))
        )
    result.plot_data["genre"] = (genres["test"], test_probabilities["combined"], head.classes)
    test = metrics["test"]["combined"]
    progress(f"genre: test accuracy {test['accuracy']:.3f}, top-3 {test['top3_accuracy']:.3f}")


def _without_table(metrics: dict[str, Any]) -> dict[str, Any]:
    """Manifest-sized metrics: the per-genre table stays in report.json."""
    return {
        name: {k: v for k, v in m.items() if k != "per_genre_f1"} for name, m in metrics.items()
    }


# ----------------------------------------------------------------- report
def write_plots(out: Path, result: HeadsResult) -> dict[str, str]:
    """Draw the heads' plots into ``out/plots`` and add a section to ``report.html``."""
    from popbatch.models.report import _pyplot, _save

    plt = _pyplot()
    plots = Path(out) / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    drawn: dict[str, str] = {}
    if "popularity" in result.plot_data:
        y, preds, frame = result.plot_data["popularity"]
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.scatter(y, preds["stack"], s=6, alpha=0.4, color="#4c72b0")
        ax.plot([0, 100], [0, 100], color="#c44e52", linestyle="--")
        ax.set(
            xlabel="actual popularity",
            ylabel="predicted popularity",
            xlim=(0, 100),
            ylim=(0, 100),
            title="Popularity stack, test split",
        )
        drawn["popularity_pred_vs_actual"] = _save(plt, fig, plots, "popularity_pred_vs_actual")
        if "genre" in frame.columns:
            residual = preds["stack"] - y
            genres = np.asarray(frame["genre"].to_list())
            names, counts = np.unique(genres, return_counts=True)
            top = names[np.argsort(-counts, kind="stable")][:25]
            fig, ax = plt.subplots(figsize=(12, 5))
            ax.boxplot([residual[genres == g] for g in top], showfliers=False)
            ax.set_xticks(range(1, len(top) + 1), top, rotation=70, fontsize=8)
            ax.axhline(0, color="#c44e52", linestyle=":")
            ax.set(
                ylabel="predicted - actual", title="Residuals of the 25 most frequent genres, test"
            )
            drawn["popularity_residuals_by_genre"] = _save(
                plt, fig, plots, "popularity_residuals_by_genre"
            )
    if "genre" in result.plot_data:
        genres, p, classes = result.plot_data["genre"]
        names, counts = np.unique(np.asarray(genres), return_counts=True)
        top = list(names[np.argsort(-counts, kind="stable")][:TOP_CONFUSION])
        where = {g: i for i, g in enumerate(top)}
        predicted = [classes[i] for i in np.argmax(p, axis=1)]
        cm = np.zeros((len(top), len(top) + 1), np.int64)
        for actual, pred in zip(genres, predicted, strict=True):
            if actual in where:
                cm[where[actual], where.get(pred, len(top))] += 1
        fig, ax = plt.subplots(figsize=(10, 9))
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(len(top) + 1), [*top, "(other)"], rotation=90, fontsize=7)
        ax.set_yticks(range(len(top)), top, fontsize=7)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6)
        ax.set(
            xlabel="predicted",
            ylabel="actual",
            title=f"Genre head, {TOP_CONFUSION} most frequent test genres",
        )
        drawn["genre_confusion_matrix"] = _save(plt, fig, plots, "genre_confusion_matrix")
    return drawn


def add_html_section(out: Path, report: dict[str, Any], drawn: dict[str, str]) -> None:
    """Insert the heads' tables and plots into ``out/report.html`` (written by models.report)."""
    from popbatch.core import files

    path = Path(out) / "report.html"
    page = path.read_text(encoding="utf-8")
    files.write_atomically(path, page.replace("</body>", heads_html(report, drawn) + "</body>", 1))


def _cell(value: Any) -> str:
    return (
        f"<td>{value:.4f}</td>"
        if isinstance(value, float)
        else f"<td>{html.escape(str(value))}</td>"
    )


def heads_html(report: dict[str, Any], drawn: dict[str, str]) -> str:
    parts = []
    if "popularity" in report:
        rows = "".join(
            "<tr>"
            + _cell(name)
            + "".join(_cell(m[k]) for k in ("r2", "mae", "mse", "rmse"))
            + "</tr>"
            for name, m in report["popularity"]["metrics"]["test"].items()
        )
        parts.append(
            "<h2>Popularity head (regression, test split)</h2><table><tr><th>model</th><th>R²</th>"
            f"<th>MAE</th><th>MSE</th><th>RMSE</th></tr>{rows}</table>"
        )
    if "genre" in report:
        keys = ("accuracy", "top3_accuracy", "macro_precision", "macro_recall", "macro_f1")
        test = report["genre"]["metrics"]["test"]
        rows = "".join(
            "<tr>" + _cell(name) + "".join(_cell(m[k]) for k in keys) + "</tr>"
            for name, m in test.items()
        )
        per_genre = sorted(test["combined"]["per_genre_f1"].items(), key=lambda kv: -kv[1]["f1"])
        genre_rows = "".join(
            f"<tr>{_cell(g)}{_cell(v['f1'])}{_cell(v['support'])}</tr>" for g, v in per_genre
        )
        design = (
            f"ANN weight in the average: {report['genre']['ann_weight']} (chosen on validation)"
            if "ann_weight" in report["genre"]
            else "softmax regression on the audio features and the artist's and album's "
            "genre history"
        )
        parts.append(
            f"<h2>Genre head (test split)</h2><p>{html.escape(design)}.</p>"
            "<table><tr><th>model</th><th>accuracy</th><th>top-3</th><th>macro precision</th>"
            "<th>macro recall</th>"
            f"<th>macro F1</th></tr>{rows}</table><h3>F1 per genre</h3><table><tr><th>genre</th>"
            f"<th>F1</th><th>test rows</th></tr>{genre_rows}</table>"
        )
    figures = "".join(
        f"<figure><img src='{html.escape(path)}' alt='{html.escape(PLOTS[key])}'>"
        f"<figcaption>{html.escape(PLOTS[key])}</figcaption></figure>"
        for key, path in drawn.items()
    )
    return "\n".join(parts) + figures + "\n"
