"""The base learners (network, forest, XGBoost, logistic regression) and the reference model.

Every learner trains on float32 numpy arrays (no pandas column names), so
the exported XGBoost graph sees inputs ``f0..fN`` and the RandomForest has
no feature-name checks. Sizes are bounded on purpose: trees decide how fast
the exported ONNX graph scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from popbatch.models.balance import Balanced


@dataclass
class LearnerParams:
    """Hyper-parameters of the base learners (defaults keep the exported graph small)."""

    # 512-row batches train 100k rows in seconds per epoch.
    epochs: int = 20
    # --epochs given: caps every head's network too (quick runs); None: each head
    # trains its own default (the popularity network gains from 60: docs/history.md).
    max_epochs: int | None = None
    batch_size: int = 512
    patience: int = 10
    rf: dict[str, Any] = field(
        default_factory=lambda: {
            # Small on purpose: the trees decide scoring speed; the network carries
            # the stack. RF 5x5 + XGB 30x2 replaced 10x5 + 30x3 (chosen on the
            # validation split of the 10k sample: stack ROC-AUC / PR-AUC 0.809 /
            # 0.159 vs 0.801 / 0.150; bare onnxruntime +35-40% rows/s).
            "n_estimators": 5,
            "max_depth": 5,
            "min_samples_leaf": 5,
            "max_features": "sqrt",
        }
    )
    xgb: dict[str, Any] = field(
        default_factory=lambda: {
            # 30 rounds of depth 2 at rate 0.3: the cheapest XGBoost measured that makes
            # the stack beat its network alone on ROC-AUC and PR-AUC under grouped CV
            # (docs/history.md, "The stack gets a small XGBoost").
            "n_estimators": 30,
            "max_depth": 2,
            "learning_rate": 0.3,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "min_child_weight": 5.0,
            "reg_lambda": 1.0,
        }
    )
    xgb_early_stopping: int = 30
    # The stack's design: which base learners feed the meta learner (models.stack.LEARNERS
    # order), whether it reads their probabilities or logits, and whether XGBoost reads the
    # genre as a target encoding (one column) instead of the one-hot block.
    # The network carries the stack and a small XGBoost adds what it misses; the meta
    # learner reads their logits (the network's pre-activation, XGBoost's margin), with
    # which the same stack measured better than on probabilities (docs/history.md).
    learners: tuple[str, ...] = ("logistic", "ann", "xgb")
    meta_input: str = "logit"
    genre_encoding: bool = True
    # Prior columns whose unseen key the stack's learners and meta learner also learn from
    # copies of a seeded share of the training rows with that key unseen
    # (models.priors.with_unseen_copies), as the popularity head does: without them the
    # stack scored new releases (an unseen album) below the recipe without priors. A tenth
    # lifts them past it for the least loss on the known catalog's one-track albums
    # (docs/history.md).
    unseen_copies: tuple[str, ...] = ("album_name",)
    unseen_share: float = 0.1
    # Threads of the forest and XGBoost; cross-validation runs folds in parallel processes
    # and sets 1 there.
    n_jobs: int = 2


def build_ann(n_inputs: int, seed: int):
    """Dense 64 relu -> Dropout 0.3 -> Dense 32 relu -> Dropout 0.3 -> Dense 1 sigmoid."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(shape=(n_inputs,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss="binary_crossentropy",
        metrics=[
            keras.metrics.Precision(name="precision"),
            keras.metrics.Recall(name="recall"),
            "accuracy",
        ],
    )
    return model


def fit_ann(
    train: Balanced,
    x_val: np.ndarray,
    y_val: np.ndarray,
    params: LearnerParams,
    seed: int,
) -> tuple[Any, dict[str, list[float]]]:
    """Fit the network on scaled inputs; early stopping on the validation split
    restores the best weights. Returns the model and its per-epoch history."""
    import keras

    model = build_ann(train.x.shape[1], seed)
    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=params.patience, restore_best_weights=True
    )
    history = model.fit(
        train.x,
        train.y.astype(np.float32),
        validation_data=(x_val, y_val.astype(np.float32)),
        epochs=params.epochs,
        batch_size=params.batch_size,
        class_weight=train.class_weight,
        callbacks=[stop],
        shuffle=True,
        verbose=0,
    )
    return model, {k: [float(v) for v in vals] for k, vals in history.history.items()}


def predicting_in_tree_order(forest: Any) -> Any:
    """``forest``, fitted, set to predict on one thread (in place).

    The trees are fitted in parallel and come out the same either way (each is
    seeded), but scikit-learn's parallel predict adds the trees' outputs in the
    order its threads finish: float64 results then move by an ulp from run to
    run, and so does whatever is fitted on them (the popularity head's meta
    learner, on out-of-fold predictions), so two trainings wrote different
    bytes. One thread adds them in tree order.
    """
    return forest.set_params(n_jobs=1)


def fit_rf(train: Balanced, params: LearnerParams, seed: int):
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(
        **params.rf,
        class_weight=train.class_weight,
        random_state=seed,
        n_jobs=params.n_jobs,
    )
    return predicting_in_tree_order(model.fit(train.x, train.y))


def fit_xgb(
    train: Balanced,
    x_val: np.ndarray,
    y_val: np.ndarray,
    params: LearnerParams,
    seed: int,
):
    """Fit XGBoost with early stopping on the validation split, then refit with
    exactly the best number of rounds, so the saved model holds only the trees
    it uses (the exported graph converts every tree)."""
    from xgboost import XGBClassifier

    common = {
        **params.xgb,
        "tree_method": "hist",
        "objective": "binary:logistic",
        "eval_metric": "aucpr",
        "random_state": seed,
        "n_jobs": params.n_jobs,
    }
    weights = train.sample_weight()
    probe = XGBClassifier(**common, early_stopping_rounds=params.xgb_early_stopping)
    probe.fit(train.x, train.y, sample_weight=weights, eval_set=[(x_val, y_val)], verbose=False)
    rounds = int(probe.best_iteration) + 1
    model = XGBClassifier(**{**common, "n_estimators": rounds})
    model.fit(train.x, train.y, sample_weight=weights, verbose=False)
    return model


def fit_logistic(x_scaled: np.ndarray, y: np.ndarray, seed: int, class_weight=None):
    """Logistic regression on the scaled features (numeric + genre one-hot).

    The plain reference model uses ``class_weight="balanced"``; as a base learner it
    takes the balanced rows and the class weights of ``--balance``.
    """
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=2000, random_state=seed, class_weight=class_weight)
    return model.fit(x_scaled, y)
