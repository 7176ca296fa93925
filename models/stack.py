"""The trained stack as files: what ``popbatch train`` writes and ``popbatch export`` reads.

A stack directory (``RUN_DIR/stack``) holds:

=====================  ======================================================
``stack.json``         feature order, genre vocabulary, outlier clip bounds,
                       the ANN's scaler, meta-learner weights, threshold,
                       label definition, training data fingerprint and the
                       training feature statistics (for the manifest)
``ann.keras``          the Keras network (input: scaled features)
``rf.joblib``          the scikit-learn RandomForest (input: clipped features);
                       training side only, the scorer never reads it
``xgb.json``           the XGBoost model in its native JSON format
``test.parquet``       the untouched test split: one float32 column per
                       feature (as the scorer would build them), ``y`` and
                       ``track_id``; export proves parity on it
=====================  ======================================================

The native stack's probability, which the ONNX graph must reproduce::

    c   = clip(x, clip_lower, clip_upper)        # per feature, None = unbounded
    p1  = ann((c - scaler_mean) / scaler_scale)
    p2  = rf.predict_proba(c)[:, 1]
    p3  = xgb.predict_proba(c)[:, 1]
    p   = sigmoid(meta_intercept + meta_coef . [p1, p2, p3])
    popular = p >= threshold
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from popbatch.core import files

STACK_FILE = "stack.json"
BASE_LEARNERS = ("ann", "rf", "xgb")


def clip_rows(x: np.ndarray, lower: list, upper: list) -> np.ndarray:
    """float32 ``x`` clipped per column to ``lower``/``upper`` (None: unbounded); the
    stack and its heads clip their inputs this way, and so does the exported graph."""
    low = np.array([-np.inf if v is None else v for v in lower], np.float32)
    high = np.array([np.inf if v is None else v for v in upper], np.float32)
    return np.clip(np.asarray(x, np.float32), low, high)


@dataclass
class NativeStack:
    """The fitted stack with native models, loadable from and savable to a directory."""

    feature_names: list[str]
    genre_vocabulary: list[str] | None
    clip_lower: list[float | None]
    clip_upper: list[float | None]
    scaler_mean: list[float]
    scaler_scale: list[float]
    meta_coef: list[float]
    meta_intercept: float
    threshold: float
    ann: Any
    rf: Any
    xgb: Any
    info: dict[str, Any] = field(default_factory=dict)
    """label, training_data, train_stats, params: carried into the manifest."""

    @classmethod
    def unfitted(
        cls,
        feature_names: list[str],
        genre_vocabulary: list[str] | None,
        clip_lower: list[float | None],
        clip_upper: list[float | None],
    ) -> NativeStack:
        """A stack whose inputs are fixed and whose scaler, learners and meta learner
        are still to be fitted (training fills them in)."""
        return cls(
            feature_names=feature_names,
            genre_vocabulary=genre_vocabulary,
            clip_lower=clip_lower,
            clip_upper=clip_upper,
            scaler_mean=[],
            scaler_scale=[],
            meta_coef=[],
            meta_intercept=0.0,
            threshold=0.5,
            ann=None,
            rf=None,
            xgb=None,
        )

    def clip(self, x: np.ndarray) -> np.ndarray:
        return clip_rows(x, self.clip_lower, self.clip_upper)

    def base_probabilities(self, x: np.ndarray) -> np.ndarray:
        """[N, 3] probabilities of the ANN, RandomForest and XGBoost, in BASE_LEARNERS order."""
        c = self.clip(x)
        scaled = (c - np.asarray(self.scaler_mean, np.float32)) / np.asarray(
            self.scaler_scale, np.float32
        )
        p_ann = np.asarray(self.ann.predict(scaled, verbose=0, batch_size=8192)).reshape(-1)
        p_rf = self.rf.predict_proba(c)[:, 1]
        p_xgb = self.xgb.predict_proba(c)[:, 1]
        return np.column_stack([p_ann, p_rf, p_xgb]).astype(np.float64)

    def meta_probability(self, base: np.ndarray) -> np.ndarray:
        z = self.meta_intercept + base @ np.asarray(self.meta_coef, np.float64)
        return 1.0 / (1.0 + np.exp(-z))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probability of "popular" for each row of the [N, F] float32 matrix ``x``."""
        return self.meta_probability(self.base_probabilities(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_proba(x) >= self.threshold

    def save(self, directory: Path) -> None:
        import joblib

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.ann.save(directory / "ann.keras")
        joblib.dump(self.rf, directory / "rf.joblib")
        self.xgb.save_model(directory / "xgb.json")
        spec = {
            "feature_names": self.feature_names,
            "genre_vocabulary": self.genre_vocabulary,
            "clip_lower": self.clip_lower,
            "clip_upper": self.clip_upper,
            "scaler_mean": self.scaler_mean,
            "scaler_scale": self.scaler_scale,
            "meta": {
                "order": list(BASE_LEARNERS),
                "coef": self.meta_coef,
                "intercept": self.meta_intercept,
            },
            "threshold": self.threshold,
            "info": self.info,
        }
        files.write_atomically(directory / STACK_FILE, json.dumps(spec, indent=2))

    @classmethod
    def load(cls, directory: Path) -> NativeStack:
        """Load a stack directory written by :meth:`save` (needs the training extras)."""
        import joblib
        import keras
        import xgboost

        directory = Path(directory)
        spec = json.loads((directory / STACK_FILE).read_text(encoding="utf-8"))
        xgb = xgboost.XGBClassifier()
        xgb.load_model(directory / "xgb.json")
        return cls(
            feature_names=spec["feature_names"],
            genre_vocabulary=spec["genre_vocabulary"],
            clip_lower=spec["clip_lower"],
            clip_upper=spec["clip_upper"],
            scaler_mean=spec["scaler_mean"],
            scaler_scale=spec["scaler_scale"],
            meta_coef=spec["meta"]["coef"],
            meta_intercept=spec["meta"]["intercept"],
            threshold=spec["threshold"],
            ann=keras.saving.load_model(directory / "ann.keras"),
            rf=joblib.load(directory / "rf.joblib"),
            xgb=xgb,
            info=spec.get("info", {}),
        )
