"""Killing ``popbatch score`` at any point never leaves a partial output.

A 500k-row Parquet catalog (tests/data/tracks_2000.csv tiled 250 times, with a
unique ``row_id``) is scored in a real process that is killed with SIGKILL or
interrupted with SIGINT at several points:

- while reading (the temporary output has just been created),
- mid-scoring (the temporary output is at ~30% of its final size),
- while writing (~80%),
- just before the rename / inside the DuckDB transaction, and just after the
  rename. These windows are too short to hit by timing, so the process is
  started through a small wrapper (``HOOK`` below, test-side only) that
  patches ``os.replace`` / ``DuckDBSink.apply`` to kill itself there.

Afterwards the output is absent or the complete previous version (read back:
row count and keys), or, after the rename, the complete new one; a rerun
completes. A killed run leaves its temporary file behind (nothing can delete
it); the next run on the same output deletes temporary files whose process is
gone (``popbatch.batch.sinks._remove_stale_temps``). After SIGINT the exit code is 130,
the message is one line, and no temporary file is left.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from conftest import TRACKS_2000

ROOT = Path(__file__).resolve().parents[1]
TILES = 250
ROWS = 2000 * TILES
INTO = ("--into", "scores", "--mode", "replace")

# Runs the CLI with a kill point patched in: argv[1] names the point.
HOOK = """
import os, signal, sys
import popbatch.batch.sinks as sinks

point = sys.argv.pop(1)

def die():
    os.kill(os.getpid(), signal.SIGKILL)

real_replace, real_apply = os.replace, sinks.DuckDBSink.apply

def replace(src, dst, *args, **kwargs):
    if point == "before-rename" and str(dst).endswith("scored.parquet"):
        die()
    result = real_replace(src, dst, *args, **kwargs)
    if point == "after-rename" and str(dst).endswith("scored.parquet"):
        die()
    return result

def apply(self, con):
    real_apply(self, con)
    if point == "in-transaction" and self.table == "scores":
        die()  # statements applied, COMMIT not yet sent

os.replace, sinks.DuckDBSink.apply = replace, apply
from popbatch.cli.main import cli
cli(prog_name="popbatch")
"""


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory, model_dir) -> dict[str, Path]:
    """The large catalog, and complete previous outputs (file and DuckDB) made
    by scoring its first 2,000 rows; ``reference`` is the large catalog's output.
    """
    directory = tmp_path_factory.mktemp("crash")
    base = pacsv.read_csv(TRACKS_2000)
    large = pa.concat_tables([base] * TILES)
    large = large.append_column("row_id", pa.array(np.arange(ROWS, dtype=np.int64)))
    paths = {name: directory / name for name in ("large.parquet", "small.parquet")}
    pq.write_table(large, paths["large.parquet"], row_group_size=65536)
    pq.write_table(large.slice(0, 2000), paths["small.parquet"])
    runs = [
        command(paths["small.parquet"], directory / "previous.parquet", model_dir),
        command(paths["small.parquet"], directory / "previous.duckdb", model_dir, *INTO),
        command(paths["large.parquet"], directory / "reference.parquet", model_dir),
    ]
    for args in runs:
        assert start(args).wait(timeout=120) == 0
    return {
        "large": paths["large.parquet"],
        "previous": directory / "previous.parquet",
        "previous_db": directory / "previous.duckdb",
        "reference": directory / "reference.parquet",
    }


def command(inputs: Path, output: Path, model_dir: Path, *extra: str) -> list[str]:
    return [
        "score", str(inputs), "-o", str(output), "--model", str(model_dir),
        "--columns", "row_id", "--batch-size", "32768", "--threads", "1", "-q", *extra,
    ]  # fmt: skip


def start(args: list[str], hook: str | None = None) -> subprocess.Popen:
    prefix = ["-c", HOOK, hook] if hook else ["-m", "popbatch"]
    return subprocess.Popen(
        [sys.executable, *prefix, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(process: subprocess.Popen, temp_glob: tuple[Path, str], size: int) -> bool:
    """Poll until a temporary file matching ``temp_glob`` holds ``size`` bytes."""
    directory, pattern = temp_glob
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        for temp in directory.glob(pattern):
            try:
                if temp.stat().st_size >= size:
                    return True
            except FileNotFoundError:
                continue
        time.sleep(0.002)
    return False


def parquet_keys(path: Path) -> np.ndarray:
    return pq.read_table(path, columns=["row_id"])["row_id"].to_numpy()


def table_keys(db: Path, table: str = "scores") -> np.ndarray:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.sql(f"SELECT row_id FROM {table} ORDER BY row_id").fetchnumpy()["row_id"]
    finally:
        con.close()


def version(keys: np.ndarray) -> str:
    """Which complete version ``keys`` are: previous (2,000 rows) or new (all rows)."""
    ordered = np.sort(keys)
    if len(ordered) == 2000 and (ordered == np.arange(2000)).all():
        return "previous"
    if len(ordered) == ROWS and (ordered == np.arange(ROWS)).all():
        return "new"
    return f"PARTIAL ({len(ordered)} rows)"


def temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def files(directory: Path) -> list[str]:
    """What is left in ``directory``, except the target's lock file (batch/lock.py)
    and the run log (batch/runlog.py, which records failed runs too)."""
    return sorted(
        p.name
        for p in directory.iterdir()
        if not p.name.endswith(".lock") and p.name != "runs.jsonl"
    )


# Kill points by the temporary file's size as a share of the final file (timing
# based), or by a hook: (id, share or None, hook or None, expected version).
FILE_POINTS = [
    ("reading", 0.0, None, "previous"),
    ("mid-scoring", 0.3, None, "previous"),
    ("writing", 0.8, None, "previous"),
    ("before-rename", None, "before-rename", "previous"),
    ("after-rename", None, "after-rename", "new"),
]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_file_output_is_previous_or_complete(sig, catalogs, model_dir, tmp_path):
    output = tmp_path / "scored.parquet"
    final_size = catalogs["reference"].stat().st_size
    points = FILE_POINTS if sig == signal.SIGKILL else FILE_POINTS[:3]
    for name, share, hook, expected in points:
        shutil.copy(catalogs["previous"], output)
        process = start(command(catalogs["large"], output, model_dir), hook)
        if share is not None:
            hit = wait_for(process, (tmp_path, ".scored.parquet.*.tmp"), int(share * final_size))
            assert hit, f"{name}: the run ended before the kill point"
            process.send_signal(sig)
        out, _ = process.communicate(timeout=120)
        assert "Traceback" not in out, (name, out)
        if sig == signal.SIGKILL:
            assert process.returncode == -signal.SIGKILL, (name, out)
        else:
            assert process.returncode == 130, (name, out)
            assert out == "Error: interrupted; nothing partial was written\n"
            assert temps(tmp_path) == [], name  # Ctrl-C cleans up after itself
        assert version(parquet_keys(output)) == expected, name

    # A killed run's temporary file stays; the next run removes it and completes.
    left = temps(tmp_path)
    assert (left != []) == (sig == signal.SIGKILL)
    assert start(command(catalogs["large"], output, model_dir)).wait(timeout=120) == 0
    assert version(parquet_keys(output)) == "new"
    assert files(tmp_path) == ["scored.parquet"]


DUCKDB_POINTS = [
    ("reading", 0.0, None),
    ("staging", 0.5, None),
    ("in-transaction", None, "in-transaction"),
]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_duckdb_target_is_never_half_written(sig, catalogs, model_dir, tmp_path):
    db = tmp_path / "catalog.duckdb"
    shutil.copy(catalogs["previous_db"], db)
    stage_size = 2 << 20  # the staged 500k keys + scores (lz4) are ~4 MB
    points = DUCKDB_POINTS if sig == signal.SIGKILL else DUCKDB_POINTS[:2]
    for name, share, hook in points:
        process = start(command(catalogs["large"], db, model_dir, *INTO), hook)
        if share is not None:
            pattern = "..catalog.duckdb.scores.stage.parquet.*.tmp"  # the stage is hidden too
            hit = wait_for(process, (tmp_path, pattern), int(share * stage_size))
            assert hit, f"{name}: the run ended before the kill point"
            process.send_signal(sig)
        out, _ = process.communicate(timeout=120)
        assert "Traceback" not in out, (name, out)
        expected_code = -signal.SIGKILL if sig == signal.SIGKILL else 130
        assert process.returncode == expected_code, (name, out)
        assert version(table_keys(db)) == "previous", name

    assert start(command(catalogs["large"], db, model_dir, *INTO)).wait(timeout=120) == 0
    assert version(table_keys(db)) == "new"
    assert temps(tmp_path) == []  # stale staging files of killed runs are gone


def test_interrupt_inside_a_native_import_still_exits_130(
    runner, model_dir, tmp_path, monkeypatch, request
):
    """Ctrl-C while onnxruntime's extension initialises surfaces as ImportError
    ("initialization failed"), not KeyboardInterrupt: found by sending SIGINT at
    0.02 s steps after start; it printed a traceback and exited 1. The CLI now
    remembers the signal and reports it as an interrupt.

    As from a terminal, SIGINT starts with Python's default handler: a test run
    started in the background inherits SIGINT ignored, where the CLI rightly
    leaves it alone and no Ctrl-C can arrive.
    """
    import popbatch.batch.runner

    from popbatch.cli.main import cli

    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, inherited))

    def initialise(*args, **kwargs):
        try:
            signal.raise_signal(signal.SIGINT)  # arrives during the import
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None

    monkeypatch.setattr(popbatch.batch.runner.OnnxScorer, "__init__", initialise)
    output = tmp_path / "scored.parquet"
    args = ["score", str(TRACKS_2000), "-o", str(output), "--model", str(model_dir)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 130, result.output
    assert result.output == "Error: interrupted; nothing partial was written\n"
    assert files(tmp_path) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored

    # Without an interrupt, an unexpected error is not disguised as one.
    def broken(*args, **kwargs):
        raise ImportError("initialization failed")

    monkeypatch.setattr(popbatch.batch.runner.OnnxScorer, "__init__", broken)
    result = runner.invoke(cli, args)
    assert result.exit_code == 1 and isinstance(result.exception, ImportError)


def test_interrupt_while_the_outputs_open_leaves_no_temp_file(
    runner, model_dir, tmp_path, monkeypatch
):
    """Ctrl-C after the rejects' temporary file exists but before its sink counted as
    opened left that file behind (found by the SIGINT crash test under load)."""
    import popbatch.batch.sinks

    from popbatch.cli.main import cli

    real = popbatch.batch.sinks.ParquetSink._open_writer

    def open_then_interrupt(self):
        real(self)
        if ".rejects." in self.path.name:
            raise KeyboardInterrupt

    monkeypatch.setattr(popbatch.batch.sinks.ParquetSink, "_open_writer", open_then_interrupt)
    output = tmp_path / "scored.parquet"
    args = ["score", str(TRACKS_2000), "-o", str(output), "--model", str(model_dir)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 130, result.output
    assert files(tmp_path) == []


@pytest.mark.parametrize("thread_name", ["popbatch-source", "popbatch-reader", "popbatch-writer"])
def test_interrupt_inside_a_thread_start_stops_reading_before_exit(
    thread_name, runner, model_dir, tmp_path, monkeypatch
):
    """Ctrl-C can land inside ``Thread.start()`` after the thread was launched; the
    kill-point test above found the reader then still reading while the interpreter
    shut down, and the process aborted ("terminate called", exit -6) instead of
    exiting 130. The source must not be read once the run has returned, and no
    pipeline thread may be left waiting.
    """
    import threading

    import popbatch.batch.sources

    from popbatch.cli.main import cli

    real_start, real_batches = threading.Thread.start, popbatch.batch.sources.CsvSource.batches
    reading, returned = [], threading.Event()

    def start(self):
        real_start(self)
        if self.name == thread_name:
            raise KeyboardInterrupt  # as if SIGINT arrived while start() waited

    def slow_batches(self, *args, **kwargs):
        for item in real_batches(self, *args, **kwargs):
            time.sleep(0.2)  # a slow read, still in progress when the run stops
            reading.append(returned.is_set())
            yield item

    monkeypatch.setattr(threading.Thread, "start", start)
    monkeypatch.setattr(popbatch.batch.sources.CsvSource, "batches", slow_batches)
    output = tmp_path / "scored.parquet"
    args = ["score", str(TRACKS_2000), "-o", str(output), "--model", str(model_dir)]
    result = runner.invoke(cli, args)
    returned.set()
    time.sleep(0.5)  # time for a leftover thread to read
    assert result.exit_code == 130, result.output
    assert result.output == "Error: interrupted; nothing partial was written\n"
    assert True not in reading  # nothing read after the run returned
    assert [t.name for t in threading.enumerate() if t.name.startswith("popbatch")] == []
    assert files(tmp_path) == []


@pytest.mark.parametrize("failure", ["a bad row", "a failed write"])
def test_a_run_that_stops_midway_stops_reading_its_source(
    failure, runner, model_dir, tmp_path, monkeypatch
):
    """The source is read a batch ahead in a thread of its own. A run that stops early (a
    bad row under --on-invalid fail, raised while preprocessing; a write that fails, raised
    while the reader waits to hand over a batch) must stop that thread before it returns:
    nothing is read afterwards and no thread is left waiting to hand over its batch."""
    import threading

    import popbatch.batch.sinks
    import popbatch.batch.sources

    from popbatch.cli.main import cli
    from popbatch.core.errors import OutputError

    catalog = TRACKS_2000
    if failure == "a bad row":
        lines = TRACKS_2000.read_text(encoding="utf-8").splitlines()
        fields = lines[1500].split(",")
        fields[lines[0].split(",").index("danceability")] = "not a number"
        lines[1500] = ",".join(fields)
        catalog = tmp_path / "catalog.csv"
        catalog.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        real_write, writes = popbatch.batch.sinks.ParquetSink._write_batch, []

        def failing_write(self, batch):
            writes.append(1)
            if len(writes) == 3:
                raise OutputError(f"{self.path}: disk full")
            real_write(self, batch)

        monkeypatch.setattr(popbatch.batch.sinks.ParquetSink, "_write_batch", failing_write)
    real_batches = popbatch.batch.sources.CsvSource.batches
    real_close = popbatch.batch.sources.CsvSource.close
    reading, closed = [], threading.Event()

    # reads slower than the rest (one in progress when the run stops) or faster (the
    # reader thread waits to hand over a batch when the run stops)
    read_seconds = 0.05 if failure == "a bad row" else 0.0

    def slow_batches(self, *args, **kwargs):
        for item in real_batches(self, *args, **kwargs):
            time.sleep(read_seconds)
            reading.append(closed.is_set())
            yield item

    def close(self):
        closed.set()
        real_close(self)

    monkeypatch.setattr(popbatch.batch.sources.CsvSource, "batches", slow_batches)
    monkeypatch.setattr(popbatch.batch.sources.CsvSource, "close", close)
    output = tmp_path / "out" / "scored.parquet"
    args = ["score", str(catalog), "-o", str(output), "--model", str(model_dir),
            "--batch-size", "100", "--on-invalid", "fail"]  # fmt: skip
    outcome: list = []  # in a thread: a run stuck on a pipeline thread fails, not hangs
    run = threading.Thread(target=lambda: outcome.append(runner.invoke(cli, args)), daemon=True)
    run.start()
    run.join(60)
    assert outcome, "the run did not return: a pipeline thread waits for ever"
    result = outcome[0]
    time.sleep(0.3)  # time for a leftover thread to read
    expected = "row 1500" if failure == "a bad row" else "disk full"
    assert result.exit_code != 0 and expected in result.output, result.output
    assert closed.is_set() and len(reading) < 19  # it stopped there, not at the end
    assert True not in reading  # nothing read once the source was closed
    assert [t.name for t in threading.enumerate() if t.name.startswith("popbatch")] == []
    assert not output.exists()
