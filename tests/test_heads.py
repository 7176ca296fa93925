"""The popularity (0-100) and genre heads beside the popular label.

One tiny real training run (tests/data/tracks_2000.csv, 2 epochs, 2 folds)
with all three heads feeds every test: training through the CLI, export with
a parity proof per head, scoring through the CLI and the Python API, the
``--heads`` subsets, incremental runs, write-back, a tampered head file, and a
model exported before heads existed (popbatch 0.1.0's default, tests/data/format1_model).
"""

from __future__ import annotations

import json
import shutil

import duckdb
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import popbatch
from popbatch.cli.main import cli
from popbatch.core.bundle import load_model
from popbatch.core.errors import InputError, ModelError
from tests.conftest import FORMAT1_MODEL, TRACKS_2000

TINY = ["--epochs", "2", "--folds", "2", "--rf-trees", "3", "--rf-depth", "3",
        "--xgb-rounds", "5", "--xgb-depth", "2"]  # fmt: skip
LABEL_COLUMNS = [
    "track_id",
    "popularity_prob",
    "popular",
    "model_id",
    "scored_at",
    "features_hash",
    "input_row",
]
HEAD_COLUMNS = ["popularity_pred", "genre_pred", "genre_prob"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("heads") / "run"
    args = ["train", "--data", str(TRACKS_2000), "--out", str(out), *TINY]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out, result


@pytest.fixture(scope="module")
def model(trained):
    return trained[0] / "model"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """200 real rows of the fixture with their catalog columns."""
    path = tmp_path_factory.mktemp("catalog") / "catalog.parquet"
    pl.read_csv(TRACKS_2000).head(200).write_parquet(path)
    return path


def test_train_reports_every_head_and_its_baselines(trained):
    out, result = trained
    report = json.loads((out / "report.json").read_text())
    popularity = report["heads"]["popularity"]["metrics"]["test"]
    # the default design: the network alone (its "stack" is the network itself)
    assert set(popularity) == {"stack", "ann", "linear", "mean"}
    for metrics in popularity.values():
        assert {"r2", "mae", "mse", "rmse"} <= set(metrics)
        assert metrics["rmse"] == pytest.approx(np.sqrt(metrics["mse"]))
    genre = report["heads"]["genre"]["metrics"]["test"]
    assert set(genre) == {"combined", "softmax", "most_frequent"}
    for metrics in genre.values():
        for name in ("accuracy", "top3_accuracy", "macro_precision", "macro_recall", "macro_f1"):
            assert 0.0 <= metrics[name] <= 1.0
        assert metrics["top3_accuracy"] >= metrics["accuracy"]
    assert genre["combined"]["per_genre_f1"]
    shap = report["shap"]["popularity"]  # the popularity head's reasons, in points
    assert shap["unit"] == "popularity points" and shap["max_additivity_error"] < 1e-6
    assert set(shap["mean_abs"]) == set(report["shap"]["popular"]["mean_abs"])
    for plot in ("popularity_shap_bar", "popularity_shap_beeswarm", "popularity_shap_dependence"):
        assert (out / "plots" / f"{plot}.png").is_file(), plot
    for plot in PLOTS:
        assert (out / "plots" / f"{plot}.png").is_file(), plot
    page = (out / "report.html").read_text()
    assert "Popularity head" in page and "Genre head" in page and "F1 per genre" in page
    assert "Why: SHAP values of the popularity head" in page
    assert (
        "popularity head: test R²" in result.output and "genre head: test accuracy" in result.output
    )


PLOTS = ("popularity_pred_vs_actual", "popularity_residuals_by_genre", "genre_confusion_matrix")


def test_every_head_shares_the_one_grouped_split(trained):
    """The heads are fitted on the popular head's training split: no test track in it."""
    from popbatch.exporter.heads import load_heads

    out, _ = trained
    test_ids = set(pl.read_parquet(out / "stack" / "test.parquet")["track_id"].to_list())
    train = pl.read_csv(TRACKS_2000).filter(~pl.col("track_id").is_in(list(test_ids)))
    heads = load_heads(out / "stack")
    assert set(heads) == {"popularity", "genre"}
    assert set(heads["genre"].classes) <= set(train["track_genre"].str.to_lowercase().to_list())


def test_default_popularity_head_is_the_network_alone(trained):
    """The default popularity head is the network alone: no trees, so no genre encoding
    for them, and no meta learner (the network's output is the prediction)."""
    from popbatch.exporter.heads import load_heads

    head = load_heads(trained[0] / "stack")["popularity"]
    assert head.learners == ("ann",)
    assert head.rf is None and head.xgb is None and head.genre_encoding is None
    assert (head.meta_coef, head.meta_intercept) == ([1.0], 0.0)


def test_popularity_encoding_never_sees_a_rows_own_popularity():
    """Fitting rows get an out-of-fold encoding: changing one row's popularity moves
    the encoding applied to other rows, never that row's own feature."""
    from popbatch.models.popularity import encoded_inputs

    rng = np.random.default_rng(0)
    genre = rng.integers(0, 3, 60)
    c = np.hstack([rng.random((60, 14)), np.eye(3)[genre]]).astype(np.float32)
    y = rng.uniform(0, 100, 60)
    groups = np.arange(60).astype(str)
    fitted, (other,), _ = encoded_inputs(c, y, groups, [c[:1]], seed=1)
    changed = y.copy()
    changed[0] += 50
    fitted2, (other2,), _ = encoded_inputs(c, changed, groups, [c[:1]], seed=1)
    assert fitted2[0, -1] == fitted[0, -1]
    assert other2[0, -1] > other[0, -1]
    np.testing.assert_array_equal(fitted[:, :14], c[:, :14])


def test_export_proves_parity_per_head(trained, model):
    from model_factory import validate_manifest

    _, result = trained
    assert "popularity parity on" in result.output and "genre parity on" in result.output
    manifest = json.loads((model / "manifest.json").read_text())
    validate_manifest(model)
    heads = manifest["heads"]
    assert set(heads) == {"popular", "popularity", "genre"}
    assert heads["popularity"]["parity"]["max_abs_diff"] <= 1e-3
    assert heads["genre"]["parity"]["max_abs_diff"] <= 1e-5
    assert heads["genre"]["parity"]["labels_identical"] is True
    assert heads["popularity"]["columns"] == {"popularity_pred": "DOUBLE"}
    assert heads["genre"]["columns"] == {"genre_pred": "VARCHAR", "genre_prob": "DOUBLE"}
    assert "r2" in heads["popularity"]["metrics"]["test"]["stack"]
    for name in ("popularity.onnx", "genre.onnx"):
        assert (model / name).is_file()
    assert set(manifest["throughput"]["by_heads"]) >= {"popular", "popular,popularity,genre"}


def test_head_parity_failure_writes_nothing(trained, tmp_path, monkeypatch):
    from popbatch.exporter.build import export_run
    from popbatch.models.popularity import PopularityHead

    original = PopularityHead.predict
    monkeypatch.setattr(PopularityHead, "predict", lambda self, x: original(self, x) + 0.01)
    with pytest.raises(ModelError, match="parity failed, nothing written: popularity parity"):
        export_run(trained[0], tmp_path / "model", measure_throughput=False)
    assert not (tmp_path / "model").exists() or not any((tmp_path / "model").iterdir())


def test_score_cli_writes_every_head_of_the_model(runner, model, catalog, tmp_path):
    out = tmp_path / "scored.parquet"
    result = runner.invoke(
        cli, ["score", str(catalog), "-o", str(out), "--model", str(model), "-q"]
    )
    assert result.exit_code == 0, result.output
    table = pl.read_parquet(out)
    assert table.columns == [*LABEL_COLUMNS, *HEAD_COLUMNS]
    assert table.schema["popularity_pred"] == pl.Float64
    assert table.schema["genre_pred"] == pl.String
    assert table.schema["genre_prob"] == pl.Float64
    assert table.height == 200 and table.null_count().sum_horizontal().item() == 0
    assert table["popularity_pred"].is_between(0, 100).all()
    assert table["genre_prob"].is_between(0, 1, closed="right").all()
    classes = json.loads((model / "manifest.json").read_text())["heads"]["genre"]["classes"]
    assert set(table["genre_pred"].to_list()) <= set(classes)


def test_score_matches_the_native_heads(trained, model, catalog, tmp_path):
    """What the stream writes is what the native heads predict for the same rows."""
    from popbatch.exporter.heads import load_heads
    from popbatch.exporter.priors import native_matrix
    from popbatch.models.data import load_training_data
    from popbatch.models.priors import load as load_priors

    out = tmp_path / "scored.parquet"
    popbatch.score(str(catalog), out, model=model, record=False)
    scored = pl.read_parquet(out)
    bundle = load_model(model)
    vocabulary = bundle.manifest["genre"]["vocabulary"]
    assert load_training_data(catalog).frame.height == scored.height  # no duplicates or gaps
    # the training code's matrix: audio, genre and the plain-Python catalog priors of
    # the rows' artists and albums (which the training data's model columns leave out)
    frame = pl.read_parquet(catalog).rename({"track_genre": "genre"})
    x = native_matrix(frame, load_priors(trained[0] / "stack"), vocabulary)
    heads = load_heads(trained[0] / "stack")
    np.testing.assert_allclose(
        scored["popularity_pred"].to_numpy(), heads["popularity"].predict(x), atol=1e-3
    )
    index, prob = heads["genre"].predict(x)
    assert scored["genre_pred"].to_list() == [heads["genre"].classes[i] for i in index]
    np.testing.assert_allclose(scored["genre_prob"].to_numpy(), prob, atol=1e-5)


def test_heads_popular_writes_only_the_label_columns(runner, model, catalog, tmp_path):
    out = tmp_path / "scored.parquet"
    args = ["score", str(catalog), "-o", str(out), "--model", str(model), "--heads", "popular"]
    result = runner.invoke(cli, [*args, "-q"])
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(out).columns == LABEL_COLUMNS


def test_python_api_scores_a_subset_of_heads(model, catalog, tmp_path):
    out = tmp_path / "scored.parquet"
    summary = popbatch.score(str(catalog), out, model=model, heads="genre", record=False)
    assert summary.rows_scored == 200 and summary.heads == ["popular", "genre"]
    assert pl.read_parquet(out).columns == [*LABEL_COLUMNS, "genre_pred", "genre_prob"]
    out2 = tmp_path / "scored2.parquet"
    popbatch.score(str(catalog), out2, model=model, heads=["popularity"], record=False)
    assert pl.read_parquet(out2).columns == [*LABEL_COLUMNS, "popularity_pred"]


def test_unknown_or_missing_heads_are_usage_errors(runner, model, catalog, tmp_path):
    out = tmp_path / "scored.parquet"
    result = runner.invoke(
        cli, ["score", str(catalog), "-o", str(out), "--model", str(model), "--heads", "mood"]
    )
    assert result.exit_code == 2 and "unknown head mood" in result.output
    with pytest.raises(InputError, match="this model has no genre head"):
        popbatch.score(str(catalog), out, model=FORMAT1_MODEL, heads="popular,genre", record=False)
    assert not out.exists()


def test_a_model_without_heads_still_scores_the_label(runner, catalog, tmp_path):
    """popbatch 0.1.0's default model was exported before heads: label columns only."""
    assert "heads" not in load_model(FORMAT1_MODEL).manifest
    out = tmp_path / "scored.parquet"
    args = ["score", str(catalog), "-o", str(out), "-q", "--model", str(FORMAT1_MODEL)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(out).columns == LABEL_COLUMNS


def score_with_a_flipped_byte(runner, model, catalog, tmp_path, name):
    """``popbatch score`` with a copy of ``model`` whose file ``name`` has its last byte
    flipped; returns the result and the copy."""
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    data = bytearray((copy / name).read_bytes())
    data[-1] ^= 0xFF
    (copy / name).write_bytes(bytes(data))
    result = runner.invoke(
        cli, ["score", str(catalog), "-o", str(tmp_path / "s.parquet"), "--model", str(copy)]
    )
    return result, copy


def test_a_tampered_head_is_refused(runner, model, catalog, tmp_path):
    result, _ = score_with_a_flipped_byte(runner, model, catalog, tmp_path, "genre.onnx")
    assert result.exit_code == 1
    assert "genre.onnx does not match its manifest" in result.output
    assert not (tmp_path / "s.parquet").exists()


def test_incremental_needs_every_requested_head(model, catalog, tmp_path):
    db = tmp_path / "scores.duckdb"
    run = {"model": model, "record": False, "into": "scores"}
    popbatch.score(str(catalog), db, heads="popular", **run)
    # The stored rows lack the heads: nothing is up to date for an all-heads run.
    summary = popbatch.score(str(catalog), db, incremental=True, **run)
    assert summary.rows_skipped == 0 and summary.rows_scored == 200
    again = popbatch.score(str(catalog), db, incremental=True, **run)
    assert again.rows_skipped == 200
    with duckdb.connect(str(db), read_only=True) as con:
        nulls = con.execute("SELECT count(*) FROM scores WHERE genre_pred IS NULL").fetchone()[0]
    assert nulls == 0


def test_write_back_adds_the_head_columns(model, catalog, tmp_path):
    db = tmp_path / "catalog.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(f"CREATE TABLE tracks AS SELECT * FROM read_parquet('{catalog}')")
    popbatch.score(str(db), table="tracks", write_back=True, model=model, record=False)
    with duckdb.connect(str(db)) as con:
        row = con.execute(
            "SELECT count(*), count(popularity_pred), count(genre_pred), min(genre_prob) "
            "FROM tracks"
        ).fetchone()
    assert row[0] == row[1] == row[2] == 200 and row[3] > 0
    # Scoring the label only clears the heads' answers: they would be another run's.
    popbatch.score(
        str(db), table="tracks", write_back=True, model=model, heads="popular", record=False
    )
    with duckdb.connect(str(db)) as con:
        counts = con.execute("SELECT count(popular), count(genre_pred) FROM tracks").fetchone()
    assert counts == (200, 0)


def test_train_refuses_an_unknown_head(runner, tmp_path):
    args = ["train", "--data", str(TRACKS_2000), "--out", str(tmp_path / "r"), "--heads", "mood"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2 and "unknown head mood" in result.output


def test_model_info_lists_the_heads(runner, model):
    result = runner.invoke(cli, ["model", "info", str(model)])
    assert result.exit_code == 0, result.output
    assert "heads       popular, popularity, genre" in result.output
    assert "head        popularity: popularity.onnx (" in result.output
    assert "-> genre_pred, genre_prob; test accuracy" in result.output


def test_train_config_takes_heads_as_text_or_list():
    from popbatch.models.pipeline import TrainConfig

    assert TrainConfig(data="a.csv", out="r", heads="genre").heads == ("popular", "genre")
    assert TrainConfig(data="a.csv", out="r", heads=["popularity"]).heads == (
        "popular",
        "popularity",
    )
    # Without the genre column the genre head has no target: the default skips it.
    assert TrainConfig(data="a.csv", out="r", use_genre=False).heads == ("popular", "popularity")


def test_train_refuses_the_genre_head_without_genre(runner, tmp_path):
    args = ["train", "--data", str(TRACKS_2000), "--out", str(tmp_path / "r"), "--no-genre"]
    result = runner.invoke(cli, [*args, "--heads", "popular,genre"])
    assert result.exit_code == 2 and "drop --no-genre" in result.output


def test_an_edited_head_entry_is_refused_like_any_other_edit(model, tmp_path):
    """model_id covers the heads section: swapping two genre names would relabel rows."""
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    classes = manifest["heads"]["genre"]["classes"]
    classes[0], classes[1] = classes[1], classes[0]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"heads\.genre"):
        load_model(copy)


def test_export_writes_every_head_in_one_graph_proven_identical(trained, model):
    """all_heads.onnx: the three heads side by side, its outputs proven equal to the head
    files' at export, covered by model_id like the head files."""
    import hashlib

    _, result = trained
    assert "all_heads.onnx on " in result.output and "identical to the head files'" in result.output
    entry = json.loads((model / "manifest.json").read_text())["all_heads"]
    assert entry["heads"] == ["popular", "popularity", "genre"]
    data = (model / entry["file"]).read_bytes()
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert entry["parity"]["identical"] is True and entry["parity"]["rows"] > 0
    assert load_model(model).all_heads_bytes == data


def test_heads_importing_different_opset_versions_are_not_joined(model):
    """A model imports one version of each opset domain, and an operator of one version
    can be gone from another (ai.onnx.ml's TreeEnsembleRegressor at 5): such heads get
    no joint graph (the scorer then runs a session per head, as for older models)."""
    import onnx
    from popbatch.exporter.all_heads import conflicting_opsets

    graphs = {"popular": (model / "model.onnx").read_bytes(),
              "genre": (model / "genre.onnx").read_bytes()}  # fmt: skip
    assert conflicting_opsets(graphs) == []
    newer = onnx.load_from_string(graphs["genre"])
    for opset in newer.opset_import:
        if opset.domain == "":
            opset.version += 1
    assert conflicting_opsets({**graphs, "genre": newer.SerializeToString()}) == ["ai.onnx"]


def test_the_joint_graph_scores_every_head_bit_for_bit_as_the_head_files(model, catalog):
    """The scorer runs all_heads.onnx when every head is scored, and its outputs are the
    per-head sessions' to the bit (the same graphs, side by side)."""
    import dataclasses

    from popbatch.batch.preprocess import Preprocessor
    from popbatch.batch.runner import OnnxScorer

    bundle = load_model(model)
    batch = pl.read_parquet(catalog).to_arrow().to_batches()[0]
    prepared = Preprocessor(bundle.manifest).bind(batch.schema, "catalog").transform(batch)
    x = np.tile(prepared.features, (12, 1))  # 2,400 rows: three slices on two threads
    with OnnxScorer(bundle, threads=2) as joint:
        assert joint.all_heads is not None
        together = joint.predict_heads(x)
    with OnnxScorer(dataclasses.replace(bundle, all_heads_bytes=None), threads=2) as apart:
        assert apart.all_heads is None
        separate = apart.predict_heads(x)
    for a, b in zip(together[:2], separate[:2], strict=True):
        assert np.array_equal(a, b)
    assert together[2].keys() == separate[2].keys() == {
        "popularity_pred", "genre_index", "genre_prob"}  # fmt: skip
    for name, value in together[2].items():
        assert np.array_equal(value, separate[2][name]), name
    with OnnxScorer(bundle, heads=("popular", "genre")) as subset:
        assert subset.all_heads is None  # a subset runs only its heads' files


def test_popbatch_score_runs_one_graph_for_every_head(model, catalog, tmp_path, monkeypatch):
    """The default command makes no per-head call (the speed lever is engaged)."""
    from popbatch.batch.heads import HeadSessions

    def per_head(*args, **kwargs):
        raise AssertionError("a per-head session ran")

    monkeypatch.setattr(HeadSessions, "run", per_head)
    out = tmp_path / "scored.parquet"
    popbatch.score(str(catalog), out, model=model, record=False)
    assert pl.read_parquet(out).columns == [*LABEL_COLUMNS, *HEAD_COLUMNS]


def test_a_tampered_or_swapped_joint_graph_is_refused(runner, model, catalog, tmp_path):
    result, copy = score_with_a_flipped_byte(runner, model, catalog, tmp_path, "all_heads.onnx")
    assert result.exit_code == 1
    assert "all_heads.onnx does not match its manifest" in result.output
    assert not (tmp_path / "s.parquet").exists()
    shutil.copy(model / "all_heads.onnx", copy / "all_heads.onnx")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["all_heads"]["file"] = "genre.onnx"  # a valid graph, not the joint one
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"all_heads\.file"):
        load_model(copy)


def test_tune_searches_the_regressors_with_grouped_folds_and_records_the_best():
    from types import SimpleNamespace

    from popbatch.models.data import load_training_data
    from popbatch.models.pipeline import labels, make_splits
    from popbatch.models.popularity import N_NUMERIC, RegressorParams, tune

    data = load_training_data(TRACKS_2000)
    splits, _ = make_splits(data, labels(data.frame, 71), 7)
    width = splits.x["train"].shape[1]
    stack = SimpleNamespace(clip_lower=[None] * width, clip_upper=[None] * width,
                            n_numeric=N_NUMERIC)  # fmt: skip
    targets = {k: f["popularity"].to_numpy().astype(float) for k, f in splits.frames.items()}
    params = RegressorParams()
    params.xgb["n_estimators"] = 20  # quick: the grid does not set XGBoost's rounds
    config = SimpleNamespace(tune_budget=0.001, seed=7)  # one candidate per learner
    result = tune(
        stack, splits.x["train"], targets["train"], splits.groups["train"], splits, targets,
        params, config, lambda _: None,
    )  # fmt: skip
    for learner in ("rf", "xgb"):
        assert len(result[learner]["tried"]) == 1
        assert result[learner]["best_cv_mae"] > 0
        for name, value in result[learner]["best_params"].items():
            assert getattr(params, learner)[name] == value


def test_score_batches_adds_the_head_columns_row_for_row(model, catalog):
    """The per-batch block (Spark's map) scores the same heads as popbatch score."""
    import pyarrow.parquet as pq

    batches = pq.read_table(catalog).to_batches(max_chunksize=64)
    out = list(popbatch.score_batches(batches, model))
    assert out[0].schema.names == [*LABEL_COLUMNS, *HEAD_COLUMNS, "rejected"]
    assert sum(b.num_rows for b in out) == 200
    (only,) = popbatch.score_batches(batches[:1], model, heads="popular,genre")
    assert only.schema.names == [*LABEL_COLUMNS, "genre_pred", "genre_prob", "rejected"]


def test_the_run_log_records_which_heads_each_run_wrote(runner, model, catalog, tmp_path):
    db = tmp_path / "scores.duckdb"
    with duckdb.connect(str(db)) as con:  # a run log from before the heads column
        con.execute(
            "CREATE TABLE popbatch_runs (run_id VARCHAR PRIMARY KEY, started_at TIMESTAMP "
            "NOT NULL, finished_at TIMESTAMP, input VARCHAR, output VARCHAR, rows_read BIGINT, "
            "rows_scored BIGINT, rows_rejected BIGINT, rows_skipped BIGINT, model_id VARCHAR, "
            "status VARCHAR NOT NULL, error VARCHAR)"
        )
        con.execute(
            "INSERT INTO popbatch_runs (run_id, started_at, status) "
            "VALUES ('old', now(), 'success')"
        )
    for heads in (["--heads", "popular"], []):
        args = ["score", str(catalog), "-o", str(db), "--model", str(model), "--into", "s"]
        result = runner.invoke(cli, [*args, "--mode", "replace", *heads])
        assert result.exit_code == 0, result.output
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT heads FROM popbatch_runs ORDER BY started_at").fetchall()
    assert rows == [(None,), ("popular",), ("popular,popularity,genre",)]


def test_head_graphs_never_compute_on_the_whole_genre_block(model):
    """Only Slices, Gathers of chosen columns (and the clipping) read the whole input:
    nothing multiplies the genre's one-hot block as a matrix; it is read as an index
    (export/genre_block.py). The embedded default model too, so it was exported this way."""
    import onnx
    from onnx import numpy_helper

    from popbatch.core.bundle import default_model_dir

    for directory in (model, default_model_dir()):
        features = json.loads((directory / "manifest.json").read_text())["features"]
        onehot = {i for i, f in enumerate(features) if f["kind"] == "onehot"}
        for name in ("model.onnx", "popularity.onnx", "genre.onnx"):
            graph = onnx.load(directory / name).graph
            constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
            whole = {"features", "clipped", "clipped_low"}
            readers = [n for n in graph.node if whole & set(n.input)]
            assert {n.op_type for n in readers} <= {"Slice", "Gather", "Max", "Min"}, (
                directory, name, {n.op_type for n in readers})  # fmt: skip
            for node in readers:
                if node.op_type == "Gather":  # columns chosen by constant indices, none one-hot
                    columns = set(constants[node.input[1]].ravel().tolist())
                    assert not columns & onehot, (directory, name, sorted(columns & onehot))
            ops = {n.op_type for n in graph.node}
            assert "TreeEnsembleClassifier" not in ops, name  # the genre forest: a regressor


def test_trained_forests_predict_in_tree_order():
    """A parallel scikit-learn predict adds the trees in the order its threads finish,
    so out-of-fold predictions, the meta learner fitted on them and the exported bytes
    moved by an ulp between identical trainings; a head's forest (``learners`` with
    ``rf``; the default heads have none) predicts on one thread."""
    from popbatch.models.popularity import RegressorParams, fit_rf

    rng = np.random.default_rng(0)
    c, y = rng.normal(size=(200, 5)), rng.normal(size=200)
    params = RegressorParams()
    params.rf.update(n_estimators=4, max_depth=3)
    forest = fit_rf(c, y, params, seed=0)
    assert forest.n_jobs == 1
