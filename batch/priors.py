"""Catalog priors at scoring time: a batch's artist and album cells -> prior inputs.

The model bundle ships the priors table (``priors.parquet``: each key's
history, see :mod:`popbatch.core.priors`), its sha256 in the manifest's
``priors`` section, which ``model_id`` covers; ``load_model`` verifies it and
:func:`lookup_for` builds the lookup once per table. For each batch and prior
column the lookup works on the column's *distinct* cells only (Arrow
dictionary encoding, as the genre lookup does): it normalises and splits them
(:func:`~popbatch.core.priors.key_pairs`), joins the keys against the table,
combines each cell's keys, then gathers the rows' values by their dictionary
index. A catalog repeats its artists and albums, so most of the work is per
artist, not per row.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from popbatch.core.errors import ModelError
from popbatch.core.priors import CELL, KEY, LOG_FLOOR, PriorSpec, key_pairs


@dataclass
class _Column:
    keys: pl.DataFrame  # key -> row (index into the arrays below)
    n: np.ndarray
    sum: np.ndarray
    popular: np.ndarray
    genre: np.ndarray | None  # [keys, G] counts, float32 (exact: small integers)


class PriorLookup:
    """Prior inputs for batches of catalog rows, from a spec and its table."""

    #: rows gathered at a time into the feature matrix (1,024 x 114 genre shares: 456 KB)
    GATHER_ROWS = 1_024

    def __init__(self, spec: PriorSpec, table: pa.Table | pl.DataFrame) -> None:
        self.spec = spec
        frame = table if isinstance(table, pl.DataFrame) else pl.from_arrow(table)
        self.width = len(spec.feature_names())
        self.columns: dict[str, _Column] = {}
        n_genres = len(spec.genres)
        for column in spec.columns:
            rows = frame.filter(pl.col("column") == column)
            genre = None
            if {"genre", "log_genre"} & set(spec.statistics) and n_genres:
                # float32 holds every count exactly (they are far below 2**24) at half
                # the memory: 32 MB less for the default model's 70,000 keys
                genre = np.zeros((rows.height + 1, n_genres), np.float32)
                exploded = (
                    rows.select(pl.int_range(pl.len()).alias("r"), "genre_index", "genre_count")
                    .explode("genre_index", "genre_count")
                    .drop_nulls("genre_index")
                )
                genre[exploded["r"].to_numpy(), exploded["genre_index"].to_numpy()] = exploded[
                    "genre_count"
                ].to_numpy()
            # the last row (index = number of keys) is the unseen key: all zeros
            self.columns[column] = _Column(
                keys=rows.select(KEY, pl.int_range(pl.len(), dtype=pl.Int64).alias("row")),
                n=np.append(rows["n"].to_numpy().astype(np.float64), 0.0),
                sum=np.append(rows["sum"].to_numpy().astype(np.float64), 0.0),
                popular=np.append(rows["popular"].to_numpy().astype(np.float64), 0.0),
                genre=genre,
            )

    def features(
        self, cells: dict[str, pa.Array | pa.ChunkedArray | None], rows: int
    ) -> np.ndarray:
        """[rows, P] float32 prior inputs; ``cells[column]`` is the column's values
        (None: the catalog has no such column, every key unknown)."""
        out = np.empty((rows, self.width), np.float32)
        self.fill(cells, out, np.arange(self.width))
        return out

    def fill(
        self,
        cells: dict[str, pa.Array | pa.ChunkedArray | None],
        out: np.ndarray,
        positions: np.ndarray,
        cache: CellCache | None = None,
    ) -> None:
        """Write the prior inputs of ``out``'s rows into ``out[:, positions]`` (``positions``:
        where each of :meth:`PriorSpec.feature_names` goes; a negative position is an input
        no requested head reads, left unwritten), straight from each column's per-cell
        values: one gather per run of adjacent positions, no [rows, P] copy in between (a
        fancy-indexed column write of the whole block cost ~2.3 µs a row). With ``cache``
        (one per run), a cell an earlier batch had is not worked out again."""
        rows = out.shape[0]
        start = 0
        for column in self.spec.columns:
            per_cell, index = self._per_cell(column, cells.get(column), rows, cache)
            width = per_cell.shape[1]
            for first, stop, at in _runs(positions[start : start + width]):
                if at < 0:
                    continue
                block = np.ascontiguousarray(per_cell[:, first:stop])
                target = out[:, at : at + stop - first]
                # in slices whose gathered copy stays in cache, not through a
                # whole-batch temporary (bench/results/ab_8_chunked_gather.json)
                for i in range(0, rows, self.GATHER_ROWS):
                    target[i : i + self.GATHER_ROWS] = block[index[i : i + self.GATHER_ROWS]]
            start += width

    def column_features(
        self, column: str, values: pa.Array | pa.ChunkedArray | None, rows: int
    ) -> np.ndarray:
        """[rows, P_column] for one prior column, computed once per distinct cell."""
        per_cell, index = self._per_cell(column, values, rows)
        return per_cell[index]

    def _per_cell(
        self,
        column: str,
        values: pa.Array | pa.ChunkedArray | None,
        rows: int,
        cache: CellCache | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """([distinct cells + 1, P_column], each row's index into it): the column's
        distinct cells, then a null for the rows without one."""
        if values is None:
            values = pa.nulls(rows, pa.string())
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            if pa.types.is_dictionary(values.type):
                values = values.cast(pa.string())
            else:
                values = pc.cast(values, pa.string())
        encoded = pc.dictionary_encode(values)
        if cache is None:
            nulls = pa.nulls(1, encoded.dictionary.type)
            per_cell = self._cell_features(column, pa.concat_arrays([encoded.dictionary, nulls]))
        else:
            per_cell = cache.per_cell(self, column, encoded.dictionary)
        index = encoded.indices.fill_null(len(per_cell) - 1).to_numpy(zero_copy_only=False)
        return per_cell, index

    def _cell_features(self, column: str, cells: pa.Array) -> np.ndarray:
        """[cells, P_column]: :mod:`popbatch.core.priors`' formulas, vectorised over
        the (cell, key) pairs; an unseen key joins the table's all-zero last row."""
        table = self.columns[column]
        spec = self.spec
        m = float(spec.smoothing)
        pairs = key_pairs(pl.Series(cells), column)  # a cell without keys: one null key
        if spec.combine == "first":
            pairs = pairs.unique(CELL, keep="first", maintain_order=True)
        pairs = pairs.join(table.keys, on=KEY, how="left", maintain_order="left")
        cell = pairs[CELL].to_numpy()
        known = pairs["row"].is_not_null().to_numpy()
        row = pairs["row"].fill_null(len(table.n) - 1).to_numpy()
        n_cells = len(cells)
        n, s = table.n[row], table.sum[row]
        total_n = np.bincount(cell, n, n_cells)
        out = []
        for statistic in spec.statistics:
            if statistic == "mean":
                value = (np.bincount(cell, s, n_cells) + m * spec.global_mean) / (total_n + m)
            elif statistic == "share":
                popular = np.bincount(cell, table.popular[row], n_cells)
                value = (popular + m * spec.global_share) / (total_n + m)
            elif statistic == "count":
                value = np.log1p(total_n)
            elif statistic == "max_mean":
                value = np.full(n_cells, -np.inf)
                np.maximum.at(value, cell[known], ((s + m * spec.global_mean) / (n + m))[known])
                value = np.where(np.isfinite(value), value, spec.global_mean)
            elif statistic == "genre":
                out.append(self._genre(table, cell, row))
                continue
            else:  # log_genre: the logs, once per distinct cell rather than per row
                out.append(np.log(np.maximum(self._genre(table, cell, row), LOG_FLOOR)))
                continue
            out.append(value[:, None])
        if not out:
            return np.zeros((n_cells, 0), np.float32)
        return np.hstack(out).astype(np.float32)

    def _genre(self, table: _Column, cell: np.ndarray, row: np.ndarray) -> np.ndarray:
        m = float(self.spec.smoothing)
        g = np.asarray(self.spec.global_genre, np.float64)
        if table.genre is None:
            return np.zeros((int(cell.max(initial=-1)) + 1, len(g)))
        # pairs come in cell order, each cell with at least one (its null key when empty)
        starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
        # sums of a few small integers: exact in float32, then float64 as the formulas are
        summed = np.add.reduceat(table.genre[row], starts, axis=0).astype(np.float64)
        return (summed + m * g) / (summed.sum(axis=1, keepdims=True) + m)


class CellCache:
    """The per-cell prior values one run has worked out so far, per prior column.

    A cell's values depend on its text alone (each cell's keys are combined on their
    own), so a cell seen in an earlier batch is gathered from here instead of going
    through :func:`~popbatch.core.priors.key_pairs` and the table join again: a catalog
    repeats its artists and albums across batches. Bounded: a column holding
    :attr:`CAPACITY` cells starts afresh, so memory stays flat in the catalog's size
    (~117 float32 values a cell with the genre shares: ~30 MB a column when full).
    """

    CAPACITY = 65_536

    def __init__(self) -> None:
        self._ids: dict[str, dict[str, int]] = {}
        self._values: dict[str, np.ndarray] = {}
        self._null: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def per_cell(self, lookup: PriorLookup, column: str, distinct: pa.Array) -> np.ndarray:
        """[len(distinct) + 1, P_column]: ``distinct``'s values, then the null cell's."""
        if len(distinct) > self.CAPACITY:  # more distinct cells than it holds: no caching
            return lookup._cell_features(
                column, pa.concat_arrays([distinct, pa.nulls(1, distinct.type)])
            )
        with self._lock:
            keys = distinct.to_pylist()
            known = self._ids.setdefault(column, {})
            ids = np.fromiter((known.get(k, -1) for k in keys), np.int64, len(keys))
            new = np.flatnonzero(ids < 0)
            if len(new) or column not in self._null:
                if len(known) + len(new) > self.CAPACITY:
                    known.clear()
                    ids[:] = -1
                    new = np.arange(len(keys))
                cells = pa.concat_arrays(
                    [distinct.take(pa.array(new, pa.int64())), pa.nulls(1, distinct.type)]
                )
                computed = lookup._cell_features(column, cells)
                self._null[column] = computed[-1]
                store = self._values.get(column)
                if store is None:
                    store = self._values[column] = np.empty(
                        (self.CAPACITY, computed.shape[1]), np.float32
                    )
                first = len(known)
                store[first : first + len(new)] = computed[:-1]
                for offset, i in enumerate(new.tolist()):
                    known[keys[i]] = first + offset
                ids[new] = first + np.arange(len(new))
            return np.vstack([self._values[column][ids], self._null[column][None, :]])


def _runs(positions: np.ndarray) -> list[tuple[int, int, int]]:
    """``(first, stop, at)`` for each run of consecutive ``positions``: block columns
    ``first:stop`` go to output columns ``at:at + stop - first`` (a negative position is a
    run of its own)."""
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    edges = [0, *breaks.tolist(), len(positions)]
    return [(a, b, int(positions[a])) for a, b in itertools.pairwise(edges) if b > a]


_LOOKUPS: dict[str, PriorLookup] = {}


def lookup_for(manifest: dict[str, Any]) -> PriorLookup | None:
    """The lookup of a manifest's priors (built once per table), from the table bytes
    :func:`popbatch.core.bundle.load_model` verified; None for a model without priors.

    Raises
    ------
    ModelError
        The manifest has priors but its table was not loaded (a manifest read
        without ``load_model``).
    """
    section = manifest.get("priors")
    if not section:
        return None
    spec = PriorSpec.from_manifest(section)
    found = _LOOKUPS.get(spec.table_sha256)
    if found is None:
        from popbatch.core.bundle import prior_table

        data = prior_table(spec.table_sha256)
        if data is None:
            raise ModelError(
                "this model's catalog priors table is not loaded: load the model with "
                "popbatch.load_model(DIRECTORY), which verifies the table"
            )
        # ParquetFile, not read_table: that imports pyarrow.dataset, tens of MB of
        # resident memory a run scoring one file does not otherwise need
        table = pq.ParquetFile(pa.BufferReader(data)).read()
        found = _LOOKUPS[spec.table_sha256] = PriorLookup(spec, table)
    return found
