"""Security properties of the scoring path.

Covered here:

- a full ``popbatch score`` (file and DuckDB targets) never unpickles: pickle
  and joblib are patched to fail the test if anything calls them;
- every user-given SQL identifier is validated before it reaches SQL, and
  column names from the data are quoted (a column named with a double quote
  and a semicolon is read and written back verbatim).

Covered elsewhere (not repeated):

- a ``.pkl``/``.joblib`` ``--model`` is refused before it is opened, and a pickle
  whose loading would leave a mark leaves none: tests/test_bad_inputs.py cases
  ``.pkl that does not exist`` and ``.joblib whose unpickling would leave a mark``;
- ``--table``/``--into``/``--key``/``--query`` injection through the CLI, with
  the database checked unchanged: tests/test_bad_inputs.py;
- ``popbatch sql`` is read-only unless ``--write``:
  tests/test_sql.py::test_database_refuses_writes_without_write and
  ::test_database_is_opened_read_only;
- the model's sha256 is checked against the manifest before onnxruntime sees
  the bytes: tests/test_model_loading.py::test_changed_bytes_are_refused.
"""

from __future__ import annotations

import pickle

import duckdb
import pytest
from conftest import TRACKS_2000
from popbatch.batch import sqlrun

from popbatch.cli.main import cli
from popbatch.core.errors import InputError
from popbatch.core.sqlquote import quote_identifier

PAYLOADS = [
    "x; DROP TABLE t",
    't"; DROP TABLE t; --',
    "`t`",
    "t' OR '1'='1",
    "t --",
    "t/*x*/",
    "main.t.x.y",
    "",
    "1t",
    "t\x00",
    "tracks\nDROP TABLE t",
]


def test_a_full_score_never_unpickles(runner, model_dir, tmp_path, monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("the scoring path unpickled something")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    joblib = pytest.importorskip("joblib")
    monkeypatch.setattr(joblib, "load", refuse)

    db = tmp_path / "scores.duckdb"
    for target in (["-o", str(tmp_path / "s.parquet")], ["-o", str(db), "--into", "scores"]):
        result = runner.invoke(
            cli, ["score", str(TRACKS_2000), *target, "--model", str(model_dir), "-q"]
        )
        assert result.exit_code == 0, result.output
    assert calls == []
    con = duckdb.connect(str(db), read_only=True)
    assert con.sql("SELECT count(*) FROM scores").fetchall() == [(2000,)]
    con.close()


@pytest.mark.parametrize("name", PAYLOADS)
def test_identifiers_are_validated_before_any_sql(name):
    with pytest.raises(InputError, match="is not a plain SQL"):
        quote_identifier(name)
    with pytest.raises(InputError, match="is not a plain SQL"):
        sqlrun.quote_identifier(name)


def test_valid_identifiers_are_quoted():
    assert quote_identifier("scores") == '"scores"'
    assert quote_identifier("main.scores") == '"main"."scores"'


def test_column_names_from_the_data_are_quoted(runner, model_dir, tmp_path):
    db = tmp_path / "catalog.duckdb"
    con = duckdb.connect(str(db))
    con.execute(
        f'CREATE TABLE tracks AS SELECT *, \'x\' AS "we""ird; DROP TABLE tracks" '
        f"FROM read_csv('{TRACKS_2000}')"
    )
    con.close()
    out = tmp_path / "out.duckdb"
    args = ["score", str(db), "--table", "tracks", "-o", str(out), "--into", "scores"]
    result = runner.invoke(cli, [*args, "--columns", "all", "--model", str(model_dir), "-q"])
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(out), read_only=True)
    columns = [r[0] for r in con.sql("DESCRIBE scores").fetchall()]
    assert con.sql("SELECT count(*) FROM scores").fetchall() == [(2000,)]
    con.close()
    assert any("drop_table_tracks" in c for c in columns)  # normalised, read verbatim
    con = duckdb.connect(str(db), read_only=True)
    assert con.sql("SELECT count(*) FROM tracks").fetchall() == [(2000,)]
    con.close()
