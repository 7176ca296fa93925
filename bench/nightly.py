"""Nightly operation figures (not part of the test suite).

Scores a tiled fixture catalog (``bench/catalog.py``) into a DuckDB table and
a Parquet file, then reruns with ``--incremental`` and nothing changed, and
reports for each run: wall seconds, rows scored / skipped, and how long the
DuckDB database was opened for writing (the window in which DuckDB refuses
every other process, readers included).

    python -m tests.model_factory runs/test_model
    python bench/nightly.py --model runs/test_model --rows 1000000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import popbatch.batch.sinks as sinks  # noqa: E402
from popbatch.batch.score import score  # noqa: E402

from bench.catalog import build_parquet  # noqa: E402

WRITE_WINDOWS: list[float] = []
_commit = sinks._commit_duckdb


def _timed_commit(*args, **kwargs):
    """The DuckDB write connection lives exactly inside _commit_duckdb."""
    started = time.perf_counter()
    try:
        return _commit(*args, **kwargs)
    finally:
        WRITE_WINDOWS.append(time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--model", help="model directory (default: the embedded model)")
    parser.add_argument("--workdir", help="where files go (default: a temp dir)")
    args = parser.parse_args()
    sinks._commit_duckdb = _timed_commit
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp)
        catalog = build_parquet(args.rows, folder / "catalog.parquet")
        for kind in ("duckdb", "parquet"):
            for label, incremental in (("full", False), ("incremental, unchanged", True)):
                sink = (
                    sinks.DuckDBSink(folder / "t.duckdb", "scores")
                    if kind == "duckdb"
                    else folder / "t.parquet"
                )
                WRITE_WINDOWS.clear()
                started = time.perf_counter()
                summary = score(catalog, sink, args.model, incremental=incremental)
                seconds = time.perf_counter() - started
                window = (
                    f", DuckDB write lock held {WRITE_WINDOWS[0]:.2f} s" if WRITE_WINDOWS else ""
                )
                print(
                    f"{kind:8s} {label:24s} {summary.rows_read:>10,} rows: scored "
                    f"{summary.rows_scored:,}, skipped {summary.rows_skipped:,} in "
                    f"{seconds:.2f} s{window}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
