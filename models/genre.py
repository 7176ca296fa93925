"""The genre head: which genre a track belongs to, from the 14 audio features only.

The catalog's genre is the target here, never an input. Two learners:

- a RandomForestClassifier on the clipped features;
- a small Keras softmax network (Dense 256 relu, Dropout 0.3, Dense C softmax)
  on the features standardised with this head's own scaler.

Their class probabilities are averaged with the weight ``ann_weight`` chosen
on the validation split (a grid over [0, 1]; 1 drops the forest, 0 the
network)::

    p = ann_weight * ann(scaled) + (1 - ann_weight) * rf.predict_proba(clipped)
    genre_pred = classes[argmax p],  genre_prob = max p

A learner whose weight is 0 is not exported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from popbatch.models.saved import SavedModel
from popbatch.models.stack import clip_rows

from popbatch.core.features import NUMERIC_FEATURE_NAMES
from popbatch.core.priors import LOG_FLOOR

SPEC_FILE = "genre.json"
WIDTH = len(NUMERIC_FEATURE_NAMES)  # without priors the head reads the first 14 input columns
WEIGHT_GRID = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 11))
TOP_CONFUSION = 20
Progress = Callable[[str], None]


@dataclass
class ClassifierParams:
    """Sizes of the genre learners (chosen on the validation split, for speed too)."""

    epochs: int = 150
    batch_size: int = 64
    patience: int = 15
    hidden: tuple[int, ...] = (128,)
    design: str = "softmax"
    """"blend": the network and the forest, weighted; "softmax": a softmax regression on
    the audio features and the catalog priors' track counts plus, per class, the log of
    the artist's and the album's smoothed genre shares (:func:`fit_softmax`)."""
    softmax_l2: float = 1e-4
    softmax_iterations: int = 300
    rf: dict[str, Any] = field(
        default_factory=lambda: {
            "n_estimators": 30,
            "max_depth": 10,
            "min_samples_leaf": 3,
            "max_features": "sqrt",
        }
    )


@dataclass
class GenreHead(SavedModel):
    """The fitted genre classifier; input: the first 14 (numeric) feature columns."""

    SPEC_FILE: ClassVar[str] = SPEC_FILE
    LEARNER_FILES: ClassVar[dict[str, str]] = {"ann": "genre_ann.keras", "rf": "genre_rf.joblib"}

    classes: list[str]
    clip_lower: list[float | None]
    clip_upper: list[float | None]
    scaler_mean: list[float]
    scaler_scale: list[float]
    ann_weight: float
    ann: Any
    rf: Any
    info: dict[str, Any] = field(default_factory=dict)
    softmax: dict[str, Any] | None = None
    """The softmax design's weights on the head's clipped inputs (None: the blend):
    ``logits = c[:, z] @ W + b + sum_j A[j] * log(c[:, genre_j])``."""

    def clip(self, x: np.ndarray) -> np.ndarray:
        """The head's inputs of ``x``, clipped: its first :attr:`width` columns (the audio
        features and any catalog priors; never the genre one-hot block, its target)."""
        return clip_rows(np.asarray(x)[:, : self.width], self.clip_lower, self.clip_upper)

    @property
    def width(self) -> int:
        return len(self.clip_lower)

    def scale(self, c: np.ndarray) -> np.ndarray:
        return (c - np.asarray(self.scaler_mean, np.float32)) / np.asarray(
            self.scaler_scale, np.float32
        )

    def used_learners(self) -> list[str]:
        """The learners with a non-zero weight (only these are saved and exported)."""
        if self.softmax is not None:
            return ["softmax"]
        weights = {"ann": self.ann_weight, "rf": 1.0 - self.ann_weight}
        return [n for n in ("ann", "rf") if weights[n] > 0 and getattr(self, n) is not None]

    def learner_probabilities(self, x: np.ndarray) -> dict[str, np.ndarray]:
        c = self.clip(x)
        if self.softmax is not None:
            return {"softmax": softmax_probabilities(self.softmax, c)}
        out = {}
        if self.ann is not None:
            out["ann"] = np.asarray(self.ann.predict(self.scale(c), verbose=0, batch_size=8192))
        if self.rf is not None:
            out["rf"] = self.rf.predict_proba(c)
        return out

    def combine(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        if "softmax" in parts:
            return parts["softmax"]
        if self.ann_weight >= 1.0:
            return parts["ann"].astype(np.float64)
        if self.ann_weight <= 0.0:
            return parts["rf"].astype(np.float64)
        w = np.float32(self.ann_weight)
        return (w * parts["ann"] + (np.float32(1) - w) * parts["rf"]).astype(np.float64)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """[N, C] class probabilities for the [N, F >= 14] float32 matrix ``x``."""
        return self.combine(self.learner_probabilities(x))

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class indices (into ``classes``) and their probabilities."""
        p = self.predict_proba(x)
        index = np.argmax(p, axis=1)
        return index, p[np.arange(len(index)), index]

    def saved_learners(self) -> list[str]:
        # the softmax design is weights in the spec, not a learner file
        return [n for n in self.used_learners() if n in self.LEARNER_FILES]

    def spec(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "clip_lower": self.clip_lower,
            "clip_upper": self.clip_upper,
            "scaler_mean": self.scaler_mean,
            "scaler_scale": self.scaler_scale,
            "ann_weight": self.ann_weight,
            "learners": self.used_learners(),
            "softmax": self.softmax,
            "info": self.info,
        }

    @classmethod
    def spec_learners(cls, spec: dict[str, Any]) -> list[str]:
        return spec["learners"]

    @classmethod
    def from_spec(cls, spec: dict[str, Any], learners: dict[str, Any]) -> GenreHead:
        return cls(
            classes=spec["classes"],
            clip_lower=spec["clip_lower"],
            clip_upper=spec["clip_upper"],
            scaler_mean=spec["scaler_mean"],
            scaler_scale=spec["scaler_scale"],
            ann_weight=spec["ann_weight"],
            **learners,
            info=spec.get("info", {}),
            softmax=spec.get("softmax"),  # absent: written before the softmax design
        )


def build_ann(n_inputs: int, n_classes: int, hidden: tuple[int, ...], seed: int):
    """Dense relu layers of ``hidden`` units, each followed by Dropout 0.3, then softmax."""
    import keras

    keras.utils.set_random_seed(seed)
    layers = [keras.Input(shape=(n_inputs,))]
    for units in hidden:
        layers += [keras.layers.Dense(units, activation="relu"), keras.layers.Dropout(0.3)]
    model = keras.Sequential([*layers, keras.layers.Dense(n_classes, activation="softmax")])
    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _top_k(p: np.ndarray, y: np.ndarray, k: int) -> float:
    if p.shape[1] <= k:
        return 1.0
    top = np.argpartition(-p, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == y[:, None], axis=1)))


def fit_head(
    stack: Any,
    x_train: np.ndarray,
    genres_train: list[str],
    x_val: np.ndarray,
    genres_val: list[str],
    params: ClassifierParams,
    seed: int,
    progress: Progress,
) -> tuple[GenreHead, dict[str, Any]]:
    """Fit both learners on the training split and choose their weight on validation.

    Validation rows whose genre was not seen in training count as misses.
    Returns the head and the validation scores of every weight tried.
    """
    import keras
    from popbatch.models.learners import predicting_in_tree_order
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import StandardScaler

    classes = sorted(set(genres_train))
    index = {g: i for i, g in enumerate(classes)}
    y = np.array([index[g] for g in genres_train], np.int64)
    y_val = np.array([index.get(g, -1) for g in genres_val], np.int64)
    head = GenreHead(
        classes=classes,
        clip_lower=list(stack.clip_lower[: stack.n_numeric]),
        clip_upper=list(stack.clip_upper[: stack.n_numeric]),
        scaler_mean=[],
        scaler_scale=[],
        ann_weight=0.5,
        ann=None,
        rf=None,
    )
    if params.design == "softmax":
        # every model input (the priors' genre shares are the last ones), none clipped
        # past the stack's bounds; the softmax reads only its columns, never the one-hot
        names = stack.inputs
        head.clip_lower = [*stack.clip_lower, *[None] * (len(names) - len(stack.clip_lower))]
        head.clip_upper = [*stack.clip_upper, *[None] * (len(names) - len(stack.clip_upper))]
    c, c_val = head.clip(x_train), head.clip(x_val)
    if params.design == "softmax":
        head.softmax = fit_softmax(c, y, names, classes, params)
        p = head.predict_proba(x_val)
        chosen = {
            "accuracy": float(np.mean(np.argmax(p, axis=1) == y_val)),
            "top3_accuracy": _top_k(p, y_val, 3),
        }
        progress(
            f"genre: {len(classes)} genres, softmax regression on {len(head.softmax['z'])} "
            f"inputs and {len(head.softmax['genre'])} prior genre mixes "
            f"({head.softmax['iterations']} iterations; validation accuracy "
            f"{chosen['accuracy']:.3f}, top-3 {chosen['top3_accuracy']:.3f})"
        )
        return head, {"validation": chosen}
    scaler = StandardScaler().fit(c.astype(np.float64))
    head.scaler_mean = scaler.mean_.tolist()
    head.scaler_scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0).tolist()
    s, s_val = head.scale(c), head.scale(c_val)

    known = y_val >= 0
    ann = build_ann(head.width, len(classes), params.hidden, seed)
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=params.patience, restore_best_weights=True
    )
    history = ann.fit(
        s,
        y,
        validation_data=(s_val[known], y_val[known]),
        epochs=params.epochs,
        batch_size=params.batch_size,
        callbacks=[stop],
        shuffle=True,
        verbose=0,
    )
    rf = RandomForestClassifier(**params.rf, random_state=seed, n_jobs=2).fit(c, y)
    rf = predicting_in_tree_order(rf)
    head.ann, head.rf = ann, rf
    parts = head.learner_probabilities(x_val)
    scores = {}
    for w in WEIGHT_GRID:
        head.ann_weight = w
        p = head.combine(parts)
        scores[w] = {
            "accuracy": float(np.mean(np.argmax(p, axis=1) == y_val)),
            "top3_accuracy": _top_k(p, y_val, 3),
        }
    # Best validation accuracy + top-3 accuracy; ties go to the cheaper end.
    head.ann_weight = max(
        WEIGHT_GRID,
        key=lambda w: (scores[w]["accuracy"] + scores[w]["top3_accuracy"], abs(w - 0.5)),
    )
    epochs = len(history.history["loss"])
    chosen = scores[head.ann_weight]
    progress(
        f"genre: {len(classes)} genres, ann {epochs} epochs, rf {rf.n_estimators} trees; "
        f"ann weight {head.ann_weight} (validation accuracy {chosen['accuracy']:.3f}, "
        f"top-3 {chosen['top3_accuracy']:.3f})"
    )
    return head, {
        "weights": {str(w): v for w, v in scores.items()},
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
    }


def softmax_inputs(names: list[str], classes: list[str]) -> tuple[list[int], list[list[int]], bool]:
    """Positions of the softmax's plain inputs (the audio features and the priors' track
    counts) and, per prior column with genre shares, its share of each class; and
    whether those are already logs (the ``log_genre`` statistic)."""
    from popbatch.core.priors import is_prior_feature, is_tail_feature

    position = {n: i for i, n in enumerate(names)}
    z = [
        i
        for i, n in enumerate(names)
        if n.endswith(":count") or not (is_prior_feature(n) or n.startswith("genre="))
    ]
    logged = any(":log_genre=" in n for n in names)
    stat = "log_genre" if logged else "genre"
    columns = list(dict.fromkeys(n.split(":", 1)[0] for n in names if is_tail_feature(n)))
    genre = [[position.get(f"{c}:{stat}={g}", -1) for g in classes] for c in columns]
    return z, [g for g in genre if min(g) >= 0], logged


def _logs(c: np.ndarray, columns: list[int], logged: bool) -> np.ndarray:
    values = np.asarray(c[:, columns], np.float64)
    return values if logged else np.log(np.maximum(values, np.float32(LOG_FLOOR)))


def softmax_probabilities(model: dict[str, Any], c: np.ndarray) -> np.ndarray:
    """[N, C] probabilities of the softmax design for clipped inputs ``c`` (float64)."""
    c = np.asarray(c, np.float64)
    logits = c[:, model["z"]] @ np.asarray(model["W"]) + np.asarray(model["b"])
    for columns, a in zip(model["genre"], model["A"], strict=True):
        logits += _logs(c, columns, model.get("logged", False)) * np.asarray(a)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def fit_softmax(
    c: np.ndarray, y: np.ndarray, names: list[str], classes: list[str], params: ClassifierParams
) -> dict[str, Any]:
    """Fit the softmax design by L-BFGS on the full batch (cross-entropy, L2 on ``W``):
    ``logits = Zs @ W + b + sum_j a_j * log(genre_j)``, ``Zs`` the standardised plain
    inputs, ``a_j`` one weight per class and prior column (starting at 1: the prior's
    own log shares). The standardisation is folded into ``W`` and ``b``, so the graph
    reads the clipped inputs as they are."""
    from scipy.optimize import minimize

    z_columns, genre_columns, logged = softmax_inputs(names, classes)
    z = np.asarray(c[:, z_columns], np.float64)
    mean, std = z.mean(axis=0), z.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    zs = (z - mean) / std
    logs = [_logs(c, g, logged) for g in genre_columns]
    n, d = zs.shape
    k, j = len(classes), len(logs)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    l2 = params.softmax_l2

    def unpack(theta: np.ndarray):
        w = theta[: d * k].reshape(d, k)
        b = theta[d * k : d * k + k]
        a = theta[d * k + k :].reshape(j, k)
        return w, b, a

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b, a = unpack(theta)
        logits = zs @ w + b
        for log, weights in zip(logs, a, strict=True):
            logits += log * weights
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        value = -np.mean(np.log(p[np.arange(n), y] + 1e-300)) + l2 * float((w**2).sum())
        g = (p - onehot) / n
        grad_w = zs.T @ g + 2 * l2 * w
        grad_a = [(log * g).sum(axis=0) for log in logs]
        return value, np.concatenate([grad_w.ravel(), g.sum(axis=0), *grad_a])

    start = np.zeros(d * k + k + j * k)
    start[d * k + k :] = 1.0
    result = minimize(
        loss, start, jac=True, method="L-BFGS-B", options={"maxiter": params.softmax_iterations}
    )
    w, b, a = unpack(result.x)
    folded = w / std[:, None]
    return {
        "z": [int(i) for i in z_columns],
        "genre": [[int(i) for i in g] for g in genre_columns],
        "W": folded.tolist(),
        "b": (b - mean @ folded).tolist(),
        "A": a.tolist(),
        "logged": logged,
        "iterations": int(result.nit),
    }


def classification_metrics(p: np.ndarray, genres: list[str], classes: list[str]) -> dict[str, Any]:
    """Accuracy, top-3 accuracy, macro precision/recall/F1 and per-genre F1."""
    from sklearn.metrics import precision_recall_fscore_support

    index = {g: i for i, g in enumerate(classes)}
    y = np.array([index.get(g, -1) for g in genres], np.int64)
    pred = np.argmax(p, axis=1)
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=labels, average=None, zero_division=0.0
    )
    present = support > 0  # macro over the genres the split holds
    return {
        "accuracy": float(np.mean(pred == y)),
        "top3_accuracy": _top_k(p, y, 3),
        "macro_precision": float(np.mean(precision[present])) if present.any() else 0.0,
        "macro_recall": float(np.mean(recall[present])) if present.any() else 0.0,
        "macro_f1": float(np.mean(f1[present])) if present.any() else 0.0,
        "rows": int(y.size),
        "unseen_genre_rows": int(np.sum(y < 0)),
        "per_genre_f1": {
            classes[i]: {"f1": float(f1[i]), "support": int(support[i])}
            for i in labels
            if support[i] > 0
        },
    }


def evaluate_head(
    head: GenreHead, x: dict[str, np.ndarray], genres: dict[str, list[str]], genres_train: list[str]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics of the combination, each learner and the most-frequent-genre baseline."""
    counts = {g: 0 for g in head.classes}
    for g in genres_train:
        counts[g] += 1
    prior = np.array([counts[g] for g in head.classes], np.float64)
    majority = np.zeros_like(prior)
    majority[int(np.argmax(prior))] = 1.0
    metrics: dict[str, Any] = {}
    test_probabilities: dict[str, np.ndarray] = {}
    for split in ("validation", "test"):
        parts = head.learner_probabilities(x[split])
        probs = {"combined": head.combine(parts), **parts}
        probs["most_frequent"] = np.tile(majority, (len(genres[split]), 1))
        metrics[split] = {
            name: classification_metrics(p, genres[split], head.classes)
            for name, p in probs.items()
        }
        test_probabilities = probs
    return metrics, test_probabilities
