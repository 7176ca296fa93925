"""The evaluation log: every ``popbatch evaluate`` recorded, for cron and for SQL.

Like the run log (:mod:`~popbatch.batch.runlog`): a DuckDB log gets a row in
table ``popbatch_evaluations`` (``sql/popbatch_evaluations.sql``), any other
log a JSON line in ``evaluations.jsonl``. ``popbatch sql --report
evaluations`` reads either (``--db log.duckdb``, or ``--evaluations
evaluations.jsonl``).

Where (:func:`log_target`): ``--log`` when given (a ``.duckdb`` file, a
``.jsonl`` file, or a folder for its ``evaluations.jsonl``); else beside the
``-o`` report; else the input database itself for a DuckDB input; else
``evaluations.jsonl`` beside the (first) input file.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from popbatch.batch.lock import connect_duckdb
from popbatch.batch.runlog import LOCK_WAIT_SECONDS, is_duckdb_target, utc_now

from popbatch.core.errors import OutputError, one_line

EVALUATIONS_TABLE = "popbatch_evaluations"
EVALUATIONS_JSONL = "evaluations.jsonl"
#: flat columns of the headline figures: (column, head, figure)
FIGURE_COLUMNS = (
    ("popular_roc_auc", "popular", "roc_auc"),
    ("popular_pr_auc", "popular", "pr_auc"),
    ("popular_f1", "popular", "f1"),
    ("popular_brier", "popular", "brier"),
    ("popularity_r2", "popularity", "r2"),
    ("popularity_mae", "popularity", "mae"),
    ("genre_accuracy", "genre", "accuracy"),
    ("genre_top3_accuracy", "genre", "top3_accuracy"),
)


def evaluations_table_ddl() -> str:
    from popbatch.batch.sqlrun import EVALUATIONS_DDL, read_sql

    return read_sql(EVALUATIONS_DDL)


def log_target(source: Any, options: Any, output: str | Path | None = None) -> Path:
    """Where this evaluation is recorded (see the module's docstring)."""
    if options.log is not None:
        path = Path(options.log)
        if is_duckdb_target(path) or path.suffix.lower() == ".jsonl":
            return path
        return path / EVALUATIONS_JSONL
    if output is not None:
        return Path(output).parent / EVALUATIONS_JSONL
    inputs = [source] if isinstance(source, str | Path) else source
    if isinstance(inputs, Sequence) and inputs:
        first = Path(str(inputs[0]))
        if is_duckdb_target(first):
            return first
        directory = first if first.is_dir() else first.parent
        return directory / EVALUATIONS_JSONL
    raise OutputError("evaluate: give log= (a .duckdb or .jsonl file) to record this evaluation")


def evaluation_record(report: Mapping[str, Any]) -> dict[str, Any]:
    """The log row of an evaluation's report."""
    rows = report.get("rows", {})
    heads = report.get("heads", {})
    below = [c["metric"] for c in report.get("fail_under", []) if not c["passed"]]
    record: dict[str, Any] = {
        "evaluation_id": uuid.uuid4().hex,
        "evaluated_at": utc_now(),  # to the microsecond: the log orders by it
        "input": report.get("input"),
        "model_id": report.get("model", {}).get("id"),
        "rows_read": rows.get("read"),
        "rows_scored": rows.get("scored"),
        "rows_rejected": rows.get("rejected"),
        "rows_in_sample": rows.get("in_sample"),
        "rows_evaluated": rows.get("evaluated"),
        "heads": ",".join(heads) or None,
    }
    for column, head, figure in FIGURE_COLUMNS:
        record[column] = heads.get(head, {}).get("metrics", {}).get(figure)
    record["below_floor"] = ", ".join(below) or None
    record["report"] = json.dumps(report, sort_keys=True)
    return record


def record_evaluation(
    target: str | Path, report: Mapping[str, Any], wait: float = 0
) -> dict[str, Any]:
    """Append one evaluation to the log at ``target``; returns the recorded row.

    Raises
    ------
    LockError
        Another process holds the DuckDB log.
    OutputError
        The log cannot be written.
    """
    record = evaluation_record(report)
    target = Path(target)
    if is_duckdb_target(target):
        columns = list(record)
        insert = (
            f"INSERT INTO {EVALUATIONS_TABLE} ({', '.join(columns)}) "
            f"VALUES ({', '.join('$' + c for c in columns)})"
        )
        try:
            con = connect_duckdb(target, wait=max(wait, LOCK_WAIT_SECONDS))
        except duckdb.Error as exc:
            raise OutputError(f"{target}: cannot record the evaluation ({one_line(exc)})") from None
        try:
            con.execute(evaluations_table_ddl())
            con.execute(insert, record)
        except duckdb.Error as exc:
            raise OutputError(f"{target}: cannot record the evaluation ({one_line(exc)})") from None
        finally:
            con.close()
        return record
    line = json.dumps({k: v.isoformat() if isinstance(v, datetime) else v
                       for k, v in record.items()})  # fmt: skip
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a", encoding="utf-8") as log:
            log.write(line + "\n")
    except OSError as exc:
        raise OutputError(f"{target}: cannot record the evaluation ({exc.strerror})") from None
    return record
