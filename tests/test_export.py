"""popbatch export: one ONNX graph from the native stack, parity proven, manifest written."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from popbatch.exporter import parity as parity_check
from popbatch.exporter.manifest import build_manifest, schema

from popbatch.cli.main import cli
from popbatch.core import DEFAULT_BATCH_SIZE
from popbatch.core.features import NUMERIC_FEATURES, OTHER_GENRE
from popbatch.core.identity import contract_digests, digest

PARITY_LINE = re.compile(
    r"^parity on ([\d,]+) test rows: max \|native - onnx\| = (\S+) \(tolerance 1e-05\), "
    r"labels identical: yes$",
    re.MULTILINE,
)


@pytest.fixture(scope="module")
def native(stack_dir):
    from popbatch.models.stack import NativeStack

    return NativeStack.load(stack_dir)


def onnx_outputs(model_dir: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    path = str(model_dir / "model.onnx")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    probability, label = session.run(["probability", "label"], {"features": x})
    return probability, label


def test_export_run_reproduces_the_native_stack(exported_model, native, stack_dir):
    """Recomputed here, independently of export's own check, in a plain session."""
    model_dir, summary = exported_model
    test = pl.read_parquet(stack_dir / "test.parquet")
    x = test.select(native.feature_names).to_numpy().astype(np.float32)
    probability, label = onnx_outputs(model_dir, x)
    expected = native.predict_proba(x)
    assert probability.dtype == np.float32 and probability.shape == (test.height,)
    assert label.dtype == np.int64 and label.shape == (test.height,)
    assert np.abs(probability - expected).max() <= 1e-5
    np.testing.assert_array_equal(label.astype(bool), expected >= native.threshold)
    # both classes occur, so "labels identical" is not trivially true
    assert 0 < label.sum() < len(label)
    assert summary["parity"]["rows"] == test.height
    assert summary["parity"]["max_abs_diff"] <= 1e-5
    assert summary["parity"]["labels_identical"] is True


def test_clipping_is_part_of_the_graph(exported_model, native, stack_dir):
    """Rows far outside the training range are clipped in ONNX as in the native stack."""
    model_dir, _ = exported_model
    x = pl.read_parquet(stack_dir / "test.parquet").select(native.feature_names).to_numpy()
    extreme = x.astype(np.float32).copy()
    numeric = len(NUMERIC_FEATURES)
    extreme[: len(x) // 2, :numeric] *= 50.0
    extreme[len(x) // 2 :, :numeric] *= -50.0
    assert (native.clip(extreme) != extreme).any()
    probability, label = onnx_outputs(model_dir, extreme)
    expected = native.predict_proba(extreme)
    assert np.abs(probability - expected).max() <= 1e-5
    np.testing.assert_array_equal(label.astype(bool), expected >= native.threshold)


def test_manifest_validates_and_describes_the_graph(exported_model, native):
    import jsonschema
    import onnx

    model_dir, summary = exported_model
    manifest = json.loads((model_dir / "manifest.json").read_text())
    jsonschema.Draft202012Validator(schema()).validate(manifest)
    model_bytes = (model_dir / "model.onnx").read_bytes()
    # Format 2: the id covers the ONNX bytes and the scoring contract (popbatch.core.identity).
    assert manifest["format_version"] == 2
    assert manifest["identity"]["model_sha256"] == hashlib.sha256(model_bytes).hexdigest()
    assert manifest["identity"]["contract"] == contract_digests(manifest)
    assert manifest["model_id"] == digest(manifest["identity"]) == summary["model_id"]
    assert manifest["model_bytes"] == len(model_bytes)
    graph = onnx.load_from_string(model_bytes).graph
    width = graph.input[0].type.tensor_type.shape.dim[1].dim_value
    assert graph.input[0].name == "features"
    assert width == manifest["input"]["width"] == len(manifest["features"])
    assert [f["name"] for f in manifest["features"]] == native.feature_names
    assert manifest["threshold"] == native.threshold
    assert manifest["label"]["definition"] == "popularity > 71"
    ranges = {f.name: (f.valid_min, f.valid_max) for f in NUMERIC_FEATURES}
    for entry in manifest["features"]:
        if entry["kind"] == "numeric":
            assert (entry["valid_min"], entry["valid_max"]) == ranges[entry["name"]]
            assert entry["impute"] == native.info["feature_stats"][entry["name"]]["impute"]
    assert manifest["genre"]["vocabulary"] == native.genre_vocabulary
    assert manifest["genre"]["other"] == OTHER_GENRE
    assert manifest["throughput"]["threads"] == 2
    assert manifest["throughput"]["batch_size"] == DEFAULT_BATCH_SIZE  # as popbatch score
    assert manifest["throughput"]["rows_per_second"] > 0


def test_stack_without_genre_exports_with_parity(tmp_path):
    """A --no-genre model: 14 inputs, clipping on, genre null in a valid manifest."""
    import jsonschema
    from popbatch.exporter.build import export_run
    from stack_factory import build_stack

    tracks = Path(__file__).parent / "data" / "tracks_2000.csv"
    build_stack(tracks, tmp_path / "run" / "stack", with_genre=False, ann_epochs=1)
    summary = export_run(tmp_path / "run", tmp_path / "model", measure_throughput=False)
    assert summary["parity"]["max_abs_diff"] <= 1e-5
    assert summary["parity"]["labels_identical"] is True
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    jsonschema.Draft202012Validator(schema()).validate(manifest)
    assert manifest["genre"] is None
    assert [f["name"] for f in manifest["features"]] == [f.name for f in NUMERIC_FEATURES]


def test_manifest_without_genre_is_null_and_valid():
    import jsonschema

    stats = {"min": 0.0, "max": 1.0, "mean": 0.5, "std": 0.1, "impute": 0.5}
    stats |= {"quantiles": {"0.5": 0.5}, "bins": {"edges": [0.5], "shares": [0.5, 0.5]}}
    stack = SimpleNamespace(
        feature_names=["energy"],
        genre_vocabulary=None,
        threshold=0.3,
        info={
            "label": {"column": "popularity", "popular_above": 71},
            "training_data": {"file": "t.csv", "table": None, "sha256": "0" * 64, "rows": 3},
            "feature_stats": {"energy": stats},
        },
    )
    parity = {"rows": 1, "max_abs_diff": 0.0, "labels_identical": True}
    manifest = build_manifest(stack, b"onnx", parity, {"ai.onnx": 17})
    jsonschema.Draft202012Validator(schema()).validate(manifest)
    assert manifest["genre"] is None
    assert manifest["features"][0]["impute"] == 0.5
    assert "impute" not in manifest["features"][0]["train"]


def test_cli_export_prints_parity_and_writes_the_model(runner, stack_dir, tmp_path):
    out = tmp_path / "exported"
    result = runner.invoke(
        cli, ["export", str(stack_dir.parent), "--out", str(out), "-q", "--no-throughput"]
    )
    assert result.exit_code == 0, result.output
    match = PARITY_LINE.search(result.output)
    assert match, result.output
    rows = pl.read_parquet(stack_dir / "test.parquet").height
    assert int(match.group(1).replace(",", "")) == rows
    assert float(match.group(2)) <= 1e-5
    assert sorted(p.name for p in out.iterdir()) == [
        "background.parquet",
        "manifest.json",
        "model.onnx",
    ]
    assert "throughput" not in json.loads((out / "manifest.json").read_text())


def test_parity_failure_writes_nothing(runner, stack_dir, tmp_path, monkeypatch):
    from popbatch.models.stack import NativeStack

    original = NativeStack.predict_proba
    monkeypatch.setattr(NativeStack, "predict_proba", lambda self, x: original(self, x) + 1e-4)
    out = tmp_path / "refused"
    result = runner.invoke(cli, ["export", str(stack_dir), "--out", str(out), "-q"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: parity failed, nothing written: parity on ")
    assert "labels identical" in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_parity_requires_identical_labels_even_when_close():
    parity = parity_check.compare(
        np.array([0.5, 0.2]), np.array([0.4999999, 0.2]), np.array([0, 0]), threshold=0.5
    )
    assert parity.max_abs_diff <= 1e-5 and not parity.labels_identical
    assert parity.label_mismatches == 1
    with pytest.raises(Exception, match="labels identical: no \\(1 differ\\)") as error:
        parity_check.require(parity)
    assert type(error.value).__name__ == "ModelError"


def test_export_without_a_stack_is_a_usage_error(runner, tmp_path):
    result = runner.invoke(cli, ["export", str(tmp_path), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert result.output == (
        f"Error: {tmp_path}: no stack/stack.json; pass the --out directory of 'popbatch train'\n"
    )


def test_model_info_summarises_the_manifest(runner, exported_model):
    model_dir, summary = exported_model
    manifest = json.loads((model_dir / "manifest.json").read_text())
    result = runner.invoke(cli, ["model", "info", str(model_dir)])
    assert result.exit_code == 0, result.output
    assert f"id          {summary['model_id']}" in result.output
    assert f"threshold   {manifest['threshold']:.6g}" in result.output
    assert "label       popular = popularity > 71" in result.output
    assert f"features    {len(manifest['features'])}: duration_ms, explicit," in result.output
    assert f"size        {summary['model_bytes']:,} bytes" in result.output
    roc_auc = manifest["metrics"]["test"]["stack"]["roc_auc"]
    assert f"metrics     test stack: roc_auc {roc_auc:.4f}, pr_auc " in result.output


def test_model_info_json_is_the_manifest(runner, exported_model):
    model_dir, _ = exported_model
    result = runner.invoke(cli, ["model", "info", str(model_dir), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json.loads((model_dir / "manifest.json").read_text())


@pytest.mark.parametrize("form", ["classifier3", "regressor3", "ensemble5"])
def test_every_tree_form_reproduces_the_native_stack(native, stack_dir, form):
    """The three ways of emitting the trees (export/trees.py) give the same probabilities."""
    from popbatch.exporter import runtime
    from popbatch.exporter.graph import build_graph

    x = parity_check.split_matrix(stack_dir, native.feature_names)
    model_bytes = build_graph(native, form).SerializeToString()
    probability, label = runtime.predict(model_bytes, x)
    parity = parity_check.compare(native.predict_proba(x), probability, label, native.threshold)
    assert parity.ok, parity.line()


def test_export_warns_over_the_size_budget(runner, stack_dir, tmp_path, monkeypatch):
    import popbatch.exporter.build

    monkeypatch.setattr(popbatch.exporter.build, "SIZE_BUDGET", 1000)
    result = runner.invoke(
        cli, ["export", str(stack_dir), "--out", str(tmp_path / "m"), "-q", "--no-throughput"]
    )
    assert result.exit_code == 0, result.output
    assert re.search(
        r"^Warning: model\.onnx is [\d.]+ MB, over the 0 MB budget of the default "
        r"model; train smaller trees",
        result.output,
        re.MULTILINE,
    ), result.output


def test_export_without_training_extras_says_how_to_install(runner, stack_dir, tmp_path):
    """A scoring-only install gets a one-line hint, not a traceback (keras made unimportable)."""
    code = (
        "import sys; sys.modules['keras'] = None\n"
        "from click.testing import CliRunner\n"
        "from popbatch.cli.main import cli\n"
        f"r = CliRunner().invoke(cli, ['export', {str(stack_dir)!r}, '--out', "
        f"{str(tmp_path / 'm')!r}])\n"
        "print(r.exit_code); print(r.output)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    exit_code, output = result.stdout.split("\n", 1)
    assert exit_code == "2"
    assert output.strip() == (
        "Error: export needs the training extras (keras is not installed); "
        "install them with: pip install 'popbatch[train]'"
    )
    assert not (tmp_path / "m").exists()


def _dense_model(weight: np.ndarray, bias: np.ndarray, first: str = "MatMul"):
    """x [N, F] -> Relu(x @ weight + bias): the shape of tf2onnx's first Dense layer."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node(first, ["x", "w"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["z"]),
        helper.make_node("Relu", ["z"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", weight.shape[1]])],
        initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what export writes (export/graph.py)
    return model


def test_scaler_folded_into_the_first_layer_equals_scaling_first():
    import onnxruntime as ort
    from popbatch.exporter.toolkit import fold_scaler

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(5, 3)).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    mean, scale = rng.normal(size=5) * 100, rng.uniform(0.5, 50, size=5)
    x = (rng.normal(size=(64, 5)) * scale + mean).astype(np.float32)
    scaled = ((x - mean.astype(np.float32)) / scale.astype(np.float32)).astype(np.float32)
    expected = np.maximum(scaled @ weight + bias, 0)

    model = _dense_model(weight, bias)
    assert fold_scaler(model, mean, scale)
    session = ort.InferenceSession(model.SerializeToString())
    (folded,) = session.run(None, {"x": x})
    np.testing.assert_allclose(folded, expected, rtol=1e-5, atol=1e-5)

    other = _dense_model(weight, bias, first="Sub")  # not a MatMul: left as it is
    before = other.SerializeToString()
    assert not fold_scaler(other, mean, scale)
    assert other.SerializeToString() == before


def test_exported_graph_has_no_separate_scaler_pass(exported_model):
    import onnx

    model_dir, _ = exported_model
    ops = [node.op_type for node in onnx.load(model_dir / "model.onnx").graph.node]
    assert "Div" not in ops and "Sub" not in ops, ops


@pytest.fixture(scope="module")
def logit_stack_dir(tmp_path_factory) -> Path:
    """The redesigned stack: logistic, ann, xgb on logits, genre target-encoded."""
    from stack_factory import build_stack

    directory = tmp_path_factory.mktemp("logit") / "stack"
    tracks = Path(__file__).parent / "data" / "tracks_2000.csv"
    build_stack(
        tracks, directory, ann_epochs=1, learners=("logistic", "ann", "xgb"),
        meta_input="logit", genre_encoding=True,
    )  # fmt: skip
    return directory


@pytest.mark.parametrize("form", ["regressor3", "ensemble5"])
def test_logit_stack_with_genre_encoding_reproduces_the_native_stack(logit_stack_dir, form):
    """Logistic (scaler folded, float64), the network's logit, XGBoost's margin on the
    numerics + the genre's encoding (looked up by the genre's index): the graph gives the
    native scores."""
    import onnx
    from popbatch.exporter import runtime
    from popbatch.exporter.graph import build_graph
    from popbatch.models.stack import NativeStack

    native = NativeStack.load(logit_stack_dir)
    assert native.learners == ("logistic", "ann", "xgb") and native.meta_input == "logit"
    assert native.genre_encoding is not None and native.rf is None
    x = parity_check.split_matrix(logit_stack_dir, native.feature_names)
    model = build_graph(native, form)
    probability, label = runtime.predict(model.SerializeToString(), x)
    parity = parity_check.compare(native.predict_proba(x), probability, label, native.threshold)
    assert parity.ok, parity.line()
    assert 0 < label.sum() < len(label)
    # The encoding is a constant [G + 1, 1] looked up by the genre's index (row 0: no genre).
    (table,) = [t for t in model.graph.initializer if t.name == "xgb/encoded/table"]
    assert list(table.dims) == [len(native.genre_vocabulary) + 2, 1]
    assert onnx.numpy_helper.to_array(table).ravel().tolist() == pytest.approx(
        [0.0, *native.genre_encoding], rel=1e-6
    )
    # Another genre moves the score through the encoding: rows differ only in genre.
    one_genre = x.copy()
    one_genre[:, native.n_numeric :] = 0.0
    one_genre[:, native.n_numeric] = 1.0
    other = one_genre.copy()
    other[:, native.n_numeric] = 0.0
    other[:, -1] = 1.0
    p1, _ = runtime.predict(model.SerializeToString(), one_genre)
    p2, _ = runtime.predict(model.SerializeToString(), other)
    assert np.abs(p1 - native.predict_proba(one_genre)).max() <= 1e-5
    assert np.abs(p2 - native.predict_proba(other)).max() <= 1e-5


def test_a_stack_on_logits_reads_the_network_s_pre_activation(logit_stack_dir):
    """The network's meta input is its output before the sigmoid, in the native stack
    and in the graph alike: not logit(p), which a float32 p near 1 rounds (two correct
    evaluations then differ by up to 1e-3) and the clip caps at logit(1 - 1e-4)."""
    from onnx import TensorProto, helper
    from popbatch.exporter import runtime
    from popbatch.exporter.graph import build_graph
    from popbatch.models.stack import LOGIT_EPS, NativeStack

    native = NativeStack.load(logit_stack_dir)
    x = parity_check.split_matrix(logit_stack_dir, native.feature_names)
    def ann_column():
        return native.base_scores(x, "logit")[:, native.learners.index("ann")]

    p = native.ann.predict(native.scale(native.clip(x)), verbose=0).ravel().astype(np.float64)
    assert np.abs(ann_column() - np.log(p / (1 - p))).max() < 1e-4  # the logit of p, where exact
    # the network's last layer pushed far out: sigmoid(z) is 1 in float32 for most rows
    native.ann.layers[-1].set_weights([w * 40 for w in native.ann.layers[-1].get_weights()])
    column = ann_column()
    assert np.abs(column).max() > 2 * np.log((1 - LOGIT_EPS) / LOGIT_EPS)  # never capped
    model = build_graph(native, "regressor3")
    model.graph.output.append(helper.make_tensor_value_info("ann/column", TensorProto.DOUBLE, None))
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    graph_column = session.run(["ann/column"], {session.get_inputs()[0].name: x})[0].ravel()
    assert np.abs(graph_column - column).max() <= 1e-4 * max(1.0, np.abs(column).max())
    probability, label = runtime.predict(model.SerializeToString(), x)
    parity = parity_check.compare(native.predict_proba(x), probability, label, native.threshold)
    assert parity.ok, parity.line()


def _cv_section() -> dict:
    stats = {"roc_auc": {"mean": 0.845, "std": 0.02}, "pr_auc": {"mean": 0.175, "std": 0.03}}
    return {
        "head": "popular",
        "spec": "5x3",
        "rows": 8500,
        "positives": 320,
        "seconds": 1200.0,
        "models": {"stack": stats, "logistic": stats},
        "stack_vs_best_single": {
            "roc_auc": {
                "best_single": "logistic",
                "mean": 0.004,
                "std": 0.006,
                "stack_better_folds": 11,
                "folds_compared": 15,
            },
        },
    }


def test_manifest_carries_the_cv_estimate_and_model_info_shows_it(native, tmp_path):
    """The CV estimate (popbatch train --cv) rides in stack.info into the manifest."""
    import copy

    import jsonschema

    from popbatch.cli.commands.model import summary_lines

    stack = copy.copy(native)
    stack.info = {**native.info, "cv": _cv_section()}
    parity = {"rows": 1, "max_abs_diff": 0.0, "labels_identical": True}
    manifest = build_manifest(stack, b"onnx", parity, {"ai.onnx": 17})
    jsonschema.Draft202012Validator(schema()).validate(manifest)
    assert manifest["cv"]["models"]["stack"]["roc_auc"]["mean"] == 0.845
    lines = summary_lines(manifest, tmp_path, 4)
    assert "cv          5x3 grouped folds over 8500 rows" in lines
    assert "metrics     cv stack: roc_auc 0.8450 ± 0.0200, pr_auc 0.1750 ± 0.0300" in lines
    assert (
        "metrics     cv stack - logistic roc_auc: +0.0040 ± 0.0060, better in 11/15 folds" in lines
    )
    # test-split figures stay beside it
    assert any(line.startswith("metrics     test stack: roc_auc") for line in lines)
    broken = {**manifest, "cv": {**manifest["cv"], "spec": "five"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema()).validate(broken)


def _block_model(n: int, k: int, first_layer, encoding):
    """features [N, n + k] -> the genre block read as an index (export/genre_block.py):
    ``layer`` = features @ first_layer (split by split_first_layer), ``encoded`` = the
    block's lookup in ``encoding``."""
    from onnx import TensorProto, helper, numpy_helper
    from popbatch.exporter import genre_block

    nodes, inits = genre_block.index_nodes("features", n, n + k)
    lookup, lookup_inits = genre_block.rows_nodes(encoding, np.float32, "encoded")
    nodes += [*lookup, helper.make_node("MatMul", ["features", "w"], ["layer"])]
    inits += [*lookup_inits, numpy_helper.from_array(first_layer, "w")]
    assert genre_block.split_first_layer(nodes, inits, "features", n)
    graph = helper.make_graph(
        nodes,
        "block",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", n + k])],
        [
            helper.make_tensor_value_info("layer", TensorProto.FLOAT, ["N", None]),
            helper.make_tensor_value_info("encoded", TensorProto.FLOAT, ["N", None]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_genre_block_lookups_equal_multiplying_the_one_hot_block():
    import onnxruntime as ort

    rng = np.random.default_rng(1)
    n, k, rows = 4, 6, 40
    weight = rng.normal(size=(n + k, 3)).astype(np.float32)
    encoding = rng.normal(size=(k, 1)).astype(np.float32)
    x = np.zeros((rows, n + k), np.float32)
    x[:, :n] = rng.normal(size=(rows, n)) * 10
    genres = rng.integers(0, k, rows)
    x[np.arange(rows), n + genres] = 1.0
    x[0, n:] = 0.0  # no genre at all: the block multiplies to zero
    layer, encoded = ort.InferenceSession(
        _block_model(n, k, weight, encoding).SerializeToString()
    ).run(None, {"features": x})
    np.testing.assert_allclose(layer, x @ weight, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(encoded, x[:, n:] @ encoding)
    assert not encoded[0].any()


def _run_graph(nodes, inits, inputs: dict, outputs: list[str], extra_inputs=()):
    """Run a hand-built graph of ``nodes`` on float32 ``inputs`` (name -> [N, k])."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", v.shape[1]])
         for n, v in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        initializer=inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, ort.InferenceSession(model.SerializeToString()).run(outputs, inputs)


def test_first_layer_bias_rides_in_the_genre_rows():
    """``split_first_layer`` adds the layer's bias to the genre table's rows (the row of
    "no genre" too) and drops the Add that followed: same values, one pass fewer."""
    from onnx import helper, numpy_helper
    from popbatch.exporter import genre_block

    rng = np.random.default_rng(2)
    n, k, rows = 3, 5, 30
    weight = rng.normal(size=(n + k, 4)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    x = np.zeros((rows, n + k), np.float32)
    x[:, :n] = rng.normal(size=(rows, n))
    x[np.arange(rows), n + rng.integers(0, k, rows)] = 1.0
    x[0, n:] = 0.0  # no genre: the bias alone
    nodes, inits = genre_block.index_nodes("features", n, n + k)
    nodes += [
        helper.make_node("MatMul", ["features", "w"], ["layer_raw"]),
        helper.make_node("Add", ["layer_raw", "b"], ["layer"]),
    ]
    inits += [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")]
    assert genre_block.split_first_layer(nodes, inits, "features", n)
    assert not any("b" in node.input for node in nodes)  # the bias Add is gone
    _, (layer,) = _run_graph(nodes, inits, {"features": x}, ["layer"])
    np.testing.assert_allclose(layer, x @ weight + bias, rtol=1e-5, atol=1e-5)


def test_a_widened_graph_slices_the_wide_input_directly():
    """``widen_input``: a Slice within the old width reads the wide input as it is; any
    other reader gets one shared Slice of the old width. Either way the same values."""
    from onnx import helper, numpy_helper
    from popbatch.exporter.priors import SHARED_INPUT, widen_input

    rng = np.random.default_rng(3)
    x = rng.normal(size=(7, 9)).astype(np.float32)
    weight = rng.normal(size=(5, 1)).astype(np.float32)
    ints = {"s0": [0], "s2": [2], "s5": [5], "ax": [1]}
    inits = [numpy_helper.from_array(np.asarray(v, np.int64), k) for k, v in ints.items()]
    slices = [
        helper.make_node("Slice", ["features", "s0", "s2", "ax"], ["left"]),
        helper.make_node("Slice", ["features", "s2", "s5", "ax"], ["right"]),
    ]
    matmul = helper.make_node("MatMul", ["features", "w"], ["product"])
    for nodes, outputs in ((slices, ["left", "right"]), ([*slices, matmul], ["left", "product"])):
        narrow, expected = _run_graph(
            nodes, [*inits, numpy_helper.from_array(weight, "w")], {"features": x[:, :5]}, outputs
        )
        wide = widen_input(narrow, 9)
        readers = [n.op_type for n in wide.graph.node if "features" in n.input]
        shared = any(SHARED_INPUT in n.input for n in wide.graph.node)
        assert shared == (matmul in nodes), readers  # a copy only for the MatMul
        import onnxruntime as ort

        got = ort.InferenceSession(wide.SerializeToString()).run(outputs, {"features": x})
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_array_equal(g, e)


def test_the_genre_outputs_from_logits_are_softmax_argmax_and_max():
    """``genre_index`` / ``genre_prob`` from the logits without a Softmax: the first
    largest logit on ties (as ArgMax), its probability ``1 / sum(exp(l - max))``."""
    from popbatch.exporter.heads import GENRE_INDEX, GENRE_PROB, _top_genre_of_logits
    from popbatch.exporter.toolkit import GraphBuilder

    rng = np.random.default_rng(4)
    logits = rng.normal(size=(50, 6)).astype(np.float32) * 4
    logits[0] = [1, 3, 3, 0, -2, 3]  # a three-way tie: the first (index 1) wins
    logits[1] = [90, 80, -90, 0, 0, 0]  # exp(90) overflows float32: shifted first
    logits[2] = 0  # all equal: index 0, probability 1/6
    b = GraphBuilder(6, "logits")
    _top_genre_of_logits(b, "logits", 6)
    model = b.model("top", [(GENRE_INDEX, 7), (GENRE_PROB, 1)])  # int64, float
    import onnxruntime as ort

    index, prob = ort.InferenceSession(model.SerializeToString()).run(None, {"logits": logits})
    wide = logits.astype(np.float64)
    softmax = np.exp(wide - wide.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    np.testing.assert_array_equal(index, np.argmax(softmax, axis=1))
    assert index[0] == 1 and index[2] == 0
    np.testing.assert_allclose(prob, softmax.max(axis=1), rtol=1e-6)
    assert np.isfinite(prob).all()
    # every bit the same however the rows are batched (the scored sample's test needs it)
    session = ort.InferenceSession(model.SerializeToString())
    for size in (1, 7):
        parts = [session.run(None, {"logits": logits[i : i + size]}) for i in range(0, 50, size)]
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), prob)
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), index)
