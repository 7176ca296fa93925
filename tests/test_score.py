"""popbatch score end to end through click's CliRunner, and the Python API.

The reference probabilities are computed independently of the scorer: the
fixture's training matrix (tests/model_factory.py) through onnxruntime in one
batch. Rows are matched on the fixture's unique original index ``Unnamed: 0``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import onnxruntime as ort
import polars as pl
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from bad_rows import bad_catalog
from conftest import SMALL_TITLE_CASE, TRACKS_2000
from model_factory import training_matrix
from popbatch.batch.naming import default_output
from popbatch.batch.score import RunSummary, score
from popbatch.batch.sinks import ParquetSink
from popbatch.batch.sources import CsvSource

from popbatch.cli.main import cli
from popbatch.core.errors import InputError

SAMPLE = Path(__file__).resolve().parents[1] / "batch" / "sample" / "catalog.csv"
SCORE_COLUMNS = [
    "popularity_prob",
    "popular",
    "model_id",
    "scored_at",
    "features_hash",
    "input_row",
]
# Said, not inferred: polars before 1.31 infers a CSV column of hashes above 2**63 as i64 and fails.
HASH_AS_U64 = {"features_hash": pl.UInt64}


@pytest.fixture(scope="module")
def reference(model_dir) -> dict[int, float]:
    """Probability per original row index, from one onnxruntime call on the whole fixture."""
    x, _, _ = training_matrix()
    session = ort.InferenceSession(str(model_dir / "model.onnx"))
    probability, _ = session.run(None, {"features": x.astype(np.float32)})
    index = pl.read_csv(TRACKS_2000)["Unnamed: 0"].to_list()
    return dict(zip(index, probability.tolist(), strict=True))


@pytest.fixture(scope="module")
def model_id(model_dir) -> str:
    return json.loads((model_dir / "manifest.json").read_text())["model_id"]


@pytest.fixture
def tracks_db(tmp_path):
    path = tmp_path / "catalog.duckdb"
    con = duckdb.connect(str(path))
    con.execute(f"CREATE TABLE tracks AS SELECT * FROM read_csv('{TRACKS_2000}')")
    con.close()
    return path


def listing(directory: Path) -> list[str]:
    """Files in a directory, leaving out the lock files and run log every run leaves."""
    return sorted(
        p.name for p in directory.iterdir() if p.suffix != ".lock" and p.name != "runs.jsonl"
    )


def run(runner, model_dir, *args):
    return runner.invoke(cli, ["score", *map(str, args), "--model", str(model_dir)])


def check_scores(frame: pl.DataFrame, reference, model_id, rows=2000):
    """Rows, probabilities in [0, 1], equal to the one-batch reference, one run time."""
    assert frame.height == rows
    assert frame["popularity_prob"].is_between(0, 1).all()
    expected = [reference[i] for i in frame["unnamed_0"].to_list()]
    np.testing.assert_array_equal(frame["popularity_prob"].to_numpy(), np.float32(expected))
    assert frame["model_id"].unique().to_list() == [model_id]
    assert frame["scored_at"].n_unique() == 1
    assert frame["popular"].to_list() == [p >= 0.5 for p in expected]


# ------------------------------------------------------------------ inputs
def test_csv_to_parquet_in_small_batches(runner, model_dir, tmp_path, reference, model_id):
    out = tmp_path / "scored.parquet"
    result = run(
        runner, model_dir, TRACKS_2000, "-o", out, "--batch-size", 300,
        "--columns", "Unnamed: 0,track_id",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(out)
    assert frame.columns == ["unnamed_0", "track_id", *SCORE_COLUMNS]
    # CSV columns keep their type, inferred from the whole file (never block by block)
    assert frame["unnamed_0"].dtype == pl.Int64 and frame["track_id"].dtype == pl.String
    assert frame["unnamed_0"].to_list() == pl.read_csv(TRACKS_2000)["Unnamed: 0"].to_list()
    check_scores(frame, reference, model_id)
    assert "scored 2,000 of 2,000 rows from" in result.output
    assert listing(tmp_path) == ["scored.parquet"]  # no temp files left


def test_parquet_file_glob_and_hive_directory(runner, model_dir, tmp_path, reference, model_id):
    table = pl.read_csv(TRACKS_2000).to_arrow()
    pq.write_table(table, tmp_path / "tracks.parquet", row_group_size=700)
    hive = tmp_path / "hive"
    pq.write_to_dataset(table, hive, partition_cols=["track_genre"])  # genre only in paths
    for number, inputs in enumerate(
        [[tmp_path / "tracks.parquet"], [str(hive / "*" / "*.parquet")], [hive]]
    ):
        out = tmp_path / f"out{number}.parquet"
        result = run(runner, model_dir, *inputs, "-o", out, "--columns", "all", "--batch-size", 512)
        assert result.exit_code == 0, result.output
        frame = pl.read_parquet(out)
        assert (
            "track_genre" in frame.columns and frame.columns[-len(SCORE_COLUMNS) :] == SCORE_COLUMNS
        )
        check_scores(frame, reference, model_id)


def test_duckdb_table_and_query(runner, model_dir, tmp_path, tracks_db, reference, model_id):
    out = tmp_path / "t.parquet"
    result = run(runner, model_dir, tracks_db, "--table", "tracks", "-o", out, "--columns", "all")
    assert result.exit_code == 0, result.output
    check_scores(pl.read_parquet(out), reference, model_id)

    query = "SELECT * FROM tracks WHERE track_genre = 'jazz' ORDER BY \"Unnamed: 0\""
    result = run(runner, model_dir, tracks_db, "--query", query, "-o", out, "--columns", "all")
    assert result.exit_code == 0, result.output
    jazz = pl.read_csv(TRACKS_2000).filter(pl.col("track_genre") == "jazz").height
    check_scores(pl.read_parquet(out), reference, model_id, rows=jazz)


def test_title_case_file_scores_through_normalisation(runner, model_dir, tmp_path):
    out = tmp_path / "small.csv"
    result = run(runner, model_dir, SMALL_TITLE_CASE, "-o", out, "--fill", "time_signature=4")
    assert result.exit_code == 0, result.output
    frame = pl.read_csv(out, schema_overrides=HASH_AS_U64)
    assert frame.columns == ["track_id", *SCORE_COLUMNS]
    assert frame.height == 227 and frame["popularity_prob"].is_between(0, 1).all()
    assert frame["track_id"].to_list() == pl.read_csv(SMALL_TITLE_CASE)["Track ID"].to_list()


# ----------------------------------------------------------------- outputs
def test_csv_output_matches_parquet_output(runner, model_dir, tmp_path):
    for name in ("a.csv", "a.parquet"):
        result = run(runner, model_dir, TRACKS_2000, "-o", tmp_path / name, "-q")
        assert result.exit_code == 0 and result.output == ""
    csv = pl.read_csv(tmp_path / "a.csv", schema_overrides=HASH_AS_U64)
    parquet = pl.read_parquet(tmp_path / "a.parquet")
    assert csv["track_id"].to_list() == parquet["track_id"].to_list()
    np.testing.assert_allclose(csv["popularity_prob"], parquet["popularity_prob"], rtol=1e-12)
    assert csv["popular"].to_list() == parquet["popular"].to_list()


def test_duckdb_into_replace_append_upsert(runner, model_dir, tmp_path, tracks_db, reference):
    target = tmp_path / "scores.duckdb"

    def table(name):
        con = duckdb.connect(str(target), read_only=True)
        try:
            return con.sql(f"SELECT * FROM {name}").pl()
        finally:
            con.close()

    base = [tracks_db, "--table", "tracks", "-o", target, "--columns", "Unnamed: 0,track_id"]
    for mode, rows in (("replace", 2000), ("replace", 2000), ("append", 4000)):
        result = run(runner, model_dir, *base, "--into", "hist", "--mode", mode)
        assert result.exit_code == 0, result.output
        assert table("hist").height == rows
    unique_keys = pl.read_csv(TRACKS_2000)["track_id"].n_unique()  # 1,991: 9 ids repeat
    for _ in range(2):
        result = run(runner, model_dir, *base, "--into", "latest", "--mode", "upsert")
        assert result.exit_code == 0, result.output
        latest = table("latest")
        assert latest.height == unique_keys == latest["track_id"].n_unique()
    assert "1,991 rows written (one per key)" in result.output
    # the last row read for a repeated key wins
    last = pl.read_csv(TRACKS_2000).group_by("track_id").agg(pl.col("Unnamed: 0").last())
    merged = latest.join(last, on="track_id")
    assert (merged["unnamed_0"] == merged["Unnamed: 0"]).all()
    check = latest.with_columns(pl.col("unnamed_0").cast(pl.Int64))
    expected = np.float32([reference[i] for i in check["unnamed_0"].to_list()])
    np.testing.assert_array_equal(check["popularity_prob"].to_numpy(), expected)


@pytest.mark.parametrize("mode", ["upsert", "append"])
def test_columns_all_into_a_table_an_earlier_run_wrote_with_the_key_only(
    runner, model_dir, tmp_path, mode
):
    """The pass-through columns the earlier run did not write are added, typed as in
    the input; rows written before hold NULL there (append) or are replaced (upsert)."""
    target = tmp_path / "catalog.duckdb"
    into = [TRACKS_2000, "-o", target, "--into", "scores", "--mode", mode]
    first = run(runner, model_dir, *into)
    assert first.exit_code == 0, first.output
    second = run(runner, model_dir, *into, "--columns", "all")
    assert second.exit_code == 0, second.output
    con = duckdb.connect(str(target), read_only=True)
    try:
        types = dict(
            con.execute("SELECT column_name, column_type FROM (DESCRIBE scores)").fetchall()
        )
        frame = con.sql("SELECT * FROM scores").pl()
    finally:
        con.close()
    header = pl.read_csv(TRACKS_2000, n_rows=0).columns
    assert len(types) == len(header) + len(SCORE_COLUMNS)  # the test model has no heads
    assert (types["track_name"], types["unnamed_0"], types["danceability"]) == (
        "VARCHAR",
        "BIGINT",
        "DOUBLE",
    )
    if mode == "upsert":
        assert (
            frame.height == frame["track_id"].n_unique() and frame["track_name"].null_count() == 0
        )
    else:
        assert frame.height == 4000 and frame["track_name"].null_count() == 2000


def test_a_failed_write_names_the_table_that_failed(runner, model_dir, tmp_path):
    # A table of popbatch's own shape (so the table guards let the run write it) whose
    # CHECK constraint refuses every score: the failure comes from the write itself.
    target = tmp_path / "catalog.duckdb"
    first = run(runner, model_dir, TRACKS_2000, "-o", target, "--into", "shape")
    assert first.exit_code == 0, first.output
    with duckdb.connect(str(target)) as con:
        columns = con.execute("DESCRIBE shape").fetchall()
        check = {"popularity_prob": " CHECK (popularity_prob < 0)"}
        ddl = ", ".join(f'"{name}" {kind}{check.get(name, "")}' for name, kind, *_ in columns)
        con.execute(f"CREATE TABLE scores ({ddl})")
    into = ["-o", target, "--into", "scores", "--mode", "append"]
    result = run(runner, model_dir, TRACKS_2000, *into)
    assert result.exit_code == 1, result.output
    assert "writing scores failed (Constraint Error" in result.output
    assert "scores_rejects" not in result.output  # no rows rejected: no such table


def test_input_row_numbers_each_scored_row_as_the_rejects_number_theirs(
    runner, model_dir, tmp_path
):
    source = bad_catalog(tmp_path, {5: {"danceability": "1.7"}, 1700: {"tempo": "n/a"}})
    out = tmp_path / "scored.parquet"
    result = run(runner, model_dir, source, "-o", out, "--batch-size", "300")
    assert result.exit_code == 0, result.output
    scored = pl.read_parquet(out)
    rejects = pl.read_parquet(tmp_path / "scored.rejects.parquet")
    assert rejects["row"].to_list() == [5, 1700]
    expected = [n for n in range(1, 2001) if n not in (5, 1700)]
    assert scored["input_row"].to_list() == expected
    assert scored["track_id"].to_list() == [
        pl.read_csv(TRACKS_2000)["track_id"][n - 1] for n in expected
    ]


def test_write_back_twice_keeps_rows_and_values(runner, model_dir, tracks_db, reference):
    def read():
        con = duckdb.connect(str(tracks_db), read_only=True)
        try:
            return con.sql('SELECT * FROM tracks ORDER BY "Unnamed: 0"').pl()
        finally:
            con.close()

    outputs = []
    for _ in range(2):
        result = run(runner, model_dir, tracks_db, "--table", "tracks", "--write-back")
        assert result.exit_code == 0, result.output
        outputs.append(read())
    first, second = outputs
    assert first.height == second.height == 2000
    assert first.columns[-len(SCORE_COLUMNS) :] == SCORE_COLUMNS
    assert first["popularity_prob"].to_list() == second["popularity_prob"].to_list()
    assert first["popular"].to_list() == second["popular"].to_list()
    assert second["scored_at"].n_unique() == 1
    assert second["scored_at"][0] >= first["scored_at"][0]
    # keys are unique except the 9 repeated ids, which carry their last row's score
    unique = first.filter(pl.col("track_id").is_unique())
    expected = np.float32([reference[i] for i in unique["Unnamed: 0"].to_list()])
    np.testing.assert_array_equal(unique["popularity_prob"].to_numpy(), expected)


def test_write_back_out_of_duckdb_memory_says_what_to_do(
    runner, model_dir, tracks_db, monkeypatch
):
    """DuckDB holds an UPDATE's changes in memory until the commit: a table too large for
    its limit (here a 2,000-row table under a 2 MB limit; 10M rows under 256 MB) fails
    with the fix popbatch offers, not DuckDB's advice on settings popbatch chooses."""
    import popbatch.batch.lock as lock

    monkeypatch.setattr(lock, "DUCKDB_MEMORY_LIMIT", "2MB")
    result = run(runner, model_dir, tracks_db, "--table", "tracks", "--write-back")
    assert result.exit_code != 0
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: {tracks_db}: writing tracks failed (Out of Memory Error")
    assert "the database is unchanged" in line and "-o DATABASE --into TABLE" in line
    assert "Possible solutions" not in line and "SET memory_limit" not in line
    with duckdb.connect(str(tracks_db), read_only=True) as con:
        columns = [row[0] for row in con.execute("DESCRIBE tracks").fetchall()]
    assert "popularity_prob" not in columns


def test_default_inference_threads_leave_the_reader_a_core(runner, model_dir, tmp_path):
    """The reader thread (read, preprocess, hash) is a run's longest serial stage:
    by default inference takes every core but that one; --threads overrides it."""
    import os

    cores = len(os.sched_getaffinity(0))
    for extra, threads in (([], max(1, cores - 1)), (["--threads", "3"], 3)):
        out = tmp_path / f"s{threads}.parquet"
        result = run(runner, model_dir, TRACKS_2000, "-o", out, "--json", *extra)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["threads"] == threads


# ---------------------------------------------------------------- rejects
def test_rejects_file_and_summary_json(runner, model_dir, tmp_path):
    source = bad_catalog(tmp_path, {5: {"danceability": "1.7"}, 1700: {"tempo": "n/a"}})
    out = tmp_path / "s.parquet"
    result = run(runner, model_dir, source, "-o", out, "--json", "--batch-size", 600)
    assert result.exit_code == 0, result.output
    rejects = pl.read_parquet(tmp_path / "s.rejects.parquet")
    assert rejects["row"].to_list() == [5, 1700]
    assert rejects["reason"].to_list() == [
        "danceability 1.7 is outside [0, 1]",
        "tempo n/a is not a number",
    ]
    original = pl.read_csv(TRACKS_2000, infer_schema=False)
    assert rejects["track_id"].to_list() == original["track_id"].gather([4, 1699]).to_list()
    assert rejects["danceability"][0] == "1.7" and rejects["tempo"][1] == "n/a"
    assert rejects["energy"][0] == original["energy"][4]
    data = json.loads(result.stdout)
    assert (data["rows_read"], data["rows_scored"], data["rows_rejected"]) == (2000, 1998, 2)
    assert data["rows_read"] == data["rows_scored"] + data["rows_rejected"]
    assert data["rejects"] == str(tmp_path / "s.rejects.parquet")
    assert pl.read_parquet(out).height == 1998
    assert "1,998 of 2,000 rows, 2 rejected" in result.output


def test_failure_in_third_batch_leaves_no_output_and_keeps_previous(runner, model_dir, tmp_path):
    source = bad_catalog(tmp_path, {1250: {"energy": "-1"}})  # batch 3 of 500-row batches
    out = tmp_path / "s.parquet"
    args = [source, "-o", out, "--on-invalid", "fail", "--batch-size", 500]
    result = run(runner, model_dir, *args)
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {source}: row 1250 (track_id ")
    assert "energy -1.0 is outside [0, 1]" in result.output
    assert listing(tmp_path) == [source.name]  # no output, no temp file
    (logged,) = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert logged["status"] == "failed" and logged["error"].startswith(f"{source}: row 1250")

    previous = tmp_path / "previous.parquet"
    pq.write_table(pa.table({"track_id": ["kept"]}), previous)
    result = run(runner, model_dir, *args[:1], "-o", previous, *args[3:])
    assert result.exit_code == 2
    assert pl.read_parquet(previous)["track_id"].to_list() == ["kept"]

    # a DuckDB target: the table stays exactly as it was
    db = tmp_path / "target.duckdb"
    con = duckdb.connect(str(db))
    con.execute(  # an earlier run's scores (a table of another shape is refused up front)
        "CREATE TABLE scores AS SELECT 'kept' AS track_id, 0.5::DOUBLE AS popularity_prob, "
        "true AS popular, 'm' AS model_id, TIMESTAMP '2026-01-01' AS scored_at"
    )
    con.close()
    result = run(runner, model_dir, source, "-o", db, "--into", "scores", *args[3:])
    assert result.exit_code == 2
    con = duckdb.connect(str(db), read_only=True)
    assert con.sql("SELECT track_id FROM scores").fetchall() == [("kept",)]
    assert [r[0] for r in con.sql("SHOW TABLES").fetchall()] == ["popbatch_runs", "scores"]
    # the failed run's row was written after the rollback, in its own transaction
    assert con.sql("SELECT status, rows_scored FROM popbatch_runs").fetchall() == [("failed", 1000)]
    con.close()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# ------------------------------------------------------------------ errors
def test_one_line_errors_with_exit_code_2(runner, model_dir, tmp_path, tracks_db):
    cases = [
        (
            [SMALL_TITLE_CASE, "-o", tmp_path / "x.parquet"],
            f"Error: {SMALL_TITLE_CASE}: missing required column time_signature; rename a "
            "column with --map NAME=COLUMN or supply a constant with --fill NAME=VALUE",
        ),
        (
            [tmp_path / "nope.csv", "-o", tmp_path / "x.parquet"],
            f"Error: {tmp_path / 'nope.csv'}: no such file",
        ),
        (
            [tracks_db, "--table", "trax", "-o", tmp_path / "x.parquet"],
            f"Error: {tracks_db}: no table 'trax'; tables present: tracks",
        ),
        (
            [TRACKS_2000, "--map", "tempo=bpm", "-o", tmp_path / "x.parquet"],
            f"Error: --map tempo=bpm: {TRACKS_2000} has no column 'bpm'",
        ),
        (
            [tracks_db, "--table", "x; DROP TABLE tracks", "-o", tmp_path / "x.parquet"],
            "Error: table name 'x; DROP TABLE tracks' is not a plain SQL identifier; use "
            "letters, digits and underscores (optionally schema.table)",
        ),
    ]
    unreadable = tmp_path / "locked.csv"
    unreadable.write_text("a,b\n1,2\n")
    unreadable.chmod(0)
    try:
        open(unreadable).close()
    except PermissionError:  # not when the tests run as root
        cases.append(
            (
                [unreadable, "-o", tmp_path / "x.parquet"],
                f"Error: {unreadable}: cannot open (Permission denied)",
            )
        )
    not_parquet = tmp_path / "broken.parquet"
    not_parquet.write_bytes(b"PAR1 this is not parquet")
    cases.append(([not_parquet, "-o", tmp_path / "x.parquet"], f"Error: {not_parquet}: not "))
    for args, message in cases:
        result = run(runner, model_dir, *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.count("\n") == 1, result.output
        assert result.output.startswith(message), result.output
    assert not (tmp_path / "x.parquet").exists()


def test_bad_map_syntax_is_a_usage_error(runner, model_dir):
    result = run(runner, model_dir, TRACKS_2000, "--map", "tempo")
    assert result.exit_code == 2
    assert "'tempo' is not NAME=VALUE" in result.output


# -------------------------------------------------------------- Python API
def test_python_api_and_batch_size_invariance(model_dir, tmp_path):
    one = score(TRACKS_2000, tmp_path / "one.parquet", model_dir, batch_size=10_000)
    small = score(
        CsvSource([TRACKS_2000]),
        ParquetSink(tmp_path / "small.parquet"),
        model_dir,
        batch_size=7,
        threads=1,
    )
    assert isinstance(small, RunSummary)
    assert (small.rows_read, small.rows_scored, small.rows_rejected) == (2000, 2000, 0)
    assert small.model_id == one.model_id and small.threads == 1
    a = pl.read_parquet(tmp_path / "one.parquet")
    b = pl.read_parquet(tmp_path / "small.parquet")
    assert a.drop("scored_at").equals(b.drop("scored_at"))
    assert pq.ParquetFile(tmp_path / "small.parquet").metadata.num_row_groups > 1


def test_default_output_is_beside_the_input(runner, model_dir, tmp_path, tracks_db):
    csv = tmp_path / "catalog.csv"
    shutil.copy(TRACKS_2000, csv)
    result = run(runner, model_dir, csv)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "catalog.scored.parquet").exists()
    assert default_output(tracks_db, table="tracks") == tmp_path / "catalog.tracks.scored.parquet"
    assert default_output(tmp_path / "parts") == tmp_path / "parts.scored.parquet"


def test_readme_first_command_with_the_embedded_model(runner, tmp_path, monkeypatch):
    """`popbatch score batch/sample/catalog.csv -o scored.parquet`, as the README says."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, ["score", str(SAMPLE), "-o", "scored.parquet"])
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(tmp_path / "scored.parquet")
    assert frame.height + _rejected(tmp_path) == 1000
    assert frame["popularity_prob"].is_between(0, 1).all()
    assert "into scored.parquet" in result.output


def _rejected(directory) -> int:
    path = directory / "scored.rejects.parquet"
    return pl.read_parquet(path).height if path.exists() else 0


def test_interrupt_midway_writes_nothing_and_keeps_previous_output(model_dir, tmp_path):
    """Ctrl-C between batches: the temp file goes, the previous output stays."""
    out = tmp_path / "s.parquet"
    pq.write_table(pa.table({"track_id": ["kept"]}), out)

    def interrupt(rows_done, total):
        if rows_done >= 600:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        score(TRACKS_2000, out, model_dir, batch_size=300, progress=interrupt)
    assert pl.read_parquet(out)["track_id"].to_list() == ["kept"]
    assert listing(tmp_path) == ["s.parquet"]


def test_interrupt_exit_code_through_the_cli(runner, model_dir, tmp_path, monkeypatch):
    import popbatch.batch.stream as stream

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stream.StreamingRun, "run", interrupted)
    result = run(runner, model_dir, TRACKS_2000, "-o", tmp_path / "s.parquet")
    assert result.exit_code == 130
    assert result.output == "Error: interrupted; nothing partial was written\n"
    (line,) = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert json.loads(line)["status"] == "interrupted"


def test_progress_bar_draws_rows_of_total_only_when_enabled():
    import io

    from popbatch.cli.commands.progress import ProgressBar

    stream = io.StringIO()
    ProgressBar(stream)(100, 1000)  # StringIO is not a terminal: nothing drawn
    assert stream.getvalue() == ""
    bar = ProgressBar(stream, enabled=True)
    bar(1000, 1000)
    assert "100% 1,000/1,000 rows" in stream.getvalue()
    bar(1200, None)  # redraws are throttled to 10 a second
    assert "1,200 rows" not in stream.getvalue()
    bar.last_draw = 0.0
    bar(1500, None)  # CSV: no total known
    assert "1,500 rows" in stream.getvalue().split("\r")[-1]
    bar.close()
    assert stream.getvalue().endswith("\r\033[K")


def test_duckdb_column_types_pass_through_unchanged(runner, model_dir, tmp_path):
    db = tmp_path / "typed.duckdb"
    con = duckdb.connect(str(db))
    con.execute(
        "CREATE TABLE tracks AS SELECT *, popularity::DECIMAL(10, 2) AS pop_decimal, "
        f"DATE '2024-01-12' AS released FROM read_csv('{TRACKS_2000}')"
    )
    con.close()
    out = tmp_path / "typed.parquet"
    result = run(runner, model_dir, db, "--table", "tracks", "-o", out, "--columns", "all")
    assert result.exit_code == 0, result.output
    schema = pq.read_schema(out)
    assert schema.field("pop_decimal").type == pa.decimal128(10, 2)
    assert schema.field("released").type == pa.date32()
    assert pq.read_metadata(out).num_rows == 2000


def test_a_column_type_that_cannot_hold_numbers_is_one_line_exit_2(runner, model_dir, tmp_path):
    path = tmp_path / "lists.parquet"
    frame = pl.read_csv(TRACKS_2000).with_columns(pl.concat_list("tempo").alias("tempo"))
    frame.write_parquet(path)
    result = run(runner, model_dir, path, "-o", tmp_path / "x.parquet")
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {path}: cannot read the model inputs from rows 1-2000")
    assert result.output.count("\n") == 1
    assert not (tmp_path / "x.parquet").exists()


def test_columns_csv_cannot_hold_are_refused_without_leftovers(runner, model_dir, tmp_path):
    path = tmp_path / "lists.parquet"
    pl.read_csv(TRACKS_2000).with_columns(pl.concat_list("artists")).write_parquet(path)
    out = tmp_path / "out.csv"
    result = run(runner, model_dir, path, "-o", out, "--columns", "all")
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {out}: cannot write these columns as .csv (")
    assert result.output.endswith("; pass fewer --columns or write .parquet\n")
    assert listing(tmp_path) == ["lists.parquet"]


def test_scorer_slices_large_batches_without_changing_scores(model_dir, monkeypatch):
    """OnnxScorer runs onnxruntime on CHUNK_ROWS-row slices (to bound its memory): the
    scores must equal one call on the whole matrix, row for row, last partial slice included."""
    from popbatch.batch.runner import OnnxScorer

    from popbatch.core.bundle import load_model

    x = np.ascontiguousarray(training_matrix()[0], np.float32)
    monkeypatch.setattr(OnnxScorer, "CHUNK_ROWS", 300)  # 2,000 rows: 6 whole slices + 200
    probability, popular = OnnxScorer(load_model(model_dir), threads=1).predict(x)
    expected, label = ort.InferenceSession(str(model_dir / "model.onnx")).run(None, {"features": x})
    np.testing.assert_array_equal(probability, expected.reshape(-1))
    assert popular.dtype == bool
    assert popular.tolist() == (label.reshape(-1) == 1).tolist()


# ---------------------------------------------------------------------------
# The Python API has the CLI's guards (they live in the library, not the command)


def test_api_refuses_to_overwrite_the_input(model_dir, tmp_path):

    catalog = tmp_path / "catalog.csv"
    shutil.copy(TRACKS_2000, catalog)
    before = catalog.read_bytes()
    with pytest.raises(InputError, match="would overwrite the input"):
        score(catalog, catalog, model_dir)
    assert catalog.read_bytes() == before


def test_api_default_output_is_beside_the_input(model_dir, tmp_path):
    catalog = tmp_path / "catalog.csv"
    shutil.copy(TRACKS_2000, catalog)
    summary = score(catalog, model=model_dir, record=False)
    assert summary.output == str(tmp_path / "catalog.scored.parquet")
    assert pl.read_parquet(tmp_path / "catalog.scored.parquet").height == summary.rows_scored


def test_api_takes_one_options_object_and_refuses_unknown_options(model_dir, tmp_path):
    from popbatch.batch.score import ScoreOptions


    options = ScoreOptions(columns="all", batch_size=500, record=False)
    summary = score(TRACKS_2000, tmp_path / "s.parquet", model_dir, options)
    assert summary.batch_size == 500
    assert "danceability" in pl.read_parquet_schema(tmp_path / "s.parquet")
    with pytest.raises(InputError, match="batch_sise"):
        score(TRACKS_2000, tmp_path / "t.parquet", model_dir, batch_sise=10)


def test_a_run_that_rejects_every_row_fails_and_keeps_the_previous_scores(model_dir, tmp_path):
    """Nightly, a catalog whose every row is invalid must not replace yesterday's scores
    with none and exit 0; the error names the reason. The app opts out: a row's reason is
    its result there."""
    rows = pa_csv.read_csv(TRACKS_2000).slice(0, 40)
    nan = pa.array([float("nan")] * rows.num_rows)
    bad = rows.set_column(rows.schema.get_field_index("loudness"), "loudness", nan)
    catalog, out = tmp_path / "bad.parquet", tmp_path / "scored.parquet"
    pq.write_table(bad, catalog)
    out.write_bytes(b"yesterday")

    with pytest.raises(InputError, match=r"all 40 rows were rejected \(loudness is NaN\)"):
        score(catalog, out, model_dir)
    assert out.read_bytes() == b"yesterday"
    assert not out.with_name("scored.rejects.parquet").exists()

    summary = score(catalog, out, model_dir, refuse_all_rejected=False)
    assert (summary.rows_scored, summary.rows_rejected) == (0, 40)
    assert summary.reject_reasons == {"loudness is NaN": 40}
    assert pq.read_table(out).num_rows == 0
