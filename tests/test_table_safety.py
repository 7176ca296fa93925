"""popbatch never destroys what it did not write: a user's DuckDB tables, its input table,
files in the way of its lock or run log, and the input or output as a rejects file.

Each test builds the situation a new user meets (a catalog table, a table of their own
under the name popbatch would write) in real DuckDB files and checks both the one-line
refusal and that every table is still what it was. The property test at the end draws
target kinds, modes, table names and pre-existing tables at random.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import popbatch
from popbatch.core.errors import InputError, OutputError, PopbatchError

TRACKS = Path(__file__).parent / "data" / "tracks_2000.csv"
ROWS = 30
SCORED_COLUMNS = (
    "track_id VARCHAR, popularity_prob DOUBLE, popular BOOLEAN, model_id VARCHAR, "
    "scored_at TIMESTAMP, features_hash UBIGINT"
)


@functools.cache
def default_model():
    return popbatch.load_model()


@pytest.fixture
def model():
    return default_model()


def catalog(path: Path) -> Path:
    """A DuckDB catalog: table ``tracks`` (30 real rows with every audio feature)."""
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE TABLE tracks AS SELECT * FROM read_csv_auto('{TRACKS}') LIMIT {ROWS}")
    return path


def add_table(path: Path | duckdb.DuckDBPyConnection, name: str, shape: str) -> None:
    """A table popbatch did not write (``foreign``: columns a, b) or one shaped like its
    scores (``scored``) or rejects (``rejects``), with two rows."""
    if isinstance(path, Path):
        with duckdb.connect(str(path)) as con:
            return add_table(con, name, shape)
    con = path
    if shape == "foreign":
        con.execute(f"CREATE TABLE {name} (a INTEGER, b VARCHAR)")
        con.execute(f"INSERT INTO {name} VALUES (1, 'x'), (2, 'y')")
    elif shape == "scored":
        con.execute(f"CREATE TABLE {name} ({SCORED_COLUMNS})")
        con.execute(
            f"INSERT INTO {name} VALUES ('old1', 0.1, false, 'm', '2026-01-01', 1), "
            "('old2', 0.9, true, 'm', '2026-01-01', 2)"
        )
    else:
        con.execute(f'CREATE TABLE {name} ("row" BIGINT, reason VARCHAR, energy VARCHAR)')
        con.execute(f"INSERT INTO {name} VALUES (3, 'energy is missing', NULL)")


def snapshot(path: Path) -> dict[str, tuple[list[tuple[str, str]], Counter]]:
    """Every table of a database: its (column, type) list and its rows as a multiset."""
    if not path.exists():
        return {}
    with duckdb.connect(str(path), read_only=True) as con:
        names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        result = {}
        for name in names:
            columns = [(r[0], r[1]) for r in con.execute(f'DESCRIBE "{name}"').fetchall()]
            rows = Counter(map(repr, con.execute(f'SELECT * FROM "{name}"').fetchall()))
            result[name] = (columns, rows)
        return result


# ------------------------------------------------------------ the input table
@pytest.mark.parametrize("into", ["tracks", "TRACKS", "main.tracks"])
def test_into_the_input_table_is_refused_with_a_pointer_to_write_back(tmp_path, model, into):
    db = catalog(tmp_path / "in.duckdb")
    before = snapshot(db)
    with pytest.raises(InputError) as error:
        popbatch.score(db, db, model, table="tracks", into=into, overwrite_table=True)
    message = str(error.value)
    assert message == (
        f"{db}: --into {into} is the input table (--table tracks); popbatch never replaces "
        "its input: use --write-back to add the scores to tracks, or write to another "
        "--into TABLE"
    )
    assert error.value.exit_code == 2
    assert snapshot(db) == before  # not even a run log row: refused before the run


def test_the_default_into_is_refused_when_the_input_table_is_named_scores(tmp_path, model):
    db = tmp_path / "in.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute(f"CREATE TABLE scores AS SELECT * FROM read_csv_auto('{TRACKS}') LIMIT 5")
    before = snapshot(db)
    with pytest.raises(InputError, match="--into scores is the input table"):
        popbatch.score(db, db, model, table="scores")
    assert snapshot(db) == before


def test_rejects_into_the_input_table_is_refused(tmp_path, model):
    db = catalog(tmp_path / "in.duckdb")
    before = snapshot(db)
    with pytest.raises(InputError, match=r"--rejects tracks is the input table .*--write-back"):
        popbatch.score(db, db, model, table="tracks", into="scores", rejects="tracks")
    assert snapshot(db) == before


# ------------------------------------------------------- a table of the user's
def test_replace_refuses_a_table_popbatch_did_not_write(tmp_path, model):
    db = catalog(tmp_path / "in.duckdb")
    app = tmp_path / "app.duckdb"
    add_table(app, "scores", "foreign")
    before = snapshot(app)
    with pytest.raises(InputError) as error:
        popbatch.score(db, app, model, table="tracks", into="scores")
    assert str(error.value) == (
        f"{app}: table scores exists and popbatch did not write it (columns a INTEGER, "
        "b VARCHAR); write to another --into TABLE, or pass --overwrite-table to replace it"
    )
    assert error.value.exit_code == 2
    after = snapshot(app)
    assert after.pop("popbatch_runs")[1].keys()  # the refused run is logged as failed
    assert after == before


def test_overwrite_table_replaces_it(tmp_path, model):
    db = catalog(tmp_path / "in.duckdb")
    app = tmp_path / "app.duckdb"
    add_table(app, "scores", "foreign")
    summary = popbatch.score(db, app, model, table="tracks", into="scores", overwrite_table=True)
    assert summary.rows_written == ROWS
    columns = [c for c, _ in snapshot(app)["scores"][0]]
    assert columns[:2] == ["track_id", "popularity_prob"] and "a" not in columns


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_overwrite_table_only_goes_with_replace(tmp_path, model, mode):
    db = catalog(tmp_path / "in.duckdb")
    with pytest.raises(InputError, match=f"--overwrite-table replaces a table; .*--mode {mode}"):
        popbatch.score(db, tmp_path / "o.duckdb", model, table="tracks", mode=mode,
                       overwrite_table=True)  # fmt: skip


def test_a_table_popbatch_wrote_is_replaced_again(tmp_path, model):
    db = catalog(tmp_path / "in.duckdb")
    app = tmp_path / "app.duckdb"
    add_table(app, "scores", "scored")
    popbatch.score(db, app, model, table="tracks", into="scores")
    assert sum(snapshot(app)["scores"][1].values()) == ROWS


def test_a_table_the_run_log_names_as_a_target_is_replaced(tmp_path, model):
    db = catalog(tmp_path / "in.duckdb")
    app = tmp_path / "app.duckdb"
    popbatch.score(db, app, model, table="tracks", into="first")  # makes popbatch_runs
    add_table(app, "legacy", "foreign")
    with pytest.raises(InputError, match="table legacy exists and popbatch did not write it"):
        popbatch.score(db, app, model, table="tracks", into="legacy")
    with duckdb.connect(str(app)) as con:  # as a run of an older popbatch would have logged it
        con.execute(
            "INSERT INTO popbatch_runs (run_id, started_at, finished_at, output, status) "
            f"VALUES ('r', now(), now(), '{app}:legacy', 'success')"
        )
    popbatch.score(db, app, model, table="tracks", into="legacy")
    assert sum(snapshot(app)["legacy"][1].values()) == ROWS


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_append_into_a_table_that_does_not_fit_names_the_columns(tmp_path, model, mode):
    db = catalog(tmp_path / "in.duckdb")
    app = tmp_path / "app.duckdb"
    add_table(app, "scores", "foreign")
    before = snapshot(app)["scores"]
    with pytest.raises(InputError) as error:
        popbatch.score(db, app, model, table="tracks", into="scores", mode=mode)
    message = str(error.value)
    assert message.startswith(
        f"{app}: --mode {mode} into table scores does not fit: it lacks track_id, "
        "popularity_prob, popular, model_id, scored_at, features_hash"
    )
    assert message.endswith(
        "(it has a INTEGER, b VARCHAR); write to another --into TABLE, or fix the table's columns"
    )
    assert error.value.exit_code == 2
    assert snapshot(app)["scores"] == before


def test_append_names_a_mistyped_column(tmp_path, model):
    db = catalog(tmp_path / "in.duckdb")
    app = tmp_path / "app.duckdb"
    with duckdb.connect(str(app)) as con:
        con.execute(f"CREATE TABLE scores ({SCORED_COLUMNS.replace('DOUBLE', 'INTEGER')})")
    with pytest.raises(InputError, match=r"mistyped popularity_prob \(INTEGER, popbatch writes "
                       r"DOUBLE\)"):  # fmt: skip
        popbatch.score(db, app, model, table="tracks", into="scores", mode="append")


def test_append_into_an_earlier_scored_table_still_adds_the_new_columns(tmp_path, model):
    db = catalog(tmp_path / "in.duckdb")
    app = tmp_path / "app.duckdb"
    with duckdb.connect(str(app)) as con:  # scored before features_hash and the heads
        con.execute(
            f"CREATE TABLE scores ({SCORED_COLUMNS.removesuffix(', features_hash UBIGINT')})"
        )
    popbatch.score(db, app, model, table="tracks", into="scores", mode="append")
    columns = [c for c, _ in snapshot(app)["scores"][0]]
    assert {"features_hash", "genre_pred"} <= set(columns)


# --------------------------------------------------------------- the rejects
def test_a_rejects_table_popbatch_did_not_write_is_refused(tmp_path, model):
    db = catalog(tmp_path / "in.duckdb")
    app = tmp_path / "app.duckdb"
    add_table(app, "scores_rejects", "foreign")
    before = snapshot(app)
    refused = (
        r"table scores_rejects exists and popbatch did not write it .*another --rejects "
        "TABLE, or pass --overwrite-table"
    )
    with pytest.raises(InputError, match=refused):
        popbatch.score(db, app, model, table="tracks")
    assert snapshot(app)["scores_rejects"] == before["scores_rejects"]
    assert "scores" not in snapshot(app)
    add_table(app, "old_rejects", "rejects")  # popbatch's shape: replaced
    popbatch.score(db, app, model, table="tracks", rejects="old_rejects")
    assert not snapshot(app)["old_rejects"][1]  # no rejects this run: the old ones are gone


@pytest.mark.parametrize("which", ["input", "output"])
def test_a_rejects_file_is_neither_the_input_nor_the_output(tmp_path, model, which):
    source = tmp_path / "catalog.csv"
    source.write_text(TRACKS.read_text())
    out = tmp_path / "scored.csv"
    out.write_text("kept\n")
    rejects = source if which == "input" else out
    overwritten = "input" if which == "input" else "scores"
    with pytest.raises(InputError, match=f"the rejects output would overwrite the {overwritten}"):
        popbatch.score(source, out, model, rejects=rejects)
    assert source.read_text() == TRACKS.read_text() and out.read_text() == "kept\n"


def test_the_default_rejects_file_is_not_the_input(tmp_path, model):
    source = tmp_path / "s.rejects.csv"  # the default rejects name of -o s.csv
    source.write_text(TRACKS.read_text())
    with pytest.raises(InputError, match="the rejects output would overwrite the input"):
        popbatch.score(source, tmp_path / "s.csv", model)
    assert source.read_text() == TRACKS.read_text()


# ----------------------------------------------------------- explain's output
def test_explain_refuses_a_table_it_did_not_write_and_the_input_table(tmp_path, model):
    db = catalog(tmp_path / "in.duckdb")
    add_table(db, "notes", "foreign")
    before = snapshot(db)
    with pytest.raises(InputError, match=r"table notes exists and popbatch did not write it"):
        popbatch.explain(db, model, table="tracks", top=1, output=db, into="notes")
    with pytest.raises(InputError, match=r"--into tracks is the input table"):
        popbatch.explain(db, model, table="tracks", top=1, output=db, into="tracks",
                         overwrite_table=True)  # fmt: skip
    assert snapshot(db) == before
    popbatch.explain(db, model, table="tracks", top=1, output=db)  # table explanations
    popbatch.explain(db, model, table="tracks", top=1, output=db)  # its own: replaced
    popbatch.explain(db, model, table="tracks", top=1, output=db, into="notes",
                     overwrite_table=True)  # fmt: skip
    after = snapshot(db)
    assert after["tracks"] == before["tracks"] and "a" not in dict(after["notes"][0])


# --------------------------------------------------- lock file and run log
def test_a_file_in_the_way_of_the_lock_is_left_alone(tmp_path, model):
    source = tmp_path / "catalog.csv"
    source.write_text(TRACKS.read_text())
    out = tmp_path / "scored.parquet"
    (tmp_path / "scored.parquet.lock").write_text("my notes\n")
    with pytest.raises(OutputError, match=r"scored.parquet.lock: holds something popbatch did "
                       r"not write; .*move that file away"):  # fmt: skip
        popbatch.score(source, out, model)
    assert (tmp_path / "scored.parquet.lock").read_text() == "my notes\n"
    assert not out.exists()


def test_a_symlinked_lock_file_is_not_followed(tmp_path, model):
    source = tmp_path / "catalog.csv"
    source.write_text(TRACKS.read_text())
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    (tmp_path / "scored.parquet.lock").symlink_to(precious)
    with pytest.raises(OutputError, match=r"scored.parquet.lock: is a symlink"):
        popbatch.score(source, tmp_path / "scored.parquet", model)
    assert precious.read_text() == "keep me\n"


@pytest.mark.parametrize("how", ["foreign", "symlink"])
def test_a_runs_jsonl_popbatch_did_not_write_is_left_alone(tmp_path, model, how):
    source = tmp_path / "catalog.csv"
    source.write_text(TRACKS.read_text())
    mine = tmp_path / ("runs.jsonl" if how == "foreign" else "mine.txt")
    mine.write_text("name,value\n")
    if how == "symlink":
        (tmp_path / "runs.jsonl").symlink_to(mine)
    with pytest.raises(OutputError, match=r"runs.jsonl: .*appends only to a run log it wrote"):
        popbatch.score(source, tmp_path / "scored.parquet", model)
    assert mine.read_text() == "name,value\n"
    assert not (tmp_path / "scored.parquet").exists()  # refused before the run


def test_popbatch_appends_to_its_own_run_log(tmp_path, model):
    source = tmp_path / "catalog.csv"
    source.write_text(TRACKS.read_text())
    for _ in range(2):
        popbatch.score(source, tmp_path / "scored.parquet", model)
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["success", "success"]


# ---------------------------------------------------------------- property
NAMES = ["tracks", "TRACKS", "main.tracks", "scores", "notes", "earlier", "fresh"]
SCORES_SHAPES = ["absent", "foreign", "scored"]
REJECTS_SHAPES = ["absent", "foreign", "rejects"]


@pytest.fixture(scope="module")
def templates(tmp_path_factory, model_dir) -> dict[str, Path]:
    """The input catalog and a target database, holding a table of the user's (notes),
    an earlier run's scores (earlier), and scores/scores_rejects in each shape; copied
    for each example (built once, in one connection: opening DuckDB files is slow)."""
    folder = tmp_path_factory.mktemp("templates")
    built = {"model": model_dir}
    with duckdb.connect() as con:
        for scores_shape in SCORES_SHAPES:
            for rejects_shape in REJECTS_SHAPES:
                for role in ("in", "out"):
                    path = folder / f"{role}-{scores_shape}-{rejects_shape}.duckdb"
                    con.execute(f"ATTACH '{path}' AS target")
                    con.execute("USE target")
                    if role == "in":
                        con.execute(
                            "CREATE TABLE tracks AS SELECT * FROM "
                            f"read_csv_auto('{TRACKS}') LIMIT {ROWS}"
                        )
                    else:
                        add_table(con, "tracks", "foreign")  # the input's name, elsewhere
                    add_table(con, "notes", "foreign")
                    add_table(con, "earlier", "scored")
                    for name, shape in (
                        ("scores", scores_shape),
                        ("scores_rejects", rejects_shape),
                    ):
                        if shape != "absent":
                            add_table(con, name, shape)
                    con.execute("USE memory")
                    con.execute("DETACH target")
                    built[path.stem] = path
    return built


def kept(path: Path, old: dict, allowed: set[str]) -> list[str]:
    """The tables of ``old`` (a snapshot) that lost a column or a row, other than ``allowed``."""
    lost = []
    with duckdb.connect(str(path), read_only=True) as con:
        names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        for table, (columns, rows) in old.items():
            if table in allowed:
                continue
            now = [(r[0], r[1]) for r in con.execute(f'DESCRIBE "{table}"').fetchall()] if (
                table in names) else []  # fmt: skip
            if not set(columns) <= set(now):
                lost.append(f"{table}: columns")
                continue
            listed = ", ".join(f'"{c}"' for c, _ in columns)
            found = Counter(map(repr, con.execute(f'SELECT {listed} FROM "{table}"').fetchall()))
            if rows - found:
                lost.append(f"{table}: rows")
    return lost


@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    kind=st.sampled_from(["same database", "other database", "parquet"]),
    mode=st.sampled_from([None, "replace", "append", "upsert"]),
    into=st.sampled_from([None, *NAMES]),
    rejects=st.sampled_from([None, "tracks", "notes", "fresh_rejects"]),
    scores_shape=st.sampled_from(SCORES_SHAPES),
    rejects_shape=st.sampled_from(REJECTS_SHAPES),
    write_back=st.booleans(),
    overwrite=st.booleans(),
)
def test_no_table_popbatch_did_not_write_loses_a_row_or_a_column(
    templates, kind, mode, into, rejects, scores_shape, rejects_shape, write_back, overwrite
):
    # Popbatch's own shapes (scored, rejects) may be replaced; a foreign table never,
    # unless --overwrite-table; the input table changes only through --write-back.
    shapes = {"notes": "foreign", "earlier": "scored", "scores": scores_shape,
              "scores_rejects": rejects_shape, "tracks": "foreign"}  # fmt: skip
    popbatchs = {name for name, shape in shapes.items() if shape not in ("foreign", "absent")}
    with tempfile.TemporaryDirectory() as folder:
        db, other = Path(folder) / "in.duckdb", Path(folder) / "out.duckdb"
        shutil.copy(templates[f"in-{scores_shape}-{rejects_shape}"], db)
        shutil.copy(templates[f"out-{scores_shape}-{rejects_shape}"], other)
        output = {"same database": db, "other database": other}.get(kind)
        output = None if write_back else output or Path(folder) / "out.parquet"
        before = {path: snapshot(path) for path in (db, other)}
        try:
            popbatch.score(
                db, output, templates["model"], table="tracks", into=into, mode=mode,
                rejects=rejects, write_back=write_back, overwrite_table=overwrite,
            )  # fmt: skip
        except PopbatchError as error:
            assert error.exit_code == 2, error  # refusals are usage errors, never a raw crash
        # The input table: every column and row as it was (write-back may add score columns).
        assert kept(db, {"tracks": before[db]["tracks"]}, set()) == []
        if not write_back:
            assert snapshot(db)["tracks"] == before[db]["tracks"]
        allowed = (set(shapes) if overwrite else popbatchs) | {"popbatch_runs"}
        for path, old in before.items():
            assert kept(path, old, allowed | ({"tracks"} if path == db else set())) == []


# ------------------------------------------------------- train and export --out
def test_train_refuses_a_folder_of_someone_elses(tmp_path):
    (tmp_path / "report.html").write_text("my report\n")
    with pytest.raises(InputError, match=r"--out names a folder of files popbatch did not "
                       r"write \(report.html\)"):  # fmt: skip
        popbatch.train(TRACKS, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    assert (tmp_path / "report.html").read_text() == "my report\n"


def test_export_refuses_a_folder_of_someone_elses(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"mine")
    with pytest.raises(InputError, match=r"--out names a folder of files popbatch did not "
                       r"write \(model.onnx\)"):  # fmt: skip
        popbatch.export(tmp_path / "no-run", tmp_path)
    assert (tmp_path / "model.onnx").read_bytes() == b"mine"


# ------------------------------------------------------------------ the CLI
def invoke(*args):
    from click.testing import CliRunner

    from popbatch.cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_cli_refuses_the_input_table_as_into(tmp_path, model_dir):
    db = catalog(tmp_path / "in.duckdb")
    before = snapshot(db)
    line = one_error_line(invoke("score", db, "--table", "tracks", "-o", db, "--into", "tracks",
                                 "--model", model_dir, "-q"))  # fmt: skip
    assert "--into tracks is the input table" in line and "use --write-back" in line
    assert snapshot(db) == before


def test_cli_replaces_a_table_of_someone_elses_only_with_overwrite_table(tmp_path, model_dir):
    app = tmp_path / "app.duckdb"
    add_table(app, "scores", "foreign")
    args = ("score", TRACKS, "-o", app, "--into", "scores", "--model", model_dir, "-q")
    line = one_error_line(invoke(*args))
    assert (
        "table scores exists and popbatch did not write it (columns a INTEGER, b VARCHAR)" in line
    )
    assert "another --into TABLE, or pass --overwrite-table" in line
    assert snapshot(app)["scores"][0] == [("a", "INTEGER"), ("b", "VARCHAR")]
    for mode in ("append", "upsert"):
        line = one_error_line(invoke(*args, "--mode", mode))
        assert f"--mode {mode} into table scores does not fit: it lacks track_id" in line
    assert snapshot(app)["scores"][0] == [("a", "INTEGER"), ("b", "VARCHAR")]
    result = invoke(*args, "--overwrite-table")
    assert result.exit_code == 0, result.output
    assert snapshot(app)["scores"][0][0] == ("track_id", "VARCHAR")


def test_cli_explain_replaces_a_table_of_someone_elses_only_with_overwrite_table(
    tmp_path, model_dir
):
    app = tmp_path / "app.duckdb"
    add_table(app, "notes", "foreign")
    args = ("explain", TRACKS, "-o", app, "--into", "notes", "--top", 1, "--model", model_dir, "-q")
    line = one_error_line(invoke(*args))
    assert "table notes exists and popbatch did not write it" in line
    assert snapshot(app)["notes"][0] == [("a", "INTEGER"), ("b", "VARCHAR")]
    result = invoke(*args, "--overwrite-table")
    assert result.exit_code == 0, result.output
    assert "feature" in dict(snapshot(app)["notes"][0])


def test_cli_summary_and_sql_output_never_overwrite_what_they_read(tmp_path, model_dir):
    source = tmp_path / "catalog.csv"
    source.write_text(TRACKS.read_text())
    out = tmp_path / "scored.parquet"
    line = one_error_line(invoke("score", source, "-o", out, "--summary", source,
                                 "--model", model_dir, "-q"))  # fmt: skip
    assert "would overwrite the input" in line
    assert source.read_text() == TRACKS.read_text() and not out.exists()
    assert invoke("score", source, "-o", out, "--model", model_dir, "-q").exit_code == 0
    scored = out.read_bytes()
    line = one_error_line(invoke("sql", "--scored", out, "SELECT 1 AS x", "-o", out))
    assert "would overwrite the input" in line
    assert out.read_bytes() == scored
