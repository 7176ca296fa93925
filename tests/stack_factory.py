"""A tiny but real trained stack for the export tests, built from tests/data/tracks_2000.csv.

The models are fitted for seconds, not for quality: the export tests need the
real model types (the Keras network's architecture, RandomForest,
XGBoost, logistic-regression meta learner) in a real ``NativeStack`` directory,
not a good model. Training lives in ``models/`` once it lands; this helper only
stands in for its output format (``models.stack``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import polars as pl

from popbatch.core.features import (
    GENRE_COLUMN,
    KEY_COLUMN,
    LABEL_COLUMN,
    NUMERIC_FEATURE_NAMES,
    OTHER_GENRE,
    feature_names,
    parse_explicit,
)
from popbatch.core.stats import numeric_stats, onehot_share

SEED = 7
POPULAR_ABOVE = 71


def feature_matrix(frame: pl.DataFrame, genres: list[str] | None) -> np.ndarray:
    """[N, F] float32 in ``feature_names(genres)`` order: numerics, then genre one-hot + other."""
    frame = frame.with_columns(parse_explicit())
    columns = [frame[name].cast(pl.Float32).to_numpy() for name in NUMERIC_FEATURE_NAMES]
    if genres is not None:
        genre = frame[GENRE_COLUMN].to_numpy()
        columns += [(genre == g).astype(np.float32) for g in genres]
        columns.append((~np.isin(genre, genres)).astype(np.float32))
    return np.column_stack(columns).astype(np.float32)


def _fit_ann(x: np.ndarray, y: np.ndarray, epochs: int):
    import keras

    keras.utils.set_random_seed(SEED)
    model = keras.Sequential(
        [
            keras.Input(shape=(x.shape[1],)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def build_stack(
    csv: Path,
    out_dir: Path,
    *,
    with_genre: bool = True,
    rf_trees: int = 10,
    rf_depth: int = 5,
    xgb_rounds: int = 20,
    xgb_depth: int = 3,
    ann_epochs: int = 2,
    learners: tuple[str, ...] = ("ann", "rf", "xgb"),
    meta_input: str = "probability",
    genre_encoding: bool = False,
):
    """Fit a small stack on ``csv`` and save it to ``out_dir`` (a stack directory).

    The default is the original design (ann, rf, xgb on probabilities); ``learners``,
    ``meta_input`` and ``genre_encoding`` build the others (models.stack). Returns the
    :class:`models.stack.NativeStack`. ``out_dir/test.parquet``
    holds the held-out 30 % of rows as float32 feature columns, ``y`` and ``track_id``.
    """
    from popbatch.models.pipeline import write_background
    from popbatch.models.stack import NativeStack
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from xgboost import XGBClassifier

    frame = pl.read_csv(csv)
    rng = np.random.default_rng(SEED)
    is_test = rng.random(frame.height) < 0.3
    train, test = frame.filter(~is_test), frame.filter(is_test)
    genres = sorted(train[GENRE_COLUMN].unique().to_list()) if with_genre else None
    names = feature_names(genres)
    x_train, x_test = feature_matrix(train, genres), feature_matrix(test, genres)
    y_train = (train[LABEL_COLUMN] > POPULAR_ABOVE).to_numpy().astype(np.int32)
    y_test = (test[LABEL_COLUMN] > POPULAR_ABOVE).to_numpy().astype(np.int32)

    # Numeric features capped at the training 1st/99th percentiles, as --outliers cap does;
    # one-hot columns are never clipped (None).
    n_numeric = len(NUMERIC_FEATURE_NAMES)
    lower = np.quantile(x_train[:, :n_numeric], 0.01, axis=0).tolist()
    upper = np.quantile(x_train[:, :n_numeric], 0.99, axis=0).tolist()
    pad = [None] * (len(names) - n_numeric)
    clip_lower, clip_upper = lower + pad, upper + pad
    stack = NativeStack.unfitted(names, genres, clip_lower, clip_upper, learners, meta_input)
    clipped = stack.clip(x_train)
    mean = clipped.mean(axis=0)
    scale = clipped.std(axis=0)
    scale[scale == 0] = 1.0  # as StandardScaler does for constant columns
    stack.scaler_mean, stack.scaler_scale = mean.tolist(), scale.tolist()
    scaled = (clipped - mean) / scale
    if genre_encoding and genres is not None:
        from popbatch.models.encoding import fit_encoding

        stack.genre_encoding = fit_encoding(clipped[:, stack.n_numeric :], y_train).tolist()
    if "ann" in learners:
        stack.ann = _fit_ann(scaled, y_train, ann_epochs)
    if "rf" in learners:
        stack.rf = RandomForestClassifier(
            n_estimators=rf_trees, max_depth=rf_depth, random_state=SEED, n_jobs=1
        ).fit(clipped, y_train)
    if "xgb" in learners:
        stack.xgb = XGBClassifier(
            n_estimators=xgb_rounds, max_depth=xgb_depth, tree_method="hist", random_state=SEED
        ).fit(stack.xgb_input(clipped), y_train)
    if "logistic" in learners:
        from popbatch.models.stack import LinearScore

        stack.logistic = LinearScore.of(LogisticRegression(max_iter=2000).fit(scaled, y_train))
    # Real training fits the meta learner on out-of-fold scores; in-sample is enough here.
    meta = LogisticRegression().fit(stack.base_scores(x_train), y_train)
    stack.meta_coef = meta.coef_[0].tolist()
    stack.meta_intercept = float(meta.intercept_[0])
    # A threshold inside the probability range, so both labels occur on the test rows.
    stack.threshold = float(np.quantile(stack.predict_proba(x_train), 0.9))
    stack.info = _info(csv, frame.height, names, x_train, y_test, stack.predict_proba(x_test))

    out_dir = Path(out_dir)
    stack.save(out_dir)
    test_frame = pl.DataFrame({n: x_test[:, i] for i, n in enumerate(names)}).with_columns(
        pl.Series("y", y_test), test[KEY_COLUMN]
    )
    test_frame.write_parquet(out_dir / "test.parquet")
    write_background(out_dir / "background.parquet", x_train, names, SEED)
    return stack


def _info(csv, rows, names, x_train, y_test, p_test) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    stats = {}
    for i, name in enumerate(names):
        column = x_train[:, i]
        stats[name] = onehot_share(column) if name.startswith("genre=") else numeric_stats(column)
    return {
        "label": {"column": LABEL_COLUMN, "popular_above": POPULAR_ABOVE},
        "training_data": {
            "file": Path(csv).name,
            "table": None,
            "sha256": hashlib.sha256(Path(csv).read_bytes()).hexdigest(),
            "rows": rows,
        },
        "feature_stats": stats,
        # nested like popbatch train's report: split -> model -> metric
        "metrics": {
            "test": {
                "stack": {
                    "roc_auc": float(roc_auc_score(y_test, p_test)),
                    "pr_auc": float(average_precision_score(y_test, p_test)),
                }
            }
        },
        "params": {"balance": "none", "seed": SEED, "other_genre": OTHER_GENRE},
    }
