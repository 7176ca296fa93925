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

Every head the run trains is cross-validated on the same folds (:data:`HEADS`):
the popular head (ROC-AUC, PR-AUC, F1 of every base learner, the stack, the plain
logistic regression and the majority class), the popularity head (R² and MAE of
its stack, each base learner, the plain linear regression and the training mean)
and the genre head (accuracy, macro-F1 and top-3 accuracy of the combination,
the forest, the network and the most frequent genre). Each head fits its own
whole recipe (its inner out-of-fold stacking, early stopping, weight choice) on
the fold's fitting rows only, with the same inner train/validation cut as the
popular stack, whose clip bounds and scaler the other heads read as in
``popbatch train``.

Folds run in parallel processes (``n_jobs``), each learner single-threaded:
measured on the 10k sample, the network (the slowest learner, small batches)
gains almost nothing from a second thread, a second process halves the time.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import numpy as np
from popbatch.models.split import grouped_folds, grouped_split

Progress = Callable[[str], None]
INNER_FRACTIONS = (0.70, 0.15)  # train/validation inside a fold, as the 70/15 of train


def _quiet(_: str) -> None:
    """Inside a fold the heads' own stage lines would interleave across processes."""


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


@dataclass
class FoldTask:
    """Everything one fold needs, picklable for a worker process.

    ``targets`` holds the other heads' labels, row for row with ``x``:
    ``"popularity"`` (0-100) and ``"genre"`` (the catalog's genre).
    """

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
    heads: tuple[str, ...] = ("popular",)
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    keep_scores: bool = False
    threads: int | None = None
    priors: Any = None
    """:class:`models.priors.FoldPriors` (the rows' catalog columns and the recipe): the
    fold makes its own priors (``x`` then lacks them), None for the audio-only recipe."""


@dataclass
class FoldFit:
    """The popular stack fitted inside one fold, and the rows every head fits on.

    ``train`` are the fold's training rows the stack kept (``--outliers drop``
    removes some), ``val`` its validation rows: indices into ``task.x``, all among
    ``task.fit_rows``. The other heads borrow the stack's clip bounds and scaler.
    """

    fitted: Any  # models.pipeline.FittedStack
    train: np.ndarray
    val: np.ndarray
    seed: int


Scores = dict[str, dict[str, float]]  # model -> metric -> value


@dataclass(frozen=True)
class Head:
    """One prediction target of the model and how cross-validation scores it.

    ``run(task, fold)`` fits the head's recipe on the fold's training rows and
    returns each model's scores on the held-out rows (and details to keep).
    ``combined`` is the head's combined model; it and the trivial ``baselines``
    are never "the best single model" the combination is compared with.
    """

    name: str
    description: str
    metrics: tuple[Metric, ...]
    run: Callable[[FoldTask, FoldFit], tuple[Scores, dict[str, Any]]]
    combined: str = "stack"
    baselines: tuple[str, ...] = ()

    def singles(self, models: list[str]) -> list[str]:
        """The models the combination has to beat: base learners and the plain
        linear/logistic reference (a real model the stack must beat)."""
        return [m for m in models if m != self.combined and m not in self.baselines]


def _popular(task: FoldTask, fold: FoldFit) -> tuple[Scores, dict[str, Any]]:
    """Every model's probabilities on the held-out rows; thresholds from validation."""
    from popbatch.models.evaluate import best_f1_threshold
    from popbatch.models.pipeline import model_probabilities
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    fitted, val, out = fold.fitted, fold.val, task.held_out
    x, y = task.x, task.y
    p_val = model_probabilities(fitted.stack, fitted.plain, x[val], fitted.y_train)
    p_out = model_probabilities(fitted.stack, fitted.plain, x[out], fitted.y_train)
    scores = {}
    for name, p in p_out.items():
        if name == "stack":
            threshold = fitted.stack.threshold
        elif name == "majority":
            threshold = 0.5
        else:
            threshold = best_f1_threshold(y[val], p_val[name])
        scores[name] = {
            "roc_auc": float(roc_auc_score(y[out], p)),
            "pr_auc": float(average_precision_score(y[out], p)),
            "f1": float(f1_score(y[out], p >= threshold, zero_division=0.0)),
        }
    details: dict[str, Any] = {"stack_threshold": fitted.stack.threshold}
    if task.keep_scores:  # every learner's scores, to compare stack designs afterwards
        stack = fitted.stack
        details.update(
            learners=list(stack.learners),
            oof=fitted.oof,
            y_train=fitted.y_train,
            groups_train=task.groups[fold.train],
            y_val=y[val],
            y_out=y[out],
            val={k: stack.base_scores(x[val], k) for k in ("probability", "logit")},
            out={k: stack.base_scores(x[out], k) for k in ("probability", "logit")},
        )
    return scores, details


def _popularity(task: FoldTask, fold: FoldFit) -> tuple[Scores, dict[str, Any]]:
    """The regression stack (its own grouped out-of-fold meta learner) fitted on the
    fold's training rows; the stack, base learners and both baselines scored on the
    held-out rows (``evaluate_head`` calls them its "test" split)."""
    from popbatch.models import popularity
    from popbatch.models.heads import popularity_params

    config, x, target = task.config, task.x, task.targets["popularity"]
    train, val, out = fold.train, fold.val, task.held_out
    params = popularity_params(config)
    if config.tune:  # as models.heads does, on the fold's rows (its validation rows stand in)
        popularity.tune(
            fold.fitted.stack, x[train], target[train], task.groups[train],
            SimpleNamespace(x={"validation": x[val]}), {"validation": target[val]}, params,
            replace(config, seed=fold.seed), _quiet,
        )  # fmt: skip
    head, _ = popularity.fit_head(
        fold.fitted.stack, x[train], target[train], task.groups[train], x[val], target[val],
        params, fold.seed, config.folds, _quiet,
    )  # fmt: skip
    metrics, _ = popularity.evaluate_head(
        head, x[train], target[train],
        {"validation": x[val], "test": x[out]}, {"validation": target[val], "test": target[out]},
    )  # fmt: skip
    keep = [m.name for m in HEADS["popularity"].metrics]
    return {name: {k: m[k] for k in keep} for name, m in metrics["test"].items()}, {}


def _genre(task: FoldTask, fold: FoldFit) -> tuple[Scores, dict[str, Any]]:
    """The genre classifier fitted on the fold's training rows (weight chosen on its
    validation rows); held-out genres it never saw count as misses."""
    from popbatch.models import genre
    from popbatch.models.heads import genre_params

    x, genres = task.x, task.targets["genre"]
    train, val, out = fold.train, fold.val, task.held_out
    fit_genres = genres[train].tolist()
    head, _ = genre.fit_head(
        fold.fitted.stack, x[train], fit_genres, x[val], genres[val].tolist(),
        genre_params(task.config), fold.seed, _quiet,
    )  # fmt: skip
    metrics, _ = genre.evaluate_head(
        head, {"validation": x[val], "test": x[out]},
        {"validation": genres[val].tolist(), "test": genres[out].tolist()}, fit_genres,
    )  # fmt: skip
    keep = [m.name for m in HEADS["genre"].metrics]
    return {name: {k: m[k] for k in keep} for name, m in metrics["test"].items()}, {}


HEADS: dict[str, Head] = {
    "popular": Head(
        "popular",
        "probability that popularity > the label threshold",
        (Metric("roc_auc"), Metric("pr_auc"), Metric("f1")),
        _popular,
        baselines=("majority",),
    ),
    "popularity": Head(
        "popularity",
        "popularity (0-100), regression",
        (Metric("r2"), Metric("mae", higher_is_better=False)),
        _popularity,
        baselines=("mean",),
    ),
    "genre": Head(
        "genre",
        "genre from the audio features",
        (Metric("accuracy"), Metric("macro_f1"), Metric("top3_accuracy")),
        _genre,
        combined="combined",
        baselines=("most_frequent",),
    ),
}


@dataclass
class FoldResult:
    repeat: int
    fold: int
    scores: dict[str, Scores]  # head -> model -> metric -> value
    rows: int
    positives: int
    seconds: dict[str, float]  # head -> seconds its fitting and scoring took in this fold
    details: dict[str, Any] = field(default_factory=dict)  # the popular head's


def fold_tasks(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    spec: CvSpec,
    seed: int,
    split_groups: np.ndarray | None = None,
    **common: Any,
) -> Iterator[FoldTask]:
    """The K x R folds: repeat r cuts by ``split_groups`` (default: the track_ids
    ``groups``; an album or primary artist for the new-release and debut evaluations)
    with seed ``seed + r``."""
    cut = groups if split_groups is None else split_groups
    for repeat in range(spec.repeats):
        for fold, (fit_rows, held_out) in enumerate(
            grouped_folds(cut, y, spec.folds, seed + repeat)
        ):
            yield FoldTask(repeat, fold, x, y, groups, fit_rows, held_out, **common)


def inner_split(task: FoldTask) -> tuple[np.ndarray, np.ndarray, int]:
    """Training and validation rows (indices into ``task.x``) inside the fold's fitting
    rows, cut by track_id, and the fold's seed."""
    seed = task.config.seed + 1000 * (task.repeat + 1) + task.fold
    groups, y = task.groups[task.fit_rows], task.y[task.fit_rows]
    inner = grouped_split(groups, y, seed, INNER_FRACTIONS)
    return task.fit_rows[inner.train], task.fit_rows[inner.validation], seed


def fit_fold(task: FoldTask) -> FoldFit:
    """The popular stack's training recipe on the fold's fitting rows only (nothing of
    ``held_out``, rows or labels, is passed in), and the rows the other heads fit on."""
    from popbatch.models.pipeline import fit_stack, kept_rows
    from popbatch.models.priors import shared_width

    train, val, seed = inner_split(task)
    x, y, groups = task.x, task.y, task.groups
    config = replace(task.config, seed=seed)
    k = shared_width(task.names)  # the stack's inputs: not the priors' genre shares
    fitted = fit_stack(
        x[train][:, :k], y[train], groups[train], x[val][:, :k], y[val], task.names[:k],
        task.vocabulary, config,
    )  # fmt: skip
    if k < len(task.names):
        fitted.stack.input_names = list(task.names)
    return FoldFit(fitted, train[kept_rows(x[train][:, :k], config)], val, seed)


def with_fold_priors(task: FoldTask) -> FoldTask:
    """``task`` with the catalog priors made inside the fold: the fold's training rows
    get out-of-fold priors among themselves, its validation and held-out rows priors
    from a table of its training rows. Nothing of a held-out row reaches a table."""
    if task.priors is None:
        return task
    train, val, seed = inner_split(task)
    others = np.concatenate([val, task.held_out])
    x, names = task.priors.matrix(task.x, task.names, train, others, seed)
    return replace(task, x=x, names=names)


def run_fold(task: FoldTask) -> FoldResult:
    """Fit every head's recipe on the fold's fitting rows (:func:`fit_fold`), score
    ``held_out``."""
    from popbatch.models.quiet import import_keras_quietly

    import_keras_quietly(task.threads)
    start = time.perf_counter()
    task = with_fold_priors(task)
    fold = fit_fold(task)
    scores, seconds, details = {}, {}, {}
    for name in task.heads:
        scores[name], found = HEADS[name].run(task, fold)
        details.update(found)
        # the popular head's seconds include fitting the stack every head reads
        seconds[name] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
    y_out = task.y[task.held_out]
    return FoldResult(
        task.repeat, task.fold, scores, int(y_out.size), int(y_out.sum()), seconds, details
    )


def _fold_summary(result: FoldResult) -> str:
    """``stack ROC-AUC 0.834, PR-AUC 0.151; popularity stack r2 0.271, mae 14.1; ...``."""
    parts = []
    for head, scores in result.scores.items():
        spec = HEADS[head]
        values = scores[spec.combined]
        shown = ", ".join(f"{m.name} {values[m.name]:.3f}" for m in spec.metrics[:2])
        parts.append(f"{'' if head == 'popular' else head + ' '}{spec.combined} {shown}")
    return "; ".join(parts).replace("roc_auc", "ROC-AUC").replace("pr_auc", "PR-AUC")


def run_folds(
    tasks: list[FoldTask], n_jobs: int, progress: Progress = lambda _: None
) -> list[FoldResult]:
    """Run the folds, ``n_jobs`` processes at a time (1: in this process); results in
    (repeat, fold) order. Reports each fold as it ends."""
    start = time.perf_counter()
    results: list[FoldResult] = []

    def report(result: FoldResult) -> None:
        results.append(result)
        costs = ", ".join(f"{h} {s:.0f} s" for h, s in result.seconds.items())
        progress(
            f"cv: fold {len(results)}/{len(tasks)} (repeat {result.repeat + 1}, fold "
            f"{result.fold + 1}) in {sum(result.seconds.values()):.0f} s: "
            f"{_fold_summary(result)} ({costs}); {time.perf_counter() - start:.0f} s so far"
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
    """Mean, std (ddof 1) and per-fold values per model and metric, and the combined
    model's paired per-fold difference to the best single model of each metric (best:
    the highest mean, or the lowest for a metric where lower is better, e.g. MAE)."""
    scores = [r.scores[head.name] for r in results]
    models = list(scores[0])
    table: dict[str, dict[str, Any]] = {}
    for model in models:
        table[model] = {}
        for metric in head.metrics:
            values = np.array([s[model][metric.name] for s in scores])
            table[model][metric.name] = _stats(values)
    singles = head.singles(models)
    paired = {}
    for metric in head.metrics:
        sign = 1.0 if metric.higher_is_better else -1.0
        best = max(singles, key=lambda m: sign * table[m][metric.name]["mean"])
        diff = np.array([s[head.combined][metric.name] - s[best][metric.name] for s in scores])
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
    heads: tuple[str, ...] = ("popular",),
    targets: dict[str, np.ndarray] | None = None,
    progress: Progress = lambda _: None,
    priors: Any = None,
    split_groups: np.ndarray | None = None,
) -> dict[str, dict[str, Any]]:
    """Repeated grouped CV of the training recipe of every head in ``heads`` on rows
    ``x`` (the rows outside the test split), all heads on the same folds; ``targets``
    holds the other heads' labels (:class:`FoldTask`); ``priors``, the catalog priors
    every fold makes for itself (``x`` without them); ``split_groups`` what the folds
    keep together (default the track_ids ``groups``). Returns head -> the report's CV
    section for that head (JSON-ready).

    Raises
    ------
    ValueError
        A head in ``heads`` without its labels in ``targets``.
    """
    targets = targets or {}
    missing = [h for h in heads if h != "popular" and h not in targets]
    if missing:  # before any process starts, not in a worker an hour later
        raise ValueError(f"cross_validate: no targets for the {', '.join(missing)} head")
    start = time.perf_counter()
    tasks = list(
        fold_tasks(x, y, groups, spec, config.seed, split_groups, names=names,
                   vocabulary=vocabulary, config=config, heads=heads, targets=targets,
                   priors=priors)
    )  # fmt: skip
    progress(
        f"cv: {spec.folds} folds x {spec.repeats} repeats over {y.size} rows "
        f"({int(y.sum())} popular, {_group_count(groups, split_groups)}) outside the test "
        f"split, heads {', '.join(heads)}, {n_jobs} process{'es' if n_jobs > 1 else ''}"
    )
    results = run_folds(tasks, n_jobs, progress)
    seconds = round(time.perf_counter() - start, 1)
    progress(f"cv: done in {seconds:.0f} s")
    return {name: _section(results, HEADS[name], spec, y, n_jobs, seconds) for name in heads}


def _group_count(groups: np.ndarray, split_groups: np.ndarray | None) -> str:
    if split_groups is None:
        return f"{np.unique(groups).size} track_ids"
    return f"{np.unique(split_groups).size} groups"


def _section(results, head: Head, spec: CvSpec, y, n_jobs: int, seconds: float) -> dict[str, Any]:
    """One head's CV section; ``seconds`` is the whole CV's wall time (all heads)."""
    return {
        "head": head.name,
        "description": head.description,
        "combined": head.combined,
        "metrics": [{"name": m.name, "higher_is_better": m.higher_is_better} for m in head.metrics],
        "spec": str(spec),
        "folds": spec.folds,
        "repeats": spec.repeats,
        "rows": int(y.size),
        "positives": int(y.sum()),
        "n_jobs": n_jobs,
        "seconds": seconds,
        "seconds_per_fold": round(float(np.mean([r.seconds[head.name] for r in results])), 1),
        "per_fold": [_fold_line(r, head.name) for r in results],
        **summarize(results, head),
    }


def _fold_line(result: FoldResult, head: str) -> dict[str, Any]:
    line = {
        "repeat": result.repeat,
        "fold": result.fold,
        "rows": result.rows,
        "positives": result.positives,
        "seconds": result.seconds[head],
    }
    if head == "popular":
        line["stack_threshold"] = result.details["stack_threshold"]
    return line


def lower_is_better(cv: dict[str, Any]) -> set[str]:
    """The metrics of a CV section where lower is better (sections before heads: none)."""
    metrics = [m for m in cv.get("metrics") or [] if isinstance(m, dict)]
    return {m.get("name") for m in metrics if m.get("higher_is_better") is False}


def summary_lines(cv: dict[str, Any]) -> list[str]:
    """One line per model: ``ann  roc_auc 0.829 ± 0.020  pr_auc 0.155 ± 0.024 ...``,
    then the combined model's paired difference to the best single model."""
    lines = []
    width = max(len(m) for m in cv["models"])
    lower = lower_is_better(cv)
    for model, metrics in cv["models"].items():
        cells = [f"{k} {v['mean']:.3f} ± {v['std']:.3f}" for k, v in metrics.items()]
        lines.append(f"{model:<{width}}  " + "  ".join(cells))
    combined = cv.get("combined", "stack")
    for metric, d in cv["stack_vs_best_single"].items():
        note = ", lower is better" if metric in lower else ""
        lines.append(
            f"{combined} - {d['best_single']} ({metric}{note}): {d['mean']:+.4f} ± "
            f"{d['std']:.4f}, {combined} better in {d['stack_better_folds']}/"
            f"{d['folds_compared']} folds"
        )
    return lines
