"""Incremental runs: score only rows that are new, changed, or scored by another model.

Every scored row carries ``features_hash``: a 64-bit hash of the model's
input row (the float32 feature matrix row, i.e. the catalog's feature values
exactly as the model reads them after parsing, ``--fill`` and genre
encoding). It is computed here with numpy (FNV-1a over the row's 32-bit
words, then the splitmix64 finaliser), not with polars' hash, which may change
between polars versions: the stored hashes stay valid across upgrades.

With ``popbatch score --incremental`` an input row is *up to date*, and is
skipped, when the target already holds a row with the same key, the same
``features_hash`` and the current ``model_id``. Skipped rows are carried over
unchanged; the result equals a full run (``--mode replace``):

- a Parquet target is rewritten (temporary file + rename) with the new scores
  followed by the kept rows, streamed from the old file;
- a DuckDB table is changed in the run's one transaction: rows that are not
  kept are deleted and the new scores inserted.

Rows whose key and features appear several times are matched copy for copy
(three identical input rows keep at most three identical stored rows).

Memory: the lookup holds 8 bytes (a hash of key and ``features_hash``) plus
two 4-byte counters per stored row of the current model, about 160 MB for 10
million rows, and about 8 more bytes per row while it is built; the target
itself is streamed, never loaded (measured: 1M stored rows, built in ~1 s,
RSS +131 MB of which most is the Arrow/polars allocators' pools).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from popbatch.core.scored import BY_NAME, HASH_COLUMN, LATEST_FIRST, MODEL_ID_COLUMN
from popbatch.core.sqlquote import quote_column, quote_string

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


Columns = slice | list[int] | None


def features_hash(
    matrix: np.ndarray,
    numeric: Columns = None,
    onehot: Columns = None,
    hot: np.ndarray | None = None,
) -> np.ndarray:
    """A stable uint64 hash of each row of a float32 feature matrix.

    Parameters
    ----------
    matrix
        float32 [rows, F], the model's input.
    numeric
        Columns hashed by their exact float32 bits (default: all).
    onehot
        Columns of one one-hot block (the genre), hashed by which of them is
        set: one argmax instead of a hash step per category, ~3x faster on
        the 129-input model than hashing every column.
    hot
        Optional: which column of the ``onehot`` block is set in each row (an
        index into the block), when the caller already knows it; the hash is
        the same, without the argmax over the block (~70% of this function's
        time on the default model).

    The same values give the same hash on every machine and in every
    popbatch version that keeps this function (it depends on numpy's
    wrapping uint64 arithmetic only).
    """
    rows = matrix.shape[0]
    part = matrix if numeric is None else matrix[:, numeric]
    words = np.ascontiguousarray(part, dtype=np.float32).view(np.uint32)
    value = np.full(rows, _FNV_OFFSET, np.uint64)
    column = np.empty(rows, np.uint64)
    for j in range(words.shape[1]):
        np.copyto(column, words[:, j], casting="unsafe")
        value ^= column
        value *= _FNV_PRIME
    if onehot is not None and rows and matrix[:1, onehot].shape[1]:
        index = matrix[:, onehot].argmax(axis=1) if hot is None else hot
        value ^= index.astype(np.uint64)
        value *= _FNV_PRIME
    value ^= value >> np.uint64(30)  # splitmix64 finaliser: every bit depends on every word
    value *= _MIX1
    value ^= value >> np.uint64(27)
    value *= _MIX2
    value ^= value >> np.uint64(31)
    return value


def as_columns(positions: list[int]) -> slice | list[int]:
    """A slice for contiguous positions (a view, no copy), else the list."""
    if positions and positions == list(range(positions[0], positions[0] + len(positions))):
        return slice(positions[0], positions[0] + len(positions))
    return positions


def _pair_hash(
    keys: pa.Array | pa.ChunkedArray, hashes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One in-memory uint64 per (key, features_hash), and which keys are not null.

    Only compared within one run, so polars' row hash (fixed seeds) is fine here.
    """
    text = pc.cast(keys, pa.string())
    frame = pl.DataFrame({"k": pl.from_arrow(text), "h": pl.Series(hashes, dtype=pl.UInt64)})
    combined = frame.hash_rows(seed=11).to_numpy()
    return combined, np.asarray(frame["k"].is_not_null().to_numpy())


class UpToDate:
    """The (key, features_hash) pairs the target holds for the current model.

    :meth:`skip` tells, batch by batch, which input rows are already scored;
    each stored row can excuse at most one input row.
    """

    def __init__(self, pairs: np.ndarray) -> None:
        pairs.sort()  # in place: np.unique would hold two more copies of every row
        new = np.ones(len(pairs), bool)
        new[1:] = pairs[1:] != pairs[:-1]
        starts = np.flatnonzero(new)
        self.values = pairs[starts]
        self.counts = np.diff(np.append(starts, len(pairs))).astype(np.uint32)
        self.used = np.zeros(len(self.values), np.uint32)

    @classmethod
    def from_batches(cls, batches: Iterable[pa.RecordBatch], key: str) -> UpToDate:
        """From batches holding ``key`` and ``features_hash`` (rows of the current model)."""
        parts = []
        for batch in batches:
            hashes = batch.column(HASH_COLUMN)
            present = pc.is_valid(hashes)
            if not pc.all(present).as_py():
                batch = batch.filter(present)
            pairs, valid = _pair_hash(
                batch.column(key), batch.column(HASH_COLUMN).to_numpy(zero_copy_only=False)
            )
            parts.append(pairs[valid])
        pairs = np.concatenate(parts) if parts else np.zeros(0, np.uint64)
        parts.clear()
        return cls(pairs)

    def __len__(self) -> int:
        return int(self.counts.sum())

    def skip(self, keys: pa.Array | pa.ChunkedArray, hashes: np.ndarray) -> np.ndarray:
        """Boolean mask of the rows that are up to date (null keys never are)."""
        n = len(hashes)
        skip = np.zeros(n, bool)
        if n == 0 or len(self.values) == 0:
            return skip
        pairs, valid = _pair_hash(keys, hashes)
        index = np.minimum(np.searchsorted(self.values, pairs), len(self.values) - 1)
        found = np.flatnonzero(valid & (self.values[index] == pairs))
        if found.size == 0:
            return skip
        slots = index[found]
        # Copy number of each row among this batch's rows with the same pair.
        order = np.argsort(slots, kind="stable")
        ordered = slots[order]
        starts = np.r_[True, ordered[1:] != ordered[:-1]]
        positions = np.arange(ordered.size)
        first = np.maximum.accumulate(np.where(starts, positions, 0))
        copy = np.empty_like(positions)
        copy[order] = positions - first
        ok = self.used[slots].astype(np.int64) + copy < self.counts[slots]
        skip[found[ok]] = True
        np.add.at(self.used, slots, 1)
        return skip


class SkippedRows:
    """The (key, features_hash) of skipped rows, staged in a Parquet file beside the target.

    The commit reads it to pick which stored rows to keep.
    """

    def __init__(self, path: Path, key_field: pa.Field) -> None:
        self.path = path
        self.schema = pa.schema([key_field, BY_NAME[HASH_COLUMN].field])
        self.rows = 0
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(
            path, self.schema, compression="lz4"
        )

    def write(self, keys: pa.Array | pa.ChunkedArray, hashes: np.ndarray) -> None:
        if len(hashes):
            self._writer.write_table(
                pa.table([keys, pa.array(hashes, pa.uint64())], schema=self.schema)
            )
            self.rows += len(hashes)

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def kept_rows_sql(
    stored: str, skipped: str, key_sql: str, model_id: str, rowids: bool = False
) -> str:
    """SELECT the stored rows to keep: for each skipped (key, features_hash), as many
    stored rows of the current model as there were skipped input rows, the latest
    first (``LATEST_FIRST``: a deterministic choice among repeated rows).

    ``stored`` is a table or ``read_parquet(...)`` and ``skipped`` a
    ``read_parquet(...)`` of :class:`SkippedRows`. The result is the stored
    rows' columns, or with ``rowids`` (``stored`` a table) only their ``rowid``.
    """
    rowid = "rowid AS popbatch_rowid, " if rowids else ""
    select = "stored.popbatch_rowid" if rowids else "stored.* EXCLUDE (popbatch_copy)"
    return (
        f"WITH skipped AS (SELECT {key_sql} AS k, {HASH_COLUMN} AS h, count(*) AS n "
        f"FROM {skipped} GROUP BY ALL), "
        f"stored AS (SELECT {rowid}*, row_number() OVER (PARTITION BY {key_sql}, {HASH_COLUMN} "
        f"ORDER BY {LATEST_FIRST}) AS popbatch_copy FROM {stored} "
        f"WHERE {MODEL_ID_COLUMN} = {quote_string(model_id)}) "
        f"SELECT {select} FROM stored JOIN skipped "
        f"ON stored.{key_sql} = skipped.k AND stored.{HASH_COLUMN} = skipped.h "
        "WHERE popbatch_copy <= skipped.n"
    )


class CarryOver:
    """What a sink needs at commit to keep the stored rows of skipped input rows."""

    def __init__(self, skipped: SkippedRows, key: str, model_id: str) -> None:
        self.skipped = skipped
        self.key = key
        self.model_id = model_id
        self.kept = 0

    def sql(self, stored: str, rowids: bool = False) -> str:

        self.skipped.close()
        return kept_rows_sql(
            stored,
            f"read_parquet({quote_string(str(self.skipped.path))})",
            quote_column(self.key),
            self.model_id,
            rowids=rowids,
        )
