"""Each head's labelled predictions, its figures, and their bootstrap intervals.

A head's rows (:class:`PopularRows`, :class:`PopularityRows`,
:class:`GenreRows`) compute their figures exactly with
:mod:`popbatch.batch.metrics` (the values evaluate reports, checked against
scikit-learn), and the same figures for a bootstrap resample given as row
weights (how often each row was drawn): with the rows sorted once, a resample
costs O(rows) instead of a new sort and a copy of the data. A weighted
figure equals the exact one on the rows repeated by their weights
(``tests/test_evaluate.py`` checks it).

:func:`bootstrap` draws the resamples (seeded) and gives the 2.5th and 97.5th
percentiles of each figure; :func:`paired_bootstrap` draws the same
resamples for two models' rows (aligned row for row) and gives the interval
of the difference B - A.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from popbatch.batch import metrics

#: rows drawn afresh for each interval (``--resamples``)
DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
LEVEL = 0.95
LIFT_SHARES = {"lift_top_1pct": 0.01, "lift_top_5pct": 0.05, "lift_top_10pct": 0.10}


@dataclass(frozen=True)
class Metric:
    """A figure a head reports: its name, its direction, and whether it gets an interval."""

    name: str
    higher_is_better: bool = True
    interval: bool = True
    description: str = ""


METRICS: dict[str, tuple[Metric, ...]] = {
    "popular": (
        Metric("roc_auc", description="ROC-AUC of popularity_prob"),
        Metric("pr_auc", description="average precision (PR-AUC) of popularity_prob"),
        Metric("precision", description="precision of `popular` (the model's threshold)"),
        Metric("recall", description="recall of `popular`"),
        Metric("f1", description="F1 of `popular`"),
        Metric("brier", higher_is_better=False, description="Brier score of popularity_prob"),
        *(
            Metric(
                name,
                interval=False,
                description=f"popular share in the top {share:.0%} / popular share of all rows",
            )
            for name, share in LIFT_SHARES.items()
        ),
    ),
    "popularity": (
        Metric("r2", description="R² of popularity_pred against popularity"),
        Metric("mae", higher_is_better=False, description="mean absolute error, points"),
        Metric("rmse", higher_is_better=False, description="root mean squared error, points"),
    ),
    "genre": (
        Metric("accuracy", description="genre_pred equals track_genre"),
        Metric("top3_accuracy", description="track_genre among the head's 3 most probable"),
        Metric("macro_f1", description="F1 averaged over genres (true or predicted)"),
    ),
}
#: the figure slices are ranked by and ``model compare`` decides on, per head
MAIN_METRIC = {"popular": "roc_auc", "popularity": "mae", "genre": "accuracy"}


def metric(head: str, name: str) -> Metric:
    """The :class:`Metric` ``name`` of ``head`` (KeyError when it has none)."""
    for item in METRICS[head]:
        if item.name == name:
            return item
    raise KeyError(name)


Weights = np.ndarray | None


class PopularRows:
    """The popular head: 0/1 label, probability and the model's label, per row."""

    head = "popular"

    def __init__(self, y: np.ndarray, probability: np.ndarray, predicted: np.ndarray) -> None:
        self.y = np.asarray(y, bool)
        self.probability = np.asarray(probability, np.float64)
        self.predicted = np.asarray(predicted, bool)
        order = np.argsort(-self.probability, kind="mergesort")
        ordered = self.probability[order]
        self._order = order
        self._starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])

    def __len__(self) -> int:
        return self.y.size

    def take(self, rows: np.ndarray) -> PopularRows:
        return PopularRows(self.y[rows], self.probability[rows], self.predicted[rows])

    @property
    def counts(self) -> dict[str, int]:
        return {"rows": len(self), "positives": int(self.y.sum())}

    def figures(self, weights: Weights = None) -> dict[str, float]:
        if weights is None:
            out = {
                "roc_auc": metrics.roc_auc(self.y, self.probability),
                "pr_auc": metrics.average_precision(self.y, self.probability),
                **metrics.at_threshold(self.y, self.predicted),
                "brier": metrics.brier(self.y, self.probability),
            }
            for name, share in LIFT_SHARES.items():
                out[name] = metrics.lift_at(self.y, self.probability, share)
            return out
        w = np.asarray(weights, np.float64)
        sorted_w, sorted_y = w[self._order], self.y[self._order]
        pos_g = np.add.reduceat(sorted_w * sorted_y, self._starts)
        neg_g = np.add.reduceat(sorted_w * ~sorted_y, self._starts)
        positives, negatives = pos_g.sum(), neg_g.sum()
        out: dict[str, float] = {}
        if positives > 0 and negatives > 0:
            below = negatives - np.cumsum(neg_g)
            out["roc_auc"] = float(np.sum(pos_g * (below + 0.5 * neg_g)) / (positives * negatives))
        else:
            out["roc_auc"] = math.nan
        if positives > 0:
            tps, fps = np.cumsum(pos_g), np.cumsum(neg_g)
            total = tps + fps
            precision = np.divide(tps, total, out=np.zeros_like(tps), where=total > 0)
            out["pr_auc"] = float(np.sum(pos_g * precision) / positives)
        else:
            out["pr_auc"] = math.nan
        tp = float(np.sum(w * (self.y & self.predicted)))
        fp = float(np.sum(w * (~self.y & self.predicted)))
        fn = float(np.sum(w * (self.y & ~self.predicted)))
        out["precision"] = tp / (tp + fp) if tp + fp else 0.0
        out["recall"] = tp / (tp + fn) if tp + fn else 0.0
        out["f1"] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        out["brier"] = float(np.sum(w * (self.probability - self.y) ** 2) / w.sum())
        return out


class PopularityRows:
    """The popularity head: the label (0-100) and the predicted popularity, per row."""

    head = "popularity"

    def __init__(self, y: np.ndarray, predicted: np.ndarray) -> None:
        self.y = np.asarray(y, np.float64)
        self.predicted = np.asarray(predicted, np.float64)

    def __len__(self) -> int:
        return self.y.size

    def take(self, rows: np.ndarray) -> PopularityRows:
        return PopularityRows(self.y[rows], self.predicted[rows])

    @property
    def counts(self) -> dict[str, int]:
        return {"rows": len(self)}

    def figures(self, weights: Weights = None) -> dict[str, float]:
        if weights is None:
            return {
                "r2": metrics.r2(self.y, self.predicted),
                "mae": metrics.mae(self.y, self.predicted),
                "rmse": metrics.rmse(self.y, self.predicted),
            }
        w = np.asarray(weights, np.float64)
        total = w.sum()
        error = self.y - self.predicted
        mean = np.sum(w * self.y) / total
        spread = float(np.sum(w * (self.y - mean) ** 2))
        squared = float(np.sum(w * error**2))
        return {
            "r2": 1.0 - squared / spread if spread > 0 else math.nan,
            "mae": float(np.sum(w * np.abs(error)) / total),
            "rmse": math.sqrt(squared / total),
        }


class GenreRows:
    """The genre head: the true genre's code, the predicted class, and whether the
    true genre is among the 3 most probable classes, per row.

    Codes ``0..C-1`` are the head's classes; a true genre the head does not know
    gets a code of its own above them (never predicted, never a hit)."""

    head = "genre"

    def __init__(self, y: np.ndarray, predicted: np.ndarray, top3: np.ndarray) -> None:
        self.y = np.asarray(y, np.int64)
        self.predicted = np.asarray(predicted, np.int64)
        self.top3 = np.asarray(top3, bool)

    def __len__(self) -> int:
        return self.y.size

    def take(self, rows: np.ndarray) -> GenreRows:
        return GenreRows(self.y[rows], self.predicted[rows], self.top3[rows])

    @property
    def counts(self) -> dict[str, int]:
        return {"rows": len(self)}

    def figures(self, weights: Weights = None) -> dict[str, float]:
        if weights is None:
            return {
                "accuracy": metrics.accuracy(self.y, self.predicted),
                "top3_accuracy": float(np.mean(self.top3)) if len(self) else math.nan,
                "macro_f1": metrics.macro_f1(self.y, self.predicted),
            }
        w = np.asarray(weights, np.float64)
        total = w.sum()
        n = int(max(self.y.max(initial=0), self.predicted.max(initial=0))) + 1
        hit = self.y == self.predicted
        tp = np.bincount(self.y[hit], w[hit], minlength=n)
        occurs = np.bincount(self.y, w, minlength=n) + np.bincount(self.predicted, w, minlength=n)
        present = occurs > 0
        return {
            "accuracy": float(np.sum(w * hit) / total),
            "top3_accuracy": float(np.sum(w * self.top3) / total),
            "macro_f1": float(np.mean(2 * tp[present] / occurs[present])),
        }


HeadRows = PopularRows | PopularityRows | GenreRows


def _draws(rows: int, resamples: int, seed: int):
    """Row weights of each bootstrap resample: how often each row was drawn."""
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        yield np.bincount(rng.integers(0, rows, rows), minlength=rows)


def _interval(values: list[float]) -> list[float] | None:
    array = np.asarray(values, np.float64)
    array = array[~np.isnan(array)]
    if array.size == 0:
        return None
    low, high = np.percentile(array, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return [float(low), float(high)]


def bootstrap(
    heads: Mapping[str, HeadRows],
    resamples: int,
    seed: int,
    tick: Callable[[int], None] | None = None,
) -> dict[str, dict[str, list[float] | None]]:
    """95% percentile intervals of every head's interval figures, ``{head: {name: [lo, hi]}}``.

    Each head is resampled on its own rows (a head's rows are those with its label).
    """
    out: dict[str, dict[str, list[float] | None]] = {}
    for head, rows in heads.items():
        names = [m.name for m in METRICS[head] if m.interval]
        draws: dict[str, list[float]] = {name: [] for name in names}
        if resamples and len(rows):
            for done, weights in enumerate(_draws(len(rows), resamples, seed), start=1):
                figures = rows.figures(weights)
                for name in names:
                    draws[name].append(figures[name])
                if tick is not None:
                    tick(done)
        out[head] = {name: _interval(values) for name, values in draws.items()}
    return out


def paired_bootstrap(
    a: HeadRows, b: HeadRows, names: list[str], resamples: int, seed: int
) -> dict[str, list[float] | None]:
    """95% intervals of B - A for ``names``, both resampled with the same rows."""
    draws: dict[str, list[float]] = {name: [] for name in names}
    if resamples and len(a):
        for weights in _draws(len(a), resamples, seed):
            fa, fb = a.figures(weights), b.figures(weights)
            for name in names:
                draws[name].append(fb[name] - fa[name])
    return {name: _interval(values) for name, values in draws.items()}
