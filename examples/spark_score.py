"""Score a Parquet or CSV catalog on Spark with popbatch's model and preprocessing.

    spark-submit examples/spark_score.py catalog.parquet scored.parquet
    spark-submit --master 'local[2]' examples/spark_score.py catalog.csv scored.parquet \\
        --model exported --partition-by popular --columns all
    python examples/spark_score.py catalog.parquet scored.parquet   # local[2], no spark-submit

Reads INPUT (Parquet: a file, a directory or a glob; CSV with a header row,
read as text as ``popbatch score`` does), scores it with the embedded default
model or ``--model DIR``, and writes the scores to OUTPUT as a Parquet
directory (``--partition-by`` columns as the user asks) and the rejected rows
to ``--rejects`` (default: OUTPUT's name with ``.rejects``). The scored rows
equal ``popbatch score``'s; see docs/spark.md for the types Spark uses and
how to ship popbatch and the model to a cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="Parquet file/directory/glob, or a .csv file/glob")
    parser.add_argument("output", help="Parquet directory for the scores")
    parser.add_argument("--model", help="model directory (default: the embedded default model)")
    parser.add_argument("--rejects", help="Parquet directory for rejected rows")
    parser.add_argument("--partition-by", nargs="+", default=[], metavar="COLUMN")
    parser.add_argument(
        "--columns", default="key", help="key (default), all, or a comma-separated list"
    )
    parser.add_argument("--key", help="key column (default: the model's, track_id)")
    parser.add_argument("--format", choices=("parquet", "csv"), help="default: from the suffix")
    parser.add_argument("--mode", default="errorifexists", help="Spark save mode (overwrite...)")
    parser.add_argument("--master", default="local[2]", help="without spark-submit only")
    return parser.parse_args(argv)


def rejects_path(output: str) -> str:
    """``scored.parquet`` -> ``scored.rejects.parquet``; ``out/`` -> ``out.rejects``."""
    path = Path(output.rstrip("/"))
    if path.suffix:
        return str(path.with_name(f"{path.stem}.rejects{path.suffix}"))
    return f"{path}.rejects"


def read(spark, path: str, kind: str | None):
    kind = kind or ("csv" if path.lower().endswith((".csv", ".csv.gz")) else "parquet")
    if kind == "csv":  # text, like popbatch score's CSV reader; RFC 4180 quotes
        return spark.read.csv(path, header=True, escape='"', multiLine=True)
    return spark.read.parquet(path)


def run(spark, args: argparse.Namespace) -> dict:
    """Score ``args.input`` into ``args.output`` (and the rejects); returns the counts."""
    from pyspark import StorageLevel

    from popbatch.spark import score_flagged, split_flagged

    started = time.perf_counter()
    columns = args.columns if args.columns in ("key", "all") else args.columns.split(",")
    source = read(spark, args.input, args.format)
    flagged = score_flagged(source, args.model, key=args.key, columns=columns)
    # Two outputs from one scoring pass: keep the flagged rows until both are written.
    flagged = flagged.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        scored, rejects = split_flagged(flagged)
        scored.write.mode(args.mode).partitionBy(*args.partition_by).parquet(args.output)
        rejects_out = args.rejects or rejects_path(args.output)
        rejects.write.mode(args.mode).parquet(rejects_out)
        counts = {
            "rows_scored": spark.read.parquet(args.output).count(),
            "rows_rejected": spark.read.parquet(rejects_out).count(),
            "output": args.output,
            "rejects": rejects_out,
        }
    finally:
        flagged.unpersist()
    counts["seconds"] = round(time.perf_counter() - started, 3)
    return counts


def main(argv: list[str] | None = None, spark=None) -> int:
    args = parse_args(argv)
    if spark is None:
        from pyspark.sql import SparkSession

        from popbatch.spark import local_session

        # spark-submit starts this process with its gateway's port and sets the
        # master; a plain `python` run gets a local session bound to 127.0.0.1.
        submitted = "PYSPARK_GATEWAY_PORT" in os.environ
        spark = SparkSession.builder.getOrCreate() if submitted else local_session(args.master)
    print(json.dumps(run(spark, args)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
