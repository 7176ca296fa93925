"""Bare onnxruntime throughput of a model on an in-memory float32 matrix.

The matrix is the real catalog's first rows, preprocessed exactly as
``popbatch score`` does (``batch.preprocess.Preprocessor``), tiled to the
largest batch size; inference goes through ``batch.runner.OnnxScorer``, the
session ``popbatch score`` uses. No reading, no preprocessing, no writing is
timed: the difference to an end-to-end run is their cost.

Prints one JSON line: rows per wall second and per CPU second, per batch size
(CPU seconds stay meaningful when other jobs share the cores).

    python bench/bare.py MODEL_DIR catalog.parquet --threads 2 --batch-sizes 16384 65536 262144
    python bench/bare.py popbatch/default_model batch/sample/catalog.csv --quick
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from popbatch.batch.preprocess import Preprocessor  # noqa: E402
from popbatch.batch.runner import OnnxScorer  # noqa: E402
from popbatch.batch.sources import open_source  # noqa: E402

from bench import QUICK_HELP  # noqa: E402
from popbatch.core.bundle import load_model  # noqa: E402

SAMPLE_ROWS = 65_536


def catalog_matrix(bundle, catalog: Path, rows: int) -> np.ndarray:
    """``rows`` rows of the catalog's feature matrix, as popbatch builds it (tiled if short)."""
    with open_source([catalog]) as source:
        preprocessor = Preprocessor(bundle.manifest).bind(source.schema, source.name)
        batch = next(iter(source.batches(preprocessor.read_columns, SAMPLE_ROWS)))
        features = preprocessor.transform(batch).features
    reps = -(-rows // len(features))
    return np.ascontiguousarray(np.tile(features, (reps, 1))[:rows], np.float32)


def rates(scorer: OnnxScorer, x: np.ndarray, batch_size: int, seconds: float) -> tuple[int, int]:
    """(rows per wall second, rows per CPU second) over batches of ``batch_size`` rows of
    ``x`` for ``seconds`` (at least 3 batches), after one warm-up batch."""
    batch = np.ascontiguousarray(x[:batch_size])
    scorer.predict(batch)
    runs, started, cpu = 0, time.perf_counter(), time.process_time()
    while runs < 3 or time.perf_counter() - started < seconds:
        scorer.predict(batch)
        runs += 1
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return round(runs * batch_size / wall), round(runs * batch_size / cpu)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="model directory (model.onnx + manifest.json)")
    parser.add_argument("catalog", type=Path, help="a catalog whose rows make the matrix")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16_384, 32_768, 65_536])
    parser.add_argument("--seconds", type=float, default=3.0, help="per batch size")
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.seconds = [1_024], 0.05

    bundle = load_model(args.model)
    scorer = OnnxScorer(bundle, threads=args.threads)
    x = catalog_matrix(bundle, args.catalog, max(args.batch_sizes))
    measured = {str(b): rates(scorer, x, b, args.seconds) for b in args.batch_sizes}
    print(
        json.dumps(
            {
                "threads": scorer.threads,
                "width": x.shape[1],
                "rows_per_second": {b: r[0] for b, r in measured.items()},
                "rows_per_cpu_second": {b: r[1] for b, r in measured.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
