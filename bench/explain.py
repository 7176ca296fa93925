"""What ``popbatch explain`` costs: wall and CPU seconds and peak RSS for TOP tracks.

Runs ``popbatch.explain`` in this process on the catalog's TOP highest-predicted
tracks (the command's default selection) with the model's stored background rows,
and prints one JSON line: the command, the model, tracks and features explained,
model evaluations per track, wall and CPU seconds, peak RSS and the load average
before and after. ``--json FILE`` also writes it (``bench/results/explain.json``
feeds the cost table of docs/explain.md through ``docs/generate.py``).

    python bench/explain.py popbatch/default_model batch/sample/catalog.csv --top 1000 \
        --json bench/results/explain.json
    python bench/explain.py popbatch/default_model batch/sample/catalog.csv --quick
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from popbatch.batch.explain.selection import DEFAULT_PERMUTATIONS, model_rows_per_row  # noqa: E402
from popbatch.batch.explain.space import BACKGROUND_ROWS  # noqa: E402

import popbatch  # noqa: E402
from bench import model_catalog_parser  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = model_catalog_parser(__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=1_000)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if args.quick:
        args.top = 3
    model = popbatch.load_model(args.model)
    load_before = os.getloadavg()
    wall, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        why = popbatch.explain(str(args.catalog), model, top=args.top,
                               output=Path(tmp) / "why.parquet")  # fmt: skip
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    tracks = len(set(why.table.column("track_id").to_pylist()))
    features = why.table.num_rows // max(tracks, 1)
    result = {
        "command": "python bench/explain.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "model_id": model.model_id,
        "tracks": tracks,
        "features": features,
        "evaluations_per_track": model_rows_per_row(
            features, DEFAULT_PERMUTATIONS, BACKGROUND_ROWS
        ),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "cores": os.cpu_count(),
        "load_average": [round(v, 2) for v in (*load_before, *os.getloadavg())],
    }
    line = json.dumps(result)
    print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(line + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
