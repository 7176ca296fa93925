"""One run per target: a file lock beside the output.

A nightly ``popbatch score`` that starts while yesterday's is still writing
the same target waits up to ``--wait`` seconds, then stops with exit code 75
(:class:`~popbatch.core.errors.LockError`) and a message naming the holder's pid and
start time. The lock is ``fcntl.flock`` on ``<target>.lock``: the kernel drops
it when the holder exits or is killed, so a crashed run never leaves a stale
lock behind (the file itself stays; its content is only informational).

DuckDB has its own single-writer lock on the database file; its
"Could not set lock on file" error is turned into the same message by
:func:`lock_error_from_duckdb`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import socket
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from popbatch.core.errors import LockError, OutputError

LOCK_SUFFIX = ".lock"
POLL_SECONDS = 0.1


def lock_path(target: Path | str) -> Path:
    """The lock file of a target: ``scores.parquet`` -> ``scores.parquet.lock``."""
    target = Path(target)
    return target.with_name(target.name + LOCK_SUFFIX)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _holder_text(pid: object, started_at: object) -> str:
    pid_text = pid if pid is not None else "unknown"
    return f"pid {pid_text}, started {started_at or 'at an unknown time'}"


def _read_holder(path: Path) -> str:
    """Who holds the lock, from the file's JSON; the holder writes it just after locking."""
    for _ in range(5):
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            return _holder_text(info.get("pid"), info.get("started_at"))
        except (OSError, ValueError, AttributeError):
            time.sleep(0.02)  # the holder may be between truncate and write
    return _holder_text(None, None)


def _locked_message(target: Path, holder: str, waited: float) -> str:
    waited_text = f"after waiting {waited:g}s" if waited > 0 else "(no --wait given)"
    return (
        f"{target} is locked by another popbatch run ({holder}) {waited_text}; "
        "let it finish, or pass --wait SECONDS to wait for it"
    )


def _foreign(fd: int) -> str | None:
    """Why the open file ``fd`` is not a lock file popbatch wrote; None when it is one
    (empty, or the JSON a holder writes: a killed run may leave either)."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return "is not a regular file"
    text = os.pread(fd, 4096, 0)
    if not text.strip():
        return None
    try:
        info = json.loads(text)
    except ValueError:
        info = None
    if isinstance(info, dict) and "pid" in info and "started_at" in info:
        return None
    return "holds something popbatch did not write"


def _not_a_lock(path: Path, problem: str) -> str:
    return (
        f"{path}: {problem}; popbatch keeps its run lock there and changes only a lock "
        "file it made: move that file away, or choose another output"
    )


class TargetLock:
    """An exclusive lock on ``<target>.lock``, held between :meth:`acquire` and :meth:`release`."""

    def __init__(self, target: Path | str, wait_seconds: float = 0) -> None:
        self.target = Path(target)
        self.path = lock_path(self.target)
        self.wait_seconds = max(0.0, float(wait_seconds))
        self._fd: int | None = None

    def acquire(self) -> TargetLock:
        """Take the lock, waiting up to ``wait_seconds``.

        Raises
        ------
        LockError
            If another process still holds it after the wait (message names
            the holder's pid and start time).
        OutputError
            If ``<target>.lock`` is a symlink, not a regular file, or a file popbatch
            did not write (it is left as it is).
        OSError
            If the lock file cannot be created (for example a missing folder).
        """
        try:
            # O_NOFOLLOW: a symlink here would make the holder's text overwrite its target.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise OutputError(_not_a_lock(self.path, "is a symlink")) from None
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(self.path)
                    os.close(fd)
                    raise LockError(
                        _locked_message(self.target, holder, self.wait_seconds)
                    ) from None
                time.sleep(POLL_SECONDS)
        problem = _foreign(fd)
        if problem is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise OutputError(_not_a_lock(self.path, problem))
        info = {"pid": os.getpid(), "started_at": _now_iso(), "host": socket.gethostname()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock. The file stays: removing it would race with a waiter. So does
        its text: a run refused just before this release still names this holder (it is
        read only after a refused lock, and the next holder rewrites it)."""
        if self._fd is None:
            return
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> TargetLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def target_lock(target: Path | str, wait: float = 0) -> Iterator[TargetLock]:
    """Hold the lock on ``target`` for the ``with`` block.

    Examples
    --------
    >>> with target_lock("scores.duckdb", wait=30):  # doctest: +SKIP
    ...     write_scores()
    """
    lock = TargetLock(target, wait).acquire()
    try:
        yield lock
    finally:
        lock.release()


# ---------------------------------------------------------------------------
# DuckDB's own lock

_DUCKDB_LOCK = re.compile(r"Could not set lock on file")
_DUCKDB_PID = re.compile(r"\(PID (\d+)\)")


def process_start_time(pid: int) -> str | None:
    """A process's start time (ISO, UTC) from /proc, or None where that is unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        # Field 22 (starttime, clock ticks since boot) comes after the
        # parenthesised command name, which may itself hold spaces.
        ticks = int(stat.rpartition(")")[2].split()[19])
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    started = boot + ticks / os.sysconf("SC_CLK_TCK")
    return datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds")


def lock_error_from_duckdb(exc: BaseException, database: Path | str) -> LockError | None:
    """Turn DuckDB's "Could not set lock on file" error into a LockError, else None.

    Use it where a DuckDB file is opened::

        try:
            con = duckdb.connect(path)
        except duckdb.Error as exc:
            raise lock_error_from_duckdb(exc, path) or OutputError(...) from None
    """
    text = str(exc)
    if not _DUCKDB_LOCK.search(text):
        return None
    match = _DUCKDB_PID.search(text)
    pid = int(match.group(1)) if match else None
    started = process_start_time(pid) if pid is not None else None
    return LockError(
        f"{database} is locked by another process ({_holder_text(pid, started)}); "
        "DuckDB allows one writer at a time: try again when it has finished"
    )


# DuckDB's own default is 80% of RAM, and its buffer pool keeps what it read: scoring a
# 10M-row table peaked at 1.6 GB. Bounded, DuckDB evicts and spills instead.
DUCKDB_MEMORY_LIMIT = "256MB"

# A plain scan of a table (``popbatch score --table``) gains nothing from keeping the
# blocks it read: with 256 MB the buffer pool filled up over a 10M-row table and the
# run's peak RSS grew with the table; with 32 MB it stays flat, no slower
# (bench/results/ab_5_duckdb.json).
DUCKDB_SCAN_MEMORY_LIMIT = "32MB"

# Copying a run's staged rows into a new table (--mode replace) streams them: with 128 MB
# instead of 256 a 10M-row table -> table run was no slower and peaked 75 MB lower, no
# longer growing with the table (bench/results/ab_10_duckdb_commit.json). A commit that
# joins or alters (append, upsert, write-back, --incremental) keeps DUCKDB_MEMORY_LIMIT.
DUCKDB_COPY_MEMORY_LIMIT = "128MB"


def quiet(con):
    """``con`` without DuckDB's progress bar, which DuckDB prints to stdout (a file or a
    pipe too) for any query over 2 s: ``popbatch sql ... > out.csv`` and cron logs would
    hold it, even with ``--quiet``. popbatch reports its own progress."""
    con.execute("SET enable_progress_bar = false")
    return con


def connect_duckdb(
    database: Path | str,
    *,
    read_only: bool = False,
    wait: float = 0,
    memory_limit: str | None = None,
):
    """``duckdb.connect`` that waits up to ``wait`` seconds for DuckDB's file lock.

    The connection's memory is bounded by ``memory_limit`` (default
    :data:`DUCKDB_MEMORY_LIMIT`), and it prints no progress bar (:func:`quiet`).

    DuckDB lets many read-only processes or one writing process open a file.
    While another process holds a conflicting lock this retries every
    :data:`POLL_SECONDS`; when the wait is over it raises the one-line
    :class:`~popbatch.core.errors.LockError` naming the holder (exit code 75).

    Raises
    ------
    LockError
        The file is still locked by another process after ``wait`` seconds.
    duckdb.Error
        Any other failure to open (the caller words it: input or output).
    """
    import duckdb

    deadline = time.monotonic() + max(0.0, float(wait))
    while True:
        try:
            con = duckdb.connect(
                str(database),
                read_only=read_only,
                config={"memory_limit": memory_limit or DUCKDB_MEMORY_LIMIT},
            )
            return quiet(con)
        except duckdb.Error as exc:
            locked = lock_error_from_duckdb(exc, database)
            if locked is None:
                raise
            if time.monotonic() >= deadline:
                raise locked from None
        time.sleep(POLL_SECONDS)
