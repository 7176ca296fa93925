"""Sinks show nothing until commit; a failed commit leaves targets as they were."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from popbatch.batch.sinks import (
    SCORE_FIELDS,
    CsvSink,
    DuckDBSink,
    ParquetSink,
    commit_all,
    open_sink,
    rejects_sink_for,
)

from popbatch.core.errors import InputError, OutputError

SCHEMA = pa.schema([pa.field("track_id", pa.string()), *SCORE_FIELDS])


def batch(keys, prob=0.5):
    import datetime as dt

    n = len(keys)
    at = dt.datetime(2026, 11, 21, 5, 0)
    return pa.RecordBatch.from_arrays(
        [pa.array(keys), pa.array([prob] * n), pa.array([prob >= 0.5] * n),
         pa.array(["m"] * n), pa.array([at] * n, pa.timestamp("us")),
         pa.array(range(n), pa.uint64()), pa.array(range(1, n + 1), pa.int64())],
        schema=SCHEMA,
    )  # fmt: skip


def test_file_sink_abort_keeps_the_previous_output(tmp_path):
    target = tmp_path / "s.parquet"
    pq.write_table(pa.table({"track_id": ["old"]}), target)
    sink = ParquetSink(target)
    sink.open(SCHEMA)
    sink.write(batch(["a", "b"]))
    assert pq.read_table(target).column("track_id").to_pylist() == ["old"]  # not visible yet
    sink.abort()
    assert pq.read_table(target).column("track_id").to_pylist() == ["old"]
    assert [p.name for p in tmp_path.iterdir()] == ["s.parquet"]


def test_file_sinks_commit_by_rename(tmp_path):
    sinks = [ParquetSink(tmp_path / "s.parquet"), CsvSink(tmp_path / "s.csv")]
    for sink in sinks:
        sink.open(SCHEMA)
        sink.write(batch(["a", "b"]))
    commit_all(sinks)
    assert pq.read_table(tmp_path / "s.parquet").num_rows == 2
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == (
        '"track_id","popularity_prob","popular","model_id","scored_at","features_hash","input_row"'
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv", "s.parquet"]


def test_rejects_are_written_only_when_there_are_rows_or_an_old_file(tmp_path):
    main = ParquetSink(tmp_path / "s.parquet")
    rejects = rejects_sink_for(main)
    assert rejects.path == tmp_path / "s.rejects.parquet"
    for sink in (main, rejects):
        sink.open(SCHEMA)
    main.write(batch(["a"]))
    commit_all([main, rejects])
    assert not (tmp_path / "s.rejects.parquet").exists()


def read(path, sql):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()


def test_duckdb_failure_rolls_back_every_table(tmp_path):
    path = tmp_path / "t.duckdb"
    con = duckdb.connect(str(path))
    # A scored table (so the append is allowed) with a column the run leaves NULL.
    con.execute(
        "CREATE TABLE scores (track_id VARCHAR, popularity_prob DOUBLE, popular BOOLEAN, "
        "model_id VARCHAR, scored_at TIMESTAMP, features_hash UBIGINT, other INTEGER NOT NULL)"
    )
    con.execute("INSERT INTO scores VALUES ('kept', 0.1, false, 'm', '2026-01-01', 1, 1)")
    con.close()
    main = DuckDBSink(path, "scores", mode="append")
    rejects = DuckDBSink(path, "scores_rejects", mode="replace")
    rejects.only_if_rows = True
    for sink in (rejects, main):  # rejects applied first, then the failing append
        sink.open(SCHEMA)
        sink.write(batch(["a"]))
    with pytest.raises(OutputError, match="the database is unchanged"):
        commit_all([rejects, main])
    assert read(path, "SELECT track_id, other FROM scores") == [("kept", 1)]
    assert read(path, "SELECT table_name FROM duckdb_tables()") == [("scores",)]
    assert [p.name for p in tmp_path.iterdir()] == ["t.duckdb"]  # staging files removed


def test_duckdb_upsert_keeps_one_row_per_key_last_wins(tmp_path):
    path = tmp_path / "t.duckdb"
    for probs in ((0.1, 0.2), (0.7, 0.9)):
        sink = DuckDBSink(path, "scores", mode="upsert", key="track_id")
        sink.open(SCHEMA)
        sink.write(batch(["a", "b"], probs[0]))
        sink.write(batch(["a"], probs[1]))  # the same key again, later in the run
        commit_all([sink])
    rows = read(path, "SELECT track_id, popularity_prob FROM scores ORDER BY track_id")
    assert rows == [("a", 0.9), ("b", 0.7)]


def test_open_sink_choices(tmp_path):
    assert isinstance(open_sink(tmp_path / "x.csv"), CsvSink)
    assert open_sink(tmp_path / "x.duckdb").table == "scores"
    with pytest.raises(InputError, match="unknown output type"):
        open_sink(tmp_path / "x.json")
    with pytest.raises(InputError, match="--into scores: writes to a DuckDB database"):
        open_sink(tmp_path / "x.parquet", into="scores")
    with pytest.raises(InputError, match="is not a plain SQL identifier"):
        open_sink(tmp_path / "x.duckdb", into="s; DROP TABLE t")
    sink = DuckDBSink(tmp_path / "x.duckdb", "s", mode="upsert", key="id")
    with pytest.raises(InputError, match="--mode upsert needs the key column 'id'"):
        sink.open(SCHEMA)


def test_parquet_sink_skips_dictionaries_only_where_values_are_all_different(tmp_path):
    """A dictionary tried on the key or the hash and abandoned costs CPU and bytes
    (measured in ParquetSink's docstring); repeated values keep theirs."""
    target = tmp_path / "s.parquet"
    sink = open_sink(target, key="track_id")
    sink.open(SCHEMA)
    sink.write(batch([f"t{i}" for i in range(1000)]))
    commit_all([sink])
    meta = pq.ParquetFile(target).metadata.row_group(0)
    dictionary = {
        meta.column(i).path_in_schema: any("DICTIONARY" in e for e in meta.column(i).encodings)
        for i in range(meta.num_columns)
    }
    assert dictionary == {
        "track_id": False, "popularity_prob": False, "popular": False,  # plain bits
        "model_id": True, "scored_at": True, "features_hash": False, "input_row": False,
    }  # fmt: skip
