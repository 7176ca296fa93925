"""Metrics of a probability column against labels, with no NaN anywhere.

Where a metric is undefined (ROC-AUC with one class only, PR-AUC without
positives) it is ``None`` and ``undefined`` says why, so report.json never
holds NaN and a reader knows what happened.
"""

from __future__ import annotations

from typing import Any

import numpy as np

POSITIVE = "popular"
NEGATIVE = "not popular"


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability cut with the best F1 of the positive class (ties: the lowest cut).

    Returns 0.5 when ``y`` has no positives (no cut can be chosen).
    """
    from sklearn.metrics import precision_recall_curve

    y = np.asarray(y).astype(int)
    if y.sum() == 0:
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y, p)
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return float(thresholds[int(np.argmax(f1))])


def at_threshold(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy, precision, recall and F1 of the positive class, confusion matrix, report."""
    from sklearn.metrics import (
        accuracy_score,
        classification_report,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
    )

    y = np.asarray(y).astype(int)
    pred = (np.asarray(p) >= threshold).astype(int)
    kwargs = {"zero_division": 0.0}
    return {
        "threshold": float(threshold),
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, **kwargs)),
        "recall": float(recall_score(y, pred, **kwargs)),
        "f1": float(f1_score(y, pred, **kwargs)),
        "predicted_positive": int(pred.sum()),
        "confusion_matrix": confusion_matrix(y, pred, labels=[0, 1]).tolist(),
        "classification_report": _clean(
            classification_report(
                y,
                pred,
                labels=[0, 1],
                target_names=[NEGATIVE, POSITIVE],
                output_dict=True,
                zero_division=0.0,
            )
        ),
    }


def _clean(report: dict[str, Any]) -> dict[str, Any]:
    """Plain floats (sklearn returns numpy scalars)."""
    out: dict[str, Any] = {}
    for key, value in report.items():
        out[key] = _clean(value) if isinstance(value, dict) else float(value)
    return out


def evaluate(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """All metrics of one model: ranking metrics plus counts at ``threshold`` and at 0.5."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y).astype(int)
    p = np.asarray(p, np.float64)
    undefined: dict[str, str] = {}
    positives = int(y.sum())
    if 0 < positives < y.size:
        roc_auc: float | None = float(roc_auc_score(y, p))
    else:
        roc_auc = None
        undefined["roc_auc"] = f"needs both classes; {positives} of {y.size} rows are positive"
    if positives > 0:
        pr_auc: float | None = float(average_precision_score(y, p))
    else:
        pr_auc = None
        undefined["pr_auc"] = "no positive rows"
    if positives == 0:
        undefined["recall"] = "no positive rows; reported as 0"
    result = {
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "positives": positives,
        "rows": int(y.size),
        "at_threshold": at_threshold(y, p, threshold),
        "at_0.5": at_threshold(y, p, 0.5),
    }
    if undefined:
        result["undefined"] = undefined
    return result


def permutation_importance(
    predict: Any,
    x: np.ndarray,
    y: np.ndarray,
    blocks: dict[str, list[int]],
    seed: int,
    repeats: int = 3,
) -> dict[str, float]:
    """Mean drop in ROC-AUC when a block of columns is shuffled across rows.

    ``blocks`` maps a name to column indices; the genre one-hot columns form
    one block (shuffling them one by one would break the one-hot rows).
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y).astype(int)
    if np.unique(y).size < 2:
        return {name: 0.0 for name in blocks}
    rng = np.random.default_rng(seed)
    base = roc_auc_score(y, predict(x))
    drops: dict[str, float] = {}
    for name, columns in blocks.items():
        scores = []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[:, columns] = x[rng.permutation(x.shape[0])][:, columns]
            scores.append(roc_auc_score(y, predict(shuffled)))
        drops[name] = float(base - np.mean(scores))
    return drops
