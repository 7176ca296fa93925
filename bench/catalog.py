"""Build a large benchmark catalog by tiling the real fixture rows with small seeded jitter.

Never invents rows: every row is a fixture row (tests/data/tracks_2000.csv);
the continuous audio features get a small multiplicative jitter (+-1%, seeded,
clipped to the valid range) so the tiles are not byte-identical.

The Parquet file is written first, in 200k-row chunks; the CSV file and the
DuckDB table ``tracks`` are then made from it by DuckDB, streaming, so all
three hold the same rows in the same order. :func:`build_catalogs` caches the
files by row count and seed and only builds what is missing.

    python bench/catalog.py 2000000 /tmp/catalog_2m.parquet
    python bench/catalog.py 2000000 /tmp/catalogs --all     # .parquet, .csv and .duckdb
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from popbatch.core.features import NUMERIC_FEATURES, parse_explicit  # noqa: E402

FIXTURE = ROOT / "tests" / "data" / "tracks_2000.csv"
CONTINUOUS = (
    "duration_ms", "danceability", "energy", "loudness", "speechiness", "acousticness",
    "instrumentalness", "liveness", "valence", "tempo",
)  # fmt: skip
CHUNK = 200_000


TABLE = "tracks"


@dataclass(frozen=True)
class Catalog:
    """The same catalog in the three input kinds ``popbatch score`` reads."""

    rows: int
    seed: int
    parquet: Path
    csv: Path
    duckdb: Path
    table: str = TABLE


KINDS = ("parquet", "csv", "duckdb")


def build_catalogs(
    rows: int, folder: Path, seed: int = 0, kinds: tuple[str, ...] = KINDS
) -> Catalog:
    """Catalogs of ``rows`` rows in ``folder`` (Parquet plus ``kinds``), reusing existing files.

    Files are named by row count and seed, and each appears only when complete
    (written under a temporary name, then renamed), so a cached file is never
    a half-written one from an interrupted run.
    """
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"catalog_{rows}_seed{seed}"
    catalog = Catalog(
        rows,
        seed,
        parquet=stem.with_suffix(".parquet"),
        csv=stem.with_suffix(".csv"),
        duckdb=stem.with_suffix(".duckdb"),
    )
    if not catalog.parquet.exists():
        _atomically(catalog.parquet, lambda tmp: build_parquet(rows, tmp, seed))
    if "csv" in kinds and not catalog.csv.exists():
        _atomically(catalog.csv, lambda tmp: build_csv(catalog.parquet, tmp))
    if "duckdb" in kinds and not catalog.duckdb.exists():
        _atomically(catalog.duckdb, lambda tmp: build_duckdb(catalog.parquet, tmp))
    return catalog


def _atomically(target: Path, write: Callable[[Path], object]) -> None:
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.unlink(missing_ok=True)
    try:
        write(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def build_csv(parquet: Path, path: Path) -> Path:
    """The Parquet catalog as CSV with a header row (DuckDB streams it, in file order)."""
    import duckdb

    with duckdb.connect() as con:
        con.execute("SET preserve_insertion_order = true")
        con.execute(
            f"COPY (SELECT * FROM read_parquet('{_sql_path(parquet)}')) "
            f"TO '{_sql_path(path)}' (FORMAT csv, HEADER true)"
        )
    return path


def build_duckdb(parquet: Path, path: Path, table: str = TABLE) -> Path:
    """A DuckDB database holding the Parquet catalog as table ``table``."""
    import duckdb

    with duckdb.connect(str(path)) as con:
        con.execute(
            f"CREATE TABLE \"{table}\" AS SELECT * FROM read_parquet('{_sql_path(parquet)}')"
        )
        con.execute("CHECKPOINT")
    return path


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


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


def main(argv: list[str] | None = None) -> None:
    import argparse

    from bench import QUICK_HELP

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", type=int)
    parser.add_argument("out", type=Path, help="the Parquet file, or with --all the folder")
    parser.add_argument("--all", action="store_true", help="Parquet, CSV and DuckDB, cached")
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP)
    args = parser.parse_args(argv)
    rows = min(args.rows, 1_000) if args.quick else args.rows
    if args.all:
        print(build_catalogs(rows, args.out))
    else:
        build_parquet(rows, args.out)
        print(args.out, pq.ParquetFile(args.out).metadata.num_rows, "rows", pa.__version__)


if __name__ == "__main__":
    main()
