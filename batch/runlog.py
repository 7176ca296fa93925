"""The run log: every ``popbatch score`` run, success or failure, recorded beside its output.

A DuckDB target gets a row in table ``popbatch_runs`` (created from
``sql/popbatch_runs.sql``); a file target gets a JSON line in ``runs.jsonl``
in the output's folder. ``popbatch sql --report runs`` reads either
(``--db target.duckdb`` or ``--runs out/runs.jsonl``).

:func:`batch.score.score` wraps each run (after taking the target lock) in
:func:`recorded_run`, which also records failures and re-raises the original
error. A successful run on a DuckDB target records its row with
:func:`record_success` inside the transaction that writes the scores, so the
scores and the row commit together. A failed run's row is written after the
rollback, in its own transaction: the tables are as they were, plus that row.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from popbatch.batch.lock import connect_duckdb
from popbatch.batch.sources import DUCKDB_SUFFIXES

from popbatch.core.errors import OutputError, one_line

RUNS_TABLE = "popbatch_runs"
# A reader (popbatch sql) may hold the database for a moment when a failed
# run's row is written after the rollback: wait this long for it.
LOCK_WAIT_SECONDS = 5.0
RUNS_JSONL = "runs.jsonl"
STATUSES = ("success", "failed", "interrupted")
RUN_FIELDS = (
    "run_id",
    "started_at",
    "finished_at",
    "input",
    "output",
    "rows_read",
    "rows_scored",
    "rows_rejected",
    "rows_skipped",
    "model_id",
    "status",
    "error",
    "heads",
)


def is_duckdb_target(target: Path | str) -> bool:
    """A target is a DuckDB database when its file name ends in .duckdb, .ddb, .db or .duck."""
    return Path(target).name.lower().endswith(DUCKDB_SUFFIXES)


def runs_jsonl_path(target: Path | str) -> Path:
    """Where a file target's run log lives: ``runs.jsonl`` in the output's folder."""
    return Path(target).parent / RUNS_JSONL


def utc_now() -> datetime:
    """Now, in UTC, without tzinfo (as DuckDB TIMESTAMP columns store it)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _as_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value and value.tzinfo else value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).replace(tzinfo=None)


def run_record(
    summary: Mapping[str, Any], status: str, error: str | BaseException | None = None
) -> dict[str, Any]:
    """The run-log row for a run summary.

    ``summary`` holds what the scorer knows (``input``, ``output``,
    ``rows_read``, ``rows_scored``, ``rows_rejected``, ``rows_skipped``,
    ``model_id``, ``heads``, ``started_at``, ``finished_at``, ``run_id``); missing keys
    become null, except ``run_id`` (a new uuid4) and ``finished_at`` (now).
    Other keys (``seconds``, ``rows_per_second``...) are ignored.
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    now = utc_now()
    record = {
        "run_id": str(summary.get("run_id") or uuid.uuid4().hex),
        "started_at": _as_time(summary.get("started_at")) or now,
        "finished_at": _as_time(summary.get("finished_at")) or now,
        "input": _as_text(summary.get("input")),
        "output": _as_text(summary.get("output")),
        "model_id": _as_text(summary.get("model_id")),
        "status": status,
        "error": " ".join(str(error).split()) if error else None,
        # "popular,popularity,genre": which heads' columns this run wrote.
        "heads": ",".join(heads) if (heads := summary.get("heads")) else None,
    }
    for count in ("rows_read", "rows_scored", "rows_rejected", "rows_skipped"):
        value = summary.get(count)
        record[count] = int(value) if value is not None else None
    return {name: record[name] for name in RUN_FIELDS}


def record_run(
    target: Path | str,
    summary: Mapping[str, Any],
    status: str,
    error: str | BaseException | None = None,
    connection: duckdb.DuckDBPyConnection | None = None,
) -> dict[str, Any]:
    """Record one run of ``popbatch score`` beside its target; return the recorded row.

    Parameters
    ----------
    target
        The output: a DuckDB database file (row in ``popbatch_runs``) or an
        output file (JSON line in ``runs.jsonl`` beside it).
    summary
        The run's summary (see :func:`run_record`).
    status
        ``"success"``, ``"failed"`` or ``"interrupted"``.
    error
        The error of a failed run (its message is stored on one line).
    connection
        An open read-write connection to the target database, if the caller
        has one (DuckDB allows one writing process per file).

    Raises
    ------
    LockError
        If another process holds the database's lock.
    OutputError
        If the run log cannot be written.
    """
    record = run_record(summary, status, error)
    if is_duckdb_target(target):
        _insert_duckdb(Path(target), record, connection)
    else:
        _append_jsonl(runs_jsonl_path(target), record)
    return record


def _insert_duckdb(
    database: Path, record: dict[str, Any], connection: duckdb.DuckDBPyConnection | None
) -> None:
    from popbatch.batch.sqlrun import runs_table_ddl

    placeholders = ", ".join(f"${name}" for name in RUN_FIELDS)
    insert = f"INSERT INTO {RUNS_TABLE} ({', '.join(RUN_FIELDS)}) VALUES ({placeholders})"
    try:
        con = connection or connect_duckdb(database, wait=LOCK_WAIT_SECONDS)
    except duckdb.Error as exc:
        raise OutputError(
            f"{database}: cannot record the run in {RUNS_TABLE} ({one_line(exc)})"
        ) from None
    try:
        con.execute(runs_table_ddl())
        con.execute(insert, record)
    except duckdb.Error as exc:
        raise OutputError(
            f"{database}: cannot record the run in {RUNS_TABLE} ({one_line(exc)})"
        ) from None
    finally:
        if connection is None:
            con.close()


def check_run_log(target: Path | str) -> None:
    """Refuse, before a run, a ``runs.jsonl`` beside a file target that popbatch did not
    write: a symlink, or a file whose first line is not a run record. popbatch only ever
    appends to its own run log.

    Raises
    ------
    OutputError
        One line naming the file and the fix.
    """
    if is_duckdb_target(target):
        return  # popbatch_runs: a table of that name that does not fit rolls the run back
    path = runs_jsonl_path(target)
    if path.is_symlink():
        problem = "is a symlink"
    elif not path.exists():
        return
    else:
        try:
            with open(path, "rb") as log:
                first = log.readline(65536)
        except OSError as exc:
            raise OutputError(f"{path}: cannot read the run log ({exc.strerror})") from None
        if not first.strip() or _is_record(first):
            return
        problem = "is not a popbatch run log (its first line is not a run record)"
    raise OutputError(
        f"{path}: {problem}; popbatch records each run there and appends only to a run log "
        "it wrote: move that file away, or write the output to another folder"
    )


def _is_record(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "run_id" in record and "status" in record


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    line = json.dumps(
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in record.items()}
    )
    check_run_log(path)
    try:
        # One write of one line in append mode: concurrent runs do not interleave.
        # O_NOFOLLOW: never append through a symlink to a file popbatch did not make.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
        with open(os.open(path, flags, 0o644), "a", encoding="utf-8") as log:
            log.write(line + "\n")
    except OSError as exc:
        raise OutputError(f"{path}: cannot record the run ({exc.strerror})") from None


@contextmanager
def recorded_run(
    target: Path | str, summary: dict[str, Any], connection: duckdb.DuckDBPyConnection | None = None
) -> Iterator[dict[str, Any]]:
    """Record the run in the ``with`` block, whatever its outcome.

    The block fills ``summary`` (rows, model id, output); on leaving it the run
    is recorded as success, failed (with the error's message) or interrupted
    (Ctrl-C). The original error is re-raised; a failure to write the run log
    never hides it.

    Examples
    --------
    >>> summary = {"input": "catalog.csv", "output": "scores.parquet"}  # doctest: +SKIP
    >>> with recorded_run("scores.parquet", summary):  # doctest: +SKIP
    ...     summary.update(score(...).as_dict())
    """
    summary.setdefault("run_id", uuid.uuid4().hex)
    summary.setdefault("started_at", utc_now())
    try:
        yield summary
    except KeyboardInterrupt as exc:
        _record_quietly(target, summary, "interrupted", "interrupted (Ctrl-C)", connection)
        raise exc
    except BaseException as exc:
        summary.pop("recorded", None)
        _record_quietly(target, summary, "failed", exc, connection)
        raise
    if summary.pop("recorded", False):
        return  # record_success already wrote the row, with the run's own commit
    summary["finished_at"] = utc_now()
    record_run(target, summary, "success", connection=connection)


def record_success(
    target: Path | str, summary: dict[str, Any], connection: duckdb.DuckDBPyConnection
) -> None:
    """Record a successful run inside the caller's open transaction on the target.

    Marks ``summary`` so that :func:`recorded_run` does not record it again.
    If the transaction is rolled back afterwards, :func:`recorded_run` records
    the failure instead.
    """
    summary["finished_at"] = utc_now()
    record_run(target, summary, "success", connection=connection)
    summary["recorded"] = True


def _record_quietly(
    target: Path | str,
    summary: dict[str, Any],
    status: str,
    error: str | BaseException,
    connection: duckdb.DuckDBPyConnection | None,
) -> None:
    """Record a failed run; if even that fails, the run's own error is what matters."""
    summary["finished_at"] = utc_now()
    with suppress(Exception):
        record_run(target, summary, status, error, connection)
