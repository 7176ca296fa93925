"""batch.manifest.load_model: the scorer trusts only ONNX bytes that match their manifest."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from popbatch.cli.main import cli
from popbatch.core.bundle import load_model
from popbatch.core.errors import ModelError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def model_copy(exported_model, tmp_path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(exported_model[0], target)
    return target


def test_exported_model_loads(exported_model):
    model_dir, summary = exported_model
    bundle = load_model(model_dir)
    assert bundle.model_id == summary["model_id"]
    assert len(bundle.feature_names) == bundle.manifest["input"]["width"]


def test_changed_bytes_are_refused(model_copy):
    path = model_copy / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as error:
        load_model(model_copy)
    message = str(error.value)
    assert message.startswith(f"{path}: model.onnx does not match its manifest (sha256 ")
    assert "the file was changed; re-export the model or restore the original file" in message


def test_changed_bytes_are_refused_by_model_info(runner, model_copy):
    path = model_copy / "model.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    result = runner.invoke(cli, ["model", "info", str(model_copy)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {path}: model.onnx does not match its manifest")


def test_width_mismatch_is_refused(model_copy):
    path = model_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    count = len(manifest["features"])
    manifest["input"]["width"] = count - 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(ModelError) as error:
        load_model(model_copy)
    assert str(error.value) == (
        f"{path}: manifest lists {count} features but declares input width {count - 1}; "
        "the manifest does not match its model, re-export it"
    )


@pytest.mark.parametrize("name", ["model.pkl", "model.joblib", "model.pickle"])
def test_pickles_are_refused_before_opening(tmp_path, name):
    """The path does not even exist: the refusal comes from the name, not from reading it."""
    path = tmp_path / name
    with pytest.raises(ModelError) as error:
        load_model(path)
    assert str(error.value).startswith(f"{path}: popbatch never loads pickled models")


def test_model_loads_and_scores_without_the_training_stack(exported_model):
    """The scoring side needs only onnxruntime + the manifest: TF, sklearn, xgboost blocked."""
    code = f"""
import sys
for name in ("tensorflow", "keras", "sklearn", "xgboost", "skl2onnx", "tf2onnx", "onnxmltools"):
    sys.modules[name] = None
import numpy as np, onnxruntime as ort
from popbatch.core.bundle import load_model
bundle = load_model({str(exported_model[0])!r})
session = ort.InferenceSession(bundle.onnx_bytes, providers=["CPUExecutionProvider"])
row = np.zeros((1, bundle.manifest["input"]["width"]), np.float32)
probability, label = session.run(None, {{"features": row}})
assert probability.shape == (1,) and label.shape == (1,)
print("scored", float(probability[0]))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("scored ")
