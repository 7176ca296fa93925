"""``popbatch train`` as a library call: data -> split -> base learners -> stack -> report.

:func:`train` does the whole run and returns a :class:`TrainResult`; the
click command only turns options into a :class:`TrainConfig`.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from popbatch.models.data import TrainingData, feature_matrix, genre_vocabulary, load_training_data
from popbatch.models.evaluate import best_f1_threshold, evaluate
from popbatch.models.learners import LearnerParams, fit_logistic
from popbatch.models.priors import (
    FittedPriors,
    PriorRecipe,
    fit_priors,
    insert_priors,
    prior_inputs,
    shared_width,
    with_unseen_copies,
)
from popbatch.models.priors import save as save_priors
from popbatch.models.split import grouped_split
from popbatch.models.stack import NativeStack
from popbatch.models.stacking import BaseModels, fit_base_models, fit_meta, out_of_fold

from popbatch.core import files
from popbatch.core.errors import InputError, TrainingError
from popbatch.core.features import (
    DEFAULT_POPULAR_ABOVE,
    KEY_COLUMN,
    LABEL_COLUMN,
    NUMERIC_FEATURE_NAMES,
    feature_names,
)
from popbatch.core.heads import parse_heads
from popbatch.core.priors import DEFAULT_PRIOR_COLUMNS, is_prior_feature
from popbatch.core.stats import numeric_stats, onehot_share
from popbatch.core.versions import package_versions

MIN_CLASS_ROWS = 10  # per class over all rows: fewer cannot fill three splits and K folds
OUTLIER_QUANTILES = (0.01, 0.99)
REFERENCES = ("stack", "logistic", "majority")  # "logistic": the plain reference model


def model_order(learners: tuple[str, ...]) -> tuple[str, ...]:
    """Models a report compares: the base learners, the stack and the two references.

    A logistic base learner is not listed apart: it is the reference model's recipe
    on the balanced rows (the same model with ``--balance class-weight``).
    """
    return (*[n for n in learners if n != "logistic"], *REFERENCES)


Progress = Callable[[str], None]


@dataclass
class TrainConfig:
    """Everything a training run depends on (recorded in report.json and the stack)."""

    data: Path
    out: Path
    table: str | None = None
    query: str | None = None
    delimiter: str = ","
    maps: dict[str, str] = field(default_factory=dict)
    fills: dict[str, str] = field(default_factory=dict)
    popular_above: float = DEFAULT_POPULAR_ABOVE
    balance: str = "class-weight"
    outliers: str = "keep"
    use_genre: bool = True
    tune: bool = False
    tune_budget: float = 5.0
    seed: int = 42
    folds: int = 5
    learners: LearnerParams = field(default_factory=LearnerParams)
    cv: str | None = None  # "KxR": repeated grouped CV of the recipe first (models.cv)
    cv_jobs: int = 2
    heads: tuple[str, ...] = ("popular", "popularity", "genre")  # popbatch.core.heads.HEADS
    # catalog priors (--prior COLUMN, --no-priors: models.priors); no columns, no priors
    priors: PriorRecipe = field(default_factory=lambda: PriorRecipe(DEFAULT_PRIOR_COLUMNS))
    # with priors and --cv: the honest evaluations, each with and without priors
    cv_evaluations: tuple[str, ...] = ("known", "new_release", "debut")

    def __post_init__(self) -> None:
        # "popular,genre" or a list, from the CLI or popbatch.train(heads=...); without
        # the genre column (use_genre=False) the genre head has no target.
        self.heads = tuple(h for h in parse_heads(self.heads) if self.use_genre or h != "genre")
        if isinstance(self.priors, dict):  # from report.json params
            self.priors = PriorRecipe(**{k: tuple(v) if isinstance(v, list) else v
                                         for k, v in self.priors.items()})  # fmt: skip

    def as_params(self) -> dict[str, Any]:
        params = asdict(self)
        params["data"] = str(self.data)
        params["out"] = str(self.out)
        return params


@dataclass
class TrainResult:
    stack: NativeStack
    report: dict[str, Any]
    out: Path


@dataclass
class Splits:
    """Feature matrices (unclipped float32), labels and track ids per split."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    groups: dict[str, np.ndarray]
    frames: dict[str, pl.DataFrame]
    priors: FittedPriors | None = None
    """The priors fitted on the training split (validation and test rows read these;
    training rows have out-of-fold priors), None without priors."""
    cv_evaluations: dict[str, Any] = field(default_factory=dict)
    """``"debut/priors"``, ``"debut/audio_only"``, ...: head -> CV section."""


def seed_everything(seed: int) -> None:
    import random

    import keras

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    import tensorflow as tf

    # the networks are in the default model: the same bytes from the same command
    tf.config.experimental.enable_op_determinism()


def labels(frame: pl.DataFrame, popular_above: float) -> np.ndarray:
    return (frame[LABEL_COLUMN].to_numpy() > popular_above).astype(np.int64)


def check_classes(y: np.ndarray, data: TrainingData, popular_above: float) -> None:
    positives = int(y.sum())
    negatives = int(y.size - positives)
    if positives < MIN_CLASS_ROWS or negatives < MIN_CLASS_ROWS:
        raise TrainingError(
            f"{data.source}: {positives} popular and {negatives} other rows with "
            f"popularity > {popular_above:g}; each class needs at least {MIN_CLASS_ROWS} "
            "rows: change --popular-above or add data"
        )


def make_splits(
    data: TrainingData,
    y: np.ndarray,
    seed: int,
    priors: PriorRecipe | None = None,
    popular_above: float = DEFAULT_POPULAR_ABOVE,
) -> tuple[Splits, list[str] | None]:
    """The grouped 70/15/15 split, each part's feature matrix (with ``priors``: the
    training rows' out of fold, the others' from the training rows' table)."""
    groups = data.frame[KEY_COLUMN].to_numpy()
    split = grouped_split(groups, y, seed)
    rows = {"train": split.train, "validation": split.validation, "test": split.test}
    frames = {name: data.frame[idx] for name, idx in rows.items()}
    vocabulary = genre_vocabulary(frames["train"]["genre"]) if data.has_genre else None
    x = {name: feature_matrix(frame, vocabulary) for name, frame in frames.items()}
    fitted = None
    if priors is not None and priors.columns:
        spec = priors.spec(vocabulary)
        others = ("validation", "test")
        oof, rest, fitted = prior_inputs(
            frames["train"], [frames[o] for o in others], spec, priors, popular_above, seed
        )
        blocks = {"train": oof, **dict(zip(others, rest, strict=True))}
        start = len(NUMERIC_FEATURE_NAMES)
        x = {name: insert_priors(x[name], blocks[name], start, spec) for name in x}
    splits = Splits(
        x=x,
        y={name: y[idx] for name, idx in rows.items()},
        groups={name: groups[idx] for name, idx in rows.items()},
        frames=frames,
        priors=fitted,
    )
    for name in ("validation", "test"):
        if np.unique(splits.y[name]).size < 2:
            raise TrainingError(f"{data.source}: the {name} split has one class only; add data")
    return splits, vocabulary


def outlier_bounds(x_train: np.ndarray, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """1st/99th percentiles of each numeric feature; one-hot columns unbounded."""
    lower = np.full(n_features, -np.inf)
    upper = np.full(n_features, np.inf)
    numeric = x_train[:, : len(NUMERIC_FEATURE_NAMES)].astype(np.float64)
    lower[: numeric.shape[1]] = np.quantile(numeric, OUTLIER_QUANTILES[0], axis=0)
    upper[: numeric.shape[1]] = np.quantile(numeric, OUTLIER_QUANTILES[1], axis=0)
    return lower, upper


def bounds_list(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values]


def scaler_for(x_clipped: np.ndarray) -> tuple[list[float], list[float]]:
    """StandardScaler on the clipped training rows (sklearn maps a zero scale to 1)."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_clipped.astype(np.float64))
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    return scaler.mean_.tolist(), scale.tolist()


def feature_stats(x_train: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Training-split statistics per input (raw values, as the scorer sees them)."""
    stats: dict[str, Any] = {}
    for i, name in enumerate(names):
        if name in NUMERIC_FEATURE_NAMES or is_prior_feature(name):
            stats[name] = numeric_stats(x_train[:, i])
        else:
            stats[name] = onehot_share(x_train[:, i])
    return stats


class Stopwatch:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._start, 3)
        self._start = now

    def merge(self, seconds: dict[str, float]) -> None:
        """Take the stages another stopwatch timed up to now (no double counting)."""
        self.seconds.update(seconds)
        self._start = time.perf_counter()


@dataclass
class FittedStack:
    """One run of the training recipe on training and validation rows."""

    stack: NativeStack
    plain: Any  # the reference logistic regression (balanced weights, scaled inputs)
    models: BaseModels
    meta: Any
    meta_scores: dict[float, float]
    oof: dict[str, np.ndarray]
    x_train: np.ndarray  # training rows after --outliers drop (unclipped)
    y_train: np.ndarray
    notes: list[str]
    outliers_dropped: int
    tuning: dict[str, Any] | None
    seconds: dict[str, float]
    fit_rows: int = 0  # the learners' and meta learner's rows: x_train and its copies
    unseen_copies: tuple[str, ...] = ()  # the prior columns those copies hold unseen


def fit_stack(
    x_train: np.ndarray,
    y_train: np.ndarray,
    groups_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    names: list[str],
    vocabulary: list[str] | None,
    config: TrainConfig,
    progress: Progress = lambda _: None,
) -> FittedStack:
    """The whole training recipe on raw training rows; validation rows only stop
    early and choose thresholds. Outlier bounds, scaler, tuning, balancing, genre
    encoding, out-of-fold stacking and the meta learner all learn from the training
    rows alone, so cross-validation can run this inside each fold.
    """
    watch = Stopwatch()
    notes: list[str] = []
    lower, upper = outlier_bounds(x_train, len(names))
    outliers_dropped = 0
    if config.outliers == "drop":
        keep = np.all((x_train >= lower) & (x_train <= upper), axis=1)
        outliers_dropped = int((~keep).sum())
        x_train, y_train, groups_train = x_train[keep], y_train[keep], groups_train[keep]
        progress(f"outliers: dropped {outliers_dropped} training rows outside the 1st-99th pct")
    if config.outliers != "cap":
        lower[:] = -np.inf
        upper[:] = np.inf
    params = copy.deepcopy(config.learners)
    stack = NativeStack.unfitted(
        names, vocabulary, bounds_list(lower), bounds_list(upper), params.learners,
        params.meta_input,
    )  # fmt: skip
    c_train = stack.clip(x_train)
    c_val = stack.clip(x_val)
    stack.scaler_mean, stack.scaler_scale = scaler_for(c_train)
    # The learners and the meta learner also see unseen-key copies; the scaler above,
    # the plain reference below and what FittedStack returns are the rows themselves.
    x_fit, y_fit, groups_fit, copied = with_unseen_copies(
        x_train, y_train, groups_train, stack.inputs, params.unseen_copies,
        params.unseen_share, config.seed,
    )  # fmt: skip
    c_fit = c_train
    if copied:  # clip only the copies: the rows before them are c_train already
        c_fit = np.concatenate([c_train, stack.clip(x_fit[len(y_train) :])])
        progress(
            f"stacking: {len(y_fit) - len(y_train)} copies of training rows with "
            f"{', '.join(copied)} unseen"
        )

    tuning: dict[str, Any] | None = None
    if config.tune:
        from popbatch.models.tune import tune

        tuning = tune(c_train, y_train, groups_train, c_val, y_val, config, progress)
        params.rf.update(tuning["rf"]["best_params"])
        params.xgb.update(tuning["xgb"]["best_params"])
        watch.lap("tuning")

    progress(
        f"stacking: {config.folds}-fold out-of-fold {stack.meta_input} scores of "
        f"{', '.join(stack.learners)} (balance {config.balance})"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        oof = out_of_fold(
            stack, c_fit, y_fit, groups_fit, c_val, y_val, config.balance, params,
            config.seed, config.folds, progress,
        )  # fmt: skip
        meta, meta_scores = fit_meta(
            oof[stack.meta_input], y_fit, groups_fit, config.seed, config.folds
        )
        oof = {kind: scores[: len(y_train)] for kind, scores in oof.items()}
        watch.lap("out_of_fold")
        progress("base learners: refit on the whole training split")
        models = fit_base_models(
            stack, c_fit, y_fit, groups_fit, c_val, y_val, config.balance, params,
            config.seed,
        )  # fmt: skip
    for warning in caught:
        message = str(warning.message)
        # Only the balancing fallbacks matter to a user; keep each once.
        if message.startswith(config.balance) and message not in notes:
            notes.append(message)
    for note in notes:
        progress(f"warning: {note}")
    progress(f"base learners: {models.describe()}")
    models.install(stack)
    stack.meta_coef = [float(v) for v in meta.coef_[0]]
    stack.meta_intercept = float(meta.intercept_[0])
    stack.threshold = best_f1_threshold(y_val, stack.predict_proba(x_val))
    progress(
        f"stacking: meta weights {np.round(stack.meta_coef, 3).tolist()}, "
        f"C={meta.C}, threshold {stack.threshold:.4f} (best F1 on validation)"
    )
    plain = fit_logistic(stack.scale(c_train), y_train, config.seed, "balanced")
    watch.lap("base_learners")
    return FittedStack(
        stack, plain, models, meta, meta_scores, oof, x_train, y_train, notes,
        outliers_dropped, tuning, watch.seconds, len(y_fit), tuple(copied),
    )  # fmt: skip


def cross_validate_splits(
    splits: Splits,
    names: list[str],
    vocabulary: list[str] | None,
    config: TrainConfig,
    progress: Progress,
) -> dict[str, dict[str, Any]]:
    """``config.cv`` of every head in ``config.heads`` over the training and validation
    rows; the test split stays out. Returns head -> CV section (the known-catalog
    evaluation with the run's recipe); with priors, each of ``config.cv_evaluations``
    (folds grouped by track, album or primary artist) is also run with and without
    priors, into ``splits.cv_evaluations``. Every fold makes its own priors."""
    from popbatch.models.cv import CvSpec, cross_validate, summary_lines
    from popbatch.models.priors import FoldPriors, evaluation_groups

    parts = ("train", "validation")
    frame = pl.concat([splits.frames[p] for p in parts], how="vertical_relaxed")
    targets = {"popularity": frame[LABEL_COLUMN].to_numpy().astype(np.float64)}
    if "genre" in config.heads:
        targets["genre"] = np.asarray(frame["genre"].to_list(), dtype=object)
    x = np.concatenate([splits.x[p] for p in parts])
    groups = np.concatenate([splits.groups[p] for p in parts])
    fold_priors = None
    base_names = names
    if splits.priors is not None:  # the folds make their own: drop the split's priors
        start, spec = len(NUMERIC_FEATURE_NAMES), splits.priors.spec
        lead, tail = len(spec.lead_names()), len(spec.tail_names())
        keep = np.r_[0:start, start + lead : len(names) - tail]
        x = x[:, keep]
        base_names = [names[i] for i in keep]
        base_spec = config.priors.spec(vocabulary)
        fold_priors = FoldPriors(frame, base_spec, config.priors, config.popular_above, start)
    y = np.concatenate([splits.y[p] for p in parts])
    evaluations = config.cv_evaluations if fold_priors is not None else ("known",)
    cut = evaluation_groups(frame, groups)
    results: dict[str, dict[str, Any]] = {}
    for evaluation in evaluations:
        recipes = {"priors": fold_priors, "audio_only": None} if fold_priors else {"": None}
        for recipe, priors in recipes.items():
            label = " ".join(p for p in (evaluation, recipe.replace("_", " ")) if p)
            progress(f"cv: {label} (folds grouped by {_GROUPED_BY[evaluation]})")
            cv = cross_validate(
                x, y, groups, base_names, vocabulary, config, CvSpec.parse(config.cv),
                n_jobs=config.cv_jobs, heads=config.heads, targets=targets, progress=progress,
                priors=priors, split_groups=None if evaluation == "known" else cut[evaluation],
            )  # fmt: skip
            for head, section in cv.items():
                section["evaluation"] = evaluation
                for line in summary_lines(section):
                    progress(f"cv: {label}: {head}: {line}")
            results[f"{evaluation}/{recipe}"] = cv
    splits.cv_evaluations = {key: value for key, value in results.items() if not key.endswith("/")}
    return results["known/priors" if fold_priors else "known/"]


_GROUPED_BY = {"known": "track_id", "new_release": "album", "debut": "primary artist"}


# Options of train() that belong to the base learners rather than to TrainConfig.
_LEARNER_OPTIONS = ("epochs", "batch_size", "patience")


def train(
    config: TrainConfig | str | Path,
    out: str | Path | None = None,
    *,
    progress: Progress = lambda _: None,
    **options: Any,
) -> TrainResult:
    """Run a whole training: returns the fitted stack and the report (both written to ``out``).

    >>> import popbatch
    >>> result = popbatch.train("tracks.csv", "runs/mine", epochs=20)   # doctest: +SKIP
    >>> result.report["metrics"]["test"]["stack"]["roc_auc"]           # doctest: +SKIP
    0.83

    Parameters
    ----------
    config
        A :class:`TrainConfig`, or the training input (as ``--data``: a file, a
        glob, a directory, or a DuckDB file with ``table=``/``query=``).
    out
        The run directory (with an input as ``config``).
    progress
        Called with one line per stage.
    options
        :class:`TrainConfig` fields (``popular_above``, ``balance``, ``maps``,
        ``fills``, ``seed``, ...) and the learners' ``epochs``, ``batch_size``,
        ``patience``.

    Raises
    ------
    InputError, SchemaError, TrainingError
        Unusable data or options (exit 2 at the CLI).
    """
    if not isinstance(config, TrainConfig):
        config = _config_from(config, out, options)
    elif out is not None or options:
        raise InputError("train(): give a TrainConfig, or an input with out= and options")
    # The run writes report.json, report.html, plots/, stack/ and model/ into --out.
    files.refuse_foreign_directory(Path(config.out), ("report.json", "stack"), "--out")
    watch = Stopwatch()
    data = _load(config, progress)
    watch.lap("loading")
    splits, names, vocabulary = _split(data, config, progress)
    watch.lap("splitting")
    cv = None
    if config.cv:
        cv = cross_validate_splits(splits, names, vocabulary, config, progress)
        watch.lap("cross_validation")
    shared = shared_width(names)  # the popular stack's and popularity head's inputs
    fitted = fit_stack(
        splits.x["train"][:, :shared],
        splits.y["train"],
        splits.groups["train"],
        splits.x["validation"][:, :shared],
        splits.y["validation"],
        names[:shared],
        vocabulary,
        config,
        progress,
    )
    if shared < len(names):  # the model also reads the priors' genre shares (genre head)
        fitted.stack.input_names = names
    kept = kept_rows(splits.x["train"][:, :shared], config)  # the rows the stack fitted on
    watch.merge(fitted.seconds)
    probabilities, metrics = _evaluate(fitted, splits, progress)
    watch.lap("evaluation")
    from popbatch.models.heads import HeadsResult, train_heads

    heads = HeadsResult()
    if set(config.heads) - {"popular"}:
        heads = train_heads(config, splits, fitted.stack, kept, progress)
        watch.lap("heads")
    fitted.stack.info = _stack_info(
        data, config, fitted, splits.x["train"][kept], names, metrics, cv
    )
    if splits.cv_evaluations:
        fitted.stack.info["cv_evaluations"] = evaluations_estimate(splits.cv_evaluations)
    out = _save_run(config, fitted.stack, heads, splits, names, progress)
    if splits.priors is not None:
        save_priors(out / "stack", shipped_priors(data, splits, config))
        # export proves the scorer's priors on these catalog rows
        splits.frames["test"].write_parquet(out / "stack" / "test_rows.parquet")
    watch.lap("saving")
    report = _report(data, splits, fitted, vocabulary, metrics, cv)
    if splits.cv_evaluations:
        report["cv_evaluations"] = splits.cv_evaluations
    _write_report(out, report, fitted, splits, probabilities, heads, names, config, progress)
    watch.lap("report")
    report["timings"] = watch.seconds
    report["timings"]["total"] = round(sum(watch.seconds.values()), 3)
    from popbatch.models.report import write_json

    write_json(out / "report.json", report)
    progress(f"report: {out / 'report.json'} and {out / 'report.html'}")
    return TrainResult(stack=fitted.stack, report=report, out=out)


def _load(config: TrainConfig, progress: Progress) -> TrainingData:
    """Read and clean the training input. Returns the rows and their source's
    description; raises InputError/SchemaError for unusable data, TrainingError when
    the label leaves one class."""
    progress(f"loading {config.data}" + (f" table {config.table}" if config.table else ""))
    data = load_training_data(
        config.data,
        config.table,
        config.use_genre,
        query=config.query,
        delimiter=config.delimiter,
        maps=config.maps,
        fills=config.fills,
        prior_columns=config.priors.columns,
    )
    counts = data.counts
    progress(
        f"loading: {counts['rows_read']} rows read, {counts['duplicates_dropped']} exact "
        f"duplicates and {counts['missing_dropped']} rows with missing values dropped"
    )
    check_classes(labels(data.frame, config.popular_above), data, config.popular_above)
    return data


def _split(
    data: TrainingData, config: TrainConfig, progress: Progress
) -> tuple[Splits, list[str], list[str] | None]:
    """Seed everything and split by artist group. Returns the splits, the model's input
    names and the genre vocabulary (None without a genre)."""
    seed_everything(config.seed)
    splits, vocabulary = make_splits(
        data, labels(data.frame, config.popular_above), config.seed, config.priors,
        config.popular_above,
    )  # fmt: skip
    spec = splits.priors.spec if splits.priors else None
    names = feature_names(
        vocabulary, spec.lead_names() if spec else (), spec.tail_names() if spec else ()
    )
    progress(
        "splitting: "
        + ", ".join(f"{k} {v.size} rows ({int(v.sum())} popular)" for k, v in splits.y.items())
        + f"; {len(names)} inputs"
    )
    return splits, names, vocabulary


def _evaluate(
    fitted: FittedStack, splits: Splits, progress: Progress
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Score the stack and its baselines on the validation and test splits. Returns the
    probabilities (split -> model -> P(popular)) and the report's ``metrics``; each
    baseline's threshold is its best F1 on validation, never tuned on test."""
    stack, meta, plain = fitted.stack, fitted.meta, fitted.plain
    progress("evaluation: test split")
    probabilities = {
        "validation": model_probabilities(stack, plain, splits.x["validation"], fitted.y_train),
        "test": model_probabilities(stack, plain, splits.x["test"], fitted.y_train),
    }
    order = model_order(stack.learners)
    thresholds = {
        name: (
            stack.threshold
            if name == "stack"
            else 0.5
            if name == "majority"
            else best_f1_threshold(splits.y["validation"], probabilities["validation"][name])
        )
        for name in order
    }
    metrics = {
        "threshold": stack.threshold,
        "test": {
            name: evaluate(splits.y["test"], probabilities["test"][name], thresholds[name])
            for name in order
        },
        "validation": {
            name: evaluate(
                splits.y["validation"], probabilities["validation"][name], thresholds[name]
            )
            for name in order
        },
        "meta": {
            "C": float(meta.C),
            "cv_average_precision": {str(k): v for k, v in fitted.meta_scores.items()},
            "learners": list(stack.learners),
            "input": stack.meta_input,
            "fit_rows": fitted.fit_rows,
            "unseen_copies": list(fitted.unseen_copies),
        },
    }
    return probabilities, metrics


def _stack_info(
    data: TrainingData,
    config: TrainConfig,
    fitted: FittedStack,
    x_train: np.ndarray,
    names: list[str],
    metrics: dict[str, Any],
    cv: dict[str, dict[str, Any]] | None,
) -> dict[str, Any]:
    """Returns the stack's ``info``: label, training data, feature statistics (of every
    model input on the training rows the stack kept, ``x_train``), metrics, parameters
    and the cross-validated estimate, all carried into the manifest."""
    info = {
        "label": {"column": LABEL_COLUMN, "popular_above": config.popular_above},
        "training_data": {
            "file": data.source,
            "table": data.table,
            "sha256": data.sha256,
            "rows": data.counts["rows_read"],
        },
        "feature_stats": feature_stats(x_train, names),
        "metrics": metrics,
        "params": {**config.as_params(), "tuning": fitted.tuning},
    }
    if cv is not None:
        # "cv" stays the popular head's (as before the heads were cross-validated);
        # "cv_heads" holds every head's, the popular one included.
        info["cv_heads"] = {head: cv_estimate(section) for head, section in cv.items()}
        info["cv"] = info["cv_heads"]["popular"]
    return info


def _save_run(
    config: TrainConfig,
    stack: NativeStack,
    heads: Any,
    splits: Splits,
    names: list[str],
    progress: Progress,
) -> Path:
    """Write the stack, its heads, the test split and the SHAP background rows to
    ``RUN_DIR/stack``. Returns the run directory."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    stack.save(out / "stack")
    heads.save(out / "stack")
    write_test_split(out / "stack" / "test.parquet", splits, names)
    write_background(out / "stack" / "background.parquet", splits.x["train"], names, config.seed)
    write_training_keys(out / "stack", splits, config)
    progress(f"stack: written to {out / 'stack'}")
    return out


def _report(
    data: TrainingData,
    splits: Splits,
    fitted: FittedStack,
    vocabulary: list[str] | None,
    metrics: dict[str, Any],
    cv: dict[str, dict[str, Any]] | None,
) -> dict[str, Any]:
    """Returns the report's data, parameters, metrics, notes, versions and CV sections
    (the plots and timings are added as they are made)."""
    report = {
        "data": data_summary(
            data, splits, fitted.models.balanced, fitted.outliers_dropped, vocabulary
        ),
        "params": fitted.stack.info["params"],
        "metrics": metrics,
        "notes": fitted.notes,
        "versions": package_versions(),
    }
    if cv is not None:
        report["cv"], report["cv_heads"] = cv["popular"], cv
    return report


def _write_report(
    out: Path,
    report: dict[str, Any],
    fitted: FittedStack,
    splits: Splits,
    probabilities: dict[str, dict[str, np.ndarray]],
    heads: Any,
    names: list[str],
    config: TrainConfig,
    progress: Progress,
) -> None:
    """Draw the plots and write report.html, with the heads' section and the popularity
    head's SHAP values when there are heads; adds the plots to ``report``. Returns nothing."""
    from popbatch.models.report import write_report

    progress("report: plots and report.html")
    write_report(out, report, fitted.stack, splits, probabilities, fitted.models.history, config)
    if not heads.heads:
        return
    from popbatch.models.heads import add_html_section, write_plots

    report["heads"] = heads.report
    drawn = write_plots(out, heads)
    report["plots"].update(drawn)
    add_html_section(out, heads.report, drawn)
    if "popularity" in heads.heads:
        from popbatch.models.report import add_head_shap

        progress("report: SHAP values of the popularity head")
        popularity = heads.heads["popularity"].predict
        shared = shared_width(names)  # the popularity head reads no genre shares
        add_head_shap(out, report, popularity, names[:shared], splits, config.seed, "popularity")


def shipped_priors(data: TrainingData, splits: Splits, config: TrainConfig) -> FittedPriors:
    """The priors table the model ships: refitted on every labelled row (train,
    validation and test) once evaluation is done, so it knows more artists and
    albums (the model card says so); with ``ship_all_rows`` off, the training split's."""
    from dataclasses import replace

    if not config.priors.ship_all_rows:
        extra = {"fitted_on": "the training split's rows", "known_share": known_shares(splits)}
        spec = replace(splits.priors.spec, extra=extra)
        return FittedPriors(spec, splits.priors.table)
    fitted = fit_priors(data.frame, splits.priors.spec, config.popular_above)
    note = (
        f"refitted on every labelled row ({data.frame.height:,}: train, validation and test) "
        "once evaluation was done, so it knows more artists and albums; the models and "
        "every figure were made with the training split's table"
    )
    extra = {"fitted_on": note, "known_share": known_shares(splits)}
    return FittedPriors(replace(fitted.spec, extra=extra), fitted.table)


def known_shares(splits: Splits) -> dict[str, float]:
    """Per prior column, the share of test rows whose key the training table knows (a
    catalog like the training data's): ``popbatch drift`` compares a catalog's with it."""
    spec = splits.priors.spec
    names = spec.feature_names()
    test = splits.frames["test"]
    block = splits.priors.features(test)
    return {
        c: round(float(np.mean(block[:, names.index(f"{c}:count")] > 0)), 4)
        for c in spec.columns
        if "count" in spec.statistics
    }


def kept_rows(x_train: np.ndarray, config: TrainConfig) -> np.ndarray:
    """Which raw training rows ``fit_stack`` fits on: all, or with ``--outliers drop``
    those inside the 1st-99th percentiles of ``x_train`` (the heads fit on the same)."""
    if config.outliers != "drop":
        return np.ones(len(x_train), bool)
    lower, upper = outlier_bounds(x_train, x_train.shape[1])
    return np.all((x_train >= lower) & (x_train <= upper), axis=1)


def _config_from(data: str | Path, out: str | Path | None, options: dict[str, Any]) -> TrainConfig:
    if out is None:
        raise InputError("train(): give the run directory, out=")
    learners = options.pop("learners", None) or LearnerParams()
    if "epochs" in options:  # as --epochs: given, it caps the heads' networks too
        learners.max_epochs = options["epochs"]
    for name in _LEARNER_OPTIONS:
        if name in options:
            setattr(learners, name, options.pop(name))
    try:
        return TrainConfig(data=data, out=Path(out), learners=learners, **options)
    except TypeError as exc:
        raise InputError(f"train(): {exc}") from None


def cv_estimate(cv: dict[str, Any]) -> dict[str, Any]:
    """The manifest's copy of one head's CV result: means, stds and the paired difference."""
    keep = ("head", "combined", "metrics", "spec", "rows", "positives", "seconds")
    models = {
        model: {k: {"mean": v["mean"], "std": v["std"]} for k, v in metrics.items()}
        for model, metrics in cv["models"].items()
    }
    paired = {
        metric: {k: v for k, v in d.items() if k != "folds"}
        for metric, d in cv["stack_vs_best_single"].items()
    }
    return {**{k: cv[k] for k in keep if k in cv}, "models": models, "stack_vs_best_single": paired}


def evaluations_estimate(evaluations: dict[str, Any]) -> dict[str, Any]:
    """The manifest's copy of the honest evaluations: evaluation -> recipe -> head ->
    :func:`cv_estimate`."""
    out: dict[str, Any] = {}
    for key, heads in evaluations.items():
        evaluation, recipe = key.split("/")
        out.setdefault(evaluation, {})[recipe] = {h: cv_estimate(s) for h, s in heads.items()}
    return out


def model_probabilities(
    stack: NativeStack, plain: Any, x: np.ndarray, y_train: np.ndarray
) -> dict[str, np.ndarray]:
    """Each model's probability for raw rows ``x``; the stack's comes from the NativeStack."""
    base = stack.base_probabilities(x)
    scaled = stack.scale(stack.clip(x))
    return {
        **{name: base[:, i] for i, name in enumerate(stack.learners) if name != "logistic"},
        "stack": stack.predict_proba(x),
        "logistic": plain.predict_proba(scaled)[:, 1],
        # The majority class's rate as a constant score: ranks nothing.
        "majority": np.full(x.shape[0], float(y_train.mean())),
    }


def data_summary(
    data: TrainingData,
    splits: Splits,
    balanced: Any,
    outliers_dropped: int,
    vocabulary: list[str] | None,
) -> dict[str, Any]:
    per_split = {
        name: {
            "rows": int(y.size),
            "popular": int(y.sum()),
            "share_popular": float(y.mean()),
            "track_ids": int(np.unique(splits.groups[name]).size),
        }
        for name, y in splits.y.items()
    }
    per_split["train_balanced"] = {
        "rows": int(balanced.y.size),
        "popular": int(balanced.y.sum()),
        "share_popular": float(balanced.y.mean()),
        "class_weight": balanced.class_weight,
    }
    return {
        "file": data.source,
        "table": data.table,
        "sha256": data.sha256,
        "rows": {**data.counts, "outliers_dropped_from_train": outliers_dropped},
        "splits": per_split,
        "genres": len(vocabulary) if vocabulary is not None else None,
    }


def write_test_split(path: Path, splits: Splits, names: list[str]) -> None:
    """The untouched test split as the scorer would build it (unclipped float32)."""
    x = splits.x["test"]
    columns = {name: pl.Series(name, x[:, i], dtype=pl.Float32) for i, name in enumerate(names)}
    frame = pl.DataFrame(columns).with_columns(
        pl.Series("y", splits.y["test"], dtype=pl.Int8),
        pl.Series(KEY_COLUMN, splits.groups["test"], dtype=pl.String),
    )
    frame.write_parquet(path)


def write_training_keys(stack_dir: Path, splits: Splits, config: TrainConfig) -> None:
    """The fingerprint of the keys whose labels the model holds (:mod:`popbatch.core.fingerprint`),
    which export copies beside the model: the training and validation parts, and the test
    part too when the shipped priors table is refitted on every labelled row (a test row's
    own label is then in its artist's and album's history, so evaluate must call it
    in-sample)."""
    from popbatch.core.fingerprint import KEYS_FILE, fingerprint_bytes

    parts = ["train", "validation"]
    if config.priors.columns and config.priors.ship_all_rows:
        parts.append("test")
    keys = np.concatenate([splits.groups[part] for part in parts])
    (Path(stack_dir) / KEYS_FILE).write_bytes(fingerprint_bytes(keys.tolist()))


def write_background(
    path: Path, x: np.ndarray, names: list[str], seed: int, rows: int = 100
) -> None:
    """A random sample of training rows (model feature columns), for ``popbatch explain``."""
    pick = np.random.default_rng(seed).choice(len(x), size=min(rows, len(x)), replace=False)
    columns = {n: pl.Series(n, x[pick, i], dtype=pl.Float32) for i, n in enumerate(names)}
    pl.DataFrame(columns).write_parquet(path)
