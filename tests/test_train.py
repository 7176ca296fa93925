"""popbatch train: split, balancing, normalisation, determinism, the report, bad input.

Runs on the committed fixture (tests/data/tracks_2000.csv, real rows); the
end-to-end run uses tiny models so the file stays fast.
"""

from __future__ import annotations

import json
import math
import re
import warnings

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from conftest import SMALL_TITLE_CASE, TRACKS_2000
from popbatch.models.balance import balance
from popbatch.models.data import feature_matrix, genre_vocabulary, load_training_data
from popbatch.models.learners import LearnerParams, fit_rf, fit_xgb
from popbatch.models.split import grouped_split

from popbatch.cli.main import cli
from popbatch.core import train_defaults
from popbatch.core.features import NUMERIC_FEATURE_NAMES, normalized_names

TINY = ["--epochs", "2", "--folds", "2", "--rf-trees", "5", "--rf-depth", "4",
        "--xgb-rounds", "10", "--xgb-depth", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def data():
    return load_training_data(TRACKS_2000)


@pytest.fixture(scope="module")
def labelled(data):
    y = (data.frame["popularity"].to_numpy() > 71).astype(np.int64)
    groups = data.frame["track_id"].to_numpy()
    return y, groups


def test_no_track_id_in_two_splits(data, labelled):
    y, groups = labelled
    split = grouped_split(groups, y, seed=42)
    ids = {name: set(groups[getattr(split, name)]) for name in ("train", "validation", "test")}
    assert not ids["train"] & ids["validation"]
    assert not ids["train"] & ids["test"]
    assert not ids["validation"] & ids["test"]
    # every row lands in exactly one split
    assert sorted(np.concatenate([split.train, split.validation, split.test])) == list(
        range(len(y))
    )
    # the fixture lists some tracks under several genres: the split must keep them together
    assert data.frame["track_id"].n_unique() < data.frame.height


def test_same_seed_same_split_other_seed_other_split(labelled):
    y, groups = labelled
    a, b, c = (grouped_split(groups, y, seed=s) for s in (7, 7, 8))
    assert np.array_equal(a.test, b.test) and np.array_equal(a.train, b.train)
    assert not np.array_equal(a.test, c.test)


def test_smote_changes_only_the_class_ratio_of_the_rows_it_is_given(data, labelled):
    y, _ = labelled
    x = feature_matrix(data.frame, genre_vocabulary(data.frame["genre"]))
    before = y.mean()
    result = balance(x, y, "smote", seed=1)
    assert result.y.mean() == pytest.approx(0.5)
    # the original rows are kept in front; only synthetic minority rows are added
    assert np.array_equal(result.x[: len(y)], x)
    assert int((result.y == 0).sum()) == int((y == 0).sum())
    assert y.mean() == before  # the caller's labels are not touched


def test_undersample_and_class_weight(data, labelled):
    y, _ = labelled
    x = feature_matrix(data.frame, None)
    under = balance(x, y, "undersample", seed=1)
    assert int(under.y.sum()) == int(y.sum()) and under.y.mean() == pytest.approx(0.5)
    weighted = balance(x, y, "class-weight", seed=1)
    assert weighted.x is x and weighted.class_weight[1] > 1 > weighted.class_weight[0]


@pytest.mark.parametrize("method", ["smote", "adasyn"])
def test_synthesis_falls_back_below_six_minority_rows(method):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = np.zeros(60, np.int64)
    y[:5] = 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = balance(x, y, method, seed=0)
    assert result.x is x and result.y.tolist() == y.tolist()
    assert any("only 5 minority rows (needs 6)" in str(w.message) for w in caught)


def test_title_case_headers_normalise():
    header = pl.read_csv(SMALL_TITLE_CASE, n_rows=0).columns
    names = normalized_names(header)
    assert names["Duration (ms)"] == "duration_ms"
    assert names["Track ID"] == "track_id"
    assert names["Popularity"] == "popularity"
    assert names["Unnamed: 0"] == "unnamed_0"
    # the small file's audio features all map onto the model's names except the two it lacks
    assert {"danceability", "energy", "loudness", "tempo", "explicit"} <= set(names.values())


def test_same_seed_same_rf_and_xgb_predictions(data, labelled):
    y, groups = labelled
    split = grouped_split(groups, y, seed=3)
    x = feature_matrix(data.frame, None)
    train = balance(x[split.train], y[split.train], "none", seed=3)
    params = LearnerParams()
    params.rf.update(n_estimators=10, max_depth=4)
    params.xgb.update(n_estimators=20, max_depth=2)
    x_val, y_val = x[split.validation], y[split.validation]
    rf = [fit_rf(train, params, seed=3).predict_proba(x_val) for _ in range(2)]
    xgb = [fit_xgb(train, x_val, y_val, params, seed=3).predict_proba(x_val) for _ in range(2)]
    # RandomForest averages its trees in 2 threads: the same trees, summed in any order
    np.testing.assert_allclose(rf[0], rf[1], rtol=0, atol=1e-12)
    assert np.array_equal(xgb[0], xgb[1])


def _in_range(name: str, value) -> bool:
    if value is None:
        return False
    if name in ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc"):
        return isinstance(value, float | int) and 0.0 <= value <= 1.0 and not math.isnan(value)
    return True


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    # The network and logits too (the default is logistic + xgb on probabilities), so the
    # end-to-end run covers every kind of base learner column the graph builds.
    args = ["train", "--data", str(TRACKS_2000), "--out", str(out), "--balance", "smote",
            "--cv", "2x1", "--learners", "logistic,ann,xgb", "--meta-input", "logit",
            *TINY]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out, result


def test_train_end_to_end_report(trained):
    out, _result = trained
    report = json.loads((out / "report.json").read_text())
    assert {"data", "params", "metrics", "versions", "timings"} <= set(report)
    test_metrics = report["metrics"]["test"]
    # logistic, ann, xgb (the logistic base learner is the reference's recipe on the
    # balanced rows, reported as "logistic")
    assert set(test_metrics) == {"ann", "xgb", "stack", "logistic", "majority"}
    for model, metrics in test_metrics.items():
        for name in ("roc_auc", "pr_auc"):
            assert _in_range(name, metrics[name]), (model, name, metrics[name])
        for cut in ("at_threshold", "at_0.5"):
            for name in ("accuracy", "precision", "recall", "f1"):
                assert _in_range(name, metrics[cut][name]), (model, cut, name)
        matrix = np.array(metrics["at_threshold"]["confusion_matrix"])
        assert matrix.shape == (2, 2) and matrix.sum() == report["data"]["splits"]["test"]["rows"]
    assert 0 < report["metrics"]["threshold"] < 1
    for plot in ("roc", "pr", "history", "confusion", "correlation"):
        assert any(plot in p.name for p in (out / "plots").glob("*.png")), plot
    assert "<img" in (out / "report.html").read_text()
    shap = report["shap"]["popular"]  # why the stack predicts what it does
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    priors = {f["name"] for f in manifest["features"]  # the priors the popular stack reads
              if f["kind"] == "prior" and ":log_genre=" not in f["name"]}  # fmt: skip
    assert "artists:mean" in priors
    assert set(shap["mean_abs"]) == {*NUMERIC_FEATURE_NAMES, "genre", *priors}
    assert shap["unit"] == "log-odds of popular" and shap["max_additivity_error"] < 1e-6
    assert list(shap["mean_abs"].values()) == sorted(shap["mean_abs"].values(), reverse=True)
    for plot in ("shap_bar", "shap_beeswarm", "shap_dependence"):
        assert (out / "plots" / f"{plot}.png").is_file(), plot
    assert "in log-odds of popular" in (out / "report.html").read_text()
    assert (out / "stack" / "background.parquet").is_file()


def test_train_fingerprints_the_keys_it_fitted_on_and_export_ships_them(trained):
    """stack/training_keys.u64: the keys whose labels the model holds; the exported model
    carries the same file, listed in its manifest (popbatch evaluate). With catalog
    priors refitted on every labelled row (the default) that is every key, the test
    part's too: their labels are in their artists' and albums' history."""
    from popbatch.core import fingerprint

    out, _ = trained
    data = pl.read_csv(TRACKS_2000)
    fitted = set(data["track_id"])
    stored = (out / "stack" / fingerprint.KEYS_FILE).read_bytes()
    assert stored == fingerprint.fingerprint_bytes(fitted)
    model = out / "model"
    assert (model / fingerprint.KEYS_FILE).read_bytes() == stored
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["training_keys"]["count"] == len(fitted)
    keys = fingerprint.read_fingerprint(model, manifest)
    assert fingerprint.seen(fingerprint.key_hashes(sorted(fitted)), keys).all()


def test_train_cv_reports_mean_std_and_folds_everywhere(trained):
    """--cv 2x1: report.json, report.html, the box plot, the manifest and model info."""
    out, _ = trained
    cv = json.loads((out / "report.json").read_text())["cv"]
    assert (cv["spec"], cv["folds"], cv["repeats"], cv["head"]) == ("2x1", 2, 1, "popular")
    assert set(cv["models"]) == {"ann", "xgb", "stack", "logistic", "majority"}
    for model, metrics in cv["models"].items():
        for name in ("roc_auc", "pr_auc"):
            folds = metrics[name]["folds"]
            assert len(folds) == 2 and all(_in_range(name, v) for v in folds), (model, name)
            assert metrics[name]["mean"] == pytest.approx(np.mean(folds))
    assert cv["models"]["majority"]["roc_auc"]["mean"] == 0.5
    paired = cv["stack_vs_best_single"]["roc_auc"]
    assert paired["best_single"] in {"ann", "xgb", "logistic"}
    # the test split stays out: cross-validated rows are the training + validation rows
    splits = json.loads((out / "report.json").read_text())["data"]["splits"]
    assert cv["rows"] == splits["train"]["rows"] + splits["validation"]["rows"]
    assert (out / "plots" / "cv_boxplot.png").is_file()
    assert "Cross-validation (2x1)" in (out / "report.html").read_text()
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    assert manifest["cv"]["models"]["stack"]["roc_auc"]["mean"] == pytest.approx(
        cv["models"]["stack"]["roc_auc"]["mean"]
    )
    info = CliRunner().invoke(cli, ["model", "info", str(out / "model")])
    assert "cv          2x1 grouped folds over" in info.output


def test_train_cv_covers_every_head(trained):
    """The heads are cross-validated on the same folds: report.json (cv_heads), a table
    and box plot per head in report.html, the manifest, and model info beside each head's
    test figures."""
    import jsonschema
    from popbatch.exporter.manifest import schema

    out, _ = trained
    report = json.loads((out / "report.json").read_text())
    cv = report["cv_heads"]
    assert list(cv) == ["popular", "popularity", "genre"] and cv["popular"] == report["cv"]
    assert set(cv["popularity"]["models"]) == {"stack", "ann", "linear", "mean"}
    assert set(cv["genre"]["models"]) == {"combined", "softmax", "most_frequent"}
    assert [f["fold"] for f in cv["genre"]["per_fold"]] == [0, 1]
    page = (out / "report.html").read_text()
    for head in cv:
        assert f"Cross-validation (2x1): {head} head" in page
    assert "mae (lower is better)" in page
    for plot in ("cv_boxplot_popularity", "cv_boxplot_genre"):
        assert (out / "plots" / f"{plot}.png").is_file()
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    jsonschema.Draft202012Validator(schema()).validate(manifest)
    assert manifest["cv_heads"]["popularity"]["models"]["stack"]["mae"]["mean"] == pytest.approx(
        cv["popularity"]["models"]["stack"]["mae"]["mean"]
    )
    lines = CliRunner().invoke(cli, ["model", "info", str(out / "model")]).output.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("head        popularity"))
    assert lines[head + 1].startswith("metrics     cv 2x1 popularity stack: r2 ")
    assert "(lower is better)" in lines[head + 1]
    assert lines[head + 2].startswith("metrics     cv popularity stack - ")
    assert any(line.startswith("metrics     cv 2x1 genre combined: accuracy ") for line in lines)


def test_stage_lines_carry_elapsed_seconds_without_a_terminal(trained):
    """cron and CI read stderr from a pipe: stage lines are there, TensorFlow's noise not."""
    _, result = trained
    lines = result.stderr.splitlines()
    stages = [line for line in lines if re.match(r"^train: \[ *\d+\.\d s\] ", line)]
    assert any("loading" in line for line in stages)
    assert any(re.search(r"cv: fold 2/2 .* in \d+ s: stack ROC-AUC", line) for line in stages)
    assert any("export" in line for line in stages)
    assert "retracing" not in result.output
    assert "oneDNN" not in result.output


def test_quiet_keeps_only_the_result(runner, tmp_path):
    missing = tmp_path / "nope.csv"
    args = ["train", "--data", str(missing), "--out", str(tmp_path / "o")]
    assert runner.invoke(cli, args).stderr.startswith("train: [")
    result = runner.invoke(cli, [*args, "--quiet"])
    assert result.output == f"Error: {missing}: no such file\n"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--cv", "1x3", "needs at least 2 folds"),
        ("--learners", "ann,svm", "name each of logistic, ann, rf, xgb at most once"),
    ],
)
def test_bad_cv_or_learners_is_a_usage_error(runner, tmp_path, option, value, message):
    args = ["train", "--data", str(TRACKS_2000), "--out", str(tmp_path / "o"), option, value]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "o").exists()


def test_train_balances_training_rows_only(trained):
    out, _ = trained
    splits = json.loads((out / "report.json").read_text())["data"]["splits"]
    # SMOTE evened the training rows; validation and test keep the real, rare positives
    assert splits["train_balanced"]["share_popular"] == pytest.approx(0.5)
    for name in ("validation", "test"):
        assert splits[name]["share_popular"] < 0.1
    test = pl.read_parquet(out / "stack" / "test.parquet")
    assert (
        test.height == splits["test"]["rows"] and int(test["y"].sum()) == splits["test"]["popular"]
    )


def test_saved_stack_reproduces_the_reported_test_metrics(trained):
    from popbatch.models.stack import NativeStack
    from sklearn.metrics import roc_auc_score

    out, _ = trained
    stack = NativeStack.load(out / "stack")
    test = pl.read_parquet(out / "stack" / "test.parquet")
    x = test.select(stack.feature_names).to_numpy().astype(np.float32)
    reported = json.loads((out / "report.json").read_text())["metrics"]["test"]["stack"]
    assert roc_auc_score(test["y"].to_numpy(), stack.predict_proba(x)) == pytest.approx(
        reported["roc_auc"], abs=1e-9
    )


def test_train_exports_the_model_with_parity(trained):
    out, result = trained
    assert "max |native - onnx|" in result.output
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    assert manifest["parity"]["labels_identical"] is True
    assert manifest["parity"]["max_abs_diff"] <= 1e-5
    assert manifest["training_data"]["file"] == TRACKS_2000.name


def test_heads_are_joined_at_the_opset_version_their_operators_use(trained, tmp_path):
    """This run's popular head has XGBoost (ai.onnx.ml 3's TreeEnsembleRegressor), and its
    genre head imports ai.onnx.ml 5, where that operator is gone, without using it: the
    joint graph imports the version the XGBoost trees use, and scores."""
    import onnx

    import popbatch

    out, result = trained
    assert "all_heads.onnx on " in result.output
    joint = onnx.load(out / "model" / "all_heads.onnx")
    imported = {o.domain: o.version for o in joint.opset_import}
    trees = [n for n in joint.graph.node if n.op_type == "TreeEnsembleRegressor"]
    assert trees and imported["ai.onnx.ml"] == 3
    genre = onnx.load(out / "model" / "genre.onnx")
    assert {o.domain: o.version for o in genre.opset_import}["ai.onnx.ml"] == 5
    scored = tmp_path / "scored.parquet"
    popbatch.score(TRACKS_2000, scored, model=out / "model", record=False)
    frame = pl.read_parquet(scored)
    assert frame.height == 2000 and frame["genre_pred"].null_count() == 0


def test_missing_file(runner, tmp_path):
    missing = tmp_path / "nope.csv"
    result = runner.invoke(cli, ["train", "--data", str(missing), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    # the same message as popbatch score's: training reads through the same sources
    assert result.output.splitlines()[-1] == f"Error: {missing}: no such file"


def test_file_without_label_column(runner, tmp_path):
    path = tmp_path / "nolabel.csv"
    pl.read_csv(TRACKS_2000).drop("popularity").write_csv(path)
    result = runner.invoke(cli, ["train", "--data", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert f"Error: {path}: missing label column 'popularity'" in result.output
    assert "Traceback" not in result.output


def test_file_missing_feature_columns(runner, tmp_path):
    path = tmp_path / "nofeatures.csv"
    pl.read_csv(TRACKS_2000).drop("tempo", "valence").write_csv(path)
    args = ["train", "--data", str(path), "--out", str(tmp_path / "o"), "--quiet"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2
    assert (
        result.output.strip() == f"Error: {path}: missing feature columns: valence, tempo; add them"
    )


def test_small_title_case_file_names_what_it_lacks(runner, tmp_path):
    result = runner.invoke(
        cli, ["train", "--data", str(SMALL_TITLE_CASE), "--out", str(tmp_path / "o"), "--quiet"]
    )
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"Error: {SMALL_TITLE_CASE}: missing feature columns: time_signature, track_genre; "
        "add them or pass --no-genre"
    )
    assert not (tmp_path / "o").exists()


def test_train_options_default_to_the_learners_defaults():
    """`popbatch train` and `models.learners.LearnerParams` must train the same model."""
    from popbatch.cli.commands.train import train as command

    defaults = {p.name: p.default for p in command.params}
    params = LearnerParams()
    assert (defaults["rf_trees"], defaults["rf_depth"]) == (
        params.rf["n_estimators"], params.rf["max_depth"],
    )  # fmt: skip
    assert (defaults["xgb_rounds"], defaults["xgb_depth"]) == (
        params.xgb["n_estimators"], params.xgb["max_depth"],
    )  # fmt: skip
    # --epochs not given: None, the stack's network trains LearnerParams.epochs and no
    # head's network is capped (LearnerParams.max_epochs)
    assert (defaults["epochs"], defaults["batch_size"]) == (params.max_epochs, params.batch_size)
    assert params.epochs == train_defaults.EPOCHS
    assert tuple(defaults["learners"].split(",")) == params.learners
    assert defaults["meta_input"] == params.meta_input
    assert (defaults["xgb_genre"] == "target") == params.genre_encoding


# ---------------------------------------------------------------------------
# Training reads a catalog as scoring does: --map, --fill, --query, globs


@pytest.fixture(scope="module")
def other_schema(tmp_path_factory):
    """The fixture as another team might export it: the label and genre under other
    names, liveness missing, split over two Parquet files."""
    folder = tmp_path_factory.mktemp("other") / "catalog"
    folder.mkdir()
    frame = pl.read_csv(TRACKS_2000, infer_schema_length=10000)
    frame = frame.rename({"popularity": "Chart Score", "track_genre": "Style"}).drop("liveness")
    half = frame.height // 2
    frame[:half].write_parquet(folder / "part-0.parquet")
    frame[half:].write_parquet(folder / "part-1.parquet")
    return folder


MAP_FILL = ["--map", "popularity=Chart Score", "--map", "track_genre=Style",
            "--fill", "liveness=0.2"]  # fmt: skip


def test_training_data_with_map_and_fill_equals_the_original(other_schema, data):
    maps = {"popularity": "Chart Score", "track_genre": "Style"}
    mapped = load_training_data(other_schema, maps=maps, fills={"liveness": "0.2"})
    expected = data.frame.with_columns(pl.lit(0.2).alias("liveness"))
    assert mapped.frame.equals(expected.select(mapped.frame.columns))
    assert mapped.counts == data.counts


def test_train_cli_takes_the_scorers_read_options(runner, other_schema, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", str(other_schema), "--out", str(out), "--no-export", *TINY]
    unmapped = runner.invoke(cli, args)
    assert unmapped.exit_code == 2
    assert "missing label column 'popularity'" in unmapped.output

    result = runner.invoke(cli, [*args, *MAP_FILL])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    rows = report["data"]["rows"]
    assert rows["rows_used"] == 2000 - rows["duplicates_dropped"] - rows["missing_dropped"]
    assert report["params"]["maps"] == {"popularity": "Chart Score", "track_genre": "Style"}


def test_train_fill_of_a_non_input_is_refused(runner, tmp_path):
    args = ["train", "--data", str(TRACKS_2000), "--out", str(tmp_path / "o"), "--fill", "mood=1"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2
    assert result.output.splitlines()[-1].startswith(
        "Error: --fill mood=1: mood is not a model input;"
    )
