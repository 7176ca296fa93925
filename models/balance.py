"""Class-imbalance handling, applied to training rows only (never validation or test)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

METHODS = ("smote", "adasyn", "undersample", "class-weight", "none")
MIN_MINORITY_FOR_SYNTHESIS = 6  # SMOTE/ADASYN use 5 neighbours plus the sample itself


@dataclass
class Balanced:
    """Training rows after balancing, and class weights when the method uses them."""

    x: np.ndarray
    y: np.ndarray
    class_weight: dict[int, float] | None
    note: str | None = None

    def sample_weight(self) -> np.ndarray | None:
        """Per-row weights equivalent to ``class_weight`` (for XGBoost)."""
        if self.class_weight is None:
            return None
        return np.where(self.y == 1, self.class_weight[1], self.class_weight[0])


def balance(x: np.ndarray, y: np.ndarray, method: str, seed: int) -> Balanced:
    """Apply ``method`` to training rows ``x``, ``y``.

    ``smote``/``adasyn`` synthesise minority rows, ``undersample`` drops
    majority rows, ``class-weight`` keeps the rows and returns
    ``compute_class_weight("balanced")``, ``none`` does nothing. SMOTE and
    ADASYN need at least 6 minority rows; with fewer, the original rows are
    returned with a warning (``note`` says why).
    """
    if method not in METHODS:
        raise ValueError(f"unknown balance method {method!r}")
    y = np.asarray(y).astype(np.int64)
    if method == "none" or np.unique(y).size < 2:
        return Balanced(x, y, None)
    if method == "class-weight":
        from sklearn.utils.class_weight import compute_class_weight

        weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=y)
        return Balanced(x, y, {0: float(weights[0]), 1: float(weights[1])})
    if method == "undersample":
        from imblearn.under_sampling import RandomUnderSampler

        xs, ys = RandomUnderSampler(random_state=seed).fit_resample(x, y)
        return Balanced(np.asarray(xs, np.float32), np.asarray(ys, np.int64), None)
    return _synthesise(x, y, method, seed)


def _synthesise(x: np.ndarray, y: np.ndarray, method: str, seed: int) -> Balanced:
    minority = int(min(np.sum(y == 0), np.sum(y == 1)))
    if minority < MIN_MINORITY_FOR_SYNTHESIS:
        note = (
            f"{method}: only {minority} minority rows (needs {MIN_MINORITY_FOR_SYNTHESIS}); "
            "training on the original rows"
        )
        warnings.warn(note, stacklevel=2)
        return Balanced(x, y, None, note)
    from imblearn.over_sampling import ADASYN, SMOTE

    sampler = SMOTE(random_state=seed) if method == "smote" else ADASYN(random_state=seed)
    try:
        xs, ys = sampler.fit_resample(x, y)
    except (ValueError, RuntimeError) as exc:
        # ADASYN refuses data where no minority row has majority neighbours.
        note = f"{method} failed ({exc}); training on the original rows"
        warnings.warn(note, stacklevel=2)
        return Balanced(x, y, None, note)
    return Balanced(np.asarray(xs, np.float32), np.asarray(ys, np.int64), None)
