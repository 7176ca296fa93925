"""A model's id covers model.onnx AND the manifest's scoring contract (popbatch.core.identity).

Every edit that can change a prediction is refused before anything is read or
written: exit 1, one line naming the part that differs and the fix. Edits of
descriptive fields are allowed and keep the id.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from conftest import FORMAT1_MODEL, TRACKS_2000
from model_factory import validate_manifest

from popbatch.cli.main import cli
from popbatch.core.bundle import load_model
from popbatch.core.errors import ModelError
from popbatch.core.identity import contract_parts, seal

SAMPLE = Path(__file__).resolve().parents[1] / "batch" / "sample" / "catalog.csv"
FIX = "re-export the model (popbatch export) or restore the original manifest.json"


def swap(i: int, j: int) -> Callable[[dict], None]:
    def edit(m: dict) -> None:
        m["features"][i], m["features"][j] = m["features"][j], m["features"][i]

    return edit


def set_in(path: str, value) -> Callable[[dict], None]:
    """An edit setting ``a.b`` or ``features[3].impute`` to ``value``."""

    def edit(m: dict) -> None:
        target = m
        parts = path.replace("[", ".").replace("]", "").split(".")
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        last = parts[-1]
        target[int(last) if last.isdigit() else last] = value

    return edit


def replace_genre(m: dict) -> None:
    m["genre"]["vocabulary"][0] = "polka"


def add_head(m: dict) -> None:
    m["heads"] = [{"name": "popularity", "output": "popularity_pred", "kind": "regression"}]


# (edit, the part the message must name)
EDITS = {
    "feature order": (swap(3, 4), "features[3] (key)"),
    "feature name": (set_in("features[2].name", "dance"), "features[2] (dance)"),
    "feature column": (set_in("features[5].column", "volume"), "features[5] (loudness)"),
    "valid range min": (set_in("features[3].valid_min", 0.2), "features[3] (energy)"),
    "valid range max": (set_in("features[12].valid_max", 250), "features[12] (tempo)"),
    "impute value": (set_in("features[0].impute", 1.0), "features[0] (duration_ms)"),
    "genre vocabulary": (replace_genre, "genre.vocabulary"),
    "genre other bucket": (set_in("genre.other", "misc"), "genre.other"),
    "genre optional": (set_in("genre.optional", False), "genre.optional"),
    "threshold": (set_in("threshold", 0.25), "threshold"),
    "output name": (set_in("outputs.probability", "prob"), "outputs.probability"),
    "input name": (set_in("input.name", "x"), "input.name"),
    "key column": (set_in("key", "isrc"), "key"),
    "head definition added": (add_head, "heads.count"),
}

DESCRIPTIVE = {
    "metrics": set_in("metrics", {"note": "edited"}),
    "created_at": set_in("created_at", "2030-01-01T00:00:00Z"),
    "drift statistics": set_in("features[0].train.mean", 1.0),
    "training data": set_in("training_data.rows", 1),
}


def edited_copy(source: Path, target: Path, edit: Callable[[dict], None]) -> Path:
    shutil.copytree(source, target)
    path = target / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest, indent=2))
    return target


def score(runner, model: Path, out: Path):
    return runner.invoke(cli, ["score", str(TRACKS_2000), "-o", str(out), "--model", str(model)])


def refused(result, out_dir: Path) -> str:
    """The one error line of a refused run that wrote nothing."""
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert list(out_dir.iterdir()) == [], "a refused model must not write anything"
    return result.output


@pytest.mark.parametrize("kind", list(EDITS))
def test_each_contract_edit_is_refused_naming_the_part(runner, model_dir, tmp_path, kind):
    edit, part = EDITS[kind]
    model = edited_copy(model_dir, tmp_path / "model", edit)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    line = refused(score(runner, model, out_dir / "scored.parquet"), out_dir)
    assert line.startswith(f"Error: {model / 'manifest.json'}: {part}"), line
    assert FIX in line


def test_the_issue_reproduction_on_a_format_1_model_is_refused(runner, tmp_path):
    """Format 1 (model_id = sha256 of model.onnx): checked against popbatch's record."""
    model = edited_copy(FORMAT1_MODEL, tmp_path / "model", swap(3, 4))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = runner.invoke(
        cli, ["score", str(SAMPLE), "-o", str(out_dir / "s.parquet"), "--model", str(model)]
    )
    line = refused(result, out_dir)
    assert "features[3] (key), features[4] (energy) differ from what model_id cad3210c7d94" in line


@pytest.mark.parametrize("kind", list(DESCRIPTIVE))
def test_descriptive_edits_are_allowed_and_keep_the_id(runner, model_dir, tmp_path, kind):
    model = edited_copy(model_dir, tmp_path / "model", DESCRIPTIVE[kind])
    out = tmp_path / "scored.parquet"
    result = score(runner, model, out)
    assert result.exit_code == 0, result.output
    expected = json.loads((model_dir / "manifest.json").read_text())["model_id"]
    assert pl.read_parquet(out)["model_id"].unique().to_list() == [expected]


def test_a_heads_metrics_are_descriptive_its_classes_are_contract(tmp_path):
    """Two runs of one command give the same ONNX bytes but metrics that can differ in
    their last digits: the id must not depend on them; a genre name must."""
    default = load_model()
    metrics = edited_copy(
        default.directory, tmp_path / "m", set_in("heads.popularity.metrics", {"note": "x"})
    )
    assert load_model(metrics).model_id == default.model_id
    classes = edited_copy(default.directory, tmp_path / "c", set_in("heads.genre.classes[0]", "x"))
    with pytest.raises(ModelError, match=r"heads\.genre"):
        load_model(classes)


def test_resealing_a_contract_edit_gives_a_new_model_id(model_dir, tmp_path):
    """The only way to score with an edited contract is a new identity (what export does)."""
    model = edited_copy(model_dir, tmp_path / "model", set_in("threshold", 0.25))
    path = model / "manifest.json"
    manifest = seal(json.loads(path.read_text()), (model / "model.onnx").read_bytes())
    path.write_text(json.dumps(manifest))
    validate_manifest(model)
    assert load_model(model).model_id != load_model(model_dir).model_id


def test_an_edited_identity_block_is_refused(model_dir, tmp_path):
    """Recomputing a part's digest without a new model_id does not get past the check."""

    def edit(m: dict) -> None:
        m["threshold"] = 0.25
        m["identity"]["contract"]["threshold"] = seal(dict(m), b"")["identity"]["contract"][
            "threshold"
        ]

    model = edited_copy(model_dir, tmp_path / "model", edit)
    with pytest.raises(ModelError, match="is not the hash of the manifest's identity block"):
        load_model(model)


def test_an_unknown_format_1_bundle_is_refused_with_the_fix(model_dir, tmp_path):
    def downgrade(m: dict) -> None:
        m["format_version"] = 1
        m["model_id"] = m.pop("identity")["model_sha256"]

    model = edited_copy(model_dir, tmp_path / "model", downgrade)
    with pytest.raises(ModelError) as error:
        load_model(model)
    assert "manifest format 1 ties model_id to model.onnx only" in str(error.value)
    assert "popbatch export RUN_DIR --out DIR" in str(error.value)


def test_popbatch_0_1_0s_default_model_still_loads_with_its_id():
    bundle = load_model(FORMAT1_MODEL)
    assert bundle.manifest["format_version"] == 1
    assert bundle.model_id == "cad3210c7d946beb93e0ffaf877aac21879e2a970a74eab20dbe833f6ef0db55"


def test_contract_parts_leave_out_drift_statistics(model_dir):
    manifest = json.loads((model_dir / "manifest.json").read_text())
    parts = contract_parts(manifest)
    assert "train" not in parts["features[0]"] and "impute" in parts["features[0]"]
    assert parts["features.count"] == len(manifest["features"])
    assert not any(p.startswith(("metrics", "created_at", "label")) for p in parts)


def test_model_info_says_what_the_id_covers(runner, model_dir):
    result = runner.invoke(cli, ["model", "info", str(model_dir)])
    assert result.exit_code == 0, result.output
    covers = next(line for line in result.output.splitlines() if line.startswith("id covers"))
    assert "model.onnx (sha256 " in covers
    assert "scoring contract (input, outputs, threshold, key, genre, features)" in covers
    old = runner.invoke(cli, ["model", "info", str(FORMAT1_MODEL)])
    assert "format 1: id = its sha256" in old.output
