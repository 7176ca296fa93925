"""The run log: popbatch_runs in a DuckDB target, runs.jsonl beside a file target."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import pytest
from popbatch.batch.runlog import RUN_FIELDS, record_run, recorded_run, run_record

from popbatch.core.errors import InputError, OutputError

SUMMARY = {
    "input": ["a.csv", "b.csv"],
    "output": "scores.parquet",
    "rows_read": 2000,
    "rows_scored": 1990,
    "rows_rejected": 10,
    "rows_skipped": 0,
    "model_id": "c" * 64,
    "started_at": datetime(2026, 11, 21, 2, 0, 0, tzinfo=UTC),
    "finished_at": "2026-11-21T02:00:42+00:00",
    "seconds": 42.0,  # not a run-log field: ignored
}


def test_run_record_fills_every_field():
    record = run_record(SUMMARY, "success")
    assert list(record) == list(RUN_FIELDS)
    assert record["input"] == "a.csv, b.csv"
    assert record["started_at"] == datetime(2026, 11, 21, 2, 0, 0)
    assert record["finished_at"] == datetime(2026, 11, 21, 2, 0, 42)
    assert len(record["run_id"]) == 32 and record["error"] is None


def test_unknown_status_is_refused():
    with pytest.raises(ValueError, match="status must be one of"):
        run_record(SUMMARY, "ok")


def test_duckdb_target_gets_a_row_per_run(tmp_path):
    db = tmp_path / "catalog.duckdb"
    record_run(db, SUMMARY, "success")
    record_run(db, {"input": "c.csv"}, "failed", InputError("c.csv: missing column\ntempo"))
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.sql(
            "SELECT input, rows_read, rows_scored, rows_rejected, status, error "
            "FROM popbatch_runs ORDER BY started_at"
        ).fetchall()
        types = dict(con.sql("SELECT column_name, data_type FROM duckdb_columns() "
                             "WHERE table_name = 'popbatch_runs'").fetchall())  # fmt: skip
    assert rows == [
        ("a.csv, b.csv", 2000, 1990, 10, "success", None),
        ("c.csv", None, None, None, "failed", "c.csv: missing column tempo"),
    ]
    assert types["started_at"] == "TIMESTAMP" and types["rows_skipped"] == "BIGINT"


def test_duckdb_target_uses_the_callers_connection(tmp_path):
    """The score command may hold the only writing connection; the row goes through it."""
    db = tmp_path / "catalog.duckdb"
    with duckdb.connect(str(db)) as con:
        record_run(db, SUMMARY, "success", connection=con)
        assert con.sql("SELECT count(*) FROM popbatch_runs").fetchall() == [(1,)]


def test_file_target_gets_a_json_line_beside_it(tmp_path):
    out = tmp_path / "out" / "scores.parquet"
    out.parent.mkdir()
    record_run(out, SUMMARY, "success")
    record_run(out, SUMMARY, "failed", "disk full")
    lines = (out.parent / "runs.jsonl").read_text().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert list(first) == list(RUN_FIELDS)
    assert first["status"] == "success" and first["started_at"] == "2026-11-21T02:00:00"
    assert first["rows_scored"] == 1990
    assert second["status"] == "failed" and second["error"] == "disk full"
    assert first["run_id"] != second["run_id"]


def test_unwritable_run_log_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="cannot record the run"):
        record_run(tmp_path / "missing-dir" / "scores.parquet", SUMMARY, "success")


def test_recorded_run_records_success(tmp_path):
    db = tmp_path / "catalog.duckdb"
    summary = {"input": "catalog.csv", "output": f"{db}:scores"}
    with recorded_run(db, summary):
        summary.update(rows_read=5, rows_scored=5, rows_rejected=0)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.sql("SELECT status, rows_scored, finished_at >= started_at "
                       "FROM popbatch_runs").fetchall() == [("success", 5, True)]  # fmt: skip


def test_recorded_run_records_a_failure_and_reraises_it(tmp_path):
    out = tmp_path / "scores.parquet"
    with pytest.raises(InputError, match="bad row 7"), recorded_run(out, {"input": "x.csv"}):
        raise InputError("bad row 7")
    (line,) = (tmp_path / "runs.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["status"] == "failed" and record["error"] == "bad row 7"


def test_recorded_run_records_an_interrupt(tmp_path):
    out = tmp_path / "scores.parquet"
    with pytest.raises(KeyboardInterrupt), recorded_run(out, {"input": "x.csv"}):
        raise KeyboardInterrupt
    record = json.loads((tmp_path / "runs.jsonl").read_text())
    assert record["status"] == "interrupted"


def test_a_failing_run_log_does_not_hide_the_runs_error(tmp_path):
    out = tmp_path / "missing-dir" / "scores.parquet"
    with pytest.raises(InputError, match="the real problem"), recorded_run(out, {}):
        raise InputError("the real problem")


def test_run_fields_match_the_table_definition():
    from popbatch.batch.sqlrun import runs_columns

    assert list(runs_columns()) == list(RUN_FIELDS)
