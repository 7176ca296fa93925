"""Nightly operation figures (not part of the test suite).

Scores a tiled fixture catalog (``bench/catalog.py``) into a DuckDB table and
a Parquet file, then reruns with ``--incremental`` and nothing changed, and
reports for each run: wall seconds, rows scored / skipped, and how long the
DuckDB database refused another process (the window in which DuckDB refuses
every other process, readers included, while popbatch writes).

The window is seen from outside, as a reader would see it: a second process
tries a read-only connection every few milliseconds during the run and keeps
the longest stretch of refusals (its resolution is the polling interval, a few
milliseconds; the reader's brief connections may delay popbatch's writer by as
much, which ``popbatch score`` waits out).

    python -m tests.model_factory runs/test_model
    python bench/nightly.py --model runs/test_model --rows 1000000
    python bench/nightly.py --quick          # 1,000 rows, the embedded model: checks the script
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from popbatch.batch.score import score  # noqa: E402
from popbatch.batch.sinks import DuckDBSink  # noqa: E402

from bench import QUICK_HELP  # noqa: E402
from bench.catalog import build_parquet  # noqa: E402

POLL_SECONDS = 0.002


def poll(database: Path, stop: Path) -> None:
    """In the watching process: until ``stop`` exists, try to read ``database``; print the
    longest run of refusals, in seconds, as JSON."""
    import duckdb

    longest, refused_since = 0.0, None
    while not stop.exists():
        now = time.perf_counter()
        try:
            duckdb.connect(str(database), read_only=True).close()
        except duckdb.Error:
            refused_since = now if refused_since is None else refused_since
            longest = max(longest, time.perf_counter() - refused_since)
        else:
            refused_since = None
        time.sleep(POLL_SECONDS)
    print(json.dumps({"longest_refusal_seconds": longest}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--model", help="model directory (default: the embedded model)")
    parser.add_argument("--workdir", help="where files go (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP)
    parser.add_argument("--poll", nargs=2, type=Path, help=argparse.SUPPRESS)  # the watcher
    args = parser.parse_args(argv)
    if args.poll:
        poll(*args.poll)
        return
    if args.quick:
        args.rows = 1_000
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp)
        catalog = build_parquet(args.rows, folder / "catalog.parquet")
        database = folder / "t.duckdb"
        for kind in ("duckdb", "parquet"):
            for label, incremental in (("full", False), ("incremental, unchanged", True)):
                sink = DuckDBSink(database, "scores") if kind == "duckdb" else folder / "t.parquet"
                stop = folder / "stop"
                stop.unlink(missing_ok=True)
                watcher = None
                if kind == "duckdb":
                    command = [sys.executable, __file__, "--poll", str(database), str(stop)]
                    watcher = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
                started = time.perf_counter()
                summary = score(catalog, sink, args.model, incremental=incremental)
                seconds = time.perf_counter() - started
                window = ""
                if watcher is not None:
                    stop.touch()
                    found = json.loads(watcher.communicate(timeout=60)[0])
                    window = (
                        f", DuckDB refused a reader for {found['longest_refusal_seconds']:.2f} s"
                    )
                print(
                    f"{kind:8s} {label:24s} {summary.rows_read:>10,} rows: scored "
                    f"{summary.rows_scored:,}, skipped {summary.rows_skipped:,} in "
                    f"{seconds:.2f} s{window}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
