"""The popularity head: how popular a track will be (0-100), a stacked regressor.

Base learners on the stack's inputs (the 14 audio features and the genre
one-hot, clipped as the stack clips them):

- a Keras network (Dense 64 relu, Dropout 0.2, Dense 32 relu, Dense 1 linear;
  inputs scaled with the stack's scaler; trained on the standardised target,
  then its last layer is rescaled so it outputs popularity points);
- a RandomForestRegressor and an XGBoost regressor (early stopping on the
  validation split) on the 14 features plus the genre's *target encoding*:
  the genre's smoothed mean popularity (``models.encoding``), one number
  instead of 115 sparse one-hot columns. Measured under 5 grouped folds of the
  shared 10k sample (R², see docs/training.md): XGBoost 600x4 on the one-hot
  0.273, 200x4 on the encoding 0.266 at a third of the trees; the forest
  0.159 -> 0.269. Rows the encoding is fitted on get an out-of-fold encoding,
  so their own popularity never reaches their feature.

A linear regression on their grouped out-of-fold predictions combines them,
and the result is clipped to [0, 100]::

    trees = [c[:, :14], c[:, 14:] @ genre_encoding]    # c itself without a genre
    pred  = clip(meta_intercept + meta_coef . [ann(c), rf(trees), xgb(trees)], 0, 100)

The export (``export/heads.py``) reproduces exactly this formula.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from popbatch.models.encoding import fit_encoding, out_of_fold_encoding, with_encoded_genre
from popbatch.models.saved import SavedModel
from popbatch.models.stack import clip_rows

from popbatch.core.features import NUMERIC_FEATURE_NAMES

BASE = ("ann", "rf", "xgb")
N_NUMERIC = len(NUMERIC_FEATURE_NAMES)  # the genre one-hot block follows these columns
LOW, HIGH = 0.0, 100.0
SPEC_FILE = "popularity.json"
Progress = Callable[[str], None]


@dataclass
class RegressorParams:
    """Sizes of the regression base learners (chosen on the validation split, for speed too)."""

    epochs: int = 60
    batch_size: int = 512
    patience: int = 8
    rf: dict[str, Any] = field(
        default_factory=lambda: {
            "n_estimators": 10,
            "max_depth": 8,
            "min_samples_leaf": 5,
            "max_features": 0.33,
        }
    )
    xgb: dict[str, Any] = field(
        default_factory=lambda: {
            "n_estimators": 200,
            "max_depth": 4,
            "learning_rate": 0.05,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "min_child_weight": 3.0,
            "reg_lambda": 1.0,
        }
    )
    xgb_early_stopping: int = 30
    # With catalog priors the network alone keeps nearly all the stack's quality at a
    # fraction of its scoring cost (trees cost ~20 ns per tree per row; docs/training.md).
    learners: tuple[str, ...] = ("ann",)
    """The base learners (a subset of :data:`BASE`); one alone needs no meta learner."""
    unseen_copies: tuple[str, ...] = ("album_name",)
    """Prior columns whose unseen key the head also learns from copies of training rows
    (:func:`popbatch.models.priors.unseen_copy`): without them the head scored new
    releases worse than the audio-only recipe (docs/history.md, "New releases")."""
    unseen_share: float = 0.25
    """The share of training rows copied per column of ``unseen_copies`` (seeded): the
    smallest measured that keeps new releases above the audio-only recipe; each more
    copy costs the known catalog (docs/history.md, "New releases")."""


@dataclass
class PopularityHead(SavedModel):
    """The fitted regression stack; input: the stack's clipped features."""

    SPEC_FILE: ClassVar[str] = SPEC_FILE
    LEARNER_FILES: ClassVar[dict[str, str]] = {
        "ann": "popularity_ann.keras",
        "rf": "popularity_rf.joblib",
        "xgb": "popularity_xgb.json",
    }
    XGBOOST_CLASS: ClassVar[str] = "XGBRegressor"

    clip_lower: list[float | None]
    clip_upper: list[float | None]
    scaler_mean: list[float]
    scaler_scale: list[float]
    meta_coef: list[float]
    meta_intercept: float
    ann: Any
    rf: Any
    xgb: Any
    info: dict[str, Any] = field(default_factory=dict)
    genre_encoding: list[float] | None = None
    """One mean popularity per genre one-hot column; None: the trees read ``c`` itself."""
    n_numeric: int = N_NUMERIC
    """Inputs before the genre one-hot block: the audio features and any catalog priors."""
    learners: tuple[str, ...] = BASE
    """The base learners the meta learner combines, in :data:`BASE` order."""

    def clip(self, x: np.ndarray) -> np.ndarray:
        return clip_rows(x, self.clip_lower, self.clip_upper)

    def tree_input(self, c: np.ndarray) -> np.ndarray:
        return tree_input(c, self.genre_encoding, self.n_numeric)

    def base_predictions(self, x: np.ndarray) -> np.ndarray:
        """[N, L] predictions (popularity points) of the learners for raw rows ``x``."""
        c = self.clip(x)
        scaled = (c - np.asarray(self.scaler_mean, np.float32)) / np.asarray(
            self.scaler_scale, np.float32
        )
        return base_predictions(self.ann, self.rf, self.xgb, self.tree_input(c), scaled)

    def combine(self, base: np.ndarray) -> np.ndarray:
        z = self.meta_intercept + base @ np.asarray(self.meta_coef, np.float64)
        return np.clip(z, LOW, HIGH)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted popularity (float64, [0, 100]) for the [N, F] float32 matrix ``x``."""
        return self.combine(self.base_predictions(x))

    def saved_learners(self) -> list[str]:
        return [n for n in self.LEARNER_FILES if n in self.learners]

    def spec(self) -> dict[str, Any]:
        return {
            "clip_lower": self.clip_lower,
            "clip_upper": self.clip_upper,
            "scaler_mean": self.scaler_mean,
            "scaler_scale": self.scaler_scale,
            "meta": {
                "order": list(self.learners),
                "coef": self.meta_coef,
                "intercept": self.meta_intercept,
            },
            "clip": [LOW, HIGH],
            "genre_encoding": self.genre_encoding,
            "n_numeric": self.n_numeric,
            "info": self.info,
        }

    @classmethod
    def spec_learners(cls, spec: dict[str, Any]) -> list[str]:
        return list(spec["meta"].get("order", BASE))

    @classmethod
    def from_spec(cls, spec: dict[str, Any], learners: dict[str, Any]) -> PopularityHead:
        return cls(
            clip_lower=spec["clip_lower"],
            clip_upper=spec["clip_upper"],
            scaler_mean=spec["scaler_mean"],
            scaler_scale=spec["scaler_scale"],
            meta_coef=spec["meta"]["coef"],
            meta_intercept=spec["meta"]["intercept"],
            **learners,
            learners=tuple(spec["meta"].get("order", BASE)),
            info=spec.get("info", {}),
            genre_encoding=spec.get("genre_encoding"),  # absent: written before the encoding
            n_numeric=spec.get("n_numeric", N_NUMERIC),  # absent: written before priors
        )


def tree_input(
    c: np.ndarray, encoding: list[float] | None, n_numeric: int = N_NUMERIC
) -> np.ndarray:
    """The trees' input: the clipped numerics and the genre's encoding (or ``c`` itself)."""
    return c if encoding is None else with_encoded_genre(c, n_numeric, encoding)


def encoded_inputs(
    c: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    others: list[np.ndarray],
    seed: int,
    n_numeric: int = N_NUMERIC,
) -> tuple[np.ndarray, list[np.ndarray], list[float] | None]:
    """The trees' inputs for fitting rows ``c`` (out-of-fold encoding: a row's own
    popularity never reaches its feature) and for ``others`` (the encoding fitted on
    all of ``c``), and that encoding. Without a genre block, the inputs as they are."""
    if c.shape[1] <= n_numeric:
        return c, others, None
    block = c[:, n_numeric:]
    above_median = (y > np.median(y)).astype(np.int64)  # the folds' strata
    oof = out_of_fold_encoding(block, y, groups, seed, strata=above_median).astype(np.float32)
    encoding = [float(v) for v in fit_encoding(block, y)]
    fitted = np.column_stack([c[:, :n_numeric], oof])
    return fitted, [tree_input(o, encoding, n_numeric) for o in others], encoding


def base_predictions(
    ann: Any, rf: Any, xgb: Any, trees: np.ndarray, scaled: np.ndarray
) -> np.ndarray:
    """[N, L] predictions of the fitted learners (None: not in the head), in BASE order."""
    columns = []
    if ann is not None:
        columns.append(np.asarray(ann.predict(scaled, verbose=0, batch_size=8192)).reshape(-1))
    if rf is not None:
        columns.append(rf.predict(trees))
    if xgb is not None:
        columns.append(xgb.predict(trees))
    return np.column_stack(columns).astype(np.float64)


def build_ann(n_inputs: int, seed: int):
    """Dense 64 relu -> Dropout 0.2 -> Dense 32 relu -> Dense 1 linear (MSE, adam)."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(shape=(n_inputs,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, activation="linear"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
    return model


def fit_ann(scaled, y, scaled_val, y_val, params: RegressorParams, seed: int):
    """Fit on the standardised target, then fold the target scale into the last layer
    so the network outputs popularity points. Returns the model and its history."""
    import keras

    mean, std = float(np.mean(y)), float(np.std(y)) or 1.0
    model = build_ann(scaled.shape[1], seed)
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=params.patience, restore_best_weights=True
    )
    history = model.fit(
        scaled,
        ((y - mean) / std).astype(np.float32),
        validation_data=(scaled_val, ((y_val - mean) / std).astype(np.float32)),
        epochs=params.epochs,
        batch_size=params.batch_size,
        callbacks=[stop],
        shuffle=True,
        verbose=0,
    )
    last = model.layers[-1]
    weight, bias = last.get_weights()
    last.set_weights([weight * std, bias * std + mean])
    return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}


def fit_rf(c, y, params: RegressorParams, seed: int):
    from popbatch.models.learners import predicting_in_tree_order
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(**params.rf, random_state=seed, n_jobs=2).fit(c, y)
    return predicting_in_tree_order(forest)


def fit_xgb(c, y, c_val, y_val, params: RegressorParams, seed: int):
    """Early stopping on validation, then a refit with exactly the best number of rounds."""
    from xgboost import XGBRegressor

    common = {
        **params.xgb,
        "tree_method": "hist",
        "objective": "reg:squarederror",
        # RMSE: the objective's own loss; with MAE, whose optimum is the median of a
        # target with many zeros, early stopping ended the encoded-genre trees at ~20 rounds.
        "eval_metric": "rmse",
        "random_state": seed,
        "n_jobs": 2,
        # An explicit base score: the exported graph and the native model then
        # start from the same constant (xgboost 2+ otherwise estimates it).
        "base_score": float(np.mean(y)),
    }
    probe = XGBRegressor(**common, early_stopping_rounds=params.xgb_early_stopping)
    probe.fit(c, y, eval_set=[(c_val, y_val)], verbose=False)
    rounds = int(probe.best_iteration) + 1
    return XGBRegressor(**{**common, "n_estimators": rounds}).fit(c, y, verbose=False)


def fit_base(
    c, scaled, y, groups, c_val, scaled_val, y_val, params: RegressorParams, seed: int,
    n_numeric: int = N_NUMERIC,
):  # fmt: skip
    """``params.learners`` on fitting rows ``c`` (clipped) and ``scaled`` (None for a
    learner not chosen); the trees read the genre's encoding fitted on these rows only.
    Returns them, the encoding and the network's history."""
    trees, trees_val, encoding = c, c_val, None
    if {"rf", "xgb"} & set(params.learners):  # only the trees read the genre's encoding
        trees, (trees_val,), encoding = encoded_inputs(c, y, groups, [c_val], seed, n_numeric)
    ann, history = None, {}
    if "ann" in params.learners:
        ann, history = fit_ann(scaled, y, scaled_val, y_val, params, seed)
    rf = fit_rf(trees, y, params, seed) if "rf" in params.learners else None
    xgb = fit_xgb(trees, y, trees_val, y_val, params, seed) if "xgb" in params.learners else None
    return ann, rf, xgb, encoding, history


def fit_head(
    stack: Any,
    x_train: np.ndarray,
    y_train: np.ndarray,
    groups: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    params: RegressorParams,
    seed: int,
    folds: int,
    progress: Progress,
) -> tuple[PopularityHead, dict[str, list[float]]]:
    """Fit the regression stack on the training split (raw rows, popularity targets).

    ``stack`` (the popular head's NativeStack) lends its clip bounds and scaler, so
    both heads read the same inputs. The meta learner is a linear regression on K
    grouped out-of-fold predictions (each fold's learners and genre encoding fitted
    without the held-out rows); the base learners are then refit on all rows.
    """
    from popbatch.models.priors import with_unseen_copies
    from popbatch.models.split import grouped_folds
    from sklearn.linear_model import LinearRegression

    head = PopularityHead(
        clip_lower=list(stack.clip_lower),
        clip_upper=list(stack.clip_upper),
        scaler_mean=list(stack.scaler_mean),
        scaler_scale=list(stack.scaler_scale),
        meta_coef=[],
        meta_intercept=0.0,
        ann=None,
        rf=None,
        xgb=None,
        n_numeric=stack.n_numeric,
        learners=tuple(n for n in BASE if n in params.learners),
    )
    x_train, y_train, groups, copied = with_unseen_copies(
        x_train, np.asarray(y_train, np.float64), groups, stack.inputs, params.unseen_copies,
        params.unseen_share, seed,
    )  # fmt: skip
    head.info = {"fit_rows": int(y_train.size), "unseen_copies": copied}
    mean = np.asarray(head.scaler_mean, np.float32)
    scale = np.asarray(head.scaler_scale, np.float32)
    c, c_val = head.clip(x_train), head.clip(x_val)
    s, s_val = (c - mean) / scale, (c_val - mean) / scale
    y_train = np.asarray(y_train, np.float64)
    y_val = np.asarray(y_val, np.float64)
    strata = (y_train > np.median(y_train)).astype(np.int64)
    oof = np.zeros((len(y_train), len(head.learners)), np.float64)
    # one learner alone is the prediction: no meta learner, no out-of-fold fits for it
    stacked = len(head.learners) > 1
    for fold, (fit, held) in enumerate(
        grouped_folds(groups, strata, folds, seed) if stacked else [], start=1
    ):
        ann, rf, xgb, encoding, _ = fit_base(
            c[fit], s[fit], y_train[fit], groups[fit], c_val, s_val, y_val, params, seed + fold,
            head.n_numeric,
        )  # fmt: skip
        trees_held = tree_input(c[held], encoding, head.n_numeric)
        oof[held] = base_predictions(ann, rf, xgb, trees_held, s[held])
        progress(f"popularity: fold {fold}/{folds}")
    if stacked:
        meta = LinearRegression().fit(oof, y_train)
        head.meta_coef = [float(v) for v in meta.coef_]
        head.meta_intercept = float(meta.intercept_)
    else:
        head.meta_coef, head.meta_intercept = [1.0], 0.0
    head.ann, head.rf, head.xgb, head.genre_encoding, history = fit_base(
        c, s, y_train, groups, c_val, s_val, y_val, params, seed, head.n_numeric
    )
    progress(
        f"popularity: meta weights {np.round(head.meta_coef, 3).tolist()}, "
        f"intercept {head.meta_intercept:.3f}"
    )
    return head, history


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """R², MAE, MSE and RMSE of ``pred`` against ``y``."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y = np.asarray(y, np.float64)
    pred = np.asarray(pred, np.float64)
    mse = float(mean_squared_error(y, pred))
    return {
        "r2": float(r2_score(y, pred)),
        "mae": float(mean_absolute_error(y, pred)),
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "rows": int(y.size),
    }


def evaluate_head(
    head: PopularityHead,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x: dict[str, np.ndarray],
    y: dict[str, np.ndarray],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics of the stack, each base learner and the two baselines (training mean,
    plain linear regression) per split; returns them and the test predictions."""
    from sklearn.linear_model import LinearRegression

    mean = np.asarray(head.scaler_mean, np.float32)
    scale = np.asarray(head.scaler_scale, np.float32)
    linear = LinearRegression().fit((head.clip(x_train) - mean) / scale, y_train)
    metrics: dict[str, Any] = {}
    predictions: dict[str, np.ndarray] = {}
    for split in ("validation", "test"):
        base = head.base_predictions(x[split])
        preds = {
            "stack": head.combine(base),
            **{name: base[:, i] for i, name in enumerate(head.learners)},
            "linear": linear.predict((head.clip(x[split]) - mean) / scale),
            "mean": np.full(len(y[split]), float(np.mean(y_train))),
        }
        metrics[split] = {name: regression_metrics(y[split], p) for name, p in preds.items()}
        predictions = preds
    return metrics, predictions


RF_GRID = {"n_estimators": [20, 50], "max_depth": [8, 12], "min_samples_leaf": [2, 5]}
XGB_GRID = {"max_depth": [3, 4, 6], "learning_rate": [0.05, 0.1], "min_child_weight": [1.0, 5.0]}
TUNE_FOLDS = 3


def tune(stack, x, y, groups, splits, targets, params: RegressorParams, config, progress):
    """``--tune``: grid search over the two tree regressors (the original project's
    GridSearchCV), scored by grouped 3-fold cross-validation MAE on the training split,
    in grid order until ``config.tune_budget`` minutes (half each) are spent.

    Updates ``params`` with the best settings and returns what was tried.
    """
    import time

    from popbatch.models.split import grouped_folds
    from sklearn.metrics import mean_absolute_error
    from sklearn.model_selection import ParameterGrid

    head = PopularityHead(stack.clip_lower, stack.clip_upper, [], [], [], 0.0, None, None, None)
    c = head.clip(x)
    c_val = head.clip(splits.x["validation"])
    strata = (y > np.median(y)).astype(np.int64)
    # Each fold's trees read a genre encoding fitted on its fitting rows only.
    folds = [
        (
            fit,
            held,
            *encoded_inputs(
                c[fit], y[fit], groups[fit], [c[held], c_val], config.seed, stack.n_numeric
            ),
        )
        for fit, held in grouped_folds(groups, strata, TUNE_FOLDS, config.seed)
    ]
    budget = config.tune_budget * 60 / 2
    results: dict[str, Any] = {}
    for learner, grid in (("rf", RF_GRID), ("xgb", XGB_GRID)):
        start, tried = time.perf_counter(), []
        for candidate in ParameterGrid(grid):
            if time.perf_counter() - start > budget:
                break
            trial = RegressorParams(rf={**params.rf, **candidate}, xgb={**params.xgb, **candidate})
            scores = []
            for fit, held, trees, (trees_held, trees_val), _ in folds:
                if learner == "rf":
                    model = fit_rf(trees, y[fit], trial, config.seed)
                else:
                    model = fit_xgb(
                        trees, y[fit], trees_val, targets["validation"], trial, config.seed
                    )
                scores.append(mean_absolute_error(y[held], model.predict(trees_held)))
            tried.append({"params": candidate, "mae": float(np.mean(scores))})
        best = min(tried, key=lambda t: t["mae"]) if tried else {"params": {}, "mae": None}
        getattr(params, learner).update(best["params"])
        results[learner] = {
            "best_params": best["params"],
            "best_cv_mae": best["mae"],
            "tried": tried,
            "seconds": round(time.perf_counter() - start, 2),
        }
        progress(f"tuning popularity {learner}: {len(tried)} candidates, best {best['params']}")
    return results
