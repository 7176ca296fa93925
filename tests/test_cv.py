"""popbatch train --cv: folds grouped by track_id, everything fitted inside the fold.

Uses the committed fixture (tests/data/tracks_2000.csv, which lists some tracks
under several genres) and stacks without the network, so the file stays fast;
the end-to-end --cv run lives with the other training run in test_train.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TRACKS_2000
from popbatch.models.cv import CvSpec, fit_fold, fold_tasks, inner_split, summarize
from popbatch.models.data import feature_matrix, genre_vocabulary, load_training_data
from popbatch.models.learners import LearnerParams
from popbatch.models.pipeline import TrainConfig
from popbatch.models.split import grouped_folds

from popbatch.core.features import feature_names


@pytest.fixture(scope="module")
def rows():
    data = load_training_data(TRACKS_2000)
    vocabulary = genre_vocabulary(data.frame["genre"])
    x = feature_matrix(data.frame, vocabulary)
    y = (data.frame["popularity"].to_numpy() > 71).astype(np.int64)
    groups = data.frame["track_id"].to_numpy()
    assert np.unique(groups).size < groups.size  # some track_ids repeat: grouping matters
    return x, y, groups, vocabulary


SPEC = CvSpec(3, 2)


def _tasks(rows, balance="class-weight", spec=SPEC):
    x, y, groups, vocabulary = rows
    params = LearnerParams(learners=("logistic", "xgb"), n_jobs=1)
    params.xgb.update(n_estimators=10, max_depth=2)
    config = TrainConfig(
        data=TRACKS_2000, out=Path("unused"), balance=balance, folds=2, learners=params
    )
    common = {"names": feature_names(vocabulary), "vocabulary": vocabulary, "config": config}
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
    a, _, _ = fit_fold(task)
    b, _, _ = fit_fold(flipped)
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
    # each row is encoded by an encoder that never saw its fold's rows (nor their labels)
    for fit, out in grouped_folds(groups, y, 5, 1):
        scrambled = y.copy()
        scrambled[out] = 1 - scrambled[out]
        encoding = fit_encoding(onehot[fit], scrambled[fit])
        np.testing.assert_allclose(oof[out], onehot[out] @ encoding, rtol=1e-12)


def test_summary_has_mean_std_folds_and_the_paired_difference():
    from popbatch.models.cv import HEADS, FoldResult

    def scores(stack, logistic):
        metric = lambda v: {"roc_auc": v, "pr_auc": v / 5, "f1": v / 4}  # noqa: E731
        return {"stack": metric(stack), "logistic": metric(logistic), "majority": metric(0.5)}

    results = [
        FoldResult(0, 0, scores(0.85, 0.84), 10, 1, 1.0),
        FoldResult(0, 1, scores(0.83, 0.84), 10, 1, 1.0),
        FoldResult(1, 0, scores(0.86, 0.83), 10, 1, 1.0),
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
