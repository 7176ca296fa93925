"""The trained stack as files: what ``popbatch train`` writes and ``popbatch export`` reads.

A stack directory (``RUN_DIR/stack``) holds:

=====================  ======================================================
``stack.json``         feature order, genre vocabulary, outlier clip bounds,
                       the ANN's scaler, the stack's design (base learners,
                       meta input), the logistic regression's weights, the
                       genre target encoding, meta-learner weights, threshold,
                       label definition, training data fingerprint and the
                       training feature statistics (for the manifest)
``ann.keras``          the Keras network (input: scaled features)
``rf.joblib``          the scikit-learn RandomForest (input: clipped features);
                       training side only, the scorer never reads it
``xgb.json``           the XGBoost model in its native JSON format
                       (each of these three only when its learner is in the stack)
``test.parquet``       the untouched test split: one float32 column per
                       feature (as the scorer would build them), ``y`` and
                       ``track_id``; export proves parity on it
=====================  ======================================================

The native stack's probability, which the ONNX graph must reproduce::

    c        = clip(x, clip_lower, clip_upper)     # per feature, None = unbounded
    s        = (c - scaler_mean) / scaler_scale
    logistic = sigmoid(s . logistic.coef + logistic.intercept)
    ann      = ann(s)
    rf       = rf.predict_proba(c)[:, 1]
    xgb      = xgb.predict_proba(xgb_input(c))[:, 1]  # genre block -> onehot @ genre_encoding
    b        = the ``learners`` among those, in that order
    b        = logit(b) when meta_input == "logit"  # logistic: its linear score, xgb: its margin
    p        = sigmoid(meta_intercept + meta_coef . b)
    popular  = p >= threshold

A stack.json written before the design was configurable is read as the
original design: ann, rf, xgb, probabilities, no target encoding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
from popbatch.models.encoding import with_encoded_genre
from popbatch.models.saved import SavedModel

STACK_FILE = "stack.json"
LEARNERS = ("logistic", "ann", "rf", "xgb")  # every base learner, in meta-input order
BASE_LEARNERS = ("ann", "rf", "xgb")  # the original design (and older stack.json files)
META_INPUTS = ("probability", "logit")
LOGIT_EPS = 1e-4  # probabilities are clipped to [eps, 1 - eps] before the logit


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.log(p) - np.log1p(-p)


def network_logit(ann: Any, scaled: np.ndarray) -> np.ndarray:
    """[N] float64: the network's output before its final sigmoid, its logit.

    Not ``logit(p)``: near p = 1 a float32 probability keeps few digits of 1 - p, so two
    correct float32 evaluations (Keras here, onnxruntime at scoring) differ by up to
    1e-3 in logit(p), which a meta learner on logits carries into its probability. The
    pre-activation is computed in float32 as the exported graph computes it.
    """
    h = np.asarray(scaled, np.float32)
    layers = [layer for layer in ann.layers if type(layer).__name__ != "Dropout"]
    for index, layer in enumerate(layers):
        if type(layer).__name__ != "Dense":
            raise ValueError(f"network_logit: a {type(layer).__name__} layer is not supported")
        kernel, bias = layer.get_weights()
        h = h @ kernel + bias
        activation = layer.activation.__name__
        if index == len(layers) - 1:
            if activation != "sigmoid":
                raise ValueError(f"network_logit: the output is {activation}, not a sigmoid")
        elif activation == "relu":
            h = np.maximum(h, 0.0)
        elif activation != "linear":
            raise ValueError(f"network_logit: a {activation} layer is not supported")
    return np.asarray(h, np.float64).reshape(-1)


@dataclass
class LinearScore:
    """A logistic regression on the scaled inputs, held as weights (no scikit-learn)."""

    coef: list[float]
    intercept: float

    @classmethod
    def of(cls, model: Any) -> LinearScore:
        """From a fitted scikit-learn ``LogisticRegression``."""
        return cls([float(v) for v in model.coef_[0]], float(model.intercept_[0]))

    def decision_function(self, scaled: np.ndarray) -> np.ndarray:
        weights = np.asarray(self.coef, np.float64)
        return float(self.intercept) + np.asarray(scaled, np.float64) @ weights


def clip_rows(x: np.ndarray, lower: list, upper: list) -> np.ndarray:
    """float32 ``x`` clipped per column to ``lower``/``upper`` (None: unbounded); the
    stack and its heads clip their inputs this way, and so does the exported graph.
    A wider ``x`` (a model input with the priors' genre shares at its end) is read up
    to the bounds' width, as the graphs' first Slice does."""
    low = np.array([-np.inf if v is None else v for v in lower], np.float32)
    high = np.array([np.inf if v is None else v for v in upper], np.float32)
    return np.clip(np.asarray(x, np.float32)[:, : len(low)], low, high)


@dataclass
class NativeStack(SavedModel):
    """The fitted stack with native models, loadable from and savable to a directory."""

    SPEC_FILE: ClassVar[str] = STACK_FILE
    LEARNER_FILES: ClassVar[dict[str, str]] = {
        "ann": "ann.keras",
        "rf": "rf.joblib",
        "xgb": "xgb.json",
    }

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
    """label, training_data, train_stats, params, cv: carried into the manifest."""
    learners: tuple[str, ...] = BASE_LEARNERS
    meta_input: str = "probability"
    logistic: LinearScore | None = None
    genre_encoding: list[float] | None = None
    """One value per genre one-hot column; XGBoost then reads ``onehot @ genre_encoding``."""
    input_names: list[str] | None = None
    """Every model input when the model reads more than the stack (the catalog priors'
    genre shares, after ``feature_names``, for the genre head); None: ``feature_names``."""

    @property
    def inputs(self) -> list[str]:
        """The model's input names: the graph input's columns, in order."""
        return list(self.input_names or self.feature_names)

    @classmethod
    def unfitted(
        cls,
        feature_names: list[str],
        genre_vocabulary: list[str] | None,
        clip_lower: list[float | None],
        clip_upper: list[float | None],
        learners: tuple[str, ...] = BASE_LEARNERS,
        meta_input: str = "probability",
    ) -> NativeStack:
        """A stack whose inputs and design are fixed and whose scaler, learners and
        meta learner are still to be fitted (training fills them in).

        Raises
        ------
        ValueError
            An unknown learner or meta input.
        """
        unknown = [n for n in learners if n not in LEARNERS]
        if unknown or not learners or meta_input not in META_INPUTS:
            raise ValueError(f"unknown stack design: learners {learners}, meta input {meta_input}")
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
            learners=tuple(learners),
            meta_input=meta_input,
        )

    @property
    def n_numeric(self) -> int:
        """Inputs before the genre one-hot block."""
        genres = 0 if self.genre_vocabulary is None else len(self.genre_vocabulary) + 1
        return len(self.feature_names) - genres

    def clip(self, x: np.ndarray) -> np.ndarray:
        return clip_rows(x, self.clip_lower, self.clip_upper)

    def scale(self, clipped: np.ndarray) -> np.ndarray:
        """The network's and the logistic regression's input (float32, as in the graph)."""
        mean = np.asarray(self.scaler_mean, np.float32)
        return (np.asarray(clipped, np.float32) - mean) / np.asarray(self.scaler_scale, np.float32)

    def xgb_input(self, clipped: np.ndarray) -> np.ndarray:
        """XGBoost's input: the clipped features, or the numerics + the genre's encoding."""
        if self.genre_encoding is None:
            return clipped
        return with_encoded_genre(clipped, self.n_numeric, self.genre_encoding)

    def base_scores(self, x: np.ndarray, kind: str | None = None) -> np.ndarray:
        """[N, L] meta-learner inputs for raw rows ``x``, in ``learners`` order.

        ``kind`` is "probability" or "logit" (default: ``meta_input``). As logits the
        logistic regression gives its linear score, XGBoost its margin and the network its
        pre-activation (:func:`network_logit`), as the graph computes them; the forest the
        logit of its probability.
        """
        kind = kind or self.meta_input
        c = self.clip(x)
        scaled = self.scale(c) if {"ann", "logistic"} & set(self.learners) else None
        columns = []
        for name in self.learners:
            if name == "logistic":
                z = self.logistic.decision_function(scaled)
                columns.append(z if kind == "logit" else 1.0 / (1.0 + np.exp(-z)))
            elif name == "xgb" and kind == "logit":
                columns.append(self.xgb.predict(self.xgb_input(c), output_margin=True))
            elif name == "xgb":
                columns.append(self.xgb.predict_proba(self.xgb_input(c))[:, 1])
            elif name == "ann" and kind == "logit":
                columns.append(network_logit(self.ann, scaled))
            else:
                if name == "ann":
                    p = self.ann.predict(scaled, verbose=0, batch_size=8192)
                else:
                    p = self.rf.predict_proba(c)[:, 1]
                p = np.asarray(p, np.float64).reshape(-1)
                columns.append(logit(p) if kind == "logit" else p)
        return np.column_stack(columns).astype(np.float64)

    def base_probabilities(self, x: np.ndarray) -> np.ndarray:
        """[N, L] probabilities of the base learners, in ``learners`` order."""
        return self.base_scores(x, "probability")

    def meta_probability(self, base: np.ndarray) -> np.ndarray:
        """The stack's probability from :meth:`base_scores` rows."""
        z = self.meta_intercept + base @ np.asarray(self.meta_coef, np.float64)
        return 1.0 / (1.0 + np.exp(-z))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probability of "popular" for each row of the [N, F] float32 matrix ``x``."""
        return self.meta_probability(self.base_scores(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predict_proba(x) >= self.threshold

    def saved_learners(self) -> list[str]:
        return [name for name in self.LEARNER_FILES if name in self.learners]

    def spec(self) -> dict[str, Any]:
        return {
            "feature_names": self.feature_names,
            "genre_vocabulary": self.genre_vocabulary,
            "clip_lower": self.clip_lower,
            "clip_upper": self.clip_upper,
            "scaler_mean": self.scaler_mean,
            "scaler_scale": self.scaler_scale,
            "meta": {
                "order": list(self.learners),
                "input": self.meta_input,
                "coef": self.meta_coef,
                "intercept": self.meta_intercept,
            },
            "logistic": None if self.logistic is None else asdict(self.logistic),
            "genre_encoding": self.genre_encoding,
            "input_names": self.input_names,
            "threshold": self.threshold,
            "info": self.info,
        }

    @classmethod
    def spec_learners(cls, spec: dict[str, Any]) -> list[str]:
        return list(spec["meta"].get("order", BASE_LEARNERS))

    @classmethod
    def from_spec(cls, spec: dict[str, Any], learners: dict[str, Any]) -> NativeStack:
        logistic = spec.get("logistic")
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
            **learners,
            info=spec.get("info", {}),
            learners=tuple(cls.spec_learners(spec)),
            meta_input=spec["meta"].get("input", "probability"),
            logistic=None if logistic is None else LinearScore(**logistic),
            genre_encoding=spec.get("genre_encoding"),
            input_names=spec.get("input_names"),  # absent: inputs are feature_names
        )
