"""Where the time of ``popbatch score`` goes: each stage timed alone, one after another.

Runs popbatch's own pieces (``ParquetSource``/``CsvSource``, ``Preprocessor``,
the features hash, ``OnnxScorer``, ``BatchScorer.assemble`` and ``ParquetSink``) over a catalog
*without* the reader/writer threads, so each stage's wall and CPU seconds
are its own. On 2 cores the threaded job overlaps the stages, but it cannot
make their CPU seconds disappear: with inference using both cores, every
CPU-second of reading, preprocessing and writing is roughly half a second of
wall time added to the run.

A DuckDB catalog with ``--table`` is scored as ``bench/run.py`` does, table to table:
read from the table of a copy of the database, written into its table ``scores``
(``--mode replace``), so "commit" is the copy of the staged rows into the table.

    python bench/stages.py MODEL_DIR catalog.parquet [--threads 2] [--batch-size 65536]
    python bench/stages.py MODEL_DIR catalog.duckdb --table tracks --batch-size 32768
    python bench/stages.py popbatch/default_model batch/sample/catalog.csv --quick
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from popbatch.batch.batches import BatchScorer  # noqa: E402
from popbatch.batch.incremental import features_hash  # noqa: E402
from popbatch.batch.preprocess import FeatureBuffer, Preprocessor  # noqa: E402
from popbatch.batch.runner import OnnxScorer, streaming_threads  # noqa: E402
from popbatch.batch.sinks import commit_all, open_sink  # noqa: E402
from popbatch.batch.sources import open_source  # noqa: E402

from bench import model_catalog_parser  # noqa: E402
from popbatch.core.bundle import load_model  # noqa: E402


class Clock:
    """Wall and process-CPU seconds per named stage."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    def __call__(self, stage: str, work, *args):
        wall, cpu = time.perf_counter(), time.process_time()
        result = work(*args)
        self.wall[stage] += time.perf_counter() - wall
        self.cpu[stage] += time.process_time() - cpu
        return result


def next_batch(iterator):
    return next(iterator, None)


def hash_of(scoring: BatchScorer, prepared) -> np.ndarray:
    """BatchScorer.prepare's hash step alone (prepare = transform + this)."""
    positions = prepared.genre_positions
    hot = None if positions is None else scoring.block_index[positions]
    return features_hash(prepared.features, *scoring.hash_columns, hot=hot)


def main(argv: list[str] | None = None) -> None:
    parser = model_catalog_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, help="inference threads (default: popbatch score's own)"
    )
    parser.add_argument("--batch-size", type=int, default=65_536)
    parser.add_argument("--table", help="a DuckDB catalog's table: scored table to table")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size = 256

    clock = Clock()
    bundle = clock("load model", load_model, args.model)
    threads = args.threads or streaming_threads()
    scorer = clock("create session", OnnxScorer, bundle, threads)
    with tempfile.TemporaryDirectory() as tmp:
        catalog, output, into = args.catalog, Path(tmp) / "scored.parquet", None
        if args.table:  # a copy, as bench/run.py scores: the run writes into it
            catalog = output = Path(tmp) / "catalog.duckdb"
            shutil.copyfile(args.catalog, catalog)
            into = "scores"
        source = open_source([catalog], table=args.table)
        preprocessor = Preprocessor(bundle.manifest).bind(source.schema, source.name)
        sink = open_sink(output, into=into, key=preprocessor.key)
        scoring = BatchScorer(preprocessor, scorer, datetime.now(UTC))
        sink.open(scoring.schema, preprocessor.by_final)
        buffer = FeatureBuffer(args.batch_size, preprocessor.width)
        batches = source.batches(preprocessor.read_columns, args.batch_size)
        rows = 0
        while (batch := clock("read", next_batch, batches)) is not None:
            prepared = clock("preprocess", preprocessor.transform, batch, rows + 1, buffer)
            hashes = clock("features hash", hash_of, scoring, prepared)
            outputs = clock("inference", scoring.predict, prepared)
            scored = clock("assemble", scoring.assemble, prepared, hashes, *outputs)
            clock("write", sink.write, scored)
            rows += batch.num_rows
        source.close()  # before the commit, as a run does: it may be the same database
        clock("commit", lambda: (sink.finish(), commit_all([sink])))
    print(f"heads: {', '.join(scoring.heads)}")
    total_wall, total_cpu = sum(clock.wall.values()), sum(clock.cpu.values())
    print(f"{rows:,} rows, batch {args.batch_size:,}, onnxruntime threads {scorer.threads}")
    print(f"{'stage':<18} {'wall s':>8} {'CPU s':>8} {'wall %':>7} {'rows/s (wall)':>14}")
    for stage in clock.wall:
        wall = clock.wall[stage]
        rate = f"{rows / wall:,.0f}" if wall > 0.05 else "-"
        print(
            f"{stage:<18} {wall:8.2f} {clock.cpu[stage]:8.2f} {wall / total_wall:7.1%} {rate:>14}"
        )
    print(f"{'total':<18} {total_wall:8.2f} {total_cpu:8.2f}")
    print(
        json.dumps(
            {
                "command": "python bench/stages.py " + " ".join(sys.argv[1:]),
                "load_average": [round(v, 2) for v in os.getloadavg()],
                "rows": rows,
                "wall": {k: round(v, 3) for k, v in clock.wall.items()},
                "cpu": {k: round(v, 3) for k, v in clock.cpu.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
