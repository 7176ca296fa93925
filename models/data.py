"""Training data: read CSV, Parquet or a DuckDB table, clean it, build the feature matrix.

Cleaning follows the training issue: column names to snake_case (via
:mod:`models.features`), exact duplicate rows dropped, ``explicit`` parsed,
rows with a missing label or feature dropped and counted. Every user
mistake becomes an :class:`~batch.errors.InputError` (exit 2) with one line
naming the file and what is missing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from popbatch.core.errors import InputError, SchemaError, TrainingError, one_line
from popbatch.core.features import (
    GENRE_COLUMN,
    KEY_COLUMN,
    LABEL_COLUMN,
    NUMERIC_FEATURE_NAMES,
    OTHER_GENRE,
    normalized_names,
    parse_explicit,
)
from popbatch.core.sqlquote import quote_identifier

# pandas writes its row index as an unnamed first column ("Unnamed: 0"); it
# differs on every row, so it must not count when looking for exact duplicates.
_INDEX_COLUMN = re.compile(r"^(unnamed_\d+|index)$")
GENRE_KEY = "genre"  # the cleaned, normalised genre string column


@dataclass
class TrainingData:
    """Cleaned rows: track_id, popularity, numeric features and (optionally) genre."""

    frame: pl.DataFrame
    source: str
    table: str | None
    sha256: str
    counts: dict[str, int] = field(default_factory=dict)
    has_genre: bool = False


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_table(path: Path, table: str | None = None) -> pl.DataFrame:
    """Read a CSV or Parquet file with polars, or ``table`` of a DuckDB file.

    Raises
    ------
    InputError
        Missing or unreadable file, unknown format, missing ``--table``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found; pass an existing CSV, Parquet or DuckDB file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".duckdb", ".db", ".ddb"):
            if not table:
                raise InputError(f"{path}: a DuckDB file needs --table NAME")
            return _read_duckdb(path, table)
        if table:
            raise InputError(f"{path}: --table only applies to DuckDB files")
        if suffix == ".parquet":
            return pl.read_parquet(path)
        if suffix in (".csv", ".txt", ".tsv"):
            return pl.read_csv(path, infer_schema_length=10000, separator=_separator(suffix))
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"{path}: cannot read it ({one_line(exc, 200)})") from exc
    raise InputError(f"{path}: unknown format {suffix!r}; use .csv, .parquet or .duckdb")


def _separator(suffix: str) -> str:
    return "\t" if suffix == ".tsv" else ","


def _read_duckdb(path: Path, table: str) -> pl.DataFrame:
    import duckdb

    quoted = quote_identifier(table, "--table")
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            arrow = con.sql(f"SELECT * FROM {quoted}").to_arrow_table()
    except duckdb.CatalogException as exc:
        raise InputError(f"{path}: no table {table!r}") from exc
    except duckdb.Error as exc:
        raise InputError(f"{path}: cannot read table {table!r} ({exc})") from exc
    return pl.from_arrow(arrow)


def load_training_data(
    path: Path, table: str | None = None, use_genre: bool = True
) -> TrainingData:
    """Read and clean training rows.

    Returns a :class:`TrainingData` whose frame has ``track_id``,
    ``popularity``, the numeric features (Float64) and, with ``use_genre``,
    ``genre`` (stripped, lower case). ``counts`` records rows read,
    duplicates dropped, rows dropped for missing values and rows kept.

    Raises
    ------
    InputError, SchemaError
        Missing file, missing label column, missing feature columns.
    """
    path = Path(path)
    raw = read_table(path, table)
    source = f"{path}" + (f" table {table}" if table else "")
    raw = raw.rename(normalized_names(raw.columns, source=source))
    _check_columns(raw.columns, source, use_genre)
    counts = {"rows_read": raw.height}

    content = [c for c in raw.columns if not _INDEX_COLUMN.match(c)]
    deduped = raw.unique(subset=content, keep="first", maintain_order=True)
    counts["duplicates_dropped"] = raw.height - deduped.height

    frame = _typed_columns(deduped, use_genre)
    complete = frame.drop_nulls()
    counts["missing_dropped"] = frame.height - complete.height
    counts["rows_used"] = complete.height
    if complete.height == 0:
        raise TrainingError(f"{source}: no complete rows left after dropping missing values")
    return TrainingData(
        frame=complete,
        source=path.name,
        table=table,
        sha256=sha256_of(path),
        counts=counts,
        has_genre=use_genre,
    )


def _check_columns(columns: list[str], source: str, use_genre: bool) -> None:
    present = set(columns)
    if LABEL_COLUMN not in present:
        raise SchemaError(
            f"{source}: missing label column {LABEL_COLUMN!r} (columns: {', '.join(columns)})"
        )
    missing = [name for name in NUMERIC_FEATURE_NAMES if name not in present]
    if use_genre and GENRE_COLUMN not in present:
        missing.append(GENRE_COLUMN)
    if missing:
        hint = "; add them" + (" or pass --no-genre" if GENRE_COLUMN in missing else "")
        raise SchemaError(f"{source}: missing feature columns: {', '.join(missing)}{hint}")


def _typed_columns(frame: pl.DataFrame, use_genre: bool) -> pl.DataFrame:
    """Keep the columns training needs, typed; unparsable values become null."""
    if KEY_COLUMN in frame.columns:
        key = pl.col(KEY_COLUMN).cast(pl.String)
    else:
        # No id column: every row is its own group (no grouping is possible).
        key = pl.int_range(pl.len()).cast(pl.String)
    columns = [
        key.alias(KEY_COLUMN),
        pl.col(LABEL_COLUMN).cast(pl.Float64, strict=False),
    ]
    for name in NUMERIC_FEATURE_NAMES:
        if name == "explicit":
            columns.append(parse_explicit(name))
        else:
            columns.append(pl.col(name).cast(pl.Float64, strict=False))
    if use_genre:
        genre = pl.col(GENRE_COLUMN).cast(pl.String).str.strip_chars().str.to_lowercase()
        columns.append(pl.when(genre == "").then(None).otherwise(genre).alias(GENRE_KEY))
    frame = frame.select(columns)
    # NaN in a float column is as missing as null.
    return frame.with_columns(pl.col(pl.Float64).fill_nan(None))


def genre_vocabulary(genres: pl.Series) -> list[str]:
    """Sorted distinct genres (already normalised) of the training split."""
    return sorted(g for g in genres.unique().to_list() if g is not None and g != OTHER_GENRE)


def feature_matrix(frame: pl.DataFrame, vocabulary: list[str] | None) -> np.ndarray:
    """The [N, F] float32 model input, as the scorer builds it from raw rows (unclipped).

    Columns follow :func:`models.features.feature_names`; a genre outside
    ``vocabulary`` sets the ``__other__`` column.
    """
    numeric = frame.select(NUMERIC_FEATURE_NAMES).to_numpy().astype(np.float32)
    if vocabulary is None:
        return numeric
    genres = frame[GENRE_KEY].to_numpy()
    onehot = np.zeros((frame.height, len(vocabulary) + 1), np.float32)
    index = {g: i for i, g in enumerate(vocabulary)}
    for row, genre in enumerate(genres):
        onehot[row, index.get(genre, len(vocabulary))] = 1.0
    return np.hstack([numeric, onehot])
