"""The benchmark's commands stay runnable and measure what they say (their numbers are never
asserted: see bench/run.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

import popbatch
from popbatch.core.scored import scored_schema

ROOT = Path(__file__).resolve().parents[1]


def test_bench_run_help_lists_its_options():
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    for option in ("--rows", "--quick", "--skip-train", "--model", "--run"):
        assert option in result.stdout


def build_catalog(rows: int, path: Path) -> Path:
    """The bench's own catalog (fixture rows tiled with jitter), ``rows`` rows."""
    command = [sys.executable, "bench/catalog.py", str(rows), str(path)]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return path


def run_floor(catalog: Path, output: Path, *options: str) -> dict:
    command = [sys.executable, "bench/floor.py", str(catalog), str(output), *options]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def layout(path: Path) -> list[tuple[str, str, bool]]:
    """(column, compression, dictionary-encoded) of the first row group of a Parquet file."""
    group = pq.ParquetFile(path).metadata.row_group(0)
    columns = [group.column(i) for i in range(group.num_columns)]
    return [(c.path_in_schema, c.compression, "RLE_DICTIONARY" in c.encodings) for c in columns]


def test_floor_writes_the_scored_table(tmp_path):
    """bench/floor.py: every catalog row, in batches, with the scored table's columns and types."""
    catalog = build_catalog(700, tmp_path / "catalog.parquet")
    done = run_floor(catalog, tmp_path / "floor.parquet", "--batch-size", "256")
    assert (done["rows"], done["batches"]) == (700, 3)
    written = pq.read_table(tmp_path / "floor.parquet")
    key = pq.read_schema(catalog).field("track_id")
    expected = scored_schema([key], popbatch.load_model().heads)
    assert list(zip(written.schema.names, written.schema.types, strict=True)) == list(
        zip(expected.names, expected.types, strict=True)
    )
    assert written.num_rows == 700
    assert written["track_id"].equals(pq.read_table(catalog, columns=["track_id"])["track_id"])


def test_floor_reads_and_writes_as_popbatch_score(tmp_path):
    """The floor is popbatch score less the work: the same columns read, the same batches,
    the same schema, compression and dictionary encoding written."""
    catalog = build_catalog(700, tmp_path / "catalog.parquet")
    run_floor(catalog, tmp_path / "floor.parquet", "--batch-size", "256")
    popbatch.score(catalog, tmp_path / "scored.parquet", batch_size=256)
    floor, scored = (
        pq.ParquetFile(tmp_path / "floor.parquet"),
        pq.ParquetFile(tmp_path / "scored.parquet"),
    )
    assert floor.schema_arrow == scored.schema_arrow
    assert layout(tmp_path / "floor.parquet") == layout(tmp_path / "scored.parquet")
    groups = [
        f.metadata.row_group(i).num_rows for f in (floor, scored) for i in range(f.num_row_groups)
    ]
    assert groups == [256, 256, 188] * 2

    from popbatch.batch.preprocess import Preprocessor

    spec = importlib.util.spec_from_file_location("floor", ROOT / "bench" / "floor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    manifest, schema = popbatch.load_model().manifest, pq.read_schema(catalog)
    assert module.read_columns(manifest, schema) == Preprocessor(manifest).bind(schema).read_columns
