"""Build large benchmark catalogs by tiling real rows with small seeded jitter.

The rows come from ``tests/data/tracks_2000.csv`` (real tracks; see
tests/data/ATTRIBUTION.md), so a fresh clone can build them. Each tile gets
new track ids (``<id>-<tile>``) and multiplicative jitter of +-2% on the
continuous features, clipped to their valid ranges, so the model sees
varied inputs rather than 2,000 values repeated.

    python bench/catalog.py --rows 1000000 --out bench/out/catalog_1m

writes ``catalog.parquet``, ``catalog.csv`` and ``catalog.duckdb`` (table
``tracks``) holding the same rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.features import NUMERIC_FEATURES  # noqa: E402

FIXTURE = ROOT / "tests" / "data" / "tracks_2000.csv"
CONTINUOUS = (
    "duration_ms", "danceability", "energy", "loudness", "speechiness", "acousticness",
    "instrumentalness", "liveness", "valence", "tempo",
)  # fmt: skip
CHUNK_ROWS = 500_000


def jittered_chunk(base: pl.DataFrame, tiles: range, rng: np.random.Generator) -> pl.DataFrame:
    """``len(tiles)`` copies of ``base`` with new ids and jittered continuous features."""
    frame = pl.concat([base.with_columns(pl.lit(t).alias("_tile")) for t in tiles])
    n = frame.height
    ranges = {f.name: (f.valid_min, f.valid_max) for f in NUMERIC_FEATURES}
    jitter = []
    for name in CONTINUOUS:
        low, high = ranges[name]
        factor = pl.Series(rng.uniform(0.98, 1.02, n))
        value = (pl.col(name) * factor).clip(low, high)
        jitter.append(value.cast(base.schema[name]).alias(name))
    return frame.with_columns(
        *jitter,
        (pl.col("track_id") + "-" + pl.col("_tile").cast(pl.String)).alias("track_id"),
    ).drop("_tile")


def build(rows: int, out: Path, seed: int = 42) -> dict[str, Path]:
    """Write the catalog of ``rows`` rows as Parquet, CSV and a DuckDB table; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    base = pl.read_csv(FIXTURE)
    rng = np.random.default_rng(seed)
    paths = {"parquet": out / "catalog.parquet", "csv": out / "catalog.csv",
             "duckdb": out / "catalog.duckdb"}  # fmt: skip
    for path in paths.values():
        path.unlink(missing_ok=True)
    tiles_per_chunk = max(1, CHUNK_ROWS // base.height)
    total_tiles = -(-rows // base.height)
    written = 0
    writer = None
    with paths["csv"].open("wb") as csv_file:
        for start in range(0, total_tiles, tiles_per_chunk):
            chunk = jittered_chunk(
                base, range(start, min(total_tiles, start + tiles_per_chunk)), rng
            )
            chunk = chunk.head(rows - written)
            table = chunk.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(paths["parquet"], table.schema, compression="zstd")
            writer.write_table(table, row_group_size=131_072)
            chunk.write_csv(csv_file, include_header=written == 0)
            written += chunk.height
    writer.close()
    with duckdb.connect(str(paths["duckdb"])) as con:
        con.execute(f"CREATE TABLE tracks AS SELECT * FROM read_parquet('{paths['parquet']}')")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "catalog")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    started = time.perf_counter()
    paths = build(args.rows, args.out, args.seed)
    took = time.perf_counter() - started
    for kind, path in paths.items():
        print(f"{kind:8} {path} {path.stat().st_size / 1e6:.1f} MB")
    print(f"{args.rows:,} rows in {took:.1f} s")


if __name__ == "__main__":
    main()
