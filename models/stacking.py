"""Stacking: out-of-fold base-learner scores train the meta learner.

The meta learner is a LogisticRegression on the base learners' scores in the
stack's ``learners`` order (probabilities or logits, the stack's
``meta_input``), exactly the formula :class:`models.stack.NativeStack`
evaluates. Its regularisation strength is chosen by grouped cross-validation
on the out-of-fold rows (never on the validation or test split).

Every step that learns from labels — balancing, the genre target encoding,
the learners — sees only the rows it is given, so :func:`out_of_fold` and
cross-validation (``models.cv``) can hold rows out honestly.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from popbatch.models.balance import Balanced, balance
from popbatch.models.encoding import fit_encoding, out_of_fold_encoding
from popbatch.models.learners import LearnerParams, fit_ann, fit_logistic, fit_rf, fit_xgb
from popbatch.models.split import grouped_folds
from popbatch.models.stack import LinearScore, NativeStack

META_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
Progress = Callable[[str], None]


@dataclass
class BaseModels:
    """The fitted base learners of one stack (or one out-of-fold part of it)."""

    models: dict[str, Any]
    genre_encoding: list[float] | None
    balanced: Balanced
    history: dict[str, list[float]]
    seconds: dict[str, float]

    def install(self, stack: NativeStack) -> NativeStack:
        """Put these learners (and the genre encoding) into ``stack``; returns it."""
        stack.ann = self.models.get("ann")
        stack.rf = self.models.get("rf")
        stack.xgb = self.models.get("xgb")
        stack.logistic = self.models.get("logistic")
        stack.genre_encoding = self.genre_encoding
        return stack

    def describe(self) -> str:
        parts = []
        for name, model in self.models.items():
            if name == "ann":
                size = f"{len(self.history.get('loss', []))} epochs"
            elif name == "rf":
                size = f"{model.n_estimators} trees"
            elif name == "xgb":
                size = f"{model.n_estimators} rounds"
                size += ", genre target-encoded" if self.genre_encoding is not None else ""
            else:
                size = f"{len(model.coef)} weights"
            parts.append(f"{name} {size} ({self.seconds[name]:.1f} s)")
        return ", ".join(parts)


def uses_encoding(stack: NativeStack, params: LearnerParams) -> bool:
    return params.genre_encoding and "xgb" in stack.learners and stack.genre_vocabulary is not None


def fit_base_models(
    stack: NativeStack,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    method: str,
    params: LearnerParams,
    seed: int,
) -> BaseModels:
    """Fit the stack's base learners on clipped rows ``x``; ``stack`` supplies the scaler.

    The genre encoding (when used) is fitted on these rows; the rows themselves get
    an out-of-fold encoding, so no row's label reaches its own feature. Balancing
    then acts on these rows only. ``x_val``/``y_val`` serve early stopping only.
    """
    width = x.shape[1]
    encoding = None
    rows = x
    if uses_encoding(stack, params):
        onehot = x[:, stack.n_numeric :]
        encoding = fit_encoding(onehot, y).tolist()
        encoded = out_of_fold_encoding(onehot, y, groups, seed)
        rows = np.column_stack([x, encoded]).astype(np.float32)
    balanced = balance(rows, y, method, seed)
    features = balanced.x[:, :width]
    fitted = BaseModels({}, encoding, balanced, {}, {})
    view = fitted.install(copy.copy(stack))  # scaler and encoding, no learners yet

    def rows_of(x_part: np.ndarray) -> Balanced:
        return Balanced(x_part, balanced.y, balanced.class_weight, balanced.note)

    for name in stack.learners:
        start = time.perf_counter()
        if name == "ann":
            model, fitted.history = fit_ann(
                rows_of(view.scale(features)), view.scale(x_val), y_val, params, seed
            )
        elif name == "rf":
            model = fit_rf(rows_of(features), params, seed)
        elif name == "xgb":
            if encoding is None:
                xgb_rows = features
            else:
                xgb_rows = np.column_stack([features[:, : stack.n_numeric], balanced.x[:, width]])
            model = fit_xgb(rows_of(xgb_rows), view.xgb_input(x_val), y_val, params, seed)
        else:
            weights = balanced.class_weight
            model = LinearScore.of(fit_logistic(view.scale(features), balanced.y, seed, weights))
        fitted.models[name] = model
        fitted.seconds[name] = time.perf_counter() - start
    return fitted


def out_of_fold(
    stack: NativeStack,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    method: str,
    params: LearnerParams,
    seed: int,
    k: int,
    progress: Progress,
) -> dict[str, np.ndarray]:
    """Out-of-fold [N, L] base scores over clipped training rows ``x``, K folds by track_id.

    Returns ``{"probability": ..., "logit": ...}`` (the meta learner reads the
    stack's ``meta_input``). Balancing and the genre encoding are fitted on each
    fold's fitting rows only; held-out rows keep their real class mix.
    """
    oof = {kind: np.zeros((x.shape[0], len(stack.learners))) for kind in ("probability", "logit")}
    for fold, (fit_rows, held_out) in enumerate(grouped_folds(groups, y, k, seed), start=1):
        models = fit_base_models(
            stack, x[fit_rows], y[fit_rows], groups[fit_rows], x_val, y_val, method, params,
            seed + fold,
        )  # fmt: skip
        part = models.install(copy.copy(stack))
        for kind, scores in oof.items():
            scores[held_out] = part.base_scores(x[held_out], kind)
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
