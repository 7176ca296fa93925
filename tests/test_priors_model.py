"""A model trained with catalog priors: scoring, errors, identity and parity of the
scorer's path (polars lookup + ONNX) with the native one (plain-Python priors + native
models), on rows with unseen keys, nulls, several artists, case and Unicode variants."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

import popbatch
from popbatch.cli.main import cli
from popbatch.core.bundle import load_model
from popbatch.core.errors import ModelError
from tests.conftest import TINY_TRAIN, TRACKS_PRIORS


@pytest.fixture(scope="module")
def model(priors_run):
    return priors_run / "model"


@pytest.fixture(scope="module")
def hard_rows(priors_run, tmp_path_factory):
    """The run's test rows and variants of them with the priors' hard cases, as a CSV
    catalog (genre column named as in a catalog)."""
    from popbatch.exporter.priors import parity_rows

    rows = parity_rows(pl.read_parquet(priors_run / "stack" / "test_rows.parquet"),
                       ("artists", "album_name"))  # fmt: skip
    path = tmp_path_factory.mktemp("hard") / "hard.csv"
    rows.rename({"genre": "track_genre"}).write_csv(path)
    return rows, path


def test_manifest_lists_the_priors_and_model_id_covers_the_table(model, tmp_path):
    manifest = json.loads((model / "manifest.json").read_text())
    priors = manifest["priors"]
    assert priors["columns"] == ["artists", "album_name"]
    assert set(priors["statistics"]) >= {"mean", "share", "count"}
    names = [f["name"] for f in manifest["features"] if f["kind"] == "prior"]
    assert "artists:mean" in names and "album_name:count" in names
    assert priors["extra"]["parity"]["unseen_rows"] > 0
    assert load_model(model).prior_bytes is not None
    # the table is covered: a changed byte is refused
    changed = tmp_path / "changed"
    changed.mkdir()
    for file in model.iterdir():
        (changed / file.name).write_bytes(file.read_bytes())
    table = changed / priors["table_file"]
    table.write_bytes(table.read_bytes()[:-9] + b"x" + table.read_bytes()[-8:])
    with pytest.raises(ModelError, match=r"priors\.parquet does not match its manifest"):
        load_model(changed)
    # and so is the spec: a different smoothing under the same model_id is refused
    (changed / priors["table_file"]).write_bytes((model / priors["table_file"]).read_bytes())
    edited = {**manifest, "priors": {**priors, "smoothing": priors["smoothing"] + 1}}
    (changed / "manifest.json").write_text(json.dumps(edited))
    with pytest.raises(ModelError, match=r"priors\.smoothing"):
        load_model(changed)


def test_scoring_path_equals_native_priors_and_models(priors_run, model, hard_rows, tmp_path):
    """popbatch score (polars priors lookup + ONNX graphs) against the native stack and
    heads on the training code's matrix with the plain-Python priors."""
    from popbatch.exporter.heads import load_heads
    from popbatch.exporter.priors import native_matrix
    from popbatch.models.priors import load as load_priors
    from popbatch.models.stack import NativeStack

    rows, path = hard_rows
    out = tmp_path / "scored.parquet"
    result = CliRunner().invoke(
        cli, ["score", str(path), "--model", str(model), "--output", str(out), "--columns", "all"]
    )
    assert result.exit_code == 0, result.output
    scored = pl.read_parquet(out)
    assert scored.height == rows.height
    stack = NativeStack.load(priors_run / "stack")
    x = native_matrix(rows, load_priors(priors_run / "stack"), stack.genre_vocabulary)
    np.testing.assert_allclose(scored["popularity_prob"], stack.predict_proba(x), atol=1e-5)
    heads = load_heads(priors_run / "stack")
    np.testing.assert_allclose(scored["popularity_pred"], heads["popularity"].predict(x), atol=1e-3)
    index, _ = heads["genre"].predict(x)
    assert scored["genre_pred"].to_list() == [heads["genre"].classes[i] for i in index]
    # the hard cases differ from their originals: the priors are really read
    first = rows.height - 9 * 60
    assert not np.allclose(
        scored["popularity_pred"][first:],
        scored["popularity_pred"][:60].to_numpy().repeat(9)[: rows.height - first],
    )


def test_a_catalog_without_prior_columns_gets_one_line_naming_map_and_fill(model, tmp_path):
    catalog = tmp_path / "no_artists.csv"
    pl.read_csv(TRACKS_PRIORS).drop("artists").write_csv(catalog)
    out = tmp_path / "s.parquet"
    result = CliRunner().invoke(
        cli, ["score", str(catalog), "--model", str(model), "--output", str(out)]
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert "missing column artists" in lines[0]
    assert "--map artists=COLUMN" in lines[0] and "--fill artists=" in lines[0]
    assert not out.exists()
    # --fill artists= (empty: every artist unknown) scores, as a catalog of unknown artists
    filled = CliRunner().invoke(
        cli,
        ["score", str(catalog), "--model", str(model), "--output", str(out), "--fill", "artists="],
    )
    assert filled.exit_code == 0, filled.output
    unknown = tmp_path / "unknown_artists.csv"
    pl.read_csv(TRACKS_PRIORS).with_columns(pl.lit("").alias("artists")).write_csv(unknown)
    out2 = tmp_path / "s2.parquet"
    assert (
        CliRunner()
        .invoke(cli, ["score", str(unknown), "--model", str(model), "--output", str(out2)])
        .exit_code
        == 0
    )
    a, b = pl.read_parquet(out), pl.read_parquet(out2)
    assert a["popularity_prob"].to_list() == b["popularity_prob"].to_list()


def test_a_catalog_of_another_schema_gets_every_missing_column_in_one_line(model, tmp_path):
    """Missing audio, prior and key columns at once: one message naming each and its fix,
    so that another schema is mapped in one go, not one rerun per column."""
    catalog = tmp_path / "other.csv"
    rows = pl.read_csv(TRACKS_PRIORS).drop("time_signature", "album_name")
    rows.rename({"track_id": "id"}).write_csv(catalog)
    args = ["score", str(catalog), "--model", str(model), "-o", str(tmp_path / "s.parquet")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: {catalog}: missing required column time_signature; ")
    assert "; also missing column album_name" in line
    assert "which this model reads artist and album history from" in line
    assert "--fill album_name=" in line
    assert "; also no key column 'track_id'" in line
    assert line.endswith("; name the key with --key COLUMN, or pass --columns all")
    fixed = ["--fill", "time_signature=4", "--fill", "album_name=", "--key", "id"]
    assert CliRunner().invoke(cli, args + fixed).exit_code == 0


def test_the_popularity_head_also_learns_from_rows_whose_album_is_unseen(priors_run):
    """New releases: the head also fits a copy of a quarter of its training rows with
    their album unseen (models.priors.unseen_copy); without those rows it scored new
    releases worse than the audio-only recipe."""
    report = json.loads((priors_run / "report.json").read_text())
    params = report["heads"]["popularity"]["params"]
    train_rows = report["data"]["splits"]["train"]["rows"]
    rows = train_rows - report["data"]["rows"]["outliers_dropped_from_train"]
    assert params["unseen_copies"] == ["album_name"]
    assert 1.15 * rows < params["fit_rows"] < 1.35 * rows


def test_the_popular_stack_also_learns_from_rows_whose_album_is_unseen(priors_run):
    """New releases: the stack's learners and meta learner also fit a copy of a tenth of
    the training rows with their album unseen; without them the stack scored new releases
    below the recipe without priors (docs/history.md)."""
    report = json.loads((priors_run / "report.json").read_text())
    meta = report["metrics"]["meta"]
    train_rows = report["data"]["splits"]["train"]["rows"]
    rows = train_rows - report["data"]["rows"]["outliers_dropped_from_train"]
    assert meta["unseen_copies"] == ["album_name"]
    assert 1.04 * rows < meta["fit_rows"] < 1.16 * rows


def test_a_model_without_priors_scores_a_catalog_without_artists(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", str(TRACKS_PRIORS), "--out", str(out), "--no-priors",
            "--heads", "popular", *TINY_TRAIN]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    assert "priors" not in manifest
    assert all(f["kind"] != "prior" for f in manifest["features"])
    # no priors table holds the test split's labels: its keys are out of sample
    from popbatch.core import fingerprint

    test_keys = pl.read_parquet(out / "stack" / "test.parquet")["track_id"].to_list()
    keys = fingerprint.read_fingerprint(out / "model", manifest)
    assert not fingerprint.seen(fingerprint.key_hashes(test_keys), keys).any()
    catalog = tmp_path / "bare.csv"
    pl.read_csv(TRACKS_PRIORS).drop("artists", "album_name").write_csv(catalog)
    scored = tmp_path / "s.parquet"
    result = CliRunner().invoke(
        cli, ["score", str(catalog), "--model", str(out / "model"), "--output", str(scored)]
    )
    assert result.exit_code == 0, result.output


def test_prior_and_no_priors_together_is_a_usage_error(tmp_path):
    args = ["train", "--data", str(TRACKS_PRIORS), "--out", str(tmp_path / "o"), "--no-priors",
            "--prior", "artists"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "--prior and --no-priors" in result.output


def test_training_without_a_prior_column_names_the_fix(tmp_path):
    data = tmp_path / "no_album.csv"
    pl.read_csv(TRACKS_PRIORS).drop("album_name").write_csv(data)
    result = CliRunner().invoke(cli, ["train", "--data", str(data), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "missing prior column album_name" in result.output
    assert "--no-priors" in result.output and "--map album_name=COLUMN" in result.output


def test_python_api_scores_with_priors(model, tmp_path):
    out = tmp_path / "api.parquet"
    summary = popbatch.score(str(TRACKS_PRIORS), out, model=model, record=False)
    assert summary.rows_scored == pl.read_csv(TRACKS_PRIORS).height


def test_drift_reports_the_share_of_known_artists_and_albums(model, tmp_path):
    manifest = json.loads((model / "manifest.json").read_text())
    trained = manifest["priors"]["extra"]["known_share"]
    assert trained["artists"] >= 0.3  # the fixture's test rows mostly have known artists
    loaded = load_model(model).manifest  # verifies and registers the priors table
    known = popbatch.drift(str(TRACKS_PRIORS), manifest=loaded)
    assert [p.column for p in known.priors] == ["artists", "album_name"]
    assert known.priors[0].known_share > 0.9 and not known.priors[0].drifted
    debuts = tmp_path / "debuts.csv"
    frame = pl.read_csv(TRACKS_PRIORS)
    frame.with_columns(
        pl.format("Debut Artist {}", pl.int_range(pl.len())).alias("artists")
    ).write_csv(debuts)
    report = popbatch.drift(str(debuts), manifest=loaded)
    assert report.priors[0].known_share == 0.0 and report.priors[0].drifted
    assert "known artists" in report.drifted
    result = CliRunner().invoke(cli, ["drift", str(debuts), "--model", str(model)])
    assert "artists (known)" in result.output and "0.0%" in result.output


def test_cv_runs_the_three_honest_evaluations_with_and_without_priors(tmp_path):
    """--cv with priors: known catalog, new release and debut folds, each with the
    recipe's priors and audio-only, in report.json, the manifest and model info."""
    out = tmp_path / "run"
    args = ["train", "--data", str(TRACKS_PRIORS), "--out", str(out), "--heads", "popular",
            "--cv", "2x1", "--cv-jobs", "1", *TINY_TRAIN]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    evaluations = report["cv_evaluations"]
    assert set(evaluations) == {
        f"{e}/{r}" for e in ("known", "new_release", "debut") for r in ("priors", "audio_only")
    }
    assert evaluations["known/priors"]["popular"] == report["cv"]
    for key, heads in evaluations.items():
        assert heads["popular"]["evaluation"] == key.split("/")[0]
        assert "roc_auc" in heads["popular"]["models"]["stack"]
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    assert set(manifest["cv_evaluations"]) == {"known", "new_release", "debut"}
    info = CliRunner().invoke(cli, ["model", "info", str(out / "model")])
    assert "evaluation  debut popular: priors roc_auc" in info.output
    assert "audio only roc_auc" in info.output


def test_the_runs_cell_cache_gives_the_inputs_of_a_fresh_lookup(model):
    """Prior inputs gathered from the per-run cache of worked-out cells (batches that
    repeat cells, a cache that fills up and starts afresh, a batch with more distinct
    cells than it holds) are bit for bit those worked out from scratch."""
    from popbatch.batch.preprocess import Preprocessor
    from popbatch.batch.priors import CellCache
    from popbatch.batch.sources import open_source

    bundle = load_model(model)
    source = open_source([str(TRACKS_PRIORS)])
    preprocessor = Preprocessor(bundle.manifest).bind(source.schema, source.name)
    cache = CellCache()
    cache.CAPACITY = 150
    lookup, positions = preprocessor.priors, preprocessor._prior_index
    batches = list(source.batches(preprocessor.read_columns, 100))
    batches.append(next(source.batches(preprocessor.read_columns, 1_000)))  # > CAPACITY cells
    for batch in batches * 2:  # the second pass finds its cells cached
        cells = preprocessor._prior_cells(batch, None)
        fresh = np.zeros((batch.num_rows, preprocessor.width), np.float32)
        cached = fresh.copy()
        lookup.fill(cells, fresh, positions)
        lookup.fill(cells, cached, positions, cache)
        assert np.array_equal(fresh, cached)
    source.close()


def test_evaluate_slices_rows_by_what_the_priors_know(model, tmp_path):
    """evaluate's "catalog history" slice: rows whose artist the priors never saw are
    debuts, rows with a known artist and an unseen album new releases; each group's
    figures are reported apart."""
    frame = pl.read_csv(TRACKS_PRIORS).head(300)
    n = frame.height
    artists = frame["artists"].to_list()
    albums = frame["album_name"].to_list()
    for i in range(0, n, 3):  # a third debuts, a third new releases
        artists[i] = f"Nobody Ever Heard Of {i}"
    for i in range(1, n, 3):
        albums[i] = f"An Album Nobody Labelled {i}"
    path = tmp_path / "mixed.csv"
    fresh_ids = [f"fresh{i:05d}" for i in range(n)]  # not in the model's training keys
    frame.with_columns(
        pl.Series("artists", artists),
        pl.Series("album_name", albums),
        pl.Series("track_id", fresh_ids),
    ).write_csv(path)
    args = ["evaluate", str(path), "--model", str(model), "--json", "--no-log"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    groups = {
        g["group"]: g["rows"]
        for g in report["slices"]["catalog history"]["heads"]["popularity"]["all"]
    }
    assert groups["new artist"] == len(range(0, n, 3))
    assert groups["known artist, new album"] == len(range(1, n, 3))
    rest = n - groups["new artist"] - groups["known artist, new album"]
    assert groups["known artist and album"] == rest


def test_artists_written_as_a_list_are_the_same_artists(model, tmp_path):
    """Catalogs such as the Spotify 1921-2020 dataset write ``['A', "B's"]`` where this
    one writes ``A;B's``: the same keys, so the same scores."""
    rows = pl.read_csv(TRACKS_PRIORS)
    names = pl.col("artists").str.split(";")
    quoted = names.list.eval(
        pl.when(pl.element().str.contains("'"))
        .then('"' + pl.element() + '"')
        .otherwise("'" + pl.element() + "'")
    )
    as_list = rows.with_columns(("[" + quoted.list.join(", ") + "]").alias("artists"))
    assert as_list["artists"].str.starts_with("['").any()
    assert rows["artists"].str.contains(";").any()  # several artists in a cell, too
    # unquoted, the brackets are part of one name: that artist is unknown
    as_name = rows.with_columns(("[" + pl.col("artists") + "]").alias("artists"))

    def scores(frame: pl.DataFrame, name: str) -> pl.Series:
        source, out = tmp_path / f"{name}.csv", tmp_path / f"{name}.parquet"
        frame.write_csv(source)
        popbatch.score(str(source), out, model=model, record=False)
        return pl.read_parquet(out)["popularity_prob"]

    plain = scores(rows, "plain")
    assert scores(as_list, "list").equals(plain)
    assert not scores(as_name, "name").equals(plain)
