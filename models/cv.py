"""Repeated grouped cross-validation of the whole training recipe: ``popbatch train --cv KxR``.

One test split of a few dozen positives is noise; this estimates how good the
*recipe* is. The rows outside the test split (so the test split stays
untouched by any choice made from these numbers) are cut into K folds by
track_id, stratified by label, R times with different seeds. In each fold the
held-out part is set aside and :func:`models.pipeline.fit_stack` runs on the
rest exactly as ``popbatch train`` runs on its training split: a grouped
train/validation cut, outlier bounds, scaler, balancing, genre encoding,
out-of-fold stacking, meta learner and thresholds are all fitted inside the
fold. Every model is then scored on the held-out part.

What is scored is a *head* (:data:`HEADS`): the popular head scores
probabilities with ROC-AUC and PR-AUC. Another head (popularity regression
with R² and MAE, genre with accuracy and macro-F1) is one more :class:`Head`
whose ``predict`` returns each model's predictions for the held-out rows.

Folds run in parallel processes (``n_jobs``), each learner single-threaded:
measured on the 10k sample, the network (the slowest learner, small batches)
gains almost nothing from a second thread, a second process halves the time.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from popbatch.models.split import grouped_folds, grouped_split

Progress = Callable[[str], None]
INNER_FRACTIONS = (0.70, 0.15)  # train/validation inside a fold, as the 70/15 of train
SINGLE_EXCLUDED = ("stack", "majority")  # not candidates for "best single model"


@dataclass(frozen=True)
class CvSpec:
    """K folds, R repeats."""

    folds: int
    repeats: int

    @classmethod
    def parse(cls, text: str) -> CvSpec:
        """``"5x3"`` -> 5 folds, 3 repeats; ``"5"`` -> 5 folds, 1 repeat.

        Raises
        ------
        ValueError
            Not ``K`` or ``KxR`` with K >= 2 and R >= 1.
        """
        parts = text.lower().split("x")
        try:
            folds, repeats = int(parts[0]), int(parts[1]) if len(parts) == 2 else 1
        except (ValueError, IndexError):
            raise ValueError(f"{text!r} is not FOLDSxREPEATS, e.g. 5x3") from None
        if len(parts) > 2 or folds < 2 or repeats < 1:
            raise ValueError(f"{text!r}: needs at least 2 folds and 1 repeat, e.g. 5x3")
        return cls(folds, repeats)

    def __str__(self) -> str:
        return f"{self.folds}x{self.repeats}"


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool = True


def _popular_scores(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "f1": float(f1_score(y, p >= threshold, zero_division=0.0)),
    }


@dataclass(frozen=True)
class Head:
    """One prediction target of the model and how cross-validation scores it.

    ``score(y, prediction, threshold)`` returns one value per metric. The first
    metric is the primary one (it picks the best single model in the summary).
    """

    name: str
    description: str
    metrics: tuple[Metric, ...]
    score: Callable[[np.ndarray, np.ndarray, float], dict[str, float]]


HEADS: dict[str, Head] = {
    "popular": Head(
        "popular",
        "probability that popularity > the label threshold",
        (Metric("roc_auc"), Metric("pr_auc"), Metric("f1")),
        _popular_scores,
    ),
}


@dataclass
class FoldTask:
    """Everything one fold needs, picklable for a worker process."""

    repeat: int
    fold: int
    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    fit_rows: np.ndarray
    held_out: np.ndarray
    names: list[str]
    vocabulary: list[str] | None
    config: Any
    head: str = "popular"
    keep_scores: bool = False
    threads: int | None = None


@dataclass
class FoldResult:
    repeat: int
    fold: int
    scores: dict[str, dict[str, float]]  # model -> metric -> value
    rows: int
    positives: int
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)


def fold_tasks(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    spec: CvSpec,
    seed: int,
    **common: Any,
) -> Iterator[FoldTask]:
    """The K x R folds: repeat r cuts by track_id with seed ``seed + r``."""
    for repeat in range(spec.repeats):
        for fold, (fit_rows, held_out) in enumerate(
            grouped_folds(groups, y, spec.folds, seed + repeat)
        ):
            yield FoldTask(repeat, fold, x, y, groups, fit_rows, held_out, **common)


def inner_split(task: FoldTask) -> tuple[np.ndarray, np.ndarray, int]:
    """Training and validation rows (indices into ``task.x``) inside the fold's fitting
    rows, cut by track_id, and the fold's seed."""
    seed = task.config.seed + 1000 * (task.repeat + 1) + task.fold
    groups, y = task.groups[task.fit_rows], task.y[task.fit_rows]
    inner = grouped_split(groups, y, seed, INNER_FRACTIONS)
    return task.fit_rows[inner.train], task.fit_rows[inner.validation], seed


def fit_fold(task: FoldTask):
    """The training recipe on the fold's fitting rows only; returns the
    :class:`~models.pipeline.FittedStack` and its training and validation rows.
    Nothing of ``held_out`` — rows or labels — is passed in."""
    from popbatch.models.pipeline import fit_stack

    train, val, seed = inner_split(task)
    x, y, groups = task.x, task.y, task.groups
    fitted = fit_stack(
        x[train], y[train], groups[train], x[val], y[val], task.names, task.vocabulary,
        replace(task.config, seed=seed),
    )  # fmt: skip
    return fitted, train, val


def run_fold(task: FoldTask) -> FoldResult:
    """Fit the recipe on the fold's fitting rows (:func:`fit_fold`), score ``held_out``."""
    from popbatch.models.evaluate import best_f1_threshold
    from popbatch.models.pipeline import model_probabilities
    from popbatch.models.quiet import import_keras_quietly

    import_keras_quietly(task.threads)
    start = time.perf_counter()
    fitted, train, val = fit_fold(task)
    x, y = task.x, task.y
    x_out, y_out = task.x[task.held_out], task.y[task.held_out]
    y_train = fitted.y_train
    p_val = model_probabilities(fitted.stack, fitted.plain, x[val], y_train)
    p_out = model_probabilities(fitted.stack, fitted.plain, x_out, y_train)
    head = HEADS[task.head]
    scores = {}
    for name, p in p_out.items():
        if name == "stack":
            threshold = fitted.stack.threshold
        elif name == "majority":
            threshold = 0.5
        else:
            threshold = best_f1_threshold(y[val], p_val[name])
        scores[name] = head.score(y_out, p, threshold)
    details: dict[str, Any] = {"stack_threshold": fitted.stack.threshold}
    if task.keep_scores:  # every learner's scores, to compare stack designs afterwards
        stack = fitted.stack
        details.update(
            learners=list(stack.learners),
            oof=fitted.oof,
            y_train=y_train,
            groups_train=task.groups[train],
            y_val=y[val],
            y_out=y_out,
            val={k: stack.base_scores(x[val], k) for k in ("probability", "logit")},
            out={k: stack.base_scores(x_out, k) for k in ("probability", "logit")},
        )
    return FoldResult(
        task.repeat,
        task.fold,
        scores,
        rows=int(y_out.size),
        positives=int(y_out.sum()),
        seconds=round(time.perf_counter() - start, 1),
        details=details,
    )


def run_folds(
    tasks: list[FoldTask], n_jobs: int, progress: Progress = lambda _: None
) -> list[FoldResult]:
    """Run the folds, ``n_jobs`` processes at a time (1: in this process); results in
    (repeat, fold) order. Reports each fold as it ends."""
    start = time.perf_counter()
    results: list[FoldResult] = []

    def report(result: FoldResult) -> None:
        results.append(result)
        stack = result.scores["stack"]
        progress(
            f"cv: fold {len(results)}/{len(tasks)} (repeat {result.repeat + 1}, fold "
            f"{result.fold + 1}) in {result.seconds:.0f} s: stack ROC-AUC "
            f"{stack['roc_auc']:.3f}, PR-AUC {stack['pr_auc']:.3f}; "
            f"{time.perf_counter() - start:.0f} s so far"
        )

    if n_jobs == 1:
        for task in tasks:
            report(run_fold(task))
    else:
        from joblib import Parallel, delayed

        config = copy.deepcopy(tasks[0].config)  # the caller's config keeps its threads
        config.learners.n_jobs = 1
        tasks = [replace(t, threads=1, config=config) for t in tasks]
        parallel = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered")
        for result in parallel(delayed(run_fold)(task) for task in tasks):
            report(result)
    return sorted(results, key=lambda r: (r.repeat, r.fold))


def summarize(results: list[FoldResult], head: Head) -> dict[str, Any]:
    """Mean, std (ddof 1) and per-fold values per model and metric, and the stack's
    paired per-fold difference to the best single model of each metric."""
    models = list(results[0].scores)
    table: dict[str, dict[str, Any]] = {}
    for model in models:
        table[model] = {}
        for metric in head.metrics:
            values = np.array([r.scores[model][metric.name] for r in results])
            table[model][metric.name] = _stats(values)
    singles = [m for m in models if m not in SINGLE_EXCLUDED]
    paired = {}
    for metric in head.metrics:
        sign = 1.0 if metric.higher_is_better else -1.0
        best = max(singles, key=lambda m: sign * table[m][metric.name]["mean"])
        diff = np.array(
            [r.scores["stack"][metric.name] - r.scores[best][metric.name] for r in results]
        )
        paired[metric.name] = {
            "best_single": best,
            **_stats(diff),
            "stack_better_folds": int(np.sum(sign * diff > 0)),
            "folds_compared": int(diff.size),
        }
    return {"models": table, "stack_vs_best_single": paired}


def _stats(values: np.ndarray) -> dict[str, Any]:
    std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std, "folds": [float(v) for v in values]}


def cross_validate(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    names: list[str],
    vocabulary: list[str] | None,
    config: Any,
    spec: CvSpec,
    n_jobs: int = 2,
    head: str = "popular",
    progress: Progress = lambda _: None,
) -> dict[str, Any]:
    """Repeated grouped CV of the training recipe on rows ``x`` (the rows outside the
    test split). Returns the report's ``cv`` section (JSON-ready)."""
    start = time.perf_counter()
    tasks = list(
        fold_tasks(x, y, groups, spec, config.seed, names=names, vocabulary=vocabulary,
                   config=config, head=head)
    )  # fmt: skip
    progress(
        f"cv: {spec.folds} folds x {spec.repeats} repeats over {y.size} rows "
        f"({int(y.sum())} popular, {np.unique(groups).size} track_ids) outside the test "
        f"split, {n_jobs} process{'es' if n_jobs > 1 else ''}"
    )
    results = run_folds(tasks, n_jobs, progress)
    summary = summarize(results, HEADS[head])
    seconds = round(time.perf_counter() - start, 1)
    progress(f"cv: done in {seconds:.0f} s")
    return {
        "head": head,
        "description": HEADS[head].description,
        "spec": str(spec),
        "folds": spec.folds,
        "repeats": spec.repeats,
        "rows": int(y.size),
        "positives": int(y.sum()),
        "n_jobs": n_jobs,
        "seconds": seconds,
        "per_fold": [_fold_line(r) for r in results],
        **summary,
    }


def _fold_line(result: FoldResult) -> dict[str, Any]:
    return {
        "repeat": result.repeat,
        "fold": result.fold,
        "rows": result.rows,
        "positives": result.positives,
        "seconds": result.seconds,
        "stack_threshold": result.details["stack_threshold"],
    }


def summary_lines(cv: dict[str, Any]) -> list[str]:
    """One line per model: ``ann  roc_auc 0.829 ± 0.020  pr_auc 0.155 ± 0.024 ...``."""
    lines = []
    width = max(len(m) for m in cv["models"])
    for model, metrics in cv["models"].items():
        cells = [f"{k} {v['mean']:.3f} ± {v['std']:.3f}" for k, v in metrics.items()]
        lines.append(f"{model:<{width}}  " + "  ".join(cells))
    for metric, d in cv["stack_vs_best_single"].items():
        lines.append(
            f"stack - {d['best_single']} ({metric}): {d['mean']:+.4f} ± {d['std']:.4f}, "
            f"stack better in {d['stack_better_folds']}/{d['folds_compared']} folds"
        )
    return lines
