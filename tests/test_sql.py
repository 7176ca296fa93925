"""popbatch sql: queries, read-only databases, the --scored view and every named report.

The scored fixture is real rows of tests/data/tracks_2000.csv with a
deterministic popularity_prob = popularity / 100 (popular when >= 0.5); each
report's expected rows are computed here with polars, independently of SQL.
"""

from __future__ import annotations

import fnmatch
import json
import tomllib
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
from popbatch.batch import sqlrun
from popbatch.batch.runlog import record_run

from popbatch.cli.main import cli
from popbatch.core.errors import InputError
from tests.conftest import TRACKS_2000

ROOT = Path(__file__).resolve().parents[1]
MODEL_A = "a" * 64
MODEL_B = "b" * 64
RUN_1 = datetime(2026, 11, 19, 2, 0, 0)
RUN_2 = datetime(2026, 11, 20, 2, 0, 0)
RUN_3 = datetime(2026, 11, 21, 2, 0, 0)
ROWS = 400


def tracks() -> pl.DataFrame:
    """The first ROWS distinct tracks of the fixture (track_id repeats across genres)."""
    df = pl.read_csv(TRACKS_2000).unique("track_id", keep="first", maintain_order=True)
    return df.head(ROWS)


def scored_run(probs: pl.Expr, model_id: str, at: datetime, columns: str = "all") -> pl.DataFrame:
    """What popbatch score writes: key (+ catalog columns), probability, label, model, time."""
    df = tracks().with_columns(popularity_prob=probs.cast(pl.Float64))
    df = df.with_columns(
        popular=pl.col("popularity_prob") >= 0.5,
        model_id=pl.lit(model_id),
        scored_at=pl.lit(at),
    )
    keep = ["track_id"]
    if columns == "all":
        keep += ["track_name", "artists", "track_genre"]
    return df.select([*keep, "popularity_prob", "popular", "model_id", "scored_at"])


PROB = pl.col("popularity") / 100


@pytest.fixture
def scored_file(tmp_path) -> Path:
    path = tmp_path / "scores.parquet"
    scored_run(PROB, MODEL_A, RUN_3).write_parquet(path)
    return path


@pytest.fixture
def history_dir(tmp_path) -> Path:
    """Three nightly runs, one Parquet file each: the oldest has inverted labels."""
    folder = tmp_path / "history"
    folder.mkdir()
    scored_run(1 - PROB, MODEL_A, RUN_1).write_parquet(folder / "run1.parquet")
    scored_run(PROB, MODEL_A, RUN_2).write_parquet(folder / "run2.parquet")
    shifted = (PROB + 0.1).clip(upper_bound=1.0)
    scored_run(shifted, MODEL_B, RUN_3).write_parquet(folder / "run3.parquet")
    return folder


def run_json(runner, args: list[str]) -> list[dict]:
    result = runner.invoke(cli, ["sql", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# ---------------------------------------------------------------------------
# Named reports


def test_popular_by_genre(runner, scored_file):
    rows = run_json(runner, ["--scored", str(scored_file), "--report", "popular_by_genre"])
    expected = (
        tracks()
        .group_by("track_genre")
        .agg(tracks=pl.len(), popular=(PROB >= 0.5).sum(), mean=PROB.mean())
        .with_columns(share=pl.col("popular") / pl.col("tracks"))
    )
    got = {r["genre"]: r for r in rows}
    assert len(got) == expected.height
    for genre, n, popular, mean, share in expected.iter_rows():
        assert got[genre]["tracks"] == n
        assert got[genre]["popular"] == popular
        assert got[genre]["share_popular"] == pytest.approx(share, abs=1e-4)
        assert got[genre]["mean_prob"] == pytest.approx(mean, abs=1e-4)
    shares = [r["share_popular"] for r in rows]
    assert shares == sorted(shares, reverse=True)


def test_popular_by_genre_without_genre_column(runner, tmp_path):
    path = tmp_path / "keys.parquet"
    scored_run(PROB, MODEL_A, RUN_3, columns="key").write_parquet(path)
    rows = run_json(runner, ["--scored", str(path), "--report", "popular_by_genre"])
    popular = int((tracks()["popularity"] / 100 >= 0.5).sum())
    assert rows == [
        {
            "genre": "(no genre)",
            "tracks": ROWS,
            "popular": popular,
            "share_popular": round(popular / ROWS, 4),
            "mean_prob": pytest.approx(tracks()["popularity"].mean() / 100, abs=1e-4),
            "mean_pred_popularity": None,  # scored without the popularity head
        }
    ]


def test_top_predicted(runner, scored_file):
    rows = run_json(
        runner, ["--scored", str(scored_file), "--report", "top_predicted", "--param", "limit=7"]
    )
    expected = (
        tracks().with_columns(p=PROB).sort(["p", "track_id"], descending=[True, False]).head(7)
    )
    assert [r["track_id"] for r in rows] == expected["track_id"].to_list()
    assert [r["track_name"] for r in rows] == expected["track_name"].to_list()
    assert [r["artists"] for r in rows] == expected["artists"].to_list()
    assert [r["popularity_prob"] for r in rows] == pytest.approx(expected["p"].to_list())


def test_top_predicted_without_name_and_artists(runner, tmp_path):
    """A table scored with --columns key still gives the report, with NULL names."""
    path = tmp_path / "keys.parquet"
    scored_run(PROB, MODEL_A, RUN_3, columns="key").write_parquet(path)
    rows = run_json(runner, ["--scored", str(path), "--report", "top_predicted"])
    assert len(rows) == 20  # the default limit
    assert {r["track_name"] for r in rows} == {None}
    assert {r["artists"] for r in rows} == {None}
    best = tracks().with_columns(p=PROB).sort(["p", "track_id"], descending=[True, False])
    assert rows[0]["track_id"] == best["track_id"][0]


def test_score_distribution(runner, scored_file):
    rows = run_json(runner, ["--scored", str(scored_file), "--report", "score_distribution"])
    probs = (tracks()["popularity"] / 100).to_list()
    counts, popular = [0] * 10, [0] * 10
    for p in probs:
        i = min(int(p * 10), 9)
        counts[i] += 1
        popular[i] += p >= 0.5
    assert [r["bin"] for r in rows] == list(range(10))
    assert [r["tracks"] for r in rows] == counts
    assert [r["popular"] for r in rows] == popular
    assert [r["lower"] for r in rows] == pytest.approx([i / 10 for i in range(10)])
    assert [r["share"] for r in rows] == pytest.approx([c / len(probs) for c in counts], abs=1e-4)


def test_score_distribution_counts_each_key_once_in_a_history(runner, history_dir):
    rows = run_json(
        runner,
        ["--scored", str(history_dir / "*.parquet"), "--report", "score_distribution"],
    )
    assert sum(r["tracks"] for r in rows) == ROWS


def expected_label_changes() -> pl.DataFrame:
    """Between run 2 (p) and run 3 (min(p + 0.1, 1)), labels flip where 0.4 <= p < 0.5."""
    df = tracks().with_columns(before=PROB, after=(PROB + 0.1).clip(upper_bound=1.0))
    return df.filter((pl.col("before") >= 0.5) != (pl.col("after") >= 0.5))


def test_label_changes_across_one_file_per_run(runner, history_dir):
    rows = run_json(
        runner,
        [
            "--scored",
            str(history_dir / "*.parquet"),
            "--report",
            "label_changes",
            "--param",
            "limit=1000",
        ],
    )
    expected = expected_label_changes()
    assert expected.height > 0
    assert sorted(r["track_id"] for r in rows) == sorted(expected["track_id"].to_list())
    for r in rows:
        assert r["previous_popular"] is False and r["popular"] is True
        assert r["previous_model_id"] == MODEL_A and r["model_id"] == MODEL_B
        assert r["previous_scored_at"].startswith("2026-11-20")
        assert r["scored_at"].startswith("2026-11-21")
    names = dict(zip(expected["track_id"], expected["track_name"], strict=True))
    assert all(r["track_name"] == names[r["track_id"]] for r in rows)


def test_label_changes_in_a_duckdb_history_table(runner, history_dir, tmp_path):
    """An append-mode table holds the same history; the report reads it with --param table."""
    db = tmp_path / "catalog.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(sqlrun.scored_table_ddl("scores", "track_id"))
        for name in ("run1", "run2", "run3"):
            frame = pl.read_parquet(history_dir / f"{name}.parquet").drop(
                "track_name", "artists", "track_genre"
            )
            con.register("frame", frame.to_arrow())
            con.execute("INSERT INTO scores BY NAME SELECT * FROM frame")
            con.unregister("frame")
    rows = run_json(
        runner,
        ["--db", str(db), "--report", "label_changes", "--param", "table=scores", "--param",
         "limit=3"],
    )  # fmt: skip
    # the three largest moves (then by key), each from not popular to popular
    expected = (
        expected_label_changes()
        .with_columns(move=(pl.col("after") - pl.col("before")).abs())
        .sort(["move", "track_id"], descending=[True, False])
        .head(3)
    )
    assert expected.height == 3
    assert [r["track_id"] for r in rows] == expected["track_id"].to_list()
    for r, before, after in zip(rows, expected["before"], expected["after"], strict=True):
        assert (r["previous_popular"], r["popular"]) == (False, True)
        assert (r["previous_prob"], r["popularity_prob"]) == (round(before, 4), round(after, 4))
        assert (r["previous_model_id"], r["model_id"]) == (MODEL_A, MODEL_B)
    assert {r["track_name"] for r in rows} == {None}


def test_label_changes_is_empty_without_history(runner, scored_file):
    rows = run_json(runner, ["--scored", str(scored_file), "--report", "label_changes"])
    assert rows == []


def run_summaries() -> list[dict]:
    return [
        {
            "run_id": f"run{i}",
            "input": "catalog.csv",
            "output": "catalog.duckdb:scores",
            "rows_read": 100 * i,
            "rows_scored": 100 * i - i,
            "rows_rejected": i,
            "rows_skipped": 0,
            "model_id": MODEL_A,
            "started_at": datetime(2026, 11, i, 2, 0, 0),
            "finished_at": datetime(2026, 11, i, 2, 0, 30),
        }
        for i in range(1, 6)
    ]


def test_runs_report_on_a_duckdb_target(runner, tmp_path):
    db = tmp_path / "catalog.duckdb"
    for summary in run_summaries():
        record_run(db, summary, "success")
    record_run(db, {"run_id": "bad", "started_at": datetime(2026, 11, 6)}, "failed", "boom")
    rows = run_json(runner, ["--db", str(db), "--report", "runs", "--param", "limit=3"])
    assert [r["run_id"] for r in rows] == ["bad", "run5", "run4"]
    assert rows[0]["status"] == "failed" and rows[0]["error"] == "boom"
    assert rows[1]["rows_read"] == 500 and rows[1]["seconds"] == 30.0
    assert rows[1]["model_id"] == MODEL_A[:12]


def test_runs_report_on_a_runs_jsonl(runner, tmp_path):
    out = tmp_path / "scores.parquet"
    for summary in run_summaries():
        record_run(out, summary, "success")
    rows = run_json(runner, ["--runs", str(tmp_path / "runs.jsonl"), "--report", "runs"])
    assert [r["run_id"] for r in rows] == [f"run{i}" for i in range(5, 0, -1)]
    assert [r["rows_rejected"] for r in rows] == [5, 4, 3, 2, 1]


# ---------------------------------------------------------------------------
# Queries, formats, read-only


def test_query_over_scored_view_as_csv(runner, scored_file):
    result = runner.invoke(
        cli, ["sql", "--scored", str(scored_file), "SELECT count(*) AS n FROM scored"]
    )
    assert result.exit_code == 0, result.output
    assert result.output == f'"n"\n{ROWS}\n'  # CSV: CliRunner's stdout is not a terminal


def test_table_format_is_aligned(runner, scored_file):
    query = "SELECT 'x' AS name, 1.5 AS value UNION ALL SELECT 'longer', 10 ORDER BY value"
    result = runner.invoke(cli, ["sql", query, "--format", "table"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "name    value",
        "------  -----",
        "x         1.5",
        "longer   10.0",
        "(2 rows)",
    ]


def test_output_file_format_follows_extension(runner, scored_file, tmp_path):
    out = tmp_path / "top.parquet"
    result = runner.invoke(
        cli, ["sql", "--scored", str(scored_file), "--report", "top_predicted", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(out).height == 20


def test_scored_glob_over_csv(runner, tmp_path):
    scored_run(PROB, MODEL_A, RUN_3).write_csv(tmp_path / "part1.csv")
    scored_run(PROB, MODEL_A, RUN_3).head(10).write_csv(tmp_path / "part2.csv")
    rows = run_json(
        runner, ["--scored", str(tmp_path / "*.csv"), "SELECT count(*) AS n FROM scored"]
    )
    assert rows == [{"n": ROWS + 10}]


@pytest.fixture
def database(tmp_path, scored_file) -> Path:
    db = tmp_path / "catalog.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(f"CREATE TABLE scores AS SELECT * FROM read_parquet('{scored_file}')")
    return db


@pytest.mark.parametrize(
    ("statement", "kind"),
    [
        ("CREATE TABLE x AS SELECT 1 AS a", "CREATE"),
        ("INSERT INTO scores SELECT * FROM scores", "INSERT"),
        ("SELECT 1; DELETE FROM scores", "DELETE"),
        ("COPY scores TO 'copy.csv'", "COPY"),
        ("ATTACH 'other.duckdb' AS other", "ATTACH"),
    ],
)
def test_database_refuses_writes_without_write(runner, database, statement, kind):
    result = runner.invoke(cli, ["sql", "--db", str(database), statement])
    assert result.exit_code == 2
    number = 2 if statement.startswith("SELECT 1;") else 1
    assert result.output == (
        f"Error: statement {number} is {kind}, which writes; popbatch sql is read-only "
        "unless --write is given\n"
    )
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM scores").fetchall() == [(ROWS,)]
        assert con.sql("SELECT count(*) FROM duckdb_tables()").fetchall() == [(1,)]


def test_database_is_opened_read_only(database):
    """Even a statement that slips past the check cannot write: DuckDB refuses it."""
    con = sqlrun.connect(database)
    with pytest.raises(InputError, match="opened read-only, pass --write"):
        sqlrun.execute(con, "CREATE TABLE x AS SELECT 1 AS a", write=True)


def test_write_flag_allows_writes(runner, database):
    result = runner.invoke(
        cli, ["sql", "--db", str(database), "--write", "CREATE TABLE x AS SELECT 42 AS a"]
    )
    assert result.exit_code == 0, result.output
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.sql("SELECT a FROM x").fetchall() == [(42,)]


def test_missing_database_is_not_created(runner, tmp_path):
    db = tmp_path / "nope.duckdb"
    result = runner.invoke(cli, ["sql", "--db", str(db), "SELECT 1"])
    assert result.exit_code == 2
    assert result.output == f"Error: {db}: no such database (pass --write to create one)\n"
    assert not db.exists()


def test_bad_sql_is_one_line_with_position(runner):
    result = runner.invoke(cli, ["sql", "SELECT 1 +\n  FROM nowhere"])
    assert result.exit_code == 2
    assert result.output == (
        'Error: SQL error: Parser Error: syntax error at or near "FROM" (at line 2, column 3)\n'
    )


def test_unknown_column_names_its_position(runner, scored_file):
    result = runner.invoke(
        cli, ["sql", "--scored", str(scored_file), "SELECT popularity FROM scored"]
    )
    assert result.exit_code == 2
    assert result.output.startswith(
        'Error: SQL error: Binder Error: Referenced column "popularity" not found'
    )
    assert result.output.endswith("(at line 1, column 8)\n")
    assert result.output.count("\n") == 1


def test_runtime_error_is_one_line(runner):
    result = runner.invoke(cli, ["sql", "SELECT CAST('a' AS INTEGER)"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: SQL error: Conversion Error: Could not convert")
    assert result.output.count("\n") == 1


@pytest.mark.parametrize(
    ("param", "message"),
    [
        (
            "table=x; DROP TABLE scores",
            "Error: report 'top_predicted', --param table name 'x; DROP TABLE scores' is not a "
            "plain SQL identifier; use letters, digits and underscores (optionally schema.table)\n",
        ),
        (
            "limit=ten",
            "Error: report 'top_predicted', --param limit: 'ten' is not a whole number\n",
        ),
        (
            "colour=red",
            "Error: report 'top_predicted' has no parameter colour; its parameters are "
            "table, key, limit\n",
        ),
    ],
)
def test_report_parameters_are_validated(runner, database, param, message):
    args = ["sql", "--db", str(database), "--report", "top_predicted", "--param", param]
    result = runner.invoke(cli, args)
    assert result.exit_code == 2
    assert result.output == message


def test_unknown_report(runner):
    result = runner.invoke(cli, ["sql", "--report", "nope"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: no report named 'nope'; known reports: genre_mismatch")


def test_list_names_every_report_with_its_description(runner):
    result = runner.invoke(cli, ["sql", "--list"])
    assert result.exit_code == 0
    files = sorted((ROOT / "sql" / "reports").glob("*.sql"))
    assert [f.stem for f in files] == [
        "genre_mismatch",
        "label_changes",
        "popular_by_genre",
        "popularity_outliers",
        "runs",
        "score_distribution",
        "top_predicted",
        "top_reasons",
    ]
    for f in files:
        description = f.read_text().splitlines()[0].removeprefix("-- ")
        assert f"{f.stem}: {description}\n" in result.output
    assert "    --param limit=20  (integer) number of tracks to show\n" in result.output


def test_every_report_declares_the_parameters_it_uses():
    """A {name} or $name in a report without a '-- param' line would never be filled."""
    import re

    for report in sqlrun.list_reports():
        declared = {p.name for p in report.params}
        body = "\n".join(
            line for line in report.text.splitlines() if not line.lstrip().startswith("--")
        )
        used = set(re.findall(r"\{(\w+)\}", body)) | set(re.findall(r"\$(\w+)", body))
        assert used == declared, report.name


def test_scored_table_ddl_quotes_validated_names(tmp_path):
    ddl = sqlrun.scored_table_ddl("scores", "isrc")
    assert 'CREATE TABLE IF NOT EXISTS "scores" (' in ddl
    with duckdb.connect() as con:
        con.execute(ddl)
        columns = con.sql("DESCRIBE scores").fetchall()
    assert [(c[0], c[1]) for c in columns] == [
        ("isrc", "VARCHAR"),
        ("popularity_prob", "DOUBLE"),
        ("popular", "BOOLEAN"),
        ("model_id", "VARCHAR"),
        ("scored_at", "TIMESTAMP"),
        ("features_hash", "UBIGINT"),
        ("popularity_pred", "DOUBLE"),
        ("genre_pred", "VARCHAR"),
        ("genre_prob", "DOUBLE"),
    ]
    with pytest.raises(InputError, match="not a plain SQL identifier"):
        sqlrun.scored_table_ddl('scores"; DROP TABLE x; --')


# ---------------------------------------------------------------------------
# Packaging: the .sql files are found from a checkout and from an install


def test_package_data_globs_cover_every_sql_file():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"]["popbatch.sql"] == "sql"
    globs = config["package-data"]["popbatch.sql"]
    files = [p.relative_to(ROOT / "sql").as_posix() for p in (ROOT / "sql").rglob("*.sql")]
    assert files
    for name in files:
        assert any(fnmatch.fnmatch(name, g) and g.count("/") == name.count("/") for g in globs), (
            name
        )


def test_sql_dir_is_the_repositorys_sql_folder():
    assert Path(str(sqlrun.sql_dir())) == ROOT / "sql"


def test_sql_docs_list_every_report_as_list_describes_it():
    """docs/sql.md has one table row per report, exactly as ``--list`` describes it."""
    page = (ROOT / "docs" / "sql.md").read_text(encoding="utf-8")
    reports = sqlrun.list_reports()
    assert reports
    for report in reports:
        params = ", ".join(f"`{p.name}={p.default}`" for p in report.params)
        row = f"| `{report.name}` | {report.description} | {params} |"
        assert row in page, f"docs/sql.md lacks the row of report {report.name}: {row}"


@pytest.mark.parametrize(
    ("fmt", "output", "tty", "expected"),
    [
        (None, None, True, "table"),
        (None, None, False, "csv"),
        ("json", None, True, "json"),
        (None, Path("x.parquet"), True, "parquet"),
        (None, Path("x.json"), False, "json"),
        (None, Path("x.out"), True, "csv"),
        ("table", Path("x.csv"), False, "table"),
    ],
)
def test_default_format_is_table_on_a_terminal_else_csv(fmt, output, tty, expected):
    assert sqlrun.choose_format(fmt, output, tty) == expected


def test_query_and_report_are_exclusive(runner):
    result = runner.invoke(cli, ["sql", "SELECT 1", "--report", "runs"])
    assert result.exit_code == 2
    assert result.output == (
        "Error: give either a SQL query or --report NAME (popbatch sql --list)\n"
    )


def test_not_a_duckdb_file_is_exit_2(runner, tmp_path):
    fake = tmp_path / "fake.duckdb"
    fake.write_text("track_id,popularity\n")
    result = runner.invoke(cli, ["sql", "--db", str(fake), "SELECT 1"])
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {fake}: not a DuckDB database (")
    assert result.output.count("\n") == 1


def test_error_in_a_later_statement_counts_lines_from_the_start(runner):
    result = runner.invoke(cli, ["sql", "SELECT 1;\nSELECT nope FROM range(3)"])
    assert result.exit_code == 2
    assert result.output.endswith("(at line 2, column 8)\n")
    assert result.output.count("\n") == 1


def test_error_while_rows_stream_leaves_no_output_file(runner, tmp_path):
    """The bad value sits after 150,000 good rows, so the error comes mid-stream."""
    query = (
        "SELECT CAST(CASE WHEN range < 150000 THEN range::VARCHAR ELSE 'x' END AS INTEGER) AS n "
        "FROM range(200000)"
    )
    out = tmp_path / "out.csv"
    result = runner.invoke(cli, ["sql", query, "-o", str(out)])
    assert result.exit_code == 2
    assert result.output.startswith("Error: SQL error: Conversion Error: Could not convert")
    assert result.output.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_scored_view_joins_a_read_only_database(runner, database, scored_file):
    """The temporary `scored` view works on a database opened read-only."""
    query = "SELECT count(*) AS n FROM scored JOIN scores USING (track_id)"
    rows = run_json(runner, ["--db", str(database), "--scored", str(scored_file), query])
    assert rows == [{"n": ROWS}]


# ---------------------------------------------------------------------------
# Reports on the heads' columns

# A deterministic stand-in for the heads: predicted popularity = actual + a gap
# that grows with the row number; the predicted genre is the catalog's on even
# rows and "opera" on odd rows, with probability 0.2 .. 0.99.
GAP = (pl.int_range(pl.len()) - ROWS // 2) / 10


def scored_with_heads(tmp_path, columns: str = "all") -> Path:
    df = tracks().with_columns(
        popularity_prob=PROB.cast(pl.Float64),
        popular=PROB >= 0.5,
        model_id=pl.lit(MODEL_A),
        scored_at=pl.lit(RUN_3),
        popularity_pred=(pl.col("popularity") + GAP).clip(0, 100).cast(pl.Float64),
        genre_pred=pl.when(pl.int_range(pl.len()) % 2 == 0)
        .then(pl.col("track_genre"))
        .otherwise(pl.lit("opera")),
        genre_prob=(0.2 + pl.int_range(pl.len()) / ROWS * 0.79).cast(pl.Float64),
    )
    keep = [
        "track_id",
        *(["track_name", "artists", "track_genre", "popularity"] if columns == "all" else []),
    ]
    path = tmp_path / "heads.parquet"
    df.select(
        [*keep, "popularity_prob", "popular", "model_id", "scored_at",
         "popularity_pred", "genre_pred", "genre_prob"]
    ).write_parquet(path)  # fmt: skip
    return path


def test_popular_by_genre_shows_the_mean_predicted_popularity(runner, tmp_path):
    path = scored_with_heads(tmp_path)
    rows = run_json(runner, ["--scored", str(path), "--report", "popular_by_genre"])
    frame = pl.read_parquet(path)
    expected = dict(frame.group_by("track_genre").agg(pl.col("popularity_pred").mean()).iter_rows())
    assert {r["genre"]: r["mean_pred_popularity"] for r in rows} == pytest.approx(
        expected, abs=0.0051
    )


def test_genre_mismatch(runner, tmp_path):
    path = scored_with_heads(tmp_path)
    args = ["--scored", str(path), "--report", "genre_mismatch"]
    rows = run_json(runner, [*args, "--param", "min_prob=0.5", "--param", "limit=1000"])
    frame = pl.read_parquet(path)
    expected = frame.filter(
        (pl.col("genre_pred") != pl.col("track_genre")) & (pl.col("genre_prob") >= 0.5)
    )
    assert {r["track_id"] for r in rows} == set(expected["track_id"].to_list())
    assert all(r["genre_pred"] == "opera" and r["genre_prob"] >= 0.5 for r in rows)
    probs = [r["genre_prob"] for r in rows]
    assert probs == sorted(probs, reverse=True)
    top = run_json(runner, [*args, "--param", "limit=3"])
    assert [r["track_id"] for r in top] == [r["track_id"] for r in rows[:3]]


def test_genre_mismatch_counts_a_track_under_any_of_its_genres(runner, tmp_path):
    """A track listed under two genres is no mismatch when the prediction is either."""
    path = tmp_path / "two.parquet"
    pl.DataFrame(
        {
            "track_id": ["t1", "t1", "t2"],
            "track_genre": ["Pop", "dance", "rock"],
            "genre_pred": ["pop", "pop", "jazz"],
            "genre_prob": [0.6, 0.6, 0.7],
            "scored_at": [RUN_3] * 3,
        }
    ).write_parquet(path)
    rows = run_json(runner, ["--scored", str(path), "--report", "genre_mismatch"])
    assert [(r["track_id"], r["catalog_genres"], r["genre_pred"]) for r in rows] == [
        ("t2", "rock", "jazz")
    ]


def test_popularity_outliers(runner, tmp_path):
    path = scored_with_heads(tmp_path)
    rows = run_json(
        runner, ["--scored", str(path), "--report", "popularity_outliers", "--param", "limit=5"]
    )
    frame = pl.read_parquet(path).with_columns(gap=pl.col("popularity_pred") - pl.col("popularity"))
    expected = frame.sort([pl.col("gap").abs(), "track_id"], descending=[True, False]).head(5)
    assert [r["track_id"] for r in rows] == expected["track_id"].to_list()
    for row, gap in zip(rows, expected["gap"].to_list(), strict=True):
        assert row["gap"] == pytest.approx(gap, abs=0.006)
        assert row["gap"] == pytest.approx(row["predicted"] - row["actual"], abs=0.011)


def test_popularity_outliers_without_the_actual_column_is_empty(runner, tmp_path):
    path = scored_with_heads(tmp_path, columns="key")
    rows = run_json(runner, ["--scored", str(path), "--report", "popularity_outliers"])
    assert rows == []
