"""popbatch explain: Shapley values that add up, agree with closed forms, and cost bounded time.

The closed forms are computed here from the ONNX initializers (independently of
popbatch): for a model linear in its inputs, the interventional Shapley value of
feature i at x against a background B is w_i * (x_i - mean_B x_i).
"""

from __future__ import annotations

import itertools
import math
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import onnx
import polars as pl
import pytest
from conftest import FORMAT1_MODEL, TRACKS_2000
from onnx import TensorProto, helper, numpy_helper
from popbatch.batch.explain.selection import explain
from popbatch.batch.explain.shapley import permutation_shap
from popbatch.batch.explain.space import Head, LinkModel, RawSpace, model_head
from popbatch.batch.preprocess import Preprocessor
from popbatch.batch.sources import open_source

from popbatch.cli.main import cli
from popbatch.core.bundle import load_model
from popbatch.core.errors import ModelError

ROOT = Path(__file__).resolve().parents[1]


def fixture_rows(bundle, rows: int = 2000):
    """Raw rows (numeric inputs + genre position) and keys of the fixture's valid rows."""
    space = RawSpace(bundle.manifest)
    with open_source([str(TRACKS_2000)]) as source:
        pre = Preprocessor(bundle.manifest).bind(source.schema)
        prepared = pre.transform(next(source.batches(pre.read_columns, rows)))
    keys = prepared.passthrough.column("track_id").to_pylist()
    return space, space.from_prepared(prepared), keys


def additivity_error(table: pl.DataFrame) -> float:
    sums = table.group_by("track_id").agg(
        (pl.col("base_value").first() + pl.col("contribution").sum() - pl.col("prediction").first())
        .abs()
        .alias("error")
    )
    return float(sums["error"].max())


# --------------------------------------------------------------- the estimator
def exact_shapley(f, x: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Shapley values by the coalition formula (every subset), for a few features."""
    m = len(x)

    def value(subset: tuple[int, ...]) -> float:
        hybrid = background.copy()
        hybrid[:, list(subset)] = x[list(subset)]
        return float(f(hybrid).mean())

    phi = np.zeros(m)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for subset in itertools.combinations(others, size):
                phi[i] += weight * (value((*subset, i)) - value(subset))
    return phi


def test_every_order_gives_the_exact_shapley_values_of_a_model_with_interactions():
    rng = np.random.default_rng(1)
    background = rng.normal(size=(30, 4))
    x = rng.normal(size=(3, 4))

    def f(z):
        return z[:, 0] * z[:, 1] + np.tanh(z[:, 2]) * z[:, 3] ** 2 + 0.5 * z[:, 0]

    shap = permutation_shap(f, x, background, permutations=24)  # 4! orders: exact
    for row, values in zip(x, shap.values, strict=True):
        assert values == pytest.approx(exact_shapley(f, row, background), abs=1e-10)
    assert shap.base_value + shap.values.sum(1) == pytest.approx(f(x), abs=1e-10)


def test_sampled_orders_still_add_up_exactly():
    rng = np.random.default_rng(2)
    background = rng.normal(size=(20, 9))
    x = rng.normal(size=(5, 9))

    def f(z):
        return np.sin(z).sum(1) * z[:, 0]

    shap = permutation_shap(f, x, background, permutations=6)
    assert shap.base_value == pytest.approx(f(background).mean())
    assert shap.base_value + shap.values.sum(1) == pytest.approx(f(x), abs=1e-10)


# --------------------------------------------------------------- closed forms
def linear_regression_onnx(weights: np.ndarray, bias: float) -> bytes:
    """A tiny regression head: features [N, F] -> prediction [N] = features @ w + b."""
    width = len(weights)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "w"], ["y2d"]),
            helper.make_node("Add", ["y2d", "b"], ["yb"]),
            helper.make_node("Reshape", ["yb", "flat"], ["prediction"]),
        ],
        "popbatch_test_linear_head",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, ["N"])],
        initializer=[
            numpy_helper.from_array(weights.astype(np.float32).reshape(width, 1), "w"),
            numpy_helper.from_array(np.array([bias], np.float32), "b"),
            numpy_helper.from_array(np.array([-1], np.int64), "flat"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def one_hot_matrix(manifest, raw: np.ndarray) -> np.ndarray:
    """The model's input for raw rows, built here from the manifest (not by RawSpace)."""
    kinds = [f["kind"] for f in manifest["features"]]
    numeric = [i for i, k in enumerate(kinds) if k == "numeric"]
    out = np.zeros((len(raw), len(kinds)))
    out[:, numeric] = raw[:, : len(numeric)]
    out[np.arange(len(raw)), raw[:, -1].astype(int)] = 1.0
    return out


def linear_closed_form(manifest, raw, background, weights) -> np.ndarray:
    """w_i (x_i - mean_B x_i) per numeric input; the genre block's sum for the genre."""
    per_column = one_hot_matrix(manifest, raw) - one_hot_matrix(manifest, background).mean(0)
    per_column *= weights
    kinds = [f["kind"] for f in manifest["features"]]
    numeric = [i for i, k in enumerate(kinds) if k == "numeric"]
    genre = [i for i, k in enumerate(kinds) if k != "numeric"]
    return np.hstack([per_column[:, numeric], per_column[:, genre].sum(1, keepdims=True)])


def test_logistic_model_matches_its_closed_form_in_log_odds(model_dir):
    """The test model is sigmoid(((x - mean) / scale) @ w + b): linear in log-odds."""
    bundle = load_model(model_dir)
    init = {
        t.name: numpy_helper.to_array(t)
        for t in onnx.load_from_string(bundle.onnx_bytes).graph.initializer
    }
    weights = init["weights"].reshape(-1).astype(np.float64) / init["scale"].astype(np.float64)
    space, raw, _ = fixture_rows(bundle)
    background, x = raw[:100], raw[100:140]
    link = LinkModel(model_head(bundle, "popular"), space, threads=1)
    shap = permutation_shap(link, x, background, permutations=16)
    expected = linear_closed_form(bundle.manifest, x, background, weights)
    assert shap.values == pytest.approx(expected, abs=2e-4)
    assert shap.base_value + shap.values.sum(1) == pytest.approx(shap.prediction, abs=1e-9)


def test_regression_head_matches_its_closed_form_in_points(model_dir):
    """A popularity-like head (identity link): contributions are in output units."""
    bundle = load_model(model_dir)
    width = bundle.manifest["input"]["width"]
    weights = np.random.default_rng(3).normal(size=width)
    weights[:14] /= np.array([2e5, 1, 1, 1, 10, 10, 1, 1, 1, 1, 1, 1, 100, 4])
    head = Head("popularity", linear_regression_onnx(weights, 40.0), "features", "prediction",
                "identity", "popularity points")  # fmt: skip
    space, raw, _ = fixture_rows(bundle)
    background, x = raw[:100], raw[100:160]
    shap = permutation_shap(LinkModel(head, space, threads=2), x, background)
    expected = linear_closed_form(bundle.manifest, x, background, weights.astype(np.float32))
    assert shap.values == pytest.approx(expected, abs=1e-3)
    assert shap.base_value + shap.values.sum(1) == pytest.approx(shap.prediction, abs=1e-4)


# --------------------------------------------------------------- explain()
def test_default_model_explanations_add_up_on_fixture_rows(tmp_path):
    """The real embedded stack, log-odds, against the background rows shipped with it.
    Its features: the audio inputs, the catalog priors the popular head reads (not the
    genre shares, which only the genre head reads) and the genre."""
    from popbatch.core.bundle import load_model
    from popbatch.core.priors import is_tail_feature

    result = explain(str(TRACKS_2000), top=25, output=tmp_path / "why.parquet")
    table = pl.read_parquet(tmp_path / "why.parquet")
    features = load_model().manifest["features"]
    explained = {"genre"} | {
        f["name"]
        for f in features
        if f["kind"] in ("numeric", "prior") and not is_tail_feature(f["name"])
    }
    assert "artists:mean" in explained and "album_name:count" in explained
    assert set(table["feature"]) == explained
    assert table.height == 25 * len(explained) and table["track_id"].n_unique() == 25
    assert additivity_error(table) < 1e-4
    first = table.filter(pl.col("rank") == 1)
    assert first.height == 25
    probability = table.group_by("track_id").agg(pl.col("prediction", "score").first())
    logit = np.log(probability["score"] / (1 - probability["score"]))
    assert logit.to_numpy() == pytest.approx(probability["prediction"].to_numpy(), abs=1e-5)
    assert result.background == "model" and set(table["background"]) == {"model"}
    genre = table.filter(pl.col("feature") == "genre")
    assert genre["value"].null_count() == 25 and genre["category"].null_count() == 0
    # A model shipped without background rows explains against the input's own rows.
    assert explain(str(TRACKS_2000), FORMAT1_MODEL, top=2).background == "input sample"


def test_top_n_are_the_highest_predicted(model_dir, tmp_path):
    from popbatch.batch.score import score

    result = explain(str(TRACKS_2000), model_dir, top=7)
    score(str(TRACKS_2000), tmp_path / "scored.parquet", model_dir, record=False)
    scored = pl.read_parquet(tmp_path / "scored.parquet")
    scored = scored.sort("popularity_prob", descending=True).head(7)
    explained = pl.from_arrow(result.table).group_by("track_id").agg(pl.col("score").first())
    assert set(explained["track_id"]) == set(scored["track_id"])
    assert sorted(explained["score"]) == pytest.approx(sorted(scored["popularity_prob"]), abs=1e-6)


# --------------------------------------------------------------- the command
def test_cli_writes_the_long_table_and_prints_reasons(runner, model_dir, tmp_path):
    keys = pl.read_csv(TRACKS_2000)["track_id"].to_list()[10:13]
    (tmp_path / "keys.txt").write_text("track_id\n" + "\n".join(keys) + "\n")
    out = tmp_path / "why.duckdb"
    result = runner.invoke(
        cli,
        ["explain", str(TRACKS_2000), "--model", str(model_dir), "--keys",
         str(tmp_path / "keys.txt"), "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == keys
    assert all(line.split()[1].startswith("p=0.") for line in lines)
    assert lines[0].count("(+") + lines[0].count("(-") == 3
    with duckdb.connect(str(out), read_only=True) as con:
        table = con.sql("SELECT * FROM explanations").pl()
    assert additivity_error(table) < 1e-4
    assert sorted(set(table["track_id"])) == sorted(keys)


def test_cli_where_selects_rows_by_model_inputs(runner, model_dir, tmp_path):
    out = tmp_path / "why.csv"
    where = "track_genre = 'pop' AND danceability > 0.7 AND popularity >= 0"  # a CSV int
    args = ["explain", str(TRACKS_2000), "--model", str(model_dir), "--where", where]
    result = runner.invoke(cli, [*args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    expected = pl.read_csv(TRACKS_2000).filter(
        (pl.col("track_genre") == "pop") & (pl.col("danceability") > 0.7)
    )
    table = pl.read_csv(out)
    assert set(table["track_id"]) == set(expected["track_id"]) and expected.height > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--keys", "missing.txt"], "Error: --keys missing.txt: no such file (one key per line)\n"),
        (["--where", "no_such_column > 1"], "Error: --where: Binder Error: Referenced column"),
        (["--where", "1=1; DROP TABLE x"], "Error: --where: Parser Error"),
        (
            ["--where", "1=1); CREATE TABLE t AS SELECT 1; SELECT (1"],
            "Error: --where '1=1); CREATE TABLE t AS SELECT 1; SELECT (1': give one condition",
        ),
        (
            ["--where", "danceability IN (SELECT 1 FROM read_csv('/etc/passwd'))"],
            "Error: --where: Permission Error: Cannot access file",
        ),
        (["--top", "11", "--max-rows", "10"], "Error: explaining 11 tracks would take about"),
        (["--top", "5", "--keys", "k.txt"], "Error: give one of --top, --keys, --where"),
        (["-o", "in.csv"], "Error: in.csv: the output would overwrite the input"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(runner, model_dir, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "k.txt").write_text("abc\n")
    shutil.copy(TRACKS_2000, tmp_path / "in.csv")
    base = ["explain", "in.csv", "--model", str(model_dir), "-o", "why.parquet"]
    result = runner.invoke(cli, [*base, *args])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(message)
    assert result.output.count("\n") == 1
    assert not (tmp_path / "why.parquet").exists()


def test_score_never_imports_the_explainer(tmp_path):
    code = (
        "import sys\n"
        "from popbatch.cli.main import cli\n"
        f"cli(['score', {str(TRACKS_2000)!r}, '-o', {str(tmp_path / 's.parquet')!r}, '-q'],"
        " standalone_mode=False)\n"
        "bad = [m for m in ('popbatch.batch.explain', 'popbatch.batch.explain.shapley', 'shap')"
        " if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    assert (tmp_path / "s.parquet").is_file()


def test_top_reasons_report_counts_top_features_of_popular_tracks(runner, model_dir, tmp_path):
    scored, why = tmp_path / "scored.parquet", tmp_path / "why.parquet"
    base = [str(TRACKS_2000), "--model", str(model_dir)]
    assert runner.invoke(cli, ["score", *base, "-o", str(scored), "-q"]).exit_code == 0
    keys = pl.read_csv(TRACKS_2000)["track_id"].head(100).to_list()
    (tmp_path / "keys.txt").write_text("\n".join(keys))
    args = ["--keys", str(tmp_path / "keys.txt"), "-o", str(why), "-q"]
    result = runner.invoke(cli, ["explain", *base, *args])
    assert result.exit_code == 0, result.output
    report = tmp_path / "reasons.json"
    args = ["sql", "--scored", str(scored), "--explanations", str(why), "--report", "top_reasons"]
    result = runner.invoke(cli, [*args, "-o", str(report)])
    assert result.exit_code == 0, result.output
    rows = pl.read_json(report)
    popular = pl.read_parquet(scored).filter(pl.col("popular")).select("track_id")
    expected = (
        pl.read_parquet(why)
        .filter(pl.col("rank") == 1)
        .join(popular, on="track_id")
        .group_by("feature")
        .agg(pl.len().alias("tracks"), (pl.col("contribution") > 0).sum().alias("up"))
        .sort(["tracks", "feature"], descending=[True, False])
    )
    assert expected["tracks"].sum() < len(keys)  # only the popular ones count
    assert rows["feature"].to_list() == expected["feature"].to_list()
    assert rows["tracks"].to_list() == expected["tracks"].to_list()
    assert rows["pushed_up"].to_list() == expected["up"].to_list()


def test_exported_model_explains_against_its_stored_training_rows(exported_model, tmp_path):
    model_dir, _ = exported_model
    manifest = load_model(model_dir).manifest
    assert manifest["background"]["rows"] == 100
    result = explain(str(TRACKS_2000), model_dir, top=10, output=tmp_path / "why.parquet")
    table = pl.read_parquet(tmp_path / "why.parquet")
    assert result.background == "model" and set(table["background"]) == {"model"}
    assert additivity_error(table) < 1e-4
    background = pl.read_parquet(model_dir / "background.parquet")
    assert background.columns == [*RawSpace(manifest).names]
    (model_dir / "background.parquet").write_bytes(b"changed")
    with pytest.raises(ModelError, match="does not match its manifest"):
        explain(str(TRACKS_2000), model_dir, top=1)


def test_popularity_head_of_a_bundle_adds_up_in_points(model_dir, tmp_path):
    """A bundle with a popularity head as the heads issue exports it (manifest 'heads')."""
    import hashlib
    import json

    from popbatch.core.bundle import ModelBundle
    from popbatch.core.identity import seal

    if "head_bytes" not in ModelBundle.__dataclass_fields__:
        pytest.skip("load_model reads head files once the heads branch has landed")
    bundle_dir = tmp_path / "with_heads"
    shutil.copytree(model_dir, bundle_dir)
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    weights = np.zeros(manifest["input"]["width"])
    weights[2], weights[3], weights[20] = 30.0, -12.0, 8.0  # danceability, energy, a genre
    data = linear_regression_onnx(weights, 35.0)
    (bundle_dir / "popularity.onnx").write_bytes(data)
    manifest["heads"] = {
        "popularity": {
            "file": "popularity.onnx",
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "outputs": {"prediction": "prediction"},
            "columns": {"popularity_pred": "DOUBLE"},
            "parity": {"rows": 0, "max_abs_diff": 0.0, "tolerance": 1e-4},
            "metrics": {},
        }
    }
    seal(manifest, (bundle_dir / "model.onnx").read_bytes())  # model_id covers the heads
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    result = explain(str(TRACKS_2000), bundle_dir, head="popularity", top=10)
    table = pl.from_arrow(result.table)
    assert result.unit == "popularity points" and set(table["head"]) == {"popularity"}
    assert additivity_error(table) < 1e-4
    assert (table["score"] == table["prediction"]).all()  # identity link: points
    assert set(table.filter(pl.col("rank") == 1)["feature"]) <= {"danceability", "energy", "genre"}


def test_training_report_shap_of_a_regression_head_is_in_points():
    """models/explain_report.head_shap on a linear 'popularity' head: the closed form."""
    from types import SimpleNamespace

    from model_factory import training_matrix
    from popbatch.models.explain_report import head_shap

    from popbatch.core.features import feature_names

    x, _, vocabulary = training_matrix()
    names = feature_names(vocabulary)
    weights = np.random.default_rng(4).normal(size=len(names)) / (x.std(0) + 1)
    splits = SimpleNamespace(x={"test": x[:120], "train": x[1000:1050]})
    result = head_shap(lambda m: m @ weights + 35.0, names, splits, 0, "popularity")
    manifest = {
        "features": [{"kind": "numeric" if "=" not in n else "onehot"} for n in names],
    }
    background = splits.x["train"].mean(0)
    per_column = (one_hot_matrix(manifest, result["raw"]) - background) * weights
    expected = np.hstack([per_column[:, :14], per_column[:, 14:].sum(1, keepdims=True)])
    assert result["values"] == pytest.approx(expected, abs=1e-5)  # float32 model input
    assert result["summary"]["unit"] == "popularity points"
    assert result["summary"]["max_additivity_error"] < 1e-9
