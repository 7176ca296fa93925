"""The embedded default model (popbatch/default_model): shipped, valid, usable without
training extras."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import polars as pl
import pytest
from popbatch.exporter.build import SIZE_BUDGET

import popbatch
from popbatch.cli.main import cli
from popbatch.core.bundle import default_model_dir, load_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "batch" / "sample" / "catalog.csv"
SCHEMA = ROOT / "export" / "manifest_schema.json"


def test_default_model_is_shipped_and_verified():
    bundle = load_model()  # checks sha256 against the manifest
    jsonschema.validate(bundle.manifest, json.loads(SCHEMA.read_text()))
    assert bundle.directory == default_model_dir()
    assert bundle.manifest["label"]["definition"] == "popularity > 71"
    # Every ONNX file the scorer loads, each verified against the manifest: model.onnx and
    # each head file. onnxruntime holds tree ensembles at ~10x their file size: the budget
    # (popbatch export's SIZE_BUDGET) is 20 MB for all of them together.
    heads = bundle.manifest["heads"]
    assert set(bundle.head_bytes) == set(heads) - {"popular"} == {"popularity", "genre"}
    for name, data in bundle.head_bytes.items():
        assert data == (default_model_dir() / heads[name]["file"]).read_bytes()
        assert len(data) == heads[name]["bytes"]
    files = [bundle.onnx_bytes, *bundle.head_bytes.values()]
    assert sum(len(data) for data in files) <= SIZE_BUDGET == 20_000_000


def test_scoring_install_scores_with_the_default_model(tmp_path):
    """TensorFlow, scikit-learn and xgboost unimportable, unpickling an error: score still works."""
    out = tmp_path / "scored.parquet"
    code = f"""
import pickle, sys
for name in ("tensorflow", "keras", "sklearn", "xgboost", "skl2onnx", "tf2onnx", "onnxmltools",
             "joblib"):
    sys.modules[name] = None
def refuse(*args, **kwargs):
    raise AssertionError("the scoring path unpickled something")
pickle.load = pickle.loads = pickle.Unpickler = refuse
from popbatch.cli.main import cli
cli(["score", {str(SAMPLE)!r}, "-o", {str(out)!r}, "--quiet"], prog_name="popbatch")
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    scored = pl.read_parquet(out)
    assert scored.height > 0 and scored["popularity_prob"].is_between(0, 1).all()
    assert scored["model_id"].unique().to_list() == [load_model().model_id]


def test_model_info_shows_the_default_model(runner):
    """Its id and label, and what the manifest says of every head and its test metrics."""
    result = runner.invoke(cli, ["model", "info"])
    assert result.exit_code == 0, result.output
    manifest = load_model().manifest
    assert manifest["model_id"][:12] in result.output
    assert "popularity > 71" in result.output
    stack = manifest["metrics"]["test"]["stack"]
    assert f"test stack: roc_auc {stack['roc_auc']:.4f}, pr_auc {stack['pr_auc']:.4f}" in (
        result.output
    )
    assert "heads       popular, popularity, genre" in result.output
    for name, test in (("popularity", ("r2", "mae")), ("genre", ("accuracy", "top3_accuracy"))):
        head = manifest["heads"][name]
        shown = f"head        {name}: {head['file']} ({head['bytes']:,} bytes)"
        metrics = head["metrics"]["test"]
        metrics = metrics.get("stack", metrics.get("combined", metrics))
        values = ", ".join(f"{m} {metrics[m]:.4f}" for m in test)
        assert shown in result.output and f"test {values}" in result.output, name


def test_default_model_reads_the_catalogs_artist_and_album_history(tmp_path):
    """The embedded default is trained with catalog priors on artists and album_name:
    the same audio with every artist and album unknown (--fill ... =) scores differently,
    and the manifest says how many keys its shipped table knows."""
    bundle = load_model()
    priors = bundle.manifest["priors"]
    assert priors["columns"] == ["artists", "album_name"]
    assert min(priors["extra"]["keys"].values()) > 10_000  # trained on the 100k rows
    sample = ROOT / "batch" / "sample" / "catalog.csv"
    known, unknown = tmp_path / "known.parquet", tmp_path / "unknown.parquet"
    popbatch.score(str(sample), known, record=False)
    fills = {"artists": "", "album_name": ""}
    source = tmp_path / "bare.csv"
    pl.read_csv(sample).drop("artists", "album_name").write_csv(source)
    popbatch.score(str(source), unknown, record=False, fills=fills)
    a, b = pl.read_parquet(known), pl.read_parquet(unknown)
    assert a["track_id"].to_list() == b["track_id"].to_list()
    changed = (a["popularity_pred"] - b["popularity_pred"]).abs() > 1
    assert changed.mean() > 0.5  # the history moves most predictions by more than a point


def test_default_popular_stack_beats_each_of_its_base_learners():
    """The shipped popular head is a stack because, under the recipe's grouped
    cross-validation on the known catalog, it beats every base learner in it (the
    logistic regression, the plain model of the same features, among them) on both
    ROC-AUC and PR-AUC; a stack that loses to its network alone should not ship."""
    cv = load_model().manifest["cv_evaluations"]["known"]["priors"]["popular"]
    models = cv["models"]
    bases = set(models) - {"stack", "majority"}
    assert {"logistic", "ann"} <= bases
    for metric in ("roc_auc", "pr_auc"):
        best = max(models[m][metric]["mean"] for m in bases)
        assert models["stack"][metric]["mean"] > best, metric
        assert cv["stack_vs_best_single"][metric]["mean"] > 0, metric


# Each head's figures that the bar reads; "mae" is lower-is-better.
HEAD_METRICS = {
    "popular": ("roc_auc", "pr_auc"),
    "popularity": ("r2", "mae"),
    "genre": ("accuracy", "top3_accuracy"),
}


@pytest.mark.parametrize("evaluation", ["new_release", "debut"])
def test_default_model_is_not_worse_with_priors_on_new_releases_and_debuts(evaluation):
    """Where the catalog's history is missing (whole albums, whole primary artists held
    out of the folds), every shipped head with priors scores at least as well as the
    same recipe without them, on each of its figures: priors must not hurt there."""
    cv = load_model().manifest["cv_evaluations"][evaluation]
    for head, metrics in HEAD_METRICS.items():
        with_priors, audio = cv["priors"][head], cv["audio_only"][head]
        name = with_priors.get("combined", "stack")
        for metric in metrics:
            ours = with_priors["models"][name][metric]["mean"]
            theirs = audio["models"][audio.get("combined", "stack")][metric]["mean"]
            better = ours <= theirs if metric == "mae" else ours >= theirs
            assert better, f"{evaluation} {head} {metric}: {ours:.4f} vs {theirs:.4f}"
