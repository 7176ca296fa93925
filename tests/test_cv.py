"""popbatch train --cv: folds grouped by track_id, everything fitted inside the fold,
for every head (popular, popularity, genre).

Uses the committed fixture (tests/data/tracks_2000.csv, which lists some tracks
under several genres), stacks without the network and shrinks the heads'
learners (``small_heads``), so the file stays fast; the end-to-end --cv run
lives with the other training run in test_train.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TRACKS_2000
from popbatch.models.cv import (
    HEADS,
    CvSpec,
    FoldResult,
    cross_validate,
    fit_fold,
    fold_tasks,
    inner_split,
    lower_is_better,
    run_fold,
    summarize,
)
from popbatch.models.data import feature_matrix, genre_vocabulary, load_training_data
from popbatch.models.learners import LearnerParams
from popbatch.models.pipeline import TrainConfig
from popbatch.models.split import grouped_folds

from popbatch.core.features import feature_names

ALL_HEADS = ("popular", "popularity", "genre")


@pytest.fixture(scope="module")
def data():
    return load_training_data(TRACKS_2000)


@pytest.fixture(scope="module")
def targets(data):
    """The other heads' labels, row for row (as models.pipeline passes them)."""
    return {
        "popularity": data.frame["popularity"].to_numpy().astype(np.float64),
        "genre": np.asarray(data.frame["genre"].to_list(), dtype=object),
    }


@pytest.fixture
def small_heads(monkeypatch):
    """The heads' learners at test size: the recipe is under test here, not its quality."""
    from popbatch.models import heads

    popularity_params, genre_params = heads.popularity_params, heads.genre_params

    def small_popularity(config):
        params = popularity_params(config)
        params.rf.update(n_estimators=3, max_depth=3)
        params.xgb.update(n_estimators=10)
        return params

    def small_genre(config):
        params = genre_params(config)
        params.rf.update(n_estimators=3, max_depth=3)
        params.hidden = (8,)
        params.softmax_iterations = 30
        return params

    monkeypatch.setattr(heads, "popularity_params", small_popularity)
    monkeypatch.setattr(heads, "genre_params", small_genre)


@pytest.fixture(scope="module")
def rows(data):
    vocabulary = genre_vocabulary(data.frame["genre"])
    x = feature_matrix(data.frame, vocabulary)
    y = (data.frame["popularity"].to_numpy() > 71).astype(np.int64)
    groups = data.frame["track_id"].to_numpy()
    assert np.unique(groups).size < groups.size  # some track_ids repeat: grouping matters
    return x, y, groups, vocabulary


SPEC = CvSpec(3, 2)


def _config(balance="class-weight", outliers="keep"):
    params = LearnerParams(learners=("logistic", "xgb"), n_jobs=1, epochs=2, max_epochs=2)
    params.xgb.update(n_estimators=10, max_depth=2)
    return TrainConfig(
        data=TRACKS_2000, out=Path("unused"), balance=balance, outliers=outliers, folds=2,
        learners=params,
    )  # fmt: skip


def _tasks(rows, balance="class-weight", spec=SPEC, outliers="keep", **common):
    x, y, groups, vocabulary = rows
    config = _config(balance, outliers)
    common = {"names": feature_names(vocabulary), "vocabulary": vocabulary, "config": config,
              **common}  # fmt: skip
    return list(fold_tasks(x, y, groups, spec, config.seed, **common))


def test_cv_spec_parses_folds_x_repeats():
    assert CvSpec.parse("5x3") == CvSpec(5, 3)
    assert CvSpec.parse("4") == CvSpec(4, 1)
    assert str(CvSpec(5, 3)) == "5x3"
    for bad in ("1x3", "5x0", "x", "5x3x2", "five"):
        with pytest.raises(ValueError, match="5x3"):
            CvSpec.parse(bad)


def test_no_track_id_in_two_parts_of_any_fold(rows):
    """Held-out vs fitting rows, and inside the fitting rows training vs validation and
    the stacking folds: no track_id on both sides, anywhere."""
    _, y, groups, _ = rows
    tasks = _tasks(rows)
    assert len(tasks) == 6
    for repeat in (0, 1):
        held = np.concatenate([t.held_out for t in tasks if t.repeat == repeat])
        assert sorted(held) == list(range(len(y)))  # each row held out once per repeat
    for task in tasks:
        assert not set(groups[task.fit_rows]) & set(groups[task.held_out])
        train, val, seed = inner_split(task)
        assert not set(groups[train]) & set(groups[val])
        assert sorted(np.concatenate([train, val])) == sorted(task.fit_rows)
        for fit, out in grouped_folds(groups[train], y[train], task.config.folds, seed):
            assert not set(groups[train][fit]) & set(groups[train][out])
    # repeats cut differently
    assert not np.array_equal(tasks[0].held_out, tasks[3].held_out)


@pytest.mark.parametrize("balance", ["smote", "class-weight"])
def test_held_out_labels_never_reach_the_encoder_resampling_or_learners(rows, balance):
    """Flip every held-out label: the fold's genre encoding, resampled rows, learners and
    threshold must not change. Fails if held-out rows feed any fitting step."""
    task = _tasks(rows, balance)[1]
    flipped = task.__class__(**{**task.__dict__, "y": task.y.copy()})
    flipped.y[task.held_out] = 1 - flipped.y[task.held_out]
    a, b = fit_fold(task).fitted, fit_fold(flipped).fitted
    assert a.stack.genre_encoding is not None
    assert a.stack.genre_encoding == b.stack.genre_encoding
    assert np.array_equal(a.models.balanced.x, b.models.balanced.x)
    assert np.array_equal(a.models.balanced.y, b.models.balanced.y)
    assert a.stack.logistic == b.stack.logistic
    assert a.stack.meta_coef == b.stack.meta_coef and a.stack.threshold == b.stack.threshold


def test_training_rows_get_an_out_of_fold_genre_encoding(rows):
    """A row's own label never enters its own encoded genre: the encoding XGBoost trains
    on is out-of-fold, so it differs from the encoding fitted on all training rows."""
    from popbatch.models.encoding import fit_encoding, out_of_fold_encoding

    x, y, groups, vocabulary = rows
    onehot = x[:, -(len(vocabulary) + 1) :]
    full = onehot @ fit_encoding(onehot, y)
    oof = out_of_fold_encoding(onehot, y, groups, seed=1)
    # with its own label in, a popular row's genre looks more popular than without it
    assert np.mean(full[y == 1] - oof[y == 1]) > 0
    # flip one row's label (the folds held fixed by strata): its own encoding must not
    # move, though the encoding fitted on all rows does (so a leak would show)
    rng = np.random.default_rng(0)
    for row in rng.choice(len(y), 10, replace=False):
        flipped = y.copy()
        flipped[row] = 1 - flipped[row]
        moved = out_of_fold_encoding(onehot, flipped, groups, seed=1, strata=y)
        assert moved[row] == oof[row], row
        assert (onehot @ fit_encoding(onehot, flipped))[row] != full[row], row
        assert not np.array_equal(moved, oof)  # the other folds' rows did see the label
    # each row is encoded by an encoder that never saw its fold's rows (nor their labels)
    for fit, out in grouped_folds(groups, y, 5, 1):
        scrambled = y.copy()
        scrambled[out] = 1 - scrambled[out]
        encoding = fit_encoding(onehot[fit], scrambled[fit])
        np.testing.assert_allclose(oof[out], onehot[out] @ encoding, rtol=1e-12)


def _result(fold, head, scores):
    return FoldResult(0, fold, {head: scores}, 10, 1, {head: 1.0})


def test_summary_has_mean_std_folds_and_the_paired_difference():
    def scores(stack, logistic):
        metric = lambda v: {"roc_auc": v, "pr_auc": v / 5, "f1": v / 4}  # noqa: E731
        return {"stack": metric(stack), "logistic": metric(logistic), "majority": metric(0.5)}

    results = [
        _result(0, "popular", scores(0.85, 0.84)),
        _result(1, "popular", scores(0.83, 0.84)),
        _result(2, "popular", scores(0.86, 0.83)),
    ]
    summary = summarize(results, HEADS["popular"])
    stack = summary["models"]["stack"]["roc_auc"]
    assert stack["folds"] == [0.85, 0.83, 0.86]
    assert stack["mean"] == pytest.approx(0.8466667, abs=1e-6)
    assert stack["std"] == pytest.approx(0.0152753, abs=1e-6)
    paired = summary["stack_vs_best_single"]["roc_auc"]
    assert paired["best_single"] == "logistic"  # never the stack or the majority baseline
    assert paired["folds"] == pytest.approx([0.01, -0.01, 0.03])
    assert paired["stack_better_folds"] == 2 and paired["folds_compared"] == 3


def test_best_single_model_respects_lower_is_better_and_skips_baselines():
    """MAE: the best single model has the lowest mean, and the stack is better where its
    MAE is lower. The training mean (a trivial baseline) never counts, even when it would
    win; the plain linear regression does (the stack must beat it)."""

    def scores(stack, linear, mean_r2):
        return {
            "stack": {"r2": 0.27, "mae": stack},
            "ann": {"r2": 0.20, "mae": 16.0},  # the worst MAE: "best" if direction were ignored
            "xgb": {"r2": 0.25, "mae": 14.5},
            "linear": {"r2": 0.24, "mae": linear},
            "mean": {"r2": mean_r2, "mae": 13.0},  # a "best" MAE no baseline may claim
        }

    head = HEADS["popularity"]
    assert lower_is_better({"metrics": [{"name": m.name, "higher_is_better": m.higher_is_better}
                                         for m in head.metrics]}) == {"mae"}  # fmt: skip
    results = [_result(0, "popularity", scores(14.0, 14.8, 0.9)),
               _result(1, "popularity", scores(14.6, 14.7, 0.9))]  # fmt: skip
    paired = summarize(results, head)["stack_vs_best_single"]
    assert paired["mae"]["best_single"] == "xgb"
    assert paired["mae"]["folds"] == pytest.approx([-0.5, 0.1])
    assert paired["mae"]["stack_better_folds"] == 1  # lower MAE in fold 0 only
    assert paired["r2"]["best_single"] == "xgb"  # not the mean, whatever its R²
    results = [_result(0, "popularity", scores(14.0, 14.2, 0.0))]
    assert summarize(results, head)["stack_vs_best_single"]["mae"]["best_single"] == "linear"
    # the genre head's combined model and most-frequent baseline stay out too
    genre = HEADS["genre"]
    assert genre.singles(["combined", "ann", "rf", "most_frequent"]) == ["ann", "rf"]


GENRE_METRICS = ["accuracy", "macro_f1", "top3_accuracy"]
EXPECTED = {
    "popular": ({"xgb", "stack", "logistic", "majority"}, ["roc_auc", "pr_auc", "f1"]),
    "popularity": ({"stack", "ann", "linear", "mean"}, ["r2", "mae"]),
    "genre": ({"combined", "softmax", "most_frequent"}, GENRE_METRICS),
}


def test_cv_table_for_every_head(rows, targets, small_heads):
    """--cv 2x1 over the three heads: one section per head with its models and metrics,
    mean ± std and per-fold values, and the combined model vs the best single one."""
    x, y, groups, vocabulary = rows
    cv = cross_validate(
        x, y, groups, feature_names(vocabulary), vocabulary, _config(), CvSpec(2, 1),
        n_jobs=1, heads=ALL_HEADS, targets=targets,
    )  # fmt: skip
    assert list(cv) == list(ALL_HEADS)
    for head, (models, metrics) in EXPECTED.items():
        section = cv[head]
        assert (section["head"], section["spec"], section["rows"]) == (head, "2x1", y.size)
        assert set(section["models"]) == models
        for model, values in section["models"].items():
            assert list(values) == metrics, (head, model)
            for metric, stats in values.items():
                assert len(stats["folds"]) == 2 and np.all(np.isfinite(stats["folds"]))
                assert stats["mean"] == pytest.approx(np.mean(stats["folds"])), (head, metric)
        assert list(section["stack_vs_best_single"]) == metrics
        for d in section["stack_vs_best_single"].values():
            assert d["best_single"] in HEADS[head].singles(list(models))
        assert [f["seconds"] > 0 for f in section["per_fold"]] == [True, True]
    assert lower_is_better(cv["popularity"]) == {"mae"} and not lower_is_better(cv["genre"])
    assert cv["genre"]["combined"] == "combined"
    for model, values in cv["popularity"]["models"].items():
        assert max(values["r2"]["folds"]) <= 1 and min(values["mae"]["folds"]) >= 0, model
    for model, values in cv["genre"]["models"].items():
        assert all(0 <= v <= 1 for m in values.values() for v in m["folds"]), model


def test_a_head_without_its_labels_is_refused_before_any_fold(rows, targets):
    x, y, groups, vocabulary = rows
    with pytest.raises(ValueError, match="no targets for the genre head"):
        cross_validate(
            x, y, groups, feature_names(vocabulary), vocabulary, _config(), CvSpec(2, 1),
            n_jobs=1, heads=ALL_HEADS, targets={"popularity": targets["popularity"]},
        )  # fmt: skip


def test_heads_fit_on_the_stacks_rows_with_track_ids_apart_in_every_fold(rows):
    """The rows the popularity and genre heads fit on (FoldFit) are the fold stack's own
    training rows (--outliers drop removes the same ones) and validation rows: no
    track_id in two of training, validation and held-out, in any fold."""
    _, y, groups, _ = rows
    for task in _tasks(rows, outliers="drop"):
        fold = fit_fold(task)
        train, val, _ = inner_split(task)
        assert set(fold.train) < set(train) and np.array_equal(fold.val, val)  # some dropped
        assert np.array_equal(y[fold.train], fold.fitted.y_train)
        parts = [set(groups[fold.train]), set(groups[fold.val]), set(groups[task.held_out])]
        assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]


def _spy_on_head_fits(monkeypatch, stop_after_fit=False):
    """Record what reaches each head's fitting (fit_head, and evaluate_head's training
    rows for the baselines): (call, x or None, labels, groups or None, part)."""
    from popbatch.models import genre, popularity

    seen = []

    def spy(module, name, record):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            seen.extend(record(*args))
            if stop_after_fit:
                raise _Stop
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    spy(
        popularity,
        "fit_head",
        lambda _s, x, y, g, xv, yv, *_: [
            ("popularity.fit_head", x, y, g, "train"),
            ("popularity.fit_head", xv, yv, None, "val"),
        ],
    )
    spy(
        popularity,
        "evaluate_head",
        lambda _h, x, y, xs, ys: [
            ("popularity.evaluate_head", x, y, None, "train"),
            ("popularity.evaluate_head", xs["validation"], ys["validation"], None, "val"),
        ],
    )
    spy(
        genre,
        "fit_head",
        lambda _s, x, g, xv, gv, *_: [
            ("genre.fit_head", x, g, None, "train"),
            ("genre.fit_head", xv, gv, None, "val"),
        ],
    )
    spy(
        genre,
        "evaluate_head",
        lambda _h, xs, gs, g: [
            ("genre.evaluate_head", None, g, None, "train"),
            ("genre.evaluate_head", xs["validation"], gs["validation"], None, "val"),
        ],
    )
    return seen


class _Stop(Exception):
    pass


def _assert_fold_rows_only(task, seen):
    """Every row (found by its unique feature values) and label that reached a head's
    fitting is one of the fold's own training or validation rows, with its own label;
    no held-out row and no held-out track_id; training and validation apart by track."""
    index = {row.tobytes(): i for i, row in enumerate(task.x)}
    fit_rows, held_out = set(task.fit_rows), set(task.held_out)
    held_ids = set(task.groups[task.held_out])
    parts = {}
    for call, x, labels, groups, part in seen:
        if x is None:  # genre.evaluate_head's training genres: those genre.fit_head had
            rows = parts[("genre.fit_head", "train")]
        else:
            rows = np.array([index[r.tobytes()] for r in x])
        assert set(rows) <= fit_rows and not set(rows) & held_out, (call, part)
        assert not set(task.groups[rows]) & held_ids, (call, part)
        target = task.targets["popularity" if call.startswith("popularity") else "genre"]
        assert list(labels) == list(target[rows]), (call, part)
        if groups is not None:  # the popularity stack's inner folds group by these
            assert list(groups) == list(task.groups[rows]), call
        parts[(call, part)] = rows
    for call in {c for c, _ in parts}:
        train, val = parts[(call, "train")], parts[(call, "val")]
        assert not set(task.groups[train]) & set(task.groups[val]), call
    return {c for c, _ in parts}


@pytest.fixture(scope="module")
def unique_rows(rows, targets):
    """The fixture without its few rows whose features repeat (so a row can be found by
    its values), and the targets of the rows kept."""
    x, y, groups, vocabulary = rows
    keep = np.sort(np.unique(x, axis=0, return_index=True)[1])
    return (x[keep], y[keep], groups[keep], vocabulary), {k: v[keep] for k, v in targets.items()}


def test_held_out_rows_and_labels_never_reach_a_heads_fit(unique_rows, small_heads, monkeypatch):
    """Spy on the popularity and genre heads' fitting inside a fold: only the fold's own
    rows and labels arrive. The same check catches a fold whose training rows leak."""
    rows, targets = unique_rows
    task = _tasks(rows, heads=ALL_HEADS, targets=targets)[1]
    seen = _spy_on_head_fits(monkeypatch)
    result = run_fold(task)
    assert set(result.scores) == set(ALL_HEADS)
    checked = _assert_fold_rows_only(task, seen)
    assert checked == {"popularity.fit_head", "popularity.evaluate_head", "genre.fit_head",
                       "genre.evaluate_head"}  # fmt: skip

    from popbatch.models import cv

    def leaky_split(task):  # the held-out rows join the fold's training rows
        train, val, seed = inner_split(task)
        return np.concatenate([train, task.held_out]), val, seed

    monkeypatch.setattr(cv, "inner_split", leaky_split)
    seen = _spy_on_head_fits(monkeypatch, stop_after_fit=True)
    with pytest.raises(_Stop):
        run_fold(task)
    with pytest.raises(AssertionError, match=r"popularity\.fit_head.*train"):
        _assert_fold_rows_only(task, seen)


def test_tensorflow_warnings_are_silenced():
    """Keras retraces predict for every new model (dozens in stacking and CV); TensorFlow
    then logs "triggered tf.function retracing" warnings nobody can act on."""
    import logging

    from popbatch.models.quiet import import_keras_quietly

    import_keras_quietly()
    import tensorflow as tf

    assert tf.get_logger().getEffectiveLevel() >= logging.ERROR
    assert not tf.get_logger().isEnabledFor(logging.WARNING)


def test_folds_refuse_labels_other_than_0_and_1():
    """A regression target passed as strata would leave its rows in no fold at all."""
    groups = np.arange(20).astype(str)
    with pytest.raises(ValueError, match="must be 0 or 1"):
        list(grouped_folds(groups, np.linspace(0, 100, 20), 5, 1))
