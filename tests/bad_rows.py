"""The fixture catalog with some cells made invalid, for tests of the rejects."""

from __future__ import annotations

from pathlib import Path

import polars as pl

TRACKS_2000 = Path(__file__).parent / "data" / "tracks_2000.csv"


def bad_catalog(tmp_path: Path, bad_rows: dict[int, dict[str, str]], name: str = "bad.csv"):
    """tracks_2000.csv as text with some cells replaced (row numbers are 1-based)."""
    frame = pl.read_csv(TRACKS_2000, infer_schema=False)
    for row, values in bad_rows.items():
        for column, value in values.items():
            frame = frame.with_columns(
                pl.when(pl.int_range(pl.len()) == row - 1)
                .then(pl.lit(value))
                .otherwise(pl.col(column))
                .alias(column)
            )
    path = tmp_path / name
    frame.write_csv(path)
    return path
