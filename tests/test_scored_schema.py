"""The scored-table schema has one definition (popbatch.core.scored) and every writer follows it.

Also: a scored output scored again (``--columns all``) replaces its score
columns instead of duplicating them, for every sink and ``--incremental``.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from conftest import TRACKS_2000
from popbatch.batch import sqlrun

from popbatch.cli.main import cli
from popbatch.core.scored import (
    ALL_HEAD_COLUMNS,
    SCORE_COLUMNS,
    SCORE_FIELDS,
    SCORE_NAMES,
    scored_table_sql,
)

SQL_FILE = Path(__file__).resolve().parents[1] / "sql" / "scored_table.sql"
EXPECTED_SQL = [(c.name, c.sql_type) for c in SCORE_COLUMNS]
# The table the SQL file creates also has the model heads' columns (NULL without them).
EXPECTED_DDL = [*EXPECTED_SQL, *((c.name, c.sql_type) for c in ALL_HEAD_COLUMNS)]


def score(runner, model_dir, *args):
    result = runner.invoke(cli, ["score", *map(str, args), "--model", str(model_dir)])
    assert result.exit_code == 0, result.output
    return result


def describe(path: Path, table: str) -> list[tuple[str, str]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return [(r[0], r[1]) for r in con.sql(f'DESCRIBE "{table}"').fetchall()]


# ------------------------------------------------------------ one definition
def test_sql_file_is_generated_from_the_definition():
    assert SQL_FILE.read_text(encoding="utf-8") == scored_table_sql(), (
        "sql/scored_table.sql differs from popbatch.core.scored; regenerate it with "
        "'python -m popbatch.core.scored > sql/scored_table.sql'"
    )


def test_sql_file_creates_the_defined_columns(tmp_path):
    with duckdb.connect(str(tmp_path / "t.duckdb")) as con:
        con.execute(sqlrun.scored_table_ddl("scores", "track_id"))
        columns = [(r[0], r[1]) for r in con.sql("DESCRIBE scores").fetchall()]
    assert columns == [("track_id", "VARCHAR"), *EXPECTED_DDL]


def test_each_arrow_type_is_stored_by_duckdb_as_its_sql_type():
    written = (*SCORE_COLUMNS, *ALL_HEAD_COLUMNS)
    table = pa.table({c.name: pa.array([], c.arrow_type) for c in written})
    with duckdb.connect() as con:
        con.register("scores", table)
        columns = [(r[0], r[1]) for r in con.sql("DESCRIBE SELECT * FROM scores").fetchall()]
    assert columns == EXPECTED_DDL


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".duckdb"])
def test_every_sink_writes_the_defined_columns(runner, model_dir, tmp_path, suffix):
    out = tmp_path / f"scored{suffix}"
    score(runner, model_dir, TRACKS_2000, "-o", out)
    if suffix == ".parquet":
        schema = pq.read_schema(out)
        assert list(schema)[-len(SCORE_FIELDS) :] == list(SCORE_FIELDS)
        assert schema.names == ["track_id", *SCORE_NAMES]
    elif suffix == ".csv":
        header = out.read_text().splitlines()[0]
        assert header.replace('"', "").split(",") == ["track_id", *SCORE_NAMES]
    else:
        assert describe(out, "scores")[1:] == EXPECTED_SQL


def test_write_back_adds_the_defined_columns(runner, model_dir, tmp_path):
    db = tmp_path / "catalog.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(f"CREATE TABLE tracks AS SELECT * FROM read_csv('{TRACKS_2000}')")
        before = [r[0] for r in con.sql("DESCRIBE tracks").fetchall()]
    score(runner, model_dir, db, "--table", "tracks", "--write-back")
    columns = describe(db, "tracks")
    assert [c[0] for c in columns[: len(before)]] == before
    assert columns[len(before) :] == EXPECTED_SQL


def test_append_to_an_old_table_adds_missing_score_columns_with_their_types(
    runner, model_dir, tmp_path
):
    db = tmp_path / "scores.duckdb"
    with duckdb.connect(str(db)) as con:  # a table written before features_hash existed
        con.execute(
            "CREATE TABLE scores (track_id VARCHAR, popularity_prob DOUBLE, popular BOOLEAN, "
            "model_id VARCHAR, scored_at TIMESTAMP)"
        )
    score(runner, model_dir, TRACKS_2000, "-o", db, "--mode", "append")
    assert describe(db, "scores")[1:] == EXPECTED_SQL


# ------------------------------------------------------------ scoring scores
def check_readable(path: Path, table: str = "scores") -> list[str]:
    """Column names of an output, read by pyarrow, polars and DuckDB (each must agree)."""
    if path.suffix == ".duckdb":
        names = [c[0] for c in describe(path, table)]
        with duckdb.connect(str(path), read_only=True) as con:
            frame = con.sql(f'SELECT * FROM "{table}"').pl()
        assert frame.columns == names
    elif path.suffix == ".parquet":
        names = pq.read_table(path).column_names
        assert pl.read_parquet(path).columns == names
        with duckdb.connect() as con:
            assert [c[0] for c in con.sql(f"DESCRIBE SELECT * FROM '{path}'").fetchall()] == names
    else:
        names = pacsv.read_csv(path).column_names
        assert pl.read_csv(path).columns == names
        with duckdb.connect() as con:
            assert [c[0] for c in con.sql(f"DESCRIBE SELECT * FROM '{path}'").fetchall()] == names
    assert len(names) == len(set(names)), names
    return names


@pytest.fixture
def scored(runner, model_dir, tmp_path) -> dict[str, Path]:
    """One scored output of the fixture (``--columns all``) per input kind."""
    first = tmp_path / "first"
    first.mkdir()
    paths = {
        "parquet": first / "scored.parquet",
        "csv": first / "scored.csv",
        "duckdb": first / "scored.duckdb",
    }
    for path in paths.values():
        score(runner, model_dir, TRACKS_2000, "-o", path, "--columns", "all")
    return paths


@pytest.mark.parametrize("kind", ["parquet", "csv", "duckdb"])
@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".duckdb"])
def test_rescoring_a_scored_output_replaces_the_score_columns(
    runner, model_dir, tmp_path, scored, kind, suffix
):
    source = scored[kind]
    table = ["--table", "scores"] if kind == "duckdb" else []
    out = tmp_path / f"rescored{suffix}"
    result = score(runner, model_dir, source, *table, "-o", out, "--columns", "all")
    first = check_readable(source)
    again = check_readable(out)
    assert again == first  # one copy of each column, scores last, in the defined order
    assert again[-len(SCORE_NAMES) :] == list(SCORE_NAMES)
    replaced = ", ".join(SCORE_NAMES)
    assert f"new scores replaced input columns {replaced}" in result.output


@pytest.mark.parametrize("kind", ["parquet", "csv", "duckdb"])
@pytest.mark.parametrize("suffix", [".parquet", ".duckdb"])
def test_rescoring_incrementally_keeps_one_copy_of_each_column(
    runner, model_dir, tmp_path, scored, kind, suffix
):
    source = scored[kind]
    table = ["--table", "scores"] if kind == "duckdb" else []
    out = tmp_path / f"rescored{suffix}"
    summary = tmp_path / "run.json"
    for _ in range(2):  # the second run finds every row up to date and carries it over
        score(
            runner, model_dir, source, *table, "-o", out, "--columns", "all",
            "--incremental", "--summary", summary,
        )  # fmt: skip
    names = check_readable(out)
    assert names == check_readable(source)
    report = json.loads(summary.read_text())
    assert report["rows_skipped"] == 2000 and report["rows_written"] == 2000
    assert report["columns_replaced"] == list(SCORE_NAMES)


def test_write_back_into_a_scored_table_keeps_one_copy(runner, model_dir, scored):
    db = scored["duckdb"]
    score(runner, model_dir, db, "--table", "scores", "--write-back")
    names = check_readable(db)
    assert names[-len(SCORE_NAMES) :] == list(SCORE_NAMES)
