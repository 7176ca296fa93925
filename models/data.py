"""Training data: read a catalog, clean it, build the feature matrix.

The catalog is read by the scorer's own sources (CSV, Parquet files, globs and
directories, DuckDB tables and queries), its columns resolved as scoring
resolves them (snake_case names, ``--map``, ``--fill``: see
:func:`popbatch.core.features.resolve_columns`). Cleaning: exact duplicate rows
dropped, ``explicit`` parsed, rows with a missing label or feature dropped and
counted. Every user
mistake becomes an :class:`~popbatch.core.errors.InputError` (exit 2) with one line
naming the file and what is missing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from popbatch.batch.sources import DUCKDB_SUFFIXES, open_source

from popbatch.core.errors import InputError, SchemaError, TrainingError
from popbatch.core.features import (
    GENRE_COLUMN,
    KEY_COLUMN,
    LABEL_COLUMN,
    NUMERIC_FEATURE_NAMES,
    OTHER_GENRE,
    normalize_column_name,
    parse_explicit,
    resolve_columns,
)

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
    prior_columns: tuple[str, ...] = ()
    """Key columns kept as text for the catalog priors (``models.priors``)."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_table(
    path: Path | str,
    table: str | None = None,
    *,
    query: str | None = None,
    delimiter: str = ",",
    maps: Mapping[str, str] | None = None,
) -> tuple[pl.DataFrame, str]:
    """Read a whole catalog through the scorer's sources, columns resolved as scoring does.

    ``path`` is a CSV or Parquet file, a glob, a directory of Parquet files, or
    a DuckDB file with ``table`` or ``query``; column names are normalised and
    ``maps`` (``{new: old}``, ``--map``) applied by
    :func:`~popbatch.core.features.resolve_columns`. CSV values arrive as text
    and are typed by :func:`_typed_columns`. Returns the frame and the name of
    the source for messages.

    Raises
    ------
    InputError, SchemaError
        Missing or unreadable input, unknown format, missing ``--table``, an
        unknown ``--map`` column, two columns with one name.
    """
    if table is None and query is None and str(path).lower().endswith(DUCKDB_SUFFIXES):
        raise InputError(f"{path}: a DuckDB file needs --table NAME or --query SQL")
    with open_source([str(path)], table=table, query=query, delimiter=delimiter) as source:
        names = resolve_columns(source.schema.names, maps, source.name)
        batches = list(source.batches(None, 1 << 16))
        arrow = pa.Table.from_batches(batches, schema=source.schema)
        name = source.name
    return pl.from_arrow(arrow).rename(names), name


def apply_fills(
    frame: pl.DataFrame,
    fills: Mapping[str, str],
    source: str,
    prior_columns: tuple[str, ...] = (),
) -> pl.DataFrame:
    """``--fill COLUMN=VALUE``: a constant for a feature column the input lacks, or for
    its empty cells, as ``popbatch score`` applies it (model inputs only).

    Raises
    ------
    InputError
        A fill of a column that is not a model input.
    """
    inputs = [*NUMERIC_FEATURE_NAMES, GENRE_COLUMN, *prior_columns]
    for column, value in fills.items():
        column = normalize_column_name(column)
        if column not in inputs:
            raise InputError(
                f"--fill {column}={value}: {column} is not a model input; "
                f"model inputs: {', '.join(inputs)}"
            )
        if column in frame.columns:
            filled = pl.col(column).cast(pl.String).replace("", None).fill_null(value)
        else:
            filled = pl.lit(value, pl.String).alias(column)
        frame = frame.with_columns(filled)
    return frame


def sha256_of_input(path: Path | str) -> str:
    """sha256 of the training input: of the file, or of the sorted files of a glob or
    directory taken together (a DuckDB file counts whole)."""
    path = Path(path)
    if path.is_file():
        return sha256_of(path)
    files = sorted(
        p for p in (path.rglob("*") if path.is_dir() else Path().glob(str(path))) if p.is_file()
    )
    digest = hashlib.sha256()
    for file in files:
        digest.update(sha256_of(file).encode())
    return digest.hexdigest()


def load_training_data(
    path: Path | str,
    table: str | None = None,
    use_genre: bool = True,
    *,
    query: str | None = None,
    delimiter: str = ",",
    maps: Mapping[str, str] | None = None,
    fills: Mapping[str, str] | None = None,
    prior_columns: tuple[str, ...] = (),
) -> TrainingData:
    """Read and clean training rows, read as ``popbatch score`` reads a catalog.

    Returns a :class:`TrainingData` whose frame has ``track_id``,
    ``popularity``, the numeric features (Float64), with ``use_genre``
    ``genre`` (stripped, lower case) and the ``prior_columns`` as text (null
    allowed: an unknown artist is not a missing value). ``counts`` records rows read,
    duplicates dropped, rows dropped for missing values and rows kept.

    Raises
    ------
    InputError, SchemaError
        Missing file, missing label column, missing feature columns.
    """
    raw, source = read_table(path, table, query=query, delimiter=delimiter, maps=maps)
    raw = apply_fills(raw, fills or {}, source, prior_columns)
    _check_columns(raw.columns, source, use_genre, prior_columns)
    counts = {"rows_read": raw.height}

    content = [c for c in raw.columns if not _INDEX_COLUMN.match(c)]
    deduped = raw.unique(subset=content, keep="first", maintain_order=True)
    counts["duplicates_dropped"] = raw.height - deduped.height

    frame = _typed_columns(deduped, use_genre, prior_columns)
    complete = frame.drop_nulls([c for c in frame.columns if c not in prior_columns])
    counts["missing_dropped"] = frame.height - complete.height
    counts["rows_used"] = complete.height
    if complete.height == 0:
        raise TrainingError(f"{source}: no complete rows left after dropping missing values")
    return TrainingData(
        frame=complete,
        source=Path(path).name,
        table=table,
        sha256=sha256_of_input(path),
        counts=counts,
        has_genre=use_genre,
        prior_columns=tuple(prior_columns),
    )


def _check_columns(
    columns: list[str], source: str, use_genre: bool, prior_columns: tuple[str, ...] = ()
) -> None:
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
    absent = [c for c in prior_columns if c not in present]
    if absent:
        raise SchemaError(
            f"{source}: missing prior column{'s' if len(absent) > 1 else ''} "
            f"{', '.join(absent)}; name it with --map {absent[0]}=COLUMN, choose other "
            "columns with --prior COLUMN, or train without priors (--no-priors)"
        )


def _typed_columns(
    frame: pl.DataFrame, use_genre: bool, prior_columns: tuple[str, ...] = ()
) -> pl.DataFrame:
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
    columns += [pl.col(c).cast(pl.String) for c in prior_columns if c not in (KEY_COLUMN,)]
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
