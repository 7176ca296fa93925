"""Nightly operation of popbatch score: --incremental, the run log, the target lock, readers.

Catalog versions are built from the real fixtures only: tracks_2000.csv, with
three rows' features changed and two rows of batch/sample/catalog.csv (other
real rows of the same dataset) added. Rows are compared on the fixture's
unique original index ``Unnamed: 0`` (track_id repeats 9 times in the fixture,
which the incremental match handles copy for copy).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from conftest import TRACKS_2000
from model_factory import build_model
from popbatch.batch.incremental import UpToDate, features_hash
from popbatch.batch.score import score
from test_lock import HOLD_DUCKDB, HOLD_LOCK, ROOT, hold, release

from popbatch.cli.main import cli

SAMPLE = ROOT / "batch" / "sample" / "catalog.csv"
COLUMNS = ["--columns", "Unnamed: 0,track_id"]
CHANGED = {10: 0.5, 777: 0.25, 1999: 1.5}  # row index -> factor applied to its tempo


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory) -> tuple[Path, Path]:
    """(v1, v2): the fixture, and the fixture with 3 tempos changed and 2 rows added."""
    folder = tmp_path_factory.mktemp("catalogs")
    v1 = pl.read_csv(TRACKS_2000, infer_schema=False)
    v1.write_csv(folder / "v1.csv")
    tempo = pl.col("tempo").cast(pl.Float64)
    factor = pl.int_range(pl.len()).replace_strict(CHANGED, default=1.0)
    changed = v1.with_columns((tempo * factor).round(3).cast(pl.String).alias("tempo"))
    new = (
        pl.read_csv(SAMPLE, infer_schema=False)
        .filter(~pl.col("track_id").is_in(v1["track_id"].implode()))
        .head(2)
    )
    pl.concat([changed, new]).write_csv(folder / "v2.csv")
    return folder / "v1.csv", folder / "v2.csv"


def run(runner, model_dir, *args):
    return runner.invoke(cli, ["score", *map(str, args), "--model", str(model_dir)])


def summary_of(runner, model_dir, tmp_path, *args) -> dict:
    path = tmp_path / "summary.json"
    result = run(runner, model_dir, *args, "--summary", path)
    assert result.exit_code == 0, result.output
    return json.loads(path.read_text())


def by_index(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("unnamed_0").select(
        "unnamed_0", "track_id", "popularity_prob", "popular", "model_id", "features_hash"
    )


def read_table(db: Path, table: str = "scores") -> pl.DataFrame:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.sql(f"SELECT * FROM {table}").pl()


def runs_in(db: Path) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.sql(
            "SELECT status, rows_read, rows_scored, rows_rejected, rows_skipped, error "
            "FROM popbatch_runs ORDER BY started_at"
        ).fetchall()


# ------------------------------------------------------------- incremental
def test_incremental_parquet_scores_only_the_5_new_or_changed_rows(
    runner, model_dir, tmp_path, catalogs
):
    v1, v2 = catalogs
    out = tmp_path / "scores.parquet"
    args = [*COLUMNS, "--batch-size", 500, "--incremental"]
    first = summary_of(runner, model_dir, tmp_path, v1, "-o", out, *args)
    assert (first["rows_scored"], first["rows_skipped"]) == (2000, 0)  # nothing to keep yet
    before = pl.read_parquet(out)

    second = summary_of(runner, model_dir, tmp_path, v2, "-o", out, *args)
    assert (second["rows_read"], second["rows_scored"], second["rows_skipped"]) == (2002, 5, 1997)
    assert second["rows_read"] == second["rows_scored"] + second["rows_rejected"] + 1997
    after = pl.read_parquet(out)
    assert after.schema == before.schema

    full = tmp_path / "full.parquet"
    result = run(runner, model_dir, v2, "-o", full, *COLUMNS, "-q")
    assert result.exit_code == 0, result.output
    assert by_index(after).equals(by_index(pl.read_parquet(full)))
    # the 5 rows got this run's time, the others kept the first run's
    rescored = after.filter(pl.col("scored_at") != before["scored_at"][0])
    expected = set(before["unnamed_0"].gather(list(CHANGED)))
    expected |= set(after["unnamed_0"]) - set(before["unnamed_0"])
    assert set(rescored["unnamed_0"]) == expected and len(expected) == 5

    third = summary_of(runner, model_dir, tmp_path, v2, "-o", out, *args)
    assert (third["rows_scored"], third["rows_skipped"]) == (0, 2002)
    assert by_index(pl.read_parquet(out)).equals(by_index(after))
    assert not list(tmp_path.glob(".*"))  # no staging files left


def test_incremental_duckdb_table_scores_only_the_5_new_or_changed_rows(
    runner, model_dir, tmp_path, catalogs
):
    v1, v2 = catalogs
    db = tmp_path / "target.duckdb"
    args = ["-o", db, "--into", "scores", *COLUMNS, "--batch-size", 700, "--incremental"]
    summary_of(runner, model_dir, tmp_path, v1, *args)
    second = summary_of(runner, model_dir, tmp_path, v2, *args)
    assert (second["rows_scored"], second["rows_skipped"], second["rows_written"]) == (
        5,
        1997,
        2002,
    )
    full = tmp_path / "full.duckdb"
    result = run(runner, model_dir, v2, "-o", full, "--into", "scores", *COLUMNS, "-q")
    assert result.exit_code == 0, result.output
    assert by_index(read_table(db)).equals(by_index(read_table(full)))
    third = summary_of(runner, model_dir, tmp_path, v2, *args)
    assert (third["rows_scored"], third["rows_skipped"]) == (0, 2002)
    assert [run[:5] for run in runs_in(db)] == [
        ("success", 2000, 2000, 0, 0),
        ("success", 2002, 5, 0, 1997),
        ("success", 2002, 0, 0, 2002),
    ]
    # a row removed from the catalog leaves the target, as in a full run
    summary_of(runner, model_dir, tmp_path, v1, *args)
    assert read_table(db).height == 2000


def test_incremental_rescores_every_row_of_another_model(runner, model_dir, tmp_path, catalogs):
    v1, _ = catalogs
    out = tmp_path / "scores.parquet"
    summary_of(runner, model_dir, tmp_path, v1, "-o", out, *COLUMNS)
    other = build_model(tmp_path / "other", threshold=0.4)  # other bytes, other model_id
    result = run(runner, other, v1, "-o", out, *COLUMNS, "--incremental")
    assert result.exit_code == 0, result.output
    assert "scored 2,000 of 2,000 rows, 0 up to date" in result.output
    assert pl.read_parquet(out)["model_id"].n_unique() == 1


def test_incremental_refuses_targets_it_cannot_carry_over(runner, model_dir, tmp_path, catalogs):
    v1, _ = catalogs
    cases = [
        (
            ["-o", tmp_path / "s.csv"],
            "--incremental needs a Parquet output or a DuckDB table (-o FILE.parquet, or "
            "-o FILE.duckdb --into TABLE)",
        ),
        (
            ["-o", tmp_path / "t.duckdb", "--into", "s", "--mode", "append"],
            "--incremental keeps the target equal to a full --mode replace run; drop --mode append",
        ),
        (
            ["-o", tmp_path / "s.parquet", "--columns", "artists"],
            "--incremental matches rows by the key column 'track_id'; keep it with --columns",
        ),
    ]
    for args, message in cases:
        result = run(runner, model_dir, v1, *args, "--incremental")
        assert result.exit_code == 2, result.output
        assert result.output == f"Error: {message}\n"


def test_features_hash_is_stable_and_sees_one_changed_value():
    matrix = np.arange(12, dtype=np.float32).reshape(3, 4)
    hashes = features_hash(matrix)
    # fixed values: a change here means stored hashes no longer match (a full rescore)
    assert hashes.dtype == np.uint64 and len(set(hashes.tolist())) == 3
    assert features_hash(matrix.copy()).tolist() == hashes.tolist()
    changed = matrix.copy()
    changed[1, 2] = np.nextafter(changed[1, 2], np.float32(100))
    assert (features_hash(changed) != hashes).tolist() == [False, True, False]


def _reference_hash(numbers: list[float], category: int | None) -> int:
    """FNV-1a over float32 bits then splitmix64, in plain Python integers."""
    import struct

    mask = (1 << 64) - 1
    value = 0xCBF29CE484222325
    words = [int.from_bytes(struct.pack("<f", x), "little") for x in numbers]
    for word in words + ([] if category is None else [category]):
        value = ((value ^ word) * 0x100000001B3) & mask
    value ^= value >> 30
    value = (value * 0xBF58476D1CE4E5B9) & mask
    value ^= value >> 27
    value = (value * 0x94D049BB133111EB) & mask
    return value ^ (value >> 31)


def test_features_hash_matches_a_plain_python_reference_on_fixture_rows():
    """The stored hash is a fixed function of the model inputs, not of a library version."""
    from model_factory import training_matrix

    from popbatch.core.features import NUMERIC_FEATURES

    x, _, _ = training_matrix()
    rows = x[:50].astype(np.float32)
    width = len(NUMERIC_FEATURES)
    hashes = features_hash(rows, slice(0, width), slice(width, rows.shape[1]))
    expected = [_reference_hash(row[:width].tolist(), int(np.argmax(row[width:]))) for row in rows]
    assert hashes.tolist() == expected
    assert features_hash(rows).tolist() == [_reference_hash(r.tolist(), None) for r in rows]
    other_genre = rows.copy()
    other_genre[0, width:] = np.roll(other_genre[0, width:], 1)
    changed = features_hash(other_genre, slice(0, width), slice(width, rows.shape[1]))
    assert (changed != hashes).tolist() == [True] + [False] * 49


def test_up_to_date_excuses_each_stored_copy_once():
    import pyarrow as pa

    stored = pa.record_batch(
        {"k": ["a", "a", "b"], "features_hash": pa.array([1, 1, 2], pa.uint64())}
    )
    lookup = UpToDate.from_batches([stored], "k")
    keys = pa.array(["a", "a", "a", "b", "b", None])
    mask = lookup.skip(keys, np.array([1, 1, 1, 2, 3, 1], np.uint64))
    assert mask.tolist() == [True, True, False, True, False, False]
    assert lookup.skip(pa.array(["a"]), np.array([1], np.uint64)).tolist() == [False]


def test_a_table_from_before_features_hash_gains_the_column(runner, model_dir, tmp_path, catalogs):
    """Nightly upserts into a table an older popbatch created keep working."""
    v1, _ = catalogs
    db = tmp_path / "old.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(
            "CREATE TABLE scores (track_id VARCHAR, popularity_prob DOUBLE, popular BOOLEAN, "
            "model_id VARCHAR, scored_at TIMESTAMP)"
        )
        con.execute("INSERT INTO scores VALUES ('gone', 0.5, true, 'old', now()::TIMESTAMP)")
    result = run(runner, model_dir, v1, "-o", db, "--into", "scores", "--mode", "upsert")
    assert result.exit_code == 0, result.output
    table = read_table(db)
    assert table.filter(pl.col("track_id") == "gone")["features_hash"].to_list() == [None]
    assert table.filter(pl.col("track_id") != "gone")["features_hash"].null_count() == 0


# ----------------------------------------------------------------- run log
def test_every_run_is_recorded_beside_a_file_target(runner, model_dir, tmp_path, catalogs):
    v1, _ = catalogs
    out = tmp_path / "scores.parquet"
    assert run(runner, model_dir, v1, "-o", out, "-q").exit_code == 0
    bad = tmp_path / "bad.csv"
    pl.read_csv(v1, infer_schema=False).with_columns(
        pl.when(pl.int_range(pl.len()) == 1500)
        .then(pl.lit("-3"))
        .otherwise("energy")
        .alias("energy")
    ).write_csv(bad)
    before = out.read_bytes()
    result = run(runner, model_dir, bad, "-o", out, "--on-invalid", "fail", "--batch-size", 500)
    assert result.exit_code == 2
    assert out.read_bytes() == before  # the failed run changed nothing but the run log
    first, second = (json.loads(x) for x in (tmp_path / "runs.jsonl").read_text().splitlines())
    assert (first["status"], first["rows_read"], first["rows_scored"]) == ("success", 2000, 2000)
    assert first["output"] == str(out) and first["error"] is None
    assert second["status"] == "failed" and second["input"] == str(bad)
    assert second["error"] == result.output.removeprefix("Error: ").strip()
    assert second["rows_read"] == 1500  # three batches passed before the bad one


def test_every_run_is_recorded_in_a_duckdb_target(runner, model_dir, tmp_path, catalogs):
    v1, _ = catalogs
    db = tmp_path / "target.duckdb"
    args = ["-o", db, "--into", "scores", "--batch-size", 500]
    assert run(runner, model_dir, v1, *args).exit_code == 0
    kept = read_table(db)
    result = run(runner, model_dir, v1, *args, "--fill", "tempo=-1", "--on-invalid", "fail")
    assert result.exit_code == 2
    assert read_table(db).equals(kept)
    assert runs_in(db) == [
        ("success", 2000, 2000, 0, 0, None),
        ("failed", None, None, None, None, result.output.removeprefix("Error: ").strip()),
    ]


# -------------------------------------------------------------------- lock
def test_a_second_process_holding_the_target_makes_score_exit_75(
    runner, model_dir, tmp_path, catalogs
):
    v1, _ = catalogs
    out = tmp_path / "scores.parquet"
    holder = hold(HOLD_LOCK, out)
    try:
        result = run(runner, model_dir, v1, "-o", out)
    finally:
        release(holder)
    assert result.exit_code == 75
    assert result.output.startswith(
        f"Error: {out} is locked by another popbatch run (pid {holder.pid}, started "
    )
    assert result.output.endswith(
        "(no --wait given); let it finish, or pass --wait SECONDS to wait for it\n"
    )
    assert not out.exists() and not (tmp_path / "runs.jsonl").exists()  # not a run: not logged


def test_an_output_in_a_new_folder_is_locked_and_logged_there(runner, model_dir, tmp_path):
    out = tmp_path / "new" / "deeper" / "scores.parquet"
    result = run(runner, model_dir, TRACKS_2000, "-o", out, "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "runs.jsonl",
        "scores.parquet",
        "scores.parquet.lock",
    ]


def test_with_wait_score_runs_once_the_holder_lets_go(runner, model_dir, tmp_path, catalogs):
    v1, _ = catalogs
    out = tmp_path / "scores.parquet"
    holder = hold(HOLD_LOCK, out)
    threading.Timer(0.5, release, [holder]).start()
    result = run(runner, model_dir, v1, "-o", out, "--wait", 60)
    assert holder.wait(30) == 0
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(out).height == 2000


def test_duckdb_writer_holding_the_target_is_exit_75_not_a_traceback(
    runner, model_dir, tmp_path, catalogs, monkeypatch
):
    import popbatch.batch.runlog
    import popbatch.batch.sinks

    monkeypatch.setattr(popbatch.batch.sinks, "COMMIT_WAIT_SECONDS", 0.0)
    monkeypatch.setattr(popbatch.batch.runlog, "LOCK_WAIT_SECONDS", 0.0)
    v1, _ = catalogs
    db = tmp_path / "target.duckdb"
    holder = hold(HOLD_DUCKDB, db)
    try:
        as_target = run(runner, model_dir, v1, "-o", db, "--into", "scores")
        as_source = run(runner, model_dir, db, "--table", "t", "-o", tmp_path / "x.parquet")
    finally:
        release(holder)
    for result in (as_target, as_source):
        assert result.exit_code == 75, result.output
        assert result.output.startswith(
            f"Error: {db} is locked by another process (pid {holder.pid}, started "
        )
        assert result.output.count("\n") == 1


# ----------------------------------------------------------------- readers
HOLD_READER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print("locked", flush=True)
time.sleep(1.0)
con.close()
"""


def test_a_reader_holding_the_database_delays_the_commit_not_the_run(
    runner, model_dir, tmp_path, catalogs
):
    """An analyst's read-only connection at commit time: the commit waits for it."""
    v1, _ = catalogs
    db = tmp_path / "target.duckdb"
    duckdb.connect(str(db)).close()
    reader = hold(HOLD_READER, db)
    result = run(runner, model_dir, v1, "-o", db, "--into", "scores")
    reader.wait(30)
    assert result.exit_code == 0, result.output
    assert read_table(db).height == 2000


def test_popbatch_sql_waits_for_a_commit_or_exits_75(runner, tmp_path):
    db = tmp_path / "target.duckdb"
    query = ["sql", "--db", str(db), "SELECT count(*) AS n FROM t", "--format", "csv"]
    holder = hold(HOLD_DUCKDB, db)
    try:
        refused = runner.invoke(cli, query)
    finally:
        threading.Timer(0.5, release, [holder]).start()
    waited = runner.invoke(cli, [*query, "--wait", "60"])
    holder.wait(30)
    assert refused.exit_code == 75
    assert refused.output.startswith(f"Error: {db} is locked by another process (pid {holder.pid}")
    assert waited.exit_code == 0, waited.output
    assert waited.output == '"n"\n1\n'


SCORE_INTO = """
import sys
from popbatch.cli.main import cli
sys.exit(cli.main(["score", sys.argv[1], "-o", sys.argv[2], "--into", "scores",
                   "--batch-size", "500", "--model", sys.argv[3], "-q"], standalone_mode=True))
"""


def test_readers_during_a_run_see_the_old_or_the_new_table_or_exit_75(
    runner, model_dir, tmp_path, catalogs
):
    v1, v2 = catalogs
    db = tmp_path / "target.duckdb"
    assert run(runner, model_dir, v1, "-o", db, "--into", "scores").exit_code == 0
    writer = subprocess.Popen(
        [sys.executable, "-c", SCORE_INTO, str(v2), str(db), str(model_dir)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    query = ["sql", "--db", str(db), "SELECT count(*) AS n FROM scores", "--format", "csv"]
    outcomes = []
    while writer.poll() is None or not outcomes:
        result = runner.invoke(cli, query)
        outcomes.append((result.exit_code, result.output))
        time.sleep(0.02)  # leave the writer gaps to take the file (it retries for 10 s)
    assert writer.wait(60) == 0, writer.stderr.read()
    for code, output in outcomes:
        if code == 75:
            assert output.startswith(f"Error: {db} is locked by another process (pid ")
        else:
            assert (code, output) in ((0, '"n"\n2000\n'), (0, '"n"\n2002\n'))
    assert runner.invoke(cli, query).output == '"n"\n2002\n'


def test_python_api_records_and_locks_too(model_dir, tmp_path, catalogs):
    v1, _ = catalogs
    out = tmp_path / "api.parquet"
    summary = score(v1, out, model_dir, incremental=True)
    again = score(v1, out, model_dir, incremental=True)
    assert (summary.rows_scored, again.rows_scored, again.rows_skipped) == (2000, 0, 2000)
    assert [
        json.loads(x)["status"] for x in (tmp_path / "runs.jsonl").read_text().splitlines()
    ] == [
        "success",
        "success",
    ]
    score(v1, tmp_path / "quiet.parquet", model_dir, record=False)
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 2


def test_stored_hash_is_the_reference_hash_of_each_scored_row(model_dir, tmp_path):
    """The job hashes the genre by the position the preprocessor set, not by an argmax
    over the one-hot block; the stored value must be the same function of the row."""
    from popbatch.batch.preprocess import Preprocessor
    from popbatch.batch.sources import open_source

    from popbatch.core.bundle import load_model

    out = tmp_path / "scored.parquet"
    score(TRACKS_2000, out, model_dir, batch_size=300, columns=["Unnamed: 0"], record=False)
    bundle = load_model(model_dir)
    with open_source([TRACKS_2000]) as source:
        preprocessor = Preprocessor(bundle.manifest, columns=["Unnamed: 0"])
        preprocessor.bind(source.schema, source.name)
        batch = next(iter(source.batches(preprocessor.read_columns, 5000)))
        matrix = preprocessor.transform(batch).features
    numeric = [n.position for n in preprocessor.numeric]
    block = sorted(preprocessor.genre_positions.values())
    expected = [
        _reference_hash(row[numeric].tolist(), int(np.argmax(row[block]))) for row in matrix
    ]
    stored = pl.read_parquet(out)["features_hash"].to_list()  # in input order
    assert len(expected) == 2000 and stored == expected
