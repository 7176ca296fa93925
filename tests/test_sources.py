"""Sources stream bounded batches, know their columns up front, and fail with one line."""

from __future__ import annotations

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SMALL_TITLE_CASE, TRACKS_2000
from popbatch.batch.sources import CsvSource, DuckDBSource, ParquetSource, open_source

from popbatch.core.errors import InputError


def sizes(source, batch_size, columns=None):
    return [b.num_rows for b in source.batches(columns, batch_size)]


def test_csv_streams_text_columns_in_bounded_batches():
    source = open_source(TRACKS_2000)
    assert isinstance(source, CsvSource) and source.total_rows is None
    assert source.schema.field("tempo").type == pa.string()
    got = sizes(source, 300, ["track_id", "tempo"])
    assert sum(got) == 2000 and max(got) <= 300
    batch = next(source.batches(["track_id", "tempo"], 5))
    assert batch.schema.names == ["track_id", "tempo"]
    assert batch.column("tempo")[0].as_py() == "82.062"  # text, exactly as in the file


def test_csv_inputs_must_share_a_header():
    with pytest.raises(InputError, match="columns differ from"):
        open_source([TRACKS_2000, SMALL_TITLE_CASE])


def test_csv_empty_file(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(InputError) as info:
        open_source(empty)
    assert str(info.value) == f"{empty}: the file is empty (no header row)"


def test_parquet_file_knows_its_rows_and_hive_directory_adds_partition_columns(tmp_path):
    table = pl.read_csv(TRACKS_2000).to_arrow()
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=1000)
    source = open_source(tmp_path / "t.parquet")
    assert isinstance(source, ParquetSource) and source.total_rows == 2000
    got = sizes(source, 300, ["track_id"])
    assert sum(got) == 2000 and max(got) <= 300

    pq.write_to_dataset(table.select(["track_id", "tempo", "mode"]), tmp_path / "d", ["mode"])
    hive = open_source(tmp_path / "d")
    assert set(hive.schema.names) == {"track_id", "tempo", "mode"}
    rows = pa.Table.from_batches(list(hive.batches(["track_id", "mode"], 1000)))
    assert sorted(rows.column("mode").to_pylist()) == sorted(table.column("mode").to_pylist())


def test_scoring_one_parquet_file_leaves_the_dataset_layer_unimported(tmp_path):
    """One file is read with ParquetFile: pyarrow.dataset would cost ~110 MB of
    resident memory in every nightly run (bench/results/ab_6_parquet_reader.json)."""
    import subprocess
    import sys

    pq.write_table(pl.read_csv(TRACKS_2000).to_arrow(), tmp_path / "t.parquet")
    code = f"""
import sys
from popbatch.cli.main import cli
try:
    cli(["score", {str(tmp_path / "t.parquet")!r}, "-o", {str(tmp_path / "o.parquet")!r},
         "--quiet"], prog_name="popbatch")
except SystemExit as done:
    assert not done.code, done.code
print("pyarrow.dataset" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    assert pq.read_metadata(tmp_path / "o.parquet").num_rows == 2000


def test_parquet_glob_without_matches(tmp_path):
    with pytest.raises(InputError) as info:
        open_source(str(tmp_path / "*.parquet"))
    assert str(info.value) == f"{tmp_path / '*.parquet'}: the pattern matches no files"


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "c.duckdb"
    con = duckdb.connect(str(path))
    con.execute(f"CREATE TABLE tracks AS SELECT * FROM read_csv('{TRACKS_2000}')")
    con.close()
    return path


def test_duckdb_table_query_and_read_only(db):
    with DuckDBSource(db, table="tracks") as source:
        assert source.total_rows == 2000
        got = sizes(source, 512, ["track_id", "tempo"])
        assert sum(got) == 2000 and max(got) <= 512
        with pytest.raises(duckdb.Error):  # opened read-only: the catalog is never changed
            source.con.execute("DELETE FROM tracks")
    with DuckDBSource(db, query="SELECT track_id FROM tracks WHERE popularity > 71") as source:
        assert source.total_rows is None and source.schema.names == ["track_id"]
        assert sum(sizes(source, 10)) == 71


@pytest.mark.parametrize("name", ["x; DROP TABLE tracks", 'tracks"', "`tracks`", "a.b.c.d"])
def test_duckdb_table_names_are_validated(db, name):
    with pytest.raises(InputError, match="is not a plain SQL identifier"):
        DuckDBSource(db, table=name)


def test_duckdb_bad_files_and_query(tmp_path, db):
    not_db = tmp_path / "x.duckdb"
    not_db.write_text("hello")
    with pytest.raises(InputError, match=f"^{not_db}: cannot open as DuckDB"):
        open_source(not_db, table="t")
    with pytest.raises(InputError, match="no such DuckDB database file"):
        open_source(tmp_path / "missing.duckdb", table="t")
    with pytest.raises(InputError, match=r"--query failed \(.*Binder Error"):
        open_source(db, query="SELECT nope FROM tracks")
    with pytest.raises(InputError, match="needs --table NAME or --query SQL"):
        open_source(db)


def test_unknown_input_kind(tmp_path):
    with pytest.raises(InputError, match="unknown input type"):
        open_source(tmp_path / "catalog.xlsx")


def test_csv_row_longer_than_a_block_is_read_once(tmp_path, monkeypatch):
    """A field longer than the read block reopens the file with a larger block,
    skipping the rows already yielded: every row arrives exactly once.
    """
    import popbatch.batch.sources

    monkeypatch.setattr(popbatch.batch.sources, "CSV_BLOCK_BYTES", 1 << 16)
    path = tmp_path / "long.csv"
    rows = [f"{i},short" for i in range(3000)]
    rows[2500] = "2500," + "y" * (1 << 18)  # 256 KB field, 4x the block
    path.write_text("n,text\n" + "\n".join(rows) + "\n")
    batches = list(open_source(path).batches(["n"], 1000))
    numbers = [int(v) for b in batches for v in b.column("n").to_pylist()]
    assert numbers == list(range(3000))
