"""Every maintained benchmark runs in its ``--quick`` mode on a tiny input, so a bench script
that stops working fails the suite. Their numbers are never asserted (timings depend on the
machine); what each run must produce is (rows, columns, which measurements, outputs)."""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

import popbatch
from popbatch.core.bundle import default_model_dir
from popbatch.core.scored import scored_schema

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "batch" / "sample" / "catalog.csv"
SAMPLE_ROWS = 1_000
MAINTAINED = {
    "ab", "app", "bare", "baseline", "catalog", "cells", "drift_memory", "explain", "floor",
    "frontier", "graph_ab", "heads",
    "memory", "nightly", "priors", "run", "spark", "stages", "unseen_share",
}  # fmt: skip
HELPERS = {"__init__", "procstat"}  # imported by the tools, not run on their own


def bench(*args: str, timeout: float = 300) -> str:
    """Run ``python bench/SCRIPT ARGS`` in a fresh process; returns its stdout."""
    command = [sys.executable, *args]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def in_process(name: str, *argv: str) -> str:
    """Run ``bench/NAME.py``'s main(argv) in this process (no interpreter start-up to pay);
    returns what it printed."""
    module = importlib.import_module(f"bench.{name}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        module.main(list(argv))
    return out.getvalue()


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_every_script_in_bench_is_a_maintained_tool_with_a_quick_mode():
    """A new script must join the list (and get a test below); a one-off experiment
    does not stay in bench/."""
    scripts = {p.stem for p in (ROOT / "bench").glob("*.py")}
    assert scripts - HELPERS == MAINTAINED
    for name in sorted(MAINTAINED):
        text = (ROOT / "bench" / f"{name}.py").read_text()
        # its own --quick, or the shared parser's (bench/__init__.py)
        assert '"--quick"' in text or "model_catalog_parser(" in text, name


def test_no_bench_script_imports_tests_or_patches_private_code():
    for path in (ROOT / "bench").glob("*.py"):
        text = path.read_text()
        assert "from tests" not in text and "import tests" not in text, path.name
        for private in ("._matrix", "._commit_duckdb", "sinks._"):
            assert private not in text, (path.name, private)


# -- catalog and floor ---------------------------------------------------------------------


def build_catalog(rows: int, path: Path) -> Path:
    """The bench's own catalog (fixture rows tiled with jitter), ``rows`` rows."""
    bench("bench/catalog.py", str(rows), str(path))
    return path


def test_catalog_quick_builds_a_thousand_tiled_fixture_rows(tmp_path):
    in_process("catalog", "50000", str(tmp_path / "c.parquet"), "--quick")
    table = pq.read_table(tmp_path / "c.parquet")
    assert table.num_rows == SAMPLE_ROWS
    fixture = pl.read_csv(ROOT / "tests" / "data" / "tracks_2000.csv", infer_schema=False)
    expected = [f"{key}-0" for key in fixture["track_id"].head(SAMPLE_ROWS)]  # the first tile
    assert table["track_id"].to_pylist() == expected


def run_floor(catalog: Path, output: Path, *options: str) -> dict:
    return last_json(bench("bench/floor.py", str(catalog), str(output), *options))


def layout(path: Path) -> list[tuple[str, str, bool]]:
    """(column, compression, dictionary-encoded) of the first row group of a Parquet file."""
    group = pq.ParquetFile(path).metadata.row_group(0)
    columns = [group.column(i) for i in range(group.num_columns)]
    return [(c.path_in_schema, c.compression, "RLE_DICTIONARY" in c.encodings) for c in columns]


def test_floor_writes_the_scored_table(tmp_path):
    """bench/floor.py: every catalog row, in batches, with the scored table's columns and types."""
    catalog = build_catalog(700, tmp_path / "catalog.parquet")
    done = run_floor(catalog, tmp_path / "floor.parquet", "--quick")
    assert (done["rows"], done["batches"]) == (700, 3)  # --quick: batches of 256
    written = pq.read_table(tmp_path / "floor.parquet")
    key = pq.read_schema(catalog).field("track_id")
    expected = scored_schema([key], popbatch.load_model().heads)
    assert list(zip(written.schema.names, written.schema.types, strict=True)) == list(
        zip(expected.names, expected.types, strict=True)
    )
    assert written.num_rows == 700
    assert written["track_id"].equals(pq.read_table(catalog, columns=["track_id"])["track_id"])


def test_floor_reads_and_writes_as_popbatch_score(tmp_path):
    """The floor is popbatch score less the work: the same columns read, the same batches,
    the same schema, compression and dictionary encoding written."""
    catalog = build_catalog(700, tmp_path / "catalog.parquet")
    run_floor(catalog, tmp_path / "floor.parquet", "--batch-size", "256")
    popbatch.score(catalog, tmp_path / "scored.parquet", batch_size=256)
    floor, scored = (
        pq.ParquetFile(tmp_path / "floor.parquet"),
        pq.ParquetFile(tmp_path / "scored.parquet"),
    )
    assert floor.schema_arrow == scored.schema_arrow
    assert layout(tmp_path / "floor.parquet") == layout(tmp_path / "scored.parquet")
    groups = [
        f.metadata.row_group(i).num_rows for f in (floor, scored) for i in range(f.num_row_groups)
    ]
    assert groups == [256, 256, 188] * 2

    from popbatch.batch.preprocess import Preprocessor

    spec = importlib.util.spec_from_file_location("floor", ROOT / "bench" / "floor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    manifest, schema = popbatch.load_model().manifest, pq.read_schema(catalog)
    assert module.read_columns(manifest, schema) == Preprocessor(manifest).bind(schema).read_columns


# -- inference alone -------------------------------------------------------------------------


def test_bare_quick_measures_one_small_batch_size():
    done = last_json(in_process("bare", str(default_model_dir()), str(SAMPLE), "--quick"))
    assert done["width"] == popbatch.load_model().manifest["input"]["width"]
    assert set(done["rows_per_second"]) == set(done["rows_per_cpu_second"]) == {"1024"}
    assert done["rows_per_second"]["1024"] > 0


def test_heads_quick_measures_every_head_subset():
    done = last_json(in_process("heads", str(default_model_dir()), str(SAMPLE), "--quick"))
    heads = popbatch.load_model().heads
    extra = [h for h in heads if h != "popular"]
    expected = {"popular", *(f"popular,{h}" for h in extra), ",".join(heads)}
    assert set(done["rows_per_second"]) == expected
    assert set(done["head_bytes"]) == set(extra)


def test_graph_ab_quick_prices_every_head_of_every_model():
    model = str(default_model_dir())
    done = last_json(in_process("graph_ab", model, model, "--catalog", str(SAMPLE), "--quick"))
    assert done["rows"] == 1_024 and done["rounds"] == 1  # --quick: one slice, one round
    (costs,) = done["us_per_row_cpu"].values()  # one directory, given twice
    assert set(costs) == {"popular", "popularity", "genre", "all"}
    assert costs["all"] == pytest.approx(sum(v for h, v in costs.items() if h != "all"), abs=2e-3)
    assert all(v > 0 for v in costs.values())


def test_cells_quick_rewrites_the_genre_head_and_keeps_its_outputs():
    """bench/cells.py: the per-cell genre head gives the shipped head's outputs bit for bit."""
    pytest.importorskip("onnx", reason="needs the test extra")
    done = last_json(in_process("cells", "--catalog", str(SAMPLE), "--quick"))
    assert done["genre_prob_identical"] is True
    assert done["rows"] == SAMPLE_ROWS and done["rounds"] == 1
    manifest = popbatch.load_model().manifest
    shares = [f for f in manifest["features"] if ":log_genre=" in f["name"]]
    assert done["row_inputs"] == len(manifest["features"]) - len(shares) == 135
    for side in ("full", "per_cell"):
        assert set(done["us_per_row_cpu"][side]) == {"preprocess", "genre_inference"}


def test_unseen_share_quick_cross_validates_the_popularity_head_per_share(tmp_path):
    pytest.importorskip("sklearn", reason="cross-validation trains: the train extra")
    out = tmp_path / "shares.json"
    in_process(
        "unseen_share", "--quick", "--artist-shares", "0", "1", "--genre", "--json", str(out)
    )
    done = json.loads(out.read_text())
    results = done["results"]
    assert [(r["share"], r["artist_share"], r["evaluation"]) for r in results] == [
        (0.0, 0.0, "new_release"), (0.0, 1.0, "new_release"),
        (1.0, 0.0, "new_release"), (1.0, 1.0, "new_release"),
    ]  # fmt: skip
    assert done["rows"] > 1_000
    # the share reaches the head: the copies change what it learns
    assert results[0]["r2"] != results[2]["r2"] and results[0]["mae"] != results[2]["mae"]
    # the artist share reaches the prior folds: every artist held out changes the inputs
    assert results[0]["r2"] != results[1]["r2"]
    assert results[0]["popular_roc_auc"] != results[1]["popular_roc_auc"]
    # --genre cross-validates the genre head in the same folds
    assert results[0]["genre_accuracy"] != results[1]["genre_accuracy"]
    assert all(0 < r["genre_accuracy"] <= r["genre_top3_accuracy"] <= 1 for r in results)


def test_explain_quick_counts_the_tracks_features_and_evaluations(tmp_path):
    out = tmp_path / "explain.json"
    argv = [str(default_model_dir()), str(SAMPLE), "--quick", "--json", str(out)]
    done = last_json(in_process("explain", *argv))
    assert json.loads(out.read_text()) == done
    assert done["tracks"] == 3 and done["model_id"] == popbatch.load_model().model_id
    # 16 feature orders x (features - 1) steps x 100 background rows
    assert done["evaluations_per_track"] == 16 * (done["features"] - 1) * 100
    assert done["wall_s"] > 0 and done["peak_rss_mb"] > 0


def test_stages_quick_times_every_stage_of_the_whole_sample():
    done = last_json(in_process("stages", str(default_model_dir()), str(SAMPLE), "--quick"))
    assert done["rows"] == SAMPLE_ROWS
    stages = {"read", "preprocess", "features hash", "inference", "assemble", "write", "commit"}
    assert stages <= set(done["wall"]) and stages <= set(done["cpu"])


def test_stages_quick_scores_a_duckdb_table_into_a_copy(tmp_path):
    """--table: read from the table, score into a copy of the database (its commit is the
    copy of the staged rows), the catalog left as it was."""
    import duckdb

    catalog = tmp_path / "catalog.duckdb"
    with duckdb.connect(str(catalog)) as con:
        con.execute(f"CREATE TABLE tracks AS SELECT * FROM read_csv('{SAMPLE}')")
    argv = [str(default_model_dir()), str(catalog), "--table", "tracks", "--quick"]
    done = last_json(in_process("stages", *argv))
    assert done["rows"] == SAMPLE_ROWS and done["cpu"]["commit"] > 0
    with duckdb.connect(str(catalog), read_only=True) as con:
        tables = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
    assert tables == {"tracks"}


# -- fresh processes ----------------------------------------------------------------------


def test_memory_quick_scores_two_catalog_sizes(tmp_path):
    out = tmp_path / "memory.json"
    bench("bench/memory.py", "--quick", "--workdir", str(tmp_path), "--json", str(out))
    results = json.loads(out.read_text())
    assert [r["rows"] for r in results] == [1_000, 2_000]
    assert all(r["peak_rss_mb"] > 0 for r in results)
    assert pq.read_metadata(tmp_path / "scored_2000.parquet").num_rows == 2_000


def test_drift_memory_quick_measures_both_input_kinds():
    lines = bench("bench/drift_memory.py", "--quick").splitlines()
    assert [line.split()[0] for line in lines] == ["csv", "parquet"]
    assert all("1,000 rows" in line and "peak RSS" in line for line in lines)


def test_nightly_quick_skips_every_unchanged_row_and_sees_the_write_window():
    lines = bench("bench/nightly.py", "--quick").splitlines()
    assert len(lines) == 4, lines
    full, unchanged = lines[0], lines[1]
    assert full.startswith("duckdb") and "scored 1,000, skipped 0" in full
    assert "scored 0, skipped 1,000" in unchanged and "scored 0, skipped 1,000" in lines[3]
    assert "DuckDB refused a reader for" in full


def test_baseline_quick_scores_with_the_native_stack(stack_dir, tmp_path):
    """Needs a trained stack: the session's tiny one (tests/stack_factory.py)."""
    out = tmp_path / "baseline.parquet"
    done = last_json(bench("bench/baseline.py", str(stack_dir), str(SAMPLE), str(out), "--quick"))
    assert done["rows"] == 200
    assert set(done["seconds"]) == {"load_model", "read", "preprocess", "predict", "write"}
    scores = pq.read_table(out).to_pydict()
    threshold = json.loads((stack_dir / "stack.json").read_text())["threshold"]
    assert scores["popular"] == [p >= threshold for p in scores["popularity_prob"]]


def test_run_quick_scores_every_input_kind_and_its_floor(tmp_path):
    """bench/run.py --quick with the embedded model: no training, 2,000-row catalogs."""
    bench("bench/run.py", "--quick", "--model", str(default_model_dir()), "--out", str(tmp_path),
          timeout=900)  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    assert sorted(r["kind"] for r in results["e2e"]) == ["csv", "duckdb", "parquet"]
    assert all(r["rows"] == 2_000 for r in results["e2e"])
    assert results["floor"] and results["help"]
    assert set(results["bare"]["rows_per_second"]) == {"1024"}  # --quick: one batch size
    assert any(s["what"] == "baseline" for s in results["skipped"])  # no stack given
    # every speed goal is printed, the ratio to the I/O floor first, with its target
    goals = [g for g in results["goals"] if g["set"] == "speed"]
    assert goals[0]["goal"].startswith("default command, Parquet -> Parquet, vs its I/O floor")
    assert goals[0]["target"] == "<= 3.0x" and goals[0]["met"] is not None
    assert results["imports"]["training_modules"] == []  # scoring imports no training package


def test_ab_quick_runs_both_revisions_and_compares_their_scores(tmp_path):
    """bench/ab.py: two revisions (here the same one) installed and run alternately."""
    args = ["--a", "HEAD", "--b", "HEAD", "--quick", "--out", str(tmp_path)]
    out = bench("bench/ab.py", str(SAMPLE), *args, "--json", str(tmp_path / "ab.json"), timeout=900)
    done = last_json(out)
    assert done == json.loads((tmp_path / "ab.json").read_text())
    assert done["rounds"] == 1 and done["a"] == done["b"]
    assert len(done["seconds"]["A"]["wall"]) == len(done["seconds"]["B"]["wall"]) == 1
    assert done["score_differences"]["popularity_prob"] == 0.0
    assert done["score_differences"]["features_hash identical"] is True
    assert done["seconds"]["A"]["peak_rss_mb"][0] > 0

    # A DuckDB catalog is scored table to table, each side into its own copy.
    import duckdb

    catalog = tmp_path / "catalog.duckdb"
    with duckdb.connect(str(catalog)) as con:
        con.execute(f"CREATE TABLE songs AS SELECT * FROM read_csv('{SAMPLE}')")
    out = bench("bench/ab.py", str(catalog), *args, "--table", "songs", timeout=900)
    done = last_json(out)
    assert done["score_differences"]["popularity_prob"] == 0.0
    for side in ("A", "B"):
        with duckdb.connect(str(tmp_path / f"scored_{side}.duckdb"), read_only=True) as con:
            assert con.execute("SELECT count(*) FROM scores").fetchall() == [(1000,)]


def test_app_quick_loads_the_page_and_scores_a_track():
    pytest.importorskip("streamlit", reason="needs the app extra")
    pytest.importorskip("playwright", reason="needs the app extra")
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.skip("no system Chromium (.ci/run installs one)")
    done = last_json(bench("bench/app.py", "--quick"))
    assert {"score_track", "page_load", "predict_click"} <= set(done)


def test_spark_quick_gives_the_same_scores_as_popbatch(tmp_path):
    if shutil.which("java") is None:
        pytest.skip("no Java runtime on PATH (Spark needs one)")
    pytest.importorskip("pyspark", reason="needs the spark extra")
    results = tmp_path / "spark.json"
    work, catalogs = str(tmp_path / "work"), str(tmp_path / "catalogs")
    args = ["--quick", "--work", work, "--catalogs", catalogs, "--results", str(results)]
    bench("bench/spark.py", *args, timeout=600)
    (job,) = json.loads(results.read_text())["spark_local_2"]["jobs"]
    assert job["rows"] == 1_000 and job["same_as_popbatch"]


def test_priors_quick_times_the_scorers_lookup_and_the_in_graph_one(priors_run):
    """bench/priors.py on a model with catalog priors: microseconds of CPU per row of the
    scorer's lookup (all prior columns, the album alone) and of CategoryMapper + Gather."""
    model = priors_run / "model"
    done = last_json(in_process("priors", str(model), str(SAMPLE), "--quick"))
    assert done["rows"] == 1024
    cost = done["us_per_row_cpu"]
    assert set(cost) == {
        "scorer_all_prior_columns",
        "scorer_album_only",
        "graph_album_categorymapper_gather",
    }
    assert all(v > 0 for v in cost.values())


def test_a_popular_design_sets_the_stack_s_learners_only_inside_its_block():
    """A popular design's sizes reach the LearnerParams the CV's workers receive, merged
    into the defaults, and the run's own come back after the block."""
    from popbatch.models.pipeline import TrainConfig

    frontier = importlib.import_module("bench.frontier")
    config = TrainConfig(data=Path("."), out=Path("."))
    own = copy.deepcopy(config.learners)
    with frontier.designed(frontier.DESIGNS["popular/logistic+ann+xgb 150x3"], config):
        sizes = {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.1}
        assert sizes != {k: own.xgb[k] for k in sizes}  # else the test proves nothing
        assert config.learners.xgb == {**own.xgb, **sizes}
        assert config.learners.learners == ("logistic", "ann", "xgb")
    assert config.learners == own
    with frontier.designed(frontier.DESIGNS["popular/logistic+ann"], config):
        assert config.learners.learners == ("logistic", "ann") != own.learners
        assert config.learners.meta_input == "probability" != own.meta_input
    assert config.learners == own
    # the designs measured before the stack fitted unseen-album copies stay without them
    with frontier.designed(frontier.DESIGNS["popular/logistic+ann+xgb"], config):
        assert config.learners.unseen_copies == () != own.unseen_copies
    assert config.learners == own


def test_frontier_quick_measures_each_design_s_quality_and_cost(tmp_path):
    """A design reaches both the cross-validation and the trained, exported head: the
    stack with XGBoost reports XGBoost's own figures and ships a larger head file."""
    pytest.importorskip("sklearn", reason="cross-validation trains: the train extra")
    out = tmp_path / "frontier.json"
    in_process(
        "frontier", "--quick", "--designs", "popular/logistic+ann",
        "popular/logistic+ann+xgb copies", "--json", str(out),
    )  # fmt: skip
    done = json.loads(out.read_text())
    plain, stacked = done["results"]
    assert [r["design"] for r in done["results"]] == [
        "popular/logistic+ann", "popular/logistic+ann+xgb copies"
    ]  # fmt: skip
    assert stacked["default"] and not plain["default"]
    assert "xgb" not in plain["models"] and "xgb" in stacked["models"]
    assert stacked["head_bytes"] > plain["head_bytes"]
    for result in done["results"]:
        assert result["rows"] > 1_000 and result["us_per_row_cpu"] > 0

    # --quality-from: the cross-validated figures of the earlier run, a new cost
    again = tmp_path / "again.json"
    in_process(
        "frontier", "--quick", "--designs", "popular/logistic+ann", "--quality-from", str(out),
        "--json", str(again),
    )  # fmt: skip
    (recosted,) = json.loads(again.read_text())["results"]
    assert recosted["models"] == plain["models"] and recosted["cv_seconds"] == plain["cv_seconds"]
    assert recosted["us_per_row_cpu"] > 0
    assert json.loads(again.read_text())["quality_from"] == str(out)
    other = tmp_path / "other_cv.json"  # figures of another --cv are not this run's
    other.write_text(json.dumps({**done, "cv": "5x1"}))
    with pytest.raises(SystemExit, match="with --cv 5x1, not"):
        in_process("frontier", "--quick", "--quality-from", str(other))
    changed = tmp_path / "changed.json"  # nor are the figures of a design since changed
    changed.write_text(json.dumps({**done, "results": [{**plain, "about": "another design"}]}))
    with pytest.raises(SystemExit, match="measured another design"):
        in_process(
            "frontier", "--quick", "--designs", "popular/logistic+ann", "--quality-from",
            str(changed),
        )  # fmt: skip
