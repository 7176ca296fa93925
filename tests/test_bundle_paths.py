"""A model bundle names its files in manifest.json; only plain names inside the bundle load.

A bundle is untrusted input, like a zip archive. Each test here moves a genuine file
out of a copy of the default model, points the manifest at it (an absolute path,
``..``, or a symlink) and re-seals the manifest (its hashes and model_id recomputed),
so the hashes no longer stop it: only the path rule does. Without that rule every
one of these bundles loads the outside file.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import popbatch
from popbatch.core import identity
from popbatch.core.bundle import bundle_file, check_file_name, default_model_dir, load_model
from popbatch.core.errors import ModelError

TRACKS = Path(__file__).parent / "data" / "tracks_2000.csv"


@pytest.fixture
def bundle(tmp_path) -> Path:
    target = tmp_path / "bundle" / "model"
    shutil.copytree(default_model_dir(), target, ignore=shutil.ignore_patterns("__*"))
    return target


def _point(bundle: Path, field: str, how: str) -> str:
    """Move the file ``field`` names to a folder beside the bundle and point the manifest
    at it ``how``: ``absolute``, ``dotdot`` or ``symlink``; reseal. Returns the new value."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    entry, key = _entry(manifest, field)
    name = entry[key]
    outside = bundle.parent / "elsewhere"
    outside.mkdir(exist_ok=True)
    shutil.move(bundle / name, outside / name)
    if how == "absolute":
        value = str(outside / name)
    elif how == "dotdot":
        value = f"../elsewhere/{name}"
    else:
        value = f"link-{name}"
        os.symlink(outside / name, bundle / value)
    entry[key] = value
    if field == "model_file":
        manifest["heads"]["popular"]["file"] = value  # the popular head is model.onnx
    onnx = outside / name if field == "model_file" else bundle / manifest["model_file"]
    identity.seal(manifest, onnx.read_bytes())
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return value


def _entry(manifest: dict, field: str) -> tuple[dict, str]:
    if field == "model_file":
        return manifest, "model_file"
    if field == "background.file":
        return manifest["background"], "file"
    head = field.split(".")[1]
    return manifest["heads"][head], "file"


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
@pytest.mark.parametrize("field", ["model_file", "heads.genre.file"])
def test_a_manifest_naming_a_file_outside_the_bundle_is_refused(bundle, field, how):
    value = _point(bundle, field, how)
    with pytest.raises(ModelError) as error:
        load_model(bundle)
    message = str(error.value)
    assert "\n" not in message
    assert f"{field} " in message and value.split("/")[-1] in message
    assert "model directory" in message


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_background_rows_outside_the_bundle_are_refused(bundle, how):
    _point(bundle, "background.file", how)
    load_model(bundle)  # the scorer does not read background rows
    with pytest.raises(ModelError, match=r"background\.file .*model directory"):
        popbatch.explain(TRACKS, model=bundle, top=1)


def test_a_symlink_to_a_file_inside_the_bundle_loads(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    os.symlink(bundle / "genre.onnx", bundle / "genre-link.onnx")
    manifest["heads"]["genre"]["file"] = "genre-link.onnx"
    identity.seal(manifest, (bundle / "model.onnx").read_bytes())
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert "genre" in load_model(bundle).heads


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../model.onnx", "sub/model.onnx", "..", ".", "", "a\\b", "a\x00b", 3]
)
def test_only_plain_names_pass(tmp_path, name):
    with pytest.raises(ModelError, match=r"some\.field must be a plain file name"):
        bundle_file(tmp_path, name, "some.field")
    with pytest.raises(ModelError):
        check_file_name(name, "some.field")


def test_plain_names_pass(tmp_path):
    assert bundle_file(tmp_path, "model.onnx", "model_file") == tmp_path / "model.onnx"
    assert check_file_name("priors.parquet", "lookup.file") == "priors.parquet"
