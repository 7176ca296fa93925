"""The I/O floor of ``popbatch score`` Parquet -> Parquet: reading and writing, nothing else.

Reads the catalog as ``popbatch score`` does (its own ``ParquetSource``, the
same columns: the key, the model's inputs and, for a model with catalog priors,
their key columns such as ``artists`` and ``album_name``, in the same batches) and writes
the scored table's schema (``popbatch.core.scored``: the key, the score
columns, then the columns of every head the model has, as ``popbatch score``
writes by default) with the Parquet sink's compression and dictionary choices,
but with every score a constant: no preprocessing, no inference.
``bench/run.py`` runs it in a fresh process right after ``popbatch score`` on
the same file and prints popbatch's time as a multiple of this one: the ratio
holds on a noisy machine where absolute rows/s do not.

Constant columns compress better than real scores, so the floor is a lower
bound of what writing real scores costs.

Prints one JSON line: rows, batches and seconds.

    python bench/floor.py catalog.parquet floor.parquet --model MODEL_DIR [--heads popular]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from popbatch.batch.sources import ParquetSource

from popbatch.core import DEFAULT_BATCH_SIZE
from popbatch.core.bundle import ModelBundle, load_model
from popbatch.core.scored import (
    HASH_COLUMN,
    INPUT_ROW_COLUMN,
    MODEL_ID_COLUMN,
    SCORED_AT_COLUMN,
    scored_schema,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import QUICK_HELP

# What batch.sinks.ParquetSink writes with (popbatch score's -o FILE.parquet).
COMPRESSION = "zstd"


def read_columns(manifest: dict[str, Any], schema: pa.Schema) -> list[str]:
    """The columns ``popbatch score`` reads with its defaults (``--columns key``): the
    key, every model input and the priors' key columns, in the input's order (as
    ``Preprocessor.read_columns``)."""
    wanted = {manifest.get("key", "track_id")}
    wanted |= {f["column"] for f in manifest["features"] if "column" in f}
    wanted |= set((manifest.get("priors") or {}).get("columns", ()))
    return [name for name in schema.names if name in wanted]


def output_schema(bundle: ModelBundle, key: pa.Field, heads: str | None = None) -> pa.Schema:
    """The scored table popbatch writes for this model: every head it has by default, as
    ``popbatch score``; ``heads`` as ``--heads`` (a comma list) otherwise."""
    return scored_schema([key], bundle.heads if heads is None else tuple(heads.split(",")))


def dictionary_columns(schema: pa.Schema, key: str) -> list[str]:
    """Columns ParquetSink dictionary-encodes: not the key, the hash, input_row or a float."""
    return [
        f.name
        for f in schema
        if f.name not in (key, HASH_COLUMN, INPUT_ROW_COLUMN) and not pa.types.is_floating(f.type)
    ]


def constant(field: pa.Field, model_id: str, scored_at: datetime) -> pa.Scalar:
    """One value for every row of a score column: the run's own for model_id and
    scored_at (as popbatch writes them), an arbitrary one of the right type otherwise."""
    if field.name == MODEL_ID_COLUMN:
        return pa.scalar(model_id, field.type)
    if field.name == SCORED_AT_COLUMN:
        return pa.scalar(scored_at, field.type)
    if pa.types.is_floating(field.type):
        return pa.scalar(0.5, field.type)
    if pa.types.is_boolean(field.type):
        return pa.scalar(False, field.type)
    if pa.types.is_string(field.type):
        return pa.scalar("pop", field.type)
    return pa.scalar(0, field.type)


class ConstantScores:
    """The score columns of an ``n``-row batch, built once for the usual batch size and
    sliced for a shorter one (building them is not part of the floor's work)."""

    def __init__(self, fields: Sequence[pa.Field], model_id: str, scored_at: datetime) -> None:
        self.values = [constant(f, model_id, scored_at) for f in fields]
        self.columns: list[pa.Array] = []
        self.length = 0

    def __call__(self, n: int) -> list[pa.Array]:
        if n > self.length:
            self.columns = [pa.repeat(value, n) for value in self.values]
            self.length = n
        return [column.slice(0, n) for column in self.columns]


def run(
    catalog: Path,
    output: Path,
    model_dir: Path | None,
    batch_size: int,
    heads: str | None = None,
) -> dict[str, Any]:
    """Read ``catalog`` and write the constant-scored table to ``output``; returns counts."""
    started = time.perf_counter()
    bundle = load_model(model_dir)
    key = bundle.manifest.get("key", "track_id")
    rows = batches = 0
    with ParquetSource([catalog]) as source:
        schema = output_schema(bundle, source.schema.field(key), heads)
        scores = ConstantScores(
            list(schema)[1:], bundle.model_id, datetime.now(UTC).replace(tzinfo=None)
        )
        writer = pq.ParquetWriter(
            output,
            schema,
            compression=COMPRESSION,
            use_dictionary=dictionary_columns(schema, key),
        )
        with writer:
            for batch in source.batches(read_columns(bundle.manifest, source.schema), batch_size):
                n = batch.num_rows
                arrays = [batch.column(key), *scores(n)]
                writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
                rows += n
                batches += 1
    return {"rows": rows, "batches": batches, "seconds": round(time.perf_counter() - started, 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("catalog", type=Path, help="the Parquet catalog popbatch score reads")
    parser.add_argument("output", type=Path, help="where the constant-scored table goes")
    parser.add_argument("--model", type=Path, help="model directory (default: the embedded)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--heads", help="the columns of these heads only, as popbatch's --heads")
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size = 256
    print(json.dumps(run(args.catalog, args.output, args.model, args.batch_size, args.heads)))


if __name__ == "__main__":
    main()
