"""Build a large benchmark catalog by tiling the real fixture rows with small seeded jitter.

Never invents rows: every row is a fixture row (tests/data/tracks_2000.csv);
the continuous audio features get a small multiplicative jitter (+-1%, seeded,
clipped to the valid range) so the tiles are not byte-identical.

    python bench/catalog.py 2000000 /tmp/catalog_2m.parquet
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.features import NUMERIC_FEATURES, parse_explicit  # noqa: E402

FIXTURE = ROOT / "tests" / "data" / "tracks_2000.csv"
CONTINUOUS = (
    "duration_ms", "danceability", "energy", "loudness", "speechiness", "acousticness",
    "instrumentalness", "liveness", "valence", "tempo",
)  # fmt: skip
CHUNK = 200_000


def build_parquet(rows: int, path: Path, seed: int = 0) -> Path:
    """Write ``rows`` rows to ``path`` in row groups of 200k, one chunk in memory at a time."""
    import polars as pl

    base = pl.read_csv(FIXTURE).with_columns(parse_explicit().cast(pl.Boolean))
    base = base.with_columns(pl.col("track_id").cast(pl.String))
    limits = {f.name: (f.valid_min, f.valid_max) for f in NUMERIC_FEATURES}
    rng = np.random.default_rng(seed)
    writer = None
    written = 0
    try:
        while written < rows:
            n = min(CHUNK, rows - written)
            index_all = np.arange(written, written + n)
            index = index_all % base.height
            chunk = base[index]
            jitter = {}
            for column in CONTINUOUS:
                values = chunk[column].cast(pl.Float64).to_numpy()
                values = values * rng.uniform(0.99, 1.01, n)
                low, high = limits[column]
                jitter[column] = np.clip(values, low, high if high is not None else np.inf)
            chunk = chunk.with_columns(
                [pl.Series(c, v) for c, v in jitter.items()]
                # a unique key per tile: <track_id>-<tile number>
                + [pl.col("track_id") + "-" + pl.Series((index_all // base.height).astype(str))]
            )
            table = chunk.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table, row_group_size=CHUNK)
            written += n
    finally:
        if writer is not None:
            writer.close()
    return path


if __name__ == "__main__":
    count = int(sys.argv[1])
    out = Path(sys.argv[2])
    build_parquet(count, out)
    print(out, pq.ParquetFile(out).metadata.num_rows, "rows", pa.__version__)
