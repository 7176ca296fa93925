"""Two real `popbatch score` processes writing the same target at once.

One waits for the other (``--wait``) or exits with the lock code 75 and a
message naming the holder; the target is never corrupted: the test reads it
back and checks the row count and that every key is there exactly once.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from conftest import TRACKS_2000

ROOT = Path(__file__).resolve().parents[1]
TILES = 200
ROWS = 2000 * TILES


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    """400k real rows (the fixture tiled) with a unique ``row_id`` key."""
    base = pacsv.read_csv(TRACKS_2000)
    large = pa.concat_tables([base] * TILES)
    large = large.append_column("row_id", pa.array(np.arange(ROWS, dtype=np.int64)))
    path = tmp_path_factory.mktemp("concurrency") / "catalog.parquet"
    pq.write_table(large, path, row_group_size=65536)
    return path


def start(catalog: Path, output: Path, model_dir: Path, *extra: str) -> subprocess.Popen:
    args = ["score", str(catalog), "-o", str(output), "--model", str(model_dir),
            "--columns", "row_id", "--key", "row_id", "--threads", "1", "-q", *extra]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "popbatch", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def check_complete(keys: list[int]) -> None:
    assert len(keys) == ROWS
    assert len(set(keys)) == ROWS


def test_second_run_without_wait_exits_75_while_the_first_holds_the_target(
    catalog, model_dir, tmp_path
):
    target = tmp_path / "scores.duckdb"
    first = start(catalog, target, model_dir, "--into", "scores")
    lock = Path(f"{target}.lock")
    while first.poll() is None and str(first.pid) not in _read(lock):
        pass  # the first run holds the lock once its pid is in the lock file
    second = start(catalog, target, model_dir, "--into", "scores")
    second_output = second.communicate(timeout=120)[0]
    first_still_running = first.poll() is None
    assert first.wait(timeout=120) == 0, first.communicate()[0]
    if first_still_running:
        # It overlapped the whole time: it must have been refused, in one line.
        assert second.returncode == 75, second_output
        line = second_output.strip()
        assert line.startswith("Error: ") and "\n" not in line
        assert f"locked by another popbatch run (pid {first.pid}" in line
    else:
        assert second.returncode in (0, 75), second_output
    with duckdb.connect(str(target), read_only=True) as con:
        check_complete([row[0] for row in con.sql("SELECT row_id FROM scores").fetchall()])


def test_two_runs_with_wait_both_complete_on_duckdb(catalog, model_dir, tmp_path):
    target = tmp_path / "scores.duckdb"
    extra = ("--into", "scores", "--mode", "upsert", "--wait", "120")
    runs = [start(catalog, target, model_dir, *extra) for _ in range(2)]
    for run in runs:
        output = run.communicate(timeout=180)[0]
        assert run.returncode == 0, output
    with duckdb.connect(str(target), read_only=True) as con:
        check_complete([row[0] for row in con.sql("SELECT row_id FROM scores").fetchall()])
        statuses = con.sql("SELECT status FROM popbatch_runs").fetchall()
    assert sorted(s for (s,) in statuses) == ["success", "success"]


def test_two_runs_with_wait_both_complete_on_one_parquet_file(catalog, model_dir, tmp_path):
    target = tmp_path / "scores.parquet"
    runs = [start(catalog, target, model_dir, "--wait", "120") for _ in range(2)]
    for run in runs:
        output = run.communicate(timeout=180)[0]
        assert run.returncode == 0, output
    check_complete(pl.read_parquet(target)["row_id"].to_list())
    # no temporary file of either run is left beside the output
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (FileNotFoundError, PermissionError):
        return ""
