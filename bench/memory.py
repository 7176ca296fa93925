"""Peak memory of ``popbatch score`` against input size (not part of the test suite).

Builds Parquet catalogs of 200k and 2M rows (fixture rows tiled with small
seeded jitter, see ``bench/catalog.py``), scores each in a fresh subprocess
Parquet -> Parquet, samples its RSS (children included) with psutil every
20 ms (``bench/procstat.py``), and prints peak RSS side by side.
The goal: peak RSS at 2M rows is at most ~1.2x that at 200k rows.

    python bench/memory.py                          # embedded default model
    python -m tests.model_factory runs/test_model   # the small real test model, then
    python bench/memory.py --model runs/test_model
    python bench/memory.py --rows 200000 2000000 --batch-size 32768 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import QUICK_HELP  # noqa: E402
from bench.catalog import build_parquet  # noqa: E402
from bench.procstat import measure  # noqa: E402
from popbatch.core import DEFAULT_BATCH_SIZE  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 2_000_000])
    parser.add_argument("--model", help="model directory (default: the embedded model)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--workdir", help="where catalogs go (default: a temp dir)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.batch_size = [1_000, 2_000], 256

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="popbatch-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for rows in args.rows:
        catalog = workdir / f"catalog_{rows}.parquet"
        if not catalog.exists():
            build_parquet(rows, catalog)
        command = [
            sys.executable, "-m", "popbatch", "score", str(catalog),
            "-o", str(workdir / f"scored_{rows}.parquet"),
            "--batch-size", str(args.batch_size), "--quiet",
        ]  # fmt: skip
        if args.model:
            command += ["--model", args.model]
        if args.threads:
            command += ["--threads", str(args.threads)]
        run = measure(command)
        seconds, peak, code = run.seconds, run.peak_rss_mb, run.returncode
        if code != 0:
            raise SystemExit(f"popbatch score failed on {rows} rows (exit {code})")
        results.append(
            {"rows": rows, "seconds": round(seconds, 2), "rows_per_second": round(rows / seconds),
             "peak_rss_mb": round(peak, 1)}
        )  # fmt: skip

    base = results[0]["peak_rss_mb"]
    print(f"{'rows':>12} {'wall s':>8} {'rows/s':>12} {'peak RSS MB':>12} {'x first':>8}")
    for r in results:
        ratio = r["peak_rss_mb"] / base
        r["ratio_to_first"] = round(ratio, 3)
        print(
            f"{r['rows']:>12,} {r['seconds']:>8.2f} {r['rows_per_second']:>12,} "
            f"{r['peak_rss_mb']:>12.1f} {ratio:>8.2f}"
        )
    print(f"(wall time includes interpreter start-up and model load; batch size {args.batch_size})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
