"""popbatch drift: PSI, out-of-range and unseen-genre shares against a manifest's training stats.

The manifest is built here from tests/data/tracks_2000.csv with the same
functions export uses (batch.stats.numeric_stats / onehot_share), and checked
against export/manifest_schema.json; drift needs no ONNX model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import jsonschema
import numpy as np
import polars as pl
import pytest
from popbatch.batch.drift import THRESHOLDS, DriftCheck, check_drift

from popbatch.cli.main import cli
from popbatch.core.errors import EXIT_DRIFT
from popbatch.core.features import (
    GENRE_COLUMN,
    NUMERIC_FEATURES,
    OTHER_GENRE,
    normalized_names,
    onehot_name,
    parse_explicit,
)
from popbatch.core.stats import bin_counts, numeric_stats, onehot_share, psi
from tests.conftest import SMALL_TITLE_CASE, TRACKS_2000

ROOT = Path(__file__).resolve().parents[1]


def training_frame(path: Path = TRACKS_2000) -> pl.DataFrame:
    df = pl.read_csv(path, infer_schema=False)
    df = df.rename(normalized_names(df.columns))
    numeric = [
        parse_explicit() if f.name == "explicit" else pl.col(f.name).cast(pl.Float64)
        for f in NUMERIC_FEATURES
    ]
    return df.with_columns(numeric)


def build_manifest(train: pl.DataFrame, vocabulary: list[str] | None = None) -> dict:
    """A format-1 manifest whose training statistics describe ``train``."""
    if vocabulary is None:
        vocabulary = sorted(train[GENRE_COLUMN].unique().to_list())
    features = []
    for f in NUMERIC_FEATURES:
        stats = numeric_stats(train[f.name].to_numpy())
        features.append(
            {
                "name": f.name,
                "kind": "numeric",
                "column": f.name,
                "valid_min": f.valid_min,
                "valid_max": f.valid_max,
                "impute": stats.pop("impute"),
                "train": stats,
            }
        )
    genres = train[GENRE_COLUMN]
    for genre in [*vocabulary, OTHER_GENRE]:
        hot = ~genres.is_in(vocabulary) if genre == OTHER_GENRE else genres == genre
        features.append(
            {
                "name": onehot_name(genre),
                "kind": "onehot",
                "column": GENRE_COLUMN,
                "category": genre,
                "train": onehot_share(hot.cast(pl.Float64).to_numpy()),
            }
        )
    digest = hashlib.sha256(b"no model: drift reads only the manifest").hexdigest()
    return {
        "format_version": 1,
        "model_file": "model.onnx",
        "model_id": digest,
        "created_at": "2026-11-21T00:00:00+00:00",
        "popbatch_version": "0.1.0",
        "training_data": {"file": TRACKS_2000.name, "sha256": digest, "rows": train.height},
        "label": {"column": "popularity", "popular_above": 71, "definition": "popularity > 71"},
        "threshold": 0.5,
        "input": {"name": "features", "dtype": "float32", "width": len(features)},
        "outputs": {"probability": "probability", "label": "label"},
        "key": "track_id",
        "genre": {
            "column": GENRE_COLUMN,
            "vocabulary": vocabulary,
            "other": OTHER_GENRE,
            "optional": True,
        },
        "features": features,
        "metrics": {},
        "parity": {"rows": 0, "max_abs_diff": 0.0, "labels_identical": True},
        "opsets": {"": 17},
        "packages": {},
    }


@pytest.fixture(scope="module")
def manifest() -> dict:
    built = build_manifest(training_frame())
    schema = json.loads((ROOT / "export" / "manifest_schema.json").read_text())
    jsonschema.validate(built, schema)
    return built


@pytest.fixture
def model_dir(tmp_path, manifest) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def catalog(tmp_path) -> Path:
    """1,000 rows drawn from the training fixture, as the original CSV (Title-free headers)."""
    rows = pl.read_csv(TRACKS_2000, infer_schema=False).sample(1000, seed=7)
    path = tmp_path / "catalog.csv"
    rows.write_csv(path)
    return path


def drift_json(runner, args: list[str]) -> tuple[int, dict]:
    result = runner.invoke(cli, ["drift", *args, "--format", "json"])
    assert result.exit_code in (0, EXIT_DRIFT), result.output
    return result.exit_code, json.loads(result.output)


def test_catalog_drawn_from_training_data_has_no_drift(runner, catalog, model_dir):
    code, report = drift_json(runner, [str(catalog), "--model", str(model_dir)])
    assert code == 0
    assert report["drift"] is False and report["drifted"] == []
    assert report["rows"] == 1000
    assert {f["feature"] for f in report["features"]} == {f.name for f in NUMERIC_FEATURES}
    assert all(f["status"] == "ok" and f["values"] == 1000 for f in report["features"])
    assert all(f["out_of_range_share"] == 0 for f in report["features"])  # a subset of training
    assert report["genre"]["unseen_share"] == 0


def test_doubled_tempo_is_flagged_with_exit_code_3(runner, catalog, model_dir, tmp_path):
    doubled = tmp_path / "doubled.csv"
    pl.read_csv(catalog).with_columns(pl.col("tempo") * 2).write_csv(doubled)
    result = runner.invoke(cli, ["drift", str(doubled), "--model", str(model_dir)])
    assert result.exit_code == EXIT_DRIFT == 3
    tempo = next(line for line in result.output.splitlines() if line.startswith("tempo "))
    assert tempo.endswith("DRIFT")
    assert result.output.splitlines()[-1].startswith("drift in tempo: 1000 rows of")
    code, report = drift_json(runner, [str(doubled), "--model", str(model_dir)])
    assert code == EXIT_DRIFT
    assert report["drifted"] == ["tempo"]
    (feature,) = [f for f in report["features"] if f["feature"] == "tempo"]
    assert feature["psi"] >= THRESHOLDS.psi
    assert feature["out_of_range_share"] >= THRESHOLDS.out_of_range


def test_psi_and_range_share_match_an_independent_computation(catalog, manifest):
    """The accumulated result equals binning the whole column at once with numpy."""
    report = check_drift(catalog, manifest, batch_size=97)
    values = training_frame(catalog)
    for f, spec in zip(report.features, manifest["features"], strict=False):
        column = values[spec["column"]].to_numpy()
        edges, shares = spec["train"]["bins"]["edges"], spec["train"]["bins"]["shares"]
        assert f.psi == pytest.approx(psi(np.asarray(shares), bin_counts(column, edges)))
        outside = np.mean((column < spec["train"]["min"]) | (column > spec["train"]["max"]))
        assert f.out_of_range_share == pytest.approx(outside)


def test_batch_size_does_not_change_the_result(catalog, manifest):
    small = check_drift(catalog, manifest, batch_size=50).to_dict()
    whole = check_drift(catalog, manifest, batch_size=100_000).to_dict()
    assert small == whole


def test_parquet_and_duckdb_inputs_give_the_same_result(catalog, manifest, tmp_path):
    frame = pl.read_csv(catalog)
    parquet = tmp_path / "catalog.parquet"
    frame.write_parquet(parquet)
    db = tmp_path / "catalog.duckdb"
    with duckdb.connect(str(db)) as con:
        con.register("frame", frame.to_arrow())
        con.execute("CREATE TABLE tracks AS SELECT * FROM frame")
    from_csv = check_drift(catalog, manifest).to_dict()
    for source, table in ((parquet, None), (db, "tracks")):
        result = check_drift(source, manifest, table=table, batch_size=128).to_dict()
        result["input"] = from_csv["input"]
        assert result == from_csv, source


def test_unseen_genres_are_flagged(runner, tmp_path):
    """Trained on the 40 first genres only, the full fixture holds mostly unseen genres."""
    train = training_frame()
    vocabulary = sorted(train[GENRE_COLUMN].unique().to_list())[:40]
    manifest = build_manifest(train.filter(pl.col(GENRE_COLUMN).is_in(vocabulary)), vocabulary)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    code, report = drift_json(runner, [str(TRACKS_2000), "--model", str(folder)])
    assert code == EXIT_DRIFT
    assert "genre" in report["drifted"]
    unseen = (~train[GENRE_COLUMN].is_in(vocabulary)).mean()
    assert report["genre"]["unseen_share"] == pytest.approx(unseen)


def test_title_case_headers_are_normalised_and_absent_columns_reported(model_dir, manifest):
    """spotify_data_small.csv: 'Duration (ms)'-style headers, no time_signature, no genre."""
    report = check_drift(SMALL_TITLE_CASE, manifest)
    by_name = {f.feature: f for f in report.features}
    assert by_name["time_signature"].status == "missing"
    assert not by_name["time_signature"].drifted
    assert by_name["duration_ms"].values == report.rows == 227
    assert report.genre is not None and report.genre.status == "missing"


def test_missing_input_is_exit_2(runner, model_dir, tmp_path):
    missing = tmp_path / "nope.csv"
    result = runner.invoke(cli, ["drift", str(missing), "--model", str(model_dir)])
    assert result.exit_code == 2
    assert result.output == f"Error: {missing}: no such file\n"


def test_model_without_manifest_is_exit_1(runner, catalog, tmp_path):
    result = runner.invoke(cli, ["drift", str(catalog), "--model", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {tmp_path / 'manifest.json'}: no manifest")


def test_manifest_without_training_stats_is_a_model_error(manifest):
    from popbatch.core.errors import ModelError

    stripped = json.loads(json.dumps(manifest))
    del stripped["features"][0]["train"]["bins"]
    with pytest.raises(ModelError, match="'duration_ms' has no training statistics"):
        DriftCheck(stripped)


def test_duckdb_input_needs_a_table(runner, model_dir, tmp_path):
    db = tmp_path / "c.duckdb"
    duckdb.connect(str(db)).close()
    result = runner.invoke(cli, ["drift", str(db), "--model", str(model_dir)])
    assert result.exit_code == 2
    assert result.output == f"Error: {db}: a DuckDB input needs --table NAME or --query SQL\n"


def test_other_rows_of_the_same_dataset_have_no_drift(runner, model_dir):
    """batch/sample/catalog.csv holds 1,000 other real rows of the same Spotify dataset."""
    sample = ROOT / "batch" / "sample" / "catalog.csv"
    code, report = drift_json(runner, [str(sample), "--model", str(model_dir)])
    assert code == 0, report["drifted"]


def test_help_states_thresholds_and_exit_code(runner):
    result = runner.invoke(cli, ["drift", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "PSI >= 0.2, out-of-range share >= 5%, unseen genre share >= 10%" in text
    assert "Exit code 0 when nothing drifted, 3 when something did" in text


def test_map_and_fill_mean_what_they_mean_for_score(runner, model_dir, tmp_path):
    """The shared read options: a renamed column is found with --map, a missing one
    is supplied with --fill, and a DuckDB --query is read like a --table."""
    frame = pl.read_csv(TRACKS_2000, infer_schema_length=0)
    renamed = tmp_path / "renamed.csv"
    frame.rename({"danceability": "Dance Score"}).drop("liveness").write_csv(renamed)
    model = ["--model", str(model_dir)]
    _, plain = drift_json(runner, [str(renamed), *model])
    statuses = {f["feature"]: f["status"] for f in plain["features"]}
    assert statuses["danceability"] == statuses["liveness"] == "missing"

    args = [str(renamed), *model, "--map", "danceability=Dance Score", "--fill", "liveness=0.2"]
    _, mapped = drift_json(runner, args)
    _, original = drift_json(runner, [str(TRACKS_2000), *model])
    by_name = {f["feature"]: f for f in mapped["features"]}
    expected = next(f for f in original["features"] if f["feature"] == "danceability")
    assert by_name["danceability"] == expected
    assert by_name["liveness"]["values"] == frame.height  # the constant, on every row

    db = tmp_path / "c.duckdb"
    with duckdb.connect(str(db)) as con:
        con.sql(f"CREATE TABLE t AS SELECT * FROM read_csv('{TRACKS_2000}', all_varchar=true)")
    _, queried = drift_json(runner, [str(db), "--query", "SELECT * FROM t", *model])
    assert queried["features"] == original["features"]


def test_fill_of_a_column_that_is_no_model_input_is_refused(runner, model_dir):
    result = runner.invoke(
        cli, ["drift", str(TRACKS_2000), "--model", str(model_dir), "--fill", "mood=happy"]
    )
    assert result.exit_code == 2
    assert result.output.startswith("Error: --fill mood=happy: mood is not a model input;")
