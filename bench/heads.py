"""What each head costs: inference rows/s with and without it, in memory.

The matrix is the catalog's first rows preprocessed as ``popbatch score``
does (``bench/bare.py``); inference goes through ``OnnxScorer`` with each set
of heads: popular alone, popular + each extra head, and every head (the
default of ``popbatch score``), the sets taking turns for ``--rounds`` rounds and each
keeping its best (the machine is shared). Rows per CPU second stay meaningful when
other jobs share the cores; ``us_per_row_cpu`` turns them into microseconds of
inference CPU per row, per set and per head (an extra head: the set with it
less the popular head alone). Also prints each head file's size.

    python bench/heads.py MODEL_DIR catalog.parquet --threads 2 --batch-size 65536
    python bench/heads.py popbatch/default_model batch/sample/catalog.csv --quick
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from popbatch.batch.runner import OnnxScorer  # noqa: E402

from bench import model_catalog_parser  # noqa: E402
from bench.bare import catalog_matrix, rates  # noqa: E402
from popbatch.core.bundle import load_model  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = model_catalog_parser(__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=65_536)
    parser.add_argument("--seconds", type=float, default=5.0, help="per set of heads, in all")
    parser.add_argument("--rounds", type=int, default=5, help="turns each set takes")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size, args.seconds, args.rounds = 1_024, 0.05, 1
    result = measure(
        args.model, args.catalog, args.threads, args.batch_size, args.seconds, args.rounds
    )
    print(json.dumps(result))


def measure(
    model: Path, catalog: Path, threads: int, batch_size: int, seconds: float, rounds: int
) -> dict:
    """Rows/s of each set of heads and µs of inference CPU per row, per set and per head."""
    bundle = load_model(model)
    batch = catalog_matrix(bundle, catalog, batch_size)
    extra = [h for h in bundle.heads if h != "popular"]
    sets = [("popular",), *(("popular", h) for h in extra), tuple(bundle.heads)]
    result = {
        "model": str(model),
        "model_bytes": len(bundle.onnx_bytes),
        "head_bytes": {h: len(b) for h, b in bundle.head_bytes.items()},
        "threads": threads,
        "batch_size": batch_size,
        "load_average": os.getloadavg()[0],
        "rows_per_second": {},
    }
    # predict() runs every head the scorer was given (OnnxScorer.predict_heads). The sets
    # take turns, round after round, and each keeps its best round: a busy moment of the
    # shared machine slows one round of every set instead of one set's whole measurement.
    scorers = {",".join(h): OnnxScorer(bundle, threads, heads=h) for h in dict.fromkeys(sets)}
    best = {name: {"wall": 0, "cpu": 0} for name in scorers}
    for _ in range(rounds):
        for name, scorer in scorers.items():
            wall, cpu = rates(scorer, batch, batch_size, seconds / rounds)
            best[name] = {"wall": max(best[name]["wall"], wall), "cpu": max(best[name]["cpu"], cpu)}
    for scorer in scorers.values():
        scorer.close()
    result["rows_per_second"] = best
    result["rounds"] = rounds
    # inference CPU per row: the budget of the default model's heads is stated in these
    cost = {name: 1e6 / r["cpu"] for name, r in best.items()}
    alone = cost["popular"]
    result["us_per_row_cpu"] = {
        "sets": {name: round(c, 3) for name, c in cost.items()},
        "heads": {
            "popular": round(alone, 3),
            **{h: round(cost[f"popular,{h}"] - alone, 3) for h in extra},
        },
        "all": round(cost[",".join(bundle.heads)], 3),
    }
    return result


if __name__ == "__main__":
    main()
