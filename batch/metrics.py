"""Model-quality metrics in numpy only, defined as scikit-learn defines them.

The scoring install has no scikit-learn, so ``popbatch evaluate`` computes its
figures here; ``tests/test_evaluate.py`` checks each against scikit-learn's
function of the same name to 1e-6 on scored real rows.

======================  =============================================  ============================
here                    scikit-learn                                   note
======================  =============================================  ============================
:func:`roc_auc`         ``roc_auc_score``                              ties count one half
:func:`average_precision`  ``average_precision_score`` (PR-AUC)        step sum, no interpolation
:func:`at_threshold`    ``precision/recall/f1_score``                  0 where undefined
:func:`brier`           ``brier_score_loss``
:func:`r2` etc.         ``r2_score``, ``mean_absolute_error``, RMSE
:func:`accuracy`        ``accuracy_score``
:func:`top_k_accuracy`  ``top_k_accuracy_score``                       same tie order
:func:`macro_f1`        ``f1_score(average="macro")``                  over true and predicted
======================  =============================================  ============================

A metric that is undefined on the rows given (AUC with one class, R² with a
constant target) is NaN, which the JSON writes as null.
"""

from __future__ import annotations

import math

import numpy as np

NAN = float("nan")


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (as scipy's rankdata "average")."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.size]
    average = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(values.size, np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve: P(a positive outranks a negative), ties counting one half."""
    y = np.asarray(y, bool)
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return NAN
    ranks = _ranks(np.asarray(score, np.float64))
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _descending(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives above each distinct score, highest score first."""
    order = np.argsort(-np.asarray(score, np.float64), kind="mergesort")
    ordered = np.asarray(score, np.float64)[order]
    hits = np.asarray(y, bool)[order]
    last = np.r_[np.flatnonzero(ordered[1:] != ordered[:-1]), ordered.size - 1]
    tps = np.cumsum(hits)[last]
    return tps, last + 1 - tps


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """PR-AUC as ``average_precision_score``: sum over thresholds of (R_k - R_k-1) * P_k."""
    y = np.asarray(y, bool)
    if not y.any():
        return NAN
    tps, fps = _descending(y, score)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at each distinct threshold, from (0, 0)."""
    tps, fps = _descending(y, score)
    return np.r_[0.0, fps / max(fps[-1], 1)], np.r_[0.0, tps / max(tps[-1], 1)]


def pr_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) at each distinct threshold, highest threshold first."""
    tps, fps = _descending(y, score)
    return tps / max(tps[-1], 1), tps / (tps + fps)


def at_threshold(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of the positive class for predicted labels (0 where undefined)."""
    y, predicted = np.asarray(y, bool), np.asarray(predicted, bool)
    tp = int(np.sum(y & predicted))
    fp = int(np.sum(~y & predicted))
    fn = int(np.sum(y & ~predicted))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def brier(y: np.ndarray, probability: np.ndarray) -> float:
    """Mean squared difference between probability and the 0/1 label."""
    return float(np.mean((np.asarray(probability, np.float64) - np.asarray(y, np.float64)) ** 2))


def lift_at(y: np.ndarray, score: np.ndarray, share: float) -> float:
    """Positive rate among the top ``share`` of rows by score (at least one row;
    ties broken by row order), divided by the positive rate of all rows."""
    y = np.asarray(y, bool)
    if y.size == 0 or not y.any():
        return NAN
    top = max(1, math.ceil(share * y.size))
    order = np.argsort(-np.asarray(score, np.float64), kind="mergesort")[:top]
    return float(y[order].mean() / y.mean())


def r2(y: np.ndarray, predicted: np.ndarray) -> float:
    """Coefficient of determination (NaN for a constant target, where it is undefined)."""
    y = np.asarray(y, np.float64)
    total = float(np.sum((y - y.mean()) ** 2))
    if total == 0.0:
        return NAN
    return 1.0 - float(np.sum((y - np.asarray(predicted, np.float64)) ** 2)) / total


def mae(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y, np.float64) - np.asarray(predicted, np.float64))))


def rmse(y: np.ndarray, predicted: np.ndarray) -> float:
    difference = np.asarray(y, np.float64) - np.asarray(predicted, np.float64)
    return float(np.sqrt(np.mean(difference**2)))


def accuracy(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.asarray(y) == np.asarray(predicted)))


def top_k_accuracy(y: np.ndarray, probabilities: np.ndarray, k: int = 3) -> float:
    """Share of rows whose class index ``y`` is among the ``k`` most probable classes
    (ties ordered as scikit-learn orders them); ``y`` of -1 (a class the head does
    not know) is never a hit."""
    order = np.argsort(probabilities, axis=1, kind="mergesort")[:, ::-1][:, :k]
    return float(np.mean(np.any(order == np.asarray(y)[:, None], axis=1)))


def macro_f1(y: np.ndarray, predicted: np.ndarray) -> float:
    """Mean F1 over every class that occurs as truth or prediction."""
    y, predicted = np.asarray(y), np.asarray(predicted)
    classes, codes = np.unique(np.r_[y, predicted], return_inverse=True)
    truth, guess = codes[: y.size], codes[y.size :]
    n = classes.size
    tp = np.bincount(truth[truth == guess], minlength=n)
    true_count = np.bincount(truth, minlength=n)
    guess_count = np.bincount(guess, minlength=n)
    denominator = true_count + guess_count
    f1 = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
    return float(f1.mean())


def calibration(y: np.ndarray, probability: np.ndarray, bins: int = 10) -> list[dict]:
    """Mean predicted probability and observed positive rate per quantile bin of the
    probability (equal row counts; fewer bins when probabilities repeat)."""
    probability = np.asarray(probability, np.float64)
    y = np.asarray(y, np.float64)
    if probability.size == 0:
        return []
    order = np.argsort(probability, kind="mergesort")
    return [
        {"predicted": float(probability[part].mean()), "observed": float(y[part].mean()),
         "rows": int(part.size)}
        for part in np.array_split(order, min(bins, probability.size))
        if part.size
    ]  # fmt: skip
