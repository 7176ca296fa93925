"""Inference CPU per row of each head of several model directories, in alternating rounds.

For an export change (the same trained models, other graphs): each head file of each
model directory gets its own single-threaded onnxruntime session, as ``popbatch score``
runs it, and scores the catalog's first rows (preprocessed as ``popbatch score`` does,
``bench/bare.py``) in 1,024-row slices. Round after round, every directory's heads take
their turn, and each keeps its best round, so a busy moment of the shared machine slows
one round of each instead of one side. Prints one JSON line: microseconds of CPU per
row per head and all heads, per directory.

    python bench/graph_ab.py OLD_MODEL_DIR NEW_MODEL_DIR --catalog catalog.parquet
    python bench/graph_ab.py popbatch/default_model --catalog batch/sample/catalog.csv --quick
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from popbatch.batch.runner import single_thread_session  # noqa: E402

from bench import QUICK_HELP  # noqa: E402
from bench.bare import catalog_matrix  # noqa: E402
from popbatch.core.bundle import load_model  # noqa: E402

SLICE_ROWS = 1_024  # batch.runner.OnnxScorer.CHUNK_ROWS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+", help="model directories")
    parser.add_argument("--catalog", type=Path, required=True, help="rows for the matrix")
    parser.add_argument("--rows", type=int, default=65_536, help="rows scored per round")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.rounds = 1_024, 1
    bundles = [load_model(m) for m in args.models]
    if len({b.manifest["input"]["width"] for b in bundles}) != 1:
        sys.exit("the models take inputs of different widths: not the same trained models")
    x = catalog_matrix(bundles[0], args.catalog, args.rows)
    slices = [x[i : i + SLICE_ROWS] for i in range(0, len(x), SLICE_ROWS)]
    sessions = [
        {
            head: single_thread_session(data, b.directory)
            for head, data in (("popular", b.onnx_bytes), *b.head_bytes.items())
        }
        for b in bundles
    ]
    best: list[dict[str, float]] = [{} for _ in bundles]
    for _ in range(args.rounds):
        for side, heads in enumerate(sessions):
            for head, session in heads.items():
                session.run(None, {"features": slices[0]})  # warm
                start = time.process_time()
                for part in slices:
                    session.run(None, {"features": part})
                us = (time.process_time() - start) / len(x) * 1e6
                best[side][head] = min(best[side].get(head, float("inf")), us)
    print(
        json.dumps(
            {
                "command": "python bench/graph_ab.py " + " ".join(sys.argv[1:]),
                "load_average": os.getloadavg()[0],
                "rows": len(x),
                "rounds": args.rounds,
                "us_per_row_cpu": {
                    str(m): {
                        **{h: round(v, 3) for h, v in b.items()},
                        "all": round(sum(b.values()), 3),
                    }
                    for m, b in zip(args.models, best, strict=True)
                },
            }
        )
    )


if __name__ == "__main__":
    main()
