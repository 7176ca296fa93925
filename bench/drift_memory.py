"""Peak memory of ``popbatch drift`` at two catalog sizes (bounded batches: it should not grow).

Builds CSV and Parquet catalogs by repeating tests/data/tracks_2000.csv (real
rows) and runs ``python -m popbatch drift`` against a model's training
statistics (the embedded default model's unless ``--model``) in a fresh process
per measurement, reading its peak RSS.

    python bench/drift_memory.py [--rows 200000 2000000] [--batch-size 65536] [--model DIR]
    python bench/drift_memory.py --quick      # 1,000 rows: checks the script
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import QUICK_HELP  # noqa: E402
from bench.procstat import measure  # noqa: E402


def make_catalog(folder: Path, rows: int) -> dict[str, Path]:
    base = pl.read_csv(ROOT / "tests" / "data" / "tracks_2000.csv", infer_schema=False)
    frame = pl.concat([base] * (rows // base.height + 1)).head(rows)
    paths = {"csv": folder / f"catalog_{rows}.csv", "parquet": folder / f"catalog_{rows}.parquet"}
    frame.write_csv(paths["csv"])
    frame.write_parquet(paths["parquet"])
    return paths


def peak_rss_mb(args: list[str]) -> tuple[float, float]:
    run = measure([sys.executable, "-m", "popbatch", *args])
    if run.returncode not in (0, 3):  # 3 = drift found, a normal outcome
        raise SystemExit(f"popbatch {args[0]} failed (exit {run.returncode}): {run.stderr}")
    return run.peak_rss_mb, run.seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 2_000_000])
    parser.add_argument("--batch-size", type=int, default=65_536)
    parser.add_argument("--model", help="model directory (default: the embedded model)")
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP)
    options = parser.parse_args(argv)
    if options.quick:
        options.rows, options.batch_size = [1_000], 256
    model = ["--model", options.model] if options.model else []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for rows in options.rows:
            for kind, path in make_catalog(folder, rows).items():
                args = ["drift", str(path), *model, "--batch-size", str(options.batch_size)]
                mb, seconds = peak_rss_mb(args)
                print(f"{kind:8} {rows:>10,} rows  peak RSS {mb:7.1f} MB  {seconds:6.1f} s")


if __name__ == "__main__":
    main()
