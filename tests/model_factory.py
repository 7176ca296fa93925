"""A small but real ONNX model with a valid manifest, for scorer tests.

The scorer only needs what ``popbatch export`` promises: ``model.onnx`` taking
``features`` float32 [N, F] and returning ``probability`` float32 [N] and
``label`` int64 [N], plus a ``manifest.json`` valid against
``export/manifest_schema.json`` whose ``model_id`` covers the bytes and the
scoring contract (format 2, sealed by ``popbatch.core.identity.seal`` as export does).
This module builds exactly that from a logistic regression fitted with numpy
on ``tests/data/tracks_2000.csv`` (label: popularity > 71), so tests do not
depend on the training stack or on the embedded default model.

    python -m tests.model_factory runs/test_model   # same bytes every time
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import polars as pl
from onnx import TensorProto, helper, numpy_helper

from popbatch.core import __version__
from popbatch.core.features import (
    DEFAULT_POPULAR_ABOVE,
    GENRE_COLUMN,
    KEY_COLUMN,
    LABEL_COLUMN,
    NUMERIC_FEATURES,
    OTHER_GENRE,
    feature_names,
    onehot_name,
    parse_explicit,
)
from popbatch.core.identity import seal
from popbatch.core.stats import numeric_stats, onehot_share

ROOT = Path(__file__).resolve().parents[1]
TRACKS_2000 = ROOT / "tests" / "data" / "tracks_2000.csv"
SCHEMA = ROOT / "export" / "manifest_schema.json"
OPSET = 17


def training_matrix(
    csv: Path = TRACKS_2000, with_genre: bool = True
) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Feature matrix, labels and genre vocabulary of the fixture, in feature_names order."""
    frame = pl.read_csv(csv).with_columns(parse_explicit())
    vocabulary = sorted(frame[GENRE_COLUMN].unique().to_list()) if with_genre else None
    numeric = frame.select([f.name for f in NUMERIC_FEATURES]).to_numpy().astype(np.float64)
    blocks = [numeric]
    if vocabulary is not None:
        genres = frame[GENRE_COLUMN].to_numpy()
        onehot = np.stack([(genres == g) for g in vocabulary], axis=1).astype(np.float64)
        other = np.zeros((len(frame), 1))
        blocks += [onehot, other]
    labels = (frame[LABEL_COLUMN].to_numpy() > DEFAULT_POPULAR_ABOVE).astype(np.float64)
    return np.hstack(blocks), labels, vocabulary


def fit_logistic_regression(
    x: np.ndarray, y: np.ndarray, steps: int = 300, rate: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Class-weighted logistic regression on standardised inputs (plain gradient descent).

    Returns mean, scale, weights and bias such that
    ``p = sigmoid(((x - mean) / scale) @ weights + bias)``.
    """
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    # Balance the rare positives so the probabilities spread over [0, 1].
    weight = np.where(y == 1, 0.5 / max(y.mean(), 1e-9), 0.5 / max(1 - y.mean(), 1e-9))
    w = np.zeros(x.shape[1])
    b = 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        g = weight * (p - y)
        w -= rate * (z.T @ g / len(y) + 1e-3 * w)
        b -= rate * g.mean()
    return mean, scale, w, b


def logistic_onnx(
    mean: np.ndarray, scale: np.ndarray, weights: np.ndarray, bias: float, threshold: float
) -> bytes:
    """ONNX bytes: features [N, F] -> probability [N] (float32), label [N] (int64)."""
    width = len(weights)
    inits = [
        numpy_helper.from_array(mean.astype(np.float32), "mean"),
        numpy_helper.from_array(scale.astype(np.float32), "scale"),
        numpy_helper.from_array(weights.astype(np.float32).reshape(width, 1), "weights"),
        numpy_helper.from_array(np.array([bias], np.float32), "bias"),
        numpy_helper.from_array(np.array([-1], np.int64), "flat"),
        numpy_helper.from_array(np.array(threshold, np.float32), "threshold"),
    ]
    nodes = [
        helper.make_node("Sub", ["features", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "scale"], ["standard"]),
        helper.make_node("MatMul", ["standard", "weights"], ["logit2d"]),
        helper.make_node("Add", ["logit2d", "bias"], ["logit_b"]),
        helper.make_node("Sigmoid", ["logit_b"], ["prob2d"]),
        helper.make_node("Reshape", ["prob2d", "flat"], ["probability"]),
        helper.make_node("GreaterOrEqual", ["probability", "threshold"], ["is_popular"]),
        helper.make_node("Cast", ["is_popular"], ["label"], to=TensorProto.INT64),
    ]
    graph = helper.make_graph(
        nodes,
        "popbatch_test_logistic",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", width])],
        [
            helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def build_model(
    directory: Path,
    *,
    with_genre: bool = True,
    genre_optional: bool = True,
    threshold: float = 0.5,
) -> Path:
    """Write ``model.onnx`` + ``manifest.json`` into ``directory`` and return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    x, y, vocabulary = training_matrix(with_genre=with_genre)
    mean, scale, weights, bias = fit_logistic_regression(x, y)
    onnx_bytes = logistic_onnx(mean, scale, weights, bias, threshold)
    (directory / "model.onnx").write_bytes(onnx_bytes)

    names = feature_names(vocabulary)
    features = []
    for i, spec in enumerate(NUMERIC_FEATURES):
        stats = numeric_stats(x[:, i])
        features.append(
            {
                "name": spec.name,
                "kind": "numeric",
                "column": spec.name,
                "valid_min": spec.valid_min,
                "valid_max": spec.valid_max,
                "impute": stats.pop("impute"),
                "train": stats,
            }
        )
    if vocabulary is not None:
        for j, genre in enumerate([*vocabulary, OTHER_GENRE], start=len(NUMERIC_FEATURES)):
            features.append(
                {
                    "name": onehot_name(genre),
                    "kind": "onehot",
                    "column": GENRE_COLUMN,
                    "category": genre,
                    "train": onehot_share(x[:, j]),
                }
            )
    assert [f["name"] for f in features] == names

    manifest = {
        "format_version": 2,
        "model_file": "model.onnx",
        "model_id": None,
        "model_bytes": len(onnx_bytes),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "popbatch_version": __version__,
        "training_data": {
            "file": TRACKS_2000.name,
            "table": None,
            "sha256": hashlib.sha256(TRACKS_2000.read_bytes()).hexdigest(),
            "rows": len(y),
        },
        "label": {
            "column": LABEL_COLUMN,
            "popular_above": DEFAULT_POPULAR_ABOVE,
            "definition": f"{LABEL_COLUMN} > {DEFAULT_POPULAR_ABOVE}",
        },
        "threshold": threshold,
        "input": {"name": "features", "dtype": "float32", "width": len(names)},
        "outputs": {"probability": "probability", "label": "label"},
        "key": KEY_COLUMN,
        "genre": None
        if vocabulary is None
        else {
            "column": GENRE_COLUMN,
            "vocabulary": vocabulary,
            "other": OTHER_GENRE,
            "optional": genre_optional,
        },
        "features": features,
        "metrics": {"note": "test model: numpy logistic regression, not evaluated"},
        "parity": {"rows": 0, "max_abs_diff": 0.0, "labels_identical": True},
        "opsets": {"ai.onnx": OPSET},
        "packages": {"onnx": onnx.__version__, "numpy": np.__version__},
    }
    seal(manifest, onnx_bytes)
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return directory


def validate_manifest(directory: Path) -> None:
    """Raise jsonschema.ValidationError if the manifest breaks the export contract."""
    import jsonschema

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    manifest = json.loads((Path(directory) / "manifest.json").read_text(encoding="utf-8"))
    jsonschema.validate(manifest, schema)


if __name__ == "__main__":
    import sys

    out = build_model(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/test_model"))
    validate_manifest(out)
    print(out)
