"""popbatch evaluate and model compare: figures as scikit-learn computes them, in-sample rows,
floors and their exit codes, the evaluation log, another schema, and compare's verdicts.

The labelled catalog is tests/data/tracks_2000.csv (real rows, tests/data/ATTRIBUTION.md).
The "weak" model is trained on its first 500 rows through the Python API with tiny
learners and the popular head only, so its training keys are a known part of the file.
"""

from __future__ import annotations

import csv
import json
import shutil

import duckdb
import numpy as np
import polars as pl
import pytest
from conftest import SMALL_TITLE_CASE, TRACKS_2000
from popbatch.batch import evaluate_heads as eh
from popbatch.batch.evaluate import evaluate

from popbatch.cli.main import cli
from popbatch.core import fingerprint
from popbatch.core.bundle import default_model_dir, load_model
from popbatch.core.errors import (
    EXIT_B_WORSE,
    EXIT_BELOW_FLOOR,
    EXIT_NO_DIFFERENCE,
    EXIT_USAGE,
    ModelError,
)

sk = pytest.importorskip("sklearn.metrics", reason="the comparison needs scikit-learn")
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def weak_model(tmp_path_factory):
    """A deliberately weak model: the first 500 rows, 2 epochs, 3 shallow trees, popular only.

    Returns (model directory, keys of the rows whose labels it holds: all of its 500
    rows, since its catalog priors are refitted on every labelled row)."""
    from popbatch.models.learners import LearnerParams

    import popbatch

    root = tmp_path_factory.mktemp("weak")
    first = root / "first500.csv"
    with open(TRACKS_2000, newline="") as src, open(first, "w", newline="") as out:
        out.writelines(line for _, line in zip(range(501), src, strict=False))
    learners = LearnerParams(
        epochs=2,
        patience=1,
        rf={"n_estimators": 3, "max_depth": 3, "min_samples_leaf": 5, "max_features": "sqrt"},
        xgb={"n_estimators": 5, "max_depth": 2, "learning_rate": 0.3, "subsample": 0.8,
             "colsample_bytree": 0.8, "min_child_weight": 5.0, "reg_lambda": 1.0},
    )  # fmt: skip
    popbatch.train(first, root / "run", learners=learners, heads="popular", folds=2)
    popbatch.export(root / "run", root / "model", measure_throughput=False)
    return root / "model", set(pl.read_csv(first)["track_id"])


@pytest.fixture(scope="module")
def noise_model(tmp_path_factory):
    """A model that learned nothing: trained like ``weak_model`` on the same 500 rows with
    their popularity shuffled (seeded), so it ranks the other rows at random. Without
    catalog priors: their counts (how many labelled tracks an artist has) need no label,
    so a model of shuffled labels would still rank by them, and they predict popularity."""
    from popbatch.models.priors import PriorRecipe

    import popbatch

    root = tmp_path_factory.mktemp("noise")
    first = pl.read_csv(TRACKS_2000).head(500)
    shuffled = first.with_columns(pl.col("popularity").shuffle(seed=11))
    shuffled.write_csv(root / "shuffled.csv")
    popbatch.train(
        root / "shuffled.csv", root / "run", heads="popular", folds=2, epochs=2,
        priors=PriorRecipe(()),
    )  # fmt: skip
    popbatch.export(root / "run", root / "model", measure_throughput=False)
    return root / "model"


@pytest.fixture(scope="module")
def scored_default(tmp_path_factory):
    """``popbatch score --columns all`` of the fixture with the default model, as a frame."""
    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("scored") / "scored.parquet"
    result = CliRunner().invoke(cli, ["score", str(TRACKS_2000), "-o", str(out), "--columns",
                                      "all", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return pl.read_parquet(out)


def in_training(keys: list[str]) -> np.ndarray:
    """Which keys the default model's training-keys fingerprint holds (evaluate leaves
    them out of the headline; the default's priors hold their labels)."""
    from popbatch.core import fingerprint

    model = load_model()
    fitted = fingerprint.read_fingerprint(model.directory, model.manifest)
    return fingerprint.seen(fingerprint.key_hashes(keys), fitted)


def genre_probabilities_with_onnx(features: np.ndarray) -> np.ndarray:
    """The default genre head's [N, C] probabilities, exposed with the onnx package
    (independently of popbatch's own wire-format edit): the tensor the manifest's
    ``class_tensor`` names, a softmax of it when it holds logits."""
    import onnx
    import onnxruntime as ort

    tensor = load_model().manifest["heads"]["genre"]["class_tensor"]
    model = onnx.load(default_model_dir() / "genre.onnx")
    model.graph.output.append(
        onnx.helper.make_tensor_value_info(tensor["name"], onnx.TensorProto.FLOAT, None)
    )
    session = ort.InferenceSession(model.SerializeToString())
    values = session.run([tensor["name"]], {"features": features})[0].astype(np.float64)
    if tensor["kind"] == "logits":
        values = np.exp(values - values.max(axis=1, keepdims=True))
        values /= values.sum(axis=1, keepdims=True)
    return values


def test_evaluate_reproduces_sklearn_on_popbatch_score_output(scored_default):
    """The embedded default was trained on the public dataset this fixture comes from, so
    every row is in-sample: the headline is empty, says why, and the figures of those rows
    (in_sample_metrics, the same code as the headline's) agree with scikit-learn's."""
    result = evaluate(TRACKS_2000, record=False, resamples=50).to_dict()
    assert in_training(scored_default["track_id"].to_list()).all()
    frame = scored_default
    y = frame["popularity"].to_numpy()
    popular = y > 71  # the default model's own rule (manifest label: popularity > 71)
    probability = frame["popularity_prob"].to_numpy()
    expected = {
        "popular": {
            "roc_auc": sk.roc_auc_score(popular, probability),
            "pr_auc": sk.average_precision_score(popular, probability),
            "precision": sk.precision_score(popular, frame["popular"].to_numpy()),
            "recall": sk.recall_score(popular, frame["popular"].to_numpy()),
            "f1": sk.f1_score(popular, frame["popular"].to_numpy()),
            "brier": sk.brier_score_loss(popular, probability),
        },
        "popularity": {
            "r2": sk.r2_score(y, frame["popularity_pred"].to_numpy()),
            "mae": sk.mean_absolute_error(y, frame["popularity_pred"].to_numpy()),
            "rmse": np.sqrt(sk.mean_squared_error(y, frame["popularity_pred"].to_numpy())),
        },
        "genre": {
            "accuracy": sk.accuracy_score(frame["track_genre"], frame["genre_pred"]),
            "macro_f1": sk.f1_score(frame["track_genre"], frame["genre_pred"], average="macro"),
        },
    }
    # top-3: the head's own probabilities for the same rows, through the same preprocessing
    from popbatch.batch.preprocess import Preprocessor

    bundle = load_model()
    table = pl.read_csv(TRACKS_2000, infer_schema=False).to_arrow().combine_chunks()
    prepared = Preprocessor(bundle.manifest).bind(table.schema).transform(table.to_batches()[0])
    classes = bundle.manifest["heads"]["genre"]["classes"]
    truth = [classes.index(g) for g in frame["track_genre"]]
    probabilities = genre_probabilities_with_onnx(prepared.features)
    expected["genre"]["top3_accuracy"] = sk.top_k_accuracy_score(
        truth, probabilities, k=3, labels=range(len(classes))
    )
    assert result["rows"] == {"read": 2000, "scored": 2000, "rejected": 0, "in_sample": 2000,
                              "evaluated": 0}  # fmt: skip
    assert result["in_sample"]["known"] is True
    for head, figures in expected.items():
        assert "in the model's training data" in result["skipped"][head]
        shown = result["in_sample_metrics"][head]
        assert shown["rows"] == 2000
        for name, value in figures.items():
            assert shown["metrics"][name] == pytest.approx(value, abs=TOLERANCE), f"{head}.{name}"
    lifts = result["in_sample_metrics"]["popular"]["metrics"]
    top = np.argsort(-probability, kind="mergesort")[:20]  # the top 1% of 2,000 rows
    assert lifts["lift_top_1pct"] == pytest.approx(popular[top].mean() / popular.mean())


def test_all_in_sample_rows_show_their_figures_as_in_sample(runner):
    """Every fixture row is in the default's training data: the summary says so per head
    and shows the in-sample figures (labelled inflated), the JSON's in_sample_metrics."""
    args = ["evaluate", str(TRACKS_2000), "--no-log", "--resamples", "0"]
    text = runner.invoke(cli, [*args, "-q"])
    assert text.exit_code == 0, text.output
    shown = json.loads(runner.invoke(cli, [*args, "--json"]).stdout)
    auc = shown["in_sample_metrics"]["popular"]["metrics"]["roc_auc"]
    lines = text.stdout.splitlines()
    at = lines.index("  popular    skipped: every scored row is in the model's training data")
    assert (
        lines[at + 1]
        .strip()
        .startswith(f"in-sample only (2,000 rows, inflated): roc_auc {auc:.4f}")
    )


def test_weighted_bootstrap_figures_equal_the_figures_of_repeated_rows():
    rng = np.random.default_rng(3)
    n = 300
    y = rng.random(n) < 0.2
    p = np.round(rng.random(n) * 0.5 + y * 0.3, 2)  # ties on purpose
    genres = rng.integers(0, 6, n)
    heads = [
        eh.PopularRows(y, p, p > 0.4),
        eh.PopularityRows(rng.random(n) * 100, rng.random(n) * 100),
        eh.GenreRows(
            genres,
            np.where(rng.random(n) < 0.5, genres, rng.integers(0, 7, n)),
            rng.random(n) < 0.6,
        ),
    ]
    weights = np.bincount(rng.integers(0, n, n), minlength=n)
    repeated = np.repeat(np.arange(n), weights)
    for rows in heads:
        weighted, exact = rows.figures(weights), rows.take(repeated).figures()
        for name, value in weighted.items():
            assert value == pytest.approx(exact[name], abs=1e-12), f"{rows.head}.{name}"


def test_in_sample_rows_are_counted_and_left_out_of_the_headline(weak_model):
    model, fitted = weak_model
    result = evaluate(TRACKS_2000, model, record=False, resamples=20).to_dict()
    frame = pl.read_csv(TRACKS_2000)
    inside = frame["track_id"].is_in(list(fitted)).to_numpy()
    assert result["in_sample"]["known"] is True
    assert result["rows"]["in_sample"] == int(inside.sum()) > 0
    assert result["rows"]["evaluated"] == int((~inside).sum())
    # the headline is scikit-learn's figure on the other rows only
    scored = evaluate(TRACKS_2000, model, record=False, resamples=0)
    assert scored.to_dict()["heads"]["popular"]["metrics"]["roc_auc"] == pytest.approx(
        result["heads"]["popular"]["metrics"]["roc_auc"]
    )
    bundle = load_model(model)
    from popbatch.batch.batches import score_batches

    table = pl.read_csv(TRACKS_2000, infer_schema=False).to_arrow().combine_chunks()
    out = pl.concat([pl.from_arrow(b) for b in score_batches(table.to_batches(), bundle)])
    outside = ~inside
    auc = sk.roc_auc_score(frame["popularity"].to_numpy()[outside] > 71,
                           out["popularity_prob"].to_numpy()[outside])  # fmt: skip
    assert result["heads"]["popular"]["metrics"]["roc_auc"] == pytest.approx(auc, abs=TOLERANCE)
    assert result["in_sample_metrics"]["popular"]["rows"] == int(inside.sum())


def test_an_edited_fingerprint_is_refused(weak_model, tmp_path):
    model, _ = weak_model
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    keys = copy / fingerprint.KEYS_FILE
    keys.write_bytes(keys.read_bytes()[8:])  # one training key fewer
    with pytest.raises(ModelError, match=r"training_keys\.u64 does not match its manifest"):
        evaluate(TRACKS_2000, copy, record=False, resamples=0)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["training_keys"]["sha256"] = fingerprint.manifest_entry(keys.read_bytes())["sha256"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="training_keys"):  # the model id covers the entry
        load_model(copy)


# Rows the embedded default was not trained on (its fingerprint covers every row of the public
# dataset it learned from): the Title Case catalog of another public dataset, mostly new to it.
OTHER = ["--fill", "time_signature=4"]


def test_cli_evaluate_json_equals_the_python_api(runner, tmp_path):
    result = runner.invoke(cli, ["evaluate", str(SMALL_TITLE_CASE), *OTHER, "--json",
                                 "--resamples", "30", "--log", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["rows"]["evaluated"] > 100
    api = evaluate(SMALL_TITLE_CASE, record=False, resamples=30,
                   fills={"time_signature": "4"}).to_dict()  # fmt: skip
    for volatile in ("evaluated_at", "seconds", "log"):
        shown.pop(volatile, None)
        api.pop(volatile, None)
    assert shown == api
    assert shown["bootstrap"]["resamples"] == 30
    low, high = shown["heads"]["popular"]["intervals"]["roc_auc"]
    assert low < shown["heads"]["popular"]["metrics"]["roc_auc"] < high


def test_fail_under_exit_codes(runner, tmp_path):
    base = ["evaluate", str(SMALL_TITLE_CASE), *OTHER, "--resamples", "0", "--log",
            str(tmp_path)]  # fmt: skip
    passed = runner.invoke(cli, [*base, "--fail-under", "popular.roc_auc=0.5"])
    assert passed.exit_code == 0, passed.output
    failed = runner.invoke(cli, [*base, "--fail-under", "popular.roc_auc=0.99",
                                 "--fail-under", "popularity.mae=50"])  # fmt: skip
    assert failed.exit_code == EXIT_BELOW_FLOOR, failed.output
    assert "popular.roc_auc" in failed.output and "below" in failed.output
    ceiling = runner.invoke(cli, [*base, "--fail-under", "popularity.mae=1"])  # lower is better
    assert ceiling.exit_code == EXIT_BELOW_FLOOR
    unknown = runner.invoke(cli, [*base, "--fail-under", "popular.auc=0.9"])
    assert unknown.exit_code == EXIT_USAGE
    assert unknown.output.count("\n") == 1 and "popular.roc_auc" in unknown.output


def test_every_evaluation_is_logged_and_reported_by_popbatch_sql(runner, tmp_path):
    log = tmp_path / "monitor.duckdb"
    for floor in ("0.5", "0.99"):
        args = ["evaluate", str(SMALL_TITLE_CASE), *OTHER, "--resamples", "0", "--log", str(log)]
        runner.invoke(cli, [*args, "--fail-under", f"popular.roc_auc={floor}"])
    with duckdb.connect(str(log), read_only=True) as con:
        rows = con.sql(
            "SELECT rows_scored, rows_in_sample, below_floor, popular_roc_auc, report "
            "FROM popbatch_evaluations ORDER BY evaluated_at"
        ).fetchall()
    other = pl.read_csv(SMALL_TITLE_CASE)
    held = int(in_training(other["Track ID"].to_list()).sum())
    n = other.height
    assert [r[:3] for r in rows] == [(n, held, None), (n, held, "popular.roc_auc")]
    assert json.loads(rows[0][4])["heads"]["popular"]["metrics"]["roc_auc"] == rows[0][3]
    report = runner.invoke(cli, ["sql", "--db", str(log), "--report", "evaluations",
                                 "--format", "json"])  # fmt: skip
    assert report.exit_code == 0, report.output
    listed = json.loads(report.stdout)
    assert [r["below_floor"] for r in listed] == ["popular.roc_auc", None]  # newest first
    # a file log: evaluations.jsonl, read with --evaluations
    runner.invoke(cli, ["evaluate", str(TRACKS_2000), "--resamples", "0", "-o",
                        str(tmp_path / "out" / "report.json")])  # fmt: skip
    jsonl = tmp_path / "out" / "evaluations.jsonl"
    assert len(jsonl.read_text().splitlines()) == 1
    report = runner.invoke(cli, ["sql", "--evaluations", str(jsonl), "--report", "evaluations",
                                 "--format", "json"])  # fmt: skip
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)[0]["rows_evaluated"] == 0  # all in the default's training


def test_another_schema_through_map(runner, tmp_path):
    # Title Case headers normalise by themselves; the label is renamed and needs --map,
    # time_signature is absent (--fill), and there is no track_genre: genre is skipped.
    catalog = tmp_path / "catalog.csv"
    with open(SMALL_TITLE_CASE, newline="") as src, open(catalog, "w", newline="") as out:
        rows = list(csv.reader(src))
        rows[0] = ["Score (0-100)" if c == "Popularity" else c for c in rows[0]]
        csv.writer(out).writerows(rows)
    result = runner.invoke(cli, ["evaluate", str(catalog), "--map", "popularity=Score (0-100)",
                                 "--fill", "time_signature=4", "--json", "--resamples", "0",
                                 "--log", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert "genre" in shown["skipped"] and "track_genre" in shown["skipped"]["genre"]
    frame = pl.read_csv(SMALL_TITLE_CASE)
    scored = tmp_path / "scored.parquet"
    runner.invoke(cli, ["score", str(SMALL_TITLE_CASE), "--fill", "time_signature=4", "-o",
                        str(scored), "--columns", "all", "-q"])  # fmt: skip
    scores = pl.read_parquet(scored)
    assert len(scores) == shown["rows"]["scored"] == len(frame) - shown["rows"]["rejected"]
    scores = scores.filter(~in_training(scores["track_id"].to_list()))  # the headline's rows
    auc = sk.roc_auc_score(scores["popularity"].to_numpy() > 71, scores["popularity_prob"])
    assert shown["heads"]["popular"]["metrics"]["roc_auc"] == pytest.approx(auc, abs=TOLERANCE)
    mae = sk.mean_absolute_error(scores["popularity"], scores["popularity_pred"])
    assert shown["heads"]["popularity"]["metrics"]["mae"] == pytest.approx(mae, abs=TOLERANCE)


def test_no_label_is_a_one_line_error(runner, tmp_path):
    catalog = tmp_path / "unlabelled.csv"
    pl.read_csv(TRACKS_2000).drop("popularity", "track_genre").write_csv(catalog)
    result = runner.invoke(cli, ["evaluate", str(catalog), "--log", str(tmp_path)])
    assert result.exit_code == EXIT_USAGE
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert "popularity" in result.output and "--map" in result.output


def test_compare_a_model_with_itself_finds_no_difference(runner):
    result = runner.invoke(cli, ["model", "compare", str(default_model_dir()),
                                 str(default_model_dir()), "--data", str(TRACKS_2000),
                                 "--resamples", "100"])  # fmt: skip
    assert result.exit_code == EXIT_NO_DIFFERENCE, result.output
    assert result.output.strip().endswith("verdict: no measurable difference")


def test_compare_with_a_model_that_learned_nothing_says_b_worse(runner, weak_model, noise_model):
    model, fitted = weak_model
    result = runner.invoke(cli, ["model", "compare", str(model), str(noise_model), "--data",
                                 str(TRACKS_2000), "--json", "--resamples", "200"])  # fmt: skip
    assert result.exit_code == EXIT_B_WORSE, result.output
    shown = json.loads(result.stdout)
    assert shown["verdict"] == "B worse" and shown["heads"]["popular"]["verdict"] == "B worse"
    assert shown["heads"]["popular"]["metrics"]["roc_auc"]["interval"][1] < 0
    # the rows of the 500 tracks both were trained on are left out
    inside = int(pl.read_csv(TRACKS_2000)["track_id"].is_in(list(fitted)).sum())
    assert shown["rows"]["in_sample_excluded"] == inside >= len(fitted)
    assert shown["rows"]["compared"] == 2000 - inside


def test_docs_example_is_the_commands_output(runner, monkeypatch):
    """docs/evaluate.md shows the summary of one command; it must be that command's output."""
    from conftest import ROOT

    monkeypatch.chdir(ROOT)  # the command as the page shows it, from the repository root
    page = (ROOT / "docs" / "evaluate.md").read_text(encoding="utf-8")
    command = "evaluate tests/data/spotify_data_small.csv --fill time_signature=4 --no-log -q"
    block = page.split(f"$ popbatch {command}\n")[1]
    shown = block.split("```")[0]
    result = runner.invoke(cli, command.split())
    assert result.exit_code == 0, result.output
    assert result.stdout == shown, "rerun the command and paste its output into docs/evaluate.md"
    cv = load_model().manifest["cv"]["models"]["stack"]["roc_auc"]["mean"]
    assert f"ROC-AUC with catalog priors, folds by track: {cv:.4f})" in page


def test_genre_probabilities_of_a_head_exported_before_class_tensor():
    """Models exported before ``heads.genre.class_tensor`` rank the classes with the
    probabilities their ArgMax reads: ``expose`` finds that tensor from ``genre_index``
    alone, and a named tensor directly; both give the graph's own values."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    from popbatch.batch.genre_probabilities import expose

    graph = helper.make_graph(
        [
            helper.make_node("Softmax", ["features"], ["p"], axis=1),
            helper.make_node("ArgMax", ["p"], ["genre_index"], axis=1, keepdims=0),
        ],
        "old_genre_head",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("genre_index", TensorProto.INT64, ["N"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    x = np.random.default_rng(5).normal(size=(6, 4)).astype(np.float32)
    softmax = np.exp(x - x.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    for tensor in (None, "p"):
        data, name = expose(model.SerializeToString(), "genre_index", tensor)
        assert name == "p"
        (values,) = ort.InferenceSession(data).run([name], {"features": x})
        np.testing.assert_allclose(values, softmax, rtol=1e-6)
    with pytest.raises(ValueError, match="no node produces 'nowhere'"):
        expose(model.SerializeToString(), "genre_index", "nowhere")
