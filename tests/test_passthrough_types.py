"""Pass-through columns keep their types: as stored for Parquet and DuckDB, inferred for CSV.

CSV columns are typed as a careful reader would (integers, doubles, booleans,
dates, timestamps); a column with any value that does not parse stays text, in
every batch of the run. Rejected rows keep their original text.
"""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TRACKS_2000
from popbatch.batch import sources

from popbatch.cli.main import cli

SAMPLE = Path(__file__).resolve().parents[1] / "batch" / "sample" / "catalog.csv"
QUERY = "select max(popularity), count(*) filter (where popularity > 71) from {}"


def score(runner, model_dir, *args):
    result = runner.invoke(cli, ["score", *map(str, args), "--model", str(model_dir)])
    assert result.exit_code == 0, result.output
    return result


def sql(runner, *args) -> str:
    result = runner.invoke(cli, ["sql", *map(str, args), "--format", "csv"])
    assert result.exit_code == 0, result.output
    return result.output


def read_csv_auto(path: Path, query: str = QUERY) -> list[tuple]:
    with duckdb.connect() as con:
        return con.sql(query.format(f"read_csv_auto('{path}')")).fetchall()


def csv_answer(output: str) -> list[tuple]:
    """The data row of ``popbatch sql --format csv`` as numbers."""
    return [tuple(int(v) for v in output.splitlines()[1].split(","))]


@pytest.mark.parametrize("catalog", [SAMPLE, TRACKS_2000])
def test_sql_over_scores_from_a_csv_catalog_equals_duckdb_reading_the_csv(
    runner, model_dir, tmp_path, catalog
):
    expected = read_csv_auto(catalog)
    out = tmp_path / "scored.parquet"
    score(runner, model_dir, catalog, "-o", out, "--columns", "all")
    assert csv_answer(sql(runner, "--scored", out, QUERY.format("scored"))) == expected
    db = tmp_path / "scored.duckdb"
    score(runner, model_dir, catalog, "-o", db, "--columns", "all")
    assert csv_answer(sql(runner, "--db", db, QUERY.format("scores"))) == expected


def test_csv_columns_are_typed_like_duckdb_reads_them(runner, model_dir, tmp_path):
    out = tmp_path / "scored.parquet"
    score(runner, model_dir, SAMPLE, "-o", out, "--columns", "all")
    schema = pq.read_schema(out)
    with duckdb.connect() as con:
        described = con.sql(f"DESCRIBE SELECT * FROM read_csv_auto('{SAMPLE}')").fetchall()
    auto = {row[0]: row[1] for row in described}
    as_sql = {pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN"}
    for field in schema:
        original = "Unnamed: 0" if field.name == "unnamed_0" else field.name
        if field.name == "track_id":
            assert field.type == pa.string()  # the key stays text (sql/scored_table.sql)
        elif original in auto:
            assert as_sql.get(field.type, "VARCHAR") == auto[original], field


def write_catalog(path: Path, rows: int, late: dict[int, dict[str, str]]) -> None:
    """The fixture's first ``rows`` rows plus typed extra columns; ``late`` overrides cells."""
    frame = pl.read_csv(TRACKS_2000, n_rows=rows, infer_schema=False)
    frame = frame.with_columns(
        pl.int_range(rows).cast(pl.String).alias("plays"),
        (pl.int_range(rows) / 4).cast(pl.String).alias("share"),
        pl.lit("2024-05-01").alias("released"),
        pl.lit("2024-05-01 10:30:00").alias("added_at"),
        pl.lit("007").alias("code"),
        pl.lit(None, pl.String).alias("nothing"),
        pl.int_range(rows).cast(pl.String).alias("late_word"),
    )
    for row, cells in late.items():
        for column, value in cells.items():
            frame[row, column] = value
    frame.write_csv(path)


def test_csv_types_hold_for_every_batch_and_a_late_odd_value_keeps_text(
    runner, model_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(sources, "CSV_BLOCK_BYTES", 16 << 10)  # many blocks
    catalog = tmp_path / "catalog.csv"
    write_catalog(catalog, 2000, {1990: {"late_word": "n/a"}})
    out = tmp_path / "scored.parquet"
    score(runner, model_dir, catalog, "-o", out, "--columns", "all", "--batch-size", 100)
    types = {f.name: f.type for f in pq.read_schema(out)}
    assert types["plays"] == pa.int64() and types["share"] == pa.float64()
    assert types["released"] == pa.date32() and types["added_at"] == pa.timestamp("us")
    assert types["explicit"] == pa.bool_() and types["popularity"] == pa.int64()
    assert types["code"] == pa.string()  # leading zero: a code, not a number
    assert types["nothing"] == pa.string()  # no value to infer from
    assert types["late_word"] == pa.string()  # one value in the last block is not a number
    frame = pl.read_parquet(out)
    assert frame["late_word"][1990] == "n/a" and frame["late_word"][0] == "0"
    assert frame["released"][0] == dt.date(2024, 5, 1)
    assert pq.ParquetFile(out).metadata.num_row_groups >= 20  # written batch by batch


def test_csv_files_scored_together_share_one_inference(runner, model_dir, tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    write_catalog(first, 300, {})
    write_catalog(second, 300, {5: {"plays": "many"}})
    out = tmp_path / "scored.parquet"
    score(runner, model_dir, first, second, "-o", out, "--columns", "all")
    types = {f.name: f.type for f in pq.read_schema(out)}
    assert types["plays"] == pa.string() and types["share"] == pa.float64()


def test_rejected_rows_keep_their_original_text(runner, model_dir, tmp_path):
    catalog = tmp_path / "catalog.csv"
    write_catalog(catalog, 50, {3: {"energy": "1.50", "share": "0.250"}})
    out = tmp_path / "scored.parquet"
    score(runner, model_dir, catalog, "-o", out, "--columns", "all")
    rejects = pl.read_parquet(tmp_path / "scored.rejects.parquet")
    assert set(rejects.dtypes[2:]) == {pl.String}
    assert rejects["energy"].to_list() == ["1.50"] and rejects["share"].to_list() == ["0.250"]
    original = pl.read_csv(catalog, infer_schema=False)
    assert rejects["explicit"].to_list() == [original["explicit"][3]] == ["False"]
    assert pq.read_schema(out).field("share").type == pa.float64()


def typed_table() -> pa.Table:
    frame = pl.read_csv(TRACKS_2000).head(200)
    table = frame.to_arrow()
    extra = {
        "plays": pa.array(range(200), pa.int32()),
        "released": pa.array([dt.date(2024, 5, 1)] * 200, pa.date32()),
        "price": pa.array([decimal.Decimal("1.50")] * 200, pa.decimal128(6, 2)),
    }
    for name, array in extra.items():
        table = table.append_column(name, array)
    return table


@pytest.mark.parametrize("kind", ["parquet", "duckdb"])
def test_parquet_and_duckdb_inputs_keep_their_stored_types(runner, model_dir, tmp_path, kind):
    table = typed_table()
    if kind == "parquet":
        source = tmp_path / "catalog.parquet"
        pq.write_table(table, source)
        args = [source]
    else:
        source = tmp_path / "catalog.duckdb"
        with duckdb.connect(str(source)) as con:
            con.register("t", table)
            con.execute("CREATE TABLE tracks AS SELECT * FROM t")
        args = [source, "--table", "tracks"]
    out = tmp_path / "scored.parquet"
    score(runner, model_dir, *args, "-o", out, "--columns", "all")
    types = {f.name: f.type for f in pq.read_schema(out)}
    assert types["plays"] == pa.int32() and types["released"] == pa.date32()
    assert types["price"] == pa.decimal128(6, 2) and types["popularity"] == pa.int64()
    expected = [(int(pc_max(table)), sum(p > 71 for p in table["popularity"].to_pylist()))]
    assert csv_answer(sql(runner, "--scored", out, QUERY.format("scored"))) == expected


def pc_max(table: pa.Table) -> int:
    return max(table["popularity"].to_pylist())
