"""Stacking: out-of-fold base-learner probabilities train the meta learner.

The meta learner is a LogisticRegression on the three probabilities in
``models.stack.BASE_LEARNERS`` order (ann, rf, xgb), exactly the formula
:class:`models.stack.NativeStack` evaluates. Its regularisation strength is
chosen by grouped cross-validation on the out-of-fold rows (never on the
validation or test split).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from popbatch.models.balance import Balanced, balance
from popbatch.models.learners import LearnerParams, fit_ann, fit_rf, fit_xgb
from popbatch.models.split import grouped_folds

META_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
Progress = Callable[[str], None]


@dataclass
class BaseModels:
    ann: Any
    rf: Any
    xgb: Any
    history: dict[str, list[float]]
    seconds: dict[str, float]

    def describe(self) -> str:
        epochs = len(self.history.get("loss", []))
        return (
            f"ann {epochs} epochs ({self.seconds['ann']:.1f} s), "
            f"rf {self.rf.n_estimators} trees ({self.seconds['rf']:.1f} s), "
            f"xgb {self.xgb.n_estimators} rounds ({self.seconds['xgb']:.1f} s)"
        )


def fit_base_models(
    train: Balanced,
    x_val: np.ndarray,
    y_val: np.ndarray,
    scale: Callable[[np.ndarray], np.ndarray],
    params: LearnerParams,
    seed: int,
) -> BaseModels:
    """Fit ANN (on scaled inputs), RandomForest and XGBoost (on clipped inputs)."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    scaled = Balanced(scale(train.x), train.y, train.class_weight, train.note)
    ann, history = fit_ann(scaled, scale(x_val), y_val, params, seed)
    seconds["ann"] = time.perf_counter() - start
    start = time.perf_counter()
    rf = fit_rf(train, params, seed)
    seconds["rf"] = time.perf_counter() - start
    start = time.perf_counter()
    xgb = fit_xgb(train, x_val, y_val, params, seed)
    seconds["xgb"] = time.perf_counter() - start
    return BaseModels(ann, rf, xgb, history, seconds)


def base_probabilities(
    models: BaseModels, x: np.ndarray, scale: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """[N, 3] probabilities in (ann, rf, xgb) order for clipped inputs ``x``."""
    p_ann = np.asarray(models.ann.predict(scale(x), verbose=0, batch_size=8192)).reshape(-1)
    p_rf = models.rf.predict_proba(x)[:, 1]
    p_xgb = models.xgb.predict_proba(x)[:, 1]
    return np.column_stack([p_ann, p_rf, p_xgb]).astype(np.float64)


def out_of_fold(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    scale: Callable[[np.ndarray], np.ndarray],
    method: str,
    params: LearnerParams,
    seed: int,
    k: int,
    progress: Progress,
) -> np.ndarray:
    """Out-of-fold [N, 3] probabilities over the training split, K folds grouped by track_id.

    Balancing is applied to each fold's fitting rows only; held-out rows
    keep their real class mix.
    """
    oof = np.zeros((x.shape[0], 3), np.float64)
    for fold, (fit_rows, held_out) in enumerate(grouped_folds(groups, y, k, seed), start=1):
        fitted = balance(x[fit_rows], y[fit_rows], method, seed)
        models = fit_base_models(fitted, x_val, y_val, scale, params, seed + fold)
        oof[held_out] = base_probabilities(models, x[held_out], scale)
        progress(f"stacking: fold {fold}/{k}: {models.describe()}")
    return oof


def fit_meta(oof: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int, k: int):
    """Choose C by grouped CV average precision on the out-of-fold rows, then fit on all.

    Returns the fitted LogisticRegression and ``{C: mean average precision}``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score

    scores: dict[float, float] = {}
    folds = list(grouped_folds(groups, y, k, seed + 1000))
    for c in META_C_GRID:
        fold_scores = []
        for fit_rows, held_out in folds:
            if y[held_out].sum() == 0 or np.unique(y[fit_rows]).size < 2:
                continue
            meta = LogisticRegression(C=c, max_iter=1000).fit(oof[fit_rows], y[fit_rows])
            fold_scores.append(
                average_precision_score(y[held_out], meta.predict_proba(oof[held_out])[:, 1])
            )
        scores[c] = float(np.mean(fold_scores)) if fold_scores else 0.0
    best = max(META_C_GRID, key=lambda c: (scores[c], -c))
    return LogisticRegression(C=best, max_iter=1000).fit(oof, y), scores
