"""``--tune``: a bounded randomized search over RandomForest and XGBoost settings.

Candidates are scored by grouped cross-validation (average precision) on the
training split only; the search stops when its time budget is spent. The
grids are bounded so a tuned model still exports to a small, fast graph.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from popbatch.models.balance import balance
from popbatch.models.learners import LearnerParams, fit_rf, fit_xgb
from popbatch.models.split import grouped_folds

RF_SPACE = {
    "n_estimators": [30, 50, 80],
    "max_depth": [6, 8, 10],
    "min_samples_leaf": [2, 5, 10, 20],
    "max_features": ["sqrt", 0.3, 0.5],
}
XGB_SPACE = {
    "max_depth": [2, 3, 4, 5],
    "learning_rate": [0.03, 0.05, 0.1],
    "subsample": [0.7, 0.8, 1.0],
    "colsample_bytree": [0.5, 0.8, 1.0],
    "min_child_weight": [1.0, 3.0, 10.0],
    "reg_lambda": [1.0, 5.0, 10.0],
}
MAX_CANDIDATES = 20
TUNE_FOLDS = 3


def tune(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: Any,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Search RF then XGB within ``config.tune_budget`` minutes (half each).

    Returns ``{"rf": {...}, "xgb": {...}}`` with ``best_params``,
    ``best_score`` (mean grouped-CV average precision) and ``tried``.
    """
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import ParameterSampler

    budget = config.tune_budget * 60 / 2
    folds = list(grouped_folds(groups, y, TUNE_FOLDS, config.seed))
    results: dict[str, Any] = {}
    for learner, space in (("rf", RF_SPACE), ("xgb", XGB_SPACE)):
        start = time.perf_counter()
        tried = []
        sampler = ParameterSampler(space, MAX_CANDIDATES, random_state=config.seed)
        for candidate in sampler:
            if time.perf_counter() - start > budget:
                break
            params = LearnerParams(
                rf={**config.learners.rf, **candidate} if learner == "rf" else config.learners.rf,
                xgb={**config.learners.xgb, **candidate}
                if learner == "xgb"
                else config.learners.xgb,
            )
            scores = []
            for fit_rows, held_out in folds:
                fitted = balance(x[fit_rows], y[fit_rows], config.balance, config.seed)
                if learner == "rf":
                    model = fit_rf(fitted, params, config.seed)
                else:
                    model = fit_xgb(fitted, x_val, y_val, params, config.seed)
                p = model.predict_proba(x[held_out])[:, 1]
                scores.append(average_precision_score(y[held_out], p))
            tried.append({"params": candidate, "score": float(np.mean(scores))})
        best = max(tried, key=lambda t: t["score"]) if tried else {"params": {}, "score": None}
        results[learner] = {
            "best_params": best["params"],
            "best_score": best["score"],
            "tried": tried,
            "seconds": round(time.perf_counter() - start, 2),
        }
        progress(f"tuning {learner}: {len(tried)} candidates, best {best['params']}")
    return results
