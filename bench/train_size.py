"""Training time and peak memory against catalog size: ``popbatch train`` on N real rows.

The training catalog is the shared 10k sample (the test fixture when it is
absent) tiled to ``--rows`` rows. Never invents rows: every row is a real
one; copies after the first get a small seeded multiplicative jitter (+-1%,
clipped to the valid range) on the continuous audio features so they are not
exact duplicates (training drops those), and keep their ``track_id``, so a
track and its copies stay on one side of every grouped split and fold.

Each size is trained in a fresh process (``bench/procstat.py``: wall seconds,
CPU seconds, peak RSS with children), with the default recipe (all heads).

    python bench/train_size.py --rows 10000 30000
    python bench/train_size.py --rows 30000 -- --cv 5x3     # extra train options after --
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.catalog import CONTINUOUS  # noqa: E402
from bench.procstat import measure  # noqa: E402
from bench.run import training_data  # noqa: E402

UNIT_RANGE = ("danceability", "energy", "speechiness", "acousticness", "instrumentalness",
              "liveness", "valence")  # fmt: skip


def tiled(source: Path, rows: int, seed: int = 0) -> pl.DataFrame:
    """``rows`` rows: ``source`` repeated, every copy after the first jittered."""
    frame = pl.read_csv(source, infer_schema_length=None)
    copies = -(-rows // frame.height)
    rng = np.random.default_rng(seed)
    parts = [frame]
    for _ in range(1, copies):
        factors = {
            c: rng.uniform(0.99, 1.01, frame.height) for c in CONTINUOUS if c in frame.columns
        }
        part = frame.with_columns(
            (pl.col(c).cast(pl.Float64) * pl.Series(f)).alias(c) for c, f in factors.items()
        )
        part = part.with_columns(pl.col(c).clip(0.0, 1.0) for c in UNIT_RANGE if c in part.columns)
        parts.append(part.with_columns(pl.col("duration_ms").round(0).cast(pl.Int64)))
    return pl.concat(parts, how="vertical_relaxed").head(rows)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 30_000])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(own)
    source = training_data(quick=False)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}; source {source.name}")  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            data = Path(tmp) / f"train_{rows}.csv"
            tiled(source, rows, args.seed).write_csv(data)
            out = Path(tmp) / f"run_{rows}"
            command = [sys.executable, "-m", "popbatch", "train", "--data", str(data),
                       "--out", str(out), "--quiet", *extra]  # fmt: skip
            run = measure(command)
            line = {
                "rows": rows,
                "wall_s": round(run.seconds, 1),
                "cpu_s": round(run.cpu_seconds, 1),
                "peak_rss_mb": round(run.peak_rss_mb),
                "ok": run.returncode == 0,
                "command": "popbatch train --data train_N.csv --out run_N --quiet "
                + " ".join(extra),
            }
            results.append(line)
            print(json.dumps(line), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
