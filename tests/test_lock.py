"""The target lock: a second process holds it, the waiting call raises LockError naming the holder.

The CLI-level test (popbatch score exiting 75) belongs with the score command.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from popbatch.batch import sqlrun
from popbatch.batch.lock import (
    TargetLock,
    lock_error_from_duckdb,
    lock_path,
    process_start_time,
    target_lock,
)

from popbatch.cli.main import cli
from popbatch.core.errors import EXIT_LOCKED, LockError

ROOT = Path(__file__).resolve().parents[1]

HOLD_LOCK = """
import sys, time
from popbatch.batch.lock import target_lock
with target_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()  # hold until the test closes stdin
"""

HOLD_DUCKDB = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS t AS SELECT 1 AS a")
print("locked", flush=True)
sys.stdin.readline()
"""


def hold(script: str, target: Path) -> subprocess.Popen:
    """Start a second process that takes the lock and waits; return once it holds it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(target)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(timeout=30)


def test_lock_held_by_another_process_raises_lock_error_naming_it(tmp_path):
    target = tmp_path / "scores.parquet"
    holder = hold(HOLD_LOCK, target)
    try:
        with pytest.raises(LockError) as caught, target_lock(target, wait=0.3):
            pass
    finally:
        release(holder)
    message = str(caught.value)
    assert message.startswith(f"{target} is locked by another popbatch run (pid {holder.pid}, ")
    assert message.endswith(
        "after waiting 0.3s; let it finish, or pass --wait SECONDS to wait for it"
    )
    started = re.search(r"started (\S+)\)", message).group(1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", started)
    assert caught.value.exit_code == EXIT_LOCKED == 75
    assert "\n" not in message


def test_lock_is_free_again_when_the_holder_exits(tmp_path):
    target = tmp_path / "scores.parquet"
    release(hold(HOLD_LOCK, target))
    with target_lock(target) as lock:
        info = json.loads(lock.path.read_text())
        assert info["pid"] == os.getpid()


def test_lock_of_a_killed_holder_is_released(tmp_path):
    """flock belongs to the process: a SIGKILLed run leaves no stale lock."""
    target = tmp_path / "scores.duckdb"
    holder = hold(HOLD_LOCK, target)
    holder.kill()
    holder.wait(timeout=30)
    with target_lock(target, wait=5):
        pass


def _hold_then_release(target: str, ready, done) -> None:
    with target_lock(target):
        ready.set()
        done.wait(30)


def test_waiting_run_gets_the_lock_when_the_holder_finishes(tmp_path):
    target = tmp_path / "scores.parquet"
    context = multiprocessing.get_context("spawn")
    ready, done = context.Event(), context.Event()
    proc = context.Process(target=_hold_then_release, args=(str(target), ready, done))
    proc.start()
    try:
        assert ready.wait(30)
        with pytest.raises(LockError):
            TargetLock(target, 0).acquire()
        done.set()
        with target_lock(target, wait=30) as lock:  # waits for the holder to let go
            assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    finally:
        done.set()
        proc.join(30)


def test_lock_file_sits_beside_the_target(tmp_path):
    target = tmp_path / "out" / "scores.parquet"
    assert lock_path(target) == tmp_path / "out" / "scores.parquet.lock"


def test_duckdb_lock_becomes_the_same_kind_of_message(tmp_path):
    """DuckDB's 'Could not set lock on file' is a LockError naming the holder, no traceback."""
    db = tmp_path / "catalog.duckdb"
    holder = hold(HOLD_DUCKDB, db)
    try:
        with pytest.raises(duckdb.Error) as raw:
            duckdb.connect(str(db))
        error = lock_error_from_duckdb(raw.value, db)
        with pytest.raises(LockError) as via_sql:
            sqlrun.connect(db)
    finally:
        release(holder)
    assert error is not None and error.exit_code == EXIT_LOCKED
    assert str(error).startswith(f"{db} is locked by another process (pid {holder.pid}, started ")
    assert str(via_sql.value) == str(error)


def test_popbatch_sql_on_a_locked_database_exits_75(runner, tmp_path):
    db = tmp_path / "catalog.duckdb"
    holder = hold(HOLD_DUCKDB, db)
    try:
        result = runner.invoke(cli, ["sql", "--db", str(db), "SELECT * FROM t"])
    finally:
        release(holder)
    assert result.exit_code == 75
    assert result.output.startswith(f"Error: {db} is locked by another process (pid {holder.pid}")
    assert result.output.count("\n") == 1


def test_other_duckdb_errors_are_not_lock_errors(tmp_path):
    assert lock_error_from_duckdb(duckdb.IOException("IO Error: disk full"), tmp_path) is None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_process_start_time_agrees_with_psutil():
    psutil = pytest.importorskip("psutil")
    from datetime import datetime

    started = datetime.fromisoformat(process_start_time(os.getpid()))
    assert abs(started.timestamp() - psutil.Process().create_time()) < 2


def test_duckdb_files_are_opened_without_a_progress_bar(tmp_path):
    """DuckDB draws a progress bar on stdout, into a file or a pipe too, for any query over
    2 s: a `popbatch score --quiet` upsert into a 10M-row table printed it into its log.
    connect_duckdb turns it off. Checked in a fresh process, as a run opens it: under
    pytest DuckDB starts with the bar off anyway."""
    code = (
        "import sys; from popbatch.batch.lock import connect_duckdb; "
        "con = connect_duckdb(sys.argv[1]); "
        "print(con.execute(\"SELECT current_setting('enable_progress_bar')\").fetchone()[0])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "catalog.duckdb")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "False"
